//! Truthful outcomes: a write reported `failed` was applied nowhere. Reproduces a defect seen
//! on a 3-node cluster: puts at ALL right after a kill -9 of one node answered `failed`
//! ("definitely not applied") although the two live replicas had stored every one of them, so
//! a client that retried definite failures wrote one value under two versions. And the
//! opposite case: writes that could be refused up front (a replica's stream just broke) are
//! refused before anything is sent, so they come back as definite failures, not unknown.

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::All;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_all_after_a_kill_are_never_falsely_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut c1 = kv(&addrs[0]).await;
    put(&mut c1, "warm", "up", All).await.expect("warm-up put");

    // Kill node 3 and write at ALL at once, before the failure detector notices: every write
    // is sent to nodes 1 and 2 while node 3's stream fails.
    nodes[2].kill();
    let mut failed = Vec::new();
    let mut unknown = 0;
    for i in 0..30 {
        let key = format!("all-{i}");
        match put(&mut c1, &key, "x", All).await {
            Ok(_) => panic!("{key}: ALL acknowledged with a dead replica"),
            Err(e) if outcome(&e) == "failed" => failed.push((key, e.message().to_string())),
            Err(_) => unknown += 1,
        }
    }
    // "failed" must mean applied nowhere.
    for (key, why) in &failed {
        for a in &addrs[..2] {
            assert!(
                local(a, key).await.is_none(),
                "{key} answered failed ({why}) yet is stored on {a}"
            );
        }
    }
    eprintln!(
        "{} definite failures, {unknown} unknown outcomes",
        failed.len()
    );
    assert_eq!(failed.len() + unknown, 30);
    // And the coordinator knows it at once: a replica whose stream just broke counts as not
    // taking writes, so a write at ALL is refused before it is sent anywhere (definite),
    // except one probe per reconnect backoff (200 ms) that tries the peer again. Before that
    // rule, all 30 were unknown until the failure detector said down, seconds later.
    assert!(
        failed.len() >= 15,
        "only {} of 30 writes at ALL with a freshly dead replica were definite failures",
        failed.len()
    );
    // Once node 3 is judged down, ALL is refused before anything is sent: definite.
    wait_states(&addrs[..2], &[3], pb::MemberState::Down).await;
    let err = put(&mut c1, "after-down", "x", All).await.unwrap_err();
    assert_eq!(outcome(&err), "failed", "{}", err.message());
    assert!(local(&addrs[0], "after-down").await.is_none());
}
