//! Scenarios: what one loadgen run does, read from a TOML file.
//!
//! A scenario names the cluster (`[cluster]`: a local cluster loadgen launches, or the
//! `endpoints` of an existing one), the workload (`[workload]`: operation mix, key count and
//! distribution, value sizes, TTL share), how the load is applied (`[run]`: clients, requests in
//! flight, duration or operation count, warm-up, open-loop target rate, seed) and a fault
//! timeline (`[[fault]]`). The schema with every field, unit and default is documented in
//! `scenarios/README.md`; this module is its single source of truth.
//!
//! Parsing is strict (`deny_unknown_fields`), and [`Scenario::load`] validates everything before
//! anything starts: an error names the file, the field and why ([`crate::LoadgenError::Scenario`]).
//! [`Scenario::resolve`] fills what the file may leave open (the seed, random fault targets) so
//! that the resolved scenario, written next to the results, reproduces the run.
//!
//! This module does not run anything and does no I/O besides reading the file.

mod clock_faults;
mod fault_timeline;
mod invalid;
mod link_faults;
mod membership;
pub mod nemesis;
mod partition_faults;
mod validate;
mod value_size;

use std::path::Path;

use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::{Deserialize, Serialize};

use crate::LoadgenError;

pub use value_size::ValueSize;

/// One run's complete description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name used for the results directory; defaults to the file's stem.
    #[serde(default)]
    pub name: String,
    /// Free text shown in the results and on stdout.
    #[serde(default)]
    pub description: String,
    /// The cluster under test.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// What operations are sent.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// How they are sent.
    #[serde(default)]
    pub run: RunSpec,
    /// The fault timeline, in any order (sorted by time when resolved).
    #[serde(default, rename = "fault", skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultSpec>,
    /// A seeded random fault timeline instead of `[[fault]]` ([`nemesis`]); replaced by the
    /// faults it draws when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nemesis: Option<nemesis::NemesisSpec>,
}

/// The cluster under test: launched locally, or existing `endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSpec {
    /// The store under test: kvstore, or a peer (`redis`, `etcd`) driven with the same
    /// workload for comparison. Defaults to kvstore.
    #[serde(skip_serializing_if = "StoreKind::is_kvstore")]
    pub kind: StoreKind,
    /// Nodes loadgen launches (1..=16). Ignored when `endpoints` is set. For Redis: one
    /// primary and `nodes - 1` replicas; for etcd: the member count.
    pub nodes: u32,
    /// Replication factor N (1..=nodes).
    pub replication: u32,
    /// Read quorum R (1..=N).
    pub read_quorum: u32,
    /// Write quorum W (1..=N).
    pub write_quorum: u32,
    /// Storage fsync policy passed to every node: `always`, `never` or `interval=<ms>`.
    pub fsync: String,
    /// Addresses (`host:port`) of an existing cluster; when set, nothing is launched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Each endpoint's Prometheus listener (`host:port`, same order as `endpoints`), scraped
    /// once a second for the nodes' CPU and memory (`nodes.csv`). Empty: not sampled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics_endpoints: Vec<String>,
    /// Launched nodes serve Prometheus metrics (`--metrics-listen` on a free port each); the
    /// last scrape of each is saved as `nodes/node-<i>.prom` when the measured phase ends.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub metrics: bool,
    /// Run the launched cluster with TLS everywhere: loadgen makes a CA and certificates
    /// (`kvstore-server certs`), nodes use mutual TLS between them and require loadgen's
    /// client certificate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Extra flags appended to every launched node's command line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_args: Vec<String>,
    /// Shell commands that inject faults into an existing cluster (`endpoints`). `{node}` is
    /// replaced by the node index, `{addr}` by its endpoint.
    #[serde(skip_serializing_if = "FaultCommands::is_empty")]
    pub fault_commands: FaultCommands,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            kind: StoreKind::Kvstore,
            nodes: 3,
            replication: 3,
            read_quorum: 2,
            write_quorum: 2,
            fsync: "never".into(),
            endpoints: Vec::new(),
            metrics_endpoints: Vec::new(),
            tls: false,
            metrics: false,
            server_args: Vec::new(),
            fault_commands: FaultCommands::default(),
        }
    }
}

