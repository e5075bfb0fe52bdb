//! The per-peer read stream: a coordinator's replica reads, batched under load.
//!
//! A QUORUM get reads R replicas; the remote ones used to cost one unary `LocalRead` (one
//! HTTP/2 request with its headers, its stream and its task on both sides) each. A
//! [`Reader`] instead owns one long-lived `ReadStream` to its peer: reads queue on a bounded
//! channel, the task drains whatever is queued into one batch (up to [`MAX_BATCH_READS`]
//! keys), keeps up to [`MAX_INFLIGHT_BATCHES`] batches in flight, and resolves each read when
//! its batch's ack arrives. At low load a batch is one key and costs one stream message; under
//! load one message carries many.
//!
//! A broken stream fails every read in flight (a failed replica answer: the coordinator asks
//! the next live replica, as it did when a unary read failed) and is re-opened on the next
//! read, at most once per [`RECONNECT_BACKOFF`]. The task holds no lock across an await.
//!
//! Not here: quorum counting and read repair (`coordinator`), serving the stream
//! (`service::internal`), writes (`peer`'s replicator).

use std::collections::HashMap;
use tokio::time::Instant;

use kvstore_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::channel::{InternalClient, RECONNECT_BACKOFF};
use super::wire::from_wire_entry;
use crate::storage::Entry;

/// Largest number of keys in one read batch.
pub const MAX_BATCH_READS: usize = 256;
/// Batches awaiting their ack on one stream; beyond it reads queue (and batch up).
pub const MAX_INFLIGHT_BATCHES: usize = 64;
/// Reads queued for one peer; a full queue fails the read at once (the peer is far behind).
pub const QUEUE_DEPTH: usize = 16 * 1024;

/// A replica's answer: its stored entry (or none), or why it gave none.
pub type ReadOutcome = Result<Option<Entry>, String>;

type Pending = (String, oneshot::Sender<ReadOutcome>);

/// The handle of one peer's read stream task; the task stops when the last handle is dropped.
#[derive(Debug)]
pub struct Reader {
    peer: u32,
    queue: mpsc::Sender<Pending>,
}

impl Reader {
    /// Starts the read task of `peer` over `client`. Needs a Tokio runtime.
    pub fn spawn(peer: u32, client: InternalClient) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(peer, client, rx));
        Self { peer, queue }
    }

    /// Whether the task has stopped (then a new reader is needed).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Reads `key` from the peer's storage (no timeout: the caller bounds the wait).
    pub async fn read(&self, key: &str) -> ReadOutcome {
        let (tx, rx) = oneshot::channel();
        self.queue
            .try_send((key.to_owned(), tx))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    format!("read queue to node {} is full", self.peer)
                }
                mpsc::error::TrySendError::Closed(_) => {
                    format!("reader of node {} stopped", self.peer)
                }
            })?;
        rx.await
            .unwrap_or_else(|_| Err(format!("reader of node {} dropped the read", self.peer)))
    }
}

/// The read task of one peer: lives as long as the queue's senders.
async fn run(peer: u32, client: InternalClient, mut queue: mpsc::Receiver<Pending>) {
    let mut last_failure: Option<Instant> = None;
    while let Some(first) = queue.recv().await {
        if let Some(t) = last_failure
            && t.elapsed() < RECONNECT_BACKOFF
        {
            // The peer failed a moment ago: fail fast (the coordinator asks another replica).
            let reason = format!("node {peer} recently unreachable");
            let _ = first.1.send(Err(reason.clone()));
            while let Ok((_, tx)) = queue.try_recv() {
                let _ = tx.send(Err(reason.clone()));
            }
            continue;
        }
        let (batches_tx, batches_rx) = mpsc::channel::<pb::ReadBatch>(MAX_INFLIGHT_BATCHES);
        let mut c = client.clone();
        let mut acks = match c.read_stream(ReceiverStream::new(batches_rx)).await {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                last_failure = Some(Instant::now());
                tracing::debug!(peer, %status, "cannot open read stream");
                let _ = first.1.send(Err(status.message().to_owned()));
                continue;
            }
        };
        let mut next_id: u64 = 0;
        let mut inflight: HashMap<u64, Vec<oneshot::Sender<ReadOutcome>>> = HashMap::new();
        let mut pending_first = Some(first);
        let broken: String = loop {
            if inflight.len() >= MAX_INFLIGHT_BATCHES {
                if let Err(reason) = handle_ack(acks.next().await, &mut inflight) {
                    break reason;
                }
                continue;
            }
            let (key, tx) = match pending_first.take() {
                Some(item) => item,
                None => tokio::select! {
                    biased;
                    ack = acks.next() => match handle_ack(ack, &mut inflight) {
                        Ok(()) => continue,
                        Err(reason) => break reason,
                    },
                    item = queue.recv() => match item {
                        Some(item) => item,
                        None => break "node shutting down".into(),
                    },
                },
            };
            // Fill a batch with whatever else is queued.
            let mut keys = vec![key];
            let mut replies = vec![tx];
            while keys.len() < MAX_BATCH_READS {
                match queue.try_recv() {
                    Ok((key, tx)) => {
                        keys.push(key);
                        replies.push(tx);
                    }
                    Err(_) => break,
                }
            }
            next_id += 1;
            inflight.insert(next_id, replies);
            let batch = pb::ReadBatch {
                batch_id: next_id,
                keys,
            };
            if batches_tx.send(batch).await.is_err() {
                break "read stream closed".into();
            }
        };
        last_failure = Some(Instant::now());
        tracing::debug!(peer, reason = %broken, inflight = inflight.len(), "read stream ended");
        for (_, replies) in inflight.drain() {
            for tx in replies {
                let _ = tx.send(Err(broken.clone()));
            }
        }
    }
}

/// Resolves the reads of the batch `ack` answers; an error ends the stream.
fn handle_ack(
    ack: Option<Result<pb::ReadBatchAck, tonic::Status>>,
    inflight: &mut HashMap<u64, Vec<oneshot::Sender<ReadOutcome>>>,
) -> Result<(), String> {
    let ack = match ack {
        Some(Ok(ack)) => ack,
        Some(Err(status)) => return Err(format!("read stream failed: {}", status.message())),
        None => return Err("read stream closed by the peer".into()),
    };
    let Some(replies) = inflight.remove(&ack.batch_id) else {
        return Ok(());
    };
    let mut results = ack.results.into_iter();
    for tx in replies {
        let outcome = match results.next() {
            Some(r) if !r.error.is_empty() => Err(r.error),
            Some(r) if r.found => Ok(r.entry.map(from_wire_entry)),
            Some(_) => Ok(None),
            None => Err("ack without a result for this read".into()),
        };
        let _ = tx.send(outcome);
    }
    Ok(())
}
