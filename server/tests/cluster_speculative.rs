//! Speculative retry: a paused replica among the first R does not hold reads until the failure
//! detector gives up on it; the coordinator asks a spare after `--speculative-retry-ms`.

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{All, Quorum};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_around_a_paused_replica_before_it_is_judged_down() {
    let dir = tempfile::tempdir().unwrap();
    // The failure detector is slow on purpose (10 s to suspect): only speculation can answer
    // the reads below while node 2 is paused.
    let nodes = start_cluster(
        dir.path(),
        3,
        &[
            "--speculative-retry-ms",
            "50",
            "--suspect-after-ms",
            "10000",
            "--down-after-ms",
            "20000",
            "--request-timeout-ms",
            "5000",
        ],
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut c1 = kv(&addrs[0]).await;
    for i in 0..20 {
        put(&mut c1, &format!("k{i}"), &format!("v{i}"), All)
            .await
            .unwrap();
    }
    nodes[1].pause().expect("pause node 2");
    for i in 0..20 {
        let got = get(&mut c1, &format!("k{i}"), Quorum)
            .await
            .unwrap_or_else(|e| panic!("get k{i} with node 2 paused: {e}"));
        assert_eq!(got.value, format!("v{i}").as_bytes());
    }
    let status = internal(&addrs[0])
        .await
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.speculative_reads > 0,
        "no read asked a spare replica"
    );
    // Node 2 was still judged alive (or suspect) throughout: speculation, not the detector,
    // answered those reads.
    assert_ne!(state_seen(&addrs[0], 2).await, Some(pb::MemberState::Down));
    nodes[1].resume().expect("resume node 2");
}
