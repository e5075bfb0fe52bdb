//! Kill -9 one of three nodes: QUORUM keeps working, ALL is UNAVAILABLE; restart it: hints are
//! replayed, reads repair what hints did not cover, and every replica ends up agreeing.

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{All, Quorum};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_node_then_heal_it() {
    let dir = tempfile::tempdir().unwrap();
    // Few hints per target, so some keys written while node 3 is down must be healed by read
    // repair rather than by hints: both paths are exercised.
    let mut nodes = start_cluster(dir.path(), 3, &["--max-hints-per-target", "10"]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut c1 = kv(&addrs[0]).await;
    let mut c2 = kv(&addrs[1]).await;

    for i in 0..30 {
        put(&mut c1, &format!("k{i}"), &format!("v{i}"), All)
            .await
            .unwrap();
    }

    nodes[2].kill();
    // QUORUM keeps working at once, through both survivors, even before node 3 is judged down.
    for i in 20..60 {
        let c = if i % 2 == 0 { &mut c1 } else { &mut c2 };
        put(c, &format!("k{i}"), &format!("w{i}"), Quorum)
            .await
            .unwrap_or_else(|e| panic!("put k{i} at QUORUM with one node dead: {e}"));
    }
    for i in 0..60 {
        let got = get(&mut c2, &format!("k{i}"), Quorum).await.unwrap();
        let want = if i >= 20 {
            format!("w{i}")
        } else {
            format!("v{i}")
        };
        assert_eq!(got.value, want.as_bytes(), "k{i}");
    }

    // Once node 3 is seen down, ALL cannot be met: UNAVAILABLE, definite failure, nothing sent.
    wait_states(&addrs[..2], &[3], pb::MemberState::Down).await;
    let err = put(&mut c1, "all-key", "x", All).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
    assert!(
        err.message().contains("needed W=3 replicas"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("2 answered"), "{}", err.message());
    assert_eq!(outcome(&err), "failed");
    assert!(
        local(&addrs[0], "all-key").await.is_none(),
        "an UNAVAILABLE write was applied"
    );
    let err = get(&mut c1, "k1", All).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let pending: u64 = [status(&addrs[0]).await, status(&addrs[1]).await]
        .iter()
        .map(|s| s.hints_pending)
        .sum();
    assert!(pending > 0, "no hints kept for the dead node");

    // Restart node 3 on its port and data directory: hints flow back.
    nodes[2].restart().expect("restart");
    wait_states(&addrs, &[3], pb::MemberState::Up).await;
    wait_for("hints to be replayed", CONVERGE_DEADLINE, || async {
        let (a, b) = (status(&addrs[0]).await, status(&addrs[1]).await);
        (a.hints_pending + b.hints_pending == 0 && a.hints_replayed + b.hints_replayed > 0)
            .then_some(())
    })
    .await;

    // Reading every key repairs the replicas hints did not cover; then every replica agrees.
    let mut c3 = kv(&addrs[2]).await;
    for i in 0..60 {
        get(&mut c3, &format!("k{i}"), Quorum).await.unwrap();
    }
    for i in 0..60 {
        let key = format!("k{i}");
        wait_for(
            &format!("replicas of {key} to agree"),
            CONVERGE_DEADLINE,
            || async {
                let a = local(&addrs[0], &key).await?;
                let b = local(&addrs[1], &key).await?;
                let c = local(&addrs[2], &key).await?;
                (a == b && b == c).then_some(())
            },
        )
        .await;
    }
    let repairs: u64 = [
        status(&addrs[0]).await,
        status(&addrs[1]).await,
        status(&addrs[2]).await,
    ]
    .iter()
    .map(|s| s.read_repairs)
    .sum();
    assert!(repairs > 0, "no read repair counted");
    // The coordinator measured its replicas' acknowledgements.
    let s1 = status(&addrs[0]).await;
    assert!(s1.replication_acks > 0);
    assert!(s1.replication_p50_us > 0 && s1.replication_p50_us <= s1.replication_p99_us);
}
