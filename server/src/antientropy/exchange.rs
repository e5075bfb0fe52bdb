//! One exchange between this node and a peer over the arcs both replicate: roots, then the
//! branches of differing arcs, then the leaves of differing branches, then the keys of
//! differing leaves from both sides, then the copies both ways ([`super::diff::plan`]).
//!
//! Fetched entries are applied here and pushed ones there through the ordinary
//! last-write-wins apply for streamed entries, which never overwrites a newer version and
//! refuses a version beyond the max clock offset. Every message is counted against the
//! node's anti-entropy bandwidth ([`super::state::Throttle`]), and an exchange copies at most
//! `anti_entropy_max_keys` keys: beyond that it copies that many and says it is incomplete, so
//! its arcs are not recorded as repaired and the next cycle goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kvstore_proto::pb;
use kvstore_proto::ring::{Arc as TokenArc, Token};
use prost::Message;

use super::diff::{KeyMeta, LeafSets, list_keys, plan};
use super::tree::{BRANCHES, LEAVES_PER_BRANCH, differing};
use crate::error::{Error, Result};
use crate::node::shared::Shared;
use crate::replication::channel::InternalClient;
use crate::replication::replica::apply_streamed;
use crate::replication::wire::{from_wire_keyed, to_wire_keyed};
use crate::storage::{Engine, StorageError};

/// Keys per fetch or push message.
pub const COPY_BATCH: usize = 256;

/// What one exchange found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeReport {
    /// The peer.
    pub peer: u32,
    /// Arcs compared, and those whose roots differed.
    pub arcs: u64,
    pub arcs_differing: u64,
    /// Leaves that differed.
    pub leaves_differing: u64,
    /// Keys listed in differing leaves, both sides.
    pub keys_compared: u64,
    /// Keys copied here, and there.
    pub fetched: u64,
    pub pushed: u64,
    /// Bytes of messages both ways.
    pub bytes: u64,
    /// The arcs now in sync with the peer (both trees built, nothing left uncopied).
    pub synced: Vec<TokenArc>,
}

impl ExchangeReport {
    /// Whether every arc asked is in sync.
    pub fn complete(&self) -> bool {
        self.synced.len() as u64 == self.arcs
    }
}

fn peer_error(peer: u32, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Peer {
        peer,
        reason: format!("anti-entropy {what}: {e}"),
    }
}

fn query(arc: &TokenArc, level: pb::AaeLevel, branches: Vec<u32>) -> pb::AaeArcQuery {
    pb::AaeArcQuery {
        start: arc.start,
        end: arc.end,
        level: level as i32,
        branches,
    }
}

/// Counts a message's bytes and waits for the bandwidth.
async fn spend(shared: &Shared, bytes: &mut u64, m: &impl Message) {
    let n = m.encoded_len() as u64;
    *bytes += n;
    shared.anti_entropy.throttle.spend(n).await;
}

/// The peer's hashes for `queries`, by arc end.
async fn remote_hashes(
    shared: &Shared,
    client: &mut InternalClient,
    peer: u32,
    queries: Vec<pb::AaeArcQuery>,
    bytes: &mut u64,
) -> Result<HashMap<Token, pb::AaeArcHashes>> {
    let req = pb::AaeTreeRequest { queries };
    spend(shared, bytes, &req).await;
    let resp = client
        .aae_tree(req)
        .await
        .map_err(|s| peer_error(peer, "tree", s.message()))?
        .into_inner();
    spend(shared, bytes, &resp).await;
    Ok(resp.arcs.into_iter().map(|h| (h.end, h)).collect())
}

/// The stored entries of `keys`, in their wire form (absent keys are left out): what a fetch
/// answers and a push sends. Blocking: reads the engine.
pub fn stored_entries(
    engine: &dyn Engine,
    keys: Vec<String>,
) -> std::result::Result<Vec<pb::KeyedEntry>, StorageError> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        if let Some(e) = engine.get_entry(&k)? {
            out.push(to_wire_keyed(k, &e));
        }
    }
    Ok(out)
}

