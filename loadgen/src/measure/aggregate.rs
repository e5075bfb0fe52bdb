//! The shared aggregate of every worker's recordings: per-second and whole-run stats per
//! operation type, plus live counters for the status line.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{OpStats, SECOND_SIGFIG, TOTAL_SIGFIG};
use crate::generator::OpKind;

/// Seconds kept at most (a run is at most an hour plus slack); later completions land in the
/// last second rather than growing memory without bound.
const MAX_SECONDS: u64 = 4 * 3600;

#[derive(Debug, Default)]
struct Inner {
    seconds: Vec<[Option<OpStats>; 5]>,
    totals: [Option<OpStats>; 5],
}

/// Everything the workers recorded, shared.
#[derive(Debug)]
pub struct Aggregate {
    origin: Instant,
    inner: Mutex<Inner>,
    ok: AtomicU64,
    errors: AtomicU64,
}

/// What the status line shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveFigures {
    /// Successful operations so far.
    pub ok: u64,
    /// Failed operations so far.
    pub errors: u64,
    /// p99 latency of the last complete second, microseconds (0 when nothing completed).
    pub p99_us: u64,
}

/// A finished run's measurements.
#[derive(Debug, Clone)]
pub struct Measurements {
    /// Per second since the origin, per operation type (indexed by [`OpKind::index`]).
    pub seconds: Vec<[OpStats; 5]>,
    /// The whole measured run, per operation type.
    pub totals: [OpStats; 5],
    /// From the origin to the end of the last operation.
    pub elapsed: Duration,
    /// The operation types the workload uses (others are left out of reports).
    pub kinds: Vec<OpKind>,
}

impl Measurements {
    /// All operation types merged, over the whole run.
    pub fn overall(&self) -> OpStats {
        let mut all = OpStats::new(TOTAL_SIGFIG);
        for t in &self.totals {
            all.merge(t);
        }
        all
    }

    /// All operation types merged, for second `s`.
    pub fn second_overall(&self, s: usize) -> OpStats {
        let mut all = OpStats::new(SECOND_SIGFIG);
        for t in &self.seconds[s] {
            all.merge(t);
        }
        all
    }
}

impl Aggregate {
    /// An empty aggregate whose measured time starts at `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            inner: Mutex::new(Inner::default()),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// The start of measured time.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Counts operations for the live figures.
    #[inline]
    pub fn count_live(&self, ok: u64, errors: u64) {
        if ok > 0 {
            self.ok.fetch_add(ok, Ordering::Relaxed);
        }
        if errors > 0 {
            self.errors.fetch_add(errors, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking worker cannot leave the stats half-merged in a way that matters more than
        // losing them; keep going with what is there.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Merges one worker's second `second`.
    pub fn merge_second(&self, second: u64, stats: [Option<OpStats>; 5]) {
        let s = second.min(MAX_SECONDS) as usize;
        let mut inner = self.lock();
        if inner.seconds.len() <= s {
            inner.seconds.resize_with(s + 1, Default::default);
        }
        merge_into(&mut inner.seconds[s], stats, SECOND_SIGFIG);
    }

    /// Merges one worker's whole-run totals.
    pub fn merge_totals(&self, stats: [Option<OpStats>; 5]) {
        let mut inner = self.lock();
        merge_into(&mut inner.totals, stats, TOTAL_SIGFIG);
    }

    /// Live counters and the p99 of the last complete second before `now` (the one before it
    /// when workers have not flushed it yet: they flush on their first answer in a new second).
    pub fn live(&self, now: Instant) -> LiveFigures {
        let second = now.saturating_duration_since(self.origin).as_secs();
        let p99_us = if second == 0 {
            0
        } else {
            let inner = self.lock();
            let mut h = super::new_histogram(SECOND_SIGFIG);
            for back in 1..=2 {
                let Some(i) = (second as usize).checked_sub(back) else {
                    break;
                };
                if let Some(slot) = inner.seconds.get(i) {
                    for s in slot.iter().flatten() {
                        let _ = h.add(&s.latency);
                    }
                }
                if !h.is_empty() {
                    break;
                }
            }
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.99)
            }
        };
        LiveFigures {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p99_us,
        }
    }

    /// The measurements, once every recorder has finished. `end` is when the last operation
    /// completed; `kinds` the operation types to report.
    pub fn finish(&self, end: Instant, kinds: Vec<OpKind>) -> Measurements {
        let inner = self.lock();
        let seconds = inner
            .seconds
            .iter()
            .map(|slot| filled(slot, SECOND_SIGFIG))
            .collect();
        Measurements {
            seconds,
            totals: filled(&inner.totals, TOTAL_SIGFIG),
            elapsed: end.saturating_duration_since(self.origin),
            kinds,
        }
    }
}

fn merge_into(dst: &mut [Option<OpStats>; 5], src: [Option<OpStats>; 5], sigfig: u8) {
    for (d, s) in dst.iter_mut().zip(src) {
        if let Some(s) = s {
            d.get_or_insert_with(|| OpStats::new(sigfig)).merge(&s);
        }
    }
}

fn filled(slot: &[Option<OpStats>; 5], sigfig: u8) -> [OpStats; 5] {
    std::array::from_fn(|i| slot[i].clone().unwrap_or_else(|| OpStats::new(sigfig)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::measure::{ErrorKind, Recorder};

    #[test]
    fn recorders_merge_per_second_and_in_total() {
        let origin = Instant::now();
        let agg = Arc::new(Aggregate::new(origin));
        let at = |ms: u64| origin + Duration::from_millis(ms);
        {
            let mut a = Recorder::new(agg.clone());
            let mut b = Recorder::new(agg.clone());
            // Warm-up: intended before the origin, ignored.
            let before = origin
                .checked_sub(Duration::from_millis(5))
                .unwrap_or(origin);
            if before < origin {
                assert!(!a.record(OpKind::Read, before, before, at(1), Ok(())));
            }
            assert!(a.record(OpKind::Read, at(0), at(0), at(2), Ok(())));
            assert!(a.record(OpKind::Read, at(10), at(10), at(1_500), Ok(())));
            assert!(b.record(OpKind::Update, at(100), at(900), at(1_000), Ok(())));
            assert!(b.record(
                OpKind::Update,
                at(2_000),
                at(2_000),
                at(2_100),
                Err(ErrorKind::UnknownOutcome)
            ));
        }
        let m = agg.finish(at(2_100), vec![OpKind::Read, OpKind::Update]);
        assert_eq!(m.seconds.len(), 3);
        assert_eq!(m.seconds[0][0].ok, 1);
        assert_eq!(m.seconds[1][0].ok, 1);
        assert_eq!(m.seconds[1][1].ok, 1);
        assert_eq!(m.seconds[2][1].errors, [0, 1, 0]);
        assert_eq!(m.totals[0].ok, 2);
        assert_eq!(m.overall().ok, 3);
        assert_eq!(m.overall().error_total(), 1);
        // Latency counts from the intended start, service time from the actual start.
        let upd = &m.totals[1];
        assert!(upd.latency.max() >= 899_000 && upd.latency.max() <= 901_000);
        assert!(upd.service.max() >= 99_000 && upd.service.max() <= 101_000);
        assert_eq!(m.elapsed, Duration::from_millis(2_100));
    }
}
