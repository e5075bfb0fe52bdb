//! Per-fault figures: throughput, p99 and errors before, during and after each fault, and the
//! recovery time.
//!
//! A fault's interval runs from a `kill` (or `pause`) to the `restart` (or `resume`) of the same
//! node, or to the end of the run. *Before* is the time since the previous fault ended (or the
//! start), *after* the time until the next fault begins (or the end). A second belongs to the
//! window that contains its middle. *Recovery* is the number of seconds from the fault's end to
//! the start of the first second (after the end, by its middle) whose throughput is back at 90%
//! of *before* with no errors, so 0 means "the first second after healing was already healthy";
//! its resolution is one second. Empty when that never happens within the run.
//!
//! Pure computation over the per-second measurements; [`write()`] saves `phases.csv`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::FaultEvent;
use crate::LoadgenError;
use crate::measure::{Measurements, OpStats, SECOND_SIGFIG, quantile_or_zero};
use crate::scenario::FaultAction;

/// Throughput recovered when a second reaches this share of the pre-fault throughput.
pub const RECOVERED_SHARE: f64 = 0.9;

/// Figures of one window.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Window {
    /// Mean successful operations per second.
    pub ops_per_sec: f64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Failed operations.
    pub errors: u64,
    /// Whole seconds in the window.
    pub seconds: u64,
}

/// One fault's phases.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// `kill`+`restart` or `pause`+`resume`, with the node.
    pub label: String,
    /// The fault's first action.
    pub action: FaultAction,
    /// The node.
    pub node: u32,
    /// When the fault began, seconds.
    pub start_s: f64,
    /// When it ended (healed), seconds; `None` when it lasted to the end.
    pub end_s: Option<f64>,
    /// Before the fault.
    pub before: Window,
    /// During it.
    pub during: Window,
    /// After it healed.
    pub after: Window,
    /// Seconds from healing until throughput is back at 90% of before and errors stop.
    pub recovery_s: Option<f64>,
}

