//! A randomized run: clients put, delete and get against a simulated cluster while a nemesis
//! applies random faults; then every fault is healed, the replicas are repaired and read one
//! by one, and the whole history is judged by `kvstore-checker`'s rules.
//!
//! Everything random comes from the run's seed: each client's operations, keys, coordinators
//! and pauses; the nemesis's faults and their timing; the network's losses; the nodes' own
//! choices. The history is in the checker's format exactly (values carry value ids, final
//! reads name the replica they read), so a run that fails can be written out and checked
//! with `checker verify` too.
//!
//! Outcomes are recorded as truthfully as the store reports them: a write is `fail` only when
//! the node said nothing was applied (`kv-outcome: failed`, or a refusal before any work) or
//! the connection was refused before anything was sent; every other error is `unknown`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kvstore_checker::{CheckConfig, OpKind, Outcome, Record, Report, value_id};
use kvstore_proto::pb;
use kvstore_proto::pb::kv_store_client::KvStoreClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::cluster::{CLIENT_BASE, SimCluster, address_of};
use crate::network::SimNetwork;

/// The shape of a randomized run.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Nodes (all replicas of every key: replication factor 3 on 3 nodes).
    pub nodes: u32,
    /// Concurrent clients.
    pub clients: u32,
    /// Operations per client.
    pub ops_per_client: u32,
    /// Distinct keys (few, so clients collide).
    pub keys: u32,
    /// Whether the nemesis runs.
    pub faults: bool,
    /// How long a client waits for an answer before recording an unknown outcome.
    pub client_timeout: Duration,
    /// Every node's configuration ([`crate::cluster::default_template`]).
    pub template: kvstore_server::NodeConfig,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            nodes: 3,
            clients: 3,
            ops_per_client: 40,
            keys: 12,
            faults: true,
            client_timeout: Duration::from_secs(5),
            template: crate::cluster::default_template(),
        }
    }
}

/// What a run did and the checker's verdict on it.
#[derive(Debug)]
pub struct RunResult {
    /// The seed it ran with.
    pub seed: u64,
    /// Every operation, in completion order, final reads last.
    pub history: Vec<Record>,
    /// The checker's report.
    pub report: Report,
    /// The faults applied, in order, with their simulated start times.
    pub faults: Vec<String>,
    /// Simulated time the run took.
    pub simulated: Duration,
}

impl RunResult {
    /// Client operations (final reads excluded).
    pub fn operations(&self) -> usize {
        self.history
            .iter()
            .filter(|r| r.kind != OpKind::FinalRead)
            .count()
    }

    /// A short account for a failure message: seed, faults, the report's text.
    pub fn describe(&self) -> String {
        format!(
            "seed {} (replay: KVSTORE_SIM_SEED={}): {} operations in {:?} simulated, faults:\n  \
             {}\n{}",
            self.seed,
            self.seed,
            self.operations(),
            self.simulated,
            self.faults.join("\n  "),
            self.report.render_text(5)
        )
    }
}

/// Records shared by the clients: op ids are unique, value ids are the put's op id.
#[derive(Default)]
struct Recorder {
    next_id: u64,
    records: Vec<Record>,
}

impl Recorder {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Runs one randomized run with `seed` (inside [`crate::runtime::run`]).
pub async fn run(seed: u64, cfg: &WorkloadConfig) -> RunResult {
    let mut cluster = SimCluster::start_with(seed, cfg.nodes, cfg.template.clone()).await;
    let zero = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let mut clients = Vec::new();
    for c in 0..cfg.clients {
        let net = cluster.network().clone();
        let (cfg, recorder) = (cfg.clone(), recorder.clone());
        let rng =
            StdRng::seed_from_u64(seed ^ (u64::from(c) + 1).wrapping_mul(0xa076_1d64_78bd_642f));
        clients.push(tokio::spawn(async move {
            client(c, net, &cfg, rng, zero, recorder).await
        }));
    }
    let mut faults = Vec::new();
    if cfg.faults {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
        while clients.iter().any(|c| !c.is_finished()) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..400))).await;
            if clients.iter().all(|c| c.is_finished()) {
                break;
            }
            faults.push(nemesis_step(&mut cluster, &mut rng, zero).await);
        }
    }
    for c in clients {
        c.await.expect("client task");
    }
    heal_all(&mut cluster).await;
    let ids = cluster.node_ids();
    assert!(
        cluster
            .wait_until(Duration::from_secs(120), || cluster.converged(&ids))
            .await,
        "seed {seed}: the ring did not converge after every fault was healed"
    );
    for &n in &ids {
        let mut complete = false;
        for _ in 0..5 {
            if cluster.repair(n).await == Ok(true) {
                complete = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(complete, "seed {seed}: node {n}'s repair never completed");
    }
    let mut history = std::mem::take(&mut recorder.lock().expect("recorder").records);
    final_reads(&cluster, cfg, zero, &mut history).await;
    let simulated = cluster.elapsed();
    cluster.shutdown().await;
    let report = kvstore_checker::check(
        history
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| Ok((i as u64 + 2, r))),
        &CheckConfig::default(),
    )
    .expect("the recorded history is well-formed");
    RunResult {
        seed,
        history,
        report,
        faults,
        simulated,
    }
}

