//! The `[nemesis]` table: a seeded random fault timeline instead of a fixed one (Jepsen's
//! nemesis). Faults of the weighted `kinds` start at exponentially distributed gaps of mean
//! `mean_interval_s`, each lasts a duration drawn from `duration_s = [min, max]`, at most
//! `max_concurrent` are in force at once, a node is in at most one fault at a time (never both
//! killed and paused, never its clock bumped while it is being wiped), and every fault is healed
//! before the last `quiet_s` seconds of the run, so the final phase reads a healed cluster.
//!
//! [`draw`] is a pure function of the scenario and the seed; [`expand`] turns what it drew into
//! ordinary `[[fault]]` entries, which [`super::Scenario::resolve`] puts in place of the table
//! before the run: the drawn timeline is validated, run, written to `faults.csv` and to the
//! resolved `scenario.toml` exactly like a fixed one, so a run is replayed from that file.
//!
//! Each kind is one row of [`KINDS`]: its name, which nodes it may hit, and the faults it expands
//! to. A new fault kind (a partition shape, say) is one more row.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

use super::invalid::{Invalid, bad};
use super::{FaultAction, FaultKind, FaultSpec, NodeKeyword, NodeSelector, Scenario};

/// The `[nemesis]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisSpec {
    /// Seed of the draw; the run's seed when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Fault kinds ([`KINDS`] names) and their weights (> 0).
    pub kinds: BTreeMap<String, f64>,
    /// Mean gap between two fault starts, seconds (> 0).
    pub mean_interval_s: f64,
    /// Each fault lasts between these many seconds: `[min, max]`, 0 < min <= max.
    pub duration_s: [f64; 2],
    /// At most this many faults in force at once (>= 1). [default: 1]
    #[serde(default = "one")]
    pub max_concurrent: u32,
    /// The run's last seconds, with every fault healed (> 0). [default: 10]
    #[serde(default = "ten")]
    pub quiet_s: f64,
    /// No fault starts before this second. [default: 2]
    #[serde(default = "two")]
    pub start_s: f64,
}

fn one() -> u32 {
    1
}
fn ten() -> f64 {
    10.0
}
fn two() -> f64 {
    2.0
}

/// Which nodes a kind may hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targets {
    /// One free member.
    AnyNode,
    /// One free node loadgen launched (clocks run under libfaketime, small disks are mounted
    /// from the start: joined nodes have neither).
    LaunchedNode,
    /// Every node at once; nothing else may be in force.
    Everyone,
    /// No existing node: a new one joins.
    NewNode,
    /// One free member, while more than N members remain afterwards.
    LeavingNode,
    /// Links between launched nodes (a partition, a lossy link): it occupies no node (a
    /// partitioned node may also be killed or paused), but only one such kind is in force at a
    /// time, and never beside a membership change (a leave's handoff or a join's streaming
    /// across a cut link would stall the timeline rather than test the store).
    Links,
}

/// One nemesis fault kind.
pub struct Kind {
    /// The name in `kinds`.
    pub name: &'static str,
    targets: Targets,
    /// The faults for one drawn occurrence: on `node`, from `start` to `end` seconds, with
    /// `rng` for its parameters.
    faults: fn(node: u32, start: f64, end: f64, rng: &mut SmallRng) -> Vec<FaultSpec>,
}

fn spec(at_s: f64, action: FaultAction, node: u32, kind: Option<FaultKind>) -> FaultSpec {
    FaultSpec {
        at_s,
        action,
        node: NodeSelector::Index(node),
        kind,
        delta_ms: None,
        period_ms: None,
        rate: None,
        until_s: None,
        to: None,
        probability: None,
        delay_ms: None,
        jitter_ms: None,
        bytes_per_sec: None,
        clients: None,
    }
}

/// Kill, damage the stopped node's files with `action`, restart.
fn damaged(action: FaultAction, node: u32, start: f64, end: f64) -> Vec<FaultSpec> {
    vec![
        spec(start, FaultAction::Kill, node, None),
        spec((start + end) / 2.0, action, node, Some(FaultKind::Disk)),
        spec(end, FaultAction::Restart, node, None),
    ]
}

/// A partition of shape `action` from `start` to `end` (its `until_s` heals it); halves and
/// ring act on every node, isolate / bridge / one_way on `node` (one_way's `to` is set by
/// [`expand`] from the draw).
fn partition(action: FaultAction, node: u32, start: f64, end: f64) -> Vec<FaultSpec> {
    let on = match action {
        FaultAction::Halves | FaultAction::Ring => NodeSelector::Named(NodeKeyword::All),
        _ => NodeSelector::Index(node),
    };
    vec![FaultSpec {
        node: on,
        until_s: Some(end),
        ..spec(start, action, node, Some(FaultKind::Partition))
    }]
}

