//! Connections to the other nodes, and the per-peer replication stream.
//!
//! [`Peers`] keeps one lazily connected tonic channel per peer (HTTP/2 multiplexes every call
//! over it) and, per peer, one replicator task owning a long-lived `ReplicateStream`. Writes for
//! a peer queue on a bounded channel; the task drains whatever is queued into one batch (up to
//! [`MAX_BATCH_WRITES`] writes or [`MAX_BATCH_BYTES`]), keeps up to [`MAX_INFLIGHT_BATCHES`]
//! batches in flight, and resolves each write when its batch's ack arrives. Under load a batch
//! carries many writes, so a 3-replica write costs a fraction of three unary round trips; at
//! low load a batch is one write and costs one stream message, no more than a unary call.
//!
//! A broken stream fails every write in flight as [`ReplicaFailure::Unreachable`] (it may
//! have been applied; the coordinator turns those into hints; a write that never left the
//! queue fails as [`ReplicaFailure::NotSent`]) and is re-opened on the next write, at most once per
//! [`RECONNECT_BACKOFF`]. The task holds no lock across an await.
//!
//! Each peer also owns a [`Reader`] (its batched read stream, `reader.rs`) for the remote
//! replica reads of coordinated gets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use super::channel::{AddSecret, InternalClient, PeerChannel, PeerNetwork, RECONNECT_BACKOFF};
use super::reader::{ReadOutcome, Reader};
use kvstore_proto::pb;
use kvstore_proto::pb::node_internal_client::NodeInternalClient;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Largest number of writes in one batch.
pub const MAX_BATCH_WRITES: usize = 512;
/// Largest payload of one batch (a single larger write travels alone).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Batches awaiting their ack on one stream; beyond it writes queue (and batch up).
pub const MAX_INFLIGHT_BATCHES: usize = 64;
/// Writes queued for one peer; a full queue fails the write at once (the peer is far behind).
pub const QUEUE_DEPTH: usize = 16 * 1024;
/// Bytes of writes queued for or in flight to one peer; beyond it a write fails at once as not
/// sent (and is hinted), so a slow peer cannot make this node hold unbounded values in memory.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Why a replica did not take a write. The variants differ in what the coordinator may tell
/// its client: only a write that reached no replica is a definite failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaFailure {
    /// The write never left this node (the peer's queue was full, its stream could not be
    /// opened, it failed a moment ago): the replica cannot have applied it. A hint replays it.
    NotSent(String),
    /// The replica answered and did not take the write. `maybe_applied` is set when its
    /// storage failed part-way (the write may be stored after all).
    Refused {
        /// The kind of refusal (clock skew, disk full, ...).
        refusal: pb::Refusal,
        /// The replica's words.
        reason: String,
        /// Whether the replica may nonetheless hold the write.
        maybe_applied: bool,
    },
    /// The write was handed to the network but no answer came (the stream broke, the deadline
    /// passed): it may have been applied. A hint replays it.
    Unreachable(String),
}

impl ReplicaFailure {
    /// Whether the replica may hold the write despite the failure.
    pub fn may_have_applied(&self) -> bool {
        match self {
            Self::NotSent(_) => false,
            Self::Refused { maybe_applied, .. } => *maybe_applied,
            Self::Unreachable(_) => true,
        }
    }

    /// Whether replaying the write later can succeed (then it is hinted): every failure but a
    /// malformed write. A refusal for clock skew or a full disk is a state of the replica that
    /// passes; hints are bounded, and anti-entropy covers what they drop.
    pub fn worth_hinting(&self) -> bool {
        !matches!(
            self,
            Self::Refused {
                refusal: pb::Refusal::Invalid,
                ..
            }
        )
    }
}

impl std::fmt::Display for ReplicaFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent(m) => write!(f, "not sent: {m}"),
            Self::Refused { reason, .. } => write!(f, "refused: {reason}"),
            Self::Unreachable(m) => write!(f, "unreachable: {m}"),
        }
    }
}

