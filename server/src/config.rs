//! The node's configuration: a typed struct with defaults and `validate()`.
//!
//! Only the binary (`cli`) reads flags, files and the environment; the library takes this struct.
//! Timing knobs are here so tests can shorten them; the defaults suit a LAN cluster.

use std::path::PathBuf;
use std::time::Duration;

use kvstore_proto::ConsistencyLevel;
use kvstore_proto::limits::{DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES, GRPC_MESSAGE_LIMIT};

use crate::error::{Error, Result};

/// The cluster name a node has when `--cluster-name` is not given.
pub const DEFAULT_CLUSTER_NAME: &str = "kvstore";

/// Faults that break one guarantee each, for proving that the checker catches them. They are
/// only settable with the `fault-injection` cargo feature; release builds always run with none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Acknowledge a put before any replica wrote it, and drop it.
    pub ack_before_write: bool,
    /// On a conflict keep the older version (breaks LWW).
    pub keep_older: bool,
    /// Skip read repair and hinted handoff.
    pub no_repair: bool,
    /// Skip hinted handoff only (read repair still runs): a node that missed writes converges
    /// only for keys something reads through the cluster.
    pub no_hints: bool,
    /// Forget tombstones at compaction (resurrects deleted values).
    pub lose_tombstones: bool,
}

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id: unique in the cluster, also the tie-breaker in versions.
    pub node_id: u32,
    /// The address other nodes and clients reach this node on (`host:port`). When the node is
    /// started on port 0, `node::run` replaces it with the bound address.
    pub advertise_address: String,
    /// The address this node's connections to its peers start from: the listen address when
    /// the node listens on one address (set at start), the system's choice otherwise.
    pub peer_source_ip: Option<std::net::IpAddr>,
    /// Where the node keeps its data, hints, clock ceiling and lock file. `None`: in memory only
    /// (tests), nothing survives a restart.
    pub data_dir: Option<PathBuf>,
    /// Seed nodes to join through; empty for the first node of a new cluster.
    pub join: Vec<String>,
    /// Started with `--replace`: this node takes the place of the dead member with its id
    /// (which must be known, not live, and not removed), from an empty data directory.
    pub replace: bool,
    /// Replicas per key (N).
    pub replication_factor: usize,
    /// Default read consistency (R) when a request asks for the default.
    pub read_consistency: ConsistencyLevel,
    /// Default write consistency (W) when a request asks for the default.
    pub write_consistency: ConsistencyLevel,
    /// Virtual nodes per member on the ring.
    pub vnodes: u32,
    /// Storage fsync policy, as the engine parses it (`always`, `interval=<ms>`, `never`).
    pub fsync: String,
    /// A remote version further ahead of the local clock than this is refused.
    pub max_clock_offset_ms: u64,
    /// Hints kept per down replica; beyond it, new hints are dropped and counted (read repair
    /// heals those keys).
    pub max_hints_per_target: usize,
    /// Hints replayed per batch.
    pub hint_replay_batch: usize,
    /// How long a tombstone (or expired value) is kept at least; it is collected after that
    /// only once a repair of its range started after it.
    pub tombstone_grace: Duration,
    /// Bytes of hints held at most, over all targets; beyond it new hints are dropped.
    pub max_hint_bytes: u64,
    /// A hint whose write is older than this is dropped, not replayed (Cassandra's
    /// `max_hint_window`); below the tombstone grace, so no hint outlives a delete's tombstone.
    pub max_hint_window: Duration,
    /// When set, every NodeInternal call must carry it, or gets UNAUTHENTICATED.
    pub cluster_secret: Option<String>,
    /// Hand this node's ranges over and leave the cluster on SIGTERM/SIGINT.
    pub leave_on_shutdown: bool,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Longest key accepted, in bytes.
    pub max_key_bytes: usize,
    /// How long the coordinator waits for replicas before answering with an unknown outcome.
    pub request_timeout: Duration,
    /// Push-pull gossip period.
    pub gossip_interval: Duration,
    /// Heartbeat probe period (each peer is pinged once per period).
    pub ping_interval: Duration,
    /// A member silent this long is suspect.
    pub suspect_after: Duration,
    /// A member silent this long is down.
    pub down_after: Duration,
    /// Wait after every member has seen a join or leave before moving data, so writes already
    /// in flight under the old ring have landed.
    pub transition_grace: Duration,
    /// Period of the storage maintenance (snapshot, compaction) task.
    pub maintenance_interval: Duration,
    /// Client requests this node works on at once; beyond it requests are shed with
    /// RESOURCE_EXHAUSTED.
    pub max_inflight_requests: usize,
    /// Bytes of client requests (keys and values) this node works on at once; beyond it
    /// requests are shed with RESOURCE_EXHAUSTED.
    pub max_inflight_bytes: usize,
    /// Mean latency of client requests above which the in-flight byte limit is lowered (and
    /// below half of which it grows back towards `max_inflight_bytes`).
    pub admission_target_latency: Duration,
    /// A read whose first R replicas have not all answered after this long also asks a spare
    /// replica (Cassandra's `speculative_retry`); `None` never does.
    pub speculative_retry: Option<Duration>,
    /// The cluster's name: nodes of differently named clusters refuse each other, and a data
    /// directory remembers the name it was first used with.
    pub cluster_name: String,
    /// Serve the internal (node-to-node) API on a non-loopback address without a cluster
    /// secret: anyone who can reach the port could then write any version to any key.
    pub insecure: bool,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP, no authentication);
    /// `None` (the default) serves none.
    pub metrics_listen: Option<String>,
    /// TLS for the gRPC port (clients and peers), when set; see [`crate::tls`].
    pub tls: Option<crate::tls::TlsPaths>,
    /// Anti-entropy on: hash trees kept on the write path and exchanged between replicas
    /// (`--no-anti-entropy` turns both off; then only hints and read repair converge replicas).
    pub anti_entropy: bool,
    /// Mean time between repair cycles, jittered by a quarter either way; `None`: only when
    /// asked (`kv repair`).
    pub anti_entropy_interval: Option<Duration>,
    /// Each tree is rebuilt from the engine this often (catches what the write path missed).
    pub anti_entropy_rebuild_interval: Duration,
    /// Keys one exchange copies at most; the rest waits for the next cycle.
    pub anti_entropy_max_keys: usize,
    /// Anti-entropy bytes per second at most (trees, key lists and entries, both ways).
    pub anti_entropy_bytes_per_sec: u64,
    /// Faults to inject (tests of the checker only).
    pub faults: Faults,
}