/// Pairs each kill/pause with the restart/resume of the same node; a clock bump, strobe or
/// drift lasts until its own `until_s` (strobe), the node's next clock fault, or a reset; a
/// disk fault names the kill interval it was done in (the last one, when several were).
pub fn intervals(events: &[FaultEvent]) -> Vec<(FaultAction, u32, f64, Option<f64>)> {
    let mut out: Vec<(FaultAction, u32, f64, Option<f64>)> = Vec::new();
    for e in events
        .iter()
        .filter(|e| e.error.is_none() || !e.action.is_clock())
    {
        if e.action.is_clock() {
            // A new clock fault on a node ends the one in force there.
            if let Some(iv) = out
                .iter_mut()
                .rev()
                .find(|iv| iv.0.is_clock() && iv.1 == e.node && iv.3.is_none_or(|u| u > e.at_s))
            {
                iv.3 = Some(e.at_s);
            }
            let until = if e.action == FaultAction::Strobe {
                e.until_s
            } else {
                None
            };
            if e.action != FaultAction::Reset {
                out.push((e.action, e.node, e.at_s, until));
            }
            continue;
        }
        if e.action.is_link() {
            // A loss or a slow link lasts until the next link action (a restore, or at its
            // until_s the restore the timeline adds).
            if let Some(iv) = out
                .iter_mut()
                .rev()
                .find(|iv| iv.0.is_link() && iv.3.is_none())
            {
                iv.3 = Some(e.at_s);
            }
            if e.action != FaultAction::Restore && e.error.is_none() {
                out.push((e.action, e.node, e.at_s, None));
            }
            continue;
        }
        if e.action.is_partition() {
            // A partition lasts until the next partition action (a heal, or at its until_s
            // the heal the timeline adds); a new shape would also end it.
            if let Some(iv) = out
                .iter_mut()
                .rev()
                .find(|iv| iv.0.is_partition() && iv.3.is_none())
            {
                iv.3 = Some(e.at_s);
            }
            if e.action != FaultAction::Heal && e.error.is_none() {
                out.push((e.action, e.node, e.at_s, None));
            }
            continue;
        }
        match e.action {
            FaultAction::Kill | FaultAction::Pause | FaultAction::DiskFull => {
                out.push((e.action, e.node, e.at_s, None))
            }
            // Killed and restarted at once: recovery counts from the restart.
            FaultAction::CrashAll => out.push((e.action, e.node, e.at_s, Some(e.at_s))),
            FaultAction::Restart | FaultAction::Resume | FaultAction::DiskFree => {
                let opens = |a: FaultAction| match e.action {
                    FaultAction::Restart => a == FaultAction::Kill || a.is_damage(),
                    FaultAction::DiskFree => a == FaultAction::DiskFull,
                    _ => a == FaultAction::Pause,
                };
                if let Some(iv) = out
                    .iter_mut()
                    .rev()
                    .find(|iv| opens(iv.0) && iv.1 == e.node && iv.3.is_none())
                {
                    iv.3 = Some(e.at_s);
                }
            }
            // Damage is done while the node is down: the kill's interval becomes the disk
            // fault's (labelled, shaded, cut into phases as such), closed by the restart.
            FaultAction::Bitflip
            | FaultAction::Truncate
            | FaultAction::CorruptSnapshot
            | FaultAction::DeleteSnapshot
            | FaultAction::DeleteHints => {
                if let Some(iv) = out.iter_mut().rev().find(|iv| {
                    (iv.0 == FaultAction::Kill || iv.0.is_damage())
                        && iv.1 == e.node
                        && iv.3.is_none()
                }) {
                    iv.0 = e.action;
                }
            }
            FaultAction::Bump | FaultAction::Strobe | FaultAction::Drift | FaultAction::Reset => {}
            // From the start of the change until it completed (`until_s`: the ring lists the
            // joined node up, the leaving node's process ended, the wiped node runs again):
            // recovery counts from its completion.
            FaultAction::Join | FaultAction::Leave | FaultAction::Wipe | FaultAction::Replace => {
                out.push((e.action, e.node, e.at_s, Some(e.until_s.unwrap_or(e.at_s))))
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.2.total_cmp(&b.2));
    out
}

fn window(m: &Measurements, from: f64, to: f64, limit: u64) -> Window {
    let mut merged = OpStats::new(SECOND_SIGFIG);
    let mut seconds = 0;
    for s in 0..limit.min(m.seconds.len() as u64) {
        let mid = s as f64 + 0.5;
        if mid >= from && mid < to {
            merged.merge(&m.second_overall(s as usize));
            seconds += 1;
        }
    }
    Window {
        ops_per_sec: if seconds == 0 {
            0.0
        } else {
            merged.ok as f64 / seconds as f64
        },
        p99_us: quantile_or_zero(&merged.latency, 0.99),
        errors: merged.error_total(),
        seconds,
    }
}

/// The phases of every fault; `measured_seconds` bounds the whole seconds considered (the
/// partial tail is left out).
pub fn compute(m: &Measurements, events: &[FaultEvent], measured_seconds: u64) -> Vec<Phase> {
    let ivs = intervals(events);
    let end_of_run = measured_seconds as f64;
    ivs.iter()
        .enumerate()
        .map(|(i, &(action, node, start, end))| {
            let prev_end = if i == 0 {
                0.0
            } else {
                ivs[i - 1].3.unwrap_or(ivs[i - 1].2).min(start)
            };
            let next_start = ivs.get(i + 1).map(|n| n.2).unwrap_or(end_of_run);
            let before = window(m, prev_end, start, measured_seconds);
            let during = window(m, start, end.unwrap_or(end_of_run), measured_seconds);
            let after = match end {
                Some(e) => window(m, e, next_start.max(e), measured_seconds),
                None => Window::default(),
            };
            let recovery_s = end.and_then(|e| {
                // Like the windows: a second is after the heal when its middle is.
                let first = (e - 0.5).ceil().max(0.0) as u64;
                (first..measured_seconds.min(m.seconds.len() as u64)).find_map(|s| {
                    let st = m.second_overall(s as usize);
                    (st.ok as f64 >= RECOVERED_SHARE * before.ops_per_sec && st.error_total() == 0)
                        .then(|| (s as f64 - e).max(0.0))
                })
            });
            let healer = match action {
                FaultAction::Kill | FaultAction::CrashAll => "restart",
                FaultAction::DiskFull => "disk_free",
                a if a.is_damage() => "restart",
                a if a.is_clock() => "reset",
                a if a.is_membership() => "done",
                a if a.is_partition() => "heal",
                a if a.is_link() => "restore",
                _ => "resume",
            };
            Phase {
                label: format!(
                    "{} {}{}",
                    action.name(),
                    if action == FaultAction::CrashAll {
                        "(every node)".to_string()
                    } else if matches!(action, FaultAction::Halves | FaultAction::Ring) {
                        "(every link)".to_string()
                    } else {
                        format!("node {node}")
                    },
                    if end.is_some() {
                        format!(" + {healer}")
                    } else {
                        String::new()
                    }
                ),
                action,
                node,
                start_s: start,
                end_s: end,
                before,
                during,
                after,
                recovery_s,
            }
        })
        .collect()
}

/// Writes `phases.csv`.
pub fn write(path: &Path, phases: &[Phase]) -> Result<(), LoadgenError> {
    let mut out = String::from(
        "fault,node,start_s,end_s,before_ops_per_sec,before_p99_us,before_errors,\
         during_ops_per_sec,during_p99_us,during_errors,after_ops_per_sec,after_p99_us,\
         after_errors,recovery_s\n",
    );
    for p in phases {
        let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{:.3},{},{:.1},{},{},{:.1},{},{},{:.1},{},{},{}\n",
            p.label,
            p.node,
            p.start_s,
            opt(p.end_s),
            p.before.ops_per_sec,
            p.before.p99_us,
            p.before.errors,
            p.during.ops_per_sec,
            p.during.p99_us,
            p.during.errors,
            p.after.ops_per_sec,
            p.after.p99_us,
            p.after.errors,
            opt(p.recovery_s)
        ));
    }
    std::fs::write(path, out).map_err(|e| LoadgenError::results(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::OpKind;
    use crate::measure::{ErrorKind, OpStats};
    use std::time::Duration;

    /// Measurements with `ok[s]` successes and `err[s]` errors in second s.
    fn series(ok: &[u64], err: &[u64]) -> Measurements {
        let seconds = ok
            .iter()
            .zip(err)
            .map(|(&n, &e)| {
                let mut slot: [OpStats; 5] = std::array::from_fn(|_| OpStats::new(2));
                for _ in 0..n {
                    slot[0].record(1000, 900, Ok(()));
                }
                for _ in 0..e {
                    slot[0].record(0, 0, Err(ErrorKind::Unavailable));
                }
                slot
            })
            .collect();
        Measurements {
            seconds,
            totals: std::array::from_fn(|_| OpStats::new(3)),
            elapsed: Duration::from_secs(ok.len() as u64),
            kinds: vec![OpKind::Read],
        }
    }

    fn ev(at_s: f64, action: FaultAction) -> FaultEvent {
        FaultEvent {
            at_s,
            action,
            node: 1,
            error: None,
            until_s: None,
            detail: String::new(),
        }
    }

    #[test]
    fn a_partition_lasts_until_its_heal_and_a_failed_cut_opens_nothing() {
        let failed = FaultEvent {
            error: Some("iptables failed".into()),
            ..ev(7.0, FaultAction::Isolate)
        };
        let ivs = intervals(&[
            ev(1.0, FaultAction::Halves),
            ev(2.0, FaultAction::Kill),
            ev(4.0, FaultAction::Heal),
            ev(5.0, FaultAction::Restart),
            failed,
            ev(9.0, FaultAction::Heal),
        ]);
        assert_eq!(
            ivs,
            vec![
                (FaultAction::Halves, 1, 1.0, Some(4.0)),
                (FaultAction::Kill, 1, 2.0, Some(5.0)),
            ]
        );
        let m = series(&[100; 12], &[0; 12]);
        let phases = compute(
            &m,
            &[ev(3.0, FaultAction::Ring), ev(6.0, FaultAction::Heal)],
            12,
        );
        assert_eq!(phases[0].label, "ring (every link) + heal");
        assert_eq!(phases[0].end_s, Some(6.0));
    }

    #[test]
    fn a_loss_and_a_slow_link_last_until_their_restore() {
        let ivs = intervals(&[
            ev(1.0, FaultAction::Loss),
            ev(3.0, FaultAction::Restore),
            ev(4.0, FaultAction::Slow),
            ev(8.0, FaultAction::Restore),
        ]);
        assert_eq!(
            ivs,
            vec![
                (FaultAction::Loss, 1, 1.0, Some(3.0)),
                (FaultAction::Slow, 1, 4.0, Some(8.0)),
            ]
        );
        let m = series(&[100; 12], &[0; 12]);
        let phases = compute(
            &m,
            &[ev(4.0, FaultAction::Slow), ev(8.0, FaultAction::Restore)],
            12,
        );
        assert_eq!(phases[0].label, "slow node 1 + restore");
    }

    #[test]
    fn clock_faults_last_until_a_reset_the_next_clock_fault_or_a_strobes_end() {
        let strobe = FaultEvent {
            until_s: Some(4.0),
            ..ev(3.0, FaultAction::Strobe)
        };
        let ivs = intervals(&[
            ev(1.0, FaultAction::Bump),
            ev(2.0, FaultAction::Reset),
            strobe,
            ev(6.0, FaultAction::Drift),
            ev(7.0, FaultAction::Bump),
        ]);
        assert_eq!(
            ivs,
            vec![
                (FaultAction::Bump, 1, 1.0, Some(2.0)),
                (FaultAction::Strobe, 1, 3.0, Some(4.0)),
                (FaultAction::Drift, 1, 6.0, Some(7.0)),
                (FaultAction::Bump, 1, 7.0, None),
            ]
        );
    }

    #[test]
    fn a_disk_fault_names_the_kill_interval_it_was_done_in() {
        let events = [
            ev(2.0, FaultAction::Kill),
            ev(2.5, FaultAction::Bitflip),
            ev(2.6, FaultAction::DeleteHints),
            ev(4.0, FaultAction::Restart),
            ev(6.0, FaultAction::Kill),
            ev(7.0, FaultAction::Restart),
        ];
        assert_eq!(
            intervals(&events),
            vec![
                (FaultAction::DeleteHints, 1, 2.0, Some(4.0)),
                (FaultAction::Kill, 1, 6.0, Some(7.0)),
            ]
        );
        let m = series(&[10; 8], &[0; 8]);
        let p = compute(&m, &events, 8);
        assert_eq!(p[0].label, "delete_hints node 1 + restart");
    }

    #[test]
    fn before_during_after_and_recovery() {
        // 100/s for 4 s, a kill at 4 s: 40/s with errors, restart at 7 s, then 50, 95, 100.
        let m = series(
            &[100, 100, 100, 100, 40, 40, 40, 50, 95, 100],
            &[0, 0, 0, 0, 5, 5, 5, 1, 0, 0],
        );
        let p = compute(
            &m,
            &[ev(4.0, FaultAction::Kill), ev(7.0, FaultAction::Restart)],
            10,
        );
        assert_eq!(p.len(), 1);
        let p = &p[0];
        assert_eq!(p.label, "kill node 1 + restart");
        assert_eq!(p.before.ops_per_sec, 100.0);
        assert_eq!(p.before.seconds, 4);
        assert_eq!(p.during.ops_per_sec, 40.0);
        assert_eq!(p.during.errors, 15);
        assert_eq!(p.after.seconds, 3);
        // Second 7 has errors, second 8 reaches 95 >= 90 with none: 1 s after the restart.
        assert_eq!(p.recovery_s, Some(1.0));
    }

    #[test]
    fn healthy_right_after_the_heal_is_zero_recovery() {
        // Resumed a hair after second 3 began: second 3 is already back at full rate.
        let m = series(&[10, 10, 2, 10, 10], &[0, 0, 0, 0, 0]);
        let p = compute(
            &m,
            &[ev(2.0, FaultAction::Pause), ev(3.0003, FaultAction::Resume)],
            5,
        );
        assert_eq!(p[0].recovery_s, Some(0.0));
        assert_eq!(p[0].during.ops_per_sec, 2.0);
    }

    #[test]
    fn unhealed_fault_has_no_recovery() {
        let m = series(&[10, 10, 0, 0], &[0, 0, 3, 3]);
        let p = compute(&m, &[ev(2.0, FaultAction::Pause)], 4);
        assert_eq!(p[0].end_s, None);
        assert_eq!(p[0].recovery_s, None);
        assert_eq!(p[0].during.errors, 6);
    }

    #[test]
    fn never_recovering_is_reported_as_such() {
        let m = series(&[10, 10, 0, 5, 5], &[0, 0, 1, 0, 0]);
        let p = compute(
            &m,
            &[ev(2.0, FaultAction::Pause), ev(3.0, FaultAction::Resume)],
            5,
        );
        assert_eq!(p[0].recovery_s, None);
    }
}
