//! A simulated cluster: real kvstore nodes (the product's `node::run_in`, every task and
//! handler of it) in one process, on the simulated network, each with its own simulated clock
//! and its own `SimFs` disk, driven by the controls a test calls.
//!
//! Controls: [`SimCluster::partition`], [`SimCluster::partition_one_way`], [`SimCluster::heal`],
//! [`SimCluster::drop_rate`], [`SimCluster::delay`], [`SimCluster::pause`] /
//! [`SimCluster::resume`], [`SimCluster::crash`] (the disk loses what was not synced),
//! [`SimCluster::restart`], [`SimCluster::clock_jump`], [`SimCluster::clock_rate`],
//! [`SimCluster::join`], [`SimCluster::leave`]. Clients reach nodes through the same network
//! ([`SimCluster::kv`]); the operator's calls (ring state, local reads, repair) too.
//!
//! A node's small files (member table, clock ceiling, repair ledger, the directory lock) are
//! on a real temporary directory and survive a crash as fsynced files do; its data and hint
//! logs are on its `SimFs`, where a crash keeps exactly what was synced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kvstore_proto::pb;
use kvstore_proto::pb::kv_store_client::KvStoreClient;
use kvstore_proto::pb::node_internal_client::NodeInternalClient;
use kvstore_server::NodeConfig;
use kvstore_server::node::{Environment, Listener, run_in};
use kvstore_server::replication::channel::PeerChannel;
use kvstore_server::storage::SimFs;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::{EPOCH_MS, SimClock};
use crate::network::{Endpoint, SimNetwork};

/// The endpoint the operator's calls come from (ring state, local reads, repairs, leaves).
pub const OPERATOR: Endpoint = 9_000;
/// Client `c`'s endpoint is `CLIENT_BASE + c`.
pub const CLIENT_BASE: Endpoint = 10_000;

/// A node's address on the simulated network (never a real host: a stray TCP use fails).
pub fn address_of(node: u32) -> String {
    format!("node-{node}.sim:7000")
}

struct Running {
    task: JoinHandle<kvstore_server::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
    ready: Arc<AtomicBool>,
}

struct SimNode {
    config: NodeConfig,
    clock: Arc<SimClock>,
    fs: Arc<SimFs>,
    running: Option<Running>,
}

/// N simulated nodes and the controls over their world.
pub struct SimCluster {
    /// The seed everything random in this cluster comes from.
    pub seed: u64,
    net: Arc<SimNetwork>,
    dir: tempfile::TempDir,
    nodes: BTreeMap<u32, SimNode>,
    template: NodeConfig,
    started: Instant,
}

/// The configuration simulated nodes start from: the product's defaults, with fewer virtual
/// nodes (cheaper rings) and repairs only when asked.
pub fn default_template() -> NodeConfig {
    NodeConfig {
        vnodes: 16,
        anti_entropy_interval: None,
        ..NodeConfig::default()
    }
}

impl SimCluster {
    /// Starts `n` nodes (ids 1..=n; node 1 first, the others joining through it) and waits
    /// until every node sees every other one up on the same ring. Must run inside
    /// [`crate::runtime::run`].
    pub async fn start(seed: u64, n: u32) -> Self {
        Self::start_with(seed, n, default_template()).await
    }

    /// [`SimCluster::start`] with `template` as every node's configuration (ids, addresses,
    /// data directories and seeds are set per node).
    pub async fn start_with(seed: u64, n: u32, template: NodeConfig) -> Self {
        let mut c = Self {
            seed,
            net: SimNetwork::new(seed ^ 0x6e65_7477_6f72_6b00),
            dir: tempfile::tempdir().expect("temporary directory"),
            nodes: BTreeMap::new(),
            template,
            started: Instant::now(),
        };
        for id in 1..=n {
            let join = if id == 1 { vec![] } else { vec![address_of(1)] };
            c.add_node(id, join);
            c.wait_ready(id).await;
        }
        let all: Vec<u32> = (1..=n).collect();
        assert!(
            c.wait_until(Duration::from_secs(60), || c.converged(&all))
                .await,
            "seed {seed}: the ring did not converge after start"
        );
        c
    }

