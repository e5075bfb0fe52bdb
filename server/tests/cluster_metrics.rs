//! Three real nodes serving `/metrics`: after known traffic, a scrape of each is parsed by the
//! text format's rules and every family is checked to have moved as the traffic says: request
//! counts and latency histograms per operation/consistency/outcome, replica acks, hints stored,
//! dropped and replayed around a killed node, read repairs after it returns, storage gauges and
//! fsync latency, clock offsets to each peer, members by state, shed requests, and the process
//! CPU and RSS.

mod cluster_support;

use std::collections::HashMap;
use std::io::{Read, Write};

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{All, One, Quorum};
use kvstore_server::metrics::text::{Sample, parse};

/// A free port for a metrics listener that a restarted node binds again. Taken below the
/// kernel's ephemeral range: a port from `bind(:0)` is an ephemeral one, and once its node is
/// killed any outgoing connection of the (busy) machine may take it as its source port before
/// the restart binds it again ("Address already in use", seen under load).
fn free_addr() -> String {
    let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let span = u32::from(low.saturating_sub(10_000)).max(1);
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    for _ in 0..1000 {
        let n = NEXT.fetch_add(7919, std::sync::atomic::Ordering::Relaxed);
        let port = 10_000 + (seed.wrapping_add(n) % span) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap().to_string();
        }
    }
    panic!("no free port below the ephemeral range ({low})");
}

/// `GET /metrics` (blocking; tiny), returning the parsed samples.
fn scrape(addr: &str) -> Vec<Sample> {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics port");
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    parse(body).unwrap_or_else(|e| panic!("{addr}: exposition does not parse: {e}\n{body}"))
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
}

fn must(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(samples, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}"))
}

/// Checks the histogram `name` with `labels`: buckets cumulative and ending at +Inf = count.
fn histogram_count(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == format!("{name}_bucket") && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .collect();
    assert!(
        buckets.len() > 5,
        "{name}{labels:?}: {} buckets",
        buckets.len()
    );
    for w in buckets.windows(2) {
        assert!(
            w[1].value >= w[0].value,
            "{name}: buckets not cumulative: {w:?}"
        );
    }
    assert_eq!(buckets.last().unwrap().label("le"), Some("+Inf"));
    let count = must(samples, &format!("{name}_count"), labels);
    assert_eq!(buckets.last().unwrap().value, count, "{name}{labels:?}");
    assert!(must(samples, &format!("{name}_sum"), labels) >= 0.0);
    count
}

