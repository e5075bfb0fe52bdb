//! The fault timeline: applies each `[[fault]]` at its time (seconds after measuring began),
//! to the local cluster's processes (signals) or, for an existing cluster, by running the
//! configured shell command. Every fault applied is recorded with its actual time, and what is
//! in force is published for the status line. Clock faults (local clusters only) rewrite the
//! node's libfaketime file; a ticker beside the timeline keeps strobes and drifts moving, and
//! each clock fault applied is kept with its instant for the history's clock record. Disk faults
//! damage a killed node's files ([`super::disk`]) and record what they did.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::clock::detail;
use super::disk;
use super::launcher::LocalCluster;
use super::peers::PeerCluster;
use crate::results::FaultEvent;
use crate::scenario::{FaultAction, FaultCommands, FaultSpec, NodeState};

/// Longest a configured fault command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Where faults go.
#[derive(Debug, Clone)]
pub enum FaultTarget {
    /// Signals to loadgen's own node processes.
    Local(Arc<Mutex<LocalCluster>>),
    /// Signals to the peer store's members loadgen started.
    Peers(Arc<Mutex<PeerCluster>>),
    /// Shell commands for an existing cluster.
    Commands {
        /// The commands.
        commands: FaultCommands,
        /// Endpoint of each node index, for `{addr}`.
        endpoints: Vec<String>,
    },
}

/// Shared view of the timeline's progress.
#[derive(Debug, Default)]
pub struct FaultLog {
    /// Faults applied, in order.
    pub events: Mutex<Vec<FaultEvent>>,
    /// Node states as the timeline left them (for endpoints clusters, as commanded).
    pub states: Mutex<Vec<NodeState>>,
    /// Clock faults applied: when, the fault, the node index.
    pub clock_faults: Mutex<Vec<(Instant, FaultSpec, u32)>>,
}

impl FaultLog {
    /// A log for `nodes` nodes, all up.
    pub fn new(nodes: usize) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            states: Mutex::new(vec![NodeState::Up; nodes]),
            clock_faults: Mutex::new(Vec::new()),
        }
    }

    /// The applied events.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One line for the status: node states and faults in force.
    pub fn describe(&self) -> String {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let nodes: Vec<String> = states
            .iter()
            .enumerate()
            .map(|(i, s)| format!("n{i}:{}", s.name()))
            .collect();
        let mut in_force: Vec<String> = states
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != NodeState::Up)
            .map(|(i, s)| {
                format!(
                    "{} n{i}",
                    match s {
                        NodeState::Killed => "kill",
                        NodeState::Gone => "gone",
                        _ => "pause",
                    }
                )
            })
            .collect();
        // The last clock fault of each node, unless a reset (or a strobe's end) closed it.
        let clocks = self.clock_faults.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for i in 0..states.len() as u32 {
            if let Some((at, f, _)) = clocks.iter().rev().find(|(_, _, n)| *n == i) {
                let ended = f.action == FaultAction::Reset
                    || (f.action == FaultAction::Strobe
                        && f.until_s.zip(f.at_s.into()).is_some_and(|(u, a)| {
                            now >= *at + Duration::from_secs_f64((u - a).max(0.0))
                        }));
                if !ended {
                    in_force.push(format!("clock {} n{i}", f.action.name()));
                }
            }
        }
        // The last partition, unless healed.
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = events
            .iter()
            .rev()
            .find(|e| e.action.is_partition() && e.error.is_none())
            && e.action != FaultAction::Heal
        {
            in_force.push(format!("partition {}", e.action.name()));
        }
        if let Some(e) = events
            .iter()
            .rev()
            .find(|e| e.action.is_link() && e.error.is_none())
            && e.action == FaultAction::Loss
        {
            in_force.push(format!("link loss n{}", e.node));
        }
        format!(
            "{} | fault: {}",
            nodes.join(" "),
            if in_force.is_empty() {
                "none".to_string()
            } else {
                in_force.join(", ")
            }
        )
    }
}

