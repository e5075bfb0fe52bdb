//! Rules over individual reads: what a read returned must have been written.
//!
//! - **phantom**: a get (or the final read through the cluster) returned value id `x`, but no
//!   put of that key wrote `x` (it is unknown, or belongs to another key), or returned a value
//!   carrying no id at all;
//! - **failed write read**: `x` was written by a put whose outcome is `fail` (definitely not
//!   applied) - reported apart from phantoms because it points at the client's error mapping;
//! - **version integrity**: every observation of `x` (the put's ack, every read, every replica)
//!   carries one version; no two writes share a version (two acks, a put's and a tombstone's);
//! - **expiry**: a value read after it surely expired: the read began more than
//!   `ttl + clock offset + 1 ms` after the put completed (the put's version was stamped before
//!   it completed, so `physical_ms(version) + ttl_ms` lies before that); and any reported
//!   `expires_at_ms` must equal `physical_ms(version) + ttl_ms` exactly.
//!
//! Final reads of one replica are checked for version integrity and expiry values here; whether
//! their value was legitimately written is the convergence rule's "winner" question.

use crate::fasthash::{FastMap as HashMap, FastSet as HashSet};

use kvstore_proto::Version;

use super::Ctx;
use crate::model::Op;
use crate::report::{Anomaly, AnomalyClass, Findings, OpRef};
use crate::{OpKind, Outcome};

/// Who wrote a version, as far as the history tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    /// A put of this value id.
    Put(u64),
    /// A delete: acknowledged (op known) or only seen as a tombstone.
    Delete,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    writer: Writer,
    key: u32,
    idx: u32,
}

