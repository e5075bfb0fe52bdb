//! The coordinator: one client request's trip to the replicas and back.
//!
//! - Put/Delete: stamp a new HLC version, send the entry to every replica of the key's write set
//!   in parallel (itself through the engine, peers through their replication streams), answer
//!   after the write quorum, and leave the stragglers to a background task that turns every
//!   replica that failed or did not answer into a hint.
//! - Get: ask R live replicas of the key (this node first when it is one, peers through their
//!   batched read streams; a replica that fails is replaced by the next live one), answer with
//!   the newest version, and in the background send the newest entry to every replica that
//!   answered older or nothing (read repair, counted).
//!
//! Quorum arithmetic is in [`super::quorum`]; this module only moves messages and time.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream::{FuturesUnordered, StreamExt};
use kvstore_proto::{ConsistencyLevel, pb};
use tokio::time::{Instant, timeout_at};

use super::peer::ReplicaFailure;
use super::quorum::{self, Progress, ReadQuorum, WriteQuorum};
use super::replica::{
    apply_may_sync, clock_refusal, from_the_future, note_storage_outcome, storage_refusal,
};
use super::wire::to_replicate;
use crate::cluster::hints::Kept;
use crate::error::{Error, Result};
use crate::node::shared::Shared;
use crate::storage::Entry;

type ReplicaFuture<T> = Pin<Box<dyn Future<Output = (u32, T)> + Send>>;

/// Applies an entry to this node's engine: off the async threads when it may fsync, inline
/// otherwise (see [`super::replica::apply_may_sync`]). A version further ahead of this node's
/// wall clock than the max offset is refused, as a peer would refuse it (read repair brings
/// versions from other replicas here too).
pub async fn apply_local(shared: &Arc<Shared>, key: String, entry: Entry) -> Result<()> {
    shared.hlc.check(entry.version.hlc)?;
    if !apply_may_sync(shared) {
        let outcome = shared.engine.apply(&key, entry);
        note_storage_outcome(shared, &outcome);
        return outcome.map(|_| ()).map_err(Error::from);
    }
    let s = shared.clone();
    crate::blocking::spawn(move || {
        let outcome = s.engine.apply(&key, entry);
        note_storage_outcome(&s, &outcome);
        outcome.map(|_| ())
    })
    .await
    .map_err(|e| Error::Membership(format!("storage task failed: {e}")))?
    .map_err(Error::from)
}

/// The replica failure of a local apply's error.
fn local_failure(e: Error) -> ReplicaFailure {
    let (refusal, maybe_applied) = match &e {
        Error::Clock(he) => (clock_refusal(he), false),
        Error::Storage(se) => storage_refusal(se),
        _ => (pb::Refusal::Storage, true),
    };
    ReplicaFailure::Refused {
        refusal,
        reason: e.to_string(),
        maybe_applied,
    }
}

