//! Validation of membership faults (`[[fault]] kind = "membership"`: join, leave, wipe,
//! replace). They change which nodes exist: join and replace start a node of the next index
//! (node ids are index + 1, so the new node's id is fresh), leave and replace end one for good
//! (its state becomes [`NodeState::Gone`]). The node states the caller tracks grow with them,
//! so later faults may name a joined node by its index.
//!
//! They need loadgen's own plaintext local kvstore cluster: loadgen starts the new processes
//! itself, and its TLS certificates are made for the launched nodes only.

use super::invalid::{Invalid, bad};
use super::{FaultAction, FaultKind, FaultSpec, NodeKeyword, NodeSelector, NodeState, Scenario};

/// Most node indexes a run may use, launched and added by join / replace together.
pub const MAX_NODES: usize = 32;

/// Checks `f` against the node `states` in force at its time and applies it to them;
/// `Ok(true)` when it is a (valid) membership fault, `Ok(false)` when it is not one.
pub(super) fn validate(
    s: &Scenario,
    f: &FaultSpec,
    field: &dyn Fn(&str) -> String,
    states: &mut Vec<NodeState>,
) -> Result<bool, Invalid> {
    let membership_kind = f.kind == Some(FaultKind::Membership);
    if !f.action.is_membership() {
        if membership_kind {
            return bad(
                &field("action"),
                format!(
                    "a membership fault's action is join, leave, wipe or replace, not {}",
                    f.action.name()
                ),
            );
        }
        return Ok(false);
    }
    if !membership_kind {
        return bad(
            &field("kind"),
            format!(
                "{} is a membership fault: set kind = \"membership\"",
                f.action.name()
            ),
        );
    }
    if !s.cluster.is_local() || s.cluster.kind != super::StoreKind::Kvstore {
        return bad(
            &field("kind"),
            "membership faults need a local kvstore cluster loadgen launches (it starts the new nodes)",
        );
    }
    if s.cluster.tls && f.action.adds_node() {
        return bad(
            &field("action"),
            format!(
                "{} starts a new node, but TLS certificates are made for the launched nodes only: \
                 drop cluster.tls",
                f.action.name()
            ),
        );
    }
    if f.delta_ms.is_some() || f.period_ms.is_some() || f.rate.is_some() || f.until_s.is_some() {
        return bad(
            &field("action"),
            "membership faults take at_s, action, node and kind only",
        );
    }
    if f.action.adds_node() && states.len() >= MAX_NODES {
        return bad(
            &field("action"),
            format!(
                "{} would start node {MAX_NODES}: at most {MAX_NODES} nodes per run",
                f.action.name()
            ),
        );
    }
    if f.action == FaultAction::Join {
        let next = states.len() as u32;
        match f.node {
            NodeSelector::Named(NodeKeyword::All) => {}
            NodeSelector::Index(n) if n == next => {}
            _ => {
                return bad(
                    &field("node"),
                    format!(
                        "join starts a new node, which takes the next index ({next}): leave node out"
                    ),
                );
            }
        }
        states.push(NodeState::Up);
        return Ok(true);
    }
    let live = states.iter().filter(|st| **st != NodeState::Gone).count();
    let target = match f.node {
        NodeSelector::Index(n) => {
            let Some(st) = states.get(n as usize) else {
                return bad(
                    &field("node"),
                    format!(
                        "node {n} does not exist ({} nodes at {} s)",
                        states.len(),
                        f.at_s
                    ),
                );
            };
            if *st != NodeState::Up {
                return bad(
                    &field("node"),
                    format!(
                        "{} needs node {n} up at {} s, but it is {}",
                        f.action.name(),
                        f.at_s,
                        st.name().to_lowercase()
                    ),
                );
            }
            n as usize
        }
        NodeSelector::Named(NodeKeyword::Random) => {
            match states.iter().position(|st| *st == NodeState::Up) {
                Some(n) => n,
                None => {
                    return bad(
                        &field("node"),
                        format!(
                            "{} of a random node at {} s: no node is up",
                            f.action.name(),
                            f.at_s
                        ),
                    );
                }
            }
        }
        NodeSelector::Named(NodeKeyword::All) => {
            return bad(
                &field("node"),
                format!("{} needs a node index or \"random\"", f.action.name()),
            );
        }
    };
    if f.action == FaultAction::Leave && live <= s.cluster.replication as usize {
        return bad(
            &field("node"),
            format!(
                "leave at {} s would leave {} members for replication {}: the ring needs at least N",
                f.at_s,
                live - 1,
                s.cluster.replication
            ),
        );
    }
    states[target] = NodeState::after(f.action);
    if f.action.adds_node() {
        states.push(NodeState::Up);
    }
    Ok(true)
}
