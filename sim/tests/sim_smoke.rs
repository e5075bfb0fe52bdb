use std::time::Duration;

use kvstore_proto::pb;
use kvstore_sim::SimCluster;
use kvstore_sim::runtime;

#[test]
fn three_nodes_start_and_serve_a_quorum_write() {
    let seed = runtime::seed_or(1);
    runtime::run(seed, async move {
        let c = SimCluster::start(seed, 3).await;
        let mut kv = c.kv(10_000, 1);
        let r = kv
            .put(pb::PutRequest {
                key: "k".into(),
                value: bytes::Bytes::from_static(b"v"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(r.into_inner().version.is_some());
        let got = c
            .kv(10_000, 2)
            .get(pb::GetRequest {
                key: "k".into(),
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&got.value[..], b"v");
        tokio::time::sleep(Duration::from_millis(100)).await;
        for n in 1..=3 {
            let e = c.local_read(n, "k").await;
            eprintln!("node {n}: {e:?}");
            assert!(e.unwrap().is_some(), "node {n}");
        }
        eprintln!("elapsed {:?}", c.elapsed());
        c.shutdown().await;
    });
}
