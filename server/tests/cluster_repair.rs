//! Anti-entropy on real processes: with hints over their cap and no reads, a replica that was
//! down while writes went on converges after one repair cycle (every replica of every key then
//! holds the same newest version, checked with LocalRead); a replica that missed a delete and
//! stayed away past the tombstone grace period gets the delete instead of bringing the value
//! back.

mod cluster_support;

use std::time::Duration;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{All, Quorum};

const KEYS: usize = 300;

/// Manual repairs only, hints over their cap at once, so only repair can converge the replicas.
const FLAGS: &[&str] = &[
    "--replication-factor",
    "3",
    "--max-hints-per-target",
    "1",
    "--anti-entropy-interval-ms",
    "0",
];

/// Waits until every node's trees are built.
async fn trees_built(addrs: &[String]) {
    for a in addrs {
        wait_for(
            &format!("trees built on {a}"),
            CONVERGE_DEADLINE,
            || async {
                let ae = status(a).await.anti_entropy?;
                (ae.arcs > 0 && ae.arcs_built == ae.arcs).then_some(())
            },
        )
        .await;
    }
}

/// Runs a repair on `addr`; returns the progress messages and the summary.
async fn repair(addr: &str) -> (Vec<pb::RepairProgress>, pb::RepairProgress) {
    let mut stream = internal(addr)
        .await
        .repair(pb::RepairRequest { ranges: vec![] })
        .await
        .expect("repair")
        .into_inner();
    let mut progress = Vec::new();
    while let Some(p) = stream.message().await.expect("repair stream") {
        if p.done {
            return (progress, p);
        }
        progress.push(p);
    }
    panic!("the repair stream ended without a summary");
}

async fn versions(addr: &str, keys: &[String]) -> Vec<Option<(u64, u32, bool)>> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(local(addr, k).await.map(|e| {
            let v = e.version.unwrap_or_default();
            (v.hlc, v.node, e.tombstone)
        }));
    }
    out
}

async fn delete(
    c: &mut kvstore_proto::pb::kv_store_client::KvStoreClient<tonic::transport::Channel>,
    key: &str,
) {
    c.delete(pb::DeleteRequest {
        key: key.into(),
        consistency: Quorum as i32,
    })
    .await
    .unwrap_or_else(|e| panic!("delete {key}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_repair_cycle_converges_every_replica_without_hints_or_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, FLAGS);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;
    let mut c1 = kv(&addrs[0]).await;
    let mut keys: Vec<String> = (0..KEYS).map(|i| format!("k{i}")).collect();
    for k in &keys {
        put(&mut c1, k, "v1", All)
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }

    nodes[2].kill();
    wait_states(&addrs[..2], &[3], pb::MemberState::Down).await;
    for k in &keys {
        put(&mut c1, k, "v2", Quorum)
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
    for k in keys.iter().take(50) {
        delete(&mut c1, k).await;
    }
    for i in 0..100 {
        let k = format!("new{i}");
        put(&mut c1, &k, "n", Quorum)
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
        keys.push(k);
    }
    nodes[2].restart().expect("restart node 3");
    wait_states(&addrs, &[3], pb::MemberState::Up).await;

    // Before: node 3 missed nearly everything (one hint at most), and no read repaired it.
    let before_1 = versions(&addrs[0], &keys).await;
    let before_3 = versions(&addrs[2], &keys).await;
    let stale = before_1
        .iter()
        .zip(&before_3)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        stale > keys.len() / 2,
        "only {stale} keys differ: the test proves nothing"
    );

    trees_built(&addrs).await;
    let (progress, summary) = repair(&addrs[0]).await;
    assert!(summary.complete, "{summary:?} after {progress:?}");
    assert_eq!(summary.arcs_repaired, summary.arcs);
    assert!(summary.arcs > 0);
    assert!(
        summary.keys_pushed + summary.keys_fetched >= stale as u64,
        "{summary:?}: {stale} keys were stale"
    );
    assert_eq!(
        progress.len(),
        3,
        "two peers, then the first again: {progress:?}"
    );

    let want = versions(&addrs[0], &keys).await;
    for a in &addrs[1..] {
        let got = versions(a, &keys).await;
        let differ: Vec<&String> = keys
            .iter()
            .zip(want.iter().zip(&got))
            .filter(|(_, (w, g))| w != g)
            .map(|(k, _)| k)
            .collect();
        assert!(differ.is_empty(), "{a} still differs on {differ:?}");
    }
    assert!(
        want.iter().take(50).all(|v| v.is_some_and(|(_, _, t)| t)),
        "deletes are tombstones"
    );
    let ae = status(&addrs[0]).await.anti_entropy.unwrap();
    assert!(
        ae.last_repair_completed_ms > 0 && ae.repairs_completed == 1,
        "{ae:?}"
    );
    assert!(ae.keys_repaired >= stale as u64, "{ae:?}");

    // A second cycle finds nothing to copy.
    let (_, again) = repair(&addrs[1]).await;
    assert!(again.complete, "{again:?}");
    assert_eq!(again.keys_fetched + again.keys_pushed, 0, "{again:?}");
    assert_eq!(again.arcs_differing, 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_a_delete_past_the_grace_gets_the_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut flags: Vec<&str> = FLAGS.to_vec();
    flags.extend([
        "--tombstone-grace-ms",
        "2000",
        "--max-hint-window-ms",
        "1000",
        "--maintenance-interval-ms",
        "300",
    ]);
    let mut nodes = start_cluster(dir.path(), 3, &flags);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;
    let mut c1 = kv(&addrs[0]).await;
    let keys: Vec<String> = (0..40).map(|i| format!("gone{i}")).collect();
    for k in &keys {
        put(&mut c1, k, "old", All)
            .await
            .unwrap_or_else(|e| panic!("put {k}: {e}"));
    }
    nodes[2].kill();
    wait_states(&addrs[..2], &[3], pb::MemberState::Down).await;
    for k in &keys {
        delete(&mut c1, k).await;
    }
    // Node 3 stays away past the grace period (and the hint window: its one hint is dropped).
    let past = std::time::Instant::now() + Duration::from_millis(2500);
    wait_for(
        "the grace period to pass",
        Duration::from_secs(10),
        || async { (std::time::Instant::now() >= past).then_some(()) },
    )
    .await;
    nodes[2].restart().expect("restart node 3");
    wait_states(&addrs, &[3], pb::MemberState::Up).await;
    let held = versions(&addrs[2], &keys).await;
    let live_on_3 = held
        .iter()
        .filter(|v| v.is_some_and(|(_, _, t)| !t))
        .count();
    assert!(
        live_on_3 >= keys.len() - 1,
        "node 3 should hold the old values: {held:?}"
    );

    trees_built(&addrs).await;
    let (_, summary) = repair(&addrs[0]).await;
    assert!(summary.complete, "{summary:?}");
    // Repaired: compaction may now collect the tombstones; repair again from node 3, whose
    // trees would carry the old values if it still had them.
    let (_, again) = repair(&addrs[2]).await;
    assert!(again.complete, "{again:?}");
    for a in &addrs {
        for (k, v) in keys.iter().zip(versions(a, &keys).await) {
            assert!(
                v.is_none_or(|(_, _, tombstone)| tombstone),
                "{k} is live again on {a}: {v:?}"
            );
        }
    }
    for k in &keys {
        let r = get(&mut c1, k, All)
            .await
            .unwrap_or_else(|e| panic!("get {k}: {e}"));
        assert!(!r.exists, "{k} came back: {r:?}");
    }
}
