//! TLS with real handshakes between real processes: a three-node cluster on mutual TLS forms
//! and serves through the client library; clients that trust another CA, speak plaintext,
//! present no certificate (where one is required) or an expired one are refused; a client
//! certificate cannot make node-only calls; a node serving an expired certificate is not
//! trusted; and a node whose certificates come from another
//! cluster's CA (made by `kvstore-server certs`) cannot join.

mod cluster_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cluster_support::*;
use kvstore_client::{Client, ClientConfig, ClientTls, ReadOptions, WriteOptions, pb};
use kvstore_server::tls::certs::{Authority, Pem, Usage, node_hosts};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn write(dir: &Path, stem: &str, pem: &Pem) -> (PathBuf, PathBuf) {
    let (c, k) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&c, &pem.cert).unwrap();
    std::fs::write(&k, &pem.key).unwrap();
    (c, k)
}

fn node_flags(certs: &Path, i: u32, client_cert_auth: bool) -> Vec<String> {
    let p = |f: &str| certs.join(f).display().to_string();
    let mut f = vec![
        "--cert".into(),
        p(&format!("node-{i}.pem")),
        "--key".into(),
        p(&format!("node-{i}.key")),
        "--peer-cert".into(),
        p(&format!("node-{i}.pem")),
        "--peer-key".into(),
        p(&format!("node-{i}.key")),
        "--peer-ca".into(),
        p("ca.pem"),
        "--ca".into(),
        p("client-ca.pem"),
    ];
    if client_cert_auth {
        f.push("--client-cert-auth".into());
    }
    f
}

fn tls(ca: &Pem, identity: Option<&Pem>) -> ClientTls {
    ClientTls {
        ca_pem: ca.cert.clone().into_bytes(),
        identity: identity.map(|p| (p.cert.clone().into_bytes(), p.key.clone().into_bytes())),
    }
}

async fn client(addr: &str, tls: Option<ClientTls>) -> Result<Client, kvstore_client::ClientError> {
    Client::connect(ClientConfig {
        tls,
        request_timeout: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(2),
        ..ClientConfig::with_seeds([addr.to_string()])
    })
    .await
}

/// A raw TLS channel to `addr` (for node-only calls).
async fn raw_channel(
    addr: &str,
    ca: &Pem,
    identity: &Pem,
) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca.cert))
                .identity(Identity::from_pem(&identity.cert, &identity.key)),
        )
        .unwrap()
        .connect()
        .await
}