    /// The network (rules, traffic counts).
    pub fn network(&self) -> &Arc<SimNetwork> {
        &self.net
    }

    /// Time since the cluster started (simulated).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The nodes this cluster has started (running or not).
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.keys().copied().collect()
    }

    /// Whether `node` is running.
    pub fn is_running(&self, node: u32) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|n| n.running.as_ref().is_some_and(|r| !r.task.is_finished()))
    }

    fn add_node(&mut self, id: u32, join: Vec<String>) {
        let config = NodeConfig {
            node_id: id,
            advertise_address: address_of(id),
            data_dir: Some(self.dir.path().join(format!("node-{id}"))),
            join,
            ..self.template.clone()
        };
        let node = SimNode {
            config,
            // Every clock reads the same wall time at the same moment (until a test moves it).
            clock: Arc::new(SimClock::starting_at(self.true_ms())),
            fs: Arc::new(SimFs::new()),
            running: None,
        };
        self.nodes.insert(id, node);
        self.boot(id);
    }

    fn boot(&mut self, id: u32) {
        let seed = self.seed;
        let net = self.net.clone();
        let node = self.nodes.get_mut(&id).expect("known node");
        let env = Environment {
            clock: node.clock.clone(),
            network: Some(net.endpoint(id)),
            fs: node.fs.clone(),
            seed: Some(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(id)),
        };
        let address = node.config.advertise_address.clone();
        let listener = Listener::Mounted {
            mount: net.mount_point(id, &address),
            address,
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let ready = Arc::new(AtomicBool::new(false));
        let ready_flag = ready.clone();
        let config = node.config.clone();
        let task = tokio::spawn(async move {
            run_in(
                env,
                listener,
                config,
                async move {
                    let _ = stop_rx.await;
                },
                move |_| ready_flag.store(true, Ordering::SeqCst),
            )
            .await
        });
        node.running = Some(Running {
            task,
            stop: Some(stop_tx),
            ready,
        });
    }

    async fn wait_ready(&mut self, id: u32) {
        let ok = self
            .wait_until(Duration::from_secs(120), || async {
                let n = &self.nodes[&id];
                let r = n.running.as_ref().expect("running");
                r.ready.load(Ordering::SeqCst) || r.task.is_finished()
            })
            .await;
        let r = self.nodes[&id].running.as_ref().expect("running");
        if ok && !r.task.is_finished() {
            return;
        }
        // A node that stopped by itself says why: its outcome is the only trace of it.
        let outcome = if r.task.is_finished() {
            let r = self.nodes.get_mut(&id).and_then(|n| n.running.take());
            format!("it stopped: {:?}", r.expect("running").task.await)
        } else {
            "still starting after 120 s".to_string()
        };
        panic!(
            "seed {}: node {id} did not become ready: {outcome}",
            self.seed
        );
    }

    /// Polls `cond` every 50 ms (simulated) until it holds or `within` passed; whether it held.
    pub async fn wait_until<F, Fut>(&self, within: Duration, mut cond: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let until = Instant::now() + within;
        loop {
            if cond().await {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether every node of `nodes` answers and sees exactly `nodes` up, on one ring.
    pub async fn converged(&self, nodes: &[u32]) -> bool {
        let mut hash = None;
        for &id in nodes {
            let Some(ring) = self.ring_state(id).await else {
                return false;
            };
            let up: Vec<u32> = ring
                .members
                .iter()
                .filter(|m| m.state == pb::MemberState::Up as i32)
                .map(|m| m.id)
                .collect();
            if up != nodes || hash.is_some_and(|h| h != ring.ring_hash) {
                return false;
            }
            hash = Some(ring.ring_hash);
        }
        true
    }

    /// `node`'s view of the ring, asked by the operator (`None`: no answer within 2 s).
    pub async fn ring_state(&self, node: u32) -> Option<pb::RingStateResponse> {
        let mut c = self.internal(OPERATOR, node);
        let call = c.get_ring_state(pb::RingStateRequest {});
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(Ok(r)) => {
                let mut r = r.into_inner();
                r.members.sort_by_key(|m| m.id);
                Some(r)
            }
            _ => None,
        }
    }

    /// A KV client of endpoint `from` talking to `node`.
    pub fn kv(&self, from: Endpoint, node: u32) -> KvStoreClient<PeerChannel> {
        KvStoreClient::new(self.net.channel(from, &address_of(node)))
    }

    /// A NodeInternal client of endpoint `from` talking to `node`.
    pub fn internal(&self, from: Endpoint, node: u32) -> NodeInternalClient<PeerChannel> {
        NodeInternalClient::new(self.net.channel(from, &address_of(node)))
    }

    /// What `node` stores for `key` (read by the operator, no quorum): `Err` when it did not
    /// answer.
    pub async fn local_read(&self, node: u32, key: &str) -> Result<Option<pb::Entry>, String> {
        let mut c = self.internal(OPERATOR, node);
        let call = c.local_read(pb::LocalReadRequest { key: key.into() });
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(r)) => Ok(r.into_inner().entry),
            Ok(Err(s)) => Err(format!("node {node}: {s}")),
            Err(_) => Err(format!("node {node}: no answer within 5 s")),
        }
    }

    /// Runs one anti-entropy cycle on `node` and waits for its summary: whether it completed.
    pub async fn repair(&self, node: u32) -> Result<bool, String> {
        let mut c = self.internal(OPERATOR, node);
        let call = async {
            let mut stream = c
                .repair(pb::RepairRequest { ranges: vec![] })
                .await
                .map_err(|s| s.to_string())?
                .into_inner();
            while let Some(p) = stream.message().await.map_err(|s| s.to_string())? {
                if p.done {
                    return Ok(p.complete);
                }
            }
            Err("repair stream ended without a summary".to_string())
        };
        tokio::time::timeout(Duration::from_secs(120), call)
            .await
            .map_err(|_| format!("node {node}: repair did not finish within 120 s"))?
    }

    // ---- Controls ------------------------------------------------------------------------

    /// Cuts every link between nodes of different groups, both ways (clients are unaffected).
    pub fn partition(&self, groups: &[&[u32]]) {
        self.net.update(|r| {
            for (i, a) in groups.iter().enumerate() {
                for (j, b) in groups.iter().enumerate() {
                    if i != j {
                        for &x in a.iter() {
                            for &y in b.iter() {
                                r.cut.insert((x, y));
                            }
                        }
                    }
                }
            }
        });
    }

    /// Cuts the link from `a` to `b` only: `b` still reaches `a`, but gets nothing from it
    /// (and so no answer to what it asks `a`).
    pub fn partition_one_way(&self, a: u32, b: u32) {
        self.net.update(|r| {
            r.cut.insert((a, b));
        });
    }

    /// Ends every partition, loss and delay (pauses, crashes and clocks are left as they are).
    pub fn heal(&self) {
        self.net.update(|r| {
            r.cut.clear();
            r.delay.clear();
            r.drop_rate = 0.0;
        });
    }

    /// Loses each message between nodes with probability `p`.
    pub fn drop_rate(&self, p: f64) {
        self.net.update(|r| r.drop_rate = p.clamp(0.0, 1.0));
    }

    /// Delays every message from `a` to `b` by `d`.
    pub fn delay(&self, a: Endpoint, b: Endpoint, d: Duration) {
        self.net.update(|r| {
            r.delay.insert((a, b), d);
        });
    }

    /// Freezes `node`'s traffic: everything to and from it is held until [`Self::resume`], as
    /// for a stopped process whose connections stay open.
    pub fn pause(&self, node: u32) {
        self.net.update(|r| {
            r.paused.insert(node);
        });
    }

    /// Ends a [`Self::pause`].
    pub fn resume(&self, node: u32) {
        self.net.update(|r| {
            r.paused.remove(&node);
        });
    }

    /// Crashes `node`: its connections are refused at once, its disk keeps only what was
    /// synced (a power cut), and it stops. Returns once it has stopped.
    pub async fn crash(&mut self, node: u32) {
        self.net.update(|r| {
            r.down.insert(node);
        });
        let n = self.nodes.get_mut(&node).expect("known node");
        n.fs.power_cycle();
        if let Some(mut r) = n.running.take() {
            if let Some(stop) = r.stop.take() {
                let _ = stop.send(());
            }
            // The old incarnation winds down against a dead disk and network; its outcome
            // (errors from the lost disk) is not the new one's.
            let _ = r.task.await;
        }
    }

    /// Starts `node` again on its disk (after [`Self::crash`] or a leave is not allowed: a
    /// node that left refuses its old data). Waits until it is ready.
    pub async fn restart(&mut self, node: u32) {
        assert!(!self.is_running(node), "node {node} is running");
        self.net.update(|r| {
            r.down.remove(&node);
        });
        self.boot(node);
        self.wait_ready(node).await;
    }

    /// Moves `node`'s wall clock by `delta_ms`.
    pub fn clock_jump(&self, node: u32, delta_ms: i64) {
        self.nodes[&node].clock.jump(delta_ms);
    }

    /// Sets the rate of `node`'s wall clock (1.0: a good clock).
    pub fn clock_rate(&self, node: u32, rate: f64) {
        self.nodes[&node].clock.set_rate(rate);
    }

    /// `node`'s wall clock now.
    pub fn clock_ms(&self, node: u32) -> u64 {
        self.nodes[&node].clock.now_ms()
    }

    /// The true time: what every clock read at the cluster's start, advanced with the runtime.
    pub fn true_ms(&self) -> u64 {
        EPOCH_MS + self.started.elapsed().as_millis() as u64
    }

    /// How far `node`'s wall clock is from the true time, ms (ahead when positive).
    pub fn clock_offset_ms(&self, node: u32) -> i64 {
        self.clock_ms(node) as i64 - self.true_ms() as i64
    }

    /// Sets `node`'s clock right again (rate 1, true time), as NTP would once it is fixed.
    pub fn clock_reset(&self, node: u32) {
        self.clock_rate(node, 1.0);
        self.clock_jump(node, -self.clock_offset_ms(node));
    }

    /// Starts a new node `node`, joining through the running nodes, and waits until it is
    /// ready (its ranges streamed in).
    pub async fn join(&mut self, node: u32) {
        assert!(!self.nodes.contains_key(&node), "node {node} exists");
        let seeds: Vec<String> = self
            .node_ids()
            .into_iter()
            .filter(|id| self.is_running(*id))
            .map(address_of)
            .collect();
        self.add_node(node, seeds);
        self.wait_ready(node).await;
    }

    /// Asks `node` to leave (it streams its ranges to their new owners) and waits until it
    /// has stopped.
    pub async fn leave(&mut self, node: u32) -> Result<u64, String> {
        let mut c = self.internal(OPERATOR, node);
        let moved = tokio::time::timeout(
            Duration::from_secs(120),
            c.leave(pb::LeaveRequest { node_id: node }),
        )
        .await
        .map_err(|_| format!("node {node}: leave did not finish within 120 s"))?
        .map_err(|s| format!("node {node}: leave: {s}"))?
        .into_inner()
        .keys_moved;
        let n = self.nodes.get_mut(&node).expect("known node");
        if let Some(r) = n.running.take() {
            let _ = r.task.await;
        }
        Ok(moved)
    }

    /// Stops every node cleanly (their tasks end; the temporary directory goes with `self`).
    pub async fn shutdown(mut self) {
        for n in self.nodes.values_mut() {
            if let Some(mut r) = n.running.take() {
                if let Some(stop) = r.stop.take() {
                    let _ = stop.send(());
                }
                let _ = r.task.await;
            }
        }
    }
}
