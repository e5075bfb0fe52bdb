//! Join a 4th node under a running writer, then make one leave: every acknowledged write stays
//! readable and each node ends up holding exactly the keys of its ranges.

mod cluster_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::Quorum;
use kvstore_proto::ring::Ring;

type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Writes fresh keys through `addrs` round-robin until `stop`; records acknowledged ones.
fn spawn_writer(
    prefix: &'static str,
    addrs: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut clients = Vec::new();
        for a in &addrs {
            clients.push(kv(a).await);
        }
        let mut i = 0usize;
        let mut failures = 0;
        while !stop.load(Ordering::Relaxed) && i < 5_000 {
            let key = format!("{prefix}{i}");
            let value = format!("value-{i}");
            let c = &mut clients[i % addrs.len()];
            match put(c, &key, &value, Quorum).await {
                Ok(_) => {
                    acked.lock().unwrap().insert(key, value);
                }
                Err(_) => failures += 1,
            }
            i += 1;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        failures
    })
}

async fn check_all_readable(addrs: &[String], acked: &BTreeMap<String, String>) {
    let mut clients = Vec::new();
    for a in addrs {
        clients.push(kv(a).await);
    }
    for (n, (key, value)) in acked.iter().enumerate() {
        let addr = &addrs[n % addrs.len()];
        let got = get(&mut clients[n % addrs.len()], key, Quorum)
            .await
            .unwrap_or_else(|e| panic!("get {key} via {addr}: {e}"));
        assert!(got.exists, "acknowledged {key} lost (read via {addr})");
        assert_eq!(got.value, value.as_bytes(), "{key}");
    }
}

async fn wait_exact_ownership(nodes: &[(u32, String)], acked: &BTreeMap<String, String>) {
    let ring = Ring::new(nodes.iter().map(|(id, _)| *id), 64);
    for (id, addr) in nodes {
        wait_for(
            &format!("node {id} to hold exactly its ranges' keys"),
            CONVERGE_DEADLINE,
            || async {
                let mut c = internal(addr).await;
                for key in acked.keys() {
                    let owns = ring.preference_list(key.as_bytes(), 3).contains(id);
                    let found = c
                        .local_read(pb::LocalReadRequest { key: key.clone() })
                        .await
                        .ok()?
                        .into_inner()
                        .found;
                    if found != owns {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_then_leave_under_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let seed = nodes[0].addr.clone();
    let first3: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let acked: Acked = Arc::default();

    // Join node 4 while a writer runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer("j", first3.clone(), stop.clone(), acked.clone());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let d4 = dir.path().join("n4");
    let n4 = tokio::task::spawn_blocking(move || {
        start_node(4, "127.0.0.1:0", d4, &["--join".into(), seed])
    })
    .await
    .unwrap();
    let all4: Vec<String> = first3.iter().cloned().chain([n4.addr.clone()]).collect();
    wait_states(&all4, &[1, 2, 3, 4], pb::MemberState::Up).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let snapshot = acked.lock().unwrap().clone();
    assert!(
        snapshot.len() > 20,
        "writer acknowledged only {}",
        snapshot.len()
    );
    check_all_readable(&all4, &snapshot).await;
    let members: Vec<(u32, String)> = vec![
        (1, all4[0].clone()),
        (2, all4[1].clone()),
        (3, all4[2].clone()),
        (4, all4[3].clone()),
    ];
    wait_exact_ownership(&members, &snapshot).await;

    // Node 2 leaves while a writer runs through the others.
    let stay: Vec<String> = vec![all4[0].clone(), all4[2].clone(), all4[3].clone()];
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer("l", stay.clone(), stop.clone(), acked.clone());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let moved = internal(&all4[1])
        .await
        .leave(pb::LeaveRequest { node_id: 2 })
        .await
        .unwrap()
        .into_inner()
        .keys_moved;
    assert!(moved > 0);
    assert!(
        nodes[1].wait_exit(START_DEADLINE) == Some(true),
        "node 2 did not exit cleanly after leaving"
    );
    wait_states(&stay, &[2], pb::MemberState::Left).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let snapshot = acked.lock().unwrap().clone();
    check_all_readable(&stay, &snapshot).await;
    let members: Vec<(u32, String)> = vec![
        (1, all4[0].clone()),
        (3, all4[2].clone()),
        (4, all4[3].clone()),
    ];
    wait_exact_ownership(&members, &snapshot).await;
    drop(n4);
}

/// A leave belongs to the node, not to the request that asked for it: the first caller gives up
/// after 200 ms (well inside the 3 s transition grace), a second request joins the leave in
/// progress and gets its outcome, and the node hands everything over and exits by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_outlives_the_caller_that_gave_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(
        dir.path(),
        3,
        &["--replication-factor", "2", "--transition-grace-ms", "3000"],
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;
    let mut c = kv(&addrs[0]).await;
    let mut written = BTreeMap::new();
    for i in 0..200 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        put(&mut c, &key, &value, Quorum).await.unwrap();
        written.insert(key, value);
    }

    let mut impatient = tonic::Request::new(pb::LeaveRequest { node_id: 3 });
    impatient.set_timeout(std::time::Duration::from_millis(200));
    let gave_up = internal(&addrs[2]).await.leave(impatient).await;
    assert!(
        gave_up.is_err(),
        "a leave cannot finish inside its 3 s grace: {gave_up:?}"
    );
    let joined = internal(&addrs[2])
        .await
        .leave(pb::LeaveRequest { node_id: 3 })
        .await
        .expect("a second request joins the leave in progress")
        .into_inner();
    assert!(joined.keys_moved > 0);
    assert!(
        nodes[2].wait_exit(START_DEADLINE) == Some(true),
        "node 3 did not exit cleanly after leaving"
    );
    let stay = &addrs[..2];
    wait_states(stay, &[3], pb::MemberState::Left).await;
    check_all_readable(stay, &written).await;
}
