//! Membership faults really act on a real cluster (three `loadgen node` processes, N = 3):
//! a join puts a new id up in the ring; a wipe restarts a node on an empty data directory, so
//! the keys it held are gone from it; a leave ends the node's process and marks it left in the
//! ring; a replace kills a node for good and puts a new id up in the ring in its place.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kvstore_client::{Client, ClientConfig, ConsistencyLevel, WriteOptions, pb};
use loadgen::cluster::launcher::{LocalCluster, ServerProgram, wait_formed};
use loadgen::cluster::membership;
use loadgen::scenario::{ClusterSpec, FaultAction};

const DEADLINE: Duration = Duration::from_secs(90);
const KEYS: usize = 30;

async fn ring_state(client: &Client, id: u32) -> Option<i32> {
    let ring = client.ring().await.unwrap();
    ring.members.iter().find(|m| m.id == id).map(|m| m.state)
}

fn live(c: &Arc<Mutex<LocalCluster>>) -> Vec<String> {
    c.lock().unwrap().live_endpoints()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_wipe_leave_and_replace_each_change_the_cluster() {
    let logs = tempfile::tempdir().unwrap();
    let spec = ClusterSpec {
        nodes: 3,
        fsync: "always".into(),
        ..ClusterSpec::default()
    };
    let program = ServerProgram::SelfExec(env!("CARGO_BIN_EXE_loadgen").into());
    let cluster = Arc::new(Mutex::new(
        LocalCluster::start(&spec, program, logs.path()).unwrap(),
    ));
    wait_formed(&live(&cluster), DEADLINE, false, None)
        .await
        .unwrap();
    let client = Client::connect(ClientConfig::with_seeds(live(&cluster)))
        .await
        .unwrap();
    let all = WriteOptions {
        consistency: Some(ConsistencyLevel::All),
        ..WriteOptions::default()
    };
    for i in 0..KEYS {
        client
            .put(&format!("k{i}"), Bytes::from(format!("v{i}")), all)
            .await
            .unwrap();
    }

    // Join: node 3 (id 4) is up in the ring.
    assert_eq!(ring_state(&client, 4).await, None);
    let done = membership::apply(&cluster, FaultAction::Join, 0)
        .await
        .unwrap();
    assert!(done.contains("id 4"), "{done}");
    assert_eq!(
        ring_state(&client, 4).await,
        Some(pb::MemberState::Up as i32)
    );
    wait_formed(&live(&cluster), DEADLINE, false, None)
        .await
        .unwrap();

    // Wipe node 1: it held every key (N = 3 of 3 when written); it restarts on nothing.
    let node1 = cluster.lock().unwrap().node_paths(1).unwrap().0;
    for i in 0..KEYS {
        let r = client.local_read(&node1, &format!("k{i}")).await.unwrap();
        assert!(r.found, "k{i} on node 1 before the wipe");
    }
    let done = membership::apply(&cluster, FaultAction::Wipe, 1)
        .await
        .unwrap();
    assert!(done.contains("empty at restart"), "{done}");
    wait_formed(&live(&cluster), DEADLINE, false, None)
        .await
        .unwrap();
    // The directory was empty at the restart (checked by the fault, above). The node then
    // restores its ranges from the other replicas before answering reads; that each key is back
    // is the server's cluster_replace_disk test's to say.

    // Leave node 3 (id 4): its process ends, the ring lists it left.
    let done = membership::apply(&cluster, FaultAction::Leave, 3)
        .await
        .unwrap();
    assert!(done.contains("left"), "{done}");
    assert!(
        !cluster.lock().unwrap().is_running(3),
        "node 3 still runs after leaving"
    );
    let state = ring_state(&client, 4).await;
    assert!(
        state.is_none() || state == Some(pb::MemberState::Left as i32),
        "id 4 after its leave: {state:?}"
    );
    assert_eq!(live(&cluster).len(), 3);

    // Replace node 2 (id 3): killed for good, node 4 (id 5) up in its place.
    let done = membership::apply(&cluster, FaultAction::Replace, 2)
        .await
        .unwrap();
    assert!(done.contains("id 5"), "{done}");
    assert!(
        !cluster.lock().unwrap().is_running(2),
        "node 2 runs after its replace"
    );
    assert_eq!(
        ring_state(&client, 5).await,
        Some(pb::MemberState::Up as i32)
    );
    let gone = cluster.lock().unwrap().gone_endpoints();
    assert_eq!(gone.len(), 2, "left and replaced nodes: {gone:?}");
    wait_formed(&live(&cluster), DEADLINE, false, None)
        .await
        .unwrap();
    drop(client);
}