/// Default mean time between repair cycles.
pub const DEFAULT_ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(600);
/// Default period of the trees' rebuild from the engine.
pub const DEFAULT_ANTI_ENTROPY_REBUILD_INTERVAL: Duration = Duration::from_secs(3600);
/// Default cap on keys copied per exchange.
pub const DEFAULT_ANTI_ENTROPY_MAX_KEYS: usize = 100_000;
/// Default anti-entropy bandwidth: 32 MiB/s.
pub const DEFAULT_ANTI_ENTROPY_BYTES_PER_SEC: u64 = 32 << 20;

/// Refuses to serve the internal API beyond loopback without protection: a node listening on
/// (or advertising) a non-loopback address needs peer TLS (mutual: only holders of a node
/// certificate can make node-only calls) or a cluster secret, unless `insecure`.
pub fn check_exposure(listen: &str, config: &NodeConfig) -> Result<()> {
    let exposed = [listen, config.advertise_address.as_str()]
        .into_iter()
        .find(|a| !is_loopback(a));
    let protected = config.tls.is_some() || config.cluster_secret.is_some();
    match exposed {
        Some(addr) if !protected && !config.insecure => Err(Error::Config(format!(
            "this node serves the internal API on {addr}, which is not a loopback address, \
             unprotected: anyone who reaches the port could write any version of any key. Use \
             TLS (--cert/--key with --peer-cert/--peer-key/--peer-ca on every node; \
             `kvstore-server certs` makes them), or at least --cluster-secret (or \
             KVSTORE_CLUSTER_SECRET) on every node, or pass --insecure to accept the risk"
        ))),
        _ => Ok(()),
    }
}

/// Whether `address` (`host:port`) names this machine's loopback interface only.
pub fn is_loopback(address: &str) -> bool {
    match address.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => address
            .rsplit_once(':')
            .is_some_and(|(host, _)| host == "localhost"),
    }
}

