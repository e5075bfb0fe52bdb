//! The seed's PutResponse: every put returns the previous value, so `had_old_value = false`
//! is never a false "no" for a client that did not opt out. Before, the previous value was
//! opt-in (a seed client that did not ask was told there was none) and, when asked, came from
//! the coordinator's local copy, which a coordinator that is not a replica of the key lacks.

mod cluster_support;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::Quorum;

async fn seed_put(addr: &str, key: &str, value: &str) -> pb::PutResponse {
    kv(addr)
        .await
        .put(pb::PutRequest {
            key: key.into(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        })
        .await
        .expect("put")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_put_returns_the_previous_value_from_the_replicas() {
    let dir = tempfile::tempdir().unwrap();
    // N=1 of 3: most keys are not stored on node 1, the coordinator of every put below.
    let nodes = start_cluster(dir.path(), 3, &["--replication-factor", "1"]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut remote_keys = 0;
    for i in 0..12 {
        let key = format!("k{i}");
        let first = seed_put(&addrs[0], &key, "v1").await;
        assert!(!first.had_old_value, "{key}: nothing was there before");
        assert_eq!(first.old_value_state(), pb::OldValueState::OldValueAbsent);
        let second = seed_put(&addrs[0], &key, "v2").await;
        assert!(second.had_old_value, "{key}: v1 was there before");
        assert_eq!(second.old_value, b"v1".as_slice(), "{key}");
        assert_eq!(second.old_value_state(), pb::OldValueState::OldValuePresent);
        if local(&addrs[0], &key).await.is_none() {
            remote_keys += 1;
        }
    }
    assert!(
        remote_keys > 0,
        "every key landed on the coordinator: no remote case tested"
    );

    // A deleted key has no old value.
    let mut c = kv(&addrs[0]).await;
    c.delete(pb::DeleteRequest {
        key: "k0".into(),
        consistency: 0,
    })
    .await
    .unwrap();
    let after_delete = seed_put(&addrs[0], "k0", "v3").await;
    assert!(!after_delete.had_old_value);
    assert_eq!(
        after_delete.old_value_state(),
        pb::OldValueState::OldValueAbsent
    );

    // Opting out skips the read and says so.
    let skipped = put(&mut c, "k1", "v4", Quorum).await.unwrap();
    assert!(!skipped.had_old_value);
    assert_eq!(
        skipped.old_value_state(),
        pb::OldValueState::OldValueNotRead
    );
}
