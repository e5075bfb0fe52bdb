//! Scenario validation: every impossible value is refused before anything starts, with the
//! field's dotted path and why. Pure checks on the parsed structure; no I/O.

use super::invalid::{Invalid, bad};
use super::{
    ClusterSpec, FaultAction, FaultKind, NodeKeyword, NodeSelector, NodeState, RunSpec, Scenario,
    ValueSize, WorkloadSpec,
};

/// Largest value the servers accept by default.
const MAX_VALUE: u64 = kvstore_proto::limits::DEFAULT_MAX_VALUE_BYTES as u64;
/// Smallest value when histories are recorded: the value id occupies the first bytes.
pub const MIN_HISTORY_VALUE: u64 = 16;

/// Checks the whole scenario; the first problem found is returned as `(field, why)`.
pub fn validate(s: &Scenario) -> Result<(), Invalid> {
    if s.name.is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return bad(
            "name",
            format!(
                "{:?} must be non-empty ASCII letters, digits, '_', '-' or '.' (it names a directory)",
                s.name
            ),
        );
    }
    cluster(&s.cluster)?;
    peer(s)?;
    workload(&s.workload)?;
    run(&s.run)?;
    if s.run.record_history && s.workload.value_size.min() < MIN_HISTORY_VALUE {
        return bad(
            "workload.value_size",
            format!(
                "record_history needs values of at least {MIN_HISTORY_VALUE} bytes to carry the value id, smallest is {}",
                s.workload.value_size.min()
            ),
        );
    }
    if s.run.final_repair
        && (!s.run.record_history || s.cluster.kind != crate::scenario::StoreKind::Kvstore)
    {
        return bad(
            "run.final_repair",
            "repairs before the history's final reads: it needs record_history = true and a \
             kvstore cluster",
        );
    }
    if let Some(n) = &s.nemesis {
        super::nemesis::validate(s, n)?;
    }
    faults(s)
}

fn cluster(c: &ClusterSpec) -> Result<(), Invalid> {
    if c.is_local() {
        if !(1..=16).contains(&c.nodes) {
            return bad(
                "cluster.nodes",
                format!("must be in 1..=16, got {}", c.nodes),
            );
        }
    } else {
        for (i, e) in c.endpoints.iter().enumerate() {
            if e.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return bad(
                    &format!("cluster.endpoints[{i}]"),
                    format!("{e:?} is not host:port"),
                );
            }
        }
        if !c.metrics_endpoints.is_empty() && c.metrics_endpoints.len() != c.endpoints.len() {
            return bad(
                "cluster.metrics_endpoints",
                format!(
                    "needs one address per endpoint ({}), got {}",
                    c.endpoints.len(),
                    c.metrics_endpoints.len()
                ),
            );
        }
    }
    let nodes = c.node_count();
    if c.replication == 0 || c.replication > nodes {
        return bad(
            "cluster.replication",
            format!(
                "N must be in 1..={nodes} (the node count), got {}",
                c.replication
            ),
        );
    }
    let quorums = [
        ("cluster.read_quorum", "R", c.read_quorum),
        ("cluster.write_quorum", "W", c.write_quorum),
    ];
    for (field, name, q) in quorums {
        if q == 0 || q > c.replication {
            let n = c.replication;
            return bad(field, format!("{name} must be in 1..=N ({n}), got {q}"));
        }
    }
    if c.is_local() && c.kind == crate::scenario::StoreKind::Kvstore {
        for (field, count) in [
            ("cluster.read_quorum", c.read_quorum),
            ("cluster.write_quorum", c.write_quorum),
        ] {
            if kvstore_proto::ConsistencyLevel::for_count(count as usize, c.replication as usize)
                .is_none()
            {
                return bad(
                    field,
                    format!(
                        "{count} of N={} is not a level the server offers: use 1 (one), {} (quorum) or {} (all)",
                        c.replication,
                        c.replication / 2 + 1,
                        c.replication
                    ),
                );
            }
        }
    }
    let fsync_ok = match c.fsync.as_str() {
        "always" | "never" => true,
        other => other
            .strip_prefix("interval=")
            .and_then(|ms| ms.parse::<u64>().ok())
            .is_some_and(|ms| ms > 0),
    };
    if !fsync_ok {
        return bad(
            "cluster.fsync",
            format!(
                "{:?}: expected \"always\", \"never\" or \"interval=<ms>\" with ms > 0",
                c.fsync
            ),
        );
    }
    Ok(())
}