/// A write waiting for its ack: where to answer, and when it was handed over (for the
/// replication latency histogram).
struct Reply {
    tx: oneshot::Sender<Result<(), ReplicaFailure>>,
    queued: Instant,
    _bytes: QueuedBytes,
}

/// A write's share of its peer's queued bytes, given back when the write is answered (or
/// dropped).
struct QueuedBytes {
    counter: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Coordinator-to-replica acknowledgement latency, in microseconds, over every peer: an
/// HdrHistogram for NodeStatus's percentiles and fixed buckets for the metrics.
#[derive(Debug)]
pub struct AckLatency(
    Mutex<hdrhistogram::Histogram<u64>>,
    crate::instruments::Histogram,
);

impl Default for AckLatency {
    fn default() -> Self {
        // 1 us .. 60 s at 3 significant digits: a few tens of KB, fixed.
        let h = hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        Self(
            Mutex::new(h),
            crate::instruments::Histogram::new(crate::instruments::LATENCY_BUCKETS),
        )
    }
}

impl AckLatency {
    fn record_all(&self, samples: &[u64]) {
        let mut h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for &us in samples {
            h.saturating_record(us.max(1));
            self.1.observe(Duration::from_micros(us));
        }
    }

    /// The fixed-bucket histogram of the same acknowledgements.
    pub fn buckets(&self) -> &crate::instruments::Histogram {
        &self.1
    }

    /// (acks recorded, p50 us, p99 us).
    pub fn summary(&self) -> (u64, u64, u64) {
        let h = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (h.len(), h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    }
}

/// One peer: its channel and its replicator's queue.
#[derive(Debug)]
pub struct Peer {
    id: u32,
    address: String,
    client: InternalClient,
    queue: mpsc::Sender<(pb::ReplicateRequest, Reply)>,
    queued_bytes: Arc<AtomicUsize>,
    reader: Reader,
    /// When the replicator last saw this peer fail (a stream it could not open, or one that
    /// broke); `None` once a stream opens again.
    failed_at: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("queued", &self.queued)
            .finish()
    }
}

impl Peer {
    /// The peer's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The peer's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A client for unary and streaming calls to this peer (cheap clone, shared connection).
    pub fn client(&self) -> InternalClient {
        self.client.clone()
    }

    /// Reads `key` from this peer's storage through its read stream (no timeout: the caller
    /// bounds the wait). An error is a failed replica answer.
    pub async fn read(&self, key: &str) -> ReadOutcome {
        self.reader.read(key).await
    }

    /// Whether the peer failed less than [`RECONNECT_BACKOFF`] ago: its replicator fails
    /// writes at once meanwhile, so a coordinator that needs this replica can refuse a write
    /// before sending it to anyone (a definite failure) instead of sending it to the others
    /// and having to answer "unknown". Long before the failure detector says down.
    pub fn recently_failed(&self, now: Instant) -> bool {
        let failed_at = *self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed_at.is_some_and(|t| now.saturating_duration_since(t) < RECONNECT_BACKOFF)
    }

    /// Sends one replica write through the peer's stream and waits for its ack (no timeout:
    /// the caller bounds the wait).
    pub async fn replicate(&self, write: pb::ReplicateRequest) -> Result<(), ReplicaFailure> {
        let bytes = write_bytes(&write);
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        let guard = QueuedBytes {
            counter: self.queued_bytes.clone(),
            bytes,
        };
        if before > 0 && before + bytes > MAX_QUEUED_BYTES {
            return Err(ReplicaFailure::NotSent(format!(
                "{before} bytes already queued for node {} (limit {MAX_QUEUED_BYTES})",
                self.id
            )));
        }
        let (tx, rx) = oneshot::channel();
        let reply = Reply {
            tx,
            queued: Instant::now(),
            _bytes: guard,
        };
        self.queue.try_send((write, reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ReplicaFailure::NotSent(format!("queue to node {} is full", self.id))
            }
            mpsc::error::TrySendError::Closed(_) => {
                ReplicaFailure::NotSent(format!("replicator of node {} stopped", self.id))
            }
        })?;
        rx.await.unwrap_or_else(|_| {
            Err(ReplicaFailure::Unreachable(format!(
                "replicator of node {} dropped the write",
                self.id
            )))
        })
    }
}