pub(crate) fn check(ctx: &mut Ctx<'_>, f: &mut Findings) {
    let model = ctx.model;
    let mut by_version: HashMap<Version, Seen> = HashMap::default();
    // Acknowledged writes first: their versions are facts.
    for (k, key) in model.keys.iter().enumerate() {
        for (i, op) in key.ops.iter().enumerate() {
            if !op.is_acked_write() {
                continue;
            }
            let Some(v) = op.version else { continue };
            let writer = match op.kind {
                OpKind::Put => Writer::Put(op.value_id.unwrap_or_default()),
                _ => Writer::Delete,
            };
            let seen = Seen {
                writer,
                key: k as u32,
                idx: i as u32,
            };
            if let Some(prev) = by_version.get(&v) {
                let prev_op = &model.keys[prev.key as usize].ops[prev.idx as usize];
                f.push(AnomalyClass::VersionConflict, || Anomaly {
                    class: AnomalyClass::VersionConflict,
                    key: key.name.clone(),
                    message: format!(
                        "two writes were acknowledged with the same version {v} (the other on key {:?})",
                        model.keys[prev.key as usize].name
                    ),
                    ops: vec![
                        OpRef::new(prev_op, "acknowledged write"),
                        OpRef::new(op, "acknowledged write, same version"),
                    ],
                    staleness: None,
                });
            } else {
                by_version.insert(v, seen);
            }
        }
    }

    // Versions inferred for unknown-outcome puts from the first read of their value.
    let mut inferred: HashMap<u64, (Version, u32, u32)> = HashMap::default();
    let mut reported: HashSet<(u64, Version)> = HashSet::default();
    for (k, key) in model.keys.iter().enumerate() {
        for (i, op) in key.ops.iter().enumerate() {
            if !op.is_ok_read() {
                continue;
            }
            let replica_read = op.kind == OpKind::FinalRead && op.replica.is_some();
            let Some(v) = op.version else { continue };
            if op.tombstone {
                match by_version.get(&v) {
                    Some(seen) if seen.writer == Writer::Delete && seen.key == k as u32 => {}
                    // A get that found the value expired reports its version.
                    Some(Seen {
                        writer: Writer::Put(x),
                        key: sk,
                        ..
                    }) if !replica_read
                        && *sk == k as u32
                        && model.put(*x).is_some_and(|(_, p)| {
                            ctx.maybe_expired_at(p).is_some_and(|t| op.complete >= t)
                        }) => {}
                    Some(seen) => {
                        let other = &model.keys[seen.key as usize].ops[seen.idx as usize];
                        if reported.insert((u64::MAX, v)) {
                            f.push(AnomalyClass::VersionConflict, || Anomaly {
                                class: AnomalyClass::VersionConflict,
                                key: key.name.clone(),
                                message: format!(
                                    "a tombstone was read with version {v}, which belongs to {} on key {:?}",
                                    describe(other),
                                    model.keys[seen.key as usize].name
                                ),
                                ops: vec![
                                    OpRef::new(op, "read tombstone"),
                                    OpRef::new(other, "owner of the version"),
                                ],
                                staleness: None,
                            });
                        }
                    }
                    None => {
                        by_version.insert(
                            v,
                            Seen {
                                writer: Writer::Delete,
                                key: k as u32,
                                idx: i as u32,
                            },
                        );
                    }
                }
                continue;
            }
            let Some(x) = op.value_id else {
                // A live value without an id: bytes loadgen never wrote.
                if !replica_read {
                    f.push(AnomalyClass::PhantomRead, || Anomaly {
                        class: AnomalyClass::PhantomRead,
                        key: key.name.clone(),
                        message: format!(
                            "read a value @ {v} that carries no value id (no recorded put wrote it)"
                        ),
                        ops: vec![OpRef::new(op, "read")],
                        staleness: None,
                    });
                }
                continue;
            };
            let put = match model.put(x) {
                Some((pk, put)) if pk == k as u32 => put,
                other => {
                    if !replica_read {
                        let msg = match other {
                            Some((pk, _)) => format!(
                                "read value id {x} (version {v}), which was written to key {:?}, not this key",
                                model.keys[pk as usize].name
                            ),
                            None => format!("read value id {x} (version {v}), which no put wrote"),
                        };
                        let put_ref = other.map(|(_, p)| OpRef::new(p, "put of that value id"));
                        f.push(AnomalyClass::PhantomRead, || Anomaly {
                            class: AnomalyClass::PhantomRead,
                            key: key.name.clone(),
                            message: msg,
                            ops: std::iter::once(OpRef::new(op, "read"))
                                .chain(put_ref)
                                .collect(),
                            staleness: None,
                        });
                    }
                    continue;
                }
            };
            if put.outcome == Outcome::Fail {
                if !replica_read {
                    f.push(AnomalyClass::FailedWriteRead, || Anomaly {
                        class: AnomalyClass::FailedWriteRead,
                        key: key.name.clone(),
                        message: format!(
                            "read value id {x} (version {v}), written by a put that definitely failed"
                        ),
                        ops: vec![OpRef::new(op, "read"), OpRef::new(put, "failed put")],
                        staleness: None,
                    });
                }
                continue;
            }
            // Version integrity: the value's one version.
            let known = match put.version {
                Some(pv) => Some((pv, put)),
                None => {
                    ctx.applied_unknown.insert(x);
                    match inferred.get(&x) {
                        Some(&(iv, ik, ii)) => {
                            Some((iv, &model.keys[ik as usize].ops[ii as usize]))
                        }
                        None => {
                            inferred.insert(x, (v, k as u32, i as u32));
                            match by_version.get(&v) {
                                Some(seen) if seen.writer != Writer::Put(x) => {
                                    let other =
                                        &model.keys[seen.key as usize].ops[seen.idx as usize];
                                    if reported.insert((x, v)) {
                                        f.push(AnomalyClass::VersionConflict, || Anomaly {
                                            class: AnomalyClass::VersionConflict,
                                            key: key.name.clone(),
                                            message: format!(
                                                "value id {x} (an unknown-outcome put) was read with version {v}, which belongs to {}",
                                                describe(other)
                                            ),
                                            ops: vec![
                                                OpRef::new(op, "read"),
                                                OpRef::new(put, "unknown-outcome put"),
                                                OpRef::new(other, "owner of the version"),
                                            ],
                                            staleness: None,
                                        });
                                    }
                                }
                                Some(_) => {}
                                None => {
                                    by_version.insert(
                                        v,
                                        Seen {
                                            writer: Writer::Put(x),
                                            key: k as u32,
                                            idx: put_index(model, x),
                                        },
                                    );
                                }
                            }
                            None
                        }
                    }
                }
            };
            if let Some((pv, witness)) = known
                && pv != v
                && reported.insert((x, v))
            {
                let role = if witness.kind == OpKind::Put {
                    "put acknowledged with the other version"
                } else {
                    "first read, with the other version"
                };
                f.push(AnomalyClass::VersionConflict, || Anomaly {
                    class: AnomalyClass::VersionConflict,
                    key: key.name.clone(),
                    message: format!(
                        "value id {x} was read with version {v}, but it has version {pv}"
                    ),
                    ops: vec![
                        OpRef::new(op, "read"),
                        OpRef::new(witness, role),
                        OpRef::new(put, "put"),
                    ],
                    staleness: None,
                });
            }
            expiry(ctx, f, &key.name, op, put, v, replica_read);
        }
    }
}