/// Sends `entry` to replica `node` (this node or a peer).
pub async fn send_to_replica(
    shared: &Arc<Shared>,
    node: u32,
    key: &str,
    entry: &Entry,
) -> std::result::Result<(), ReplicaFailure> {
    if node == shared.id() {
        return apply_local(shared, key.to_owned(), entry.clone())
            .await
            .map_err(local_failure);
    }
    let Some(peer) = shared.peer(node) else {
        shared
            .counters
            .replica_not_sent
            .fetch_add(1, Ordering::Relaxed);
        return Err(ReplicaFailure::NotSent(format!(
            "node {node} has no address"
        )));
    };
    let r = peer.replicate(to_replicate(key, entry)).await;
    let c = &shared.counters;
    match &r {
        Err(ReplicaFailure::Refused { refusal, .. }) => c.count_refusal(node, *refusal),
        Err(ReplicaFailure::NotSent(_)) => {
            c.replica_not_sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(ReplicaFailure::Unreachable(_)) => {
            c.replica_unreachable.fetch_add(1, Ordering::Relaxed);
        }
        Ok(()) => {}
    }
    r
}

/// Keeps a hint for `node`, on a blocking thread (the hints engine may fsync). The write it
/// belongs to does not wait for it: hints speed up convergence, the acknowledged copies are
/// what make a write durable.
fn hint(shared: &Arc<Shared>, node: u32, key: &str, entry: &Entry) {
    if shared.config.faults.no_repair || shared.config.faults.no_hints {
        return;
    }
    let Some(slot) = shared.hints.reserve(key.len() + entry.value.len()) else {
        let dropped = shared.hints.dropped();
        if dropped.is_power_of_two() {
            tracing::warn!(
                node,
                dropped,
                "hints are being stored slower than they come: new hints dropped"
            );
        }
        return;
    };
    let (s, key, entry) = (shared.clone(), key.to_owned(), entry.clone());
    let now = shared.wall_ms();
    crate::blocking::spawn(
        move || match (s.hints.add(node, &key, entry, now), slot).0 {
            Ok(Kept::Stored) => {}
            Ok(Kept::Expired) => {
                tracing::debug!(node, key, "write older than the hint window: not hinted");
            }
            Ok(full @ (Kept::TargetFull | Kept::StoreFull)) => {
                // Logged at 1, 2, 4, 8, ... drops: a long outage must not flood the log.
                let dropped = s.hints.dropped();
                if dropped.is_power_of_two() {
                    let which = if full == Kept::TargetFull {
                        "this node's hints for the down node are at --max-hints-per-target"
                    } else {
                        "the hint store is at --max-hint-bytes"
                    };
                    tracing::warn!(
                        node,
                        dropped,
                        "{which}: new hints dropped (repair heals those keys)"
                    );
                }
            }
            Err(e) => tracing::error!(node, key, error = %e, "cannot store hint"),
        },
    );
}

/// Writes `entry` (already stamped) under `key` to its replicas at `level`.
///
/// The failure is definite (`maybe_applied: false`) only when no replica can hold the write:
/// nothing was sent, or every replica it was sent to refused it before storing anything. Once a
/// write is on its way to a replica that has not answered, a failure is an unknown outcome.
pub async fn write(
    shared: &Arc<Shared>,
    key: &str,
    entry: Entry,
    level: ConsistencyLevel,
) -> Result<()> {
    let view = shared.view();
    let ws = view.placement.write_set(key);
    let required = level.required(shared.config.replication_factor);
    let level_name = level.to_string();
    // A peer whose stream failed a moment ago counts as not taking writes: if the write needs
    // it, it is refused here, sent nowhere (a definite failure), instead of being sent to the
    // others and answered "unknown"; otherwise it is hinted for that peer, as its replicator
    // would have failed it anyway.
    let now = tokio::time::Instant::now();
    let takes_writes = |n: u32| {
        view.takes_writes(n) && (n == shared.id() || !shared.peers.recently_failed(n, now))
    };
    if let Err((needed, live)) = quorum::check_live(&ws, required, takes_writes) {
        return Err(Error::Unavailable {
            needed,
            live,
            level: level_name,
            kind: "W",
        });
    }
    if shared.config.faults.ack_before_write {
        // Fault injection: acknowledge without writing anything.
        return Ok(());
    }
    let deadline = Instant::now() + shared.config.request_timeout;
    let mut q = WriteQuorum::new(&ws, required);
    let mut futs: FuturesUnordered<ReplicaFuture<std::result::Result<(), ReplicaFailure>>> =
        FuturesUnordered::new();
    for node in ws.targets() {
        if !takes_writes(node) {
            hint(shared, node, key, &entry);
            q.record(node, false);
            continue;
        }
        let (s, k, e) = (shared.clone(), key.to_owned(), entry.clone());
        futs.push(Box::pin(async move {
            let r = send_to_replica(&s, node, &k, &e).await;
            (node, r)
        }));
    }
    let mut silent: Vec<u32> = ws
        .targets()
        .into_iter()
        .filter(|&n| takes_writes(n))
        .collect();
    // Whether some replica may hold the write: an ack, a failure that may have applied, or
    // (checked below) a replica still silent when the coordinator answers.
    let mut maybe_applied = false;
    let outcome = loop {
        if q.progress() != Progress::Waiting {
            break q.progress();
        }
        match timeout_at(deadline, futs.next()).await {
            Ok(Some((node, r))) => {
                silent.retain(|&n| n != node);
                if let Err(f) = &r {
                    tracing::debug!(node, key, failure = %f, "replica write failed");
                    maybe_applied |= f.may_have_applied();
                    if f.worth_hinting() {
                        hint(shared, node, key, &entry);
                    }
                } else {
                    maybe_applied = true;
                }
                q.record(node, r.is_ok());
            }
            Ok(None) => break q.progress(),
            Err(_) => break Progress::Waiting,
        }
    };
    maybe_applied |= !futs.is_empty();
    if !futs.is_empty() {
        // Stragglers: wait a little longer in the background; whoever fails or stays silent
        // gets a hint (hints are idempotent, so a late success costs one redundant replay).
        let (s, k, e) = (shared.clone(), key.to_owned(), entry.clone());
        tokio::spawn(async move {
            let grace = Instant::now() + s.config.request_timeout;
            while let Ok(Some((node, r))) = timeout_at(grace, futs.next()).await {
                silent.retain(|&n| n != node);
                if let Err(f) = r
                    && f.worth_hinting()
                {
                    hint(&s, node, &k, &e);
                }
            }
            for node in silent {
                if node != s.id() {
                    hint(&s, node, &k, &e);
                }
            }
        });
    }
    match outcome {
        Progress::Succeeded => Ok(()),
        Progress::Failed | Progress::Waiting => Err(Error::NotEnoughReplicas {
            needed: q.needed(),
            acked: q.acked(),
            level: level_name,
            kind: "W",
            timed_out: outcome == Progress::Waiting,
            maybe_applied,
        }),
    }
}

/// Reads this node's stored entry for `key`.
pub fn read_local(shared: &Shared, key: &str) -> Result<Option<Entry>> {
    Ok(shared.engine.get_entry(key)?)
}

/// A replica's answer as the coordinator may use it: a version further ahead of this node's
/// wall clock than the max offset is never served or spread by read repair (it would hide
/// every acknowledged write to the key until real time caught up); the answer counts as a
/// failed one, so a spare replica is asked instead.
fn usable(
    shared: &Shared,
    node: u32,
    key: &str,
    answer: Option<Entry>,
) -> std::result::Result<Option<Entry>, ()> {
    match answer {
        Some(e) if from_the_future(shared, key, e.version, "replica read") => {
            tracing::debug!(node, key, version = %e.version, "replica answered a future version");
            Err(())
        }
        a => Ok(a),
    }
}

async fn read_replica(
    shared: &Arc<Shared>,
    node: u32,
    key: &str,
) -> std::result::Result<Option<Entry>, ()> {
    let answer = if node == shared.id() {
        if shared.restoring() {
            // Its data is still streaming in: "absent" would be a wrong answer.
            return Err(());
        }
        read_local(shared, key).map_err(|e| {
            tracing::warn!(key, error = %e, "local read failed");
        })?
    } else {
        let peer = shared.peer(node).ok_or(())?;
        peer.read(key).await.map_err(|reason| {
            tracing::debug!(node, key, %reason, "replica read failed");
        })?
    };
    usable(shared, node, key, answer)
}

/// Reads `key` at `level`: the newest entry among R replicas (a tombstone or expired value
/// included; the caller decides what is live).
pub async fn read(
    shared: &Arc<Shared>,
    key: &str,
    level: ConsistencyLevel,
) -> Result<Option<Entry>> {
    let view = shared.view();
    let replicas = view.placement.read_replicas(key);
    let required = level.required(shared.config.replication_factor);
    let level_name = level.to_string();
    let need = quorum::needed(required, replicas.len());
    // This node first (its answer costs no hop), then the preference order.
    let mut live: Vec<u32> = replicas
        .iter()
        .copied()
        .filter(|&n| view.is_live(n))
        .collect();
    if let Some(pos) = live.iter().position(|&n| n == shared.id()) {
        live[..=pos].rotate_right(1);
    }
    // Replicas that made a recent read speculate are asked last (as spares).
    shared.slow.order(&mut live, shared.mono_ms());
    if live.len() < need {
        return Err(Error::Unavailable {
            needed: need,
            live: live.len(),
            level: level_name,
            kind: "R",
        });
    }
    // Fast path (N=1, or ONE on a replica): this node's answer is the whole quorum.
    if need == 1 && live.first() == Some(&shared.id()) && !shared.restoring() {
        match read_local(shared, key).map(|a| usable(shared, shared.id(), key, a)) {
            Ok(Ok(entry)) => return Ok(entry),
            Ok(Err(())) => {}
            Err(e) => tracing::warn!(key, error = %e, "local read failed; asking other replicas"),
        }
        live.remove(0);
        if live.is_empty() {
            return Err(Error::NotEnoughReplicas {
                needed: 1,
                acked: 0,
                level: level_name,
                kind: "R",
                timed_out: false,
                maybe_applied: false,
            });
        }
    }
    // Ask R replicas; a failed one is replaced by the next live replica, if any.
    let deadline = Instant::now() + shared.config.request_timeout;
    let mut q = ReadQuorum::new(need, live.len());
    let mut futs: FuturesUnordered<ReplicaFuture<std::result::Result<Option<Entry>, ()>>> =
        FuturesUnordered::new();
    let ask = |node: u32| -> ReplicaFuture<std::result::Result<Option<Entry>, ()>> {
        let (s, k) = (shared.clone(), key.to_owned());
        Box::pin(async move { (node, read_replica(&s, node, &k).await) })
    };
    let mut spares = live.split_off(need).into_iter();
    let mut unanswered = live.clone();
    for node in live {
        futs.push(ask(node));
    }
    // Speculative retry: when the first R have not all answered after the configured wait,
    // one spare is asked too, so one slow (paused, overloaded) replica does not hold the read
    // until the failure detector gives up on it.
    let mut speculate_at = shared
        .config
        .speculative_retry
        .map(|d| Instant::now() + d)
        .filter(|_| spares.len() > 0);
    let outcome = loop {
        let wake = speculate_at.map_or(deadline, |t| t.min(deadline));
        match timeout_at(wake, futs.next()).await {
            Ok(Some((node, answer))) => {
                unanswered.retain(|&n| n != node);
                let failed = answer.is_err();
                match q.record(node, answer) {
                    Progress::Waiting => {
                        if failed && let Some(next) = spares.next() {
                            futs.push(ask(next));
                        }
                    }
                    p => break p,
                }
            }
            Ok(None) => break q.progress(),
            Err(_) if Instant::now() >= deadline => break Progress::Waiting,
            Err(_) => {
                speculate_at = None;
                let now = shared.mono_ms();
                for &n in &unanswered {
                    shared.slow.mark(n, now);
                }
                if let Some(next) = spares.next() {
                    shared
                        .counters
                        .speculative_reads
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(key, spare = next, "slow replicas: speculative read");
                    futs.push(ask(next));
                }
            }
        }
    };
    let result = q.newest().cloned();
    let answered = q.answered();
    // Repair in the background, unless every asked replica answered the same version (the
    // common case: then there is nothing to repair and no task to spawn).
    let repair_needed = !futs.is_empty() || !q.stale_replicas().is_empty();
    if outcome == Progress::Succeeded && !shared.config.faults.no_repair && repair_needed {
        let (s, k) = (shared.clone(), key.to_owned());
        tokio::spawn(async move {
            let grace = Instant::now() + s.config.request_timeout;
            while let Ok(Some((node, answer))) = timeout_at(grace, futs.next()).await {
                q.record(node, answer);
            }
            repair(&s, &k, &q).await;
        });
    }
    match outcome {
        Progress::Succeeded => Ok(result),
        p => Err(Error::NotEnoughReplicas {
            needed: need,
            acked: answered,
            level: level_name,
            kind: "R",
            timed_out: p == Progress::Waiting,
            maybe_applied: false,
        }),
    }
}

/// Sends the newest answer to every replica that answered older or nothing.
async fn repair(shared: &Arc<Shared>, key: &str, q: &ReadQuorum) {
    let Some(newest) = q.newest().cloned() else {
        return;
    };
    for node in q.stale_replicas() {
        match send_to_replica(shared, node, key, &newest).await {
            Ok(()) => {
                shared.counters.read_repairs.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node, key, version = %newest.version, "read repair");
            }
            Err(f) => tracing::debug!(node, key, failure = %f, "read repair failed"),
        }
    }
}