/// Runs one exchange with `peer` over `arcs`.
pub async fn exchange(
    shared: &Arc<Shared>,
    peer: u32,
    arcs: &[TokenArc],
) -> Result<ExchangeReport> {
    let ae = &shared.anti_entropy;
    let mut report = ExchangeReport {
        peer,
        arcs: arcs.len() as u64,
        ..ExchangeReport::default()
    };
    if arcs.is_empty() {
        return Ok(report);
    }
    let Some(p) = shared.peer(peer) else {
        return Err(peer_error(peer, "address", "unknown"));
    };
    let mut client = p.client();
    let mut bytes = 0u64;

    // 1. Roots.
    let local: HashMap<Token, Vec<u64>> = ae
        .trees
        .roots(arcs)
        .into_iter()
        .filter(|h| h.built)
        .map(|h| (h.arc.end, h.hashes))
        .collect();
    let queries = arcs
        .iter()
        .filter(|a| local.contains_key(&a.end))
        .map(|a| query(a, pb::AaeLevel::Root, Vec::new()))
        .collect();
    let remote = remote_hashes(shared, &mut client, peer, queries, &mut bytes).await?;
    let mut comparable = Vec::new();
    let mut differ = Vec::new();
    for a in arcs {
        let (Some(l), Some(r)) = (local.get(&a.end), remote.get(&a.end)) else {
            continue;
        };
        if !r.built || r.start != a.start {
            continue;
        }
        comparable.push(*a);
        if *l != r.hashes {
            differ.push(*a);
        }
    }
    report.arcs_differing = differ.len() as u64;

    // 2. Branches of the differing arcs.
    let local_b: HashMap<Token, Vec<u64>> = ae
        .trees
        .branches(&differ)
        .into_iter()
        .map(|h| (h.arc.end, h.hashes))
        .collect();
    let queries = differ
        .iter()
        .map(|a| query(a, pb::AaeLevel::Branches, Vec::new()))
        .collect();
    let remote_b = if differ.is_empty() {
        HashMap::new()
    } else {
        remote_hashes(shared, &mut client, peer, queries, &mut bytes).await?
    };
    let mut branch_diffs: BTreeMap<Token, (TokenArc, Vec<usize>)> = BTreeMap::new();
    for a in &differ {
        let (Some(l), Some(r)) = (local_b.get(&a.end), remote_b.get(&a.end)) else {
            continue;
        };
        if l.len() != BRANCHES || r.hashes.len() != BRANCHES {
            continue;
        }
        branch_diffs.insert(a.end, (*a, differing(l, &r.hashes)));
    }

    // 3. Leaves of the differing branches.
    let queries = branch_diffs
        .values()
        .map(|(a, bs)| {
            query(
                a,
                pb::AaeLevel::Leaves,
                bs.iter().map(|b| *b as u32).collect(),
            )
        })
        .collect();
    let remote_l = if branch_diffs.is_empty() {
        HashMap::new()
    } else {
        remote_hashes(shared, &mut client, peer, queries, &mut bytes).await?
    };
    let mut leaves: LeafSets = BTreeMap::new();
    for (end, (a, bs)) in &branch_diffs {
        let l = ae.trees.leaves(*a, bs);
        let Some(r) = remote_l.get(end) else { continue };
        if !l.built || l.hashes.len() != r.hashes.len() {
            continue;
        }
        let set: BTreeSet<usize> = differing(&l.hashes, &r.hashes)
            .into_iter()
            .map(|i| bs[i / LEAVES_PER_BRANCH] * LEAVES_PER_BRANCH + i % LEAVES_PER_BRANCH)
            .collect();
        report.leaves_differing += set.len() as u64;
        if !set.is_empty() {
            leaves.insert(*end, (*a, set));
        }
    }

    // 4. The keys of the differing leaves, both sides.
    let mut to_copy = super::diff::Plan::default();
    if !leaves.is_empty() {
        let req = pb::AaeKeysRequest {
            arcs: leaves
                .values()
                .map(|(a, set)| pb::AaeLeaves {
                    start: a.start,
                    end: a.end,
                    leaves: set.iter().map(|l| *l as u32).collect(),
                })
                .collect(),
        };
        spend(shared, &mut bytes, &req).await;
        let mut stream = client
            .aae_keys(req)
            .await
            .map_err(|s| peer_error(peer, "keys", s.message()))?
            .into_inner();
        let mut theirs: HashMap<String, KeyMeta> = HashMap::new();
        while let Some(batch) = stream
            .message()
            .await
            .map_err(|s| peer_error(peer, "keys", s.message()))?
        {
            spend(shared, &mut bytes, &batch).await;
            for k in batch.keys {
                let Some(v) = k.version else { continue };
                theirs.insert(
                    k.key,
                    KeyMeta {
                        version: v.into(),
                        collectable: k.collectable,
                    },
                );
            }
        }
        let (s, ls) = (shared.clone(), leaves.clone());
        let grace = shared.config.tombstone_grace.as_millis() as u64;
        let ours =
            crate::blocking::spawn(move || list_keys(s.engine.as_ref(), &ls, s.wall_ms(), grace))
                .await
                .map_err(|e| Error::Membership(format!("anti-entropy key listing: {e}")))??;
        report.keys_compared = (ours.len() + theirs.len()) as u64;
        to_copy = plan(&ours, &theirs);
    }
    let cut = to_copy.truncate(shared.config.anti_entropy_max_keys);

    // 5. Fetch what is newer there.
    for chunk in to_copy.fetch.chunks(COPY_BATCH) {
        let req = pb::AaeFetchRequest {
            keys: chunk.to_vec(),
        };
        spend(shared, &mut bytes, &req).await;
        let batch = client
            .aae_fetch(req)
            .await
            .map_err(|s| peer_error(peer, "fetch", s.message()))?
            .into_inner();
        spend(shared, &mut bytes, &batch).await;
        let entries = from_wire_keyed(batch.entries);
        let s = shared.clone();
        crate::blocking::spawn(move || apply_streamed(&s, entries))
            .await
            .map_err(|e| Error::Membership(format!("anti-entropy apply: {e}")))??;
        report.fetched += chunk.len() as u64;
    }

    // 6. Push what is newer here.
    for chunk in to_copy.push.chunks(COPY_BATCH) {
        let s = shared.clone();
        let keys = chunk.to_vec();
        let entries = crate::blocking::spawn(move || stored_entries(s.engine.as_ref(), keys))
            .await
            .map_err(|e| Error::Membership(format!("anti-entropy read: {e}")))??;
        let req = pb::EntryBatch { entries };
        spend(shared, &mut bytes, &req).await;
        let resp = client
            .aae_push(req)
            .await
            .map_err(|s| peer_error(peer, "push", s.message()))?
            .into_inner();
        spend(shared, &mut bytes, &resp).await;
        report.pushed += chunk.len() as u64;
    }

    report.bytes = bytes;
    if !cut {
        report.synced = comparable;
    }
    Ok(report)
}
