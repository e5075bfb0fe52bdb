//! Cluster figures for the closing note (issue 3, section 7), beside the gRPC ceiling.
//!
//! Starts real `kvstore-server` processes on 127.0.0.1 (one node with N=1; three nodes with
//! N=3 at QUORUM) and, in this process, a bare tonic `Echo` server, then measures with the real
//! `kvstore-client`: ops/s and p50/p99 latency (HdrHistogram, microsecond resolution) of 1 KB
//! gets and puts at concurrency 1 and 64, an 80/20 get/put mix on three nodes, and the
//! replication latency (a unary `Replicate` of 1 KB to one replica, as a coordinator sends it).
//! Every figure is printed beside the echo ceiling measured in the same run at the same
//! concurrency, with the ratio, and checked against the targets (N=1 >= 0.9 of echo, N=3
//! QUORUM 80/20 >= 0.5 of echo).
//!
//! TLS cost: the N=3 QUORUM 80/20 mix at c=1 and c=64 on a plaintext cluster and on a cluster
//! with mutual TLS everywhere (peers and clients, `[cluster] tls = true` in loadgen terms),
//! both running in the same run, each as a ratio to the echo and TLS over plaintext.
//! `KV_BENCH_CASES` picks groups (comma-separated): `n1` (one node), `n3` (three nodes), `tls`
//! (the TLS comparison), `ae` (puts with and without the anti-entropy trees); all by default. `KV_BENCH_ONLY=TEXT` keeps, within those, the cases
//! whose name contains TEXT and whose concurrency is `KV_BENCH_CONC` when that is set (to repeat
//! one figure many times). `KV_BENCH_SERVER=PATH` runs another `kvstore-server` binary (an older build, to tell a
//! server-side change from a client-side one with the same harness).
//!
//! Bounded: each case runs `KV_BENCH_SECS` seconds (default 3), cut into slices that
//! alternate with the echo ceiling so both see the same machine load; every
//! process started is killed (by its pid, by the harness's `NodeProcess`) when the bench ends or
//! panics.
//! Run with `cargo bench -p kvstore-server --bench cluster`.

use kvstore_harness::process::{Launcher, NodeProcess, server_binary};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use kvstore_client::{
    Client, ClientConfig, ClientTls, ConsistencyLevel, ReadOptions, WriteOptions, pb,
};

/// Size of every value and echo payload.
const VALUE_BYTES: usize = 1024;
/// Keys the workload spreads over (preloaded before gets are measured).
const KEYS: usize = 1000;
/// The cluster secret the bench cluster runs with (so internal calls are authenticated, as in
/// production).
const SECRET: &str = "bench-secret";

