//! The hidden fault-injection flags each break their guarantee (so the checker's tests can rely
//! on them). Only built with `--features fault-injection`:
//! `cargo test -p kvstore-server --features fault-injection --test cluster_faults`.
#![cfg(feature = "fault-injection")]

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{All, One, Quorum};

fn single(dir: &std::path::Path, flag: &str) -> Node {
    start_node(
        1,
        "127.0.0.1:0",
        dir.join(flag.trim_start_matches('-')),
        &[
            "--replication-factor".into(),
            "1".into(),
            "--maintenance-interval-ms".into(),
            "200".into(),
            flag.into(),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_breaks_its_guarantee() {
    let dir = tempfile::tempdir().unwrap();

    // Acknowledged, never written.
    let n = single(dir.path(), "--fault-ack-before-write");
    let mut c = kv(&n.addr).await;
    put(&mut c, "lost", "v", All).await.unwrap();
    assert!(!get(&mut c, "lost", One).await.unwrap().exists);
    drop(n);

    // The older version survives an acknowledged overwrite on replicas.
    let nodes = start_cluster(
        dir.path(),
        2,
        &["--replication-factor", "2", "--fault-keep-older"],
    );
    let mut c = kv(&nodes[0].addr).await;
    put(&mut c, "k", "old", All).await.unwrap();
    let newer = put(&mut c, "k", "new", All).await.unwrap().version;
    let replica = local(&nodes[1].addr, "k").await.unwrap();
    assert_ne!(
        replica.version, newer,
        "keep-older replica took the newer version"
    );
    drop(nodes);

    // Tombstones vanish at maintenance: the delete is forgotten.
    let n = single(dir.path(), "--fault-lose-tombstones");
    let mut c = kv(&n.addr).await;
    put(&mut c, "gone", "v", Quorum).await.unwrap();
    c.delete(pb::DeleteRequest {
        key: "gone".into(),
        consistency: 0,
    })
    .await
    .unwrap();
    wait_for("the tombstone to be lost", CONVERGE_DEADLINE, || async {
        local(&n.addr, "gone").await.is_none().then_some(())
    })
    .await;
}
