//! Removing a dead node for good (`kv removenode ID`, Cassandra's `nodetool removenode`).
//!
//! A node that is dead and will not come back keeps its place in the ring otherwise: its
//! ranges stay at N-1 live copies for good. Removal, run by any live node:
//! 1. refuses unless this node judges the member down (a live node leaves with `kv leave`,
//!    which hands its own data over);
//! 2. notes the owners of the ring as it stands (the dead node among them), announces the
//!    member *left* on its behalf ([`MemberTable::remove_member`]) and pushes the table to
//!    every live member;
//! 3. asks every live member, itself included, to re-replicate ([`rereplicate`]): each scans
//!    its local keys, and for every key the removed node replicated sends the entry to the
//!    key's owners in the new ring that were not owners before. Several survivors send the
//!    same key; last-write-wins makes the copies harmless and covers a survivor that missed a
//!    write.
//!
//! A removed node that comes back sees itself announced left at a higher incarnation and stops
//! ([`super::members::MergeOutcome::removed`]) rather than refuting: its ranges live elsewhere
//! now. Streaming is through the ordinary replica write path, so the clock bound and the
//! admission limits apply as to any write.
//!
//! [`MemberTable::remove_member`]: super::members::MemberTable::remove_member

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use kvstore_proto::pb;

use super::gossip::announce_everywhere;
use super::members::Health;
use super::placement::Placement;
use crate::error::{Error, Result};
use crate::node::shared::Shared;
use crate::replication::coordinator::send_to_replica;

/// Keys sent at once while re-replicating.
const COPY_CONCURRENCY: usize = 64;
/// How long announcing the removal may take before re-replication starts anyway (gossip
/// finishes what the push did not).
const ANNOUNCE_DEADLINE: Duration = Duration::from_secs(10);

/// What a removal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Entries sent to new owners, over every member.
    pub keys_copied: u64,
    /// Entries no new owner took (they keep their surviving copies).
    pub keys_failed: u64,
    /// Members that re-replicated.
    pub members: Vec<u32>,
    /// Members that could not be asked, with why.
    pub errors: Vec<String>,
}

/// Removes the dead member `id` (see the module header); returns what re-replication did.
pub async fn remove_node(shared: &Arc<Shared>, id: u32) -> Result<Removed> {
    let view = shared.view();
    if id == shared.id() {
        return Err(Error::Precondition(format!(
            "node {id} is this node: a live node leaves with kv leave {id}"
        )));
    }
    match view.health.get(&id) {
        None => {
            return Err(Error::invalid(
                "node_id",
                format!("{id} is not a member of this cluster"),
            ));
        }
        Some(Health::Down) => {}
        Some(h) => {
            return Err(Error::Precondition(format!(
                "node {id} is not down ({h:?} as this node sees it): a live node leaves with \
                 kv leave {id}; removenode is for a node that is dead for good"
            )));
        }
    }
    // The owners before the removal (the dead node among them, unless an earlier attempt
    // already removed it: then its ranges are those of the ring with it added back).
    let mut previous: BTreeSet<u32> = view.placement.current().nodes().iter().copied().collect();
    previous.insert(id);
    shared
        .with_members(|t, _| {
            let r = t.remove_member(id);
            let changed = r.is_ok();
            (r, changed)
        })
        .map_err(Error::Precondition)?;
    tracing::warn!(node = id, "removing a dead node: announcing it left");
    if let Err(e) = announce_everywhere(shared, ANNOUNCE_DEADLINE).await {
        tracing::warn!(error = %e, "removal announcement incomplete; gossip will finish it");
    }

    let previous: Vec<u32> = previous.into_iter().collect();
    let live: Vec<u32> = {
        let view = shared.view();
        view.placement
            .current()
            .nodes()
            .iter()
            .copied()
            .filter(|&n| view.is_live(n))
            .collect()
    };
    let mut out = Removed::default();
    let mut calls = FuturesUnordered::new();
    for node in live {
        let s = shared.clone();
        let previous = previous.clone();
        calls.push(async move {
            let r = if node == s.id() {
                rereplicate(&s, id, &previous)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                ask_rereplicate(&s, node, id, &previous).await
            };
            (node, r)
        });
    }
    while let Some((node, r)) = calls.next().await {
        match r {
            Ok((copied, failed)) => {
                out.keys_copied += copied;
                out.keys_failed += failed;
                out.members.push(node);
            }
            Err(e) => out.errors.push(format!("node {node}: {e}")),
        }
    }
    out.members.sort_unstable();
    tracing::info!(
        node = id,
        copied = out.keys_copied,
        failed = out.keys_failed,
        members = ?out.members,
        "dead node removed; its ranges re-replicated"
    );
    Ok(out)
}

/// Asks member `node` to re-replicate the ranges of `removed`.
async fn ask_rereplicate(
    shared: &Arc<Shared>,
    node: u32,
    removed: u32,
    previous: &[u32],
) -> std::result::Result<(u64, u64), String> {
    let peer = shared
        .peer(node)
        .ok_or_else(|| format!("node {node} has no address"))?;
    let mut client = peer.client();
    // Re-replication scans every local key: give it as long as a leave's handoff.
    let call = client.rereplicate(pb::RereplicateRequest {
        removed,
        previous_owners: previous.to_vec(),
    });
    let r = tokio::time::timeout(Duration::from_secs(600), call)
        .await
        .map_err(|_| "no answer within 600 s".to_string())?
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    Ok((r.keys_copied, r.keys_failed))
}

/// This node's part of a removal: sends every local entry that `removed` replicated (under the
/// ring of `previous` owners) to the key's owners now that were not owners then. Returns
/// (entries sent, entries no new owner took).
pub async fn rereplicate(
    shared: &Arc<Shared>,
    removed: u32,
    previous: &[u32],
) -> Result<(u64, u64)> {
    let me = shared.id();
    let rf = shared.config.replication_factor;
    let before = Placement::from_sets(
        previous.iter().copied(),
        previous.iter().copied(),
        shared.config.vnodes,
        rf,
    );
    let now = shared.view().placement.clone();
    let mut copied = 0u64;
    let mut failed = 0u64;
    let mut sends = FuturesUnordered::new();
    for key in shared.engine.keys() {
        let old = before.read_replicas(&key);
        if !old.contains(&removed) {
            continue;
        }
        let set = now.write_set(&key);
        let targets: BTreeSet<u32> = set
            .current
            .iter()
            .chain(set.pending.iter())
            .copied()
            .filter(|n| *n != me && !old.contains(n))
            .collect();
        if targets.is_empty() {
            continue;
        }
        let Some(entry) = shared.engine.get_entry(&key)? else {
            continue;
        };
        let s = shared.clone();
        sends.push(async move {
            let mut ok = true;
            for node in targets {
                let mut sent = false;
                for attempt in 0..3u64 {
                    let send = send_to_replica(&s, node, &key, &entry);
                    match tokio::time::timeout(s.config.request_timeout, send).await {
                        Ok(Ok(())) => {
                            sent = true;
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await,
                    }
                }
                ok &= sent;
            }
            ok
        });
        if sends.len() >= COPY_CONCURRENCY
            && let Some(ok) = sends.next().await
        {
            if ok { copied += 1 } else { failed += 1 }
        }
    }
    while let Some(ok) = sends.next().await {
        if ok { copied += 1 } else { failed += 1 }
    }
    if failed > 0 {
        tracing::error!(
            removed,
            failed,
            "entries not copied to a new owner; their surviving copies keep them"
        );
    }
    Ok((copied, failed))
}