/// What a peer store cannot do as a scenario asks (issue 13): each store is driven only in
/// ways it really offers, so a comparison never rests on an emulation.
fn peer(s: &Scenario) -> Result<(), Invalid> {
    use crate::scenario::StoreKind;
    let c = &s.cluster;
    if c.kind == StoreKind::Kvstore {
        return Ok(());
    }
    let kind = c.kind.name();
    if !c.server_args.is_empty() {
        return bad(
            "cluster.server_args",
            format!("kvstore server flags cannot be passed to {kind}"),
        );
    }
    if c.kind == StoreKind::Etcd && s.workload.ttl_share > 0.0 {
        return bad(
            "workload.ttl_share",
            "etcd expires keys only through leases, which the etcd driver does not create: use 0 with kind = \"etcd\"",
        );
    }
    if let Some((i, f)) = s.faults.iter().enumerate().find(|(_, f)| {
        f.action.is_clock()
            || f.action.is_disk()
            || f.action.is_partition()
            || f.action.is_link()
            || f.action == crate::scenario::FaultAction::CrashAll
    }) {
        return bad(
            &format!("fault[{i}].action"),
            format!(
                "{} is a fault of kvstore nodes loadgen launches; {kind} takes kill, restart, pause and resume",
                f.action.name()
            ),
        );
    }
    if c.replication != c.node_count() {
        return bad(
            "cluster.replication",
            format!(
                "{kind} keeps every key on every node: N must equal the node count ({}), got {}",
                c.node_count(),
                c.replication
            ),
        );
    }
    Ok(())
}

fn share(field: &str, v: f64) -> Result<(), Invalid> {
    if !(0.0..=1.0).contains(&v) {
        return bad(field, format!("a share must be in [0, 1], got {v}"));
    }
    Ok(())
}

fn workload(w: &WorkloadSpec) -> Result<(), Invalid> {
    if !(1..=100_000_000).contains(&w.record_count) {
        return bad(
            "workload.record_count",
            format!("must be in 1..=100000000, got {}", w.record_count),
        );
    }
    let mix = [
        ("workload.read", w.read),
        ("workload.update", w.update),
        ("workload.insert", w.insert),
        ("workload.delete", w.delete),
        ("workload.read_modify_write", w.read_modify_write),
    ];
    for (f, v) in mix {
        share(f, v)?;
    }
    let sum: f64 = mix.iter().map(|(_, v)| v).sum();
    if (sum - 1.0).abs() > 1e-6 {
        return bad(
            "workload.read",
            format!("read + update + insert + delete + read_modify_write must be 1, got {sum}"),
        );
    }
    if !(w.zipfian_theta > 0.0 && w.zipfian_theta < 1.0) {
        return bad(
            "workload.zipfian_theta",
            format!(
                "must be in (0, 1) (Gray et al.'s generator needs theta < 1), got {}",
                w.zipfian_theta
            ),
        );
    }
    if !(w.hotspot_data_fraction > 0.0 && w.hotspot_data_fraction <= 1.0) {
        return bad(
            "workload.hotspot_data_fraction",
            format!("must be in (0, 1], got {}", w.hotspot_data_fraction),
        );
    }
    share("workload.hotspot_op_fraction", w.hotspot_op_fraction)?;
    value_size(&w.value_size)?;
    share("workload.ttl_share", w.ttl_share)?;
    if w.ttl_share > 0.0 && w.ttl_ms == 0 {
        return bad("workload.ttl_ms", "must be > 0 when ttl_share > 0");
    }
    if w.key_prefix.is_empty() || w.key_prefix.len() > 1024 {
        return bad("workload.key_prefix", "must be 1..=1024 bytes");
    }
    Ok(())
}

