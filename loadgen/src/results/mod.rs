//! Results of a run, under `results/<scenario>/<UTC time>/`:
//!
//! - `scenario.toml`: the scenario as resolved (seed and fault targets included);
//! - `summary.csv`: a row per operation type and one `overall` ([`summary`]);
//! - `timeseries.csv`: per second and per type, plus `all` ([`timeseries`]);
//! - `latency.hlog`, `service.hlog`: HdrHistogram interval logs, one interval per second,
//!   tagged by operation type ([`hdrlog`]);
//! - `phases.csv`: before/during/after figures of each fault and its recovery time ([`phases`]);
//! - `throughput.png`, `latency.png`, `percentiles.png` ([`plots`]);
//! - `faults.csv`: the faults as applied, with their actual times;
//! - `nodes.csv`, `resources.csv`, `nodes.png`: every node's CPU and memory once a second,
//!   per-node peaks and CPU per operation ([`crate::resources`]);
//! - `nodes/node-<i>.prom`: each node's last `/metrics`, when `[cluster] metrics = true`;
//! - `history.csv`, when recorded; `nodes/` logs of launched nodes.
//!
//! [`report`] prints the YCSB-style block on stdout. Everything here is computed from
//! [`crate::measure::Measurements`] after the run; nothing here touches the cluster.

pub mod hdrlog;
pub mod phases;
pub mod plots;
pub mod report;
pub mod side_by_side;
pub mod summary;
pub mod timeseries;

use std::path::{Path, PathBuf};

use crate::LoadgenError;
pub(crate) use crate::csv_file::{read_csv, write_csv};
use crate::echo::Ceiling;
use crate::measure::Measurements;
use crate::scenario::{FaultAction, Scenario};

/// A fault as it was applied during the run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    /// Seconds since the measured phase began, when it was applied.
    pub at_s: f64,
    /// What was done.
    pub action: FaultAction,
    /// To which node.
    pub node: u32,
    /// `None` when it worked; the error otherwise.
    pub error: Option<String>,
    /// Clock faults: when a strobe or drift was planned to stop (same base as `at_s`).
    pub until_s: Option<f64>,
    /// Clock faults: their parameters (`delta_ms=3600000`, `period_ms=500`, `rate=1.05`);
    /// disk faults: what was damaged (`file=data/...seg;offset=...;bit=...`); `;`-separated;
    /// empty for process faults.
    pub detail: String,
}

/// Everything a run produced, as the results writers need it.
#[derive(Debug, Clone)]
pub struct RunResults {
    /// The resolved scenario.
    pub scenario: Scenario,
    /// The echo ceiling, when measured.
    pub ceiling: Option<Ceiling>,
    /// The measured phase.
    pub measurements: Measurements,
    /// Faults applied, in order.
    pub faults: Vec<FaultEvent>,
    /// Seconds the measured phase was meant to last (duration runs) or took (count runs).
    pub measured_seconds: u64,
    /// Load-phase figures: records inserted and seconds taken.
    pub load: Option<(u64, f64)>,
    /// The nodes' CPU and memory, when they were sampled.
    pub resources: Option<crate::resources::ResourceSummary>,
}

impl RunResults {
    /// kvstore ops/s over the echo's, when the echo was measured.
    pub fn efficiency(&self, ops_per_sec: f64) -> Option<f64> {
        self.ceiling
            .as_ref()
            .filter(|c| c.ops_per_sec > 0.0)
            .map(|c| ops_per_sec / c.ops_per_sec)
    }
}

/// The UTC time as `YYYYMMDDTHHMMSSZ` (a sortable directory name), from seconds since the
/// Unix epoch.
pub fn utc_stamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Creates a fresh run directory `<root>/<name>/<stamp>` (suffixing `-2`, `-3`... if it
/// exists).
pub fn create_run_dir(root: &Path, name: &str, stamp: &str) -> Result<PathBuf, LoadgenError> {
    let base = root.join(name);
    std::fs::create_dir_all(&base).map_err(|e| LoadgenError::results(&base, e))?;
    for i in 1..1000 {
        let dir = if i == 1 {
            base.join(stamp)
        } else {
            base.join(format!("{stamp}-{i}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(LoadgenError::results(&dir, e)),
        }
    }
    Err(LoadgenError::results(
        &base,
        "too many runs with the same time stamp",
    ))
}

/// Writes every results file of a finished run into `dir` (`scenario.toml` is written when the
/// run starts, so even an interrupted run names what it ran).
pub fn write_all(dir: &Path, r: &RunResults, phases: &[phases::Phase]) -> Result<(), LoadgenError> {
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| LoadgenError::results(p, e))
    };
    summary::write(&dir.join("summary.csv"), r)?;
    timeseries::write(&dir.join("timeseries.csv"), &r.measurements)?;
    hdrlog::write(dir, &r.measurements)?;
    phases::write(&dir.join("phases.csv"), phases)?;
    let mut faults = String::from("at_s,action,node,error,until_s,detail\n");
    for f in &r.faults {
        faults.push_str(&format!(
            "{:.3},{},{},{},{},{}\n",
            f.at_s,
            f.action.name(),
            f.node,
            f.error.as_deref().unwrap_or("").replace([',', '\n'], " "),
            f.until_s.map(|u| format!("{u:.3}")).unwrap_or_default(),
            f.detail.replace([',', '\n'], " ")
        ));
    }
    write("faults.csv", faults)?;
    plots::write_all(dir, r, phases)?;
    if let Some(res) = &r.resources {
        crate::resources::write(dir, res, &r.scenario.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        // 2026-11-24 00:43:32 UTC
        assert_eq!(utc_stamp(1_795_481_012), "20261124T004332Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
    }
}