/// Applies `f` to `node`; what a disk fault did (which file, which byte) comes back for
/// `faults.csv`.
async fn apply(
    target: &FaultTarget,
    f: &FaultSpec,
    node: u32,
    until: Option<Instant>,
) -> Result<Option<String>, String> {
    let action = f.action;
    if action.is_membership() {
        // Awaits the cluster (a join's ring, a leave's handoff): the lock is not held across.
        return match target {
            FaultTarget::Local(cluster) => super::membership::apply(cluster, action, node)
                .await
                .map(Some),
            _ => Err(format!(
                "{} needs loadgen's own kvstore nodes",
                action.name()
            )),
        };
    }
    match target {
        FaultTarget::Local(cluster) => {
            let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
            let done = |r: Result<(), String>| r.map(|()| None);
            match action {
                FaultAction::Kill => done(c.kill(node)),
                FaultAction::Restart => done(c.restart(node)),
                FaultAction::Pause => done(c.pause(node)),
                FaultAction::Resume => done(c.resume(node)),
                FaultAction::Bump
                | FaultAction::Strobe
                | FaultAction::Drift
                | FaultAction::Reset => done(c.clock(node, f, Instant::now(), until)),
                FaultAction::CrashAll => done(c.crash_all()),
                FaultAction::Bitflip
                | FaultAction::Truncate
                | FaultAction::CorruptSnapshot
                | FaultAction::DeleteSnapshot
                | FaultAction::DeleteHints => c
                    .damage(node, action, disk::seed_of(f.at_s, node))
                    .map(Some),
                FaultAction::DiskFull => c.fill_disk(node).map(Some),
                FaultAction::DiskFree => c.free_disk(node).map(Some),
                // Handled above, without the lock.
                FaultAction::Join
                | FaultAction::Leave
                | FaultAction::Wipe
                | FaultAction::Replace => {
                    Err("membership faults are applied without the lock".into())
                }
                a if a.is_partition() => c.partition(f).map(Some),
                a if a.is_link() => c.link(f).map(Some),
                _ => unreachable!("every action is matched above"),
            }
        }
        FaultTarget::Peers(cluster) => {
            let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
            match action {
                FaultAction::Kill => c.kill(node),
                FaultAction::Restart => c.restart(node),
                FaultAction::Pause => c.pause(node),
                FaultAction::Resume => c.resume(node),
                // Clock faults need libfaketime under loadgen's own nodes; crash_all is not
                // built for peers yet.
                other => Err(format!(
                    "{} faults are for kvstore nodes loadgen launches, not peer stores",
                    other.name()
                )),
            }
            .map(|()| None)
        }
        FaultTarget::Commands {
            commands,
            endpoints,
        } => {
            let template = commands
                .for_action(action)
                .ok_or_else(|| format!("no command configured for {}", action.name()))?;
            let addr = endpoints.get(node as usize).cloned().unwrap_or_default();
            let cmd = template
                .replace("{node}", &node.to_string())
                .replace("{addr}", &addr);
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .kill_on_drop(true)
                .output();
            match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
                Err(_) => Err(format!("`{cmd}` did not finish within {COMMAND_TIMEOUT:?}")),
                Ok(Err(e)) => Err(format!("`{cmd}`: {e}")),
                Ok(Ok(out)) if !out.status.success() => Err(format!(
                    "`{cmd}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Ok(Ok(_)) => Ok(None),
            }
        }
    }
}

/// How often faked clocks are brought up to date (strobe flips, drift steps).
const CLOCK_TICK: Duration = Duration::from_millis(10);

/// Keeps the local cluster's faked clocks moving until `cancel` is set.
async fn tick_clocks(cluster: Arc<Mutex<LocalCluster>>, cancel: Arc<AtomicBool>) {
    while !cancel.load(Ordering::Relaxed) {
        let r = cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tick_clocks(Instant::now());
        if let Err(e) = r {
            tracing::warn!("clock faults: {e}");
        }
        tokio::time::sleep(CLOCK_TICK).await;
    }
}

/// Applies `faults` (resolved: every node is an index) at `origin + at_s`, recording into
/// `log`. Stops early when `cancel` is set.
pub async fn run_timeline(
    faults: Vec<FaultSpec>,
    target: FaultTarget,
    origin: Instant,
    log: Arc<FaultLog>,
    cancel: Arc<AtomicBool>,
) {
    let ticker = match &target {
        FaultTarget::Local(c) if faults.iter().any(|f| f.action.is_clock()) => {
            Some(tokio::spawn(tick_clocks(c.clone(), cancel.clone())))
        }
        _ => None,
    };
    timeline(with_heals(faults), &target, origin, &log, &cancel).await;
    if let Some(t) = ticker {
        let _ = t.await;
    }
}

/// `faults` with a partition heal (a link restore) at the `until_s` of each partition (link
/// loss) that has one (validation leaves at most one of each in force at a time), sorted by
/// time, the ends first at equal times.
fn with_heals(mut faults: Vec<FaultSpec>) -> Vec<FaultSpec> {
    let heals: Vec<FaultSpec> = faults
        .iter()
        .filter(|f| f.action.is_partition() || f.action.is_link())
        .filter_map(|f| {
            Some(FaultSpec {
                at_s: f.until_s?,
                action: if f.action.is_link() {
                    FaultAction::Restore
                } else {
                    FaultAction::Heal
                },
                until_s: None,
                to: None,
                probability: None,
                delay_ms: None,
                jitter_ms: None,
                bytes_per_sec: None,
                clients: None,
                node: crate::scenario::NodeSelector::Named(crate::scenario::NodeKeyword::All),
                ..f.clone()
            })
        })
        .collect();
    faults.extend(heals);
    let ends = |f: &FaultSpec| matches!(f.action, FaultAction::Heal | FaultAction::Restore);
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s).then(ends(b).cmp(&ends(a))));
    faults
}