async fn wait_metric(addr: &str, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    wait_for(what, CONVERGE_DEADLINE, || {
        let s = scrape(addr);
        let ok = check(&s);
        async move { ok.then_some(s) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_moves_as_the_traffic_says() {
    let dir = tempfile::tempdir().unwrap();
    let metrics: Vec<String> = (0..3).map(|_| free_addr()).collect();
    // Node 1 keeps at most one hint per target (so dropping is seen); node 2 admits one
    // request at a time (so shedding is seen).
    let per_node: [&[&str]; 3] = [
        &["--max-hints-per-target", "1"],
        &["--max-inflight-requests", "1"],
        &[],
    ];
    let mut nodes: Vec<Node> = Vec::new();
    for (i, extra) in per_node.iter().enumerate() {
        let mut flags: Vec<String> = vec!["--metrics-listen".into(), metrics[i].clone()];
        flags.extend(extra.iter().map(|s| s.to_string()));
        if let Some(seed) = nodes.first() {
            flags.extend(["--join".into(), seed.addr.clone()]);
        }
        nodes.push(start_node(
            i as u32 + 1,
            "127.0.0.1:0",
            dir.path().join(format!("n{}", i + 1)),
            &flags,
        ));
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;

    let before = scrape(&metrics[0]);
    assert_eq!(must(&before, "kvstore_members", &[("state", "up")]), 3.0);
    assert!(must(&before, "kvstore_ring_version", &[]) > 0.0);
    assert_eq!(must(&before, "kvstore_node_info", &[("node_id", "1")]), 1.0);
    let pid = before
        .iter()
        .find(|s| s.name == "kvstore_node_info")
        .and_then(|s| s.label("pid"))
        .unwrap();
    assert_eq!(pid, nodes[0].pid().unwrap().to_string());
    assert_eq!(
        value(&before, "kvstore_client_requests_total", &[("op", "put")]),
        None,
        "no put yet"
    );

    // Known traffic through node 1: 20 QUORUM puts, 10 ONE gets, 3 deletes, 1 invalid get.
    let mut c1 = kv(&addrs[0]).await;
    for i in 0..20 {
        put(&mut c1, &format!("k{i}"), "some value", Quorum)
            .await
            .unwrap();
    }
    for i in 0..10 {
        get(&mut c1, &format!("k{i}"), One).await.unwrap();
    }
    for i in 0..3 {
        c1.delete(pb::DeleteRequest {
            key: format!("k{i}"),
            consistency: Quorum as i32,
        })
        .await
        .unwrap();
    }
    assert!(get(&mut c1, "", One).await.is_err());

    // Every peer acked every write (2 peers x 23 writes) once the stragglers landed.
    let s = wait_metric(&metrics[0], "node 1 to count 46 replica acks", |s| {
        value(s, "kvstore_replica_acks_total", &[]).unwrap_or(0.0) >= 46.0
    })
    .await;
    let req = |op, lvl, out| {
        must(
            &s,
            "kvstore_client_requests_total",
            &[("op", op), ("consistency", lvl), ("outcome", out)],
        )
    };
    assert_eq!(req("put", "quorum", "ok"), 20.0);
    assert_eq!(req("get", "one", "ok"), 10.0);
    assert_eq!(req("delete", "quorum", "ok"), 3.0);
    assert_eq!(req("get", "one", "invalid_argument"), 1.0);
    let lat = |op, lvl| {
        histogram_count(
            &s,
            "kvstore_client_request_duration_seconds",
            &[("op", op), ("consistency", lvl)],
        )
    };
    assert_eq!(lat("put", "quorum"), 20.0);
    assert_eq!(lat("get", "one"), 11.0);
    assert_eq!(lat("delete", "quorum"), 3.0);
    let acks = must(&s, "kvstore_replica_acks_total", &[]);
    assert_eq!(
        histogram_count(&s, "kvstore_replica_ack_duration_seconds", &[]),
        acks
    );
    assert_eq!(must(&s, "kvstore_storage_keys", &[]), 20.0);
    assert!(must(&s, "kvstore_storage_live_bytes", &[]) > 0.0);
    assert!(must(&s, "kvstore_storage_segments", &[]) >= 1.0);
    // fsync always (the default): every write synced.
    assert!(histogram_count(&s, "kvstore_storage_fsync_duration_seconds", &[]) >= 1.0);
    assert_eq!(
        must(&s, "kvstore_storage_recovery_records_skipped_total", &[]),
        0.0
    );
    assert!(must(&s, "kvstore_storage_compactions_total", &[]) >= 0.0);
    assert!(must(&s, "kvstore_admission_inflight_requests", &[]) >= 0.0);
    assert_eq!(must(&s, "kvstore_admission_inflight_bytes", &[]), 0.0);
    assert_eq!(must(&s, "kvstore_clock_skew_rejections_total", &[]), 0.0);
    assert_eq!(must(&s, "kvstore_clock_writes_refused_total", &[]), 0.0);
    assert!(value(&s, "kvstore_speculative_reads_total", &[]).is_some());
    assert!(must(&s, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(must(&s, "process_resident_memory_bytes", &[]) > 1024.0 * 1024.0);
    // The probes measured both peers' clocks.
    let s = wait_metric(&metrics[0], "offsets to both peers", |s| {
        ["2", "3"]
            .iter()
            .all(|p| value(s, "kvstore_clock_peer_offset_seconds", &[("peer", p)]).is_some())
    })
    .await;
    for p in ["2", "3"] {
        let off = must(&s, "kvstore_clock_peer_offset_seconds", &[("peer", p)]);
        assert!(off.abs() < 0.5, "peer {p} offset {off} s on one machine");
    }
    assert_eq!(must(&s, "kvstore_clock_healthy", &[]), 1.0);

    // Shedding: node 2 admits one request at a time; bursts of concurrent gets overflow it.
    let c2 = kv(&addrs[1]).await;
    wait_for("node 2 to shed a request", CONVERGE_DEADLINE, || {
        let c2 = c2.clone();
        async move {
            let burst = (0..32).map(|i| {
                let mut c = c2.clone();
                async move { get(&mut c, &format!("k{i}"), Quorum).await }
            });
            let results = futures::future::join_all(burst).await;
            let shed = results
                .iter()
                .filter(|r| matches!(r, Err(s) if s.code() == tonic::Code::ResourceExhausted))
                .count();
            (shed > 0).then_some(())
        }
    })
    .await;
    let s2 = scrape(&metrics[1]);
    let shed = must(&s2, "kvstore_admission_shed_total", &[]);
    assert!(shed >= 1.0, "{shed}");
    assert_eq!(
        must(
            &s2,
            "kvstore_client_requests_total",
            &[
                ("op", "get"),
                // Shed when its headers arrived: its level was never read.
                ("consistency", "unread"),
                ("outcome", "resource_exhausted")
            ]
        ),
        shed
    );

    // Node 3 dies: node 1 sees it down, its writes to it fail and become hints (one kept,
    // the rest dropped: --max-hints-per-target 1); node 2 keeps all of its hints.
    nodes[2].kill();
    wait_metric(&metrics[0], "node 1 to see node 3 down", |s| {
        value(s, "kvstore_members", &[("state", "down")]) == Some(1.0)
    })
    .await;
    for i in 0..5 {
        put(&mut c1, &format!("down1-{i}"), "while 3 is down", Quorum)
            .await
            .unwrap();
    }
    let mut c2 = kv(&addrs[1]).await;
    for i in 0..5 {
        put(&mut c2, &format!("down2-{i}"), "while 3 is down", Quorum)
            .await
            .unwrap();
    }
    let s1 = wait_metric(&metrics[0], "node 1 to store and drop hints", |s| {
        value(s, "kvstore_hints_stored_total", &[]) >= Some(1.0)
            && value(s, "kvstore_hints_dropped_total", &[]) >= Some(4.0)
    })
    .await;
    assert_eq!(must(&s1, "kvstore_hints_pending", &[]), 1.0);
    assert!(must(&s1, "kvstore_hints_bytes", &[]) > 0.0);
    let s2 = wait_metric(&metrics[1], "node 2 to store 5 hints", |s| {
        value(s, "kvstore_hints_pending", &[]) == Some(5.0)
    })
    .await;
    assert!(must(&s2, "kvstore_hints_stored_total", &[]) >= 5.0);
    assert_eq!(must(&s2, "kvstore_hints_dropped_total", &[]), 0.0);
    assert_eq!(must(&s2, "kvstore_hints_replayed_total", &[]), 0.0);

    // Node 3 returns: the hints replay, and reading node 1's dropped keys at ALL repairs it.
    nodes[2].restart().unwrap();
    wait_states(&addrs, &[3], pb::MemberState::Up).await;
    let s2 = wait_metric(&metrics[1], "node 2 to replay its 5 hints", |s| {
        value(s, "kvstore_hints_replayed_total", &[]) >= Some(5.0)
            && value(s, "kvstore_hints_pending", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(must(&s2, "kvstore_members", &[("state", "up")]), 3.0);
    let repairs_before = must(&scrape(&metrics[0]), "kvstore_read_repairs_total", &[]);
    for i in 0..5 {
        let got = get(&mut c1, &format!("down1-{i}"), All).await.unwrap();
        assert!(got.exists);
    }
    let s1 = wait_metric(&metrics[0], "node 1 to repair node 3", |s| {
        value(s, "kvstore_read_repairs_total", &[]) >= Some(repairs_before + 3.0)
    })
    .await;
    assert!(must(&s1, "kvstore_replica_acks_total", &[]) > acks);
    assert_eq!(
        must(
            &s1,
            "kvstore_client_requests_total",
            &[("op", "put"), ("consistency", "quorum"), ("outcome", "ok")]
        ),
        25.0
    );

    // The exposition is well-formed for a Prometheus server: every sample belongs to a
    // declared family, and no series is repeated.
    let text = {
        let mut s = std::net::TcpStream::connect(&metrics[0]).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b.split_once("\r\n\r\n").unwrap().1.to_string()
    };
    let mut types: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.into(), t.into()).is_none(),
                "{name} twice"
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    for s in parse(&text).unwrap() {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| {
                s.name
                    .strip_suffix(suf)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&s.name);
        assert!(types.contains_key(family), "{} has no # TYPE", s.name);
        assert!(
            seen.insert(format!("{}{:?}", s.name, s.labels)),
            "{} twice",
            s.name
        );
    }
    // Other paths are 404.
    let mut s = std::net::TcpStream::connect(&metrics[0]).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut b = String::new();
    s.read_to_string(&mut b).unwrap();
    assert!(b.starts_with("HTTP/1.1 404"), "{b}");
}
