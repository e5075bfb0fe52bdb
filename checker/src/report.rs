//! What the checker found: the anomaly classes with their meaning, each anomaly with the
//! operations involved (CSV line numbers), the summary counts, and the human rendering.
//!
//! The report is plain data (serialisable to JSON); it holds no rule logic. Anomalies are
//! counted in full but listed only up to a cap per class, so a badly broken 1,000,000-operation
//! run still gives a readable report.

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{Op, OutcomeCounts};
use crate::{OpKind, Outcome};

/// The kinds of finding. Every class but `StaleRead` fails the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyClass {
    /// Replicas' final reads disagree (or the final read through the cluster disagrees with
    /// them): the key did not converge.
    Divergence,
    /// A key that was written has no usable final read (no final phase, or a replica's final
    /// read failed): its convergence cannot be verified.
    UnverifiedKey,
    /// The converged state was not written by any acknowledged or unknown-outcome write (a
    /// tombstone no delete can explain, a value of a failed or foreign put).
    BadWinner,
    /// An acknowledged write is neither the winner nor older than it.
    LostWrite,
    /// An acknowledged delete is newer than the converged value: deleted data came back.
    Resurrection,
    /// A read returned a value id no put of that key wrote.
    PhantomRead,
    /// A read returned the value of a put that definitely failed.
    FailedWriteRead,
    /// Version integrity: one value id seen with two versions, or two writes sharing a version.
    VersionConflict,
    /// A value read after its expiry (beyond the clock offset), or an expiry that is not
    /// `physical_ms(version) + ttl_ms`.
    ExpiredRead,
    /// A version whose physical time is further ahead of the real time it was observed at (the
    /// write's ack, or the first read returning it) than the clock offset: a bad clock stamped
    /// it. Needs the history's clock record (its wall-clock anchor).
    FutureVersion,
    /// A write (acknowledged, or unknown-outcome with its version read) began more than the
    /// clock offset after another completed, yet got an older version: LWW lets the earlier one
    /// win, a lost update the offset bound promised could not happen.
    RealTimeInversion,
    /// A read completed before the write of what it returned was invoked.
    Causality,
    /// Reported, not failed: a read missed acknowledged writes that completed before it began.
    StaleRead,
}

impl AnomalyClass {
    /// Every class, in report order.
    pub const ALL: [Self; 13] = [
        Self::Divergence,
        Self::UnverifiedKey,
        Self::BadWinner,
        Self::LostWrite,
        Self::Resurrection,
        Self::PhantomRead,
        Self::FailedWriteRead,
        Self::VersionConflict,
        Self::ExpiredRead,
        Self::FutureVersion,
        Self::RealTimeInversion,
        Self::Causality,
        Self::StaleRead,
    ];

    /// False for the classes eventual consistency allows (reported for measurement only).
    pub const fn is_violation(self) -> bool {
        !matches!(self, Self::StaleRead)
    }

    /// The snake_case name used in the text and JSON reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Divergence => "divergence",
            Self::UnverifiedKey => "unverified_key",
            Self::BadWinner => "bad_winner",
            Self::LostWrite => "lost_write",
            Self::Resurrection => "resurrection",
            Self::PhantomRead => "phantom_read",
            Self::FailedWriteRead => "failed_write_read",
            Self::VersionConflict => "version_conflict",
            Self::ExpiredRead => "expired_read",
            Self::FutureVersion => "future_version",
            Self::RealTimeInversion => "real_time_inversion",
            Self::Causality => "causality",
            Self::StaleRead => "stale_read",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// One operation taking part in an anomaly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OpRef {
    /// 1-based CSV line of the operation.
    pub line: u64,
    /// Its op_id.
    pub op_id: u64,
    /// What it was.
    pub kind: OpKind,
    /// Its outcome.
    pub outcome: Outcome,
    /// Its part in the anomaly ("lost write", "winner", "read", ...).
    pub role: String,
}

impl OpRef {
    pub(crate) fn new(op: &Op, role: impl Into<String>) -> Self {
        Self {
            line: op.line,
            op_id: op.op_id,
            kind: op.kind,
            outcome: op.outcome,
            role: role.into(),
        }
    }
}

/// How stale a stale read was.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Staleness {
    /// Acknowledged writes newer than what the read returned, completed before it began.
    pub versions: u64,
    /// From the first of those writes' completion to the read's start, in ms.
    pub ms: f64,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// Its class.
    pub class: AnomalyClass,
    /// The key (empty for history-wide findings).
    pub key: String,
    /// What happened, in a sentence naming versions and value ids.
    pub message: String,
    /// The operations involved.
    pub ops: Vec<OpRef>,
    /// For stale reads only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staleness: Option<Staleness>,
}

/// Counts for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Rows in the history.
    pub operations: u64,
    /// Distinct keys.
    pub keys: u64,
    /// Keys whose convergence was verified (with final reads of at least one replica).
    pub keys_verified: u64,
    /// Distinct replicas named by final reads.
    pub replicas: u64,
    /// Puts by outcome.
    pub puts: OutcomeCounts,
    /// Deletes by outcome.
    pub deletes: OutcomeCounts,
    /// Gets during the run by outcome.
    pub gets: OutcomeCounts,
    /// Final reads by outcome.
    pub final_reads: OutcomeCounts,
    /// Unknown-outcome writes whose effect was observed (read, or won).
    pub unknown_writes_applied: u64,
    /// Stale reads / ok gets (0 when there are none).
    pub stale_read_share: f64,
    /// The clock offset used, ms.
    pub max_clock_offset_ms: f64,
    /// Unix ms at the run's zero, from the history's clock record; `None` without one (then
    /// `future_version` is not checked).
    pub anchor_unix_ms: Option<u64>,
    /// Clock faults the clock record lists.
    pub clock_faults: u64,
    /// From the last run operation's completion to the first final read, ms: the time loadgen
    /// spent healing and waiting for convergence (hints drained, members up). `None` without a
    /// final phase.
    pub quiesce_ms: Option<f64>,
}