async fn timeline(
    faults: Vec<FaultSpec>,
    target: &FaultTarget,
    origin: Instant,
    log: &FaultLog,
    cancel: &AtomicBool,
) {
    for f in faults {
        let at = origin + Duration::from_secs_f64(f.at_s);
        while Instant::now() < at {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            let left = at.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
        let node = f.node_index().unwrap_or(0);
        let until = f.until_s.map(|u| origin + Duration::from_secs_f64(u));
        let applied = Instant::now();
        let result = apply(target, &f, node, until).await;
        let at_s = applied.saturating_duration_since(origin).as_secs_f64();
        let detail = match &result {
            Ok(Some(done)) => done.clone(),
            _ => detail(&f),
        };
        if result.is_ok() {
            if f.action.is_partition() || f.action.is_link() {
                // Processes untouched: node states stay as they are.
            } else if f.action.is_clock() {
                log.clock_faults
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((applied, f.clone(), node));
            } else {
                let mut states = log.states.lock().unwrap_or_else(|p| p.into_inner());
                if f.action == FaultAction::Join {
                    states.push(NodeState::Up);
                } else if let Some(s) = states.get_mut(node as usize) {
                    *s = NodeState::after(f.action);
                }
                if f.action == FaultAction::Replace {
                    states.push(NodeState::Up);
                }
            }
        }
        log.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FaultEvent {
                at_s,
                action: f.action,
                node,
                error: result.err(),
                // A membership change lasts until it completed.
                until_s: if f.action.is_membership() {
                    Some(
                        Instant::now()
                            .saturating_duration_since(origin)
                            .as_secs_f64(),
                    )
                } else {
                    f.until_s
                },
                detail,
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{FaultKind, NodeKeyword, NodeSelector};

    fn cut(at_s: f64, action: FaultAction, until_s: Option<f64>) -> FaultSpec {
        FaultSpec {
            at_s,
            action,
            node: NodeSelector::Index(2),
            kind: Some(FaultKind::Partition),
            delta_ms: None,
            period_ms: None,
            rate: None,
            until_s,
            to: None,
            probability: None,
            delay_ms: None,
            jitter_ms: None,
            bytes_per_sec: None,
            clients: None,
        }
    }

    #[test]
    fn a_partition_with_until_s_is_healed_then_before_the_next_cut() {
        let faults = with_heals(vec![
            cut(1.0, FaultAction::Isolate, Some(4.0)),
            cut(4.0, FaultAction::Halves, None),
            cut(6.0, FaultAction::Heal, None),
        ]);
        let seen: Vec<(f64, FaultAction)> = faults.iter().map(|f| (f.at_s, f.action)).collect();
        assert_eq!(
            seen,
            vec![
                (1.0, FaultAction::Isolate),
                (4.0, FaultAction::Heal),
                (4.0, FaultAction::Halves),
                (6.0, FaultAction::Heal),
            ]
        );
        assert_eq!(faults[1].node, NodeSelector::Named(NodeKeyword::All));
        assert_eq!(faults[1].until_s, None);
    }
}
