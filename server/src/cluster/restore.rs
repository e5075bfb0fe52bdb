//! Restoring a known member that came back with an empty data directory (a replaced disk, a
//! wiped directory): it streams every range it replicates before it answers replica reads.
//!
//! The cluster still knows the node as *up* and owning its ranges, so nothing moves in the
//! ring: coordinators keep sending it writes (it applies them, and they are newer than anything
//! it streams, which last-write-wins keeps), but while [`Shared::restoring`] holds it answers
//! no replica read, and a coordinator asks another replica instead (a node with nothing would
//! otherwise answer "no such key" for every key it lost, and at ONE that is a wrong answer).
//!
//! Every arc the node replicates in the current ring is streamed from the other owners of that
//! arc that are live ([`stream_from`], the join's stream); an arc counts as
//! restored once one of its other owners streamed it. Arcs none of whose owners could be
//! reached are tried again every [`RETRY`], with a log line, until they are restored: the node
//! never starts serving reads with a hole it knows of.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kvstore_proto::ring::Arc as TokenArc;

use super::streaming::stream_from;
use crate::node::shared::Shared;

/// Pause between two rounds when some arcs had no reachable owner.
pub const RETRY: Duration = Duration::from_secs(1);

/// Streams this node's ranges in; returns the entries applied. Clears
/// [`Shared::restoring`] once every arc is restored (or the node stops).
pub async fn restore(shared: &Arc<Shared>) -> u64 {
    let me = shared.id();
    let rf = shared.config.replication_factor;
    let mut pending: Vec<(TokenArc, Vec<u32>)> = shared
        .view()
        .placement
        .current()
        .arcs(rf)
        .into_iter()
        .filter(|(_, owners)| owners.contains(&me))
        .map(|(arc, owners)| (arc, owners.into_iter().filter(|&o| o != me).collect()))
        .collect();
    let total = pending.len();
    tracing::warn!(
        arcs = total,
        "started with an empty data directory but known to the cluster: restoring every range \
         from the other replicas before answering reads"
    );
    let mut applied = 0u64;
    let mut round = 0u32;
    while !pending.is_empty() && !shared.stopping() {
        round += 1;
        let view = shared.view();
        // Each live source streams the pending arcs it owns, all in one stream.
        let mut by_source: BTreeMap<u32, Vec<TokenArc>> = BTreeMap::new();
        for (arc, owners) in &pending {
            for &o in owners.iter().filter(|&&o| view.is_live(o)) {
                by_source.entry(o).or_default().push(*arc);
            }
        }
        let mut restored: BTreeSet<(u64, u64)> = BTreeSet::new();
        for (source, arcs) in by_source {
            match stream_from(shared, source, &arcs).await {
                Ok(n) => {
                    applied += n as u64;
                    restored.extend(arcs.iter().map(|a| (a.start, a.end)));
                }
                Err(e) => {
                    tracing::warn!(source, error = %e, "could not restore ranges from a replica")
                }
            }
        }
        pending.retain(|(arc, _)| !restored.contains(&(arc.start, arc.end)));
        if !pending.is_empty() {
            tracing::warn!(
                round,
                left = pending.len(),
                of = total,
                "arcs with no reachable replica yet: still not answering reads; retrying"
            );
            tokio::time::sleep(RETRY).await;
        }
    }
    if pending.is_empty() {
        shared.set_restoring(false);
        tracing::info!(
            applied,
            arcs = total,
            "data restored: answering replica reads again"
        );
    }
    applied
}
