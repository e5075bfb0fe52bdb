//! The client against real server processes: discovery, routing, fallback without a ring,
//! failover, reconnection and the classification of outcomes.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kvstore_client::{
    Client, ClientConfig, ClientError, ConsistencyLevel, ErrorKind, ReadOptions, WriteOptions,
};
use support::{CONVERGE_DEADLINE, start_cluster, wait_for, wait_members_up};

/// Not a test: the entry point of the server processes this binary starts (see `support`).
#[test]
fn server_process_entry() {
    support::server_entry();
}

const QUORUM_W: WriteOptions = WriteOptions {
    consistency: Some(ConsistencyLevel::Quorum),
    ttl_ms: None,
};
const QUORUM_R: ReadOptions = ReadOptions {
    consistency: Some(ConsistencyLevel::Quorum),
};

fn addrs(nodes: &[support::Node]) -> Vec<String> {
    nodes.iter().map(|n| n.addr.clone()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seed_discovers_every_node_and_routes_to_the_primary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(dir.path(), 3, &[]);
    wait_members_up(&nodes[0].addr, None, &[1, 2, 3]).await;

    let client = Client::connect(ClientConfig::with_seeds([nodes[0].addr.clone()]))
        .await
        .expect("connect");
    assert!(client.ring_version().is_some(), "the ring was fetched");
    assert_eq!(sorted(client.known_servers()), sorted(addrs(&nodes)));

    let mut coordinators = std::collections::BTreeSet::new();
    for i in 0..60 {
        let key = format!("disc-{i}");
        let value = Bytes::from(format!("value-{i}"));
        let put = client
            .put(&key, value.clone(), QUORUM_W)
            .await
            .expect("put");
        let replicas = client.replicas_of(&key);
        assert_eq!(replicas.len(), 3, "N=3 replicas for {key}");
        assert_eq!(
            put.coordinator, replicas[0],
            "{key}: the primary coordinates"
        );
        let got = client.get(&key, QUORUM_R).await.expect("get");
        assert_eq!(got.value, Some(value));
        assert_eq!(got.version, Some(put.version));
        assert_eq!(got.coordinator, replicas[0]);
        coordinators.insert(got.coordinator);
    }
    assert_eq!(coordinators.len(), 3, "keys spread over every node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ring_every_server_is_tried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "s3cret";
    let nodes = start_cluster(dir.path(), 3, &["--cluster-secret", secret]);
    wait_members_up(&nodes[0].addr, Some(secret), &[1, 2, 3]).await;

    // No secret: the ring (an internal call) is refused, the public API is not. A dead seed
    // comes first: the client must get past it.
    let seeds = vec![
        support::dead_address(),
        nodes[1].addr.clone(),
        nodes[2].addr.clone(),
    ];
    let client = Client::connect(ClientConfig::with_seeds(seeds))
        .await
        .expect("connect succeeds without a ring");
    assert_eq!(client.ring_version(), None, "no ring without the secret");
    assert!(client.replicas_of("k").is_empty());
    assert!(matches!(
        client.ring().await,
        Err(ClientError::Unauthenticated(_))
    ));

    let mut coordinators = std::collections::BTreeSet::new();
    for i in 0..30 {
        let key = format!("noring-{i}");
        let value = Bytes::from(format!("v{i}"));
        let put = client
            .put(&key, value.clone(), QUORUM_W)
            .await
            .expect("put");
        coordinators.insert(put.coordinator);
        let got = client.get(&key, QUORUM_R).await.expect("get");
        assert_eq!(got.value, Some(value), "{key}");
    }
    assert!(
        coordinators.len() >= 2,
        "requests spread over the live seeds: {coordinators:?}"
    );

    // With the secret the same seeds give the ring.
    let with_secret = Client::connect(ClientConfig {
        cluster_secret: Some(secret.into()),
        ..ClientConfig::with_seeds([nodes[2].addr.clone()])
    })
    .await
    .expect("connect");
    assert!(with_secret.ring_version().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_when_the_primary_dies_and_back_when_it_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    wait_members_up(&nodes[0].addr, None, &[1, 2, 3]).await;
    let client = Client::connect(ClientConfig {
        request_timeout: Duration::from_secs(10),
        ring_refresh: Duration::from_millis(300),
        ..ClientConfig::with_seeds(addrs(&nodes))
    })
    .await
    .expect("connect");

    // Keys whose primary is node 3.
    let victim = nodes[2].addr.clone();
    let keys: Vec<String> = (0..400)
        .map(|i| format!("fo-{i}"))
        .filter(|k| client.replicas_of(k)[0] == victim)
        .take(20)
        .collect();
    assert!(keys.len() >= 10, "enough keys on node 3: {}", keys.len());
    for k in &keys {
        client
            .put(k, Bytes::from(k.clone()), QUORUM_W)
            .await
            .expect("put");
    }

    nodes[2].kill();
    // Every read and write of those keys keeps working at QUORUM through the other replicas.
    for k in &keys {
        let got = client.get(k, QUORUM_R).await.expect("get after kill");
        assert_eq!(got.value.as_deref(), Some(k.as_bytes()));
        assert_ne!(got.coordinator, victim);
        let put = client
            .put(k, Bytes::from(format!("{k}-2")), QUORUM_W)
            .await
            .expect("put after kill");
        assert_ne!(put.coordinator, victim);
    }

    // Restart: the client goes back to the primary once the cluster sees it up.
    nodes[2].restart().expect("restart");
    wait_members_up(&nodes[0].addr, None, &[1, 2, 3]).await;
    let key = keys[0].clone();
    wait_for(
        "the restarted primary to coordinate again",
        CONVERGE_DEADLINE,
        || {
            let client = client.clone();
            let key = key.clone();
            let victim = victim.clone();
            async move {
                let got = client.get(&key, QUORUM_R).await.ok()?;
                assert_eq!(got.value.as_deref(), Some(format!("{key}-2").as_bytes()));
                (got.coordinator == victim).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_lost_in_flight_is_an_unknown_outcome_and_not_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(dir.path(), 3, &[]);
    wait_members_up(&nodes[0].addr, None, &[1, 2, 3]).await;
    let attempt_timeout = Duration::from_millis(800);
    let client = Client::connect(ClientConfig {
        attempt_timeout,
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::with_seeds(addrs(&nodes))
    })
    .await
    .expect("connect");
    let paused = nodes[0].addr.clone();
    let key = (0..400)
        .map(|i| format!("uo-{i}"))
        .find(|k| client.replicas_of(k)[0] == paused)
        .expect("a key whose primary is node 1");
    client
        .put(&key, Bytes::from_static(b"before"), QUORUM_W)
        .await
        .expect("put");

    // The primary stops answering (its socket still accepts): the write is sent and lost.
    nodes[0].pause().expect("pause");
    let t0 = Instant::now();
    let err = client
        .put(&key, Bytes::from_static(b"maybe"), QUORUM_W)
        .await
        .expect_err("no answer from a paused coordinator");
    let took = t0.elapsed();
    assert!(err.is_unknown_outcome(), "{err:?}");
    assert!(
        err.to_string().contains(&paused),
        "the one attempt went to the paused primary: {err}"
    );
    assert_eq!(err.kind(), ErrorKind::UnknownOutcome);
    assert!(
        took < attempt_timeout * 2,
        "returned after one attempt, not retried: {took:?}"
    );

    // A read of the same key is retried elsewhere and succeeds. It still sees "before": had
    // the client silently retried the put on another coordinator, W=2 of the two live replicas
    // would hold "maybe" by now.
    let got = client
        .get(&key, QUORUM_R)
        .await
        .expect("read goes elsewhere");
    assert_ne!(got.coordinator, paused);
    assert_eq!(got.value.as_deref(), Some(&b"before"[..]));

    // Resumed, the node may or may not still apply the request it had received (its deadline
    // may have passed meanwhile): that is exactly what "unknown" means. Either way the key
    // holds one of the two values, and the cluster serves it again.
    nodes[0].resume().expect("resume");
    let settled = wait_for("the key to be readable again", CONVERGE_DEADLINE, || {
        let client = client.clone();
        let key = key.clone();
        async move { client.get(&key, QUORUM_R).await.ok() }
    })
    .await;
    let value = settled.value.expect("a value");
    assert!(
        value == b"before"[..] || value == b"maybe"[..],
        "only a written value can be read: {value:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_replicas_is_a_definite_failure_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = start_cluster(dir.path(), 3, &[]);
    wait_members_up(&nodes[0].addr, None, &[1, 2, 3]).await;
    let client = Client::connect(ClientConfig {
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::with_seeds(addrs(&nodes))
    })
    .await
    .expect("connect");
    nodes[2].kill();
    // Wait until both survivors consider node 3 down: then ALL is refused before any write,
    // whichever of them coordinates.
    let survivors: Vec<String> = addrs(&nodes[..2]);
    wait_for("node 3 down on both survivors", CONVERGE_DEADLINE, || {
        let client = client.clone();
        let survivors = survivors.clone();
        async move {
            for addr in &survivors {
                let st = client.status(addr).await.ok()?;
                let down = st
                    .members
                    .iter()
                    .any(|m| m.id == 3 && m.state == kvstore_client::pb::MemberState::Down as i32);
                if !down {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;

    let all = WriteOptions {
        consistency: Some(ConsistencyLevel::All),
        ttl_ms: None,
    };
    // Until every coordinator's failure detector has caught up, a coordinator may still send
    // to the dead replica and answer "unknown" (some replicas did write): that is truthful, so
    // such a key is set aside and the next one tried. A definite refusal must come, and then
    // nothing may be written anywhere.
    let until = Instant::now() + CONVERGE_DEADLINE;
    let mut attempt = 0;
    let key = loop {
        let key = format!("definite-{attempt}");
        attempt += 1;
        let err = client
            .put(&key, Bytes::from_static(b"x"), all)
            .await
            .expect_err("ALL with a replica down");
        match err.kind() {
            ErrorKind::Unavailable => {
                assert!(!err.is_unknown_outcome());
                break key;
            }
            ErrorKind::UnknownOutcome => {
                assert!(Instant::now() < until, "never a definite refusal: {err:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            ErrorKind::Other => panic!("unexpected error: {err:?}"),
        }
    };
    for n in &nodes[..2] {
        let local = client.local_read(&n.addr, &key).await.expect("local");
        assert!(
            !local.found,
            "nothing written on {} after a definite failure",
            n.addr
        );
    }
    // QUORUM still works.
    client
        .put(&key, Bytes::from_static(b"y"), QUORUM_W)
        .await
        .expect("quorum put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unreachable_clusters_are_definite_errors() {
    // Nothing listening: connect fails at once, naming the address.
    let dead = support::dead_address();
    let t0 = Instant::now();
    match Client::connect(ClientConfig::with_seeds([dead.clone()])).await {
        Err(ClientError::NoServers(msg)) => assert!(msg.contains(&dead), "{msg}"),
        other => panic!("expected NoServers, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        Client::connect(ClientConfig::default()).await,
        Err(ClientError::InvalidArgument(_))
    ));

    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = start_cluster(dir.path(), 1, &["--replication-factor", "1"]);
    let client = Client::connect(ClientConfig::with_seeds([nodes[0].addr.clone()]))
        .await
        .expect("connect");
    let cases: Vec<(&str, Bytes, WriteOptions, &str)> = vec![
        ("", Bytes::from_static(b"v"), WriteOptions::default(), "key"),
        (
            "k",
            Bytes::from_static(b"v"),
            WriteOptions {
                ttl_ms: Some(0),
                ..WriteOptions::default()
            },
            "ttl",
        ),
    ];
    for (key, value, opts, field) in cases {
        match client.put(key, value, opts).await {
            Err(ClientError::InvalidArgument(msg)) => {
                assert!(msg.contains(field), "{field}: {msg}")
            }
            other => panic!("{field}: expected InvalidArgument, got {other:?}"),
        }
    }
    let long_key = "k".repeat(64 * 1024 + 1);
    assert!(matches!(
        client.get(&long_key, ReadOptions::default()).await,
        Err(ClientError::InvalidArgument(_))
    ));
    // The node is still up and nothing was written.
    let got = client.get("k", ReadOptions::default()).await.expect("get");
    assert_eq!(got.value, None);
    assert_eq!(got.version, None);
}
