//! The library entry: `node::run` on a listener bound to 127.0.0.1:0, stopped by its shutdown
//! future. A clean stop flushes the engine, so a node restarted on the same data directory
//! serves what it acknowledged; the data directory is locked while a node runs.

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{One, Quorum};
use kvstore_server::{Error, NodeConfig};
use tokio::sync::oneshot;

async fn start(
    config: NodeConfig,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), Error>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let handle = tokio::spawn(kvstore_server::node::run_with_ready(
        listener,
        config,
        async move {
            let _ = stop_rx.await;
        },
        move |r| {
            let _ = ready_tx.send(r);
        },
    ));
    let ready = tokio::time::timeout(START_DEADLINE, ready_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.address, addr);
    (addr, stop_tx, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_stops_cleanly_and_keeps_data_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        node_id: 7,
        data_dir: Some(dir.path().join("n7")),
        replication_factor: 1,
        ..NodeConfig::default()
    };
    let (addr, stop, handle) = start(config.clone()).await;
    let mut c = kv(&addr).await;
    let v = put(&mut c, "durable", "yes", Quorum)
        .await
        .unwrap()
        .version
        .unwrap();
    assert_eq!(v.node, 7);

    // While it runs, a second node on the same directory is refused.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = kvstore_server::node::run(other, config.clone(), async {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");

    stop.send(()).unwrap();
    tokio::time::timeout(START_DEADLINE, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let (addr, stop, handle) = start(config).await;
    let got = get(&mut kv(&addr).await, "durable", One).await.unwrap();
    assert_eq!(&got.value[..], b"yes");
    assert_eq!(got.version, Some(v));
    // New writes order after the old ones (the clock's floor came back from the log).
    let v2 = put(&mut kv(&addr).await, "durable", "again", One)
        .await
        .unwrap()
        .version
        .unwrap();
    assert!(v2.hlc > v.hlc);
    let status = internal(&addr)
        .await
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.node_id, 7);
    assert_eq!(status.keys, 1);
    stop.send(()).unwrap();
    tokio::time::timeout(START_DEADLINE, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