/// A clock jump of 50 ms to 60 s, ahead or behind.
fn clock_delta(rng: &mut SmallRng) -> i64 {
    let ms = rng.random_range(50..=60_000i64);
    if rng.random_bool(0.5) { ms } else { -ms }
}

/// Every kind the nemesis draws from.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "kill",
        targets: Targets::AnyNode,
        faults: |n, s, e, _| {
            vec![
                spec(s, FaultAction::Kill, n, None),
                spec(e, FaultAction::Restart, n, None),
            ]
        },
    },
    Kind {
        name: "pause",
        targets: Targets::AnyNode,
        faults: |n, s, e, _| {
            vec![
                spec(s, FaultAction::Pause, n, None),
                spec(e, FaultAction::Resume, n, None),
            ]
        },
    },
    Kind {
        name: "clock_bump",
        targets: Targets::LaunchedNode,
        faults: |n, s, e, rng| {
            let mut bump = spec(s, FaultAction::Bump, n, Some(FaultKind::Clock));
            bump.delta_ms = Some(clock_delta(rng));
            vec![bump, spec(e, FaultAction::Reset, n, Some(FaultKind::Clock))]
        },
    },
    Kind {
        name: "clock_strobe",
        targets: Targets::LaunchedNode,
        faults: |n, s, e, rng| {
            let mut strobe = spec(s, FaultAction::Strobe, n, Some(FaultKind::Clock));
            strobe.delta_ms = Some(clock_delta(rng));
            strobe.period_ms = Some(rng.random_range(20..=500));
            strobe.until_s = Some(e);
            vec![strobe]
        },
    },
    Kind {
        name: "crash_all",
        targets: Targets::Everyone,
        faults: |_, s, _, _| {
            vec![FaultSpec {
                node: NodeSelector::Named(NodeKeyword::All),
                ..spec(s, FaultAction::CrashAll, 0, None)
            }]
        },
    },
    Kind {
        name: "bitflip",
        targets: Targets::AnyNode,
        faults: |n, s, e, _| damaged(FaultAction::Bitflip, n, s, e),
    },
    Kind {
        name: "truncate",
        targets: Targets::AnyNode,
        faults: |n, s, e, _| damaged(FaultAction::Truncate, n, s, e),
    },
    Kind {
        name: "corrupt_snapshot",
        targets: Targets::AnyNode,
        faults: |n, s, e, _| damaged(FaultAction::CorruptSnapshot, n, s, e),
    },
    Kind {
        name: "delete_snapshot",
        targets: Targets::AnyNode,
        faults: |n, s, e, _| damaged(FaultAction::DeleteSnapshot, n, s, e),
    },
    Kind {
        name: "delete_hints",
        targets: Targets::AnyNode,
        faults: |n, s, e, _| damaged(FaultAction::DeleteHints, n, s, e),
    },
    Kind {
        name: "disk_full",
        targets: Targets::LaunchedNode,
        faults: |n, s, e, _| {
            vec![
                spec(s, FaultAction::DiskFull, n, Some(FaultKind::Disk)),
                spec(e, FaultAction::DiskFree, n, Some(FaultKind::Disk)),
            ]
        },
    },
    Kind {
        name: "partition_isolate",
        targets: Targets::Links,
        faults: |n, s, e, _| partition(FaultAction::Isolate, n, s, e),
    },
    Kind {
        name: "partition_halves",
        targets: Targets::Links,
        faults: |n, s, e, _| partition(FaultAction::Halves, n, s, e),
    },
    Kind {
        name: "partition_bridge",
        targets: Targets::Links,
        faults: |n, s, e, _| partition(FaultAction::Bridge, n, s, e),
    },
    Kind {
        name: "partition_one_way",
        targets: Targets::Links,
        faults: |n, s, e, _| partition(FaultAction::OneWay, n, s, e),
    },
    Kind {
        name: "partition_ring",
        targets: Targets::Links,
        faults: |n, s, e, _| partition(FaultAction::Ring, n, s, e),
    },
    Kind {
        name: "link_loss",
        targets: Targets::Links,
        faults: |n, s, e, rng| {
            vec![FaultSpec {
                until_s: Some(e),
                probability: Some(rng.random_range(0.1..=0.5)),
                ..spec(s, FaultAction::Loss, n, Some(FaultKind::Link))
            }]
        },
    },
    Kind {
        name: "join",
        targets: Targets::NewNode,
        faults: |n, s, _, _| vec![spec(s, FaultAction::Join, n, Some(FaultKind::Membership))],
    },
    Kind {
        name: "leave",
        targets: Targets::LeavingNode,
        faults: |n, s, _, _| vec![spec(s, FaultAction::Leave, n, Some(FaultKind::Membership))],
    },
    Kind {
        name: "wipe",
        targets: Targets::AnyNode,
        faults: |n, s, _, _| vec![spec(s, FaultAction::Wipe, n, Some(FaultKind::Membership))],
    },
    Kind {
        name: "replace",
        targets: Targets::AnyNode,
        faults: |n, s, _, _| {
            vec![spec(
                s,
                FaultAction::Replace,
                n,
                Some(FaultKind::Membership),
            )]
        },
    },
];

fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// True when `name` is a kind that cuts or degrades links (the run then needs its own network
/// namespace).
pub fn acts_on_links(name: &str) -> bool {
    kind(name).is_some_and(|k| k.targets == Targets::Links)
}

/// The fewest launched nodes a kind needs (a bridge: a node and two halves; a ring that cuts
/// something: 4).
fn fewest_nodes(name: &str) -> u32 {
    match name {
        "partition_bridge" => 3,
        "partition_ring" => 4,
        _ => 2,
    }
}

fn is_membership(name: &str) -> bool {
    matches!(name, "join" | "leave" | "wipe" | "replace")
}

/// One drawn fault: a kind on a node (the new node's index for a join; 0 for crash_all) from
/// `start_s` to `end_s`.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// The kind's name.
    pub kind: &'static str,
    /// Its node.
    pub node: u32,
    /// When it starts, seconds after measuring began.
    pub start_s: f64,
    /// When it is healed (membership changes: the time reserved for them).
    pub end_s: f64,
    /// The other end of a directed link (one_way, link_loss), drawn with `node`.
    pub to: Option<u32>,
}

/// Checks the table against the scenario; the first problem as `(field, why)`.
pub(super) fn validate(s: &Scenario, n: &NemesisSpec) -> Result<(), Invalid> {
    let Some(duration) = s.run.duration_s else {
        return bad(
            "nemesis",
            "a nemesis draws faults over the run's duration: set run.duration_s",
        );
    };
    if !s.faults.is_empty() {
        return bad(
            "nemesis",
            "[nemesis] draws the whole fault timeline: remove the [[fault]] entries",
        );
    }
    if !s.cluster.is_local() || s.cluster.kind != super::StoreKind::Kvstore {
        return bad(
            "nemesis",
            "a nemesis needs a local kvstore cluster loadgen launches",
        );
    }
    if n.kinds.is_empty() {
        return bad("nemesis.kinds", "name at least one kind");
    }
    for (name, w) in &n.kinds {
        if kind(name).is_none() {
            let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
            return bad(
                &format!("nemesis.kinds.{name}"),
                format!("unknown kind; known: {}", known.join(", ")),
            );
        }
        if !(w.is_finite() && *w > 0.0) {
            return bad(
                &format!("nemesis.kinds.{name}"),
                format!("weight must be > 0, got {w}"),
            );
        }
    }
    if !(n.mean_interval_s.is_finite() && n.mean_interval_s > 0.0) {
        return bad(
            "nemesis.mean_interval_s",
            format!("must be > 0 seconds, got {}", n.mean_interval_s),
        );
    }
    let [lo, hi] = n.duration_s;
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
        return bad(
            "nemesis.duration_s",
            format!("must be [min, max] seconds with 0 < min <= max, got [{lo}, {hi}]"),
        );
    }
    if n.max_concurrent == 0 || n.max_concurrent > s.cluster.nodes {
        return bad(
            "nemesis.max_concurrent",
            format!(
                "must be in 1..={} (the nodes), got {}",
                s.cluster.nodes, n.max_concurrent
            ),
        );
    }
    if !(n.quiet_s.is_finite() && n.quiet_s > 0.0) {
        return bad(
            "nemesis.quiet_s",
            format!("must be > 0 seconds, got {}", n.quiet_s),
        );
    }
    if !(n.start_s.is_finite() && n.start_s >= 0.0) {
        return bad(
            "nemesis.start_s",
            format!("must be >= 0 seconds, got {}", n.start_s),
        );
    }
    if n.start_s + hi + n.quiet_s > duration as f64 {
        return bad(
            "nemesis.quiet_s",
            format!(
                "start_s + the longest fault + quiet_s = {} s leaves no room in a {duration} s run",
                n.start_s + hi + n.quiet_s
            ),
        );
    }
    Ok(())
}

