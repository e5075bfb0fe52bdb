//! The convergence rules, judged on the final reads taken after loadgen healed every fault.
//!
//! For each key, the *state* of a replica is its last final read: nothing stored, a tombstone
//! with its version, or a value id with its version. A value that surely expired before the
//! final phase began counts as nothing (compaction may already have dropped it on some
//! replicas and not others; no reader can tell them apart).
//! - **agreement**: every replica's state is the same; the final read through the cluster (if
//!   recorded) returns that value, or nothing when the state is a tombstone, nothing, or a value
//!   that may have expired. A replica whose last final read failed, or a written key no replica
//!   of which was read directly, is unverified.
//! - **winner**: each replica's state was written by an acknowledged or unknown-outcome write:
//!   a value id of a put of this key that did not fail, or a tombstone whose version an
//!   acknowledged delete returned (or, when no ack names it, some unknown-outcome delete of the
//!   key - which one cannot be told, as tombstones carry no value id).
//! - **no lost acknowledged write**: every acknowledged write's version is at most the newest
//!   replica state's version. When every replica holds nothing, a write is excused if an
//!   acknowledged delete whose tombstone grace period surely passed (its tombstone may have
//!   been collected) or a surely expired put at least as new exists, or an unknown-outcome
//!   delete could be newer (it did not complete more than the clock offset before the write
//!   began) and its grace period surely passed too. An acknowledged delete lost under a live
//!   value is a
//!   **resurrection**; any other is a lost write.

use std::collections::BTreeMap;

use kvstore_proto::Version;

use super::Ctx;
use crate::model::{KeyOps, Op};
use crate::report::{Anomaly, AnomalyClass, Findings, OpRef};
use crate::{OpKind, Outcome};

/// A replica's final state of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Nothing,
    Tombstone(Version),
    Value(u64, Version),
    /// A live value whose bytes carry no value id.
    Foreign(Version),
}

impl State {
    fn of(op: &Op) -> Self {
        match (op.value_id, op.version) {
            (Some(x), Some(v)) => Self::Value(x, v),
            (None, Some(v)) if op.tombstone => Self::Tombstone(v),
            (None, Some(v)) => Self::Foreign(v),
            _ => Self::Nothing,
        }
    }

    fn version(self) -> Option<Version> {
        match self {
            Self::Nothing => None,
            Self::Tombstone(v) | Self::Value(_, v) | Self::Foreign(v) => Some(v),
        }
    }

    fn describe(self) -> String {
        match self {
            Self::Nothing => "nothing".into(),
            Self::Tombstone(v) => format!("a tombstone @ {v}"),
            Self::Value(x, v) => format!("value id {x} @ {v}"),
            Self::Foreign(v) => format!("a value without value id @ {v}"),
        }
    }
}

/// Checks every key; returns how many keys had usable final reads.
pub(crate) fn check(ctx: &mut Ctx<'_>, f: &mut Findings) -> u64 {
    let mut verified = 0;
    for key in &ctx.model.keys {
        if check_key(ctx, f, key) {
            verified += 1;
        }
    }
    verified
}

fn push(f: &mut Findings, class: AnomalyClass, key: &KeyOps, message: String, ops: Vec<OpRef>) {
    f.push(class, || Anomaly {
        class,
        key: key.name.clone(),
        message,
        ops,
        staleness: None,
    });
}