/// The figures of one measured case.
#[derive(Debug, Clone, Copy)]
struct Figures {
    ops: u64,
    ops_per_sec: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// Prints one case as it completes and keeps it for the table.
fn record(
    rows: &mut Vec<Row>,
    name: &str,
    concurrency: usize,
    (figures, echo): (Figures, Figures),
    server_cpu_us_per_op: Option<f64>,
) {
    println!(
        "{name} c={concurrency}: {:.0} ops/s p50 {} ms (echo {:.0} ops/s)",
        figures.ops_per_sec,
        ms(figures.p50_us),
        echo.ops_per_sec
    );
    rows.push(Row {
        name: name.into(),
        concurrency,
        figures,
        echo,
        server_cpu_us_per_op,
    });
}

fn case_duration() -> Duration {
    let secs = std::env::var("KV_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0 && *s <= 60.0)
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

/// Slices each case is cut into, alternating with the echo ceiling, so both see the same
/// machine load (the machine is shared: a load change between two long runs would skew the
/// ratio).
const SLICES: u32 = 6;

/// One operation's future: says whether it succeeded. Boxed for every workload alike (echo
/// included), so the harness costs the same on both sides of a ratio.
type OpFuture = std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>;
/// A workload: `op(worker, i)` starts operation `i` of `worker`.
type Op = Arc<dyn Fn(usize, u64) -> OpFuture + Send + Sync>;

/// Raw measurements, mergeable across slices.
struct Sample {
    hist: Histogram<u64>,
    ops: u64,
    errors: u64,
    secs: f64,
}

impl Sample {
    fn new() -> Self {
        Self {
            hist: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds"),
            ops: 0,
            errors: 0,
            secs: 0.0,
        }
    }

    fn merge(&mut self, other: Sample) {
        self.hist.add(other.hist).expect("same bounds");
        self.ops += other.ops;
        self.errors += other.errors;
        self.secs += other.secs;
    }

    fn figures(&self) -> Figures {
        Figures {
            ops: self.ops,
            ops_per_sec: self.ops as f64 / self.secs.max(1e-9),
            p50_us: self.hist.value_at_quantile(0.50),
            p99_us: self.hist.value_at_quantile(0.99),
            errors: self.errors,
        }
    }
}

/// Runs `op` from `concurrency` tasks for `warmup` (not recorded) then `window` (recorded);
/// `op(worker, i)` does one operation and says whether it succeeded.
async fn measure(concurrency: usize, warmup: Duration, window: Duration, op: Op) -> Sample {
    let measure_from = Instant::now() + warmup;
    let end = measure_from + window;
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let op = Arc::clone(&op);
        tasks.push(tokio::spawn(async move {
            let mut sample = Sample::new();
            let mut i = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = op(worker, i).await;
                i += 1;
                if t0 >= measure_from {
                    let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                    sample.hist.saturating_record(us.max(1));
                    sample.ops += 1;
                    if !ok {
                        sample.errors += 1;
                    }
                }
            }
            sample
        }));
    }
    let mut total = Sample::new();
    for t in tasks {
        total.merge(t.await.expect("worker"));
    }
    total.secs = window.as_secs_f64();
    total
}

/// Measures a case and the echo ceiling at the same concurrency, alternating in
/// [`SLICES`] slices over the case duration each; returns (case, echo).
async fn paired(concurrency: usize, echo: &Op, case: &Op) -> (Figures, Figures) {
    let slice = case_duration() / SLICES;
    let (mut e, mut k) = (Sample::new(), Sample::new());
    for i in 0..SLICES {
        let warmup = if i == 0 { slice / 2 } else { slice / 20 };
        e.merge(measure(concurrency, warmup, slice, Arc::clone(echo)).await);
        k.merge(measure(concurrency, warmup, slice, Arc::clone(case)).await);
    }
    (k.figures(), e.figures())
}

// ------------------------------------------------------------------------------------------
// The echo ceiling
// ------------------------------------------------------------------------------------------

/// The echo ceiling on its own threads (see [`kvstore_harness::echo::start_in_thread`]).
fn start_echo() -> SocketAddr {
    kvstore_harness::echo::start_in_thread()
}

/// A channel to `addr` with Nagle off, as the client library opens them.
async fn connect(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// One 1 KB echo round trip per call, over one shared channel.
async fn echo_op(addr: SocketAddr) -> Op {
    let channel = connect(&addr.to_string()).await;
    let client = pb::echo_client::EchoClient::new(channel);
    let payload = Bytes::from(vec![b'e'; VALUE_BYTES]);
    Arc::new(move |_, _| {
        let mut client = client.clone();
        let payload = payload.clone();
        Box::pin(async move {
            client
                .echo(pb::EchoMessage { payload })
                .await
                .is_ok_and(|r| r.into_inner().payload.len() == VALUE_BYTES)
        }) as OpFuture
    })
}

// ------------------------------------------------------------------------------------------
// kvstore-server processes
// ------------------------------------------------------------------------------------------

/// User + system CPU time of the processes `pids` so far, in µs (from /proc; `None` where
/// /proc is unavailable).
fn cpu_us(pids: &[u32]) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the full line, 12 and 13 after the name.
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        total += (utime + stime) / ticks_per_sec * 1e6;
    }
    Some(total)
}

