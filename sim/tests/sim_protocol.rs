//! Scripted simulation tests of protocol steps that had no unit test of their own: hinted
//! handoff after a partition, speculative reads past a slow replica, gossip converging after a
//! heal, join and leave under writes, a replication stream that breaks mid-batch, and one test
//! per fault control showing it really acts on the network.
//!
//! Each test runs on a fixed default seed (`runtime::seed_or`), so `KVSTORE_SIM_SEED=<n>`
//! replays it, and waits for conditions with `wait_until` on simulated deadlines (generous:
//! simulated time costs only the work done in it), never with a sleep standing in for an
//! assertion. Sleeps below only let simulated time pass while a control is in force.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kvstore_proto::pb;
use kvstore_proto::pb::kv_store_client::KvStoreClient;
use kvstore_proto::ring::Ring;
use kvstore_server::replication::channel::PeerChannel;
use kvstore_sim::cluster::{self, CLIENT_BASE, OPERATOR};
use kvstore_sim::network::{Endpoint, Traffic};
use kvstore_sim::{SimCluster, runtime};
use tokio::time::Instant;

// ---- Helpers ---------------------------------------------------------------------------

/// A put at `level`, not reading the old value (one replica round trip less per put).
async fn put(
    kv: &mut KvStoreClient<PeerChannel>,
    key: &str,
    value: &str,
    level: pb::Consistency,
) -> Result<pb::PutResponse, tonic::Status> {
    kv.put(pb::PutRequest {
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        consistency: level as i32,
        skip_old_value: true,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

async fn get(
    kv: &mut KvStoreClient<PeerChannel>,
    key: &str,
    level: pb::Consistency,
) -> Result<pb::GetResponse, tonic::Status> {
    kv.get(pb::GetRequest {
        key: key.into(),
        consistency: level as i32,
    })
    .await
    .map(|r| r.into_inner())
}

/// `node`'s status, asked by the operator.
async fn status(c: &SimCluster, node: u32) -> pb::NodeStatusResponse {
    c.internal(OPERATOR, node)
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap_or_else(|s| panic!("seed {}: node {node} status: {s}", c.seed))
        .into_inner()
}

/// Calls plus messages delivered on the directed link `a -> b`.
fn link(t: &Traffic, a: Endpoint, b: Endpoint) -> u64 {
    t.calls.get(&(a, b)).copied().unwrap_or(0) + t.messages.get(&(a, b)).copied().unwrap_or(0)
}

/// Traffic on every node-to-node link touching `node` (clients and the operator left out),
/// both directions, among `peers`.
fn node_links(t: &Traffic, node: u32, peers: &[u32]) -> u64 {
    peers
        .iter()
        .map(|&p| link(t, p, node) + link(t, node, p))
        .sum()
}

/// The value `node` stores for `key` (None: nothing, or a tombstone).
async fn stored(c: &SimCluster, node: u32, key: &str) -> Option<String> {
    match c.local_read(node, key).await {
        Ok(Some(e)) if !e.tombstone => Some(String::from_utf8_lossy(&e.value).into_owned()),
        Ok(_) => None,
        Err(e) => panic!("seed {}: {e}", c.seed),
    }
}

/// The state `viewer` sees `member` in (None: no answer, or not a member).
async fn state_seen(c: &SimCluster, viewer: u32, member: u32) -> Option<pb::MemberState> {
    let ring = c.ring_state(viewer).await?;
    let m = ring.members.iter().find(|m| m.id == member)?;
    pb::MemberState::try_from(m.state).ok()
}

/// Prints what the run did (simulated time, node-to-node traffic: the same on every run of
/// a seed) and stops the cluster.
async fn finish(c: SimCluster) {
    let t = c.network().traffic();
    eprintln!(
        "seed {}: {:?} simulated, {} calls, {} messages, {} lost, {} timed out",
        c.seed,
        c.elapsed(),
        t.calls.values().sum::<u64>(),
        t.messages.values().sum::<u64>(),
        t.lost,
        t.timed_out
    );
    c.shutdown().await;
}

// ---- 1. Hinted handoff -----------------------------------------------------------------

/// A QUORUM write with one replica partitioned away succeeds on the other two; the coordinator
/// keeps a hint for the missing replica and, once the partition heals, replays it: the replica
/// gets the value from the hint (its original replication message had long timed out).
#[test]
fn quorum_write_with_a_partitioned_replica_is_hinted_and_replayed() {
    let seed = runtime::seed_or(101);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        let before = status(&c, 1).await;
        c.partition(&[&[1, 2], &[3]]);

        let mut kv = c.kv(CLIENT_BASE + 1, 1);
        put(&mut kv, "hinted", "v1", pb::Consistency::Quorum)
            .await
            .unwrap_or_else(|s| panic!("seed {seed}: QUORUM put with 2 of 3 replicas: {s}"));
        assert_eq!(stored(&c, 1, "hinted").await.as_deref(), Some("v1"));
        assert_eq!(stored(&c, 2, "hinted").await.as_deref(), Some("v1"));
        assert_eq!(stored(&c, 3, "hinted").await, None, "node 3 is partitioned");

        assert!(
            c.wait_until(Duration::from_secs(30), || async {
                status(&c, 1).await.hints_pending > 0
            })
            .await,
            "seed {seed}: the coordinator kept no hint for node 3"
        );
        // Longer than a held message of an open stream survives: the write's own replication
        // message to node 3 fails, so only the hint can bring the value there.
        let timed_out = c.network().traffic().timed_out;
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(
            c.network().traffic().timed_out > timed_out,
            "seed {seed}: the held replication message did not time out"
        );
        assert_eq!(stored(&c, 3, "hinted").await, None, "still partitioned");

        c.heal();
        let healed_at = Instant::now();
        assert!(
            c.wait_until(Duration::from_secs(60), || async {
                stored(&c, 3, "hinted").await.as_deref() == Some("v1")
            })
            .await,
            "seed {seed}: node 3 never got the hinted write after the heal"
        );
        eprintln!("hint delivered {:?} after the heal", healed_at.elapsed());
        assert!(
            c.wait_until(Duration::from_secs(30), || async {
                let s = status(&c, 1).await;
                s.hints_pending == 0 && s.hints_replayed > before.hints_replayed
            })
            .await,
            "seed {seed}: node 1 did not count the hint as replayed: {:?}",
            status(&c, 1).await
        );
        finish(c).await;
    });
}

// ---- 2. Speculative read ---------------------------------------------------------------

/// A key whose preference list puts node 3 before node 2, so a read coordinated by node 1
/// asks nodes 1 and 3 first.
fn key_preferring_3_over_2() -> String {
    let ring = Ring::new([1, 2, 3], cluster::default_template().vnodes);
    (0..)
        .map(|i| format!("slow-{i}"))
        .find(|k| {
            let p = ring.preference_list(k.as_bytes(), 3);
            let at = |n| p.iter().position(|&x| x == n);
            at(3) < at(2)
        })
        .expect("some key")
}

/// A QUORUM read coordinated by node 1, whose first choice of remote replica (node 3) is 2 s
/// away each way, answers with the value in far less than the delay: after the speculative
/// retry wait it asks node 2 instead (counted in `speculative_reads`). With speculation off
/// the same read waits for node 3, which shows the delay really was in the way.
#[test]
fn quorum_read_does_not_wait_for_a_slow_replica() {
    let seed = runtime::seed_or(102);
    let key = key_preferring_3_over_2();
    let slow = Duration::from_secs(2);
    for speculate in [true, false] {
        runtime::run(seed, async {
            let template = kvstore_server::NodeConfig {
                speculative_retry: if speculate {
                    cluster::default_template().speculative_retry
                } else {
                    None
                },
                ..cluster::default_template()
            };
            let c = SimCluster::start_with(seed, 3, template).await;
            let mut kv = c.kv(CLIENT_BASE + 1, 1);
            put(&mut kv, &key, "here", pb::Consistency::All)
                .await
                .unwrap_or_else(|s| panic!("seed {seed}: ALL put: {s}"));
            let before = status(&c, 1).await.speculative_reads;
            c.delay(1, 3, slow);
            c.delay(3, 1, slow);

            let t0 = Instant::now();
            let got = get(&mut kv, &key, pb::Consistency::Quorum).await;
            let took = t0.elapsed();
            let spec = status(&c, 1).await.speculative_reads - before;
            eprintln!("speculate={speculate}: read took {took:?}, speculative reads +{spec}");
            if speculate {
                let got = got.unwrap_or_else(|s| panic!("seed {seed}: QUORUM get: {s}"));
                assert!(got.exists);
                assert_eq!(&got.value[..], b"here");
                assert!(
                    took < Duration::from_millis(500),
                    "seed {seed}: the read waited {took:?} for the slow replica"
                );
                assert!(spec >= 1, "seed {seed}: no speculative read counted");
            } else {
                assert!(
                    took >= slow,
                    "seed {seed}: without speculation the read took only {took:?}: the delay \
                     was not in its way"
                );
                assert_eq!(spec, 0);
            }
            finish(c).await;
        });
    }
}

// ---- 3. Gossip after a heal ------------------------------------------------------------

/// A node partitioned away long enough is seen DOWN by the others (and sees them DOWN); once
/// the partition heals, gossip brings every node back to one view with all three up.
#[test]
fn gossip_converges_after_a_partition_heals() {
    let seed = runtime::seed_or(103);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        c.partition(&[&[1, 2], &[3]]);
        let down = Some(pb::MemberState::Down);
        assert!(
            c.wait_until(Duration::from_secs(60), || async {
                state_seen(&c, 1, 3).await == down
                    && state_seen(&c, 2, 3).await == down
                    && state_seen(&c, 3, 1).await == down
                    && state_seen(&c, 3, 2).await == down
            })
            .await,
            "seed {seed}: the sides of the partition did not see each other down"
        );
        // Both sides still see themselves up.
        assert_eq!(state_seen(&c, 1, 2).await, Some(pb::MemberState::Up));
        assert_eq!(state_seen(&c, 3, 3).await, Some(pb::MemberState::Up));
        assert!(!c.converged(&[1, 2, 3]).await);

        c.heal();
        let healed_at = Instant::now();
        assert!(
            c.wait_until(Duration::from_secs(60), || c.converged(&[1, 2, 3]))
                .await,
            "seed {seed}: the ring did not converge within 60 s of the heal"
        );
        eprintln!("converged {:?} after the heal", healed_at.elapsed());
        finish(c).await;
    });
}

