//! The rules that tie versions to real time. Each is a violation: the store promises them
//! through its clock-offset bound (a node refuses to stamp with, or accept, a clock further
//! ahead than the offset), so breaking one means a bad clock decided which write wins.
//!
//! - **future_version** (needs the history's clock record): a version's physical time
//!   (`physical_ms`) is further ahead of the real time at which it was first observed (the
//!   write's ack, or the first read that returned it) than the offset, plus 1 ms for the
//!   millisecond granularity. Checked once per distinct version of a key; the finding names
//!   the clock faults in force on the stamping node.
//! - **real_time_inversion**: write A completed more than the offset before write B began, yet
//!   B's version is older than A's: LWW lets the earlier write win and B is a lost update the
//!   offset bound promised could not happen. It covers every write whose version is known:
//!   acknowledged writes (the ack's version) and unknown-outcome puts some read returned (the
//!   read's version; such a put surely completed by the first read that returned it, which is
//!   the completion used for it). Unknown-outcome deletes are left out: a tombstone read does
//!   not say which delete wrote it. One finding per inverted write, naming the newest write it
//!   inverted with. A sweep in completion order, O(n log n) per key.
//! - **causality**: a read completed before the write of the value it returned was invoked (a
//!   value read from the future); for tombstones, an acknowledged delete with the tombstone's
//!   version invoked after the read completed.
//!
//! Real time here is loadgen's: its clock is the reference and never faulted.

use crate::fasthash::FastMap as HashMap;
use kvstore_proto::Version;

use super::Ctx;
use crate::model::Op;
use crate::report::{Anomaly, AnomalyClass, Findings, OpRef};
use crate::{OpKind, Outcome};

/// A write whose version is known, with the latest time it surely took effect by.
struct Known<'a> {
    op: &'a Op,
    version: Version,
    /// The ack's time, or (unknown outcome) the first completion of a read that returned it.
    complete: u64,
    /// The read that made an unknown-outcome write's version known.
    seen_by: Option<&'a Op>,
}

pub(crate) fn check(ctx: &Ctx<'_>, f: &mut Findings) {
    for (ki, key) in ctx.model.keys.iter().enumerate() {
        let own_put = |x: u64| {
            ctx.model
                .put(x)
                .filter(|(k, _)| *k as usize == ki)
                .map(|(_, p)| p)
        };
        let known = known_writes(&key.ops, own_put);
        inversions(ctx, f, &key.name, &known);
        causality(f, &key.name, &key.ops, own_put);
        if ctx.clock.is_some() {
            future_versions(ctx, f, &key.name, &key.ops, &known, own_put);
        }
    }
}

/// The key's writes with a known version. `own_put` finds a put of this key by value id (a
/// value id of another key is a phantom, judged by the reads rule).
fn known_writes<'a>(ops: &'a [Op], own_put: impl Fn(u64) -> Option<&'a Op>) -> Vec<Known<'a>> {
    let mut known: Vec<Known<'a>> = ops
        .iter()
        .filter(|o| o.is_acked_write())
        .filter_map(|o| {
            o.version.map(|v| Known {
                op: o,
                version: v,
                complete: o.complete,
                seen_by: None,
            })
        })
        .collect();
    // Unknown-outcome puts of this key that some ok read returned: earliest such read.
    let mut seen: HashMap<u64, &'a Op> = HashMap::default();
    for r in ops.iter().filter(|o| o.is_ok_read()) {
        let (Some(x), Some(_)) = (r.value_id, r.version) else {
            continue;
        };
        if own_put(x).is_none_or(|p| p.outcome != Outcome::Unknown) {
            continue;
        }
        seen.entry(x)
            .and_modify(|e| {
                if r.complete < e.complete {
                    *e = r;
                }
            })
            .or_insert(r);
    }
    for o in ops
        .iter()
        .filter(|o| o.kind == OpKind::Put && o.outcome == Outcome::Unknown)
    {
        if let Some(r) = o.value_id.and_then(|x| seen.get(&x)) {
            known.push(Known {
                op: o,
                version: r.version.unwrap_or_default(),
                complete: r.complete,
                seen_by: Some(r),
            });
        }
    }
    known
}

