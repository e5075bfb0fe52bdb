//! Anti-entropy figures on three real `kvstore-server` processes (release build, 127.0.0.1):
//! the time, bytes on the wire and CPU one repair cycle takes to converge a replica that
//! missed 1% of the keys, and the trees' memory.
//!
//! The cluster (N=3, fsync never, hints capped at one per target, no periodic repair) is loaded
//! with `KV_AE_KEYS` keys (default 1,000,000; 100-byte values) at ALL; node 3 is killed, 1% of
//! the keys are overwritten at QUORUM (node 3 misses them: its one hint aside, nothing tells
//! it), node 3 restarts, every node's trees are built, then node 1 runs one repair cycle (`kv
//! repair --node 1`). Reported: the cycle's wall time, the anti-entropy bytes it counted, the
//! three servers' CPU seconds during the cycle, the keys copied, and the trees' bytes and pairs
//! (per million keys); finally a sample of the overwritten keys is read from node 3 directly
//! (LocalRead) to show the repair really took.
//!
//! Run: `cargo bench -p kvstore-server --bench anti_entropy` (about 3 minutes at 1M keys on a
//! 2-core machine); `KV_AE_KEYS=100000` for a quick look.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kvstore_client::{Client, ClientConfig, ConsistencyLevel, WriteOptions};
use kvstore_harness::process::{Launcher, NodeProcess, server_binary};
use kvstore_proto::pb;

const VALUE_BYTES: usize = 100;
const CONCURRENCY: usize = 128;

fn key(i: u64) -> String {
    format!("key{i:08}")
}

/// The CPU seconds (user + system) process `pid` used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is 0, utime 11, stime 12.
    (ticks(11) + ticks(12)) / 100.0
}

async fn put_all(
    client: &Client,
    keys: impl Iterator<Item = u64>,
    level: ConsistencyLevel,
    tag: u8,
) {
    let value = Bytes::from(vec![tag; VALUE_BYTES]);
    let opts = WriteOptions {
        consistency: Some(level),
        ttl_ms: None,
    };
    let keys: Vec<u64> = keys.collect();
    let chunks: Vec<Vec<u64>> = keys
        .chunks(keys.len().div_ceil(CONCURRENCY).max(1))
        .map(|c| c.to_vec())
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let (client, value) = (client.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            for i in chunk {
                let mut tries = 0;
                while let Err(e) = client.put(&key(i), value.clone(), opts).await {
                    tries += 1;
                    assert!(tries < 5, "put {}: {e}", key(i));
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("put task");
    }
}

async fn status_of(client: &Client, addr: &str) -> pb::NodeStatusResponse {
    client.status(addr).await.expect("status")
}

async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while !f().await {
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let keys: u64 = std::env::var("KV_AE_KEYS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(1_000_000);
    let divergent = (keys / 100).max(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let launcher = Launcher::new(server_binary(env!("CARGO_BIN_EXE_kvstore-server")))
        .with_flags([
            "--replication-factor",
            "3",
            "--fsync",
            "never",
            "--max-hints-per-target",
            "1",
            "--anti-entropy-interval-ms",
            "0",
            "--suspect-after-ms",
            "1500",
            "--down-after-ms",
            "3000",
        ])
        .with_env("RUST_LOG", "warn")
        .with_start_timeout(Duration::from_secs(120));
    let mut nodes: Vec<NodeProcess> = launcher
        .start_cluster(dir.path(), 3, &[] as &[&str])
        .expect("cluster");
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let mut config = ClientConfig::with_seeds(addrs.iter().cloned());
    config.request_timeout = Duration::from_secs(10);
    let client = Client::connect(config).await.expect("client");
    wait_until("three members up", Duration::from_secs(60), || async {
        client.ring().await.is_ok_and(|r| {
            r.members
                .iter()
                .filter(|m| m.state == pb::MemberState::Up as i32)
                .count()
                == 3
        })
    })
    .await;

    println!(
        "anti-entropy figures: {keys} keys of {VALUE_BYTES} B, 3 nodes, N=3, {divergent} keys (1%) missed by node 3"
    );
    let t = Instant::now();
    put_all(&client, 0..keys, ConsistencyLevel::All, b'a').await;
    println!("  load at ALL: {:.1} s", t.elapsed().as_secs_f64());

    nodes[2].kill();
    wait_until("node 3 down", Duration::from_secs(60), || async {
        client.ring().await.is_ok_and(|r| {
            r.members
                .iter()
                .any(|m| m.id == 3 && m.state == pb::MemberState::Down as i32)
        })
    })
    .await;
    // Every 100th key: spread over every arc and leaf.
    put_all(
        &client,
        (0..keys).step_by(100),
        ConsistencyLevel::Quorum,
        b'b',
    )
    .await;
    nodes[2].restart().expect("restart node 3");
    let t = Instant::now();
    for a in &addrs {
        wait_until("trees built", Duration::from_secs(300), || async {
            status_of(&client, a)
                .await
                .anti_entropy
                .is_some_and(|ae| ae.arcs > 0 && ae.arcs_built == ae.arcs && !ae.rebuilding)
        })
        .await;
    }
    println!(
        "  node 3 restarted; every node's trees built {:.1} s later",
        t.elapsed().as_secs_f64()
    );
    let ae = status_of(&client, &addrs[0])
        .await
        .anti_entropy
        .expect("anti-entropy status");
    println!(
        "  trees on node 1: {} arcs, {} pairs, {} bytes ({:.2} MiB; {:.2} MiB per million keys)",
        ae.arcs,
        ae.tree_pairs,
        ae.tree_bytes,
        ae.tree_bytes as f64 / 1048576.0,
        ae.tree_bytes as f64 / 1048576.0 / (ae.tree_pairs.max(1) as f64 / 1e6)
    );

    let pids: Vec<u32> = nodes.iter().filter_map(|n| n.pid()).collect();
    let cpu_before: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let t = Instant::now();
    let summary = client
        .repair(&addrs[0], Vec::new(), |p| {
            println!(
                "    exchange 1<->{}: {} arcs differ, {} leaves, {} keys compared, {} fetched, {} pushed, {} bytes",
                p.peer, p.arcs_differing, p.leaves_differing, p.keys_compared, p.keys_fetched, p.keys_pushed, p.bytes
            )
        })
        .await
        .expect("repair");
    let wall = t.elapsed().as_secs_f64();
    let cpu: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - cpu_before;
    println!(
        "  repair cycle on node 1: {} in {wall:.2} s wall, {:.2} CPU s (3 servers), {} bytes ({:.1} MiB) on the wire, {} keys compared, {} fetched + {} pushed, {} of {} arcs repaired",
        if summary.complete {
            "complete"
        } else {
            "INCOMPLETE"
        },
        cpu,
        summary.bytes,
        summary.bytes as f64 / 1048576.0,
        summary.keys_compared,
        summary.keys_fetched,
        summary.keys_pushed,
        summary.arcs_repaired,
        summary.arcs
    );
    let mut wrong = 0;
    let sample: Vec<u64> = (0..keys)
        .step_by(100)
        .step_by(((divergent / 1000).max(1)) as usize)
        .collect();
    for i in &sample {
        let r = client
            .local_read(&addrs[2], &key(*i))
            .await
            .expect("local read");
        if r.entry.is_none_or(|e| e.value.first() != Some(&b'b')) {
            wrong += 1;
        }
    }
    println!(
        "  node 3 after the repair: {} of {} sampled overwritten keys hold the new value",
        sample.len() - wrong,
        sample.len()
    );
    assert_eq!(wrong, 0, "the repair left node 3 stale");
    for n in &mut nodes {
        n.kill();
    }
}