// ---- 4. Join and leave under writes ----------------------------------------------------

/// One put of a single-writer history.
struct Attempt {
    at: Instant,
    key: String,
    value: String,
    ok: bool,
}

/// A node joins and another leaves while one client keeps writing through a node that stays;
/// afterwards every key reads, at QUORUM from each remaining node, as its last acknowledged
/// value (or a later attempt whose outcome was unknown: the writer is alone on each key, so
/// nothing else is allowed).
#[test]
fn join_and_leave_under_writes_keep_every_acknowledged_write() {
    let seed = runtime::seed_or(104);
    runtime::run(seed, async move {
        let mut c = SimCluster::start(seed, 3).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut kv = c.kv(CLIENT_BASE + 1, 2);
        let writer = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut history = Vec::new();
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    for k in 0..40 {
                        let (key, value) = (format!("jl-{k}"), format!("r{round}"));
                        let at = Instant::now();
                        let r = tokio::time::timeout(
                            Duration::from_secs(30),
                            put(&mut kv, &key, &value, pb::Consistency::Quorum),
                        )
                        .await
                        .expect("a put hung for 30 s");
                        history.push(Attempt {
                            at,
                            key,
                            value,
                            ok: r.is_ok(),
                        });
                        // A little think time, so the writes spread over the whole change.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    round += 1;
                }
                history
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let join_start = Instant::now();
        c.join(4).await;
        assert!(
            c.wait_until(Duration::from_secs(60), || c.converged(&[1, 2, 3, 4]))
                .await,
            "seed {seed}: node 4 did not join"
        );
        let join_end = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leave_start = Instant::now();
        let moved = c
            .leave(1)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            c.wait_until(Duration::from_secs(60), || c.converged(&[2, 3, 4]))
                .await,
            "seed {seed}: the ring did not settle after node 1 left"
        );
        let leave_end = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
        let history = writer.await.expect("writer");

        // Per key: the values allowed to be read (from the last acknowledged one on).
        let mut allowed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for a in &history {
            let v = allowed.entry(&a.key).or_default();
            if a.ok {
                v.clear();
            }
            // Failed attempts before any ack leave the key unconstrained (no list).
            if a.ok || !v.is_empty() {
                v.push(&a.value);
            }
        }
        let acked = history.iter().filter(|a| a.ok).count();
        let acked_within = |from: Instant, to: Instant| {
            history
                .iter()
                .filter(|a| a.ok && a.at >= from && a.at <= to)
                .count()
        };
        let (during_join, during_leave) = (
            acked_within(join_start, join_end),
            acked_within(leave_start, leave_end),
        );
        eprintln!(
            "{} puts, {acked} acknowledged ({during_join} during the join's {:?}, \
             {during_leave} during the leave's {:?}), {moved} keys moved by the leave",
            history.len(),
            join_end - join_start,
            leave_end - leave_start,
        );
        assert!(
            during_join > 0 && during_leave > 0,
            "seed {seed}: the writes did not overlap the join and the leave"
        );
        assert!(
            acked * 10 >= history.len() * 9,
            "seed {seed}: only {acked} of {} puts acknowledged",
            history.len()
        );
        for node in [2, 3, 4] {
            let mut kv = c.kv(CLIENT_BASE + 2, node);
            for (key, values) in &allowed {
                if values.is_empty() {
                    continue;
                }
                let got = get(&mut kv, key, pb::Consistency::Quorum)
                    .await
                    .unwrap_or_else(|s| panic!("seed {seed}: get {key} at node {node}: {s}"));
                let got = String::from_utf8_lossy(&got.value).into_owned();
                assert!(
                    values.contains(&got.as_str()),
                    "seed {seed}: node {node} reads {key} = {got:?}; last acknowledged and \
                     later: {values:?}"
                );
            }
        }
        finish(c).await;
    });
}

