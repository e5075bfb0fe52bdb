//! The real `kvstore_client::Client` against real nodes: one seed is enough to discover the
//! whole ring; a client that cannot get the ring (no secret for a guarded cluster) still
//! succeeds; and a node started with `--leave-on-shutdown` hands its data over on SIGTERM.

mod cluster_support;

use bytes::Bytes;
use cluster_support::*;
use kvstore_client::{Client, ClientConfig, ReadOptions, WriteOptions};
use kvstore_proto::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seed_discovers_all_and_unknown_ring_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, &["--cluster-secret", "s3cret"]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();

    let mut cfg = ClientConfig::with_seeds([addrs[0].clone()]);
    cfg.cluster_secret = Some("s3cret".into());
    let client = Client::connect(cfg).await.unwrap();
    wait_for(
        "the client to know all three nodes",
        CONVERGE_DEADLINE,
        || async {
            let known = client.known_servers();
            addrs.iter().all(|a| known.contains(a)).then_some(())
        },
    )
    .await;
    let ring = client.ring().await.unwrap();
    assert_eq!(ring.members.len(), 3);
    let put = client
        .put(
            "greeting",
            Bytes::from_static(b"hello"),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    let got = client
        .get("greeting", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(got.value.as_deref(), Some(&b"hello"[..]));
    assert_eq!(got.version, Some(put.version));
    // The client sent it to a replica of the key: every node is one with N=3.
    assert!(addrs.contains(&got.coordinator));

    // Without the secret the ring is refused, yet requests still succeed by trying servers.
    let blind = Client::connect(ClientConfig::with_seeds([addrs[1].clone()]))
        .await
        .unwrap();
    let got = blind.get("greeting", ReadOptions::default()).await.unwrap();
    assert_eq!(got.value.as_deref(), Some(&b"hello"[..]));
    blind
        .delete("greeting", WriteOptions::default())
        .await
        .unwrap();
    let got = client
        .get("greeting", ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(got.value, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_leave_on_shutdown_hands_data_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let seed = nodes[0].addr.clone();
    let d4 = dir.path().join("n4");
    let mut n4 = tokio::task::spawn_blocking(move || {
        start_node(
            4,
            "127.0.0.1:0",
            d4,
            &["--join".into(), seed, "--leave-on-shutdown".into()],
        )
    })
    .await
    .unwrap();
    let all: Vec<String> = nodes
        .iter()
        .map(|n| n.addr.clone())
        .chain([n4.addr.clone()])
        .collect();
    wait_states(&all, &[4], pb::MemberState::Up).await;

    let client = Client::connect(ClientConfig::with_seeds([all[3].clone()]))
        .await
        .unwrap();
    for i in 0..100 {
        client
            .put(
                &format!("key{i}"),
                Bytes::from(format!("v{i}")),
                WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    // Node 4 leaves on SIGTERM: it exits cleanly, the others see it left, nothing is lost.
    let stayed = tokio::task::spawn_blocking(move || {
        let ok = n4.terminate(START_DEADLINE);
        (ok, n4)
    })
    .await
    .unwrap();
    assert!(stayed.0, "node 4 did not exit cleanly on SIGTERM");
    wait_states(&all[..3], &[4], pb::MemberState::Left).await;
    let client = Client::connect(ClientConfig::with_seeds([all[0].clone()]))
        .await
        .unwrap();
    for i in 0..100 {
        let got = client
            .get(&format!("key{i}"), ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(got.value, Some(Bytes::from(format!("v{i}"))), "key{i}");
    }
    // A plain SIGTERM (no leave) also stops a node cleanly.
    assert!(
        nodes[2].terminate(START_DEADLINE),
        "node 3 did not exit cleanly on SIGTERM"
    );
    drop(nodes);
}
