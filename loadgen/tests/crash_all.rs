//! `crash_all` really crashes the whole cluster: three real node processes (`loadgen node`,
//! fsync always); after `kill_all` no node is alive (no process, no listening port); after
//! `restart_all` the cluster forms again and every acknowledged write is still there.

use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use kvstore_client::{Client, ClientConfig, ReadOptions, WriteOptions};
use loadgen::cluster::launcher::{LocalCluster, ServerProgram, wait_formed};
use loadgen::scenario::ClusterSpec;

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_all_leaves_no_node_alive_and_loses_no_acknowledged_write() {
    let logs = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 3,
        fsync: "always".into(),
        ..ClusterSpec::default()
    };
    let program = ServerProgram::SelfExec(env!("CARGO_BIN_EXE_loadgen").into());
    let mut cluster = LocalCluster::start(&spec, program, logs.path()).unwrap();
    let endpoints = cluster.endpoints();
    wait_formed(&endpoints, DEADLINE, false, None)
        .await
        .unwrap();
    let client = Client::connect(ClientConfig::with_seeds(endpoints.clone()))
        .await
        .unwrap();
    for i in 0..20 {
        client
            .put(
                &format!("k{i}"),
                Bytes::from(format!("v{i}")),
                WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    drop(client);

    cluster.kill_all().unwrap();
    for (i, addr) in endpoints.iter().enumerate() {
        assert!(
            !cluster.is_running(i as u32),
            "node {i} still has a process"
        );
        assert!(
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_err(),
            "node {i} still accepts connections on {addr}"
        );
    }

    cluster.restart_all().unwrap();
    wait_formed(&endpoints, DEADLINE, false, None)
        .await
        .unwrap();
    let client = Client::connect(ClientConfig::with_seeds(endpoints.clone()))
        .await
        .unwrap();
    for i in 0..20 {
        let g = client
            .get(&format!("k{i}"), ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(
            g.value.as_deref(),
            Some(format!("v{i}").as_bytes()),
            "k{i} after crash_all"
        );
    }
    drop(cluster);
}