impl ClusterSpec {
    /// True when loadgen launches the cluster itself.
    pub fn is_local(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// How many nodes the run addresses (launched or listed).
    pub fn node_count(&self) -> u32 {
        if self.is_local() {
            self.nodes
        } else {
            self.endpoints.len() as u32
        }
    }
}

/// Which store a scenario drives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// kvstore itself.
    #[default]
    Kvstore,
    /// Redis: one primary (`redis-server`), optionally with replicas and `WAIT`.
    Redis,
    /// etcd v3 (Raft): a cluster of members.
    Etcd,
}

impl StoreKind {
    /// The lowercase name used in files, flags and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kvstore => "kvstore",
            Self::Redis => "redis",
            Self::Etcd => "etcd",
        }
    }

    fn is_kvstore(&self) -> bool {
        *self == Self::Kvstore
    }
}

impl std::str::FromStr for StoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kvstore" => Ok(Self::Kvstore),
            "redis" => Ok(Self::Redis),
            "etcd" => Ok(Self::Etcd),
            other => Err(format!(
                "unknown store {other:?}: expected kvstore, redis or etcd"
            )),
        }
    }
}

/// Shell commands for faults on a cluster loadgen did not launch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultCommands {
    /// Kills node `{node}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<String>,
    /// Restarts node `{node}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Pauses node `{node}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// Resumes node `{node}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

impl FaultCommands {
    fn is_empty(&self) -> bool {
        self.kill.is_none()
            && self.restart.is_none()
            && self.pause.is_none()
            && self.resume.is_none()
    }

    /// The command configured for `action`, if any.
    pub fn for_action(&self, action: FaultAction) -> Option<&str> {
        match action {
            FaultAction::Kill => self.kill.as_deref(),
            FaultAction::Restart => self.restart.as_deref(),
            FaultAction::Pause => self.pause.as_deref(),
            FaultAction::Resume => self.resume.as_deref(),
            // Clock faults need loadgen's own nodes (libfaketime under them), and so do
            // crash_all (it kills and restarts every process at once) and disk faults (they
            // damage the files of the nodes' data directories).
            _ => None,
        }
    }
}

/// Key distributions, as in YCSB's core workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every record equally likely.
    Uniform,
    /// YCSB's ScrambledZipfian: Zipf's law with parameter `zipfian_theta`, hot keys scattered
    /// over the key space (and so over the ring).
    Zipfian,
    /// YCSB's SkewedLatest: the most recently inserted records are the hottest.
    Latest,
    /// `hotspot_op_fraction` of operations go to the first `hotspot_data_fraction` of records.
    Hotspot,
}

/// What operations are sent, on which keys, with which values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// Records inserted by the load phase before the run (1..=100,000,000), keys
    /// `<key_prefix><index>`.
    pub record_count: u64,
    /// Share of reads (0..=1). The five shares must add up to 1.
    pub read: f64,
    /// Share of updates (put on an existing record).
    pub update: f64,
    /// Share of inserts (put on a new record, appended to the key space).
    pub insert: f64,
    /// Share of deletes.
    pub delete: f64,
    /// Share of read-modify-writes (a read, then an update of the same key; YCSB F).
    pub read_modify_write: f64,
    /// Key distribution.
    pub distribution: Distribution,
    /// Zipfian skew theta, in (0, 1); YCSB's default 0.99.
    pub zipfian_theta: f64,
    /// Hotspot: share of the records that are hot, in (0, 1].
    pub hotspot_data_fraction: f64,
    /// Hotspot: share of operations sent to the hot records, in [0, 1].
    pub hotspot_op_fraction: f64,
    /// Value size in bytes: fixed, `{ min, max }` uniform, or `{ weighted = [[size, weight], ...] }`.
    pub value_size: ValueSize,
    /// Share of writes sent with a TTL (0..=1).
    pub ttl_share: f64,
    /// The TTL given to those writes, in milliseconds (> 0).
    pub ttl_ms: u64,
    /// Prefix of every key.
    pub key_prefix: String,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            record_count: 10_000,
            read: 0.5,
            update: 0.5,
            insert: 0.0,
            delete: 0.0,
            read_modify_write: 0.0,
            distribution: Distribution::Zipfian,
            zipfian_theta: 0.99,
            hotspot_data_fraction: 0.2,
            hotspot_op_fraction: 0.8,
            value_size: ValueSize::Fixed(1024),
            ttl_share: 0.0,
            ttl_ms: 60_000,
            key_prefix: "user".into(),
        }
    }
}

