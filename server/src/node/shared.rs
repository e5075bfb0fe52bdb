//! The state every part of a running node shares: engine, clock, member table, placement view,
//! peers, hints and counters.
//!
//! Mutable membership lives in one `std::sync::Mutex<MemberTable>` held only for short,
//! await-free sections. Readers on the request path never take it: they clone an
//! `Arc<View>` (placement plus each member's health and address), which is rebuilt whenever
//! the table changes and on every failure-detector tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::time::Instant;

use futures::future::{BoxFuture, Shared as SharedFuture};
use tokio::sync::watch;

use crate::admission::Admission;
use crate::antientropy::state::AntiEntropy;
use crate::clock_guard::{self, ClockGuard, Verdict};
use crate::cluster::hints::HintStore;
use crate::cluster::members::Conditions;
use crate::cluster::members::{Health, MemberTable, Status};
use crate::cluster::placement::Placement;
use crate::cluster::repair_ledger::RepairLedger;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::hlc::Hlc;
use crate::replication::channel::PeerNetwork;
use crate::replication::peer::{Peer, Peers};
use crate::replication::slow::SlowReplicas;
use crate::storage::{Engine, Log};

/// A leave in progress ([`crate::cluster::rebalance::start_leave`]): every caller awaits the
/// same outcome (keys handed over, or the error). Defined here, with the slot that holds it, so
/// this state imports nothing of the cluster layer that drives it.
pub type LeaveHandle = SharedFuture<BoxFuture<'static, std::result::Result<u64, Arc<Error>>>>;

/// What a node keeps on disk (or in memory without a data directory), opened before the node
/// starts.
pub struct Stores {
    /// The data engine.
    pub engine: Arc<dyn Engine>,
    /// The same engine as the durable `Log`, when the node has a data directory.
    pub log: Option<Arc<Log>>,
    /// Hints for replicas that missed writes.
    pub hints: HintStore,
    /// The repair ledger.
    pub repairs: RepairLedger,
}

/// A snapshot of placement and liveness, cheap to clone for one request.
#[derive(Debug)]
pub struct View {
    /// Placement under the current announced states.
    pub placement: Placement,
    /// Each member's health at the time of the snapshot.
    pub health: HashMap<u32, Health>,
    /// Each member's address.
    pub addresses: HashMap<u32, String>,
    /// The membership version (sum of incarnations).
    pub ring_version: u64,
    /// This node's announced state.
    pub my_status: Status,
    /// Members that announce their storage takes no writes (disk full, read-only): writes to
    /// them are hinted instead of sent.
    pub refusing_writes: std::collections::HashSet<u32>,
}

impl View {
    /// Whether requests should be sent to `node` (alive or merely suspect; not down).
    pub fn is_live(&self, node: u32) -> bool {
        matches!(
            self.health.get(&node),
            Some(Health::Alive | Health::Suspect)
        )
    }

    /// Whether writes should be sent to `node`: live, and not announcing that its storage
    /// refuses writes.
    pub fn takes_writes(&self, node: u32) -> bool {
        self.is_live(node) && !self.refusing_writes.contains(&node)
    }
}

/// Counters reported by NodeStatus.
#[derive(Debug, Default)]
pub struct Counters {
    /// Read repairs sent (one per stale replica healed).
    pub read_repairs: AtomicU64,
    /// Hints replayed successfully.
    pub hints_replayed: AtomicU64,
    /// Keys dropped by cleanup after they moved to other owners.
    pub keys_cleaned: AtomicU64,
    /// Replica answers (reads) and streamed entries refused for carrying a version further
    /// ahead of this node's wall clock than the max clock offset.
    pub future_versions_refused: AtomicU64,
    /// Reads that also asked a spare replica because the first ones were slow.
    pub speculative_reads: AtomicU64,
    /// Replica writes that never left this node (queue full, no stream, no address).
    pub replica_not_sent: AtomicU64,
    /// Replica writes handed to the network that got no answer (stream broke, deadline).
    pub replica_unreachable: AtomicU64,
    /// Replica writes this node sent that a replica refused, by (replica, kind).
    pub replica_refusals: Mutex<HashMap<(u32, kvstore_proto::pb::Refusal), u64>>,
}