/// The expiry rule for one read of `put`'s value with version `v`.
fn expiry(
    ctx: &Ctx<'_>,
    f: &mut Findings,
    key: &str,
    op: &Op,
    put: &Op,
    v: Version,
    replica_read: bool,
) {
    if let Some(e) = op.expires_at_ms {
        let want = put.ttl_ms.map(|ttl| v.physical_ms() + ttl);
        if want != Some(e) {
            let msg = match want {
                Some(w) => format!(
                    "the store reported expires_at_ms {e} for value id {}, but physical_ms({v}) + ttl_ms {} = {w}",
                    put.value_id.unwrap_or_default(),
                    put.ttl_ms.unwrap_or_default()
                ),
                None => format!(
                    "the store reported expires_at_ms {e} for value id {}, whose put had no TTL",
                    put.value_id.unwrap_or_default()
                ),
            };
            f.push(AnomalyClass::ExpiredRead, || Anomaly {
                class: AnomalyClass::ExpiredRead,
                key: key.to_string(),
                message: msg,
                ops: vec![OpRef::new(op, "read"), OpRef::new(put, "put")],
                staleness: None,
            });
        }
    }
    if replica_read {
        return; // a replica keeps expired entries until compaction: not a read of them
    }
    if let Some(t) = ctx.surely_expired_for_reads(put)
        && op.invoke > t
    {
        f.push(AnomalyClass::ExpiredRead, || Anomaly {
            class: AnomalyClass::ExpiredRead,
            key: key.to_string(),
            message: format!(
                "read value id {} with ttl_ms {} that began {:.3} ms after the put surely took effect \
                 (its ack, or the first read of it; more than ttl + clock offset + 1 ms)",
                put.value_id.unwrap_or_default(),
                put.ttl_ms.unwrap_or_default(),
                (op.invoke - ctx.stamped_by(put).unwrap_or(put.complete)) as f64 / 1e6
            ),
            ops: vec![OpRef::new(op, "read after expiry"), OpRef::new(put, "put with ttl")],
            staleness: None,
        });
    }
}

fn put_index(model: &crate::model::Model, x: u64) -> u32 {
    model.puts.get(&x).map_or(0, |p| p.idx)
}

/// "the acknowledged put of value id 3" and the like.
pub(crate) fn describe(op: &Op) -> String {
    match (op.kind, op.value_id) {
        (OpKind::Put, Some(x)) => format!("the {} put of value id {x}", outcome_word(op.outcome)),
        (OpKind::Delete, _) => format!("the {} delete (op {})", outcome_word(op.outcome), op.op_id),
        (_, Some(x)) => format!("a read of value id {x} (op {})", op.op_id),
        _ => format!("a tombstone read (op {})", op.op_id),
    }
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "acknowledged",
        Outcome::Fail => "failed",
        Outcome::Unknown => "unknown-outcome",
    }
}