/// How the load is applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSpec {
    /// Independent clients, each a `Client` with its own connections (1..=1024).
    pub clients: u32,
    /// Requests each client keeps in flight (1..=1024).
    pub in_flight: u32,
    /// Measured duration in seconds, warm-up excluded (1..=3600). Exactly one of
    /// `duration_s` and `operations` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// Measured operation count, warm-up excluded (1..=1,000,000,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operations: Option<u64>,
    /// Seconds of load before measuring starts; its operations are not reported (0..=600).
    pub warmup_s: u64,
    /// Open loop: total operations per second, spread evenly over the clients. Latency is then
    /// measured from each operation's intended start (coordinated-omission correction); service
    /// time is reported beside it. Unset: closed loop, as fast as the cluster answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Seed for every random choice; drawn from the clock when unset and written to the
    /// resolved scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Seconds spent measuring the gRPC echo ceiling before the run (0 disables it and the
    /// efficiency figure; at most 60).
    pub echo_s: u64,
    /// Per-request deadline given to the client, in milliseconds (> 0).
    pub request_timeout_ms: u64,
    /// Record every operation to `history.csv` for the checker, then quiesce and append final
    /// reads from every replica.
    pub record_history: bool,
    /// Before the final reads, ask every live kvstore node for a repair cycle (what `kv
    /// repair` does) and wait for each to complete: what an operator runs before checking
    /// that replicas agree. Needs `record_history` and a kvstore cluster.
    pub final_repair: bool,
}

