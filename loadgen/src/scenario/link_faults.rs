//! Validation of link faults (`[[fault]] kind = "link"`, actions loss, slow and restore): the
//! directed link, the drop probability of a loss, the delay, jitter and bandwidth of a slow
//! link, `until_s`, the fields other kinds own, and the timeline (one link fault in force at a
//! time; a restore needs one to end; slow links never beside partitions or losses). Like
//! partitions they need loadgen's own kvstore nodes in the run's network namespace, and they
//! leave processes alone.

use super::invalid::{Invalid, bad};
use super::{FaultAction, FaultKind, FaultSpec, NodeKeyword, NodeSelector, Scenario, StoreKind};

/// The longest delay or jitter a slow link takes: 10 s (longer ones only time out every call).
pub const MAX_DELAY_MS: u64 = 10_000;
/// The lowest bandwidth a slow link takes: 1 KiB/s (below it a single gossip message takes
/// seconds).
pub const MIN_BYTES_PER_SEC: u64 = 1024;

/// Checks `f`; `Ok(true)` when it is a (valid) link fault, `Ok(false)` for another kind
/// carrying no link field.
pub(super) fn validate(
    s: &Scenario,
    f: &FaultSpec,
    field: &dyn Fn(&str) -> String,
) -> Result<bool, Invalid> {
    let link_kind = f.kind == Some(FaultKind::Link);
    let slow_fields = [
        ("delay_ms", f.delay_ms.is_some()),
        ("jitter_ms", f.jitter_ms.is_some()),
        ("bytes_per_sec", f.bytes_per_sec.is_some()),
    ];
    if !f.action.is_link() {
        if link_kind {
            return bad(
                &field("action"),
                format!(
                    "a link fault's action is loss, slow or restore, not {}",
                    f.action.name()
                ),
            );
        }
        if f.probability.is_some() {
            return bad(
                &field("probability"),
                format!("only link loss takes it, not {}", f.action.name()),
            );
        }
        if let Some((name, _)) = slow_fields.iter().find(|(_, set)| *set) {
            return bad(
                &field(name),
                format!("only link slow takes it, not {}", f.action.name()),
            );
        }
        return Ok(false);
    }
    if !link_kind {
        return bad(
            &field("kind"),
            format!("{} is a link fault: set kind = \"link\"", f.action.name()),
        );
    }
    if !s.cluster.is_local() || s.cluster.kind != StoreKind::Kvstore {
        return bad(
            &field("kind"),
            "link faults need loadgen's own kvstore nodes (each on its own loopback address in \
             a network namespace the run creates)",
        );
    }
    for (name, set) in [
        ("delta_ms", f.delta_ms.is_some()),
        ("period_ms", f.period_ms.is_some()),
        ("rate", f.rate.is_some()),
    ] {
        if set {
            return bad(&field(name), "link faults do not take it");
        }
    }
    let nodes = s.cluster.node_count();
    if f.action == FaultAction::Restore {
        for (name, set) in [
            ("to", f.to.is_some()),
            ("probability", f.probability.is_some()),
            ("until_s", f.until_s.is_some()),
        ]
        .into_iter()
        .chain(slow_fields)
        {
            if set {
                return bad(
                    &field(name),
                    "restore ends every link loss and slow link; it takes no parameter",
                );
            }
        }
        if f.node != NodeSelector::Named(NodeKeyword::All) {
            return bad(&field("node"), "restore acts on every link: leave node out");
        }
        return Ok(true);
    }
    let action = f.action.name();
    let index = |name: &str, sel: Option<NodeSelector>| -> Result<u32, Invalid> {
        match sel {
            Some(NodeSelector::Index(n)) if n < nodes => Ok(n),
            Some(NodeSelector::Index(n)) => bad(
                &field(name),
                format!("node {n} does not exist ({nodes} nodes)"),
            ),
            _ => bad(
                &field(name),
                format!("{action} needs node indexes: the link from `node` to `to`"),
            ),
        }
    };
    let from = index("node", Some(f.node))?;
    let to = index("to", f.to.map(NodeSelector::Index))?;
    if from == to {
        return bad(
            &field("to"),
            format!("a link joins two nodes: to = node = {to}"),
        );
    }
    if f.action == FaultAction::Loss {
        if let Some((name, _)) = slow_fields.iter().find(|(_, set)| *set) {
            return bad(&field(name), "only link slow takes it, not loss");
        }
        match f.probability {
            Some(p) if p > 0.0 && p <= 1.0 => {}
            Some(p) => {
                return bad(
                    &field("probability"),
                    format!("the share of packets dropped, in (0, 1], got {p}"),
                );
            }
            None => {
                return bad(
                    &field("probability"),
                    "loss needs the share of packets dropped",
                );
            }
        }
    } else {
        slow(f, field)?;
    }
    if let Some(u) = f.until_s {
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

/// The fields of a `slow` link: a delay (required), a jitter and a bandwidth within bounds.
fn slow(f: &FaultSpec, field: &dyn Fn(&str) -> String) -> Result<(), Invalid> {
    if f.probability.is_some() {
        return bad(&field("probability"), "only link loss takes it, not slow");
    }
    match f.delay_ms {
        Some(d) if d <= MAX_DELAY_MS => {}
        Some(d) => {
            return bad(
                &field("delay_ms"),
                format!("at most {MAX_DELAY_MS} ms, got {d}"),
            );
        }
        None if f.bytes_per_sec.is_some() => {}
        None => {
            return bad(
                &field("delay_ms"),
                "slow needs a delay (delay_ms) or a bandwidth (bytes_per_sec)",
            );
        }
    }
    if let Some(j) = f.jitter_ms {
        if j > MAX_DELAY_MS {
            return bad(
                &field("jitter_ms"),
                format!("at most {MAX_DELAY_MS} ms, got {j}"),
            );
        }
        if f.delay_ms.is_none() {
            return bad(&field("jitter_ms"), "jitter varies a delay: set delay_ms");
        }
    }
    if let Some(b) = f.bytes_per_sec
        && b < MIN_BYTES_PER_SEC
    {
        return bad(
            &field("bytes_per_sec"),
            format!("at least {MIN_BYTES_PER_SEC}, got {b}"),
        );
    }
    Ok(())
}

/// True when the run steers node-to-node connections through shaping proxies (a `slow`
/// fault): they are set up before the nodes start, since a connection is steered when it opens.
pub fn shapes_links(s: &Scenario) -> bool {
    s.faults.iter().any(|f| f.action == FaultAction::Slow)
}

/// Checks the link timeline: one link fault (loss or slow) in force at a time, every restore
/// ends one, and slow links never beside partitions or losses: a steered connection's packets
/// run to the proxy on 127.0.0.1, which the drop rules (by node address) do not name, so a cut
/// would silently not act.
pub(super) fn timeline(s: &Scenario) -> Result<(), Invalid> {
    if shapes_links(s)
        && let Some(i) = s
            .faults
            .iter()
            .position(|f| f.action.is_partition() || f.action == FaultAction::Loss)
    {
        return bad(
            &format!("fault[{i}].action"),
            format!(
                "{} cannot run beside a slow link (its connections go through a proxy the \
                 drop rules do not see): put them in separate scenarios",
                s.faults[i].action.name()
            ),
        );
    }
    super::fault_timeline::one_at_a_time(
        s,
        FaultAction::is_link,
        FaultAction::Restore,
        "link fault",
    )
}