/// Every peer this node talks to.
#[derive(Debug)]
pub struct Peers {
    peers: Mutex<HashMap<u32, Arc<Peer>>>,
    /// What every connection goes through (TCP in a node process, memory in a simulation).
    network: Arc<dyn PeerNetwork>,
    secret: AddSecret,
    message_limit: usize,
    latency: Arc<AckLatency>,
}

impl Peers {
    /// No peers yet; every connection goes through `network`, `secret` is sent on every call
    /// and `message_limit` bounds gRPC messages.
    pub fn new(network: Arc<dyn PeerNetwork>, secret: Option<&str>, message_limit: usize) -> Self {
        Self {
            peers: Mutex::new(HashMap::new()),
            network,
            secret: AddSecret::new(secret),
            message_limit,
            latency: Arc::default(),
        }
    }

    /// Acknowledgement latency over every peer's stream.
    pub fn latency(&self) -> &AckLatency {
        &self.latency
    }

    /// A client for an address that need not be a member (seeds).
    pub fn client_for(&self, address: &str) -> Result<InternalClient, String> {
        let channel = self.network.channel(address)?;
        Ok(self.wrap(channel))
    }

    fn wrap(&self, channel: PeerChannel) -> InternalClient {
        NodeInternalClient::with_interceptor(channel, self.secret.clone())
            .max_decoding_message_size(self.message_limit)
            .max_encoding_message_size(self.message_limit)
    }

    /// Whether the peer `id`, if this node talks to it, failed a moment ago
    /// ([`Peer::recently_failed`]).
    pub fn recently_failed(&self, id: u32, now: Instant) -> bool {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.get(&id).is_some_and(|p| p.recently_failed(now))
    }

    /// The peer `id` at `address`, connecting (lazily) on first use or when its address
    /// changed. Must be called inside a tokio runtime (it may spawn the replicator).
    pub fn get(&self, id: u32, address: &str) -> Result<Arc<Peer>, String> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = peers.get(&id)
            && p.address == address
            && !p.queue.is_closed()
            && !p.reader.is_closed()
        {
            return Ok(p.clone());
        }
        let client = self.wrap(self.network.channel(address)?);
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let failed_at = Arc::new(Mutex::new(None));
        tokio::spawn(replicator(
            id,
            client.clone(),
            rx,
            self.latency.clone(),
            failed_at.clone(),
        ));
        let reader = Reader::spawn(id, client.clone());
        let peer = Arc::new(Peer {
            id,
            address: address.to_owned(),
            client,
            queue,
            queued_bytes: Arc::new(AtomicUsize::new(0)),
            reader,
            failed_at,
        });
        peers.insert(id, peer.clone());
        Ok(peer)
    }
}

fn write_bytes(w: &pb::ReplicateRequest) -> usize {
    w.key.len() + w.value.len() + 64
}

