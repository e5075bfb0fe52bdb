//! Moving ranges when the ring changes: join, leave, and cleanup of keys a node no longer owns
//! (the streams themselves are [`super::streaming`]'s).
//!
//! Join (a node started with `--join`):
//! 1. exchange tables with a seed. If the cluster already knows this node as up (a restart),
//!    it simply comes back up: a temporary failure moves no data, hints and read repair heal it;
//! 2. otherwise announce itself *joining* (`AddNode` to the seed, then push its table to every
//!    member until each took it): from then on every coordinator writes the node's future ranges
//!    to old and new owners;
//! 3. wait `transition_grace`, so writes already in flight under the old ring have landed;
//! 4. stream its pending arcs (`StreamRange`) from every live current owner and apply them
//!    (last-write-wins makes overlapping sources harmless);
//! 5. announce itself *up*; reads now use it.
//!
//! Leave: announce *leaving* everywhere, wait the grace, push every local entry to its owners
//! in the ring without this node, announce *left*, stop. The leave runs in a task of its own
//! ([`start_leave`]): a caller that gives up waiting (a deadline, a dropped connection) does not
//! stop it halfway, a second request joins the one in progress, and one that failed can be asked
//! for again and resumes from *leaving*.
//!
//! Cleanup: once the ring has been stable for the grace period, a node that is up drops every
//! key it neither replicates in the current nor in the pending ring (the new owners have it by
//! then), so each node holds exactly its ranges' keys. Keys written in the last
//! [`cleanup_min_age_ms`] are left for a later round: a coordinator that learned of a ring
//! change a moment before this node may have just written one here as its new owner.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use kvstore_proto::pb;

use super::gossip::{announce_everywhere, exchange, merge_wire};
use super::identity::Identity;
use super::members::{Member, Status};
use super::placement::Placement;
use super::streaming::stream_from;
use crate::error::{Error, Result};
use crate::node::shared::{LeaveHandle, Periodic, Shared};
use crate::replication::coordinator::send_to_replica;

/// How long a join or leave waits for every member to take its announcement.
pub const ANNOUNCE_DEADLINE: Duration = Duration::from_secs(30);
/// How long a join keeps trying its seeds.
pub const SEED_DEADLINE: Duration = Duration::from_secs(30);
/// Entries handed over concurrently by a leaving node.
pub const HANDOFF_CONCURRENCY: usize = 256;

fn membership(msg: impl Into<String>) -> Error {
    Error::Membership(msg.into())
}

/// The address, if a node at `address` answers a heartbeat as node `id`.
async fn answers_as(shared: &Shared, address: &str, id: u32) -> Option<String> {
    let mut client = shared.peers.client_for(address).ok()?;
    let ping = pb::Ping {
        from: id,
        incarnation: 0,
    };
    let pong = tokio::time::timeout(shared.config.request_timeout, client.heartbeat(ping))
        .await
        .ok()?
        .ok()?;
    (pong.into_inner().from == id).then(|| address.to_owned())
}

/// Where a joining node asks for the cluster's state: its `--join` seeds first, then the
/// addresses of the members its saved table knows (none for a new node), each once.
fn seed_addresses(shared: &Shared) -> Vec<String> {
    let mut seeds = shared.config.join.clone();
    let known: Vec<String> = shared.read_members(|t, _| {
        t.members()
            .filter(|m| m.id != t.self_id() && m.status != Status::Left)
            .map(|m| m.address.clone())
            .collect()
    });
    for address in known {
        if !seeds.contains(&address) {
            seeds.push(address);
        }
    }
    seeds
}