impl Default for RunSpec {
    fn default() -> Self {
        Self {
            clients: 1,
            in_flight: 1,
            duration_s: None,
            operations: None,
            warmup_s: 0,
            target_rate: None,
            seed: None,
            echo_s: 3,
            request_timeout_ms: 5_000,
            record_history: false,
            final_repair: false,
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultAction {
    /// SIGKILL the node's process.
    Kill,
    /// Start a killed node again on the same address and data directory.
    Restart,
    /// SIGSTOP the node's process.
    Pause,
    /// SIGCONT a paused node.
    Resume,
    /// Clock (`kind = "clock"`): the node's wall clock jumps by `delta_ms` (added to the offset
    /// in force) and stays there.
    Bump,
    /// Clock: the node's wall clock alternates between `+delta_ms` and true time every
    /// `period_ms` until `until_s`, then is back to true time.
    Strobe,
    /// Clock: the node's wall clock runs at `rate` times real speed until `until_s` (or the
    /// next clock fault on it), then keeps the offset it reached.
    Drift,
    /// Clock: the node's wall clock is back to true time.
    Reset,
    /// SIGKILL every node at once (every signal sent before any is reaped), then start them
    /// all again on their addresses and data directories. `node` is `"all"` (the default).
    #[serde(rename = "crash_all")]
    CrashAll,
    /// Disk (`kind = "disk"`, on a killed node): flip one bit in the largest data segment.
    Bitflip,
    /// Disk: cut the newest data segment to half its length.
    Truncate,
    /// Disk: flip one bit of the index snapshot.
    #[serde(rename = "corrupt_snapshot")]
    CorruptSnapshot,
    /// Disk: delete the index snapshot.
    #[serde(rename = "delete_snapshot")]
    DeleteSnapshot,
    /// Disk: delete every file of the hints engine.
    #[serde(rename = "delete_hints")]
    DeleteHints,
    /// Disk (on a running node): fill the node's data filesystem (a small tmpfs loadgen
    /// mounts for it; root only) until writes fail with ENOSPC.
    #[serde(rename = "disk_full")]
    DiskFull,
    /// Disk: free what `disk_full` took.
    #[serde(rename = "disk_free")]
    DiskFree,
    /// Membership (`kind = "membership"`): a new node (the next index, a fresh id and
    /// address) joins the running cluster; the timeline goes on once it serves its ranges.
    Join,
    /// Membership: the node leaves gracefully (hands its ranges over, as `kv leave` does) and
    /// its process ends. It is gone for the rest of the run.
    Leave,
    /// Membership: kill the node, wipe its data directory, start it again with the same id
    /// and address (a replaced disk).
    Wipe,
    /// Membership: kill the node for good and start a new node (the next index, a fresh id)
    /// in its place. The old id stays in the ring as a down member (no removenode yet).
    Replace,
    /// Partition (`kind = "partition"`): cut `node` off from every other node, both ways.
    Isolate,
    /// Partition: a majority (the first `n / 2 + 1` nodes) and a minority, both ways.
    Halves,
    /// Partition: two halves that do not reach each other, and `node` reaching both.
    Bridge,
    /// Partition: packets from `node` to `to` dropped, `to` to `node` delivered.
    #[serde(rename = "one_way")]
    OneWay,
    /// Partition: each node reaches only its two neighbours on the ring of node indexes.
    Ring,
    /// Partition: every cut link works again.
    Heal,
    /// Link (`kind = "link"`): drop each packet from `node` to `to` with `probability`.
    Loss,
    /// Link: the connections node `node` opens to node `to` go through a shaping proxy that
    /// delays every chunk by `delay_ms` (plus up to `jitter_ms`) and caps them at
    /// `bytes_per_sec` ([`crate::cluster::link_proxy`]).
    Slow,
    /// Link: every lossy link delivers everything again, every slow link is at full speed.
    Restore,
}

impl FaultAction {
    /// The lowercase name used in files and on screen.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Restart => "restart",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Bump => "bump",
            Self::Strobe => "strobe",
            Self::Drift => "drift",
            Self::Reset => "reset",
            Self::CrashAll => "crash_all",
            Self::Bitflip => "bitflip",
            Self::Truncate => "truncate",
            Self::CorruptSnapshot => "corrupt_snapshot",
            Self::DeleteSnapshot => "delete_snapshot",
            Self::DeleteHints => "delete_hints",
            Self::DiskFull => "disk_full",
            Self::DiskFree => "disk_free",
            Self::Join => "join",
            Self::Leave => "leave",
            Self::Wipe => "wipe",
            Self::Replace => "replace",
            Self::Isolate => "isolate",
            Self::Halves => "halves",
            Self::Bridge => "bridge",
            Self::OneWay => "one_way",
            Self::Ring => "ring",
            Self::Heal => "heal",
            Self::Loss => "loss",
            Self::Slow => "slow",
            Self::Restore => "restore",
        }
    }

    /// True for the membership actions (`kind = "membership"`): join, leave, wipe, replace.
    pub fn is_membership(self) -> bool {
        matches!(self, Self::Join | Self::Leave | Self::Wipe | Self::Replace)
    }

    /// True for the actions that start a node of a new index (join, replace).
    pub fn adds_node(self) -> bool {
        matches!(self, Self::Join | Self::Replace)
    }

    /// True for the partition actions (`kind = "partition"`), which cut links between nodes
    /// and leave their processes alone.
    pub fn is_partition(self) -> bool {
        matches!(
            self,
            Self::Isolate | Self::Halves | Self::Bridge | Self::OneWay | Self::Ring | Self::Heal
        )
    }

    /// True for the link actions (`kind = "link"`): packet loss or delay on a directed link,
    /// and their end.
    pub fn is_link(self) -> bool {
        matches!(self, Self::Loss | Self::Slow | Self::Restore)
    }

    /// True for the disk actions (`kind = "disk"`): the damage ones and disk_full/disk_free.
    pub fn is_disk(self) -> bool {
        self.is_damage() || matches!(self, Self::DiskFull | Self::DiskFree)
    }

    /// True for the disk actions that damage a killed node's data directory and leave it
    /// killed.
    pub fn is_damage(self) -> bool {
        matches!(
            self,
            Self::Bitflip
                | Self::Truncate
                | Self::CorruptSnapshot
                | Self::DeleteSnapshot
                | Self::DeleteHints
        )
    }

    /// True for the clock actions (`kind = "clock"`), which move a node's wall clock through
    /// libfaketime and leave its process state alone.
    pub fn is_clock(self) -> bool {
        matches!(self, Self::Bump | Self::Strobe | Self::Drift | Self::Reset)
    }
}

/// The family of a fault: what it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// The node's process (kill, restart, pause, resume): the default.
    Process,
    /// The node's wall clock (bump, strobe, drift, reset), through libfaketime.
    Clock,
    /// The data directory of a killed node (bitflip, truncate, corrupt_snapshot,
    /// delete_snapshot, delete_hints), or the filesystem of a running one (disk_full,
    /// disk_free).
    Disk,
    /// The cluster's membership (join, leave, wipe, replace).
    Membership,
    /// Links between nodes (isolate, halves, bridge, one_way, ring, heal): packets dropped
    /// inside a private network namespace the run creates ([`crate::cluster::partition`]).
    Partition,
    /// Lossy or slow links between nodes (loss, slow, restore), in the same namespace as
    /// partitions.
    Link,
}