fn replicate_req() -> pb::ReplicateRequest {
    pb::ReplicateRequest {
        key: "forged".into(),
        value: b"x".to_vec().into(),
        version: Some(pb::Version {
            hlc: 1 << 40,
            node: 1,
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_serves_and_refuses_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Authority::new("test cluster CA").unwrap();
    let client_ca = Authority::new("test client CA").unwrap();
    write(&certs, "ca", ca.pem());
    write(&certs, "client-ca", client_ca.pem());
    for i in 1..=3 {
        let name = format!("node-{i}");
        write(
            &certs,
            &name,
            &ca.issue(&name, &node_hosts(&name, &[]), Usage::Node)
                .unwrap(),
        );
    }
    let client_cert = client_ca.issue("client", &[], Usage::Client).unwrap();

    // Nodes 1 and 2 require client certificates; node 3 does not.
    let mut nodes: Vec<Node> = Vec::new();
    for i in 1..=3u32 {
        let mut flags = node_flags(&certs, i, i != 3);
        if let Some(seed) = nodes.first() {
            flags.extend(["--join".into(), seed.addr.clone()]);
        }
        nodes.push(start_node(
            i,
            "127.0.0.1:0",
            dir.path().join(format!("n{i}")),
            &flags,
        ));
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();

    // The cluster forms over mutual TLS and serves through the client library.
    let c = client(&addrs[0], Some(tls(ca.pem(), Some(&client_cert))))
        .await
        .unwrap();
    for addr in &addrs {
        wait_for(
            &format!("{addr} to see 3 members up"),
            CONVERGE_DEADLINE,
            || {
                let c = c.clone();
                let addr = addr.clone();
                async move {
                    let st = c.status(&addr).await.ok()?;
                    (st.members
                        .iter()
                        .filter(|m| m.state == pb::MemberState::Up as i32)
                        .count()
                        == 3)
                        .then_some(())
                }
            },
        )
        .await;
    }
    for i in 0..10 {
        c.put(
            &format!("k{i}"),
            format!("v{i}").into_bytes().into(),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    }
    for i in 0..10 {
        let got = c
            .get(&format!("k{i}"), ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(got.value.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    // Every node replicated over TLS: each holds the keys (N = 3).
    let st = c.status(&addrs[2]).await.unwrap();
    assert!(st.keys >= 10, "node 3 holds {} keys", st.keys);

    // Node 3 takes clients with no certificate; nodes 1 and 2 refuse them.
    let anon = client(&addrs[2], Some(tls(ca.pem(), None))).await.unwrap();
    let got = anon.get("k1", ReadOptions::default()).await.unwrap();
    assert_eq!(got.value.as_deref(), Some(&b"v1"[..]));
    let refused = client(&addrs[0], Some(tls(ca.pem(), None))).await;
    match refused {
        Err(_) => {}
        Ok(c) => assert!(
            c.status(&addrs[0]).await.is_err(),
            "no client cert, yet served"
        ),
    }

    // A client trusting another CA refuses the nodes' certificates.
    let other = Authority::new("some other CA").unwrap();
    let wrong = client(&addrs[2], Some(tls(other.pem(), None))).await;
    match wrong {
        Err(_) => {}
        Ok(c) => {
            let e = c.get("k1", ReadOptions::default()).await;
            assert!(e.is_err(), "a client with the wrong CA was served: {e:?}");
        }
    }

    // A plaintext client gets no answer from a TLS port.
    let plain = client(&addrs[2], None).await;
    match plain {
        Err(_) => {}
        Ok(c) => assert!(c.get("k1", ReadOptions::default()).await.is_err()),
    }

    // An expired client certificate (from the right CA) is refused.
    let now = time::OffsetDateTime::now_utc();
    let expired = client_ca
        .issue_valid(
            "expired",
            &[],
            Usage::Client,
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    let e = raw_channel(&addrs[0], ca.pem(), &expired).await;
    let refused = match e {
        Err(_) => true,
        Ok(ch) => pb::node_internal_client::NodeInternalClient::new(ch)
            .node_status(pb::NodeStatusRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "an expired client certificate was accepted");

    // A node serving an expired certificate (from the right CA) is refused by clients.
    let stale = ca
        .issue_valid(
            "node-5",
            &node_hosts("node-5", &[]),
            Usage::Node,
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    write(&certs, "node-5", &stale);
    let n5 = start_node(
        5,
        "127.0.0.1:0",
        dir.path().join("n5"),
        &node_flags(&certs, 5, false),
    );
    let to_stale = client(&n5.addr, Some(tls(ca.pem(), None))).await;
    match to_stale {
        Err(_) => {}
        Ok(c) => {
            let e = c.status(&n5.addr).await;
            assert!(
                e.is_err(),
                "a node with an expired certificate was trusted: {e:?}"
            );
        }
    }
    drop(n5);

    // A valid client certificate may read the ring but not make node-only calls.
    let ch = raw_channel(&addrs[0], ca.pem(), &client_cert)
        .await
        .unwrap();
    let mut internal = pb::node_internal_client::NodeInternalClient::new(ch);
    internal
        .get_ring_state(pb::RingStateRequest {})
        .await
        .unwrap();
    let e = internal.replicate(replicate_req()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("cluster nodes only"), "{e:?}");
    // A node certificate may.
    let node_pem = Pem {
        cert: std::fs::read_to_string(certs.join("node-2.pem")).unwrap(),
        key: std::fs::read_to_string(certs.join("node-2.key")).unwrap(),
    };
    let ch = raw_channel(&addrs[0], ca.pem(), &node_pem).await.unwrap();
    pb::node_internal_client::NodeInternalClient::new(ch)
        .heartbeat(pb::Ping::default())
        .await
        .unwrap();
    // A certificate from another CA does not even complete the handshake.
    let rogue = other
        .issue("node-9", &node_hosts("node-9", &[]), Usage::Node)
        .unwrap();
    let refused = match raw_channel(&addrs[0], ca.pem(), &rogue).await {
        Err(_) => true,
        Ok(ch) => pb::node_internal_client::NodeInternalClient::new(ch)
            .replicate(replicate_req())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA was accepted");
    assert_eq!(
        c.get("forged", ReadOptions::default()).await.unwrap().value,
        None,
        "a refused replicate must not have stored anything"
    );

    // A node whose certificates come from another cluster's CA cannot join.
    let foreign = dir.path().join("foreign");
    let out = Command::new(env!("CARGO_BIN_EXE_kvstore-server"))
        .args(["certs", "--out"])
        .arg(&foreign)
        .args(["--nodes", "4"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "ca.pem",
        "ca.key",
        "client-ca.pem",
        "node-4.pem",
        "node-4.key",
        "client.pem",
        "client.key",
    ] {
        assert!(foreign.join(f).exists(), "certs did not write {f}");
    }
    let mut flags = node_flags(&foreign, 4, false);
    flags.extend([
        "--join".into(),
        addrs[0].clone(),
        "--node-id".into(),
        "4".into(),
    ]);
    flags.extend([
        "--data-dir".into(),
        dir.path().join("n4").display().to_string(),
    ]);
    // It gives up once no seed accepted it within the join deadline (30 s), saying why.
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kvstore-server"))
            .args(&flags)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a node with another CA's certificate joined"
    );
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    // The cluster never saw it.
    let st = c.status(&addrs[0]).await.unwrap();
    assert_eq!(st.members.len(), 3, "{:?}", st.members);
}
