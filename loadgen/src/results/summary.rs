//! `summary.csv`: one row per operation type and one `overall` row. Latencies in microseconds
//! (from the intended start; `svc_*` columns are service times), rates in operations per second
//! of the measured phase; `efficiency` is the row's ops/s over the echo ceiling's.
//!
//! [`read`] parses the file back, for `loadgen compare`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::RunResults;
use crate::LoadgenError;
use crate::measure::{OpStats, max_or_zero, quantile_or_zero};

/// One row of `summary.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// `read`, `update`, `insert`, `delete`, `read_modify_write` or `overall`.
    pub op: String,
    /// Successful operations.
    pub count: u64,
    /// Successful operations per second over the measured phase.
    pub ops_per_sec: f64,
    /// Mean latency, µs.
    pub mean_us: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 95th percentile latency, µs.
    pub p95_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// 99.9th percentile latency, µs.
    pub p999_us: u64,
    /// Largest latency, µs.
    pub max_us: u64,
    /// Mean service time, µs.
    pub svc_mean_us: f64,
    /// Median service time, µs.
    pub svc_p50_us: u64,
    /// 99th percentile service time, µs.
    pub svc_p99_us: u64,
    /// Failures: not enough replicas or no server reachable (nothing written).
    pub err_unavailable: u64,
    /// Failures that may have been applied (timeouts).
    pub err_unknown_outcome: u64,
    /// Any other failure.
    pub err_other: u64,
    /// The echo ceiling's ops/s (empty when not measured).
    pub echo_ops_per_sec: Option<f64>,
    /// `ops_per_sec / echo_ops_per_sec` (empty when not measured).
    pub efficiency: Option<f64>,
    /// Seconds the measured phase took.
    pub elapsed_s: f64,
}

impl SummaryRow {
    /// A row for `op` from its stats over `elapsed_s` seconds.
    pub fn from_stats(op: &str, s: &OpStats, elapsed_s: f64, r: &RunResults) -> Self {
        let ops_per_sec = s.ok as f64 / elapsed_s.max(1e-9);
        Self {
            op: op.to_string(),
            count: s.ok,
            ops_per_sec,
            mean_us: if s.latency.is_empty() {
                0.0
            } else {
                s.latency.mean()
            },
            p50_us: quantile_or_zero(&s.latency, 0.5),
            p95_us: quantile_or_zero(&s.latency, 0.95),
            p99_us: quantile_or_zero(&s.latency, 0.99),
            p999_us: quantile_or_zero(&s.latency, 0.999),
            max_us: max_or_zero(&s.latency),
            svc_mean_us: if s.service.is_empty() {
                0.0
            } else {
                s.service.mean()
            },
            svc_p50_us: quantile_or_zero(&s.service, 0.5),
            svc_p99_us: quantile_or_zero(&s.service, 0.99),
            err_unavailable: s.errors[0],
            err_unknown_outcome: s.errors[1],
            err_other: s.errors[2],
            echo_ops_per_sec: r.ceiling.as_ref().map(|c| c.ops_per_sec),
            efficiency: r.efficiency(ops_per_sec),
            elapsed_s,
        }
    }
}

/// The rows of a run: each reported operation type, then `overall`.
pub fn rows(r: &RunResults) -> Vec<SummaryRow> {
    let m = &r.measurements;
    let elapsed = m.elapsed.as_secs_f64();
    let mut out: Vec<SummaryRow> = m
        .kinds
        .iter()
        .map(|k| SummaryRow::from_stats(k.name(), &m.totals[k.index()], elapsed, r))
        .collect();
    out.push(SummaryRow::from_stats("overall", &m.overall(), elapsed, r));
    out
}

/// Writes `summary.csv`.
pub fn write(path: &Path, r: &RunResults) -> Result<(), LoadgenError> {
    super::write_csv(path, rows(r))
}

/// Reads a `summary.csv`.
pub fn read(path: &Path) -> Result<Vec<SummaryRow>, LoadgenError> {
    super::read_csv(path)
}
