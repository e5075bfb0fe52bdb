//! The `kvstore-server` command line: flags (each also settable in a `--config` TOML file;
//! a flag given on the command line wins over the file), logging from `RUST_LOG`, the tokio
//! runtime, and SIGTERM/SIGINT handling.
//!
//! On start it prints `listening on <addr>` (the bound address, useful with port 0) and, once
//! the node serves, `ready`, each as one line on stdout, so launchers can wait for them. A port
//! in use or a locked data directory ends it at once with a clear message and exit code 1;
//! bad flags with exit code 2.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kvstore_proto::ConsistencyLevel;
use serde::Deserialize;

use crate::config::NodeConfig;

/// One node of a kvstore cluster: a Dynamo-style replicated key-value store.
///
/// A flag given twice takes its last value, so a wrapper script's defaults can be overridden by
/// appending flags.
///
/// `kvstore-server certs --out DIR --nodes N` writes a CA, node and client certificates for a
/// TLS cluster (see `kvstore-server certs --help`).
#[derive(Debug, Default, Parser, Deserialize)]
#[command(name = "kvstore-server", version, args_override_self = true)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Args {
    /// TOML file with any of these settings (kebab-case keys, e.g. `node-id = 1`); flags given
    /// on the command line override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id: unique in the cluster, > 0 (also breaks ties between versions).
    #[arg(long)]
    pub node_id: Option<u32>,
    /// Address to serve gRPC on, e.g. 127.0.0.1:7001. Port 0 picks a free port, printed as
    /// `listening on ADDR`. [default: 127.0.0.1:0]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address other nodes and clients use to reach this node [default: the bound address].
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// Data directory (engine, hints, clock ceiling, member table); locked while the node runs.
    /// Without it the node keeps everything in memory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seed node to join the cluster through (repeatable). Omit for the first node.
    #[arg(long, value_name = "ADDR")]
    #[serde(default)]
    pub join: Vec<String>,
    /// Take the place of dead node ID (Cassandra's replace_address): this node gets its id and
    /// ring position, streams its ranges from the other replicas and then serves them. Needs
    /// --join and an empty data directory; --node-id may be omitted (or must be ID).
    #[arg(long, value_name = "ID")]
    pub replace: Option<u32>,
    /// Replicas per key (N). [default: 3]
    #[arg(long, value_name = "N")]
    pub replication_factor: Option<usize>,
    /// Default read consistency (R): one, quorum or all. [default: quorum]
    #[arg(long, value_name = "LEVEL")]
    pub read_quorum: Option<String>,
    /// Default write consistency (W): one, quorum or all. [default: quorum]
    #[arg(long, value_name = "LEVEL")]
    pub write_quorum: Option<String>,
    /// Virtual nodes per member on the ring. [default: 64]
    #[arg(long)]
    pub vnodes: Option<u32>,
    /// Storage fsync policy: always (group commit), interval=MS (a sync every MS milliseconds),
    /// or never. [default: always]
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<String>,
    /// Refuse replica versions further ahead of this node's clock than this. [default: 500]
    #[arg(long, value_name = "MS")]
    pub max_clock_offset_ms: Option<u64>,
    /// Hints kept per down replica; beyond it hints are dropped (read repair heals those
    /// keys). [default: 100000]
    #[arg(long, value_name = "N")]
    pub max_hints_per_target: Option<usize>,
    /// Hints replayed per batch when a replica comes back. [default: 256]
    #[arg(long, value_name = "N")]
    pub hint_replay_batch: Option<usize>,
    /// Bytes of hints kept at most, over all down replicas; beyond it new hints are dropped
    /// (repair heals those keys). [default: 1073741824]
    #[arg(long, value_name = "BYTES")]
    pub max_hint_bytes: Option<u64>,
    /// A tombstone (or expired value) is kept at least this long, and after that only until a
    /// repair of its range that started after it completes. [default: 3600000, 1 h]
    #[arg(long, value_name = "MS")]
    pub tombstone_grace_ms: Option<u64>,
    /// Hints of writes older than this are dropped, not replayed (repair covers them); must be
    /// below the tombstone grace period. [default: 900000, 15 min]
    #[arg(long, value_name = "MS")]
    pub max_hint_window_ms: Option<u64>,
    /// Shared secret every node-to-node call must carry (x-cluster-secret); calls without it
    /// get UNAUTHENTICATED.
    #[arg(long, value_name = "SECRET", env = "KVSTORE_CLUSTER_SECRET")]
    pub cluster_secret: Option<String>,
    /// The cluster's name: nodes of differently named clusters refuse each other, and a data
    /// directory keeps the name it was first used with. [default: kvstore]
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Allow serving on a non-loopback address without --cluster-secret (anyone who reaches
    /// the port can then write to the cluster).
    #[arg(long)]
    #[serde(default)]
    pub insecure: bool,
    /// On SIGTERM/SIGINT, hand this node's ranges to their new owners and leave the cluster.
    #[arg(long)]
    #[serde(default)]
    pub leave_on_shutdown: bool,
    /// Client requests a node works on at once; beyond it requests are shed with
    /// RESOURCE_EXHAUSTED (clients back off and retry). [default: 2048]
    #[arg(long, value_name = "N")]
    pub max_inflight_requests: Option<usize>,
    /// Bytes of client requests (keys and values) a node works on at once; beyond it requests
    /// are shed with RESOURCE_EXHAUSTED. [default: 67108864]
    #[arg(long, value_name = "BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// While client requests take longer than MS on average, the in-flight byte limit is
    /// lowered (down to 4 MiB), so that what is admitted is answered in time. [default: 250]
    #[arg(long, value_name = "MS")]
    pub admission_target_latency_ms: Option<u64>,
    /// A read whose first R replicas have not all answered after MS also asks a spare replica
    /// (0 never does). [default: 50]
    #[arg(long, value_name = "MS")]
    pub speculative_retry_ms: Option<u64>,
    /// Largest value accepted, in bytes. [default: 8388608]
    #[arg(long, value_name = "BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Longest key accepted, in bytes. [default: 65536]
    #[arg(long, value_name = "BYTES")]
    pub max_key_bytes: Option<usize>,
    /// How long a coordinator waits for replicas before reporting an unknown outcome.
    /// [default: 2000]
    #[arg(long, value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// Gossip period. [default: 1000]
    #[arg(long, value_name = "MS")]
    pub gossip_interval_ms: Option<u64>,
    /// Heartbeat probe period. [default: 500]
    #[arg(long, value_name = "MS")]
    pub ping_interval_ms: Option<u64>,
    /// Silence before a member is suspect. [default: 2000]
    #[arg(long, value_name = "MS")]
    pub suspect_after_ms: Option<u64>,
    /// Silence before a member is down (its writes become hints). [default: 4000]
    #[arg(long, value_name = "MS")]
    pub down_after_ms: Option<u64>,
    /// Wait after a join or leave was seen by every member before data moves. [default: 2000]
    #[arg(long, value_name = "MS")]
    pub transition_grace_ms: Option<u64>,
    /// Serve Prometheus metrics (`GET /metrics`, plain HTTP, no authentication) on ADDR, e.g.
    /// 127.0.0.1:9100. Off unless given; a port 0 picks a free port, printed as
    /// `metrics on ADDR`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// TLS: the certificate this node serves with (PEM), to clients and peers alike. Needs
    /// --key and the --peer-* flags (`kvstore-server certs` makes them all).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// TLS: the private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// TLS: the CA client certificates are checked against (with --client-cert-auth).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// TLS: clients must present a certificate issued by --ca (or by --peer-ca).
    #[arg(long)]
    #[serde(default)]
    pub client_cert_auth: bool,
    /// TLS: the certificate this node presents to other nodes (mutual TLS, always required
    /// between nodes).
    #[arg(long, value_name = "FILE")]
    pub peer_cert: Option<PathBuf>,
    /// TLS: the private key of --peer-cert.
    #[arg(long, value_name = "FILE")]
    pub peer_key: Option<PathBuf>,
    /// TLS: the CA other nodes' certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,
    /// Storage snapshot and compaction period. [default: 60000]
    #[arg(long, value_name = "MS")]
    pub maintenance_interval_ms: Option<u64>,
    /// Turn anti-entropy off: no hash trees on the write path, no repair exchanges (replicas
    /// then converge only through hints and read repair, and tombstones are never collected).
    #[arg(long)]
    #[serde(default)]
    pub no_anti_entropy: bool,
    /// Mean time between repair cycles (jittered by a quarter); 0: only `kv repair`.
    /// [default: 600000]
    #[arg(long, value_name = "MS")]
    pub anti_entropy_interval_ms: Option<u64>,
    /// Rebuild each hash tree from the storage engine this often. [default: 3600000]
    #[arg(long, value_name = "MS")]
    pub anti_entropy_rebuild_interval_ms: Option<u64>,
    /// Keys one repair exchange copies at most. [default: 100000]
    #[arg(long, value_name = "N")]
    pub anti_entropy_max_keys: Option<usize>,
    /// Anti-entropy traffic per second at most, in bytes. [default: 33554432]
    #[arg(long, value_name = "BYTES")]
    pub anti_entropy_bytes_per_sec: Option<u64>,
    /// FAULT INJECTION (tests only): acknowledge puts without writing them.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    #[serde(default)]
    pub fault_ack_before_write: bool,
    /// FAULT INJECTION (tests only): keep the older version on conflict.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    #[serde(default)]
    pub fault_keep_older: bool,
    /// FAULT INJECTION (tests only): no read repair, no hints.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    #[serde(default)]
    pub fault_no_repair: bool,
    /// FAULT INJECTION (tests only): no hints (read repair still runs).
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    #[serde(default)]
    pub fault_no_hints: bool,
    /// FAULT INJECTION (tests only): lose tombstones at compaction.
    #[cfg(feature = "fault-injection")]
    #[arg(long, hide = true)]
    #[serde(default)]
    pub fault_lose_tombstones: bool,
}

