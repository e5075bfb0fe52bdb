//! `timeseries.csv`: per second of the measured phase, one row per reported operation type and
//! one `all` row. Columns: `second` (since measuring began), `op`, `ok`, `ops_per_sec`, latency
//! percentiles from the intended start (`p50_us`, `p99_us`, `max_us`), service time
//! percentiles, and errors by kind. The last second may be partial (operations still answering
//! when the phase ended): its `ops_per_sec` is divided by the part of the second it covers.
//!
//! The per-type rows sum exactly to `summary.csv`'s counts.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::LoadgenError;
use crate::measure::{Measurements, OpStats, max_or_zero, quantile_or_zero};

/// One row of `timeseries.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesRow {
    /// Second since measuring began.
    pub second: u64,
    /// Operation type, or `all`.
    pub op: String,
    /// Successful operations that completed in this second.
    pub ok: u64,
    /// `ok` per second of the interval covered.
    pub ops_per_sec: f64,
    /// Seconds of this row's interval inside the measured phase: 1, or less for the partial
    /// last second (operations that were still answering when the phase ended).
    pub covered_s: f64,
    /// Median latency, µs (0 when nothing completed).
    pub p50_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
    /// Median service time, µs.
    pub svc_p50_us: u64,
    /// 99th percentile service time, µs.
    pub svc_p99_us: u64,
    /// Failures by kind.
    pub err_unavailable: u64,
    /// Failures that may have been applied.
    pub err_unknown_outcome: u64,
    /// Other failures.
    pub err_other: u64,
}

fn row(second: u64, op: &str, s: &OpStats, covered: f64) -> SeriesRow {
    SeriesRow {
        second,
        op: op.to_string(),
        ok: s.ok,
        ops_per_sec: s.ok as f64 / covered.max(1e-3),
        covered_s: covered,
        p50_us: quantile_or_zero(&s.latency, 0.5),
        p99_us: quantile_or_zero(&s.latency, 0.99),
        max_us: max_or_zero(&s.latency),
        svc_p50_us: quantile_or_zero(&s.service, 0.5),
        svc_p99_us: quantile_or_zero(&s.service, 0.99),
        err_unavailable: s.errors[0],
        err_unknown_outcome: s.errors[1],
        err_other: s.errors[2],
    }
}

/// The rows, second by second.
pub fn rows(m: &Measurements) -> Vec<SeriesRow> {
    let elapsed = m.elapsed.as_secs_f64();
    let mut out = Vec::with_capacity(m.seconds.len() * (m.kinds.len() + 1));
    for (s, slot) in m.seconds.iter().enumerate() {
        let covered = (elapsed - s as f64).clamp(0.0, 1.0);
        let covered = if covered <= 0.0 {
            1.0
        } else {
            (covered * 1000.0).round() / 1000.0
        };
        for k in &m.kinds {
            out.push(row(s as u64, k.name(), &slot[k.index()], covered));
        }
        out.push(row(s as u64, "all", &m.second_overall(s), covered));
    }
    out
}

/// Writes `timeseries.csv`.
pub fn write(path: &Path, m: &Measurements) -> Result<(), LoadgenError> {
    super::write_csv(path, rows(m))
}

/// Reads a `timeseries.csv`.
pub fn read(path: &Path) -> Result<Vec<SeriesRow>, LoadgenError> {
    super::read_csv(path)
}