fn check_key(ctx: &mut Ctx<'_>, f: &mut Findings, key: &KeyOps) -> bool {
    let model = ctx.model;
    // Last final read per replica (rows are in file order), and the last ok cluster read.
    let mut last: BTreeMap<u32, &Op> = BTreeMap::new();
    let mut cluster: Option<&Op> = None;
    let mut first_final = u64::MAX;
    let mut has_writes = false;
    for op in &key.ops {
        match op.kind {
            OpKind::FinalRead => {
                first_final = first_final.min(op.invoke);
                match op.replica {
                    Some(r) => {
                        last.insert(r, op);
                    }
                    None if op.outcome == Outcome::Ok => cluster = Some(op),
                    None => {}
                }
            }
            OpKind::Put | OpKind::Delete => has_writes = true,
            OpKind::Get => {}
        }
    }
    let mut unverified = false;
    for (&r, op) in &last {
        if op.outcome != Outcome::Ok {
            unverified = true;
            push(
                f,
                AnomalyClass::UnverifiedKey,
                key,
                format!(
                    "the last final read of replica {} did not succeed, so convergence is unproven",
                    model.replicas[r as usize]
                ),
                vec![OpRef::new(op, "failed final read")],
            );
        }
    }
    let replica_reads: Vec<&Op> = last
        .values()
        .copied()
        .filter(|op| op.outcome == Outcome::Ok)
        .collect();
    // The states judged: the replicas', or the cluster read's when no replica was read.
    let states: Vec<(State, &Op)> = if replica_reads.is_empty() {
        cluster.iter().map(|op| (State::of(op), *op)).collect()
    } else {
        replica_reads
            .iter()
            .map(|op| (State::of(op), *op))
            .collect()
    };
    if replica_reads.is_empty() && has_writes && !unverified && !states.is_empty() {
        // Judged on the cluster's answer alone: agreement between replicas is unproven.
        unverified = true;
        push(
            f,
            AnomalyClass::UnverifiedKey,
            key,
            "the key was written but no replica was read directly in the final phase".into(),
            states
                .iter()
                .map(|(_, op)| OpRef::new(op, "final read through the cluster"))
                .collect(),
        );
    }
    if states.is_empty() {
        if has_writes && !unverified {
            push(
                f,
                AnomalyClass::UnverifiedKey,
                key,
                "the key was written but has no final read".into(),
                key.ops
                    .iter()
                    .filter(|o| o.kind.is_write())
                    .take(1)
                    .map(|o| OpRef::new(o, "first write"))
                    .collect(),
            );
        }
        return false;
    }
    let put_of = |x: u64| {
        model
            .put(x)
            .filter(|(k, _)| key.name == model.keys[*k as usize].name)
    };
    let surely_expired = |s: State| -> bool {
        let State::Value(x, _) = s else { return false };
        put_of(x)
            .and_then(|(_, p)| ctx.surely_expired_at(p))
            .is_some_and(|t| first_final > t)
    };
    let normal = |s: State| if surely_expired(s) { State::Nothing } else { s };
    let role = |op: &Op, s: State| match op.replica {
        Some(r) => format!(
            "replica {} holds {}",
            model.replicas[r as usize],
            s.describe()
        ),
        None => format!("read through the cluster returned {}", s.describe()),
    };
    let finals: Vec<OpRef> = states
        .iter()
        .map(|(s, op)| OpRef::new(op, role(op, *s)))
        .collect();

    // Agreement.
    let first = normal(states[0].0);
    if states.iter().any(|(s, _)| normal(*s) != first) {
        push(
            f,
            AnomalyClass::Divergence,
            key,
            format!(
                "{} replicas disagree after healing{}",
                states.len(),
                match cluster {
                    Some(c) if states.iter().all(|(_, o)| o.complete <= c.invoke) => {
                        ", read before the read through the cluster: no repair mechanism \
                         (hints, anti-entropy) converged them, read repair did not hide it"
                    }
                    Some(_) =>
                        ", some read after the read through the cluster (its read repair may have touched them)",
                    None => "",
                }
            ),
            finals.clone(),
        );
    }
    let top = states
        .iter()
        .map(|(s, _)| *s)
        .max_by_key(|s| s.version())
        .unwrap_or(State::Nothing);
    if let (Some(c), false) = (cluster, replica_reads.is_empty()) {
        let got = State::of(c);
        let ok = match got {
            State::Value(..) | State::Foreign(_) => got == top,
            _ => match top {
                State::Value(x, _) => put_of(x)
                    .and_then(|(_, p)| ctx.maybe_expired_at(p))
                    .is_some_and(|t| c.complete >= t),
                _ => true,
            },
        };
        if !ok {
            let mut ops = vec![OpRef::new(c, role(c, got))];
            ops.extend(finals.iter().cloned());
            push(
                f,
                AnomalyClass::Divergence,
                key,
                format!(
                    "the final read through the cluster returned {}, but the newest replica state is {}",
                    got.describe(),
                    top.describe()
                ),
                ops,
            );
        }
    }

    // Winner: every distinct state must have a legitimate writer.
    let mut applied: Vec<u64> = Vec::new();
    let mut judged: Vec<State> = Vec::new();
    for (s, op) in &states {
        if judged.contains(s) {
            continue;
        }
        judged.push(*s);
        match *s {
            State::Nothing => {}
            State::Foreign(v) => push(
                f,
                AnomalyClass::BadWinner,
                key,
                format!(
                    "replicas hold a value @ {v} that carries no value id: no recorded put wrote it"
                ),
                vec![OpRef::new(op, role(op, *s))],
            ),
            State::Value(x, v) => match model.put(x) {
                Some((pk, p)) if model.keys[pk as usize].name == key.name => match p.outcome {
                    Outcome::Ok => {}
                    Outcome::Unknown => applied.push(x),
                    Outcome::Fail => push(
                        f,
                        AnomalyClass::BadWinner,
                        key,
                        format!(
                            "replicas hold value id {x} @ {v}, written by a put that definitely failed"
                        ),
                        vec![OpRef::new(op, role(op, *s)), OpRef::new(p, "failed put")],
                    ),
                },
                other => push(
                    f,
                    AnomalyClass::BadWinner,
                    key,
                    match other {
                        Some((pk, _)) => format!(
                            "replicas hold value id {x} @ {v}, which was written to key {:?}",
                            model.keys[pk as usize].name
                        ),
                        None => format!("replicas hold value id {x} @ {v}, which no put wrote"),
                    },
                    vec![OpRef::new(op, role(op, *s))],
                ),
            },
            State::Tombstone(v) => {
                let acked = key.ops.iter().any(|w| {
                    w.kind == OpKind::Delete && w.outcome == Outcome::Ok && w.version == Some(v)
                });
                let unknown = key
                    .ops
                    .iter()
                    .any(|w| w.kind == OpKind::Delete && w.outcome == Outcome::Unknown);
                if !acked && !unknown {
                    let mut ops = vec![OpRef::new(op, role(op, *s))];
                    ops.extend(
                        key.ops
                            .iter()
                            .filter(|w| w.kind == OpKind::Delete)
                            .take(5)
                            .map(|w| OpRef::new(w, "delete of this key, other version")),
                    );
                    push(
                        f,
                        AnomalyClass::BadWinner,
                        key,
                        format!(
                            "replicas hold a tombstone @ {v}, but no acknowledged delete returned that version and no delete of this key has an unknown outcome"
                        ),
                        ops,
                    );
                }
            }
        }
    }

    // Lost acknowledged writes.
    let top_version = top.version();
    let all_nothing = states.iter().all(|(s, _)| normal(*s) == State::Nothing);
    let raw_nothing = states.iter().all(|(s, _)| *s == State::Nothing);
    let live_value = matches!(normal(top), State::Value(..) | State::Foreign(_));
    // The newest acknowledged write that explains "nothing" on every replica.
    let excused_floor = if all_nothing {
        key.ops
            .iter()
            .filter(|w| w.is_acked_write())
            .filter(|w| match w.kind {
                // The tombstone may only have been collected once the grace period surely
                // passed (its version was stamped before the delete completed).
                OpKind::Delete => {
                    raw_nothing
                        && first_final
                            > w.complete
                                .saturating_add(ctx.grace)
                                .saturating_add(ctx.offset)
                }
                _ => ctx.surely_expired_at(w).is_some_and(|t| first_final > t),
            })
            .filter_map(|w| w.version)
            .max()
    } else {
        None
    };
    let floor = top_version.max(excused_floor);
    // The latest completion of an unknown-outcome delete whose tombstone may have been
    // collected (grace surely passed): one that could be newer than a write.
    let last_unknown_delete = key
        .ops
        .iter()
        .filter(|d| d.kind == OpKind::Delete && d.outcome == Outcome::Unknown)
        .filter(|d| {
            first_final
                > d.complete
                    .saturating_add(ctx.grace)
                    .saturating_add(ctx.offset)
        })
        .map(|d| d.complete)
        .max();
    // With nothing left, any write older than the newest acknowledged delete is rightly gone
    // (superseded); that delete itself is judged by its grace period.
    let newest_delete = key
        .ops
        .iter()
        .filter(|d| d.kind == OpKind::Delete && d.is_acked_write())
        .filter_map(|d| d.version)
        .max();
    for w in key.ops.iter().filter(|w| w.is_acked_write()) {
        let Some(vw) = w.version else { continue };
        if floor.is_some_and(|fl| vw <= fl) {
            continue;
        }
        if all_nothing && newest_delete.is_some_and(|d| vw < d) {
            continue;
        }
        if all_nothing
            && last_unknown_delete.is_some_and(|c| c.saturating_add(ctx.offset) >= w.invoke)
        {
            continue;
        }
        let class = if w.kind == OpKind::Delete && live_value {
            AnomalyClass::Resurrection
        } else {
            AnomalyClass::LostWrite
        };
        // Built only when listed: a broken run can lose every write.
        f.push(class, || {
            let what = match (w.kind, w.value_id) {
                (OpKind::Put, Some(x)) => format!("put of value id {x}"),
                _ => "delete".to_string(),
            };
            let message = if w.kind == OpKind::Delete && raw_nothing {
                format!(
                    "the tombstone of the acknowledged delete @ {vw} is gone from every replica before the tombstone grace period ({:.0} s) could pass: nothing stops an older value from coming back",
                    ctx.grace as f64 / 1e9
                )
            } else if class == AnomalyClass::Resurrection {
                format!(
                    "the acknowledged delete @ {vw} is newer than the converged {}: the deleted value came back",
                    top.describe()
                )
            } else {
                format!(
                    "the acknowledged {what} @ {vw} is newer than the converged state ({})",
                    top.describe()
                )
            };
            let mut ops = vec![OpRef::new(w, format!("acknowledged {what}, lost"))];
            ops.extend(finals.iter().cloned());
            Anomaly {
                class,
                key: key.name.clone(),
                message,
                ops,
                staleness: None,
            }
        });
    }
    ctx.applied_unknown.extend(applied);
    !unverified
}
