//! A member restarted with an empty data directory (a replaced disk) streams its ranges from
//! the other replicas before it answers reads: once it is ready again it holds every key, and a
//! read at ONE through it returns the value rather than "not found" (before, it came back up
//! empty and served that wrong answer until read repair happened to touch each key).

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{All, One};

const KEYS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_has_every_key_back_before_it_answers_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;
    let mut c1 = kv(&addrs[0]).await;
    for i in 0..KEYS {
        put(&mut c1, &format!("k{i}"), &format!("v{i}"), All)
            .await
            .unwrap_or_else(|e| panic!("put k{i} at ALL: {e}"));
    }

    // Replace node 3's disk: kill it, empty its data directory, start it again (same id, same
    // address, same --join).
    nodes[2].kill();
    let data_dir = nodes[2].data_dir.clone();
    std::fs::remove_dir_all(&data_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    nodes[2]
        .restart()
        .expect("restart with an empty data directory");

    // Ready means restored: every key is back on it, and it says it is done.
    let s = status(&addrs[2]).await;
    assert!(!s.restoring, "ready while still restoring");
    for i in 0..KEYS {
        let key = format!("k{i}");
        let e = local(&addrs[2], &key).await;
        assert_eq!(
            e.map(|e| e.value.to_vec()),
            Some(format!("v{i}").into_bytes()),
            "{key} not restored on node 3"
        );
    }
    // A read at ONE through node 3 is answered from its own (restored) copy.
    let mut c3 = kv(&addrs[2]).await;
    for i in 0..KEYS {
        let got = get(&mut c3, &format!("k{i}"), One).await.unwrap();
        assert_eq!(
            got.value,
            format!("v{i}").as_bytes(),
            "k{i} at ONE via node 3"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_machine_takes_a_dead_nodes_place_with_replace() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;
    let mut c1 = kv(&addrs[0]).await;
    for i in 0..KEYS {
        put(&mut c1, &format!("k{i}"), &format!("v{i}"), All)
            .await
            .unwrap_or_else(|e| panic!("put k{i} at ALL: {e}"));
    }
    nodes[2].kill();
    wait_states(&addrs[..2], &[3], pb::MemberState::Down).await;

    // Unknown ids and live nodes cannot be replaced; the process says why and exits.
    for (id, want) in [(9, "is not a member"), (2, "already used by the live node")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvstore-server"))
            .args(["--replace", &id.to_string(), "--listen", "127.0.0.1:0"])
            .args(["--join", &addrs[0], "--data-dir"])
            .arg(dir.path().join(format!("refused{id}")))
            .output()
            .expect("run kvstore-server");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "--replace {id}: {err}"
        );
    }

    // A new machine (new address, empty directory) takes node 3's place.
    let new_home = dir.path().join("n3-replacement");
    let replacement = start_node(
        3,
        "127.0.0.1:0",
        new_home,
        &[
            "--replace".into(),
            "3".into(),
            "--join".into(),
            addrs[0].clone(),
        ],
    );
    let ring = internal(&addrs[0])
        .await
        .get_ring_state(pb::RingStateRequest {})
        .await
        .unwrap()
        .into_inner();
    let three = ring.members.iter().find(|m| m.id == 3).unwrap();
    assert_eq!(
        three.address, replacement.addr,
        "node 3's place has the new address"
    );
    for i in 0..KEYS {
        let key = format!("k{i}");
        let e = local(&replacement.addr, &key).await;
        assert_eq!(
            e.map(|e| e.value.to_vec()),
            Some(format!("v{i}").into_bytes()),
            "{key} not streamed to the replacement"
        );
    }
    let mut c3 = kv(&replacement.addr).await;
    for i in 0..KEYS {
        let got = get(&mut c3, &format!("k{i}"), One).await.unwrap();
        assert_eq!(
            got.value,
            format!("v{i}").as_bytes(),
            "k{i} at ONE via the replacement"
        );
    }
}