impl Counters {
    /// Counts one refusal of a replica write by `node`.
    pub fn count_refusal(&self, node: u32, refusal: kvstore_proto::pb::Refusal) {
        let mut m = self
            .replica_refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry((node, refusal)).or_default() += 1;
    }
}

/// Everything a node's tasks and handlers share.
pub struct Shared {
    /// The node's configuration (advertise address resolved).
    pub config: NodeConfig,
    /// Where entries are stored.
    pub engine: Arc<dyn Engine>,
    /// The same engine as the durable `Log`, when the node has a data directory.
    pub log: Option<Arc<Log>>,
    /// Hints for replicas that missed writes.
    pub hints: HintStore,
    /// When the last repair of each token arc started (what tombstone collection waits for).
    pub repairs: RepairLedger,
    /// Anti-entropy: the hash trees, the exchanges' throttle and figures.
    pub anti_entropy: AntiEntropy,
    /// The clock that stamps writes.
    pub hlc: Hlc,
    /// Peer connections.
    pub peers: Peers,
    /// Counters for NodeStatus.
    pub counters: Counters,
    /// Client requests by operation, consistency and outcome, with their latency (metrics).
    pub requests: crate::instruments::RequestInstruments,
    /// Whether this node's clock may stamp writes.
    pub clock: ClockGuard,
    /// The budget of client requests in flight.
    pub admission: Arc<Admission>,
    /// Replicas that made reads speculate recently (asked last).
    pub slow: SlowReplicas,
    /// The node's TLS settings, when its port speaks TLS.
    pub tls: Option<crate::tls::NodeTls>,
    /// Why this node's storage takes no writes (disk full, read-only), when it does not.
    storage_refusal: Mutex<Option<String>>,
    members: Mutex<MemberTable>,
    view: RwLock<Arc<View>>,
    started: Instant,
    /// Monotonic ms at the last announced-state change seen.
    ring_changed_at_ms: AtomicU64,
    /// Whether the node has exchanged its table with at least one peer (or needs none).
    synced: AtomicBool,
    /// Started with an empty data directory and not yet holding its ranges: it takes writes
    /// but answers no replica reads ([`Shared::restoring`]).
    restoring: AtomicBool,
    /// Raised to ask the node to stop (after a leave, or by the shutdown signal).
    stop: watch::Sender<bool>,
    /// The leave in progress or last attempted, if any.
    leaving: Mutex<Option<LeaveHandle>>,
    /// The node's random choices (gossip targets, repair jitter): seeded by a simulation, so
    /// its runs repeat; from the OS otherwise.
    rng: Mutex<rand::rngs::StdRng>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node_id", &self.config.node_id)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Assembles the shared state.
    pub fn new(
        config: NodeConfig,
        stores: Stores,
        hlc: Hlc,
        table: MemberTable,
        tls: Option<crate::tls::NodeTls>,
        network: Arc<dyn PeerNetwork>,
        seed: Option<u64>,
    ) -> Arc<Self> {
        let peers = Peers::new(
            network,
            config.cluster_secret.as_deref(),
            config.grpc_message_limit(),
        );
        let Stores {
            engine,
            log,
            hints,
            repairs,
        } = stores;
        let anti_entropy = AntiEntropy::new(config.anti_entropy, config.anti_entropy_bytes_per_sec);
        if anti_entropy.enabled {
            // From here on every stored change reaches the trees; the first rebuild covers
            // what the engine held before.
            engine.attach_observer(anti_entropy.trees.clone());
        }
        let (stop, _) = watch::channel(false);
        let config_max_offset = config.max_clock_offset_ms;
        let admission = Admission::new(
            config.max_inflight_requests,
            config.max_inflight_bytes,
            config.admission_target_latency,
        );
        let shared = Arc::new(Self {
            view: RwLock::new(Arc::new(build_view(&table, &config, 0))),
            members: Mutex::new(table),
            config,
            engine,
            log,
            hints,
            repairs,
            anti_entropy,
            hlc,
            peers,
            counters: Counters::default(),
            requests: Default::default(),
            clock: ClockGuard::new(config_max_offset),
            admission,
            slow: SlowReplicas::default(),
            tls,
            storage_refusal: Mutex::new(None),
            started: Instant::now(),
            ring_changed_at_ms: AtomicU64::new(0),
            synced: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            stop,
            leaving: Mutex::new(None),
            rng: Mutex::new(match seed {
                Some(seed) => rand::SeedableRng::seed_from_u64(seed),
                None => rand::SeedableRng::from_os_rng(),
            }),
        });
        shared.refresh_view();
        shared
    }

