//! The `NodeInternal` service: replication, replica reads (the batched read stream),
//! membership, rebalancing, and the operator and checker calls (local read, node status).
//! Guarded by the cluster-secret interceptor (`service::auth`); errors become statuses through
//! `service::status`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::Stream;
use kvstore_proto::pb;
use kvstore_proto::pb::node_internal_server::NodeInternal;
use kvstore_proto::ring::Arc as TokenArc;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::status::{Op, to_status};
use crate::cluster::gossip::merge_wire;
use crate::cluster::identity::Identity;
use crate::cluster::members::Member;
use crate::cluster::{rebalance, removal, streaming};
use crate::error::Error;
use crate::node::shared::Shared;
use crate::replication::replica::{apply_may_sync, apply_writes};
use crate::replication::wire::to_wire_entry;

/// Batches of one replication stream applied concurrently (their acks may come out of order;
/// last-write-wins makes the order of application irrelevant).
pub const STREAM_CONCURRENCY: usize = 32;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The NodeInternal gRPC handlers.
#[derive(Debug, Clone)]
pub struct InternalService {
    shared: Arc<Shared>,
}

impl InternalService {
    /// Handlers over the node's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Refuses a node of another cluster, or with other placement settings.
    fn check_identity(&self, remote: Option<&pb::ClusterIdentity>) -> Result<(), Status> {
        Identity::of(&self.shared.config)
            .check(remote)
            .map_err(|why| {
                tracing::warn!(%why, "refused a node of another cluster or with other settings");
                to_status(&Error::Precondition(why), Op::Read)
            })
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    to_status(&Error::Membership(e.to_string()), Op::Read)
}

/// The ring state this node reports (members with their effective states).
pub fn ring_state(shared: &Shared) -> pb::RingStateResponse {
    let view = shared.view();
    pb::RingStateResponse {
        ring_version: view.ring_version,
        // States as judged in the same view the coordinator routes by: a member shown down
        // here is one requests are no longer sent to.
        members: shared.read_members(|t, _| t.to_wire_as_judged(&view.health)),
        vnodes: shared.config.vnodes,
        replication_factor: shared.config.replication_factor as u32,
        ring_hash: view.placement.fingerprint(),
    }
}

#[tonic::async_trait]
impl NodeInternal for InternalService {
    async fn replicate(
        &self,
        request: Request<pb::ReplicateRequest>,
    ) -> Result<Response<pb::ReplicateResponse>, Status> {
        super::auth::require_peer(&request)?;
        let s = self.shared.clone();
        let write = request.into_inner();
        let mut results = crate::blocking::spawn(move || apply_writes(&s, vec![write]))
            .await
            .map_err(internal)?;
        Ok(Response::new(results.pop().unwrap_or_default()))
    }

    type ReplicateStreamStream = BoxStream<pb::ReplicateBatchAck>;

