//! Validation of partition faults (`[[fault]] kind = "partition"`, actions isolate, halves,
//! bridge, one_way, ring, heal): the nodes each shape needs, `until_s`, `clients` (`"all"` or
//! `"follow"`, on a cut only; any other value is refused by serde, naming the field), the
//! fields other fault kinds own, and the timeline (one partition in force at a time: a new shape replaces nothing
//! silently, a heal needs a cut to heal). Partitions leave the nodes' processes alone, so they
//! take no part in the kill/restart/pause/resume state machine.
//!
//! They need loadgen's own kvstore nodes: each listens on its own loopback address inside the
//! private network namespace the run re-executes itself in, where iptables drops the packets.

use super::invalid::{Invalid, bad};
use super::{FaultAction, FaultKind, FaultSpec, NodeKeyword, NodeSelector, Scenario, StoreKind};

/// Checks `clients` of any fault `f`: only a partition that cuts takes it (its value, `"all"`
/// or `"follow"`, serde has checked).
pub(super) fn validate_clients(
    f: &FaultSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<(), Invalid> {
    if f.clients.is_some() && (!f.action.is_partition() || f.action == FaultAction::Heal) {
        return bad(
            &field("clients"),
            format!(
                "only a partition that cuts (isolate, halves, bridge, one_way, ring) takes it, \
                 not {} (a heal ends the clients' cuts with the rest)",
                f.action.name()
            ),
        );
    }
    Ok(())
}

/// Checks `f`; `Ok(true)` when it is a (valid) partition fault, `Ok(false)` for another kind
/// carrying no partition field.
pub(super) fn validate(
    s: &Scenario,
    f: &FaultSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<bool, Invalid> {
    let partition_kind = f.kind == Some(FaultKind::Partition);
    if !f.action.is_partition() {
        if partition_kind {
            return bad(
                &field("action"),
                format!(
                    "a partition fault's action is isolate, halves, bridge, one_way, ring or \
                     heal, not {}",
                    f.action.name()
                ),
            );
        }
        if f.to.is_some() && !f.action.is_link() {
            return bad(
                &field("to"),
                format!(
                    "only partition one_way and link loss take it, not {}",
                    f.action.name()
                ),
            );
        }
        return Ok(false);
    }
    if !partition_kind {
        return bad(
            &field("kind"),
            format!(
                "{} is a partition fault: set kind = \"partition\"",
                f.action.name()
            ),
        );
    }
    if !s.cluster.is_local() {
        return bad(
            &field("kind"),
            "partition faults need loadgen's own nodes (each on its own loopback address in \
             a network namespace the run creates)",
        );
    }
    if s.cluster.kind != StoreKind::Kvstore {
        return bad(
            &field("kind"),
            format!(
                "partition faults are for kvstore nodes, not {} (its members share one address)",
                s.cluster.kind.name()
            ),
        );
    }
    for (name, set) in [
        ("delta_ms", f.delta_ms.is_some()),
        ("period_ms", f.period_ms.is_some()),
        ("rate", f.rate.is_some()),
        ("probability", f.probability.is_some()),
    ] {
        if set {
            return bad(&field(name), "partitions do not take it");
        }
    }
    let nodes = s.cluster.node_count();
    let index = |name: &str, sel: Option<NodeSelector>| -> Result<u32, Invalid> {
        match sel {
            Some(NodeSelector::Index(n)) if n < nodes => Ok(n),
            Some(NodeSelector::Index(n)) => bad(
                &field(name),
                format!("node {n} does not exist ({nodes} nodes)"),
            ),
            _ => bad(
                &field(name),
                format!(
                    "{} needs a node index (partitions name their nodes; \"random\" and \"all\" \
                     are not taken)",
                    f.action.name()
                ),
            ),
        }
    };
    let all = NodeSelector::Named(NodeKeyword::All);
    match f.action {
        FaultAction::Isolate => {
            index("node", Some(f.node))?;
        }
        FaultAction::Bridge => {
            index("node", Some(f.node))?;
            if nodes < 3 {
                return bad(
                    &field("action"),
                    format!("a bridge needs a node and two halves: at least 3 nodes, got {nodes}"),
                );
            }
        }
        FaultAction::OneWay => {
            let from = index("node", Some(f.node))?;
            let to = index("to", f.to.map(NodeSelector::Index))?;
            if from == to {
                return bad(
                    &field("to"),
                    format!("one_way drops packets between two nodes: to = node = {to}"),
                );
            }
        }
        FaultAction::Halves | FaultAction::Ring | FaultAction::Heal => {
            if f.node != all {
                return bad(
                    &field("node"),
                    format!(
                        "{} acts on every node: leave node out or set \"all\"",
                        f.action.name()
                    ),
                );
            }
            if f.action == FaultAction::Ring && nodes < 4 {
                return bad(
                    &field("action"),
                    format!(
                        "on a ring of {nodes} nodes every node is a neighbour: ring cuts \
                         nothing below 4 nodes"
                    ),
                );
            }
            if f.action == FaultAction::Halves && nodes < 2 {
                return bad(&field("action"), "halves needs at least 2 nodes");
            }
        }
        _ => unreachable!("is_partition covers these"),
    }
    if f.action != FaultAction::OneWay && f.to.is_some() {
        return bad(
            &field("to"),
            format!("only one_way takes it, not {}", f.action.name()),
        );
    }
    if let Some(u) = f.until_s {
        if f.action == FaultAction::Heal {
            return bad(
                &field("until_s"),
                "heal ends a partition; it takes no until_s",
            );
        }
        if !(u.is_finite() && u > f.at_s) {
            return bad(
                &field("until_s"),
                format!("must be after at_s ({} s), got {u}", f.at_s),
            );
        }
        if let Some(d) = s.run.duration_s
            && u >= d as f64
        {
            return bad(
                &field("until_s"),
                format!("{u} s is not before the end of the run (duration_s = {d})"),
            );
        }
    }
    Ok(true)
}

/// Checks the partition timeline: at most one partition in force at a time (a new shape waits
/// for the heal or `until_s` of the one before), and every heal heals something.
pub(super) fn timeline(s: &Scenario) -> Result<(), Invalid> {
    super::fault_timeline::one_at_a_time(
        s,
        FaultAction::is_partition,
        FaultAction::Heal,
        "partition",
    )
}
