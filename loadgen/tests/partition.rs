//! Partitions act on real sockets: with node 3 isolated, the other two see it down and a write
//! through node 1 does not reach it (not even as a hint replay) while the cut lasts, and the
//! iptables rules count the packets they dropped; once healed, node 3 is seen up again and the
//! write arrives. Runs inside a private network namespace (`unshare --net`): the test re-runs
//! itself there, so its rules touch nothing outside and vanish with it. Needs root, unshare and
//! iptables; elsewhere it skips with the reason (and fails under CI=true, which installs them).

mod netns_support;

use std::path::Path;
use std::time::{Duration, Instant};

use kvstore_client::{Client, ClientConfig, ConsistencyLevel, WriteOptions, pb};
use loadgen::cluster::launcher::{LocalCluster, ServerProgram, wait_formed};
use loadgen::cluster::partition::{self, Firewall, Shape};
use loadgen::scenario::ClusterSpec;

#[test]
fn a_cut_link_carries_nothing_and_a_healed_one_works_again() {
    if !netns_support::in_private_netns("a_cut_link_carries_nothing_and_a_healed_one_works_again") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(inside_the_namespace());
}

async fn states(client: &Client, addr: &str) -> Vec<(u32, i32)> {
    match client.status(addr).await {
        Ok(s) => s.members.iter().map(|m| (m.id, m.state)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until every node in `observers` sees node `id` in `state`.
async fn wait_seen(client: &Client, observers: &[String], id: u32, state: pb::MemberState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = true;
        for a in observers {
            all &= states(client, a).await.contains(&(id, state as i32));
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{observers:?} never saw node {id} {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stored(client: &Client, addr: &str, key: &str) -> bool {
    client
        .local_read(addr, key)
        .await
        .map(|r| r.found)
        .unwrap_or(false)
}

async fn inside_the_namespace() {
    let firewall = Firewall::install().expect("set up the partition chain");
    let logs = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::default();
    let cluster = LocalCluster::start_partitionable(
        &spec,
        ServerProgram::SelfExec(Path::new(env!("CARGO_BIN_EXE_loadgen")).to_path_buf()),
        logs.path(),
    )
    .expect("start 3 nodes");
    let addrs = cluster.endpoints();
    assert!(addrs[2].starts_with("127.0.0.13:"), "{addrs:?}");
    wait_formed(&addrs, Duration::from_secs(60), false, None)
        .await
        .expect("cluster forms");
    let client = Client::connect(ClientConfig::with_seeds(addrs.clone()))
        .await
        .expect("client");

    // Isolate node 3 (index 2).
    firewall
        .cut(&partition::cut_links(&Shape::Isolate { node: 2 }, 3))
        .expect("cut");
    wait_seen(&client, &addrs[..2], 3, pb::MemberState::Down).await;
    wait_seen(&client, &addrs[2..], 1, pb::MemberState::Down).await;

    // Clients still reach every node: a write through node 1 succeeds at QUORUM...
    let one = Client::connect(ClientConfig {
        seeds: vec![addrs[0].clone()],
        ..ClientConfig::with_seeds([addrs[0].clone()])
    })
    .await
    .expect("client of node 1");
    one.put(
        "cut-key",
        bytes::Bytes::from_static(b"written during the cut"),
        WriteOptions {
            consistency: Some(ConsistencyLevel::Quorum),
            ttl_ms: None,
        },
    )
    .await
    .expect("quorum write with one node cut off");
    assert!(stored(&client, &addrs[0], "cut-key").await);
    // ... and reaches nothing across the cut, for as long as it lasts.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(
            !stored(&client, &addrs[2], "cut-key").await,
            "the write crossed the cut to node 3"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dropped = firewall.dropped_packets().expect("read counters");
    assert!(dropped > 0, "the rules dropped no packet");

    // Heal: node 3 is seen up again and the write arrives (hint replay).
    firewall.heal().expect("heal");
    wait_seen(&client, &addrs[..2], 3, pb::MemberState::Up).await;
    wait_seen(&client, &addrs[2..], 1, pb::MemberState::Up).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stored(&client, &addrs[2], "cut-key").await {
        assert!(
            Instant::now() < deadline,
            "the write never reached node 3 after the heal"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(cluster);
}