    /// Milliseconds since the node started: the failure detector's clock (monotonic).
    pub fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Wall-clock milliseconds since the Unix epoch (TTL, compaction).
    pub fn wall_ms(&self) -> u64 {
        self.hlc.physical_now_ms()
    }

    /// This node's id.
    pub fn id(&self) -> u32 {
        self.config.node_id
    }

    /// The current placement/liveness snapshot.
    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `f` on the member table (a short section: no await possible inside), then
    /// rebuilds the view. `f` returns whether announced states changed.
    pub fn with_members<T>(&self, f: impl FnOnce(&mut MemberTable, u64) -> (T, bool)) -> T {
        let now = self.mono_ms();
        let (out, changed) = {
            let mut table = self.lock_members();
            f(&mut table, now)
        };
        if changed {
            self.ring_changed_at_ms.store(now, Ordering::Relaxed);
        }
        self.refresh_view();
        out
    }

    /// Reads the member table (short section).
    pub fn read_members<T>(&self, f: impl FnOnce(&MemberTable, u64) -> T) -> T {
        let now = self.mono_ms();
        f(&self.lock_members(), now)
    }

    fn lock_members(&self) -> MutexGuard<'_, MemberTable> {
        // The table is only changed by whole-member replacements; a panic cannot tear it.
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the view from the member table (after a change or a detector tick).
    pub fn refresh_view(&self) {
        let view = {
            let table = self.lock_members();
            build_view(&table, &self.config, self.mono_ms())
        };
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }

    /// Milliseconds since the announced states last changed.
    pub fn ring_stable_for_ms(&self) -> u64 {
        self.mono_ms()
            .saturating_sub(self.ring_changed_at_ms.load(Ordering::Relaxed))
    }

    /// Marks that the member table has been exchanged with the cluster.
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    /// Whether the member table has been exchanged with the cluster.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Whether this node's data is still being restored (it started with an empty data
    /// directory, as after a disk replacement, and streams its ranges from the other
    /// replicas): until then its answers to replica reads would be "no such key" for every key
    /// it lost, so it gives none and coordinators ask another replica.
    pub fn restoring(&self) -> bool {
        self.restoring.load(Ordering::Acquire)
    }

    /// Sets [`Shared::restoring`].
    pub fn set_restoring(&self, restoring: bool) {
        self.restoring.store(restoring, Ordering::Release);
    }

    /// Recomputes the clock verdict from the latest samples and announces a change in gossip
    /// (and the log). Called after every probe round, and on the request path when the wall
    /// clock jumped.
    pub fn evaluate_clock(&self) -> Verdict {
        let peers: Vec<u32> = self.read_members(|t, _| {
            t.members()
                .filter(|m| m.id != self.id() && m.status != Status::Left)
                .map(|m| m.id)
                .collect()
        });
        let now = clock_guard::Now {
            wall_ms: self.wall_ms(),
            mono_ms: self.mono_ms(),
            hlc_last: self.hlc.last(),
        };
        let (verdict, changed) = self.clock.evaluate(&peers, now);
        if changed {
            match verdict.state {
                clock_guard::ClockState::Healthy => {
                    tracing::info!("clock healthy: this node coordinates writes")
                }
                _ => tracing::error!(
                    state = verdict.state.name(),
                    reason = %verdict.reason,
                    "clock not safe: this node coordinates no writes"
                ),
            }
        }
        self.announce_conditions();
        verdict
    }