/// Joins the cluster through the configured seeds (or, restarted, any member it knows);
/// returns once this node is up.
pub async fn join(shared: &Arc<Shared>) -> Result<()> {
    let me = shared.id();
    // 1. Learn the cluster from a seed: the --join addresses, then every member a restarted
    // node's saved table knows (its seed may be the one node that is down or cut off; any
    // live member can tell it the cluster's state).
    let seeds = seed_addresses(shared);
    let until = tokio::time::Instant::now() + SEED_DEADLINE;
    let seed = loop {
        let mut last_err = String::new();
        let mut found = None;
        for seed in &seeds {
            let mut client = match shared.peers.client_for(seed) {
                Ok(c) => c,
                Err(e) => return Err(Error::Config(format!("--join {seed}: {e}"))),
            };
            let req = pb::GossipRequest {
                members: Vec::new(),
                from: me,
                identity: Some(Identity::of(&shared.config).to_wire()),
            };
            match tokio::time::timeout(shared.config.request_timeout, client.gossip(req)).await {
                Ok(Ok(resp)) => {
                    found = Some((seed.clone(), resp.into_inner().members));
                    break;
                }
                Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {
                    // Another cluster, or other settings: waiting will not change that.
                    return Err(Error::Config(format!(
                        "--join {seed} refused: {}",
                        s.message()
                    )));
                }
                Ok(Err(s)) => last_err = format!("{seed}: {}", s.message()),
                Err(_) => last_err = format!("{seed}: no answer"),
            }
        }
        if let Some(f) = found {
            break f;
        }
        if tokio::time::Instant::now() >= until {
            return Err(membership(format!("no seed answered: {last_err}")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (seed_addr, members) = seed;
    let known = members
        .iter()
        .filter_map(Member::from_wire)
        .find(|m| m.id == me);
    let restart = matches!(
        known.as_ref().map(|m| m.status),
        Some(Status::Up | Status::Leaving)
    );
    if shared.config.replace && !restart {
        let what = match known.as_ref().map(|m| m.status) {
            None => "is not a member of this cluster".to_string(),
            Some(Status::Left) => "left or was removed: start this node as a new one \
                                   (another --node-id, no --replace)"
                .to_string(),
            Some(s) => format!("is {}: nothing to replace yet", s.name()),
        };
        return Err(Error::Config(format!("--replace {me}: node {me} {what}")));
    }
    if let Some(existing) = &known
        && existing.status != Status::Left
        && existing.address != shared.config.advertise_address
    {
        // Two live nodes with one id would each refute the other's view forever and split
        // the ring between two addresses: ask the address the cluster knows for this id.
        if let Some(live) = answers_as(shared, &existing.address, me).await {
            return Err(Error::Config(format!(
                "node id {me} is already used by the live node at {live}: pick another \
                 --node-id (or stop that node first if this one replaces it)"
            )));
        }
        tracing::warn!(id = me, old = %existing.address, "rejoining under a new address");
    }
    shared.with_members(|t, _| {
        if restart && t.me().status != Status::Up {
            t.set_my_status(Status::Up);
        } else if !restart && t.me().status != Status::Joining {
            t.set_my_status(Status::Joining);
        }
        ((), true)
    });
    merge_wire(shared, &members);
    shared.set_synced();
    if restart {
        if let Err(e) = announce_everywhere(shared, ANNOUNCE_DEADLINE).await {
            tracing::warn!(error = %e, "restart announcement incomplete; gossip will finish it");
        }
        if shared.restoring() {
            // Known as up but its data directory was empty: a replaced disk.
            super::restore::restore(shared).await;
        } else {
            tracing::info!("known to the cluster as up: rejoining without moving data");
        }
        return Ok(());
    }

    // 2. Announce: AddNode to the seed, then every member.
    let me_wire = shared.read_members(|t, _| t.me().to_wire());
    let mut seed_client = shared
        .peers
        .client_for(&seed_addr)
        .map_err(|e| Error::Config(format!("--join {seed_addr}: {e}")))?;
    let resp = seed_client
        .add_node(pb::AddNodeRequest {
            member: Some(me_wire),
            identity: Some(Identity::of(&shared.config).to_wire()),
        })
        .await
        .map_err(|s| membership(format!("AddNode to {seed_addr}: {}", s.message())))?;
    tracing::info!(
        seed = %seed_addr,
        ring_version = resp.into_inner().ring.map(|r| r.ring_version).unwrap_or(0),
        "announced as joining"
    );
    exchange(shared, None, &seed_addr)
        .await
        .map_err(membership)?;
    announce_everywhere(shared, ANNOUNCE_DEADLINE)
        .await
        .map_err(membership)?;

    // 3. Let writes in flight under the old ring land.
    tokio::time::sleep(shared.config.transition_grace).await;

    // 4. Stream the ranges in.
    let view = shared.view();
    let arcs = view.placement.pending_arcs_of(me);
    let sources: Vec<u32> = view
        .placement
        .current()
        .nodes()
        .iter()
        .copied()
        .filter(|&n| n != me && view.is_live(n))
        .collect();
    let mut received = 0;
    for source in sources {
        match stream_from(shared, source, &arcs).await {
            Ok(n) => received += n,
            Err(e) => tracing::warn!(source, error = %e, "could not stream ranges from a replica"),
        }
    }
    tracing::info!(received, arcs = arcs.len(), "ranges streamed in");

    // 5. Up.
    shared.set_restoring(false);
    shared.with_members(|t, _| {
        t.set_my_status(Status::Up);
        ((), true)
    });
    if let Err(e) = announce_everywhere(shared, ANNOUNCE_DEADLINE).await {
        tracing::warn!(error = %e, "up announcement incomplete; gossip will finish it");
    }
    Ok(())
}

/// Leaves the cluster: hands every local entry to its owners in the ring without this node,
/// then announces *left*. Returns the keys handed over.
async fn leave(shared: &Arc<Shared>) -> Result<u64> {
    let status = shared.view().my_status;
    // Leaving: an earlier attempt failed part-way; announcing and handing over again is safe
    // (last-write-wins makes a repeated handoff harmless).
    if status != Status::Up && status != Status::Leaving {
        return Err(Error::Precondition(format!(
            "node {} is {} and cannot start leaving",
            shared.id(),
            status.name()
        )));
    }
    shared.with_members(|t, _| {
        t.set_my_status(Status::Leaving);
        ((), true)
    });
    tracing::info!("leaving: announcing");
    announce_everywhere(shared, ANNOUNCE_DEADLINE)
        .await
        .map_err(membership)?;
    tokio::time::sleep(shared.config.transition_grace).await;

    let me = shared.id();
    let placement = shared.view().placement.clone();
    let keys = shared.engine.keys();
    let mut moved = 0u64;
    let mut failed = 0u64;
    let mut futs = FuturesUnordered::new();
    for key in keys {
        let Some(entry) = shared.engine.get_entry(&key)? else {
            continue;
        };
        let owners: Vec<u32> = placement
            .write_set(&key)
            .pending
            .into_iter()
            .filter(|&n| n != me)
            .collect();
        let s = shared.clone();
        futs.push(async move {
            let mut ok = 0;
            for node in owners {
                for attempt in 0..3u64 {
                    let send = send_to_replica(&s, node, &key, &entry);
                    match tokio::time::timeout(s.config.request_timeout, send).await {
                        Ok(Ok(())) => {
                            ok += 1;
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await,
                    }
                }
            }
            ok > 0
        });
        if futs.len() >= HANDOFF_CONCURRENCY
            && let Some(done) = futs.next().await
        {
            if done { moved += 1 } else { failed += 1 }
        }
    }
    while let Some(done) = futs.next().await {
        if done { moved += 1 } else { failed += 1 }
    }
    if failed > 0 {
        tracing::error!(
            failed,
            "keys not handed to any new owner; their other replicas keep them"
        );
    }
    shared.with_members(|t, _| {
        t.set_my_status(Status::Left);
        ((), true)
    });
    if let Err(e) = announce_everywhere(shared, Duration::from_secs(5)).await {
        tracing::warn!(error = %e, "left announcement incomplete; gossip will finish it");
    }
    tracing::info!(moved, "left the cluster");
    Ok(moved)
}

/// Starts this node's leave, or joins the one already running, and returns its outcome to
/// await. The leave runs in its own task and stops the node once it is done, whether or not
/// anyone still waits for it. A failed leave is not joined: asking again starts a new attempt.
pub fn start_leave(shared: &Arc<Shared>) -> LeaveHandle {
    let mut slot = shared.leave_slot();
    if let Some(running) = slot.as_ref()
        && !matches!(running.peek(), Some(Err(_)))
    {
        return running.clone();
    }
    let s = Arc::clone(shared);
    let task = tokio::spawn(async move {
        let outcome = leave(&s).await;
        if outcome.is_ok() {
            s.request_stop();
        }
        outcome.map_err(Arc::new)
    });
    let handle = async move {
        task.await.unwrap_or_else(|e| {
            Err(Arc::new(Error::Membership(format!(
                "the leave task ended abnormally: {e}"
            ))))
        })
    }
    .boxed()
    .shared();
    *slot = Some(handle.clone());
    handle
}

/// Drops keys this node no longer replicates, whenever the ring has been stable for the grace
/// period. Runs until the node stops.
pub async fn run_cleanup(shared: Arc<Shared>) {
    let period = shared
        .config
        .transition_grace
        .max(Duration::from_millis(500));
    let mut ticks = Periodic::new(period, shared.stop_signal());
    while ticks.next().await {
        let view = shared.view();
        if view.my_status != Status::Up
            || view.placement.in_transition()
            || !shared.is_synced()
            || shared.ring_stable_for_ms() < shared.config.transition_grace.as_millis() as u64
        {
            continue;
        }
        let s = shared.clone();
        let removed = crate::blocking::spawn(move || cleanup_once(&s, &view.placement))
            .await
            .unwrap_or(0);
        if removed > 0 {
            shared
                .counters
                .keys_cleaned
                .fetch_add(removed, Ordering::Relaxed);
            tracing::info!(removed, "dropped keys now owned by other nodes");
        }
    }
}

/// Keys written more recently than this are never cleaned up: a coordinator that learned of a
/// ring change a moment before this node may have just written here as a new owner.
pub fn cleanup_min_age_ms(shared: &Shared) -> u64 {
    (2 * shared.config.transition_grace + 2 * shared.config.gossip_interval).as_millis() as u64
}

fn cleanup_once(shared: &Shared, placement: &Placement) -> u64 {
    let me = shared.id();
    let newest_removable = shared.wall_ms().saturating_sub(cleanup_min_age_ms(shared));
    let mut removed = 0;
    for key in shared.engine.keys() {
        if placement.keeps(me, &key) {
            continue;
        }
        if let Some(v) = shared.engine.version_of(&key)
            && v.physical_ms() <= newest_removable
        {
            match shared.engine.remove(&key, v) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(key, error = %e, "cleanup could not remove a key"),
            }
        }
    }
    removed
}