fn ns_since(zero: Instant) -> u64 {
    zero.elapsed().as_nanos() as u64
}

fn key_name(k: u32) -> String {
    format!("key-{k:03}")
}

async fn client(
    c: u32,
    net: Arc<SimNetwork>,
    cfg: &WorkloadConfig,
    mut rng: StdRng,
    zero: Instant,
    recorder: Arc<Mutex<Recorder>>,
) {
    let from = CLIENT_BASE + c;
    for _ in 0..cfg.ops_per_client {
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..120))).await;
        let node = rng.random_range(1..=cfg.nodes);
        let key = key_name(rng.random_range(0..cfg.keys));
        let mut kv = KvStoreClient::new(net.channel(from, &address_of(node)));
        let op_id = recorder.lock().expect("recorder").next_id();
        let invoke_ns = ns_since(zero);
        let roll: f64 = rng.random();
        let mut rec = Record {
            op_id,
            client: c,
            node: address_of(node),
            kind: OpKind::Get,
            key: key.clone(),
            value_id: None,
            tombstone: false,
            outcome: Outcome::Ok,
            invoke_ns,
            complete_ns: invoke_ns,
            version: None,
            ttl_ms: None,
            expires_at_ms: None,
            replica: None,
        };
        let timeout = cfg.client_timeout;
        if roll < 0.55 {
            rec.kind = OpKind::Put;
            rec.value_id = Some(op_id);
            let req = pb::PutRequest {
                key,
                value: Bytes::from(value_id::encode(op_id, 24)),
                skip_old_value: true,
                ..Default::default()
            };
            match tokio::time::timeout(timeout, kv.put(req)).await {
                Ok(Ok(r)) => rec.version = r.into_inner().version.map(Into::into),
                Ok(Err(s)) => rec.outcome = write_outcome(&s),
                Err(_) => rec.outcome = Outcome::Unknown,
            }
        } else if roll < 0.65 {
            rec.kind = OpKind::Delete;
            let req = pb::DeleteRequest {
                key,
                ..Default::default()
            };
            match tokio::time::timeout(timeout, kv.delete(req)).await {
                Ok(Ok(r)) => rec.version = r.into_inner().version.map(Into::into),
                Ok(Err(s)) => rec.outcome = write_outcome(&s),
                Err(_) => rec.outcome = Outcome::Unknown,
            }
        } else {
            let req = pb::GetRequest {
                key,
                ..Default::default()
            };
            match tokio::time::timeout(timeout, kv.get(req)).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    if r.exists {
                        rec.value_id = value_id::decode(&r.value);
                        rec.version = r.version.map(Into::into);
                        rec.expires_at_ms = (r.expires_at_ms != 0).then_some(r.expires_at_ms);
                    } else if let Some(v) = r.version {
                        rec.tombstone = true;
                        rec.version = Some(v.into());
                    }
                }
                Ok(Err(_)) | Err(_) => rec.outcome = Outcome::Fail,
            }
        }
        rec.complete_ns = ns_since(zero);
        recorder.lock().expect("recorder").records.push(rec);
    }
}

/// What a failed write's status says about its effect.
fn write_outcome(s: &tonic::Status) -> Outcome {
    use std::error::Error as _;
    match s.metadata().get("kv-outcome").and_then(|v| v.to_str().ok()) {
        Some("failed") => return Outcome::Fail,
        Some(_) => return Outcome::Unknown,
        None => {}
    }
    match s.code() {
        // Refused before any work (not enough replicas, not an owner, shed), or the
        // connection was refused before anything was sent.
        tonic::Code::Unavailable
        | tonic::Code::FailedPrecondition
        | tonic::Code::ResourceExhausted
        | tonic::Code::InvalidArgument
            if s.source().is_none() =>
        {
            Outcome::Fail
        }
        _ => Outcome::Unknown,
    }
}

/// The largest clock offset the nemesis leaves a node at: inside the clock guard's margin
/// (80% of the default 500 ms max offset), so the store must tolerate it.
const MAX_SWEEP_OFFSET_MS: i64 = 300;