    /// The clock verdict to act on now: recomputed first when the wall clock moved against
    /// the monotonic clock since the last one.
    pub fn clock_verdict(&self) -> Verdict {
        if self.clock.jumped(self.wall_ms(), self.mono_ms()) {
            return self.evaluate_clock();
        }
        self.clock.verdict()
    }

    /// Records whether this node's storage takes writes (`None`) or why not.
    pub fn set_storage_refusal(&self, why: Option<String>) {
        let changed = {
            let mut cur = self
                .storage_refusal
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let changed = cur.is_some() != why.is_some();
            if changed {
                match &why {
                    Some(w) => {
                        tracing::error!(reason = %w, "storage takes no writes: announcing it")
                    }
                    None => tracing::info!("storage takes writes again"),
                }
            }
            *cur = why;
            changed
        };
        if changed {
            self.announce_conditions();
        }
    }

    /// Why this node's storage takes no writes, when it does not.
    pub fn storage_refusal(&self) -> Option<String> {
        self.storage_refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn announce_conditions(&self) {
        let conditions = Conditions {
            clock_unhealthy: self.clock.verdict().state == clock_guard::ClockState::Unhealthy,
            writes_refused: self.storage_refusal().is_some(),
        };
        let changed = self.read_members(|t, _| t.me().conditions != conditions);
        if changed {
            self.with_members(|t, _| {
                t.set_my_conditions(conditions);
                // A new heartbeat carries the new conditions through gossip.
                t.beat();
                ((), false)
            });
        }
    }

    /// The peer `id`, if it is a known member with an address.
    pub fn peer(&self, id: u32) -> Option<Arc<Peer>> {
        let view = self.view();
        let addr = view.addresses.get(&id)?;
        match self.peers.get(id, addr) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(peer = id, error = %e, "cannot connect");
                None
            }
        }
    }

    /// The slot of the leave in progress (see [`crate::cluster::rebalance::start_leave`]).
    pub fn leave_slot(&self) -> MutexGuard<'_, Option<LeaveHandle>> {
        self.leaving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with the node's random generator (a short section).
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut rand::rngs::StdRng) -> T) -> T {
        f(&mut self.rng.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Asks the node to stop.
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// A receiver that turns true when the node is asked to stop.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Whether the node was asked to stop.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

fn build_view(table: &MemberTable, config: &NodeConfig, now_ms: u64) -> View {
    View {
        placement: Placement::new(table, config.vnodes, config.replication_factor),
        health: table
            .members()
            .map(|m| (m.id, table.health(m.id, now_ms)))
            .collect(),
        addresses: table.members().map(|m| (m.id, m.address.clone())).collect(),
        ring_version: table.ring_version(),
        my_status: table.me().status,
        refusing_writes: table
            .members()
            .filter(|m| m.conditions.writes_refused)
            .map(|m| m.id)
            .collect(),
    }
}

/// Waits until `rx` turns true.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The clock of a background task: ticks every period until the node stops. A late tick
/// delays the next one rather than bursting to catch up, so a paused or loaded node does not
/// flood its peers when it resumes.
pub struct Periodic {
    tick: tokio::time::Interval,
    stop: watch::Receiver<bool>,
}

impl Periodic {
    /// Ticks every `period` (the first at once) until `stop` turns true.
    pub fn new(period: std::time::Duration, stop: watch::Receiver<bool>) -> Self {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { tick, stop }
    }

    /// Waits for the next tick: `true`, or `false` once the node is stopping.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.stop.wait_for(|s| *s) => false,
            _ = self.tick.tick() => true,
        }
    }
}
