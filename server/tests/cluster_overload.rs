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
    let value = "x".repeat(1024 * 1024);
    // 64 concurrent 1 MiB puts against a 4 MiB budget: most are shed.
    let puts = (0..64).map(|i| {
        let (addr, value) = (addrs[0].clone(), value.clone());
        async move {
            let mut c = kv(&addr).await;
            (i, put(&mut c, &format!("big{i}"), &value, Quorum).await)
        }
    });
    let results = join_all(puts).await;
    let mut shed = 0;
    for (i, r) in results {
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Code::ResourceExhausted => {
                shed += 1;
                assert_eq!(outcome(&e), "failed", "{}", e.message());
                assert!(
                    e.message().contains("--max-inflight-bytes"),
                    "names the limit: {}",
                    e.message()
                );
                for a in &addrs {
                    assert!(
                        local(a, &format!("big{i}")).await.is_none(),
                        "shed put big{i} is stored on {a}"
                    );
                }
            }
            Err(e) => panic!("big{i}: unexpected {e}"),
        }
    }
    assert!(shed > 0, "64 MiB of concurrent puts fit a 4 MiB budget?");
    let status = internal(&addrs[0])
        .await
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.requests_shed, shed as u64);
    assert_eq!(status.inflight_requests, 0, "permits returned");
    assert_eq!(status.inflight_bytes, 0, "permits returned");

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
    let value = "y".repeat(1024 * 1024);
    let puts = (0..48).map(|i| {
        let (addr, value) = (addrs[0].clone(), value.clone());
        async move {
            let mut c = kv(&addr).await;
            (i, put(&mut c, &format!("door{i}"), &value, Quorum).await)
        }
    });
    let mut shed = 0;
    for (i, r) in join_all(puts).await {
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Code::ResourceExhausted => {
                shed += 1;
                assert_eq!(outcome(&e), "failed", "{}", e.message());
                assert!(
                    e.message().contains("--max-inflight-requests"),
                    "names the limit: {}",
                    e.message()
                );
                for a in &addrs {
                    assert!(
                        local(a, &format!("door{i}")).await.is_none(),
                        "shed put door{i} is stored on {a}"
                    );
                }
            }
            Err(e) => panic!("door{i}: unexpected {e}"),
        }
    }
    assert!(shed > 0, "48 concurrent puts fit a budget of 2 requests?");
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
}
