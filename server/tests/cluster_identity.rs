//! Cluster identity and membership hygiene: a node refuses to join another cluster or a
//! cluster with other placement settings, to take the id of a live node, to serve a data
//! directory of another cluster or one it left, and to expose the internal API beyond
//! loopback without a secret. Each refusal is an exit at start with a message saying what to
//! do; before these checks each of these nodes started and served.

mod cluster_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::*;
use kvstore_proto::pb;

/// Runs `kvstore-server` with `args` until it exits (at most 60 s, then it is killed and the
/// test fails): (exit code, stderr).
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvstore-server"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kvstore-server");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kvstore-server {args:?} did not exit: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refused(args: &[&str], want: &str) {
    let (code, err) = run_to_exit(args);
    assert!(
        code.is_some_and(|c| c != 0),
        "{args:?} should fail (exit {code:?}); stderr: {err}"
    );
    assert!(err.contains(want), "{args:?}: stderr lacks {want:?}: {err}");
}

fn dir_arg(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_another_cluster_or_with_other_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 2, &[]);
    let seed = nodes[0].addr.clone();
    let d = |n: &str| dir_arg(&dir.path().join(n));

    // (node id, data directory, extra flags, what the refusal says)
    let cases: [(&str, &str, &[&str], &str); 4] = [
        ("3", "x1", &["--cluster-name", "other"], "cluster \"other\""),
        ("3", "x2", &["--vnodes", "8"], "--vnodes 8"),
        (
            "3",
            "x3",
            &["--replication-factor", "2"],
            "--replication-factor 2",
        ),
        // Node id 2 is live at another address.
        ("2", "x4", &[], "already used by the live node"),
    ];
    for (id, data, extra, want) in cases {
        let data = d(data);
        let mut args = vec![
            "--node-id",
            id,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--join",
            &seed,
        ];
        args.extend_from_slice(extra);
        refused(&args, want);
    }
    // The cluster did not take any of them in.
    let ring = internal(&seed)
        .await
        .get_ring_state(pb::RingStateRequest {})
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<u32> = ring.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2], "refused nodes joined the ring");
    let n2 = ring.members.iter().find(|m| m.id == 2).unwrap();
    assert_eq!(n2.address, nodes[1].addr, "node 2's address was taken over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_directories_remember_their_cluster_and_a_left_node_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut c = kv(&addrs[0]).await;
    put(&mut c, "k", "v", pb::Consistency::All).await.unwrap();

    // Node 3 leaves; restarted on its data directory without --join it must not come back
    // serving its old copy.
    internal(&addrs[2])
        .await
        .leave(pb::LeaveRequest { node_id: 3 })
        .await
        .expect("leave node 3");
    assert!(
        nodes[2].wait_exit(CONVERGE_DEADLINE).is_some(),
        "node 3 did not exit after leaving"
    );
    let d3 = dir_arg(&nodes[2].data_dir);
    refused(
        &[
            "--node-id",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d3,
        ],
        "left the cluster",
    );

    // Node 1's directory belongs to cluster "kvstore".
    nodes[0].kill();
    let d1 = dir_arg(&nodes[0].data_dir);
    refused(
        &[
            "--node-id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d1,
            "--cluster-name",
            "prod",
        ],
        "belongs to cluster \"kvstore\"",
    );
}

#[test]
fn the_internal_api_is_not_exposed_beyond_loopback_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir_arg(dir.path());
    // Advertising a non-loopback address (the listener itself stays on loopback in tests).
    refused(
        &[
            "--node-id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--advertise",
            "10.1.2.3:7000",
            "--data-dir",
            &d,
        ],
        "Use TLS (--cert/--key with --peer-cert/--peer-key/--peer-ca",
    );
    // A secret that cannot travel as a header value is refused, not silently dropped.
    refused(
        &[
            "--node-id",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &d,
            "--cluster-secret",
            "bad\u{7}secret",
        ],
        "cluster_secret must be printable ASCII",
    );
    // With peer TLS, a secret, or --insecure, the node starts.
    let certs = dir.path().join("certs");
    kvstore_server::tls::certs::write_cluster(&certs, 1, &[]).unwrap();
    let c = |f: &str| certs.join(f).display().to_string();
    let tls = [
        "--cert".to_string(),
        c("node-1.pem"),
        "--key".into(),
        c("node-1.key"),
        "--peer-cert".into(),
        c("node-1.pem"),
        "--peer-key".into(),
        c("node-1.key"),
        "--peer-ca".into(),
        c("ca.pem"),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let protected: [&[&str]; 3] = [&tls, &["--cluster-secret", "s3cret"], &["--insecure"]];
    for (i, extra) in protected.into_iter().enumerate() {
        let mut flags = vec!["--advertise".to_string(), "10.1.2.3:7000".to_string()];
        flags.extend(extra.iter().map(|s| s.to_string()));
        let node = start_node(1, "127.0.0.1:0", dir.path().join(format!("ok{i}")), &flags);
        drop(node);
    }
}