/// One fault: applied, held for a while, undone. Returns its description.
async fn nemesis_step(c: &mut SimCluster, rng: &mut StdRng, zero: Instant) -> String {
    let nodes = c.node_ids();
    let n = nodes[rng.random_range(0..nodes.len())];
    let other = loop {
        let o = nodes[rng.random_range(0..nodes.len())];
        if o != n {
            break o;
        }
    };
    let hold = Duration::from_millis(rng.random_range(200..2500));
    let at = format!("{:>7.3}s", zero.elapsed().as_secs_f64());
    let what = match rng.random_range(0..8) {
        0 => {
            let rest: Vec<u32> = nodes.iter().copied().filter(|x| *x != n).collect();
            c.partition(&[&[n], &rest]);
            tokio::time::sleep(hold).await;
            c.heal();
            format!("isolate node {n}")
        }
        1 => {
            c.partition_one_way(n, other);
            tokio::time::sleep(hold).await;
            c.heal();
            format!("one-way cut {n} -> {other}")
        }
        2 => {
            let p = rng.random_range(0.05..0.5);
            c.drop_rate(p);
            tokio::time::sleep(hold).await;
            c.heal();
            format!("loss {p:.2}")
        }
        3 => {
            let d = Duration::from_millis(rng.random_range(20..1500));
            c.delay(n, other, d);
            c.delay(other, n, d);
            tokio::time::sleep(hold).await;
            c.heal();
            format!("delay {n} <-> {other} {d:?}")
        }
        4 => {
            c.pause(n);
            tokio::time::sleep(hold).await;
            c.resume(n);
            format!("pause node {n}")
        }
        5 => {
            c.crash(n).await;
            tokio::time::sleep(hold).await;
            c.restart(n).await;
            format!("crash and restart node {n}")
        }
        6 => {
            // To an offset within the clock guard's margin (jumps do not add up past it): a
            // skew the store must tolerate. Beyond the max offset, replicas rightly refuse the
            // skewed node's versions (or it theirs) and stay apart until the clock is fixed.
            let to = rng.random_range(-MAX_SWEEP_OFFSET_MS..MAX_SWEEP_OFFSET_MS);
            let delta = to - c.clock_offset_ms(n);
            c.clock_jump(n, delta);
            format!("clock jump node {n} {delta:+} ms (to {to:+} ms)")
        }
        _ => {
            let rate = rng.random_range(0.97..1.03);
            c.clock_rate(n, rate);
            tokio::time::sleep(hold).await;
            c.clock_rate(n, 1.0);
            // What the drift added stays, bounded like a jump's offset.
            let off = c.clock_offset_ms(n);
            if off.abs() > MAX_SWEEP_OFFSET_MS {
                c.clock_jump(n, off.signum() * MAX_SWEEP_OFFSET_MS - off);
            }
            format!("clock rate node {n} {rate:.3}")
        }
    };
    format!("{at} {what} ({hold:?})")
}

/// Ends every fault: partitions, loss and delay healed, pauses resumed, crashed nodes
/// restarted, clocks set right (as loadgen resets its clock faults before the final phase).
async fn heal_all(c: &mut SimCluster) {
    c.heal();
    for n in c.node_ids() {
        c.resume(n);
        c.clock_reset(n);
        if !c.is_running(n) {
            c.restart(n).await;
        }
    }
}

/// Reads every touched key from every replica directly.
async fn final_reads(c: &SimCluster, cfg: &WorkloadConfig, zero: Instant, out: &mut Vec<Record>) {
    let mut next = out.iter().map(|r| r.op_id).max().unwrap_or(0);
    let mut keys: Vec<String> = out.iter().map(|r| r.key.clone()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        for node in 1..=cfg.nodes {
            next += 1;
            let invoke_ns = ns_since(zero);
            let entry = c.local_read(node, &key).await;
            let mut rec = Record {
                op_id: next,
                client: cfg.clients,
                node: address_of(node),
                kind: OpKind::FinalRead,
                key: key.clone(),
                value_id: None,
                tombstone: false,
                outcome: Outcome::Ok,
                invoke_ns,
                complete_ns: ns_since(zero),
                version: None,
                ttl_ms: None,
                expires_at_ms: None,
                replica: Some(address_of(node)),
            };
            match entry {
                Ok(Some(e)) => {
                    rec.version = e.version.map(Into::into);
                    if e.tombstone {
                        rec.tombstone = true;
                    } else {
                        rec.value_id = value_id::decode(&e.value);
                        rec.expires_at_ms = (e.expires_at_ms != 0).then_some(e.expires_at_ms);
                    }
                }
                Ok(None) => {}
                Err(_) => rec.outcome = Outcome::Fail,
            }
            out.push(rec);
        }
    }
}
