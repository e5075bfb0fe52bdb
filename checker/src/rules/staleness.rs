//! Reported, not failed: what eventual consistency allows but users want measured.
//!
//! - **stale read**: an ok get returned version `v` (nothing = older than everything) although
//!   acknowledged writes newer than `v` had completed before the get began. Staleness is their
//!   number ("versions behind") and the time from the first of them completing to the get's
//!   start ("ms behind"). A get that found nothing at all is compared only with writes without
//!   a TTL (a TTL'd write may have expired, which is not staleness).
//!
//! A sweep over time with a Fenwick tree indexed by version rank, O(n log n) per key, so hot
//! keys with hundreds of thousands of operations stay fast. (Real-time inversions, once
//! reported here, are violations now: see `realtime`.)

use kvstore_proto::Version;

use super::Ctx;
use crate::OpKind;
use crate::model::Op;
use crate::report::{Anomaly, AnomalyClass, Findings, OpRef, Staleness};

pub(crate) fn check(ctx: &Ctx<'_>, f: &mut Findings) {
    for key in &ctx.model.keys {
        let writes: Vec<&Op> = key.ops.iter().filter(|o| o.is_acked_write()).collect();
        if writes.is_empty() {
            continue;
        }
        stale_reads(f, &key.name, &key.ops, &writes);
    }
}

/// Counts and earliest completion of inserted writes, by descending version rank.
struct Fenwick {
    count: Vec<u64>,
    min_complete: Vec<u64>,
    /// Index into the writes slice of the write with that minimum.
    who: Vec<usize>,
}

impl Fenwick {
    fn new(n: usize) -> Self {
        Self {
            count: vec![0; n + 1],
            min_complete: vec![u64::MAX; n + 1],
            who: vec![usize::MAX; n + 1],
        }
    }

    /// Inserts at 1-based position `i`.
    fn add(&mut self, mut i: usize, complete: u64, w: usize) {
        while i < self.count.len() {
            self.count[i] += 1;
            if complete < self.min_complete[i] {
                self.min_complete[i] = complete;
                self.who[i] = w;
            }
            i += i & i.wrapping_neg();
        }
    }

    /// Count, earliest completion and its write over positions 1..=i.
    fn prefix(&self, mut i: usize) -> (u64, u64, usize) {
        let (mut c, mut m, mut w) = (0, u64::MAX, usize::MAX);
        while i > 0 {
            c += self.count[i];
            if self.min_complete[i] < m {
                m = self.min_complete[i];
                w = self.who[i];
            }
            i -= i & i.wrapping_neg();
        }
        (c, m, w)
    }
}

fn stale_reads(f: &mut Findings, key: &str, ops: &[Op], writes: &[&Op]) {
    let mut gets: Vec<&Op> = ops
        .iter()
        .filter(|o| o.kind == OpKind::Get && o.is_ok_read())
        .collect();
    if gets.is_empty() {
        return;
    }
    gets.sort_by_key(|o| o.invoke);
    // Descending version order: position 1 = newest, so "newer than v" is a prefix.
    let mut versions: Vec<Version> = writes.iter().filter_map(|w| w.version).collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    versions.dedup();
    let pos = |v: Version| versions.partition_point(|x| *x > v); // count strictly newer
    let mut by_complete: Vec<usize> = (0..writes.len()).collect();
    by_complete.sort_by_key(|&i| writes[i].complete);
    let mut all = Fenwick::new(versions.len());
    let mut no_ttl = Fenwick::new(versions.len());
    let mut next = 0;
    for g in gets {
        while next < by_complete.len() && writes[by_complete[next]].complete < g.invoke {
            let wi = by_complete[next];
            let w = writes[wi];
            if let Some(v) = w.version {
                let p = pos(v) + 1;
                all.add(p, w.complete, wi);
                if w.ttl_ms.is_none() {
                    no_ttl.add(p, w.complete, wi);
                }
            }
            next += 1;
        }
        let (n, first, wi) = match g.version {
            Some(v) => all.prefix(pos(v)),
            None => no_ttl.prefix(versions.len()),
        };
        if n == 0 {
            continue;
        }
        let missed = writes[wi];
        let ms = (g.invoke - first) as f64 / 1e6;
        f.push(AnomalyClass::StaleRead, || Anomaly {
            class: AnomalyClass::StaleRead,
            key: key.to_string(),
            message: format!(
                "read {} though {n} newer acknowledged write(s) had completed, the first {ms:.3} ms before it began",
                match (g.value_id, g.version) {
                    (Some(x), Some(v)) => format!("value id {x} @ {v}"),
                    (None, Some(v)) => format!("a tombstone @ {v}"),
                    _ => "nothing".to_string(),
                }
            ),
            ops: vec![
                OpRef::new(g, "stale read"),
                OpRef::new(missed, "first missed write"),
            ],
            staleness: Some(Staleness { versions: n, ms }),
        });
    }
}