/// Default wait before a read also asks a spare replica: well above a healthy replica's p99
/// on a loaded machine (a few ms), far below the failure detector's seconds.
pub const DEFAULT_SPECULATIVE_RETRY: Duration = Duration::from_millis(50);

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertise_address: "127.0.0.1:0".into(),
            peer_source_ip: None,
            data_dir: None,
            join: Vec::new(),
            replace: false,
            replication_factor: 3,
            read_consistency: ConsistencyLevel::Quorum,
            write_consistency: ConsistencyLevel::Quorum,
            vnodes: 64,
            fsync: "always".into(),
            max_clock_offset_ms: crate::hlc::DEFAULT_MAX_CLOCK_OFFSET_MS,
            max_hints_per_target: 100_000,
            hint_replay_batch: 256,
            tombstone_grace: crate::storage::DEFAULT_TOMBSTONE_GRACE,
            max_hint_bytes: crate::cluster::hints::DEFAULT_MAX_HINT_BYTES,
            max_hint_window: crate::cluster::hints::DEFAULT_HINT_WINDOW,
            cluster_secret: None,
            leave_on_shutdown: false,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            request_timeout: Duration::from_secs(2),
            gossip_interval: Duration::from_millis(1000),
            ping_interval: Duration::from_millis(500),
            suspect_after: Duration::from_millis(2000),
            down_after: Duration::from_millis(4000),
            transition_grace: Duration::from_millis(2000),
            maintenance_interval: Duration::from_secs(60),
            max_inflight_requests: crate::admission::DEFAULT_MAX_INFLIGHT_REQUESTS,
            max_inflight_bytes: crate::admission::DEFAULT_MAX_INFLIGHT_BYTES,
            admission_target_latency: crate::admission::DEFAULT_TARGET_LATENCY,
            speculative_retry: Some(DEFAULT_SPECULATIVE_RETRY),
            cluster_name: DEFAULT_CLUSTER_NAME.into(),
            insecure: false,
            metrics_listen: None,
            tls: None,
            anti_entropy: true,
            anti_entropy_interval: Some(DEFAULT_ANTI_ENTROPY_INTERVAL),
            anti_entropy_rebuild_interval: DEFAULT_ANTI_ENTROPY_REBUILD_INTERVAL,
            anti_entropy_max_keys: DEFAULT_ANTI_ENTROPY_MAX_KEYS,
            anti_entropy_bytes_per_sec: DEFAULT_ANTI_ENTROPY_BYTES_PER_SEC,
            faults: Faults::default(),
        }
    }
}