/// Draws the timeline of `n` for scenario `s` (validated) with `seed`: pure, the same
/// arguments give the same draw.
pub fn draw(s: &Scenario, n: &NemesisSpec, seed: u64) -> Vec<Drawn> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let last_end = s.run.duration_s.unwrap_or(0) as f64 - n.quiet_s;
    let launched = s.cluster.nodes;
    let weights: Vec<(&'static Kind, f64)> = n
        .kinds
        .iter()
        .filter_map(|(name, w)| kind(name).map(|k| (k, *w)))
        .collect();
    // Per node: busy until (seconds), and gone for good (left, replaced).
    let mut busy: Vec<f64> = vec![0.0; launched as usize];
    let mut gone: Vec<bool> = vec![false; launched as usize];
    let mut out: Vec<Drawn> = Vec::new();
    // A crash_all in force until then: nothing else starts, not even a join.
    let mut everyone_until = 0.0;
    let mut t = n.start_s;
    loop {
        // Exponential gap (a Poisson process of fault starts).
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        t += -u.ln() * n.mean_interval_s;
        let [lo, hi] = n.duration_s;
        let d = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        // Wait for a slot when max_concurrent faults are in force.
        let mut in_force: Vec<f64> = out.iter().map(|f| f.end_s).filter(|e| *e > t).collect();
        in_force.sort_by(f64::total_cmp);
        if in_force.len() >= n.max_concurrent as usize {
            t = in_force[in_force.len() - n.max_concurrent as usize];
        }
        if t + d > last_end {
            break;
        }
        let free = |i: usize, busy: &[f64], gone: &[bool]| !gone[i] && busy[i] <= t;
        let members = gone.iter().filter(|g| !**g).count();
        let eligible = |k: &Kind| -> Vec<u32> {
            let nodes = busy.len();
            if t < everyone_until {
                return Vec::new();
            }
            match k.targets {
                Targets::AnyNode => (0..nodes)
                    .filter(|&i| free(i, &busy, &gone))
                    .map(|i| i as u32)
                    .collect(),
                Targets::LaunchedNode => (0..launched as usize)
                    .filter(|&i| free(i, &busy, &gone))
                    .map(|i| i as u32)
                    .collect(),
                Targets::Everyone => {
                    if out.iter().all(|f| f.end_s <= t) {
                        vec![0]
                    } else {
                        Vec::new()
                    }
                }
                Targets::NewNode => {
                    if nodes < super::membership::MAX_NODES {
                        vec![nodes as u32]
                    } else {
                        Vec::new()
                    }
                }
                Targets::LeavingNode if members > s.cluster.replication as usize => (0..nodes)
                    .filter(|&i| free(i, &busy, &gone))
                    .map(|i| i as u32)
                    .collect(),
                Targets::LeavingNode => Vec::new(),
                Targets::Links => {
                    let busy_links = out
                        .iter()
                        .any(|f| f.end_s > t && (acts_on_links(f.kind) || is_membership(f.kind)));
                    if busy_links || launched < fewest_nodes(k.name) {
                        Vec::new()
                    } else {
                        (0..launched).collect()
                    }
                }
            }
        };
        let links_in_force = out.iter().any(|f| f.end_s > t && acts_on_links(f.kind));
        let choices: Vec<(&'static Kind, f64, Vec<u32>)> = weights
            .iter()
            .filter(|(k, _)| !(links_in_force && is_membership(k.name)))
            .map(|(k, w)| (*k, *w, eligible(k)))
            .filter(|(_, _, e)| !e.is_empty())
            .collect();
        let total: f64 = choices.iter().map(|c| c.1).sum();
        if choices.is_empty() {
            continue;
        }
        let mut x = rng.random_range(0.0..total);
        let (k, _, nodes) = choices
            .iter()
            .find(|c| {
                x -= c.1;
                x < 0.0
            })
            .unwrap_or(&choices[choices.len() - 1]);
        let node = nodes[rng.random_range(0..nodes.len())];
        let end = t + d;
        match k.targets {
            Targets::Everyone => {
                busy.iter_mut().for_each(|b| *b = end);
                everyone_until = end;
            }
            Targets::NewNode => {
                busy.push(end);
                gone.push(false);
            }
            Targets::Links => {}
            _ => busy[node as usize] = end,
        }
        let to = matches!(k.name, "partition_one_way" | "link_loss").then(|| {
            // Any other launched node.
            (node + rng.random_range(1..launched)) % launched
        });
        match k.name {
            "leave" => gone[node as usize] = true,
            "replace" => {
                gone[node as usize] = true;
                busy.push(end);
                gone.push(false);
            }
            _ => {}
        }
        out.push(Drawn {
            kind: k.name,
            node,
            start_s: t,
            end_s: end,
            to,
        });
    }
    out
}

/// The `[[fault]]` entries of a draw, in time order. `seed` gives each kind's parameters.
pub fn expand(drawn: &[Drawn], seed: u64) -> Vec<FaultSpec> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6578_7061_6e64_0001);
    let mut faults: Vec<FaultSpec> = drawn
        .iter()
        .filter_map(|d| {
            kind(d.kind).map(|k| {
                let mut faults = (k.faults)(d.node, d.start_s, d.end_s, &mut rng);
                for f in &mut faults {
                    if matches!(f.action, FaultAction::OneWay | FaultAction::Loss) {
                        f.to = d.to;
                    }
                }
                faults
            })
        })
        .flatten()
        .collect();
    faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    faults
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
[cluster]
nodes = 4
replication = 3