    async fn replicate_stream(
        &self,
        request: Request<Streaming<pb::ReplicateBatch>>,
    ) -> Result<Response<Self::ReplicateStreamStream>, Status> {
        super::auth::require_peer(&request)?;
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<pb::ReplicateBatchAck, Status>>(STREAM_CONCURRENCY);
        let shared = self.shared.clone();
        let mut stop = shared.stop_signal();
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(STREAM_CONCURRENCY));
            loop {
                let Some(batch) = next_batch(&mut incoming, &mut stop, "replication stream").await
                else {
                    break;
                };
                if !apply_may_sync(&shared) {
                    // No fsync to wait for: apply here, in order, and skip two hand-offs.
                    let ack = pb::ReplicateBatchAck {
                        batch_id: batch.batch_id,
                        results: apply_writes(&shared, batch.writes),
                    };
                    if tx.send(Ok(ack)).await.is_err() {
                        break;
                    }
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (s, tx) = (shared.clone(), tx.clone());
                tokio::spawn(async move {
                    let id = batch.batch_id;
                    let results = crate::blocking::spawn(move || apply_writes(&s, batch.writes))
                        .await
                        .map_err(internal);
                    let ack = results.map(|results| pb::ReplicateBatchAck {
                        batch_id: id,
                        results,
                    });
                    let _ = tx.send(ack).await;
                    drop(permit);
                });
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ReadStreamStream = BoxStream<pb::ReadBatchAck>;

    async fn read_stream(
        &self,
        request: Request<Streaming<pb::ReadBatch>>,
    ) -> Result<Response<Self::ReadStreamStream>, Status> {
        super::auth::require_peer(&request)?;
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<pb::ReadBatchAck, Status>>(STREAM_CONCURRENCY);
        let shared = self.shared.clone();
        let mut stop = shared.stop_signal();
        // One task per stream, batches answered in order: a read is a lookup in this node's
        // engine (the same call a unary LocalRead makes), so there is nothing to overlap.
        tokio::spawn(async move {
            loop {
                let Some(batch) = next_batch(&mut incoming, &mut stop, "read stream").await else {
                    break;
                };
                let restoring = shared.restoring();
                let results = batch
                    .keys
                    .iter()
                    .map(|key| {
                        if restoring {
                            // Its data is still streaming in: "absent" would be a wrong answer.
                            return pb::ReadResult {
                                error: format!(
                                    "node {} is restoring its data (started with an empty data \
                                     directory)",
                                    shared.id()
                                ),
                                ..Default::default()
                            };
                        }
                        match shared.engine.get_entry(key) {
                            Ok(entry) => pb::ReadResult {
                                found: entry.is_some(),
                                entry: entry.as_ref().map(to_wire_entry),
                                error: String::new(),
                            },
                            Err(e) => pb::ReadResult {
                                error: format!("node {}: {e}", shared.id()),
                                ..Default::default()
                            },
                        }
                    })
                    .collect();
                let ack = pb::ReadBatchAck {
                    batch_id: batch.batch_id,
                    results,
                };
                if tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        super::auth::require_peer(&request)?;
        let req = request.into_inner();
        self.check_identity(req.identity.as_ref())?;
        let member = req
            .member
            .ok_or_else(|| to_status(&Error::invalid("member", "is required"), Op::Read))?;
        if Member::from_wire(&member).is_none() {
            return Err(to_status(
                &Error::invalid(
                    "member.state",
                    format!(
                        "{} is not an announced state (joining, up, leaving, left)",
                        member.state
                    ),
                ),
                Op::Read,
            ));
        }
        if merge_wire(&self.shared, std::slice::from_ref(&member)) {
            tracing::info!(node = member.id, address = %member.address, state = member.state, "member announced");
        }
        Ok(Response::new(pb::AddNodeResponse {
            ring: Some(ring_state(&self.shared)),
        }))
    }

    async fn heartbeat(&self, request: Request<pb::Ping>) -> Result<Response<pb::Pong>, Status> {
        super::auth::require_peer(&request)?;
        let from = request.into_inner().from;
        let (incarnation, ring_version) = self.shared.with_members(|t, now| {
            t.observe_alive(from, now);
            ((t.me().incarnation, t.ring_version()), false)
        });
        Ok(Response::new(pb::Pong {
            from: self.shared.id(),
            incarnation,
            ring_version,
            wall_ms: self.shared.wall_ms(),
        }))
    }

    async fn get_ring_state(
        &self,
        _request: Request<pb::RingStateRequest>,
    ) -> Result<Response<pb::RingStateResponse>, Status> {
        Ok(Response::new(ring_state(&self.shared)))
    }

    async fn gossip(
        &self,
        request: Request<pb::GossipRequest>,
    ) -> Result<Response<pb::GossipResponse>, Status> {
        super::auth::require_peer(&request)?;
        let req = request.into_inner();
        self.check_identity(req.identity.as_ref())?;
        merge_wire(&self.shared, &req.members);
        if req.from != 0 && !req.members.is_empty() {
            self.shared.with_members(|t, now| {
                t.observe_alive(req.from, now);
                ((), false)
            });
        }
        Ok(Response::new(pb::GossipResponse {
            members: self.shared.read_members(|t, _| t.to_wire()),
        }))
    }

    type StreamRangeStream = BoxStream<pb::EntryBatch>;

    async fn stream_range(
        &self,
        request: Request<pb::StreamRangeRequest>,
    ) -> Result<Response<Self::StreamRangeStream>, Status> {
        super::auth::require_peer(&request)?;
        let arcs: Vec<TokenArc> = request
            .into_inner()
            .ranges
            .into_iter()
            .map(|r| TokenArc {
                start: r.start,
                end: r.end,
            })
            .collect();
        let shared = self.shared.clone();
        let rx = crate::blocking::produce(4, move |emit| {
            if let Err(e) = streaming::scan_ranges(&shared, &arcs, |b| emit(Ok(b))) {
                emit(Err(internal(e)));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        super::auth::require_peer(&request)?;
        let node = request.into_inner().node_id;
        if node != self.shared.id() {
            return Err(to_status(
                &Error::invalid(
                    "node_id",
                    format!(
                        "{node} is not this node ({}); send Leave to the node itself",
                        self.shared.id()
                    ),
                ),
                Op::Read,
            ));
        }
        // The leave goes on if this caller gives up; the node stops once it is done (the server
        // finishes in-flight calls first, so this answer still goes out).
        let moved = rebalance::start_leave(&self.shared)
            .await
            .map_err(|e| to_status(&e, Op::Read))?;
        Ok(Response::new(pb::LeaveResponse { keys_moved: moved }))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        super::auth::require_peer(&request)?;
        let node = request.into_inner().node_id;
        // In a task of its own: a caller that gives up (its deadline) must not stop a removal
        // halfway; asking again repeats it harmlessly.
        let shared = self.shared.clone();
        let r = tokio::spawn(async move { removal::remove_node(&shared, node).await })
            .await
            .map_err(|e| {
                to_status(
                    &Error::Membership(format!("removal task failed: {e}")),
                    Op::Read,
                )
            })?
            .map_err(|e| to_status(&e, Op::Read))?;
        Ok(Response::new(pb::RemoveNodeResponse {
            keys_copied: r.keys_copied,
            keys_failed: r.keys_failed,
            members: r.members,
            errors: r.errors,
        }))
    }

    async fn rereplicate(
        &self,
        request: Request<pb::RereplicateRequest>,
    ) -> Result<Response<pb::RereplicateResponse>, Status> {
        super::auth::require_peer(&request)?;
        let req = request.into_inner();
        if !req.previous_owners.contains(&req.removed) {
            return Err(to_status(
                &Error::invalid(
                    "previous_owners",
                    format!("must contain the removed node {}", req.removed),
                ),
                Op::Read,
            ));
        }
        let shared = self.shared.clone();
        let (copied, failed) = tokio::spawn(async move {
            removal::rereplicate(&shared, req.removed, &req.previous_owners).await
        })
        .await
        .map_err(|e| {
            to_status(
                &Error::Membership(format!("re-replication task failed: {e}")),
                Op::Read,
            )
        })?
        .map_err(|e| to_status(&e, Op::Read))?;
        Ok(Response::new(pb::RereplicateResponse {
            keys_copied: copied,
            keys_failed: failed,
        }))
    }

    async fn local_read(
        &self,
        request: Request<pb::LocalReadRequest>,
    ) -> Result<Response<pb::LocalReadResponse>, Status> {
        let key = request.into_inner().key;
        let entry = self
            .shared
            .engine
            .get_entry(&key)
            .map_err(|e| to_status(&Error::Storage(e), Op::Read))?;
        Ok(Response::new(pb::LocalReadResponse {
            found: entry.is_some(),
            entry: entry.as_ref().map(to_wire_entry),
            node: self.shared.id(),
        }))
    }

    async fn aae_tree(
        &self,
        request: Request<pb::AaeTreeRequest>,
    ) -> Result<Response<pb::AaeTreeResponse>, Status> {
        super::auth::require_peer(&request)?;
        require_anti_entropy(&self.shared)?;
        let queries = request.into_inner().queries;
        bounded("queries", queries.len())?;
        let trees = &self.shared.anti_entropy.trees;
        let mut arcs = Vec::with_capacity(queries.len());
        for q in queries {
            let arc = arc_of(q.start, q.end);
            let level = pb::AaeLevel::try_from(q.level).map_err(|_| {
                to_status(
                    &Error::invalid("level", format!("{} is not an AaeLevel", q.level)),
                    Op::Read,
                )
            })?;
            let h = match level {
                pb::AaeLevel::Root => trees.roots(&[arc]).remove(0),
                pb::AaeLevel::Branches => trees.branches(&[arc]).remove(0),
                pb::AaeLevel::Leaves => {
                    let branches: Vec<usize> = q.branches.iter().map(|b| *b as usize).collect();
                    if let Some(b) = branches
                        .iter()
                        .find(|b| **b >= crate::antientropy::tree::BRANCHES)
                    {
                        return Err(to_status(
                            &Error::invalid(
                                "branches",
                                format!("{b} is not below {}", crate::antientropy::tree::BRANCHES),
                            ),
                            Op::Read,
                        ));
                    }
                    trees.leaves(arc, &branches)
                }
            };
            arcs.push(pb::AaeArcHashes {
                start: arc.start,
                end: arc.end,
                built: h.built,
                hashes: h.hashes,
            });
        }
        Ok(Response::new(pb::AaeTreeResponse { arcs }))
    }

    type AaeKeysStream = BoxStream<pb::AaeKeyBatch>;

    async fn aae_keys(
        &self,
        request: Request<pb::AaeKeysRequest>,
    ) -> Result<Response<Self::AaeKeysStream>, Status> {
        super::auth::require_peer(&request)?;
        require_anti_entropy(&self.shared)?;
        let req = request.into_inner();
        bounded("arcs", req.arcs.len())?;
        let mut leaves: crate::antientropy::diff::LeafSets = Default::default();
        for a in req.arcs {
            bounded("leaves", a.leaves.len())?;
            leaves.insert(
                a.end,
                (
                    arc_of(a.start, a.end),
                    a.leaves.iter().map(|l| *l as usize).collect(),
                ),
            );
        }
        let shared = self.shared.clone();
        let permit = shared
            .anti_entropy
            .inbound
            .clone()
            .acquire_owned()
            .await
            .map_err(internal)?;
        let rx = crate::blocking::produce(4, move |emit| {
            let _permit = permit;
            let grace = shared.config.tombstone_grace.as_millis() as u64;
            match crate::antientropy::diff::list_keys(
                shared.engine.as_ref(),
                &leaves,
                shared.wall_ms(),
                grace,
            ) {
                Ok(keys) => {
                    let all: Vec<pb::AaeKey> = keys
                        .into_iter()
                        .map(|(key, m)| pb::AaeKey {
                            key,
                            version: Some(m.version.into()),
                            collectable: m.collectable,
                        })
                        .collect();
                    for chunk in all.chunks(1024) {
                        let batch = pb::AaeKeyBatch {
                            keys: chunk.to_vec(),
                        };
                        if !emit(Ok(batch)) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    emit(Err(to_status(&Error::Storage(e), Op::Read)));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn aae_fetch(
        &self,
        request: Request<pb::AaeFetchRequest>,
    ) -> Result<Response<pb::EntryBatch>, Status> {
        super::auth::require_peer(&request)?;
        require_anti_entropy(&self.shared)?;
        let keys = request.into_inner().keys;
        bounded("keys", keys.len())?;
        let shared = self.shared.clone();
        let entries = crate::blocking::spawn(move || {
            crate::antientropy::exchange::stored_entries(shared.engine.as_ref(), keys)
        })
        .await
        .map_err(internal)?
        .map_err(|e| to_status(&Error::Storage(e), Op::Read))?;
        Ok(Response::new(pb::EntryBatch { entries }))
    }

    async fn aae_push(
        &self,
        request: Request<pb::EntryBatch>,
    ) -> Result<Response<pb::AaePushResponse>, Status> {
        super::auth::require_peer(&request)?;
        require_anti_entropy(&self.shared)?;
        let batch = request.into_inner();
        bounded("entries", batch.entries.len())?;
        let entries = crate::replication::wire::from_wire_keyed(batch.entries);
        let shared = self.shared.clone();
        let applied = crate::blocking::spawn(move || {
            crate::replication::replica::apply_streamed(&shared, entries)
        })
        .await
        .map_err(internal)?
        .map_err(|e| to_status(&Error::Storage(e), Op::Write))?;
        Ok(Response::new(pb::AaePushResponse {
            applied: applied as u64,
        }))
    }

    type RepairStream = BoxStream<pb::RepairProgress>;

    async fn repair(
        &self,
        request: Request<pb::RepairRequest>,
    ) -> Result<Response<Self::RepairStream>, Status> {
        super::auth::require_peer(&request)?;
        require_anti_entropy(&self.shared)?;
        let ranges: Vec<TokenArc> = request
            .into_inner()
            .ranges
            .into_iter()
            .map(|r| arc_of(r.start, r.end))
            .collect();
        bounded("ranges", ranges.len())?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = self.shared.clone();
        // In a task of its own: a caller that goes away does not stop the cycle halfway.
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let summary = crate::antientropy::cycle::run_cycle(&shared, &ranges, move |p| {
                let _ = progress_tx.send(Ok(p));
            })
            .await;
            let _ = tx.send(Ok(crate::antientropy::cycle::summary_message(
                shared.id(),
                &summary,
            )));
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        )))
    }

    async fn node_status(
        &self,
        _request: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let s = &self.shared;
        let ring = ring_state(s);
        let st = s.engine.stats();
        let (replication_acks, replication_p50_us, replication_p99_us) =
            s.peers.latency().summary();
        Ok(Response::new(pb::NodeStatusResponse {
            node_id: s.id(),
            address: s.config.advertise_address.clone(),
            ring_version: ring.ring_version,
            ring_hash: ring.ring_hash,
            members: ring.members,
            keys: st.keys,
            hints_pending: s.hints.pending(),
            hints_bytes: s.hints.bytes(),
            hints_dropped: s.hints.dropped(),
            hints_expired: s.hints.expired(),
            restoring: s.restoring(),
            anti_entropy: Some(anti_entropy_status(s)),
            read_repairs: s.counters.read_repairs.load(Ordering::Relaxed),
            hints_replayed: s.counters.hints_replayed.load(Ordering::Relaxed),
            clock_skew_rejections: s.hlc.skew_rejections(),
            replication_acks,
            replication_p50_us,
            replication_p99_us,
            clock: Some(clock_status(s)),
            replica_refusals: refusal_counts(s),
            writes_refused: s.storage_refusal().unwrap_or_default(),
            requests_shed: s.admission.shed(),
            inflight_requests: s.admission.inflight_requests() as u64,
            inflight_bytes: s.admission.inflight_bytes() as u64,
            inflight_bytes_limit: s.admission.byte_limit() as u64,
            speculative_reads: s.counters.speculative_reads.load(Ordering::Relaxed),
            storage: Some(pb::StorageStats {
                keys: st.keys,
                live_bytes: st.live_bytes,
                dead_bytes: st.dead_bytes,
                segments: st.segments,
                records_recovered: st.records_recovered,
                records_truncated: st.records_truncated,
                records_skipped: st.records_skipped,
            }),
        }))
    }
}

/// Arcs, branches or keys one anti-entropy call may name at most.
pub const MAX_AAE_ITEMS: usize = 65_536;

/// Refuses anti-entropy calls on a node that runs without it.
fn require_anti_entropy(shared: &Shared) -> Result<(), Status> {
    if shared.anti_entropy.enabled {
        Ok(())
    } else {
        Err(to_status(
            &Error::Precondition(format!(
                "node {} runs with --no-anti-entropy: it keeps no hash trees and repairs nothing",
                shared.id()
            )),
            Op::Read,
        ))
    }
}

/// Refuses a list longer than [`MAX_AAE_ITEMS`], naming the field.
fn bounded(field: &'static str, len: usize) -> Result<(), Status> {
    if len > MAX_AAE_ITEMS {
        return Err(to_status(
            &Error::invalid(field, format!("{len} items, at most {MAX_AAE_ITEMS}")),
            Op::Read,
        ));
    }
    Ok(())
}

fn arc_of(start: u64, end: u64) -> TokenArc {
    TokenArc { start, end }
}

/// The anti-entropy figures NodeStatus reports.
fn anti_entropy_status(s: &Shared) -> pb::AntiEntropyStatus {
    let ae = &s.anti_entropy;
    let f = &ae.figures;
    let last = f.last();
    let trees = ae.trees.state();
    pb::AntiEntropyStatus {
        enabled: ae.enabled,
        last_repair_started_ms: last.started_ms,
        last_repair_completed_ms: last.completed_ms,
        repairs_completed: f.repairs_completed.load(Ordering::Relaxed),
        last_repair_arcs: last.arcs,
        exchanges: f.exchanges.load(Ordering::Relaxed),
        exchanges_failed: f.exchanges_failed.load(Ordering::Relaxed),
        keys_compared: f.keys_compared.load(Ordering::Relaxed),
        keys_repaired: f.keys_repaired.load(Ordering::Relaxed),
        bytes: f.bytes.load(Ordering::Relaxed),
        arcs: trees.arcs,
        arcs_built: trees.built,
        tree_pairs: trees.pairs,
        tree_bytes: trees.bytes,
        rebuilding: trees.rebuilding,
        rebuilds: trees.rebuilds_done,
    }
}

/// The clock's health as NodeStatus reports it.
fn clock_status(s: &Shared) -> pb::ClockStatus {
    let verdict = s.clock_verdict();
    let (wall, mono) = (s.wall_ms(), s.mono_ms());
    let last = s.hlc.last();
    pb::ClockStatus {
        state: verdict.state.name().into(),
        reason: verdict.reason,
        offsets: s
            .clock
            .samples()
            .into_iter()
            .map(|(node, sample)| pb::PeerOffset {
                node,
                offset_ms: sample.offset_now(wall, mono),
                uncertainty_ms: sample.uncertainty_ms,
                age_ms: mono.saturating_sub(sample.taken_mono_ms),
            })
            .collect(),
        floor_ahead_ms: crate::hlc::physical_ms(last).saturating_sub(wall),
        highest_timestamp: last,
        writes_refused: s.clock.refusals(),
        max_offset_ms: s.clock.max_offset_ms(),
    }
}

/// Replica refusals of this node's writes, by replica and kind.
fn refusal_counts(s: &Shared) -> Vec<pb::RefusalCount> {
    let m = s
        .counters
        .replica_refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let mut v: Vec<pb::RefusalCount> = m
        .iter()
        .map(|(&(node, refusal), &count)| pb::RefusalCount {
            node,
            refusal: refusal as i32,
            count,
        })
        .collect();
    v.sort_by_key(|r| (r.node, r.refusal));
    v
}

/// The next batch a peer sent on an inbound stream, or `None` when the stream ended or failed
/// (logged) or the node is stopping: every per-peer stream handler ends on the same conditions.
async fn next_batch<T>(
    incoming: &mut Streaming<T>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    what: &str,
) -> Option<T> {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => None,
        m = incoming.message() => match m {
            Ok(batch) => batch,
            Err(status) => {
                tracing::debug!(%status, "{what} from a peer failed");
                None
            }
        },
    }
}
