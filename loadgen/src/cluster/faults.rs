//! The fault timeline: applies each `[[fault]]` at its time (seconds after measuring began),
//! to the local cluster's processes (signals) or, for an existing cluster, by running the
//! configured shell command. Every fault applied is recorded with its actual time, and what is
//! in force is published for the status line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

impl FaultLog {
    /// A log for `nodes` nodes, all up.
    pub fn new(nodes: usize) -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            states: Mutex::new(vec![NodeState::Up; nodes]),
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
        let in_force: Vec<String> = states
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != NodeState::Up)
            .map(|(i, s)| {
                format!(
                    "{} n{i}",
                    if *s == NodeState::Killed {
                        "kill"
                    } else {
                        "pause"
                    }
                )
            })
            .collect();
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

async fn apply(target: &FaultTarget, action: FaultAction, node: u32) -> Result<(), String> {
    match target {
        FaultTarget::Local(cluster) => {
            let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
            match action {
                FaultAction::Kill => c.kill(node),
                FaultAction::Restart => c.restart(node),
                FaultAction::Pause => c.pause(node),
                FaultAction::Resume => c.resume(node),
            }
        }
        FaultTarget::Peers(cluster) => {
            let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
            match action {
                FaultAction::Kill => c.kill(node),
                FaultAction::Restart => c.restart(node),
                FaultAction::Pause => c.pause(node),
                FaultAction::Resume => c.resume(node),
            }
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
                Ok(Ok(_)) => Ok(()),
            }
        }
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
        let result = apply(&target, f.action, node).await;
        let at_s = Instant::now()
            .saturating_duration_since(origin)
            .as_secs_f64();
        if result.is_ok() {
            let mut states = log.states.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = states.get_mut(node as usize) {
                *s = NodeState::after(f.action);
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
            });
    }
}