// ---- 5. A replication stream breaking mid-batch ----------------------------------------

/// One put of a burst: its key, its outcome and how long it took to answer.
type PutTask = tokio::task::JoinHandle<(String, Result<(), tonic::Status>, Duration)>;

/// Starts `count` puts at `coordinator`, one per simulated ms, each in its own task (so many are in
/// flight at once on the replication streams); returns their handles.
fn burst(c: &SimCluster, coordinator: u32, prefix: &str, count: usize) -> Vec<PutTask> {
    (0..count)
        .map(|i| {
            let mut kv = c.kv(CLIENT_BASE + 1, coordinator);
            let key = format!("{prefix}-{i}");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i as u64)).await;
                let t0 = Instant::now();
                let r = put(&mut kv, &key, &key, pb::Consistency::Quorum).await;
                (key, r.map(|_| ()), t0.elapsed())
            })
        })
        .collect()
}

/// The answers of a burst: keys acknowledged, and keys refused with UNAVAILABLE (a definite
/// failure: the coordinator sent the write nowhere).
struct Answers {
    ok: Vec<String>,
    refused: Vec<String>,
}

/// Waits for every put of a burst (none may hang) and sorts the answers.
async fn answers(seed: u64, handles: Vec<PutTask>) -> Answers {
    let (mut ok, mut refused) = (Vec::new(), Vec::new());
    let (mut failed, mut slowest) = (BTreeMap::new(), Duration::ZERO);
    for h in handles {
        let (key, r, took) = tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a put hung for 30 s"))
            .expect("put task");
        slowest = slowest.max(took);
        match r {
            Ok(()) => ok.push(key),
            Err(s) => {
                *failed.entry(format!("{:?}", s.code())).or_insert(0) += 1;
                if s.code() == tonic::Code::Unavailable {
                    refused.push(key);
                }
            }
        }
    }
    eprintln!(
        "{} acknowledged, failed: {failed:?}, slowest answer {slowest:?}",
        ok.len()
    );
    // The coordinator answers by its request timeout (2 s) at the latest.
    assert!(
        slowest <= Duration::from_secs(3),
        "seed {seed}: a put took {slowest:?}"
    );
    Answers { ok, refused }
}