fn inversions(ctx: &Ctx<'_>, f: &mut Findings, key: &str, known: &[Known<'_>]) {
    let mut by_invoke: Vec<&Known<'_>> = known.iter().collect();
    by_invoke.sort_by_key(|w| w.op.invoke);
    let mut by_complete: Vec<&Known<'_>> = known.iter().collect();
    by_complete.sort_by_key(|w| w.complete);
    let mut newest: Option<&Known<'_>> = None;
    let mut next = 0;
    for b in by_invoke {
        while next < by_complete.len()
            && by_complete[next].complete.saturating_add(ctx.offset) < b.op.invoke
        {
            let a = by_complete[next];
            if newest.is_none_or(|n| a.version > n.version) {
                newest = Some(a);
            }
            next += 1;
        }
        let Some(a) = newest else { continue };
        if b.version < a.version {
            let gap = (b.op.invoke - a.complete) as f64 / 1e6;
            f.push(AnomalyClass::RealTimeInversion, || {
                let mut ops = vec![
                    OpRef::new(a.op, "earlier write, newer version"),
                    OpRef::new(b.op, "later write, older version"),
                ];
                for (w, who) in [(a, "earlier"), (b, "later")] {
                    if let Some(r) = w.seen_by {
                        ops.push(OpRef::new(r, format!("read showing the {who} write's version")));
                    }
                }
                Anomaly {
                    class: AnomalyClass::RealTimeInversion,
                    key: key.to_string(),
                    message: format!(
                        "a write began {gap:.3} ms after another completed (clock offset {:.3} ms), \
                         yet got the older version {} < {}: LWW lets the earlier write win",
                        ctx.offset as f64 / 1e6,
                        b.version,
                        a.version,
                    ),
                    ops,
                    staleness: None,
                }
            });
        }
    }
}

fn causality<'a>(
    f: &mut Findings,
    key: &str,
    ops: &'a [Op],
    own_put: impl Fn(u64) -> Option<&'a Op>,
) {
    let deletes: HashMap<Version, &Op> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Delete && o.outcome == Outcome::Ok)
        .filter_map(|o| o.version.map(|v| (v, o)))
        .collect();
    for r in ops.iter().filter(|o| o.is_ok_read()) {
        let write = match (r.value_id, r.tombstone, r.version) {
            (Some(x), _, _) => own_put(x),
            (None, true, Some(v)) => deletes.get(&v).copied(),
            _ => None,
        };
        let Some(w) = write else { continue };
        if r.complete < w.invoke {
            let ahead = (w.invoke - r.complete) as f64 / 1e6;
            f.push(AnomalyClass::Causality, || Anomaly {
                class: AnomalyClass::Causality,
                key: key.to_string(),
                message: format!(
                    "a read completed {ahead:.3} ms before the {} it returned was invoked",
                    if w.kind == OpKind::Put {
                        format!("put of value id {}", w.value_id.unwrap_or_default())
                    } else {
                        "delete whose tombstone".to_string()
                    }
                ),
                ops: vec![
                    OpRef::new(r, "read"),
                    OpRef::new(w, "write invoked after it"),
                ],
                staleness: None,
            });
        }
    }
}

fn future_versions<'a>(
    ctx: &Ctx<'_>,
    f: &mut Findings,
    key: &str,
    ops: &'a [Op],
    known: &[Known<'a>],
    own_put: impl Fn(u64) -> Option<&'a Op>,
) {
    let Some(clock) = ctx.clock else { return };
    // Every observation of a version: (version, when it was surely stamped by, observer, write).
    let mut seen: Vec<(Version, u64, &'a Op, Option<&'a Op>)> = known
        .iter()
        .map(|k| (k.version, k.complete, k.seen_by.unwrap_or(k.op), Some(k.op)))
        .collect();
    for r in ops.iter().filter(|o| o.is_ok_read()) {
        if let Some(v) = r.version {
            let write = r.value_id.and_then(&own_put);
            seen.push((v, r.complete, r, write));
        }
    }
    seen.sort_by_key(|(v, complete, _, _)| (*v, *complete));
    seen.dedup_by_key(|(v, _, _, _)| *v);
    for (v, complete, observer, write) in seen {
        let real_ns = u128::from(clock.real_ms(0)) * 1_000_000 + u128::from(complete);
        let phys_ns = u128::from(v.physical_ms()) * 1_000_000;
        let bound = real_ns + u128::from(ctx.offset) + 1_000_000;
        if phys_ns <= bound {
            continue;
        }
        f.push(AnomalyClass::FutureVersion, || {
            let ahead = (phys_ns - real_ns) as f64 / 1e6;
            let faults: Vec<String> = clock
                .in_force(v.node, complete)
                .map(|c| c.describe())
                .collect();
            let mut ops = Vec::new();
            if let Some(w) = write.filter(|w| !std::ptr::eq(*w, observer)) {
                ops.push(OpRef::new(w, "write that got the version"));
            }
            ops.push(OpRef::new(
                observer,
                if observer.kind.is_write() {
                    "write acknowledged with it"
                } else {
                    "first read that returned it"
                },
            ));
            Anomaly {
                class: AnomalyClass::FutureVersion,
                key: key.to_string(),
                message: format!(
                    "version {v} is {ahead:.3} ms ahead of the real time it was observed at \
                     (clock offset {:.3} ms): node {}'s clock stamped it{}",
                    ctx.offset as f64 / 1e6,
                    v.node,
                    if faults.is_empty() {
                        " (no clock fault recorded on it then)".to_string()
                    } else {
                        format!(" under {}", faults.join("; "))
                    }
                ),
                ops,
                staleness: None,
            }
        });
    }
}
