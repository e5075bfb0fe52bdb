//! The membership tasks: push-pull gossip, heartbeat probes, and the announcement helper used
//! by join and leave.
//!
//! - Gossip: every `gossip_interval` this node raises its heartbeat and exchanges its whole
//!   member table with up to [`GOSSIP_FANOUT`] random peers (push-pull: the callee merges ours
//!   and answers with its own, which we merge).
//! - Probes: every `ping_interval` each member that has not left is sent a `Heartbeat`; an
//!   answer is direct evidence of life for the failure detector (`members::MemberTable`), and
//!   its wall-clock reading measures the offset between the two clocks (`clock_guard`), judged
//!   after every round.
//!   After each round the request-path view is rebuilt so health changes reach it.
//! - [`announce`]: pushes this node's table to every member and reports which ones took it,
//!   so join and leave can wait until the whole cluster routes writes to old and new owners.
//!
//! All decisions (merge, health) are in `members`; this module only moves tables.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use kvstore_proto::pb;
use rand::seq::IndexedRandom;

use super::identity::Identity;
use super::members::{Health, Member, Status};
use crate::clock_guard::Sample;
use crate::node::shared::{Periodic, Shared};

/// Peers contacted per gossip round.
pub const GOSSIP_FANOUT: usize = 2;

/// Merges a gossiped table into ours; returns whether announced states changed.
pub fn merge_wire(shared: &Shared, members: &[pb::Member]) -> bool {
    let decoded: Vec<Member> = members.iter().filter_map(Member::from_wire).collect();
    shared.with_members(|t, now| {
        let out = t.merge_all(decoded, now);
        if out.refuted {
            tracing::info!(
                incarnation = t.me().incarnation,
                "refuted a stale view of this node"
            );
        }
        if out.removed {
            tracing::error!(
                "this node was removed from the cluster (kv removenode) while it was down and \
                 its ranges were copied to other nodes: stopping. To bring it back, wipe its \
                 data directory and start it with --join as a new node"
            );
            shared.request_stop();
        }
        (out.ring_changed, out.ring_changed)
    })
}

/// One push-pull exchange with the member at `address`. On success merges the answer and
/// returns whether announced states changed.
pub async fn exchange(
    shared: &Arc<Shared>,
    peer_id: Option<u32>,
    address: &str,
) -> Result<bool, String> {
    let mut client = shared.peers.client_for(address)?;
    let members = shared.read_members(|t, _| t.to_wire());
    let req = pb::GossipRequest {
        members,
        from: shared.id(),
        identity: Some(Identity::of(&shared.config).to_wire()),
    };
    let call = client.gossip(req);
    let resp = tokio::time::timeout(shared.config.request_timeout, call)
        .await
        .map_err(|_| format!("gossip to {address}: no answer in time"))?
        .map_err(|s| format!("gossip to {address}: {}", s.message()))?
        .into_inner();
    shared.set_synced();
    if let Some(id) = peer_id {
        shared.with_members(|t, now| {
            t.observe_alive(id, now);
            ((), false)
        });
    }
    Ok(merge_wire(shared, &resp.members))
}

/// Members other than this node that have not left: (id, address, health).
fn others(shared: &Shared) -> Vec<(u32, String, Health)> {
    shared.read_members(|t, now| {
        t.members()
            .filter(|m| m.id != t.self_id() && m.status != Status::Left)
            .map(|m| (m.id, m.address.clone(), t.health(m.id, now)))
            .collect()
    })
}

/// Pushes this node's table to every member that has not left and is not down; returns the
/// ids that did not take it.
pub async fn announce(shared: &Arc<Shared>) -> Vec<u32> {
    let targets: Vec<(u32, String, Health)> = others(shared)
        .into_iter()
        .filter(|(_, _, h)| *h != Health::Down)
        .collect();
    let calls = targets
        .iter()
        .map(|(id, addr, _)| async move { (*id, exchange(shared, Some(*id), addr).await) });
    let mut missing = Vec::new();
    for (id, r) in join_all(calls).await {
        if let Err(e) = r {
            tracing::debug!(peer = id, error = %e, "announcement not taken");
            missing.push(id);
        }
    }
    missing
}

/// Announces until every live member took this node's table (or `deadline` passes). Members
/// judged down meanwhile are skipped: they learn it by gossip when they come back, and a down
/// member coordinates nothing.
pub async fn announce_everywhere(shared: &Arc<Shared>, deadline: Duration) -> Result<(), String> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let missing = announce(shared).await;
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!("members {missing:?} did not take the announcement"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Gossips until the node stops.
pub async fn run_gossip(shared: Arc<Shared>) {
    let mut ticks = Periodic::new(shared.config.gossip_interval, shared.stop_signal());
    while ticks.next().await {
        shared.with_members(|t, _| {
            t.beat();
            ((), false)
        });
        let candidates = others(&shared);
        let chosen: Vec<(u32, String, Health)> = shared.with_rng(|rng| {
            candidates
                .choose_multiple(rng, GOSSIP_FANOUT)
                .cloned()
                .collect()
        });
        let calls = chosen
            .iter()
            .map(|(id, addr, _)| exchange(&shared, Some(*id), addr));
        for r in join_all(calls).await {
            match r {
                Ok(true) => tracing::info!(
                    ring_version = shared.view().ring_version,
                    "membership changed"
                ),
                Ok(false) => {}
                Err(e) => tracing::trace!(error = %e, "gossip round failed"),
            }
        }
    }
}

/// Probes every member until the node stops.
pub async fn run_probes(shared: Arc<Shared>) {
    let mut ticks = Periodic::new(shared.config.ping_interval, shared.stop_signal());
    while ticks.next().await {
        let incarnation = shared.read_members(|t, _| t.me().incarnation);
        let wait = shared.config.ping_interval * 2;
        let probes = others(&shared).into_iter().map(|(id, addr, _)| {
            let shared = shared.clone();
            async move {
                let Some(peer) = shared.peer(id) else { return };
                debug_assert_eq!(peer.address(), addr);
                let ping = pb::Ping {
                    from: shared.id(),
                    incarnation,
                };
                let mut client = peer.client();
                let (sent_wall, sent_mono) = (shared.wall_ms(), shared.mono_ms());
                if let Ok(Ok(pong)) = tokio::time::timeout(wait, client.heartbeat(ping)).await {
                    let pong = pong.into_inner();
                    let sample = Sample::from_round_trip(
                        sent_wall,
                        shared.wall_ms(),
                        pong.wall_ms,
                        sent_mono,
                        shared.mono_ms(),
                    );
                    // No sample when our clock jumped mid-flight; the next heartbeat measures.
                    if let (true, Some(sample)) = (pong.wall_ms > 0, sample) {
                        shared.clock.record(id, sample);
                    }
                    shared.with_members(|t, now| {
                        t.observe_alive(id, now);
                        ((), false)
                    });
                }
            }
        });
        join_all(probes).await;
        shared.evaluate_clock();
        let before = shared.view();
        shared.refresh_view();
        let after = shared.view();
        for (id, h) in &after.health {
            let was = before.health.get(id);
            if was != Some(h) {
                tracing::info!(node = id, from = ?was, to = ?h, "member health changed");
            }
        }
    }
}