/// No replica holds a key whose put was refused as a definite failure.
async fn check_nowhere(c: &SimCluster, keys: &[String], nodes: &[u32]) {
    for key in keys {
        for &n in nodes {
            assert_eq!(
                stored(c, n, key).await,
                None,
                "seed {}: {key} was refused (UNAVAILABLE) but node {n} holds it",
                c.seed
            );
        }
    }
}

/// Once every node's hints are replayed, a definitely refused write still is nowhere (no
/// hint was kept for it either).
async fn check_nowhere_after_hints(c: &SimCluster, keys: &[String], nodes: &[u32]) {
    assert!(
        c.wait_until(Duration::from_secs(60), || async {
            for &n in nodes {
                if status(c, n).await.hints_pending > 0 {
                    return false;
                }
            }
            true
        })
        .await,
        "seed {}: hints were not all replayed within 60 s",
        c.seed
    );
    check_nowhere(c, keys, nodes).await;
}

/// Every acknowledged key is on at least two replicas, read with every node-to-node link cut
/// (so neither hints nor read repair can have added a copy since); `also` checks more under
/// the same cut.
async fn check_on_two_replicas<F: Future<Output = ()>>(
    c: &SimCluster,
    keys: &[String],
    nodes: &[u32],
    also: impl FnOnce() -> F,
) {
    c.partition(&[&[1], &[2], &[3]]);
    for key in keys {
        let mut copies = 0;
        for &n in nodes {
            if stored(c, n, key).await.as_deref() == Some(key.as_str()) {
                copies += 1;
            }
        }
        assert!(
            copies >= 2,
            "seed {}: {key} was acknowledged but is on {copies} replica(s)",
            c.seed
        );
    }
    also().await;
    c.heal();
}

