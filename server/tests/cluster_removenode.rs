//! `RemoveNode` (`kv removenode`): a node killed for good leaves its ranges at N-1 copies until
//! an operator removes it; then the survivors copy its ranges to their new owners and every key
//! has N copies again, checked replica by replica with LocalRead. A live node cannot be removed.

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::All;
use tonic::Code;

const KEYS: usize = 300;

async fn copies(addrs: &[String], key: &str) -> usize {
    let mut n = 0;
    for a in addrs {
        if local(a, key).await.is_some() {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_dead_node_leaves_every_key_with_n_copies_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 4, &["--replication-factor", "3"]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    wait_states(&addrs, &[1, 2, 3, 4], pb::MemberState::Up).await;
    let mut c1 = kv(&addrs[0]).await;
    for i in 0..KEYS {
        put(&mut c1, &format!("k{i}"), &format!("v{i}"), All)
            .await
            .unwrap_or_else(|e| panic!("put k{i} at ALL: {e}"));
    }

    nodes[3].kill();
    let survivors = &addrs[..3];
    wait_states(survivors, &[4], pb::MemberState::Down).await;
    // Before: the keys node 4 replicated have only two live copies (on three live nodes).
    let mut short = 0;
    for i in 0..KEYS {
        if copies(survivors, &format!("k{i}")).await < 3 {
            short += 1;
        }
    }
    assert!(short > 0, "no key was on node 4: the test proves nothing");

    // A live node is not removed.
    let err = internal(&addrs[0])
        .await
        .remove_node(pb::RemoveNodeRequest { node_id: 2 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("kv leave 2"), "{}", err.message());

    let r = internal(&addrs[1])
        .await
        .remove_node(pb::RemoveNodeRequest { node_id: 4 })
        .await
        .unwrap_or_else(|e| panic!("remove node 4: {e}"))
        .into_inner();
    assert_eq!(r.members, vec![1, 2, 3], "{r:?}");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.keys_failed, 0, "{r:?}");
    assert!(
        r.keys_copied >= short as u64,
        "{r:?} for {short} short keys"
    );

    // After: node 4 is left everywhere, and every key is on all three survivors.
    wait_states(survivors, &[4], pb::MemberState::Left).await;
    for i in 0..KEYS {
        let key = format!("k{i}");
        assert_eq!(
            copies(survivors, &key).await,
            3,
            "{key} not back at N copies"
        );
    }
    // Removing it again is harmless (the answer of a lost call can be asked for again).
    let again = internal(&addrs[2])
        .await
        .remove_node(pb::RemoveNodeRequest { node_id: 4 })
        .await
        .unwrap_or_else(|e| panic!("remove node 4 again: {e}"))
        .into_inner();
    assert_eq!(again.keys_failed, 0, "{again:?}");
}