impl Args {
    /// Fills every setting not given on the command line from `file`.
    fn overlay(mut self, file: Args) -> Self {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            node_id,
            replace,
            listen,
            advertise,
            data_dir,
            replication_factor,
            read_quorum,
            write_quorum,
            vnodes,
            fsync,
            max_clock_offset_ms,
            max_hints_per_target,
            hint_replay_batch,
            max_hint_bytes,
            max_hint_window_ms,
            tombstone_grace_ms,
            cluster_secret,
            cluster_name,
            max_value_bytes,
            max_key_bytes,
            max_inflight_requests,
            max_inflight_bytes,
            admission_target_latency_ms,
            speculative_retry_ms,
            request_timeout_ms,
            gossip_interval_ms,
            ping_interval_ms,
            suspect_after_ms,
            down_after_ms,
            transition_grace_ms,
            maintenance_interval_ms,
            anti_entropy_interval_ms,
            anti_entropy_rebuild_interval_ms,
            anti_entropy_max_keys,
            anti_entropy_bytes_per_sec,
            metrics_listen,
            cert,
            key,
            ca,
            peer_cert,
            peer_key,
            peer_ca
        );
        self.client_cert_auth |= file.client_cert_auth;
        if self.join.is_empty() {
            self.join = file.join;
        }
        self.leave_on_shutdown |= file.leave_on_shutdown;
        self.insecure |= file.insecure;
        self.no_anti_entropy |= file.no_anti_entropy;
        #[cfg(feature = "fault-injection")]
        {
            self.fault_ack_before_write |= file.fault_ack_before_write;
            self.fault_keep_older |= file.fault_keep_older;
            self.fault_no_repair |= file.fault_no_repair;
            self.fault_no_hints |= file.fault_no_hints;
            self.fault_lose_tombstones |= file.fault_lose_tombstones;
        }
        self
    }

    /// The listen address and the node configuration these settings describe.
    pub fn into_config(self) -> Result<(String, NodeConfig), String> {
        let mut c = NodeConfig::default();
        let listen = self.listen.unwrap_or_else(|| "127.0.0.1:0".into());
        c.node_id = match (self.node_id, self.replace) {
            (Some(id), Some(dead)) if id != dead => {
                return Err(format!(
                    "--replace {dead} takes node {dead}'s place: --node-id must be {dead} or \
                     omitted, not {id}"
                ));
            }
            (_, Some(dead)) => dead,
            (Some(id), None) => id,
            (None, None) => return Err("--node-id is required (a unique id > 0)".into()),
        };
        c.replace = self.replace.is_some();
        if c.replace && self.join.is_empty() {
            return Err(
                "--replace needs --join ADDR (a live member to learn the cluster from)".into(),
            );
        }
        c.advertise_address = self.advertise.unwrap_or_else(|| listen.clone());
        c.data_dir = self.data_dir;
        c.join = self.join;
        let level = |name: &str, v: Option<String>, d| -> Result<ConsistencyLevel, String> {
            v.map(|s| s.parse().map_err(|e| format!("--{name}: {e}")))
                .unwrap_or(Ok(d))
        };
        c.read_consistency = level("read-quorum", self.read_quorum, c.read_consistency)?;
        c.write_consistency = level("write-quorum", self.write_quorum, c.write_consistency)?;
        macro_rules! set {
            ($($f:ident => $t:ident),*) => { $( if let Some(v) = self.$f { c.$t = v; } )* };
        }
        set!(
            replication_factor => replication_factor,
            vnodes => vnodes,
            fsync => fsync,
            max_clock_offset_ms => max_clock_offset_ms,
            max_hints_per_target => max_hints_per_target,
            hint_replay_batch => hint_replay_batch,
            max_hint_bytes => max_hint_bytes,
            max_value_bytes => max_value_bytes,
            max_key_bytes => max_key_bytes,
            max_inflight_requests => max_inflight_requests,
            max_inflight_bytes => max_inflight_bytes,
            anti_entropy_max_keys => anti_entropy_max_keys,
            anti_entropy_bytes_per_sec => anti_entropy_bytes_per_sec
        );
        c.anti_entropy = !self.no_anti_entropy;
        if let Some(ms) = self.anti_entropy_interval_ms {
            c.anti_entropy_interval = (ms > 0).then(|| Duration::from_millis(ms));
        }
        if let Some(ms) = self.anti_entropy_rebuild_interval_ms {
            c.anti_entropy_rebuild_interval = Duration::from_millis(ms);
        }
        if let Some(ms) = self.speculative_retry_ms {
            c.speculative_retry = (ms > 0).then(|| Duration::from_millis(ms));
        }
        macro_rules! ms {
            ($($f:ident => $t:ident),*) => { $( if let Some(v) = self.$f { c.$t = Duration::from_millis(v); } )* };
        }
        ms!(
            request_timeout_ms => request_timeout,
            max_hint_window_ms => max_hint_window,
            tombstone_grace_ms => tombstone_grace,
            gossip_interval_ms => gossip_interval,
            ping_interval_ms => ping_interval,
            suspect_after_ms => suspect_after,
            down_after_ms => down_after,
            transition_grace_ms => transition_grace,
            maintenance_interval_ms => maintenance_interval,
            admission_target_latency_ms => admission_target_latency
        );
        c.cluster_secret = self.cluster_secret.filter(|s| !s.is_empty());
        c.leave_on_shutdown = self.leave_on_shutdown;
        c.insecure = self.insecure;
        c.metrics_listen = self.metrics_listen.filter(|s| !s.is_empty());
        c.tls = crate::tls::flags::TlsFlags {
            cert: self.cert,
            key: self.key,
            ca: self.ca,
            client_cert_auth: self.client_cert_auth,
            peer_cert: self.peer_cert,
            peer_key: self.peer_key,
            peer_ca: self.peer_ca,
        }
        .into_paths()?;
        if let Some(name) = self.cluster_name {
            c.cluster_name = name;
        }
        #[cfg(feature = "fault-injection")]
        {
            c.faults = crate::config::Faults {
                ack_before_write: self.fault_ack_before_write,
                keep_older: self.fault_keep_older,
                no_repair: self.fault_no_repair,
                no_hints: self.fault_no_hints,
                lose_tombstones: self.fault_lose_tombstones,
            };
        }
        c.validate().map_err(|e| e.to_string())?;
        crate::config::check_exposure(&listen, &c).map_err(|e| e.to_string())?;
        Ok((listen, c))
    }
}