/// After a break, ALL writes through `coordinator` succeed again (the stream to each replica
/// is re-opened: an ALL write needs every replica's ack on it) and land on `replica`.
async fn check_streams_reopen(c: &SimCluster, coordinator: u32, replica: u32) {
    let seed = c.seed;
    let mut kv = c.kv(CLIENT_BASE + 2, coordinator);
    assert!(
        c.wait_until(Duration::from_secs(30), || {
            let mut kv = kv.clone();
            async move {
                put(&mut kv, "reopen-probe", "x", pb::Consistency::All)
                    .await
                    .is_ok()
            }
        })
        .await,
        "seed {seed}: ALL writes never succeeded again after the break"
    );
    for i in 0..20 {
        let key = format!("after-{i}");
        put(&mut kv, &key, &key, pb::Consistency::All)
            .await
            .unwrap_or_else(|s| panic!("seed {seed}: ALL put {key} after the break: {s}"));
        assert_eq!(
            stored(c, replica, &key).await.as_deref(),
            Some(key.as_str())
        );
    }
}

/// Writes stream to two slowed replicas (batches in flight); every node-to-node message is
/// then lost for a moment, breaking both streams mid-batch. Every put still answers within
/// the request timeout; each one answered OK is on at least two replicas; afterwards the
/// streams reopen.
#[test]
fn a_stream_lost_mid_batch_leaves_only_truthful_answers() {
    let seed = runtime::seed_or(105);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        c.delay(1, 2, Duration::from_millis(5));
        c.delay(1, 3, Duration::from_millis(30));
        let handles = burst(&c, 1, "lost", 300);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lost = c.network().traffic().lost;
        c.drop_rate(1.0);
        tokio::time::sleep(Duration::from_millis(40)).await;
        c.drop_rate(0.0);
        assert!(c.network().traffic().lost > lost, "nothing was lost");
        let a = answers(seed, handles).await;
        assert!(
            !a.ok.is_empty() && a.ok.len() < 300,
            "seed {seed}: the break had no effect"
        );
        check_on_two_replicas(&c, &a.ok, &[1, 2, 3], || {
            check_nowhere(&c, &a.refused, &[1, 2, 3])
        })
        .await;
        check_streams_reopen(&c, 1, 3).await;
        check_nowhere_after_hints(&c, &a.refused, &[1, 2, 3]).await;
        finish(c).await;
    });
}