/// The verdict: summary, per-class counts, listed anomalies.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The counts.
    pub summary: Summary,
    /// Count per class, all classes, in [`AnomalyClass::ALL`] order.
    pub counts: Vec<(AnomalyClass, u64)>,
    /// Anomalies, up to the cap per class, grouped by class.
    pub anomalies: Vec<Anomaly>,
    /// True when no violation (stale reads do not count) was found.
    pub valid: bool,
}

impl Report {
    /// The number of anomalies of `class` (all, not only the listed ones).
    pub fn count(&self, class: AnomalyClass) -> u64 {
        self.counts
            .iter()
            .find(|(c, _)| *c == class)
            .map_or(0, |(_, n)| *n)
    }

    /// The classes with at least one violation.
    pub fn violations(&self) -> Vec<AnomalyClass> {
        self.counts
            .iter()
            .filter(|(c, n)| c.is_violation() && *n > 0)
            .map(|(c, _)| *c)
            .collect()
    }

    /// The human report: summary, per-class counts, then up to `show` anomalies per class.
    pub fn render_text(&self, show: usize) -> String {
        let s = &self.summary;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "history: {} operations, {} keys ({} verified by final reads of {} replicas)",
            s.operations, s.keys, s.keys_verified, s.replicas
        );
        for (name, c) in [
            ("puts", &s.puts),
            ("deletes", &s.deletes),
            ("gets", &s.gets),
            ("final reads", &s.final_reads),
        ] {
            let _ = writeln!(
                o,
                "  {name:<12} {:>9}  ok {:>9}  fail {:>7}  unknown {:>7}",
                c.total(),
                c.ok,
                c.fail,
                c.unknown
            );
        }
        let _ = writeln!(
            o,
            "  unknown-outcome writes observed applied: {}; stale-read share {:.4}%; clock offset {} ms",
            s.unknown_writes_applied,
            s.stale_read_share * 100.0,
            s.max_clock_offset_ms
        );
        match s.anchor_unix_ms {
            Some(a) => {
                let _ = writeln!(
                    o,
                    "  wall-clock anchor {a} ms (Unix); {} clock fault(s) recorded",
                    s.clock_faults
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "  no clock record (history.clock.json): future_version not checked"
                );
            }
        }
        if let Some(q) = s.quiesce_ms {
            let _ = writeln!(
                o,
                "  final phase began {q:.0} ms after the last operation (healing + convergence wait)"
            );
        }
        let _ = writeln!(o, "anomalies:");
        for (class, n) in &self.counts {
            let tag = if class.is_violation() {
                "violation"
            } else {
                "reported "
            };
            let _ = writeln!(o, "  {:<20} {tag} {n:>9}", class.name());
        }
        for class in AnomalyClass::ALL {
            let listed: Vec<&Anomaly> = self
                .anomalies
                .iter()
                .filter(|a| a.class == class)
                .take(show)
                .collect();
            if listed.is_empty() {
                continue;
            }
            let _ = writeln!(
                o,
                "\n{} ({} of {}):",
                class.name(),
                listed.len(),
                self.count(class)
            );
            for a in listed {
                let key = if a.key.is_empty() {
                    String::new()
                } else {
                    format!("key {:?}: ", a.key)
                };
                let _ = writeln!(o, "  - {key}{}", a.message);
                for r in &a.ops {
                    let _ = writeln!(
                        o,
                        "      line {:>8}  op {:>8}  {:<10} {:<7} {}",
                        r.line,
                        r.op_id,
                        r.kind.as_str(),
                        r.outcome.as_str(),
                        r.role
                    );
                }
            }
        }
        let _ = writeln!(
            o,
            "\nverdict: {}",
            if self.valid {
                "VALID".to_string()
            } else {
                let v: Vec<&str> = self.violations().iter().map(|c| c.name()).collect();
                format!("VIOLATIONS ({})", v.join(", "))
            }
        );
        o
    }
}

/// Collects findings while the rules run: counts everything, keeps up to `cap` per class.
#[derive(Debug)]
pub(crate) struct Findings {
    cap: usize,
    counts: [u64; AnomalyClass::ALL.len()],
    listed: Vec<Anomaly>,
}

impl Findings {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            counts: [0; AnomalyClass::ALL.len()],
            listed: Vec::new(),
        }
    }

    /// Records one anomaly; `build` runs only when it will be listed (formatting a million
    /// stale-read messages would dominate the run time).
    pub fn push(&mut self, class: AnomalyClass, build: impl FnOnce() -> Anomaly) {
        let i = class.index();
        self.counts[i] += 1;
        if self.counts[i] <= self.cap as u64 {
            let a = build();
            debug_assert_eq!(a.class, class);
            self.listed.push(a);
        }
    }

    pub fn count(&self, class: AnomalyClass) -> u64 {
        self.counts[class.index()]
    }

    /// The counts in class order and the listed anomalies sorted by class, then first line.
    pub fn finish(mut self) -> (Vec<(AnomalyClass, u64)>, Vec<Anomaly>) {
        self.listed.sort_by_key(|a| {
            (
                a.class,
                a.ops.iter().map(|o| o.line).min().unwrap_or_default(),
            )
        });
        let counts = AnomalyClass::ALL
            .iter()
            .map(|c| (*c, self.counts[c.index()]))
            .collect();
        (counts, self.listed)
    }
}
