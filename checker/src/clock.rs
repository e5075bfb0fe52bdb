//! The history's clock record: what ties the history's relative times to real (wall-clock)
//! time, the clock-offset bound the cluster ran with, and every clock fault loadgen injected.
//!
//! A history's `invoke_ns` / `complete_ns` count from the run's zero on loadgen's monotonic
//! clock; a version's HLC carries the stamping node's wall-clock milliseconds. The record's
//! anchor (Unix ms at the run's zero, read from loadgen's own clock, which is the reference:
//! loadgen never runs under a fault) converts the former into the latter, so the
//! `future_version` rule can set a version's physical time against the real time of the
//! operation. The clock faults are reported with the findings they may explain.
//!
//! The record is a JSON sidecar next to the history, `history.clock.json` (see
//! [`ClockRecord::sidecar_path`]): the CSV format is unchanged, so histories written before it
//! still read, only without the real-time rules that need the anchor.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::CheckerError;

/// What a clock fault does to a node's wall clock (libfaketime under the node's process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockAction {
    /// The clock jumps by `delta_ms` (positive = ahead, added to the offset in force) and stays.
    Bump,
    /// The clock alternates between `+delta_ms` and its previous offset every `period_ms`.
    Strobe,
    /// The clock runs at `rate` times real speed from the fault's start.
    Drift,
    /// The clock is back to real time (ends every earlier fault on the node).
    Reset,
}

impl ClockAction {
    /// The scenario / CSV spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bump => "bump",
            Self::Strobe => "strobe",
            Self::Drift => "drift",
            Self::Reset => "reset",
        }
    }
}

/// One clock fault, as applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockFault {
    /// The node id whose clock it moved (the `version_node` its versions carry).
    pub node: u32,
    /// The node's address, for the report.
    #[serde(default)]
    pub addr: String,
    /// What it did.
    pub action: ClockAction,
    /// When it took effect, ns since the run's zero (the history's time base).
    pub from_ns: u64,
    /// When it ended (a later fault on the node or the healing before the final phase); `None`
    /// = still in force at the end of the history.
    #[serde(default)]
    pub until_ns: Option<u64>,
    /// Bump: the jump, added to the offset in force; strobe: the excursion from the offset in
    /// force. ms, negative = behind.
    #[serde(default)]
    pub delta_ms: i64,
    /// Strobe: how long each of the two positions lasts, ms.
    #[serde(default)]
    pub period_ms: Option<u64>,
    /// Drift: the clock's speed relative to real time (1.0 = real).
    #[serde(default)]
    pub rate: Option<f64>,
}

impl ClockFault {
    /// True when the fault was in force at `at_ns`.
    pub fn in_force_at(&self, at_ns: u64) -> bool {
        self.action != ClockAction::Reset
            && self.from_ns <= at_ns
            && self.until_ns.is_none_or(|u| at_ns < u)
    }

    /// One phrase for reports: "bump +3600000 ms on node 2 from 5.000 s".
    pub fn describe(&self) -> String {
        let what = match self.action {
            ClockAction::Bump => format!("bump {:+} ms", self.delta_ms),
            ClockAction::Strobe => format!(
                "strobe {:+} ms every {} ms",
                self.delta_ms,
                self.period_ms.unwrap_or_default()
            ),
            ClockAction::Drift => format!("drift x{}", self.rate.unwrap_or(1.0)),
            ClockAction::Reset => "reset".to_string(),
        };
        let until = match self.until_ns {
            Some(u) => format!(" to {:.3} s", u as f64 / 1e9),
            None => String::new(),
        };
        format!(
            "clock {what} on node {} from {:.3} s{until}",
            self.node,
            self.from_ns as f64 / 1e9
        )
    }
}

/// The clock record of one history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClockRecord {
    /// Unix time in ms (loadgen's wall clock) at the run's zero: `invoke_ns = 0` happened at
    /// this real time.
    pub anchor_unix_ms: u64,
    /// The largest clock offset the cluster was configured to tolerate
    /// (`--max-clock-offset-ms` of its servers), ms.
    pub max_clock_offset_ms: u64,
    /// Every clock fault applied during the run, in order.
    #[serde(default)]
    pub faults: Vec<ClockFault>,
}

impl ClockRecord {
    /// Where the record of `history` lives: `history.clock.json` next to `history.csv` (any
    /// history file name `X.csv` gets `X.clock.json`).
    pub fn sidecar_path(history: &Path) -> PathBuf {
        let stem = history
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "history".into());
        history.with_file_name(format!("{stem}.clock.json"))
    }

    /// Reads the sidecar of `history`; `Ok(None)` when there is none (an older history).
    pub fn read_sidecar(history: &Path) -> Result<Option<Self>, CheckerError> {
        let path = Self::sidecar_path(history);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckerError::Io {
                    what: "clock record (history.clock.json)",
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CheckerError::ClockRecord {
                path: path.display().to_string(),
                message: e.to_string(),
            })
    }

    /// Writes the sidecar of `history` (replacing it).
    pub fn write_sidecar(&self, history: &Path) -> Result<(), CheckerError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| CheckerError::ClockRecord {
            path: Self::sidecar_path(history).display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(Self::sidecar_path(history), text + "\n").map_err(|source| {
            CheckerError::Io {
                what: "clock record (history.clock.json)",
                source,
            }
        })
    }

    /// Real time (Unix ms) of `at_ns` on the history's time base.
    pub fn real_ms(&self, at_ns: u64) -> u64 {
        self.anchor_unix_ms.saturating_add(at_ns / 1_000_000)
    }

    /// The clock faults in force on node id `node` at `at_ns`.
    pub fn in_force(&self, node: u32, at_ns: u64) -> impl Iterator<Item = &ClockFault> {
        self.faults
            .iter()
            .filter(move |f| f.node == node && f.in_force_at(at_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_round_trips_and_sits_next_to_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path().join("history.csv");
        assert_eq!(
            ClockRecord::sidecar_path(&h),
            dir.path().join("history.clock.json")
        );
        assert_eq!(ClockRecord::read_sidecar(&h).unwrap(), None);
        let r = ClockRecord {
            anchor_unix_ms: 1_800_000_000_000,
            max_clock_offset_ms: 500,
            faults: vec![ClockFault {
                node: 2,
                addr: "127.0.0.1:7002".into(),
                action: ClockAction::Bump,
                from_ns: 5_000_000_000,
                until_ns: Some(9_000_000_000),
                delta_ms: 3_600_000,
                period_ms: None,
                rate: None,
            }],
        };
        r.write_sidecar(&h).unwrap();
        assert_eq!(ClockRecord::read_sidecar(&h).unwrap(), Some(r.clone()));
        assert_eq!(r.in_force(2, 6_000_000_000).count(), 1);
        assert_eq!(r.in_force(2, 9_000_000_000).count(), 0);
        assert_eq!(r.in_force(1, 6_000_000_000).count(), 0);
        assert_eq!(r.real_ms(2_500_000), 1_800_000_000_002);
        std::fs::write(ClockRecord::sidecar_path(&h), "{").unwrap();
        let e = ClockRecord::read_sidecar(&h).unwrap_err().to_string();
        assert!(e.contains("history.clock.json"), "{e}");
    }
}