[workload]
record_count = 100

[run]
duration_s = 120
seed = 5

[nemesis]
mean_interval_s = 3
duration_s = [1, 6]
max_concurrent = 2
quiet_s = 15
kinds = { kill = 3, pause = 2, clock_bump = 1, clock_strobe = 1, crash_all = 1, bitflip = 1, truncate = 1, delete_hints = 1, join = 1, leave = 1, wipe = 1, replace = 1 }
"#;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(Path::new("nemesis.toml"), text).unwrap()
    }

    fn drawn(s: &Scenario, seed: u64) -> Vec<Drawn> {
        draw(s, s.nemesis.as_ref().unwrap(), seed)
    }

    #[test]
    fn the_same_seed_draws_the_same_timeline_and_another_seed_another() {
        let s = scenario(BASE);
        assert_eq!(drawn(&s, 1), drawn(&s, 1));
        assert_eq!(expand(&drawn(&s, 1), 1), expand(&drawn(&s, 1), 1));
        assert_ne!(drawn(&s, 1), drawn(&s, 2));
        let a = s.clone().resolve(9, Path::new("a.toml")).unwrap();
        let b = s.resolve(9, Path::new("b.toml")).unwrap();
        assert_eq!(a.faults, b.faults);
        assert!(
            a.nemesis.is_none(),
            "the resolved scenario carries the drawn faults"
        );
        assert!(!a.faults.is_empty());
    }

    /// BASE with every kind that acts on links as well.
    fn with_links() -> String {
        BASE.replacen(
            "replace = 1 }",
            "replace = 1, partition_isolate = 1, partition_halves = 1, partition_bridge = 1, \
             partition_one_way = 1, partition_ring = 1, link_loss = 1 }",
            1,
        )
    }

    #[test]
    fn draws_respect_bounds_concurrency_and_one_fault_per_node() {
        respects_bounds(BASE);
    }

    #[test]
    fn link_kinds_come_one_at_a_time_apart_from_membership_and_validate() {
        let text = with_links();
        respects_bounds(&text);
        let s = scenario(&text);
        assert!(s.acts_on_links());
        assert!(!scenario(BASE).acts_on_links());
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let d = drawn(&s, seed);
            for f in d.iter().filter(|f| acts_on_links(f.kind)) {
                seen.insert(f.kind);
                for g in d.iter().filter(|g| !std::ptr::eq(*g, f)) {
                    let overlap = g.start_s < f.end_s && f.start_s < g.end_s;
                    assert!(
                        !(overlap && (acts_on_links(g.kind) || is_membership(g.kind))),
                        "seed {seed}: {f:?} beside {g:?}"
                    );
                }
                if matches!(f.kind, "partition_one_way" | "link_loss") {
                    assert!(f.to.is_some_and(|to| to != f.node && to < 4), "{f:?}");
                }
            }
        }
        assert_eq!(
            seen.len(),
            6,
            "every link kind drawn in 200 seeds: {seen:?}"
        );
    }

    fn respects_bounds(text: &str) {
        let s = scenario(text);
        let n = s.nemesis.clone().unwrap();
        let last = 120.0 - n.quiet_s;
        for seed in 0..200 {
            let d = drawn(&s, seed);
            assert!(d.len() >= 5, "seed {seed}: only {} faults", d.len());
            for f in &d {
                let len = f.end_s - f.start_s;
                assert!(
                    f.start_s >= n.start_s,
                    "seed {seed}: {f:?} starts too early"
                );
                assert!(
                    f.end_s <= last,
                    "seed {seed}: {f:?} not healed before the quiet window"
                );
                assert!(
                    (n.duration_s[0]..=n.duration_s[1]).contains(&len),
                    "seed {seed}: {f:?} lasts {len} s"
                );
                // At most K in force at its start.
                let at_once = d
                    .iter()
                    .filter(|g| g.start_s <= f.start_s && g.end_s > f.start_s)
                    .count();
                assert!(
                    at_once <= 2,
                    "seed {seed}: {at_once} faults at {} s",
                    f.start_s
                );
                // No other fault on its node (crash_all: on any node) while it is in force.
                for g in d.iter().filter(|g| !std::ptr::eq(*g, f)) {
                    let overlap = g.start_s < f.end_s && f.start_s < g.end_s;
                    let links = acts_on_links(f.kind) || acts_on_links(g.kind);
                    let same = f.kind == "crash_all"
                        || g.kind == "crash_all"
                        || (f.node == g.node && !links);
                    assert!(!(overlap && same), "seed {seed}: {f:?} and {g:?} overlap");
                }
            }
            // Expanded, every fault lies within its drawn interval, and the timeline is valid
            // (every kill restarted, every pause resumed, no leave below N, ...).
            let faults = expand(&d, seed);
            let mut t = s.clone();
            t.nemesis = None;
            t.faults = faults;
            super::super::validate::validate(&t)
                .unwrap_or_else(|e| panic!("seed {seed}: drawn timeline invalid: {e:?}"));
        }
    }

    #[test]
    fn every_drawn_fault_is_healed_before_the_quiet_window() {
        let s = scenario(BASE);
        for seed in 0..50 {
            let r = s.clone().resolve(seed, Path::new("x.toml")).unwrap();
            let mut down = std::collections::BTreeMap::new();
            for f in &r.faults {
                let n = f.node_index().unwrap_or(u32::MAX);
                match f.action {
                    FaultAction::Kill | FaultAction::Pause | FaultAction::Bump => {
                        down.insert(n, f.action);
                    }
                    FaultAction::Restart | FaultAction::Resume | FaultAction::Reset => {
                        down.remove(&n);
                    }
                    _ => {}
                }
                assert!(f.at_s <= 105.0, "seed {seed}: {f:?} in the quiet window");
                if let Some(u) = f.until_s {
                    assert!(u <= 105.0, "seed {seed}: {f:?} lasts into the quiet window");
                }
            }
            assert!(
                down.is_empty(),
                "seed {seed}: unhealed at the end: {down:?}"
            );
        }
    }

    #[test]
    fn bad_tables_are_refused_with_the_field() {
        let refuse = |from: &str, to: &str| {
            let text = BASE.replacen(from, to, 1);
            match Scenario::parse(Path::new("bad.toml"), &text) {
                Err(crate::LoadgenError::Scenario { field, why, .. }) => (field, why),
                other => panic!("accepted {to}: {other:?}"),
            }
        };
        let (f, why) = refuse("kill = 3", "kil = 3");
        assert_eq!(f, "nemesis.kinds.kil");
        assert!(why.contains("known: kill, pause"), "{why}");
        let (f, _) = refuse("kill = 3", "kill = 0");
        assert_eq!(f, "nemesis.kinds.kill");
        let (f, _) = refuse("duration_s = [1, 6]", "duration_s = [6, 1]");
        assert_eq!(f, "nemesis.duration_s");
        let (f, _) = refuse("max_concurrent = 2", "max_concurrent = 5");
        assert_eq!(f, "nemesis.max_concurrent");
        let (f, _) = refuse("quiet_s = 15", "quiet_s = 115");
        assert_eq!(f, "nemesis.quiet_s");
        let (f, why) = refuse(
            "[nemesis]",
            "[[fault]]\nat_s = 1\naction = \"kill\"\nnode = 0\n[nemesis]",
        );
        assert_eq!(f, "nemesis");
        assert!(why.contains("remove the [[fault]]"), "{why}");
    }
}