/// The same with the replica crashing mid-batch, while the third replica is partitioned away
/// so that every acknowledgement has to come from the crashing one: each put answers, each
/// one answered OK is still on two replicas once the crashed one restarts on what its disk
/// kept (an ack from it means synced, under `fsync=always`), and the stream to it reopens.
///
/// Node 2 coordinates and node 1 crashes: node 1 was started without `--join`, so it can
/// restart cut off from everyone (see the ignored test below for a node with `--join`), and
/// then no hint or repair can have given it back a copy it lost.
#[test]
fn a_replica_crashing_mid_batch_leaves_only_truthful_answers() {
    let seed = runtime::seed_or(106);
    runtime::run(seed, async move {
        let mut c = SimCluster::start(seed, 3).await;
        c.partition(&[&[1, 2], &[3]]);
        c.delay(2, 1, Duration::from_millis(30));
        let handles = burst(&c, 2, "crash", 300);
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.crash(1).await;
        let a = answers(seed, handles).await;
        assert!(
            !a.ok.is_empty() && a.ok.len() < 300,
            "seed {seed}: the crash had no effect"
        );
        c.partition(&[&[1], &[2], &[3]]);
        c.restart(1).await;
        check_on_two_replicas(&c, &a.ok, &[1, 2, 3], || {
            check_nowhere(&c, &a.refused, &[1, 2, 3])
        })
        .await;
        assert!(
            c.wait_until(Duration::from_secs(60), || c.converged(&[1, 2, 3]))
                .await,
            "seed {seed}: node 1 did not come back up"
        );
        check_streams_reopen(&c, 2, 1).await;
        check_nowhere_after_hints(&c, &a.refused, &[1, 2, 3]).await;
        finish(c).await;
    });
}

/// A node restarted on its data directory with its `--join` seed unreachable (here: node 3,
/// which joined through node 1, restarting while cut off from node 1 but not from node 2)
/// comes back through another member its saved table knows.
///
/// Found by this simulation: `rebalance::join` asked only the `--join` seeds, so a node
/// restarted with the same flags (as loadgen's launcher and the harness do) failed with
/// `Membership("no seed answered: node-1.sim:7000: ...")` after 30 s while its seed was
/// unreachable, or for good once the seed was gone, although node 2 would have answered. The
/// join now also asks every member of the saved table.
#[test]
fn a_node_restarted_with_join_while_its_seed_is_unreachable_starts() {
    let seed = runtime::seed_or(114);
    runtime::run(seed, async move {
        let mut c = SimCluster::start(seed, 3).await;
        c.crash(3).await;
        c.partition(&[&[1], &[2, 3]]);
        c.restart(3).await;
        assert!(
            c.wait_until(Duration::from_secs(60), || async {
                state_seen(&c, 2, 3).await == Some(pb::MemberState::Up)
            })
            .await,
            "seed {seed}: node 2 does not see the restarted node 3 up"
        );
        finish(c).await;
    });
}

// ---- 6. The controls act ---------------------------------------------------------------