/// Parses flags and the optional config file.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
) -> Result<(String, NodeConfig), clap::Error> {
    let cli = Args::try_parse_from(args)?;
    let usage =
        |m: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{m}\n"));
    let merged = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--config {}: {e}", path.display())))?;
            let file: Args = toml::from_str(&text)
                .map_err(|e| usage(format!("--config {}: {e}", path.display())))?;
            cli.overlay(file)
        }
        None => cli,
    };
    merged.into_config().map_err(usage)
}

/// Runs a node from command-line arguments (the first one is the program name). Builds its own
/// runtime, logs to stderr at the level in `RUST_LOG` (default `info`), stops cleanly on
/// SIGTERM or SIGINT.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "certs") {
        return crate::tls::flags::certs_main(args);
    }
    let (listen, config) = match parse(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvstore-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                eprintln!(
                    "kvstore-server: cannot listen on {listen}: address already in use (is another node running on this port?)"
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("kvstore-server: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => say(&format!("listening on {addr}")),
            Err(e) => {
                eprintln!("kvstore-server: listener has no address: {e}");
                return ExitCode::FAILURE;
            }
        }
        let result = crate::node::run_with_ready(listener, config, shutdown_signal(), |r| {
            if let Some(m) = &r.metrics_address {
                say(&format!("metrics on {m}"));
            }
            say("ready")
        })
        .await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kvstore-server: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the node");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("kvstore-server")
            .chain(list.iter().copied())
            .map(Into::into)
            .collect()
    }

    #[test]
    fn flags_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "node-id = 4\nreplication-factor = 2\nread-quorum = \"one\"\njoin = [\"127.0.0.1:9\"]\nvnodes = 8\n",
        )
        .unwrap();
        let (listen, c) = parse(args(&[
            "--config",
            file.to_str().unwrap(),
            "--vnodes",
            "16",
        ]))
        .unwrap();
        assert_eq!(listen, "127.0.0.1:0");
        assert_eq!(c.node_id, 4);
        assert_eq!(c.replication_factor, 2);
        assert_eq!(c.read_consistency, ConsistencyLevel::One);
        assert_eq!(c.vnodes, 16);
        assert_eq!(c.join, vec!["127.0.0.1:9".to_string()]);
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value_and_joins_accumulate() {
        let (_, c) = parse(args(&[
            "--node-id",
            "1",
            "--vnodes",
            "8",
            "--join",
            "127.0.0.1:9",
            "--vnodes",
            "16",
            "--join",
            "127.0.0.1:10",
        ]))
        .unwrap();
        assert_eq!(c.vnodes, 16);
        assert_eq!(
            c.join,
            vec!["127.0.0.1:9".to_string(), "127.0.0.1:10".to_string()]
        );
    }

    #[test]
    fn replace_gives_the_dead_nodes_id_and_needs_join() {
        let (_, c) = parse(args(&["--replace", "3", "--join", "127.0.0.1:9"])).unwrap();
        assert_eq!((c.node_id, c.replace), (3, true));
        let (_, c) = parse(args(&["--replace", "3", "--node-id", "3", "--join", "a:1"])).unwrap();
        assert_eq!(c.node_id, 3);
        let e = parse(args(&["--replace", "3", "--node-id", "4", "--join", "a:1"])).unwrap_err();
        assert!(e.to_string().contains("--node-id must be 3"), "{e}");
        let e = parse(args(&["--replace", "3"])).unwrap_err();
        assert!(e.to_string().contains("--replace needs --join"), "{e}");
    }

    #[test]
    fn bad_settings_are_named() {
        let e = parse(args(&["--node-id", "1", "--read-quorum", "most"])).unwrap_err();
        assert!(e.to_string().contains("--read-quorum"), "{e}");
        let e = parse(args(&[])).unwrap_err();
        assert!(e.to_string().contains("--node-id"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "node-id = 1\nno-such-setting = 3\n").unwrap();
        let e = parse(args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(e.to_string().contains("no-such-setting"), "{e}");
    }
}
