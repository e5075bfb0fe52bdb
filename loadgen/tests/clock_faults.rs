//! Clock faults really move a node's wall clock: three real node processes (`loadgen node`),
//! node 2 under libfaketime; a bump of +1 h makes both peers measure it an hour ahead (their
//! NodeStatus clock offsets, taken from its own timestamps) and makes it refuse to coordinate
//! writes; a reset brings the measured offset back near 0. Skips, saying why, without
//! libfaketime (`apt-get install faketime`; `.ci/run` installs it).

use std::path::Path;
use std::time::{Duration, Instant};

use kvstore_client::{Client, ClientConfig, pb};
use loadgen::cluster::clock::FAKETIME_LIB;
use loadgen::cluster::launcher::{LocalCluster, ServerProgram, wait_formed};
use loadgen::scenario::{ClusterSpec, FaultAction, FaultKind, FaultSpec, NodeSelector};

const HOUR_MS: i64 = 3_600_000;
const DEADLINE: Duration = Duration::from_secs(60);

fn clock_fault(action: FaultAction, delta_ms: Option<i64>) -> FaultSpec {
    FaultSpec {
        at_s: 0.0,
        action,
        node: NodeSelector::Index(2),
        kind: Some(FaultKind::Clock),
        delta_ms,
        period_ms: None,
        rate: None,
        until_s: None,
        to: None,
        probability: None,
        delay_ms: None,
        jitter_ms: None,
        bytes_per_sec: None,
        clients: None,
    }
}

/// What `observer` last measured of node id 3's clock (peer minus observer, ms).
async fn offset_of_node3(client: &Client, observer: &str) -> Option<i64> {
    let st: pb::NodeStatusResponse = client.status(observer).await.ok()?;
    st.clock?
        .offsets
        .iter()
        .find(|o| o.node == 3)
        .map(|o| o.offset_ms)
}

async fn wait_until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_moves_the_nodes_clock_and_a_reset_brings_it_back() {
    if !Path::new(FAKETIME_LIB).exists() {
        eprintln!("SKIPPED: {FAKETIME_LIB} missing (apt-get install faketime; .ci/run does)");
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 3,
        ..ClusterSpec::default()
    };
    let program = ServerProgram::SelfExec(env!("CARGO_BIN_EXE_loadgen").into());
    let mut cluster = LocalCluster::start_with_clocks(&spec, program, logs.path(), &[2]).unwrap();
    let endpoints = cluster.endpoints();
    wait_formed(&endpoints, DEADLINE, false, None)
        .await
        .unwrap();
    let client = Client::connect(ClientConfig::with_seeds(endpoints.clone()))
        .await
        .unwrap();

    // Before: node 3 (index 2) runs under libfaketime at true time.
    let before = wait_until("node 1 to measure node 3's clock", async || {
        offset_of_node3(&client, &endpoints[0]).await
    })
    .await;
    assert!(
        before.abs() < 400,
        "true time before the fault: {before} ms"
    );

    cluster
        .clock(
            2,
            &clock_fault(FaultAction::Bump, Some(HOUR_MS)),
            Instant::now(),
            None,
        )
        .unwrap();
    for observer in &endpoints[..2] {
        let ahead = wait_until("a peer to measure node 3 an hour ahead", async || {
            offset_of_node3(&client, observer)
                .await
                .filter(|o| (o - HOUR_MS).abs() < 60_000)
        })
        .await;
        assert!((ahead - HOUR_MS).abs() < 60_000, "{observer}: {ahead} ms");
    }
    // The node itself sees its clock is unsafe.
    wait_until("node 3 to judge its clock unhealthy", async || {
        let st = client.status(&endpoints[2]).await.ok()?;
        (st.clock?.state == "unhealthy").then_some(())
    })
    .await;

    cluster
        .clock(
            2,
            &clock_fault(FaultAction::Reset, None),
            Instant::now(),
            None,
        )
        .unwrap();
    let back = wait_until(
        "node 3's clock to be measured back at true time",
        async || {
            offset_of_node3(&client, &endpoints[0])
                .await
                .filter(|o| o.abs() < 400)
        },
    )
    .await;
    assert!(back.abs() < 400, "{back} ms");
    drop(cluster);
}