/// Which nodes the clients reach while a partition is in force (`clients` of a partition
/// fault).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionClients {
    /// Every node: the partition is between nodes only (the default).
    #[default]
    All,
    /// Only the side of the client's home node (the node it first talked to): the nodes that
    /// node reaches. Packets from the client to the other nodes are dropped like the cut links.
    Follow,
}

impl PartitionClients {
    /// The name as scenarios spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Follow => "follow",
        }
    }
}

/// Which node a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NodeSelector {
    /// Node index (0-based, in launch or `endpoints` order).
    Index(u32),
    /// `"random"`: a seeded random node among those the action applies to (an up node for
    /// kill and pause, a killed one for restart, a paused one for resume).
    Named(NodeKeyword),
}

/// Keyword node selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKeyword {
    /// A seeded random eligible node.
    Random,
    /// Every node (`crash_all`).
    All,
}

/// One fault at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Seconds after measuring starts (warm-up excluded); fractions allowed.
    pub at_s: f64,
    /// What to do.
    pub action: FaultAction,
    /// On which node. [default: "all", which only crash_all takes]
    #[serde(default = "all_nodes")]
    pub node: NodeSelector,
    /// The fault's family; `"clock"` is required for the clock actions. [default: process]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FaultKind>,
    /// Clock bump / strobe: the clock's jump (bump, added to the offset in force) or its
    /// strobe position (ms, negative = behind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_ms: Option<i64>,
    /// Clock strobe: ms each position lasts (>= 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
    /// Clock drift: the clock's speed relative to real time (> 0, not 1; 1.01 = 1% fast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Clock strobe (required) and drift (optional): when the strobe or drift stops, seconds
    /// on the same base as `at_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_s: Option<f64>,
    /// Partition one_way: the node whose incoming packets from `node` are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    /// Link loss: the share of packets dropped, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Link slow: the delay added to every chunk each way, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Link slow: up to this much more delay, drawn per chunk (order is kept), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// Link slow: bytes per second each direction of the link carries at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// Partitions: which nodes the clients reach while it is in force. [default: all]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<PartitionClients>,
}

fn all_nodes() -> NodeSelector {
    NodeSelector::Named(NodeKeyword::All)
}

impl FaultSpec {
    /// The node index once resolved.
    pub fn node_index(&self) -> Option<u32> {
        match self.node {
            NodeSelector::Index(i) => Some(i),
            NodeSelector::Named(_) => None,
        }
    }
}