/// Runs [`paired`] and also reports the servers' CPU µs per operation of the case.
async fn paired_with_cpu(
    pids: &[u32],
    concurrency: usize,
    echo: &Op,
    case: &Op,
) -> ((Figures, Figures), Option<f64>) {
    let before = cpu_us(pids);
    let (f, e) = paired(concurrency, echo, case).await;
    let after = cpu_us(pids);
    let per_op = match (before, after) {
        (Some(b), Some(a)) if f.ops > 0 => Some((a - b) / f.ops as f64),
        _ => None,
    };
    ((f, e), per_op)
}

/// The started server processes; killed (by pid) and reaped on drop, even on a panic.
struct Cluster {
    /// Killed when dropped.
    children: Vec<NodeProcess>,
    addrs: Vec<String>,
    /// What a client needs for a TLS cluster.
    tls: Option<ClientTls>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The servers' process ids.
    fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(NodeProcess::pid).collect()
    }
}

/// Starts one node on a free port (`--listen 127.0.0.1:0`) through the test harness's
/// launcher and waits for it to be ready.
fn spawn_node(id: u32, dir: &Path, n: usize, join: Option<&str>, extra: &[String]) -> NodeProcess {
    let binary = std::env::var_os("KV_BENCH_SERVER").map_or_else(
        || env!("CARGO_BIN_EXE_kvstore-server").into(),
        std::path::PathBuf::from,
    );
    let mut flags: Vec<String> = [
        "--replication-factor",
        &n.to_string(),
        "--fsync",
        "never",
        "--cluster-secret",
        SECRET,
    ]
    .iter()
    .map(|f| f.to_string())
    .collect();
    if let Some(seed) = join {
        flags.extend(["--join".to_string(), seed.to_string()]);
    }
    flags.extend(extra.iter().cloned());
    Launcher::new(server_binary(binary))
        .with_env("RUST_LOG", "warn")
        .with_start_timeout(Duration::from_secs(60))
        .start(id, "127.0.0.1:0", dir.join(format!("node{id}")), &flags)
        .unwrap_or_else(|e| panic!("kvstore-server {id}: {e}"))
}

/// Starts `nodes` servers with replication factor `n` (node 1 first, the others joining it)
/// and waits until a client sees every one of them up in the ring.
async fn start_cluster(nodes: u32, n: usize) -> Cluster {
    start_cluster_tls(nodes, n, false).await
}

/// [`start_cluster`], with mutual TLS everywhere when `tls` (certificates made as
/// `kvstore-server certs` makes them; client certificates required).
async fn start_cluster_tls(nodes: u32, n: usize, tls: bool) -> Cluster {
    start_cluster_with(nodes, n, tls, &[]).await
}

/// [`start_cluster_tls`] with `flags` added to every node's command line.
async fn start_cluster_with(nodes: u32, n: usize, tls: bool, flags: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let certs = path.join("certs");
    let client_tls = tls.then(|| {
        kvstore_server::tls::certs::write_cluster(&certs, nodes, &[]).expect("certificates");
        ClientTls::from_files(
            &certs.join("ca.pem"),
            Some((&certs.join("client.pem"), &certs.join("client.key"))),
        )
        .expect("client certificates")
    });
    let mut cluster = Cluster {
        children: Vec::new(),
        addrs: Vec::new(),
        tls: client_tls,
        _dir: dir,
    };
    for id in 1..=nodes {
        let seed = cluster.addrs.first().cloned();
        let c = |f: String| certs.join(f).display().to_string();
        let extra: Vec<String> = if tls {
            vec![
                "--cert".into(),
                c(format!("node-{id}.pem")),
                "--key".into(),
                c(format!("node-{id}.key")),
                "--peer-cert".into(),
                c(format!("node-{id}.pem")),
                "--peer-key".into(),
                c(format!("node-{id}.key")),
                "--peer-ca".into(),
                c("ca.pem".into()),
                "--ca".into(),
                c("client-ca.pem".into()),
                "--client-cert-auth".into(),
            ]
        } else {
            Vec::new()
        };
        let mut extra = extra;
        extra.extend(flags.iter().map(|f| f.to_string()));
        let node = spawn_node(id, &path, n, seed.as_deref(), &extra);
        cluster.addrs.push(node.addr.clone());
        cluster.children.push(node);
    }
    wait_up(&cluster.addrs, nodes as usize, cluster.tls.as_ref()).await;
    cluster
}

