//! Admission control: beyond its budget of in-flight requests or bytes a node sheds requests
//! with RESOURCE_EXHAUSTED naming the limit, as definite failures (nothing stored), instead of
//! holding every request's value in memory; the client library backs off and retries them.

mod cluster_support;

use cluster_support::*;
use futures::future::join_all;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::Quorum;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sheds_beyond_its_budget_and_sheds_only_what_it_did_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(
        dir.path(),
        3,
        &["--max-inflight-bytes", "4194304", "--fsync", "always"],
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    // 64 concurrent 1 MiB puts against a 4 MiB budget: most are shed.
    let shed =
        concurrent_puts_shed_as_definite_failures(&addrs, "big", 64, "--max-inflight-bytes").await;
    assert!(shed > 0, "64 MiB of concurrent puts fit a 4 MiB budget?");
    let value = "x".repeat(1024 * 1024);

    // The client library backs off on RESOURCE_EXHAUSTED and gets every write through.
    let client = kvstore_client::Client::connect(kvstore_client::ClientConfig {
        seeds: vec![addrs[0].clone()],
        request_timeout: std::time::Duration::from_secs(60),
        max_attempts: 100,
        ..Default::default()
    })
    .await
    .expect("client");
    let writes = (0..32).map(|i| {
        let (client, value) = (client.clone(), value.clone());
        async move {
            client
                .put(
                    &format!("retried{i}"),
                    value.into_bytes().into(),
                    Default::default(),
                )
                .await
                .map(|_| i)
        }
    });
    for r in join_all(writes).await {
        r.expect("the client retries shed writes until they fit");
    }
}

/// Beyond the request budget a request is answered when its headers arrive, before its body is
/// read: the early answer must still reach the client as a definite RESOURCE_EXHAUSTED (not a
/// reset stream), and nothing of it may be stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sheds_at_the_door_without_reading_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(
        dir.path(),
        3,
        &["--max-inflight-requests", "2", "--fsync", "always"],
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let shed =
        concurrent_puts_shed_as_definite_failures(&addrs, "door", 48, "--max-inflight-requests")
            .await;
    assert!(shed > 0, "48 concurrent puts fit a budget of 2 requests?");
}

/// Sends `count` concurrent 1 MiB puts (keys `<prefix><i>`, one connection each) through the
/// first node and checks that each one shed is RESOURCE_EXHAUSTED naming `flag`, with outcome
/// `failed`, stored on no node; then that the node counted exactly those and returned every
/// permit. Returns how many were shed.
async fn concurrent_puts_shed_as_definite_failures(
    addrs: &[String],
    prefix: &str,
    count: usize,
    flag: &str,
) -> usize {
    let value = "v".repeat(1024 * 1024);
    let puts = (0..count).map(|i| {
        let (addr, value) = (addrs[0].clone(), value.clone());
        async move {
            let mut c = kv(&addr).await;
            (
                i,
                put(&mut c, &format!("{prefix}{i}"), &value, Quorum).await,
            )
        }
    });
    let mut shed = 0;
    for (i, r) in join_all(puts).await {
        let key = format!("{prefix}{i}");
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Code::ResourceExhausted => {
                shed += 1;
                assert_eq!(outcome(&e), "failed", "{}", e.message());
                assert!(
                    e.message().contains(flag),
                    "names the limit: {}",
                    e.message()
                );
                for a in addrs {
                    assert!(
                        local(a, &key).await.is_none(),
                        "shed put {key} is stored on {a}"
                    );
                }
            }
            Err(e) => panic!("{key}: unexpected {e}"),
        }
    }
    let status = internal(&addrs[0])
        .await
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.requests_shed, shed as u64);
    assert_eq!(
        (status.inflight_requests, status.inflight_bytes),
        (0, 0),
        "permits returned"
    );
    shed
}