/// The replicator task of one peer: lives as long as the queue's senders.
async fn replicator(
    peer: u32,
    client: InternalClient,
    mut queue: mpsc::Receiver<(pb::ReplicateRequest, Reply)>,
    latency: Arc<AckLatency>,
    failed_at: Arc<Mutex<Option<Instant>>>,
) {
    let mut carry: Option<(pb::ReplicateRequest, Reply)> = None;
    let mut last_failure: Option<Instant> = None;
    let set_failed = |at: Option<Instant>| {
        *failed_at.lock().unwrap_or_else(|p| p.into_inner()) = at;
    };
    loop {
        let first = match carry.take() {
            Some(item) => item,
            None => match queue.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        if let Some(t) = last_failure
            && t.elapsed() < RECONNECT_BACKOFF
        {
            // The peer failed a moment ago: fail fast rather than pile up behind it.
            let why = format!("node {peer} recently unreachable");
            fail(first.1, ReplicaFailure::NotSent(why.clone()));
            while let Ok((_, reply)) = queue.try_recv() {
                fail(reply, ReplicaFailure::NotSent(why.clone()));
            }
            continue;
        }
        let (batches_tx, batches_rx) = mpsc::channel::<pb::ReplicateBatch>(MAX_INFLIGHT_BATCHES);
        let mut c = client.clone();
        let mut acks = match c.replicate_stream(ReceiverStream::new(batches_rx)).await {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                last_failure = Some(Instant::now());
                set_failed(last_failure);
                tracing::debug!(peer, %status, "cannot open replication stream");
                fail(
                    first.1,
                    ReplicaFailure::NotSent(format!(
                        "cannot open a replication stream: {}",
                        status.message()
                    )),
                );
                continue;
            }
        };
        set_failed(None);
        let mut next_id: u64 = 0;
        let mut inflight: HashMap<u64, Vec<Reply>> = HashMap::new();
        let mut pending_first = Some(first);
        let broken: String = loop {
            // Fill a batch: the carried write, then whatever is queued.
            if inflight.len() < MAX_INFLIGHT_BATCHES {
                let item = match pending_first.take() {
                    Some(item) => Some(item),
                    None => tokio::select! {
                        biased;
                        ack = acks.next() => {
                            match handle_ack(ack, &mut inflight, &latency) {
                                Ok(()) => continue,
                                Err(reason) => break reason,
                            }
                        }
                        item = queue.recv() => match item {
                            Some(item) => Some(item),
                            None => break "node shutting down".into(),
                        },
                    },
                };
                if let Some((w, reply)) = item {
                    let mut bytes = write_bytes(&w);
                    let mut writes = vec![w];
                    let mut replies = vec![reply];
                    while writes.len() < MAX_BATCH_WRITES && bytes < MAX_BATCH_BYTES {
                        match queue.try_recv() {
                            Ok((w, reply)) => {
                                bytes += write_bytes(&w);
                                writes.push(w);
                                replies.push(reply);
                            }
                            Err(_) => break,
                        }
                    }
                    next_id += 1;
                    let batch = pb::ReplicateBatch {
                        batch_id: next_id,
                        writes,
                    };
                    inflight.insert(next_id, replies);
                    if batches_tx.send(batch).await.is_err() {
                        break "replication stream closed".into();
                    }
                }
            } else {
                let ack = acks.next().await;
                if let Err(reason) = handle_ack(ack, &mut inflight, &latency) {
                    break reason;
                }
            }
        };
        last_failure = Some(Instant::now());
        set_failed(last_failure);
        tracing::debug!(peer, reason = %broken, inflight = inflight.len(), "replication stream ended");
        for (_, replies) in inflight.drain() {
            for r in replies {
                fail(r, ReplicaFailure::Unreachable(broken.clone()));
            }
        }
        if queue.is_closed() && queue.is_empty() {
            return;
        }
    }
}

fn fail(reply: Reply, failure: ReplicaFailure) {
    let _ = reply.tx.send(Err(failure));
}

fn handle_ack(
    ack: Option<Result<pb::ReplicateBatchAck, tonic::Status>>,
    inflight: &mut HashMap<u64, Vec<Reply>>,
    latency: &AckLatency,
) -> Result<(), String> {
    let ack = match ack {
        Some(Ok(ack)) => ack,
        Some(Err(status)) => {
            return Err(format!("replication stream failed: {}", status.message()));
        }
        None => return Err("replication stream closed by the peer".into()),
    };
    let Some(replies) = inflight.remove(&ack.batch_id) else {
        return Ok(());
    };
    let mut results = ack.results.into_iter();
    let mut samples = Vec::with_capacity(replies.len());
    for reply in replies {
        let outcome = match results.next() {
            Some(r) if r.success => {
                samples.push(reply.queued.elapsed().as_micros() as u64);
                Ok(())
            }
            Some(r) => Err(ReplicaFailure::Refused {
                refusal: r.refusal(),
                reason: r.error,
                maybe_applied: r.maybe_applied,
            }),
            None => Err(ReplicaFailure::Refused {
                refusal: pb::Refusal::Storage,
                reason: "ack without a result for this write".into(),
                maybe_applied: true,
            }),
        };
        let _ = reply.tx.send(outcome);
    }
    latency.record_all(&samples);
    Ok(())
}