impl Scenario {
    /// True when the run steers node-to-node connections through shaping proxies (it has a
    /// `slow` link fault).
    pub fn shapes_links(&self) -> bool {
        link_faults::shapes_links(self)
    }

    /// True when a partition fault cuts the clients off with their home node's side
    /// (`clients = "follow"`): each client then connects from its own loopback address.
    pub fn partitions_clients(&self) -> bool {
        self.faults
            .iter()
            .any(|f| f.clients == Some(PartitionClients::Follow))
    }

    /// True when a fault (fixed or a `[nemesis]` kind) cuts or degrades links between nodes:
    /// the run then needs a network namespace of its own.
    pub fn acts_on_links(&self) -> bool {
        self.faults
            .iter()
            .any(|f| f.action.is_partition() || f.action.is_link())
            || self
                .nemesis
                .as_ref()
                .is_some_and(|n| n.kinds.keys().any(|k| nemesis::acts_on_links(k)))
    }

    /// Reads, parses and validates the scenario at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadgenError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadgenError::Scenario {
            file: path.to_path_buf(),
            field: "(file)".into(),
            why: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text`; `path` names the file in errors and gives the default name.
    pub fn parse(path: &Path, text: &str) -> Result<Self, LoadgenError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| {
            let (line, field) = locate(text, e.span());
            LoadgenError::Scenario {
                file: path.to_path_buf(),
                field,
                why: format!("{} (line {line})", e.message().trim()),
            }
        })?;
        if scenario.name.is_empty() {
            scenario.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into());
        }
        validate::validate(&scenario).map_err(|(field, why)| LoadgenError::Scenario {
            file: path.to_path_buf(),
            field,
            why,
        })?;
        Ok(scenario)
    }

    /// Fills the seed (from `fallback_seed` when the file has none) and the random fault
    /// targets, and sorts the timeline, so the result reproduces the run exactly. The resolved
    /// timeline is validated again (a random pick may clash with a later explicit index);
    /// `path` names the file in that error.
    pub fn resolve(mut self, fallback_seed: u64, path: &Path) -> Result<Self, LoadgenError> {
        let seed = *self.run.seed.get_or_insert(fallback_seed);
        if let Some(n) = self.nemesis.take() {
            // The drawn faults replace the table, so the resolved scenario replays this draw.
            let draw_seed = n.seed.unwrap_or(seed);
            self.faults = nemesis::expand(&nemesis::draw(&self, &n, draw_seed), draw_seed);
            let note = format!(
                "[[fault]] drawn by [nemesis] with seed {draw_seed} (mean interval {} s, \
                 {}..{} s each, at most {} at once)",
                n.mean_interval_s, n.duration_s[0], n.duration_s[1], n.max_concurrent
            );
            self.description = if self.description.is_empty() {
                note
            } else {
                format!("{} ({note})", self.description)
            };
        }
        self.faults.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xfa17_fa17_fa17_fa17);
        let mut states = vec![NodeState::Up; self.cluster.node_count() as usize];
        for fault in &mut self.faults {
            // Partitions name their nodes (validation refuses "random").
            if fault.action.is_partition() || fault.action.is_link() {
                continue;
            }
            if fault.action.is_clock() {
                // Any node's clock can be moved, whatever its process state.
                if let NodeSelector::Named(NodeKeyword::Random) = fault.node {
                    // Only launched nodes run under libfaketime.
                    let launched = self.cluster.node_count();
                    fault.node = NodeSelector::Index(rng.random_range(0..launched));
                }
                continue;
            }
            if fault.action == FaultAction::Join {
                // The new node takes the next index.
                fault.node = NodeSelector::Index(states.len() as u32);
                states.push(NodeState::Up);
                continue;
            }
            if let NodeSelector::Named(NodeKeyword::Random) = fault.node {
                let eligible: Vec<u32> = (0..states.len() as u32)
                    .filter(|&i| states[i as usize] == NodeState::eligible_for(fault.action))
                    .collect();
                // Validation guarantees an eligible node exists.
                let pick = eligible[rng.random_range(0..eligible.len())];
                fault.node = NodeSelector::Index(pick);
            }
            if let Some(i) = fault.node_index() {
                states[i as usize] = NodeState::after(fault.action);
            }
            if fault.action.adds_node() {
                states.push(NodeState::Up);
            }
        }
        validate::validate(&self).map_err(|(field, why)| LoadgenError::Scenario {
            file: path.to_path_buf(),
            field,
            why: format!("{why} (after resolving random fault targets with seed {seed})"),
        })?;
        Ok(self)
    }

    /// The same scenario against another store (`loadgen run --target`): the cluster's kind
    /// changes and the name gets `-<store>` appended, so its results sit beside the original's
    /// instead of mixing with them. Validated again (a peer cannot do everything kvstore does);
    /// `path` names the file in errors.
    pub fn retarget(mut self, kind: StoreKind, path: &Path) -> Result<Self, LoadgenError> {
        if kind == self.cluster.kind {
            return Ok(self);
        }
        if !self.cluster.endpoints.is_empty() {
            return Err(LoadgenError::Scenario {
                file: path.to_path_buf(),
                field: "cluster.endpoints".into(),
                why: format!(
                    "--target {} cannot retarget a scenario that names the endpoints of a running {}",
                    kind.name(),
                    self.cluster.kind.name()
                ),
            });
        }
        self.cluster.kind = kind;
        self.name = format!("{}-{}", self.name, kind.name());
        validate::validate(&self).map_err(|(field, why)| LoadgenError::Scenario {
            file: path.to_path_buf(),
            field,
            why: format!("{why} (with --target {})", kind.name()),
        })?;
        Ok(self)
    }

    /// Seconds the measured phase lasts, when set by duration.
    pub fn duration_s(&self) -> Option<u64> {
        self.run.duration_s
    }

    /// Total concurrency: clients times in-flight requests.
    pub fn concurrency(&self) -> u32 {
        self.run.clients * self.run.in_flight
    }

    /// The scenario as TOML, for `scenario.toml` in the results.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialize: {e}\n"))
    }
}

/// A node's state along the fault timeline, as validation and resolution track it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Serving.
    Up,
    /// Killed, not restarted yet.
    Killed,
    /// Paused, not resumed yet.
    Paused,
    /// Left the cluster, or replaced: no process, for the rest of the run.
    Gone,
}

impl NodeState {
    /// The state a node must be in for the process `action` to apply. (Clock actions apply
    /// in any state; callers skip them: `Up` is returned for them.)
    pub fn eligible_for(action: FaultAction) -> Self {
        match action {
            FaultAction::Restart => Self::Killed,
            FaultAction::Resume => Self::Paused,
            // Damage is done to a stopped node's files.
            a if a.is_damage() => Self::Killed,
            // Kill, pause, crash_all, disk_full / disk_free and the clock actions.
            _ => Self::Up,
        }
    }

    /// The state after the process `action` (clock actions leave the state: callers skip them;
    /// `Up` is returned for them).
    pub fn after(action: FaultAction) -> Self {
        match action {
            FaultAction::Kill => Self::Killed,
            FaultAction::Pause => Self::Paused,
            // Damage leaves the node stopped: a later restart finds it.
            a if a.is_damage() => Self::Killed,
            FaultAction::Leave | FaultAction::Replace => Self::Gone,
            // Restart, resume, crash_all, disk_full / disk_free and the clock actions.
            _ => Self::Up,
        }
    }

    /// Short name for status lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Killed => "KILLED",
            Self::Paused => "PAUSED",
            Self::Gone => "GONE",
        }
    }
}

/// The 1-based line of a parse error and the dotted key path at that point (best effort: the
/// innermost `[table]` header above the error plus the key on the error's line).
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> (usize, String) {
    let Some(span) = span else {
        return (0, "(document)".into());
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let mut table = String::new();
    for l in text[..start].lines() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
    }
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text.split('=').next().unwrap_or("").trim();
    let field = match (table.is_empty(), key.is_empty() || key.starts_with('[')) {
        (true, true) => "(document)".to_string(),
        (true, false) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    };
    (line, field)
}
