//! Hinted handoff: replaying stored hints to replicas that are reachable again.
//!
//! A background loop looks, every period, for targets with hints that this node sees alive,
//! and sends their hints through the target's replication stream in bounded batches. A hint is
//! removed once the target acknowledged it (only if no newer hint for the key arrived
//! meanwhile). A hint the target refuses for a passing reason (its clock is behind, its disk is
//! full or read-only) is kept, and the target's replay pauses until the next round: dropping
//! it would lose the write on that replica for good. Only a malformed hint, which can never
//! succeed, is dropped. An unreachable target keeps its hints for the next round. A hint older
//! than the hint window is dropped by the store instead of being handed out (repair covers it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;

use super::peer::ReplicaFailure;
use super::wire::to_replicate;
use crate::cluster::members::Health;
use crate::node::shared::{Periodic, Shared};

/// How often the hint store is checked for replayable targets.
pub const REPLAY_PERIOD: Duration = Duration::from_millis(500);

/// Replays hints until the node stops.
pub async fn run(shared: Arc<Shared>) {
    let mut ticks = Periodic::new(REPLAY_PERIOD, shared.stop_signal());
    while ticks.next().await {
        if shared.config.faults.no_repair || shared.config.faults.no_hints {
            continue;
        }
        for target in shared.hints.targets() {
            let alive = shared.view().health.get(&target) == Some(&Health::Alive);
            if alive && let Err(e) = replay_target(&shared, target).await {
                tracing::debug!(target, error = %e, "hint replay paused");
            }
        }
    }
}

/// Replays every hint for `target` in batches; stops at the first unreachable answer.
pub async fn replay_target(shared: &Arc<Shared>, target: u32) -> Result<u64, String> {
    let peer = shared
        .peer(target)
        .ok_or_else(|| format!("node {target} has no address"))?;
    let mut replayed = 0;
    // The walk through the target's hints: each batch starts after the last key of the one
    // before, so a round reads each hint once (a hint added behind the cursor waits for the
    // next round).
    let mut after: Option<String> = None;
    loop {
        let (s, limit, from) = (
            shared.clone(),
            shared.config.hint_replay_batch,
            after.clone(),
        );
        let now = shared.wall_ms();
        let batch =
            crate::blocking::spawn(move || s.hints.take_batch(target, from.as_deref(), limit, now))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            if replayed > 0 {
                tracing::info!(target, replayed, "hints replayed");
            }
            return Ok(replayed);
        }
        after = batch.last().map(|(k, _)| k.clone());
        let wait = shared.config.request_timeout;
        let sends = batch.iter().map(|(key, entry)| {
            let send = peer.replicate(to_replicate(key, entry));
            async move {
                tokio::time::timeout(wait, send).await.unwrap_or_else(|_| {
                    Err(ReplicaFailure::Unreachable("no answer in time".into()))
                })
            }
        });
        let results = join_all(sends).await;
        let mut unreachable = None;
        let mut refused = None;
        for ((key, entry), r) in batch.iter().zip(results) {
            match r {
                Ok(()) => {
                    shared
                        .hints
                        .remove(target, key, entry.version)
                        .map_err(|e| e.to_string())?;
                    shared
                        .counters
                        .hints_replayed
                        .fetch_add(1, Ordering::Relaxed);
                    replayed += 1;
                }
                Err(f @ ReplicaFailure::Refused { .. }) if !f.worth_hinting() => {
                    tracing::warn!(target, key, failure = %f, "malformed hint refused by its target: dropped");
                    shared
                        .hints
                        .remove(target, key, entry.version)
                        .map_err(|e| e.to_string())?;
                }
                Err(f @ ReplicaFailure::Refused { .. }) => refused = Some(f.to_string()),
                Err(ReplicaFailure::Unreachable(why) | ReplicaFailure::NotSent(why)) => {
                    unreachable = Some(why)
                }
            }
        }
        if let Some(why) = unreachable {
            return Err(why);
        }
        if let Some(why) = refused {
            // Kept for the next round: the target's condition (clock, disk) may pass.
            return Err(format!("target refused hints (kept): {why}"));
        }
    }
}
