//! Hints are bounded in age: a hint whose write is older than the hint window
//! (`--max-hint-window-ms`) is dropped by the store, not replayed when its replica comes back
//! (anti-entropy repair covers such writes, as Cassandra's `max_hint_window` leaves them to
//! repair). Real processes: node 3 is killed, writes go on, their hints age past the window and
//! are swept; after node 3 restarts it gets new writes but none of the expired hints.

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::Quorum;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_older_than_the_window_are_dropped_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(
        dir.path(),
        3,
        &[
            "--max-hint-window-ms",
            "2000",
            "--maintenance-interval-ms",
            "300",
        ],
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut c1 = kv(&addrs[0]).await;

    nodes[2].kill();
    const KEYS: usize = 20;
    for i in 0..KEYS {
        put(&mut c1, &format!("k{i}"), &format!("v{i}"), Quorum)
            .await
            .unwrap_or_else(|e| panic!("put k{i} at QUORUM with one node dead: {e}"));
    }
    // Node 1 coordinated every write and kept a hint for node 3 of each...
    wait_for("hints for node 3", CONVERGE_DEADLINE, || async {
        let s = status(&addrs[0]).await;
        (s.hints_pending + s.hints_expired >= KEYS as u64).then_some(())
    })
    .await;
    // ...which age past the 2 s window and are swept by the store's upkeep.
    let swept = wait_for("expired hints swept", CONVERGE_DEADLINE, || async {
        let s = status(&addrs[0]).await;
        (s.hints_pending == 0 && s.hints_expired >= KEYS as u64).then_some(s)
    })
    .await;
    assert_eq!(swept.hints_replayed, 0);
    assert_eq!(swept.hints_bytes, 0, "swept hints still counted");

    nodes[2].restart().expect("restart");
    wait_states(&addrs, &[3], pb::MemberState::Up).await;
    // Node 3 serves and replicates again: a new write reaches it...
    wait_for("a new write on node 3", CONVERGE_DEADLINE, || async {
        let mut c = kv(&addrs[0]).await;
        put(&mut c, "after", "x", pb::Consistency::All).await.ok()?;
        local(&addrs[2], "after").await.map(|_| ())
    })
    .await;
    // ...but no expired hint was replayed to it: nothing is left to replay, and it holds none
    // of the writes it missed (no read touched them, so no read repair either).
    for i in 0..KEYS {
        assert!(
            local(&addrs[2], &format!("k{i}")).await.is_none(),
            "k{i} reached node 3 although its hint was past the window"
        );
        assert!(
            local(&addrs[0], &format!("k{i}")).await.is_some(),
            "k{i} lost"
        );
    }
    let s = status(&addrs[0]).await;
    assert_eq!(s.hints_replayed, 0, "an expired hint was replayed");
}

#[test]
fn a_hint_window_not_below_the_tombstone_grace_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvstore-server"))
        .args(["--node-id", "1", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("n1"))
        .args(["--max-hint-window-ms", "3600000"])
        .output()
        .expect("run kvstore-server");
    assert!(!out.status.success(), "a 1 h hint window was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_hint_window_ms") && err.contains("tombstone grace"),
        "{err}"
    );
}