fn client_config(seeds: &[String]) -> ClientConfig {
    client_config_tls(seeds, None)
}

fn client_config_tls(seeds: &[String], tls: Option<&ClientTls>) -> ClientConfig {
    ClientConfig {
        cluster_secret: Some(SECRET.into()),
        tls: tls.cloned(),
        ..ClientConfig::with_seeds(seeds.iter().cloned())
    }
}

/// Waits (up to 60 s: other builds may be running) until the ring shows `want` members up.
async fn wait_up(seeds: &[String], want: usize, tls: Option<&ClientTls>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        match Client::connect(client_config_tls(seeds, tls)).await {
            Ok(client) => match client.ring().await {
                Ok(ring) => {
                    let up = ring
                        .members
                        .iter()
                        .filter(|m| m.state == pb::MemberState::Up as i32)
                        .count();
                    if up >= want {
                        return;
                    }
                    last = format!("{up} of {want} members up");
                }
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cluster not up within 60 s: {last}");
}

fn key(i: u64) -> String {
    format!("bench-{:06}", i % KEYS as u64)
}

async fn preload(client: &Client, consistency: ConsistencyLevel) {
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let opts = WriteOptions {
        consistency: Some(consistency),
        ttl_ms: None,
    };
    for i in 0..KEYS as u64 {
        client
            .put(&key(i), value.clone(), opts)
            .await
            .expect("preload put");
    }
}

/// Which operations a case issues.
#[derive(Clone, Copy)]
enum Mix {
    Get,
    Put,
    /// Percentage of gets; the rest are puts.
    ReadHeavy(u64),
}

/// 1 KB gets and/or puts over the key space at `consistency`.
fn kv_op(client: &Client, consistency: ConsistencyLevel, mix: Mix) -> Op {
    let client = client.clone();
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    Arc::new(move |worker, i| {
        let client = client.clone();
        let value = value.clone();
        // Spread workers over the key space; the sequence makes the mix deterministic.
        let n = i.wrapping_mul(7919).wrapping_add(worker as u64 * 104_729);
        let is_get = match mix {
            Mix::Get => true,
            Mix::Put => false,
            Mix::ReadHeavy(pct) => n % 100 < pct,
        };
        Box::pin(async move {
            let k = key(n);
            if is_get {
                let opts = ReadOptions {
                    consistency: Some(consistency),
                };
                client.get(&k, opts).await.is_ok()
            } else {
                let opts = WriteOptions {
                    consistency: Some(consistency),
                    ttl_ms: None,
                };
                client.put(&k, value, opts).await.is_ok()
            }
        }) as OpFuture
    })
}

/// 1 KB gets through the bare generated stub to one node (no routing, retries or deadline):
/// the difference to the same case through `Client` is the client library's own cost.
async fn raw_get_op(addr: &str) -> Op {
    let channel = connect(addr).await;
    let stub = pb::kv_store_client::KvStoreClient::new(channel);
    Arc::new(move |worker, i| {
        let mut stub = stub.clone();
        let n = i.wrapping_mul(7919).wrapping_add(worker as u64 * 104_729);
        Box::pin(async move {
            stub.get(pb::GetRequest {
                key: key(n),
                consistency: pb::Consistency::One as i32,
            })
            .await
            .is_ok()
        }) as OpFuture
    })
}

/// 1 KB puts through the bare generated stub to one node at QUORUM, reading the previous value
/// first (the seed's PutResponse, the default) or not (`skip_old_value`, what `Client` sends):
/// the difference is the cost of returning the old value.
async fn raw_put_op(addr: &str, skip_old_value: bool) -> Op {
    let channel = connect(addr).await;
    let stub = pb::kv_store_client::KvStoreClient::new(channel);
    let value = Bytes::from(vec![b'p'; VALUE_BYTES]);
    Arc::new(move |worker, i| {
        let mut stub = stub.clone();
        let value = value.clone();
        let n = i.wrapping_mul(7919).wrapping_add(worker as u64 * 104_729);
        Box::pin(async move {
            stub.put(pb::PutRequest {
                key: key(n),
                value,
                consistency: pb::Consistency::Quorum as i32,
                skip_old_value,
                ..Default::default()
            })
            .await
            .is_ok()
        }) as OpFuture
    })
}

/// Coordinator-to-replica acknowledgement latency: one unary `Replicate` of 1 KB to a node, as
/// a coordinator sends it (sequential, concurrency 1), with a fresh version each time.
async fn replication_op(addr: &str) -> Op {
    let channel = connect(addr).await;
    let client = pb::node_internal_client::NodeInternalClient::new(channel);
    let value = Bytes::from(vec![b'r'; VALUE_BYTES]);
    let secret: tonic::metadata::MetadataValue<_> = SECRET.parse().expect("ascii");
    Arc::new(move |_, i| {
        let mut client = client.clone();
        let value = value.clone();
        let secret = secret.clone();
        Box::pin(async move {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let hlc = (now_ms << 16) | (i & 0xFFFF);
            let version = pb::Version { hlc, node: 99 };
            let mut req = tonic::Request::new(pb::ReplicateRequest {
                key: format!("repl-{}", i % KEYS as u64),
                value,
                timestamp: hlc,
                version: Some(version),
                tombstone: false,
                expires_at_ms: 0,
            });
            req.metadata_mut()
                .insert(kvstore_proto::CLUSTER_SECRET_HEADER, secret);
            client
                .replicate(req)
                .await
                .is_ok_and(|r| r.into_inner().success)
        }) as OpFuture
    })
}

// ------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------

struct Row {
    name: String,
    concurrency: usize,
    figures: Figures,
    /// The echo ceiling at the same concurrency, measured just before this case (the machine
    /// is shared: a paired measurement keeps the ratio honest when the load changes).
    echo: Figures,
    /// CPU time all kvstore-server processes used per operation of this case, in µs (it
    /// includes their background gossip, negligible next to thousands of ops per second).
    server_cpu_us_per_op: Option<f64>,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<34} {:>4} {:>10} {:>9} {:>9} {:>6} | {:>10} {:>9} {:>9} | {:>6} | {:>11}",
        "case",
        "conc",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "echo ops/s",
        "echo p50",
        "echo p99",
        "ratio",
        "srv cpu/op"
    );
    for row in rows {
        let (f, e) = (row.figures, row.echo);
        println!(
            "{:<34} {:>4} {:>10.0} {:>9} {:>9} {:>6} | {:>10.0} {:>9} {:>9} | {:>6.2} | {:>8} us",
            row.name,
            row.concurrency,
            f.ops_per_sec,
            ms(f.p50_us),
            ms(f.p99_us),
            f.errors,
            e.ops_per_sec,
            ms(e.p50_us),
            ms(e.p99_us),
            f.ops_per_sec / e.ops_per_sec,
            row.server_cpu_us_per_op
                .map_or_else(|| "-".to_string(), |c| format!("{c:.0}"))
        );
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn ratio_of(rows: &[Row], name: &str, conc: usize) -> Option<f64> {
    let row = rows
        .iter()
        .find(|r| r.name == name && r.concurrency == conc)?;
    Some(row.figures.ops_per_sec / row.echo.ops_per_sec)
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter is accepted and ignored (one bench).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let secs = case_duration().as_secs_f64();
    println!("kvstore cluster figures: 1 KB values, {secs:.1} s per case, 127.0.0.1");
    let echo = echo_op(start_echo()).await;
    let mut rows = Vec::new();
    let cases = std::env::var("KV_BENCH_CASES").unwrap_or_default();
    let wanted = |group: &str| cases.is_empty() || cases.split(',').any(|c| c.trim() == group);
    let only = std::env::var("KV_BENCH_ONLY").unwrap_or_default();
    let only_conc: Option<usize> = std::env::var("KV_BENCH_CONC")
        .ok()
        .and_then(|c| c.parse().ok());
    let selected =
        |name: &str, conc: usize| name.contains(&only) && only_conc.is_none_or(|c| c == conc);

    // One node, N=1.
    if wanted("n1") {
        let cluster = start_cluster(1, 1).await;
        let client = Client::connect(client_config(&cluster.addrs))
            .await
            .expect("client");
        preload(&client, ConsistencyLevel::One).await;
        let raw = raw_get_op(&cluster.addrs[0]).await;
        let pids = cluster.pids();
        let stub_label = "N=1 get, bare stub (no Client)";
        if selected(stub_label, 64) {
            let (fe, cpu) = paired_with_cpu(&pids, 64, &echo, &raw).await;
            record(&mut rows, stub_label, 64, fe, cpu);
        }
        for (label, mix) in [("N=1 get", Mix::Get), ("N=1 put", Mix::Put)] {
            for conc in [1, 64].into_iter().filter(|&c| selected(label, c)) {
                let op = kv_op(&client, ConsistencyLevel::One, mix);
                let (fe, cpu) = paired_with_cpu(&pids, conc, &echo, &op).await;
                record(&mut rows, label, conc, fe, cpu);
            }
        }
    }

    // Three nodes, N=3, QUORUM.
    let mut server_reported = Vec::new();
    if wanted("n3") {
        let cluster = start_cluster(3, 3).await;
        let client = Client::connect(client_config(&cluster.addrs))
            .await
            .expect("client");
        preload(&client, ConsistencyLevel::Quorum).await;
        let pids = cluster.pids();
        for (label, mix) in [
            ("N=3 QUORUM get", Mix::Get),
            ("N=3 QUORUM put", Mix::Put),
            ("N=3 QUORUM 80/20 get/put", Mix::ReadHeavy(80)),
        ] {
            for conc in [1, 64].into_iter().filter(|&c| selected(label, c)) {
                let op = kv_op(&client, ConsistencyLevel::Quorum, mix);
                let (fe, cpu) = paired_with_cpu(&pids, conc, &echo, &op).await;
                record(&mut rows, label, conc, fe, cpu);
            }
        }
        for (label, skip) in [
            ("N=3 QUORUM put, stub, old value", false),
            ("N=3 QUORUM put, stub, skip old", true),
        ] {
            for conc in [1, 64].into_iter().filter(|&c| selected(label, c)) {
                let op = raw_put_op(&cluster.addrs[0], skip).await;
                let (fe, cpu) = paired_with_cpu(&pids, conc, &echo, &op).await;
                record(&mut rows, label, conc, fe, cpu);
            }
        }
        let repl_label = "replication ack (unary Replicate)";
        if selected(repl_label, 1) {
            let op = replication_op(&cluster.addrs[1]).await;
            let (fe, cpu) = paired_with_cpu(&pids, 1, &echo, &op).await;
            record(&mut rows, repl_label, 1, fe, cpu);
        }
        for addr in &cluster.addrs {
            match client.status(addr).await {
                Ok(status) => server_reported.push((addr.clone(), status)),
                Err(e) => println!("status of {addr}: {e}"),
            }
        }
    }

    if wanted("tls") {
        tls_cost(&echo, &mut rows).await;
    }
    if wanted("ae") {
        tree_cost(&echo, &mut rows).await;
    }
    print_table(&rows);
    print_tls_ratios(&rows);
    println!();
    println!("replication latency as the coordinators measured it (stream send -> peer ack):");
    for (addr, s) in &server_reported {
        println!(
            "  node {} ({addr}): {} acks, p50 {} ms, p99 {} ms",
            s.node_id,
            s.replication_acks,
            ms(s.replication_p50_us),
            ms(s.replication_p99_us)
        );
    }
    println!();
    let targets = [
        ("N=1 get", 64, 0.9),
        ("N=1 put", 64, 0.9),
        ("N=3 QUORUM 80/20 get/put", 64, 0.5),
    ];
    for (name, conc, target) in targets {
        match ratio_of(&rows, name, conc) {
            Some(r) => println!(
                "target {name} c={conc}: {r:.2} of echo (target >= {target}): {}",
                if r >= target { "met" } else { "MISSED" }
            ),
            None => println!("target {name} c={conc}: not measured"),
        }
    }
}

/// The TLS figure: N=3 QUORUM 80/20 at c=1 and c=64 on a plaintext and a mutual-TLS cluster,
/// both up at once, the two cases measured back to back (each paired with the echo).
async fn tls_cost(echo: &Op, rows: &mut Vec<Row>) {
    let plain = start_cluster_tls(3, 3, false).await;
    let tls = start_cluster_tls(3, 3, true).await;
    let pc = Client::connect(client_config(&plain.addrs))
        .await
        .expect("client");
    let tc = Client::connect(client_config_tls(&tls.addrs, tls.tls.as_ref()))
        .await
        .expect("TLS client");
    preload(&pc, ConsistencyLevel::Quorum).await;
    preload(&tc, ConsistencyLevel::Quorum).await;
    for conc in [1, 64] {
        for (label, client, cluster) in [
            ("TLS cost: plaintext 80/20", &pc, &plain),
            ("TLS cost: mutual TLS 80/20", &tc, &tls),
        ] {
            let op = kv_op(client, ConsistencyLevel::Quorum, Mix::ReadHeavy(80));
            let (fe, cpu) = paired_with_cpu(&cluster.pids(), conc, echo, &op).await;
            record(rows, label, conc, fe, cpu);
        }
    }
}

/// The cost of keeping the anti-entropy trees on the write path: N=3 QUORUM puts on a
/// cluster with them (the default) and on one started with `--no-anti-entropy`, interleaved.
async fn tree_cost(echo: &Op, rows: &mut Vec<Row>) {
    let with = start_cluster_with(3, 3, false, &[]).await;
    let without = start_cluster_with(3, 3, false, &["--no-anti-entropy"]).await;
    let wc = Client::connect(client_config(&with.addrs))
        .await
        .expect("client");
    let nc = Client::connect(client_config(&without.addrs))
        .await
        .expect("client");
    preload(&wc, ConsistencyLevel::Quorum).await;
    preload(&nc, ConsistencyLevel::Quorum).await;
    for conc in [1, 64] {
        for (label, client, cluster) in [
            ("trees: N=3 QUORUM put, with trees", &wc, &with),
            ("trees: N=3 QUORUM put, --no-anti-entropy", &nc, &without),
        ] {
            let op = kv_op(client, ConsistencyLevel::Quorum, Mix::Put);
            let (fe, cpu) = paired_with_cpu(&cluster.pids(), conc, echo, &op).await;
            record(rows, label, conc, fe, cpu);
        }
    }
    println!();
    for conc in [1, 64] {
        let w = ratio_of(rows, "trees: N=3 QUORUM put, with trees", conc);
        let n = ratio_of(rows, "trees: N=3 QUORUM put, --no-anti-entropy", conc);
        if let (Some(w), Some(n)) = (w, n) {
            println!(
                "tree cost N=3 QUORUM put c={conc}: with trees {w:.3} of echo, without {n:.3} of \
                 echo, with/without {:.3}",
                w / n
            );
        }
    }
}

fn print_tls_ratios(rows: &[Row]) {
    println!();
    for conc in [1, 64] {
        let p = ratio_of(rows, "TLS cost: plaintext 80/20", conc);
        let t = ratio_of(rows, "TLS cost: mutual TLS 80/20", conc);
        if let (Some(p), Some(t)) = (p, t) {
            println!(
                "TLS cost N=3 QUORUM 80/20 c={conc}: plaintext {p:.3} of echo, mutual TLS {t:.3} \
                 of echo, TLS/plaintext {:.3}",
                t / p
            );
        }
    }
}