impl NodeConfig {
    /// Checks every bound; the message names the field and the limit.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.node_id == 0 {
            return bad("node_id must be > 0 (0 marks versions of no node)".into());
        }
        if !(1..=16).contains(&self.replication_factor) {
            return bad(format!(
                "replication_factor must be in 1..=16, got {}",
                self.replication_factor
            ));
        }
        if !(1..=1024).contains(&self.vnodes) {
            return bad(format!("vnodes must be in 1..=1024, got {}", self.vnodes));
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > DEFAULT_MAX_KEY_BYTES {
            return bad(format!(
                "max_key_bytes must be in 1..={DEFAULT_MAX_KEY_BYTES}, got {}",
                self.max_key_bytes
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > 64 * 1024 * 1024 {
            return bad(format!(
                "max_value_bytes must be in 1..=67108864 (64 MiB), got {}",
                self.max_value_bytes
            ));
        }
        if self.max_hints_per_target == 0 || self.hint_replay_batch == 0 {
            return bad("max_hints_per_target and hint_replay_batch must be > 0".into());
        }
        if self.anti_entropy_max_keys == 0 || self.anti_entropy_bytes_per_sec < 4096 {
            return bad(format!(
                "anti_entropy_max_keys must be > 0 and anti_entropy_bytes_per_sec at least 4096, \
                 got {} and {}",
                self.anti_entropy_max_keys, self.anti_entropy_bytes_per_sec
            ));
        }
        if self.anti_entropy_rebuild_interval < Duration::from_secs(1) {
            return bad(format!(
                "anti_entropy_rebuild_interval must be at least 1000 ms, got {} ms",
                self.anti_entropy_rebuild_interval.as_millis()
            ));
        }
        if self.max_hint_bytes == 0 {
            return bad("max_hint_bytes must be > 0".into());
        }
        let grace = self.tombstone_grace;
        if self.max_hint_window.is_zero() || self.max_hint_window >= grace {
            return bad(format!(
                "max_hint_window_ms must be in 1..{} (below the tombstone grace period, \
                 tombstone_grace_ms, or a late hint could bring back a value whose delete was \
                 already collected), got {}",
                grace.as_millis(),
                self.max_hint_window.as_millis()
            ));
        }
        if self.suspect_after >= self.down_after {
            return bad(format!(
                "suspect_after ({:?}) must be shorter than down_after ({:?})",
                self.suspect_after, self.down_after
            ));
        }
        if self.request_timeout.is_zero() || self.gossip_interval.is_zero() {
            return bad("request_timeout and gossip_interval must be > 0".into());
        }
        if self.cluster_name.is_empty()
            || self.cluster_name.len() > 128
            || !self
                .cluster_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad(format!(
                "cluster_name must be 1 to 128 characters of [A-Za-z0-9-_.], got {:?}",
                self.cluster_name
            ));
        }
        if let Some(secret) = &self.cluster_secret
            && secret
                .parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .is_err()
        {
            return bad(
                "cluster_secret must be printable ASCII (it travels as a gRPC header value)".into(),
            );
        }
        if self.max_inflight_requests == 0 || self.max_inflight_bytes == 0 {
            return bad(format!(
                "max_inflight_requests and max_inflight_bytes must be > 0, got {} and {}",
                self.max_inflight_requests, self.max_inflight_bytes
            ));
        }
        if self.admission_target_latency.is_zero() {
            return bad("admission_target_latency must be > 0 ms".into());
        }
        if let Err(e) = self.fsync.parse::<crate::storage::FsyncPolicy>() {
            return bad(format!("fsync: {e}"));
        }
        if self.advertise_address.is_empty() {
            return bad("advertise_address must be host:port".into());
        }
        Ok(())
    }

    /// The gRPC message limit both directions use: the protocol default, raised when the node
    /// accepts values larger than the default maximum.
    pub fn grpc_message_limit(&self) -> usize {
        GRPC_MESSAGE_LIMIT.max(self.max_value_bytes + self.max_key_bytes + 1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_beyond_loopback_needs_peer_tls_a_secret_or_insecure() {
        let tls = crate::tls::TlsPaths {
            cert: "n.pem".into(),
            key: "n.key".into(),
            ca: None,
            client_cert_auth: false,
            peer_cert: "n.pem".into(),
            peer_key: "n.key".into(),
            peer_ca: "ca.pem".into(),
        };
        type Setup = fn(&mut NodeConfig, &crate::tls::TlsPaths);
        let cases: [(&str, &str, Setup, bool); 7] = [
            ("loopback", "127.0.0.1:7000", |_, _| {}, true),
            ("localhost", "localhost:7000", |_, _| {}, true),
            ("exposed, nothing", "10.0.0.5:7000", |_, _| {}, false),
            (
                "exposed, peer TLS",
                "10.0.0.5:7000",
                |c, t| c.tls = Some(t.clone()),
                true,
            ),
            (
                "exposed, secret",
                "10.0.0.5:7000",
                |c, _| c.cluster_secret = Some("s".into()),
                true,
            ),
            (
                "exposed, insecure",
                "10.0.0.5:7000",
                |c, _| c.insecure = true,
                true,
            ),
            ("all interfaces", "0.0.0.0:7000", |_, _| {}, false),
        ];
        for (name, listen, setup, ok) in cases {
            let mut c = NodeConfig {
                advertise_address: listen.into(),
                ..NodeConfig::default()
            };
            setup(&mut c, &tls);
            let r = check_exposure(listen, &c);
            assert_eq!(r.is_ok(), ok, "{name}: {r:?}");
            if let Err(e) = r {
                let e = e.to_string();
                assert!(
                    e.contains("--peer-ca") && e.contains("--cluster-secret"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        NodeConfig::default().validate().unwrap();
        type Breaker = fn(&mut NodeConfig);
        let cases: [(Breaker, &str); 4] = [
            (|c| c.node_id = 0, "node_id"),
            (|c| c.replication_factor = 0, "replication_factor"),
            (|c| c.vnodes = 0, "vnodes"),
            (|c| c.suspect_after = c.down_after, "suspect_after"),
        ];
        for (breaker, field) in cases {
            let mut c = NodeConfig::default();
            breaker(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