fn value_size(v: &ValueSize) -> Result<(), Invalid> {
    let f = "workload.value_size";
    let in_bounds = |s: u64| (1..=MAX_VALUE).contains(&s);
    match v {
        ValueSize::Fixed(s) if !in_bounds(*s) => {
            bad(f, format!("must be in 1..={MAX_VALUE} bytes, got {s}"))
        }
        ValueSize::Range { min, max } if !in_bounds(*min) || !in_bounds(*max) || min > max => bad(
            f,
            format!("range needs 1 <= min <= max <= {MAX_VALUE} bytes, got min {min}, max {max}"),
        ),
        ValueSize::Weighted(list) if list.is_empty() => bad(f, "weighted list is empty"),
        ValueSize::Weighted(list) => {
            for (s, _) in list {
                if !in_bounds(*s) {
                    return bad(
                        f,
                        format!("every size must be in 1..={MAX_VALUE} bytes, got {s}"),
                    );
                }
            }
            if list.iter().all(|(_, w)| *w == 0) {
                return bad(f, "at least one weight must be > 0");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn run(r: &RunSpec) -> Result<(), Invalid> {
    if !(1..=1024).contains(&r.clients) {
        return bad(
            "run.clients",
            format!("must be in 1..=1024, got {}", r.clients),
        );
    }
    if !(1..=1024).contains(&r.in_flight) {
        return bad(
            "run.in_flight",
            format!("must be in 1..=1024, got {}", r.in_flight),
        );
    }
    match (r.duration_s, r.operations) {
        (None, None) => return bad("run.duration_s", "set duration_s or operations"),
        (Some(_), Some(_)) => {
            return bad("run.operations", "set duration_s or operations, not both");
        }
        (Some(d), None) if !(1..=3600).contains(&d) => {
            return bad(
                "run.duration_s",
                format!("must be in 1..=3600 seconds, got {d}"),
            );
        }
        (None, Some(n)) if !(1..=1_000_000_000).contains(&n) => {
            return bad(
                "run.operations",
                format!("must be in 1..=1000000000, got {n}"),
            );
        }
        _ => {}
    }
    if r.warmup_s > 600 {
        return bad(
            "run.warmup_s",
            format!("must be at most 600 seconds, got {}", r.warmup_s),
        );
    }
    if let Some(rate) = r.target_rate
        && !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0)
    {
        return bad(
            "run.target_rate",
            format!("must be in (0, 10000000] ops/s, got {rate}"),
        );
    }
    if r.echo_s > 60 {
        return bad(
            "run.echo_s",
            format!("must be at most 60 seconds, got {}", r.echo_s),
        );
    }
    if r.request_timeout_ms == 0 || r.request_timeout_ms > 600_000 {
        return bad(
            "run.request_timeout_ms",
            format!("must be in 1..=600000, got {}", r.request_timeout_ms),
        );
    }
    Ok(())
}

fn faults(s: &Scenario) -> Result<(), Invalid> {
    let nodes = s.cluster.node_count();
    let mut order: Vec<usize> = (0..s.faults.len()).collect();
    order.sort_by(|&a, &b| s.faults[a].at_s.total_cmp(&s.faults[b].at_s));
    let mut states = vec![NodeState::Up; nodes as usize];
    let mut full = vec![false; nodes as usize];
    super::partition_faults::timeline(s)?;
    super::link_faults::timeline(s)?;
    for i in order {
        let f = &s.faults[i];
        let field = |name: &str| format!("fault[{i}].{name}");
        if !(f.at_s.is_finite() && f.at_s >= 0.0) {
            return bad(
                &field("at_s"),
                format!("must be a time >= 0 seconds, got {}", f.at_s),
            );
        }
        if let Some(d) = s.run.duration_s
            && f.at_s >= d as f64
        {
            return bad(
                &field("at_s"),
                format!(
                    "{} s is not before the end of the run (duration_s = {d})",
                    f.at_s
                ),
            );
        }
        // Before the link faults, which own their fields and return early.
        super::partition_faults::validate_clients(f, &field)?;
        if super::link_faults::validate(s, f, &field)? {
            // A lossy link: checked there (its timeline too); it leaves processes alone.
            continue;
        }
        if super::partition_faults::validate(s, f, &field)? {
            // A partition: checked there (its timeline too); it leaves processes alone.
            continue;
        }
        if super::clock_faults::validate(s, f, &field)? {
            // A clock fault: checked there; it leaves the node's process state alone.
            continue;
        }
        if super::membership::validate(s, f, &field, &mut states)? {
            // A membership fault: checked and applied to the states there.
            continue;
        }
        let disk_kind = f.kind == Some(FaultKind::Disk);
        if f.action.is_disk() != disk_kind {
            return bad(
                &field("kind"),
                if disk_kind {
                    format!(
                        "a disk fault's action is bitflip, truncate, corrupt_snapshot, \
                         delete_snapshot, delete_hints, disk_full or disk_free, not {}",
                        f.action.name()
                    )
                } else {
                    format!("{} is a disk fault: set kind = \"disk\"", f.action.name())
                },
            );
        }
        if f.action.is_disk() && !s.cluster.is_local() {
            return bad(
                &field("kind"),
                "disk faults need loadgen's own nodes (it damages their data directories)",
            );
        }
        if matches!(f.action, FaultAction::DiskFull | FaultAction::DiskFree) {
            let NodeSelector::Index(n) = f.node else {
                return bad(
                    &field("node"),
                    format!(
                        "{} needs a node index: the node's small disk is mounted when it starts",
                        f.action.name()
                    ),
                );
            };
            let Some(is_full) = full.get_mut(n as usize) else {
                return bad(
                    &field("node"),
                    format!("node {n} does not exist ({nodes} nodes)"),
                );
            };
            let filling = f.action == FaultAction::DiskFull;
            if *is_full == filling {
                return bad(
                    &field("node"),
                    if filling {
                        format!("node {n}'s disk is already full at {} s", f.at_s)
                    } else {
                        format!(
                            "disk_free needs node {n}'s disk full at {} s (a disk_full before it)",
                            f.at_s
                        )
                    },
                );
            }
            *is_full = filling;
        }
        if f.action == FaultAction::CrashAll {
            if f.node != NodeSelector::Named(NodeKeyword::All) {
                return bad(
                    &field("node"),
                    "crash_all hits every node: leave node out or set \"all\"",
                );
            }
            if !s.cluster.is_local() {
                return bad(&field("action"), "crash_all needs loadgen's own nodes");
            }
            if let Some(n) = states
                .iter()
                .position(|st| !matches!(st, NodeState::Up | NodeState::Gone))
            {
                return bad(
                    &field("at_s"),
                    format!(
                        "crash_all needs every node up at {} s, but node {n} is {}",
                        f.at_s,
                        states[n].name().to_lowercase()
                    ),
                );
            }
            continue;
        }
        if !s.cluster.is_local() && s.cluster.fault_commands.for_action(f.action).is_none() {
            return bad(
                &field("action"),
                format!(
                    "{} on an existing cluster needs cluster.fault_commands.{}",
                    f.action.name(),
                    f.action.name()
                ),
            );
        }
        let want = NodeState::eligible_for(f.action);
        let target = match f.node {
            NodeSelector::Index(n) if n as usize >= states.len() => {
                return bad(
                    &field("node"),
                    format!("node {n} does not exist ({} nodes)", states.len()),
                );
            }
            NodeSelector::Index(n) => {
                if states[n as usize] != want {
                    return bad(
                        &field("node"),
                        format!(
                            "{} needs node {n} {} at {} s, but it is {}",
                            f.action.name(),
                            want.name().to_lowercase(),
                            f.at_s,
                            states[n as usize].name().to_lowercase()
                        ),
                    );
                }
                Some(n)
            }
            NodeSelector::Named(NodeKeyword::All) => {
                return bad(
                    &field("node"),
                    format!("{} needs a node index or \"random\"", f.action.name()),
                );
            }
            NodeSelector::Named(NodeKeyword::Random) => {
                if !states.contains(&want) {
                    return bad(
                        &field("node"),
                        format!(
                            "{} of a random node at {} s: no node is {}",
                            f.action.name(),
                            f.at_s,
                            want.name().to_lowercase()
                        ),
                    );
                }
                None
            }
        };
        match target {
            Some(n) => states[n as usize] = NodeState::after(f.action),
            // A random pick: mark one eligible node; which one does not matter for validity.
            None => {
                if let Some(slot) = states.iter_mut().find(|st| **st == want) {
                    *slot = NodeState::after(f.action);
                }
            }
        }
        if f.action == FaultAction::Kill && s.run.record_history && !s.cluster.is_local() {
            return bad(
                &field("action"),
                "history quiescence restarts killed nodes; it needs a local cluster",
            );
        }
    }
    Ok(())
}
