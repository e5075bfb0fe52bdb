//! Three real nodes, N=3, W=R=2: reads and writes through any node, deletes, TTL, bad input,
//! the cluster secret, and the clock-skew refusal.

mod cluster_support;

use std::time::Duration;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{Default as Dflt, Quorum};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_put_get_delete_ttl_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, &["--cluster-secret", "s3cret"]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();

    // Put through node 1, read through each of the others.
    let mut c1 = kv(&addrs[0]).await;
    let put1 = put(&mut c1, "user:1", "alice", Dflt).await.unwrap();
    let v1 = put1.version.unwrap();
    assert_eq!(v1.node, 1);
    for addr in &addrs[1..] {
        let mut c = kv(addr).await;
        let got = get(&mut c, "user:1", Quorum).await.unwrap();
        assert!(got.exists);
        assert_eq!(&got.value[..], b"alice");
        assert_eq!(got.version, Some(v1));
    }
    // Every replica stores it under exactly the coordinator's version (N=3 of 3 nodes) once
    // the third write has landed.
    for addr in &addrs {
        wait_for(
            "every replica to hold user:1",
            CONVERGE_DEADLINE,
            || async {
                local_with_secret(addr, "user:1")
                    .await
                    .filter(|e| e.version == Some(v1))
            },
        )
        .await;
    }

    // Overwrite through node 2: newer version wins everywhere.
    let mut c2 = kv(&addrs[1]).await;
    let put2 = put(&mut c2, "user:1", "bob", Dflt).await.unwrap();
    assert!(put2.version.unwrap().hlc > v1.hlc);
    let got = get(&mut kv(&addrs[2]).await, "user:1", Quorum)
        .await
        .unwrap();
    assert_eq!(&got.value[..], b"bob");

    // Delete through node 3: a versioned tombstone.
    let del = kv(&addrs[2])
        .await
        .delete(pb::DeleteRequest {
            key: "user:1".into(),
            consistency: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let got = get(&mut c1, "user:1", Quorum).await.unwrap();
    assert!(!got.exists);
    assert_eq!(got.version, del.version);

    // TTL: expires_at = physical ms of the version + ttl, and the value disappears after it.
    let resp = c1
        .put(pb::PutRequest {
            key: "session".into(),
            value: b"tmp".to_vec().into(),
            ttl_ms: Some(1_500),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let hlc = resp.version.unwrap().hlc;
    let got = get(&mut c2, "session", Quorum).await.unwrap();
    assert!(got.exists);
    assert_eq!(got.expires_at_ms, (hlc >> 16) + 1_500);
    wait_for("session to expire", CONVERGE_DEADLINE, || async {
        let g = get(&mut kv(&addrs[1]).await, "session", Quorum)
            .await
            .ok()?;
        (!g.exists).then_some(())
    })
    .await;

    // Bad input: each refused with INVALID_ARGUMENT naming the field and limit; nothing
    // written; the node stays up.
    let big_key = "k".repeat(64 * 1024 + 1);
    let cases: Vec<(pb::PutRequest, &str)> = vec![
        (
            pb::PutRequest {
                key: String::new(),
                ..Default::default()
            },
            "key",
        ),
        (
            pb::PutRequest {
                key: big_key.clone(),
                ..Default::default()
            },
            "65536",
        ),
        (
            pb::PutRequest {
                key: "big".into(),
                value: vec![0u8; 8 * 1024 * 1024 + 1].into(),
                ..Default::default()
            },
            "8388608",
        ),
        (
            pb::PutRequest {
                key: "lvl".into(),
                consistency: 9,
                ..Default::default()
            },
            "consistency",
        ),
        (
            pb::PutRequest {
                key: "ttl".into(),
                ttl_ms: Some(0),
                ..Default::default()
            },
            "ttl_ms",
        ),
    ];
    for (req, needle) in cases {
        let key = req.key.clone();
        let err = c1.put(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        assert!(
            err.message().contains(needle),
            "{:?} should name {needle}",
            err.message()
        );
        assert_eq!(outcome(&err), "failed");
        if !key.is_empty() && key.len() <= 64 * 1024 {
            assert!(
                local_with_secret(&addrs[0], &key).await.is_none(),
                "{key} was written"
            );
        }
    }
    let err = get(&mut c1, "", Quorum).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c1
        .get(pb::GetRequest {
            key: "x".into(),
            consistency: 7,
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("consistency"), "{}", err.message());
    // Still serving.
    put(&mut c1, "after-bad-input", "ok", Quorum).await.unwrap();

    // NodeInternal without the secret: UNAUTHENTICATED.
    let err = internal(&addrs[0])
        .await
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Clock skew: a replica refuses a version far ahead of its clock, clearly, and counts it.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let future = (now_ms + 60_000) << 16;
    let mut ic = internal_with_secret(&addrs[1]).await;
    let r = ic
        .replicate(pb::ReplicateRequest {
            key: "skewed".into(),
            value: b"from the future".to_vec().into(),
            timestamp: future,
            version: Some(pb::Version {
                hlc: future,
                node: 9,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.success);
    assert!(r.error.contains("max clock offset 500 ms"), "{}", r.error);
    assert!(local_with_secret(&addrs[1], "skewed").await.is_none());
    let st = ic
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.clock_skew_rejections, 1);
    // A version within the bound is accepted.
    let near = (now_ms + 100) << 16;
    let r = ic
        .replicate(pb::ReplicateRequest {
            key: "near".into(),
            version: Some(pb::Version { hlc: near, node: 9 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.success, "{}", r.error);

    // Echo answers with its payload.
    let ch = tonic::transport::Channel::from_shared(format!("http://{}", addrs[0]))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let echoed = pb::echo_client::EchoClient::new(ch)
        .echo(pb::EchoMessage {
            payload: b"ping".to_vec().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&echoed.payload[..], b"ping");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_node_on_a_used_port_or_locked_dir_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(1, "127.0.0.1:0", dir.path().join("a"), &[]);
    let bin = env!("CARGO_BIN_EXE_kvstore-server");
    let out = std::process::Command::new(bin)
        .args(["--node-id", "2", "--listen", &node.addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("address already in use"), "{err}");

    let out = std::process::Command::new(bin)
        .args(["--node-id", "2", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("a"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("locked by another running node"), "{err}");
    drop(node);
}

async fn internal_with_secret(
    addr: &str,
) -> pb::node_internal_client::NodeInternalClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        kvstore_server::replication::channel::AddSecret,
    >,
> {
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::node_internal_client::NodeInternalClient::with_interceptor(
        ch,
        kvstore_server::replication::channel::AddSecret::new(Some("s3cret")),
    )
}

async fn local_with_secret(addr: &str, key: &str) -> Option<pb::Entry> {
    let r = internal_with_secret(addr)
        .await
        .local_read(pb::LocalReadRequest { key: key.into() })
        .await
        .unwrap()
        .into_inner();
    if r.found { r.entry } else { None }
}