/// A partitioned node exchanges nothing with the others (links both ways, calls and
/// messages); once healed it does again.
#[test]
fn control_partition_isolates_and_heal_reconnects() {
    let seed = runtime::seed_or(107);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        c.partition(&[&[1, 2], &[3]]);
        let t0 = c.network().traffic();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let t1 = c.network().traffic();
        assert_eq!(node_links(&t1, 3, &[1, 2]), node_links(&t0, 3, &[1, 2]));
        assert!(link(&t1, 1, 2) > link(&t0, 1, 2), "1 and 2 still talk");
        assert!(
            c.network().rules().cut.contains(&(3, 1)),
            "the rules show the cut"
        );
        c.heal();
        assert!(
            c.wait_until(Duration::from_secs(10), || async {
                let t = c.network().traffic();
                link(&t, 1, 3) > link(&t1, 1, 3) && link(&t, 3, 1) > link(&t1, 3, 1)
            })
            .await,
            "seed {seed}: no traffic with node 3 after the heal"
        );
        finish(c).await;
    });
}

/// A one-way partition stops 1 -> 3 only: 3 -> 1 keeps carrying.
#[test]
fn control_one_way_partition_cuts_one_direction() {
    let seed = runtime::seed_or(108);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        c.partition_one_way(1, 3);
        let t0 = c.network().traffic();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t1 = c.network().traffic();
        assert_eq!(link(&t1, 1, 3), link(&t0, 1, 3), "1 -> 3 is cut");
        assert!(link(&t1, 3, 1) > link(&t0, 3, 1), "3 -> 1 still carries");
        assert!(link(&t1, 2, 3) > link(&t0, 2, 3), "2 -> 3 still carries");
        finish(c).await;
    });
}

/// A paused node's traffic is held: nothing reaches it or leaves it (the operator's calls
/// included), and it resumes where it was.
#[test]
fn control_pause_holds_traffic_until_resume() {
    let seed = runtime::seed_or(109);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        c.pause(3);
        let t0 = c.network().traffic();
        assert!(
            c.ring_state(3).await.is_none(),
            "a paused node answered the operator"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t1 = c.network().traffic();
        assert_eq!(t1.received_by(3), t0.received_by(3), "nothing reaches 3");
        assert_eq!(node_links(&t1, 3, &[1, 2]), node_links(&t0, 3, &[1, 2]));
        c.resume(3);
        assert!(c.ring_state(3).await.is_some(), "no answer after resume");
        assert!(
            c.wait_until(Duration::from_secs(30), || c.converged(&[1, 2, 3]))
                .await,
            "seed {seed}: no convergence after resume"
        );
        finish(c).await;
    });
}

/// A delay on the links from the coordinator to the other replicas holds an ALL write at
/// least that long, once per write even when writes are pipelined on one stream; without it
/// the write is quick.
#[test]
fn control_delay_delays_messages() {
    let seed = runtime::seed_or(110);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        let mut kv = c.kv(CLIENT_BASE + 1, 1);
        let d = Duration::from_millis(300);
        c.delay(1, 2, d);
        c.delay(1, 3, d);
        // The first put opens the replication streams, the second one finds them open.
        let mut slow = Vec::new();
        for key in ["delayed-1", "delayed-2"] {
            let t0 = Instant::now();
            put(&mut kv, key, "v", pb::Consistency::All)
                .await
                .unwrap_or_else(|s| panic!("seed {seed}: delayed ALL put: {s}"));
            slow.push(t0.elapsed());
        }
        // A delay is latency, not a queue: puts sent 10 ms apart, each batch on the open
        // stream while the previous ones are still on their way, each take the delay once.
        let pipelined: Vec<_> = (0..10u64)
            .map(|i| {
                let mut kv = c.kv(CLIENT_BASE + 2, 1);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10 * i)).await;
                    let t0 = Instant::now();
                    let r = put(
                        &mut kv,
                        &format!("pipelined-{i}"),
                        "v",
                        pb::Consistency::All,
                    )
                    .await;
                    (r.is_ok(), t0.elapsed())
                })
            })
            .collect();
        for h in pipelined {
            let (ok, took) = h.await.expect("put task");
            assert!(
                ok && took >= d && took < d + Duration::from_millis(50),
                "seed {seed}: a pipelined delayed put took {took:?} (ok: {ok})"
            );
        }
        c.heal();
        let t0 = Instant::now();
        put(&mut kv, "prompt", "v", pb::Consistency::All)
            .await
            .unwrap_or_else(|s| panic!("seed {seed}: ALL put: {s}"));
        let quick = t0.elapsed();
        eprintln!("delayed ALL puts {slow:?}, undelayed {quick:?}");
        assert!(
            slow.iter().all(|&t| t >= d),
            "seed {seed}: delayed puts took only {slow:?}"
        );
        assert!(
            quick < Duration::from_millis(50),
            "seed {seed}: put took {quick:?}"
        );
        finish(c).await;
    });
}

