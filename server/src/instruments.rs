//! The hot-path instruments behind the node's Prometheus metrics: fixed arrays of atomic
//! counters and fixed-bucket latency histograms, so recording is a few relaxed atomic adds (no
//! lock, no map lookup, no allocation). The metrics module reads them at scrape time; this
//! module knows nothing of Prometheus, so the storage engine and the replication layer can hold
//! instruments without depending on the layers above them.
//!
//! Histogram buckets are fixed constants (seconds), the same on every node, so a dashboard can
//! sum them across the cluster.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) for request and replica latencies: 50 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) for fsync latency: 10 µs (a page-cache no-op) to 5 s (a stalled disk).
pub const FSYNC_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 5.0,
];

/// A latency histogram with fixed upper bounds; every count is an atomic.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last is above every bound (+Inf).
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

/// A histogram's figures at one moment, as the exposition wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of the observations, seconds.
    pub sum_s: f64,
    /// Number of observations.
    pub count: u64,
    /// (upper bound, cumulative count), ending with (+Inf, count).
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// A histogram over `bounds` (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < s);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// The current figures (each count read once; a scrape racing an observation may see the
    /// sum a moment ahead of the buckets, which Prometheus tolerates).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let bound = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative,
            buckets,
        }
    }
}

/// Client request operations, as labels.
pub const OPS: [&str; 3] = ["get", "put", "delete"];
/// Consistency levels, as labels (`invalid`: the request named no known level; `unread`: it
/// was shed when its headers arrived, before its body and so its level were read).
pub const LEVELS: [&str; 5] = ["one", "quorum", "all", "invalid", "unread"];
/// The index of `unread` in [`LEVELS`].
pub const LEVEL_UNREAD: usize = 4;
/// The index of `resource_exhausted` in [`OUTCOMES`].
pub const OUTCOME_SHED: usize = 4;
/// Request outcomes, as labels: `ok`, then one per gRPC status code a handler returns.
pub const OUTCOMES: [&str; 7] = [
    "ok",
    "invalid_argument",
    "unavailable",
    "deadline_exceeded",
    "resource_exhausted",
    "failed_precondition",
    "internal",
];

/// Client requests by operation, consistency and outcome, and their latency by operation and
/// consistency. Indexed by position in [`OPS`], [`LEVELS`], [`OUTCOMES`].
#[derive(Debug)]
pub struct RequestInstruments {
    counts: Vec<AtomicU64>,
    latency: Vec<Histogram>,
}

impl Default for RequestInstruments {
    fn default() -> Self {
        Self {
            counts: (0..OPS.len() * LEVELS.len() * OUTCOMES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..OPS.len() * LEVELS.len())
                .map(|_| Histogram::new(LATENCY_BUCKETS))
                .collect(),
        }
    }
}

impl RequestInstruments {
    /// Records one answered request.
    pub fn record(&self, op: usize, level: usize, outcome: usize, took: Duration) {
        let (op, level, outcome) = (
            op.min(OPS.len() - 1),
            level.min(LEVELS.len() - 1),
            outcome.min(OUTCOMES.len() - 1),
        );
        self.counts[(op * LEVELS.len() + level) * OUTCOMES.len() + outcome]
            .fetch_add(1, Ordering::Relaxed);
        self.latency[op * LEVELS.len() + level].observe(took);
    }

    /// Requests counted for (`op`, `level`, `outcome`).
    pub fn count(&self, op: usize, level: usize, outcome: usize) -> u64 {
        self.counts[(op * LEVELS.len() + level) * OUTCOMES.len() + outcome].load(Ordering::Relaxed)
    }

    /// The latency histogram of (`op`, `level`).
    pub fn latency(&self, op: usize, level: usize) -> &Histogram {
        &self.latency[op * LEVELS.len() + level]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // on the bound: le="0.001"
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 3), (f64::INFINITY, 4)]);
        assert!((s.sum_s - 3.0065).abs() < 1e-9, "{}", s.sum_s);
    }

    #[test]
    fn requests_are_counted_per_label_set() {
        let r = RequestInstruments::default();
        r.record(1, 1, 0, Duration::from_millis(2));
        r.record(1, 1, 0, Duration::from_millis(3));
        r.record(0, 2, 2, Duration::from_millis(1));
        assert_eq!(r.count(1, 1, 0), 2);
        assert_eq!(r.count(0, 2, 2), 1);
        assert_eq!(r.count(0, 1, 0), 0);
        assert_eq!(r.latency(1, 1).snapshot().count, 2);
    }
}