/// A loss rate loses node-to-node messages (counted), and only while it is set.
#[test]
fn control_drop_rate_loses_messages() {
    let seed = runtime::seed_or(111);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        assert_eq!(c.network().traffic().lost, 0);
        c.drop_rate(0.3);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let lost = c.network().traffic().lost;
        assert!(lost > 0, "seed {seed}: nothing lost at rate 0.3");
        c.drop_rate(0.0);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(c.network().traffic().lost, lost, "lost at rate 0");
        eprintln!("{lost} messages lost in 5 s at rate 0.3");
        finish(c).await;
    });
}

/// A clock jump moves the node's wall clock at once, and its peers measure the new offset;
/// a clock rate makes it run fast.
#[test]
fn control_clock_jump_and_rate_move_the_clock() {
    let seed = runtime::seed_or(112);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        let before = c.clock_ms(2);
        c.clock_jump(2, 5_000);
        let jumped = c.clock_ms(2);
        assert_eq!(jumped - before, 5_000);
        assert!(
            c.wait_until(Duration::from_secs(30), || async {
                let s = status(&c, 1).await;
                s.clock.is_some_and(|cl| {
                    cl.offsets
                        .iter()
                        .any(|o| o.node == 2 && o.offset_ms > 4_500)
                })
            })
            .await,
            "seed {seed}: node 1 never measured node 2's jump: {:?}",
            status(&c, 1).await.clock
        );
        c.clock_rate(3, 2.0);
        let (wall, t0) = (c.clock_ms(3), Instant::now());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ran = c.clock_ms(3) - wall;
        let real = t0.elapsed().as_millis() as u64;
        assert!(
            ran >= 2 * real - 2 && ran <= 2 * real + 2,
            "seed {seed}: clock at rate 2 ran {ran} ms in {real} ms"
        );
        finish(c).await;
    });
}

/// A crashed node refuses connections at once; restarted, it serves what it had synced.
#[test]
fn control_crash_refuses_and_restart_recovers() {
    let seed = runtime::seed_or(113);
    runtime::run(seed, async move {
        let mut c = SimCluster::start(seed, 3).await;
        let mut kv = c.kv(CLIENT_BASE + 1, 1);
        put(&mut kv, "durable", "v", pb::Consistency::All)
            .await
            .unwrap_or_else(|s| panic!("seed {seed}: ALL put: {s}"));
        c.crash(3).await;
        assert!(!c.is_running(3));
        let t0 = Instant::now();
        let r = get(
            &mut c.kv(CLIENT_BASE + 2, 3),
            "durable",
            pb::Consistency::One,
        )
        .await;
        assert_eq!(
            r.map(|_| ()).unwrap_err().code(),
            tonic::Code::Unavailable,
            "a crashed node answered"
        );
        assert!(t0.elapsed() < Duration::from_millis(10), "refusal was slow");
        c.restart(3).await;
        // fsync=always: the acknowledged write survived the power cut.
        assert_eq!(stored(&c, 3, "durable").await.as_deref(), Some("v"));
        assert!(
            c.wait_until(Duration::from_secs(60), || c.converged(&[1, 2, 3]))
                .await,
            "seed {seed}: no convergence after the restart"
        );
        finish(c).await;
    });
}
