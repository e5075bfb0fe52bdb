//! The peer launcher: Redis and etcd started from their binaries on PATH, as loadgen starts
//! kvstore nodes, so one scenario runs unchanged against each store (issue 13).
//!
//! - Redis (`redis-server`, Debian package `redis-server`): node 0 is the primary, nodes 1.. its
//!   replicas (`replicaof`); append-only file on, `appendfsync` from the scenario's fsync
//!   (`always` -> always, `interval=<ms>` -> everysec, `never` -> no), RDB snapshots off.
//! - etcd (`etcd`, Debian package `etcd-server`): `nodes` members of one new cluster. etcd
//!   always fsyncs its WAL before acknowledging; the scenario's fsync does not change it.
//!
//! Every member gets free loopback ports and its own directory under a temporary directory,
//! removed on drop; output goes to `<log_dir>/node-<i>.log`. A restarted member comes back on
//! the same ports and data, as an operator's would; kill, restart, pause and resume signal the
//! PID loadgen started ([`ChildProcess`]), never a name. Each running member's PID is exposed
//! by [`PeerCluster::pids`], as [`super::launcher::LocalCluster::pids`] does for kvstore nodes.
//!
//! [`wait_ready`] is the peers' counterpart of `wait_formed`: every member answers, Redis
//! replicas are linked to the primary, etcd has a leader and serves a linearizable read.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvstore_harness::process::ChildProcess;

use crate::LoadgenError;
use crate::driver::etcd;
use crate::scenario::{ClusterSpec, NodeState, StoreKind};

#[derive(Debug)]
struct Member {
    /// Client address (`host:port`).
    addr: String,
    args: Vec<String>,
    process: Option<ChildProcess>,
    state: NodeState,
}

/// A local Redis or etcd cluster, stopped when dropped.
#[derive(Debug)]
pub struct PeerCluster {
    kind: StoreKind,
    program: PathBuf,
    members: Vec<Member>,
    log_dir: PathBuf,
    // Removed on drop, after the processes (fields drop in order).
    _data: tempfile::TempDir,
}

/// The binary a peer runs from and the Debian package that installs it.
pub fn binary_of(kind: StoreKind) -> Option<(&'static str, &'static str)> {
    match kind {
        StoreKind::Kvstore => None,
        StoreKind::Redis => Some(("redis-server", "redis-server")),
        StoreKind::Etcd => Some(("etcd", "etcd-server")),
    }
}

/// Finds `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The peer's binary on PATH, or an error naming the package to install.
pub fn locate(kind: StoreKind) -> Result<PathBuf, LoadgenError> {
    let (bin, package) = binary_of(kind)
        .ok_or_else(|| LoadgenError::Cluster("kvstore is not a peer store".into()))?;
    find_on_path(bin).ok_or_else(|| {
        LoadgenError::Cluster(format!(
            "`{bin}` is not on PATH: install the Debian package `{package}` (apt-get install {package}) to run {} scenarios",
            kind.name()
        ))
    })
}

fn free_port() -> Result<u16, LoadgenError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LoadgenError::Cluster(format!("cannot find a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| LoadgenError::Cluster(format!("cannot find a free port: {e}")))
}

/// Redis's `appendfsync` for a scenario's fsync policy.
pub fn appendfsync(fsync: &str) -> &'static str {
    match fsync {
        "always" => "always",
        "never" => "no",
        _ => "everysec",
    }
}

fn redis_args(spec: &ClusterSpec, port: u16, dir: &Path, primary: Option<u16>) -> Vec<String> {
    let mut a: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir.display().to_string(),
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync(&spec.fsync),
        "--save",
        "",
        "--protected-mode",
        "no",
        "--daemonize",
        "no",
        "--logfile",
        "",
        // A replica's first sync streams straight from memory, without waiting for others.
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(p) = primary {
        a.extend(["--replicaof".into(), "127.0.0.1".into(), p.to_string()]);
    }
    a
}

#[allow(clippy::too_many_arguments)]
fn etcd_args(
    i: usize,
    client: u16,
    peer: u16,
    dir: &Path,
    initial_cluster: &str,
    token: &str,
) -> Vec<String> {
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    [
        "--name",
        &format!("m{i}"),
        "--data-dir",
        &dir.display().to_string(),
        "--listen-client-urls",
        &c,
        "--advertise-client-urls",
        &c,
        "--listen-peer-urls",
        &p,
        "--initial-advertise-peer-urls",
        &p,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        token,
        "--logger",
        "zap",
        "--log-outputs",
        "stderr",
        "--log-level",
        "warn",
        // 1 MiB values (value_1mb) with headroom; etcd's default is 1.5 MiB per request.
        "--max-request-bytes",
        "10485760",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl PeerCluster {
    /// Starts `spec.nodes` members of `spec.kind` from the binary on PATH. Returns once every
    /// process is spawned; call [`wait_ready`] before sending load.
    pub fn start(spec: &ClusterSpec, log_dir: &Path) -> Result<Self, LoadgenError> {
        let program = locate(spec.kind)?;
        std::fs::create_dir_all(log_dir).map_err(|e| {
            LoadgenError::Cluster(format!("cannot create {}: {e}", log_dir.display()))
        })?;
        let data = tempfile::Builder::new()
            .prefix(&format!("kvstore-loadgen-{}-", spec.kind.name()))
            .tempdir()
            .map_err(|e| LoadgenError::Cluster(format!("cannot create a data directory: {e}")))?;
        let n = spec.nodes as usize;
        let mut members = Vec::with_capacity(n);
        match spec.kind {
            StoreKind::Redis => {
                let ports = (0..n).map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
                for (i, &port) in ports.iter().enumerate() {
                    let dir = data.path().join(format!("node-{i}"));
                    mkdir(&dir)?;
                    let primary = (i > 0).then_some(ports[0]);
                    members.push(Member {
                        addr: format!("127.0.0.1:{port}"),
                        args: redis_args(spec, port, &dir, primary),
                        process: None,
                        state: NodeState::Up,
                    });
                }
            }
            StoreKind::Etcd => {
                let ports = (0..2 * n)
                    .map(|_| free_port())
                    .collect::<Result<Vec<_>, _>>()?;
                let initial: Vec<String> = (0..n)
                    .map(|i| format!("m{i}=http://127.0.0.1:{}", ports[n + i]))
                    .collect();
                let initial = initial.join(",");
                let token = format!(
                    "loadgen-{}-{}",
                    std::process::id(),
                    data.path()
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                );
                for i in 0..n {
                    let dir = data.path().join(format!("node-{i}"));
                    members.push(Member {
                        addr: format!("127.0.0.1:{}", ports[i]),
                        args: etcd_args(i, ports[i], ports[n + i], &dir, &initial, &token),
                        process: None,
                        state: NodeState::Up,
                    });
                }
            }
            StoreKind::Kvstore => {
                return Err(LoadgenError::Cluster(
                    "kvstore nodes are started by the kvstore launcher".into(),
                ));
            }
        }
        let mut cluster = Self {
            kind: spec.kind,
            program,
            members,
            log_dir: log_dir.to_path_buf(),
            _data: data,
        };
        for i in 0..n {
            cluster.spawn(i).map_err(LoadgenError::Cluster)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let log = self.log_path(i);
        let m = &mut self.members[i];
        let p = ChildProcess::spawn_logged(
            &format!("{}-{i}", self.kind.name()),
            &self.program,
            &m.args,
            Some(&log),
        )
        .map_err(|e| {
            format!(
                "cannot start {} ({}): {e}",
                self.kind.name(),
                self.program.display()
            )
        })?;
        m.process = Some(p);
        m.state = NodeState::Up;
        Ok(())
    }

    /// Which store this is.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Every member's client address, in index order (Redis: the primary first).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.addr.clone()).collect()
    }

    /// The PID of every member, `None` while it is not running (for the process sampler).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.members
            .iter()
            .map(|m| m.process.as_ref().map(|p| p.pid()))
            .collect()
    }

    /// Every member's state as loadgen left it.
    pub fn states(&self) -> Vec<NodeState> {
        self.members.iter().map(|m| m.state).collect()
    }

    /// The member's log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.log_dir.join(format!("node-{i}.log"))
    }

    fn member(&mut self, i: u32) -> Result<&mut Member, String> {
        let count = self.members.len();
        self.members
            .get_mut(i as usize)
            .ok_or_else(|| format!("node {i} does not exist ({count} nodes)"))
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: u32) -> Result<(), String> {
        let m = self.member(i)?;
        super::signals::kill(&mut m.process, &mut m.state)
    }

    /// Starts killed member `i` again with the same ports and data.
    pub fn restart(&mut self, i: u32) -> Result<(), String> {
        if self.member(i)?.process.is_some() {
            return Err("node is running".into());
        }
        self.spawn(i as usize)
    }

    /// SIGSTOP member `i`.
    pub fn pause(&mut self, i: u32) -> Result<(), String> {
        let m = self.member(i)?;
        super::signals::pause(&m.process, &mut m.state)
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: u32) -> Result<(), String> {
        let m = self.member(i)?;
        super::signals::resume(&m.process, &mut m.state)
    }

    /// Heals every fault: resumes paused members and restarts killed ones.
    pub fn heal(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() as u32 {
            match self.members[i as usize].state {
                NodeState::Paused => self.resume(i)?,
                NodeState::Killed => self.restart(i)?,
                NodeState::Up | NodeState::Gone => {}
            }
        }
        Ok(())
    }

    /// Members whose process exited although loadgen did not kill them.
    pub fn crashed(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if m.process.as_mut().is_some_and(|p| p.has_exited()) {
                out.push(i as u32);
            }
        }
        out
    }
}

/// One line saying what a peer cluster is and what it promises, for reports.
pub fn describe(spec: &ClusterSpec) -> String {
    let n = spec.node_count();
    match spec.kind {
        StoreKind::Redis => {
            let wait =
                crate::driver::redis::RedisOptions::for_spec(spec, Duration::ZERO).wait_replicas;
            format!(
                "redis: 1 primary + {} replicas (asynchronous replication{}), appendfsync {}",
                n.saturating_sub(1),
                if wait > 0 {
                    format!(", WAIT {wait}")
                } else {
                    String::new()
                },
                appendfsync(&spec.fsync)
            )
        }
        StoreKind::Etcd => format!("etcd: {n} members (Raft, linearizable), WAL always fsynced"),
        StoreKind::Kvstore => format!(
            "kvstore: {n} nodes, N={} R={} W={} (LWW quorum), fsync {}",
            spec.replication, spec.read_quorum, spec.write_quorum, spec.fsync
        ),
    }
}

fn mkdir(dir: &Path) -> Result<(), LoadgenError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| LoadgenError::Cluster(format!("cannot create {}: {e}", dir.display())))
}

/// Waits until the peer cluster at `endpoints` serves: Redis answers on every member and each
/// replica's link to the primary (`endpoints[0]`) is up; etcd's every member knows a leader
/// and a linearizable read succeeds. Gives up after `timeout`, naming what was missing.
pub async fn wait_ready(
    kind: StoreKind,
    endpoints: &[String],
    timeout: Duration,
) -> Result<(), LoadgenError> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = match kind {
            StoreKind::Redis => redis_ready(endpoints).await,
            StoreKind::Etcd => etcd_ready(endpoints).await,
            StoreKind::Kvstore => Err("kvstore readiness is wait_formed's".into()),
        };
        let last = match r {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(LoadgenError::Cluster(format!(
                "{} did not become ready within {timeout:?}: {last}",
                kind.name()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn info_replication(addr: &str) -> Result<String, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .map_err(|e| format!("{addr}: {e}"))
}

fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

async fn redis_ready(endpoints: &[String]) -> Result<(), String> {
    let primary = endpoints.first().ok_or("no endpoints")?;
    let info = info_replication(primary).await?;
    if info_field(&info, "role") != Some("master") {
        return Err(format!("{primary} is not a primary"));
    }
    let want = endpoints.len() - 1;
    let linked: usize = info_field(&info, "connected_slaves")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if linked < want {
        return Err(format!(
            "{primary} has {linked} of {want} replicas connected"
        ));
    }
    for r in &endpoints[1..] {
        let info = info_replication(r).await?;
        if info_field(&info, "master_link_status") != Some("up") {
            return Err(format!("replica {r}: link to the primary not up yet"));
        }
    }
    Ok(())
}

async fn etcd_ready(endpoints: &[String]) -> Result<(), String> {
    let timeout = Duration::from_secs(2);
    let mut channels = Vec::new();
    for e in endpoints {
        let c = etcd::channel(e, timeout)?;
        let st = etcd::status(&c)
            .await
            .map_err(|s| format!("{e}: {}", s.message()))?;
        if st.leader == 0 {
            return Err(format!("{e} knows no leader yet"));
        }
        channels.push(c);
    }
    let probe = etcd::EtcdDriver::connect(endpoints, 0, timeout).await?;
    let r = crate::driver::store::Store::get(&probe, "loadgen:ready").await;
    r.outcome
        .map_err(|k| format!("a linearizable read failed ({k:?})"))
}

/// Waits until every etcd member has applied the same Raft index (nothing left to replicate),
/// up to `timeout`: the history's quiesce step for etcd.
pub async fn etcd_quiesce(endpoints: &[String], timeout: Duration) -> Result<(), LoadgenError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let mut applied = Vec::new();
        for e in endpoints {
            let st = match etcd::channel(e, Duration::from_secs(2)) {
                Ok(c) => etcd::status(&c).await.map_err(|s| s.message().to_string()),
                Err(e) => Err(e),
            };
            match st {
                Ok(s) => applied.push((s.raft_applied_index, s.raft_index)),
                Err(why) => {
                    last = format!("{e}: {why}");
                    break;
                }
            }
        }
        if applied.len() == endpoints.len() {
            let max = applied.iter().map(|a| a.1).max().unwrap_or(0);
            if applied.iter().all(|a| a.0 >= max) {
                return Ok(());
            }
            last = format!("applied indexes {applied:?} behind {max}");
        }
        if Instant::now() >= deadline {
            return Err(LoadgenError::History(format!(
                "etcd did not quiesce within {timeout:?}: {last}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_map_to_appendfsync() {
        assert_eq!(appendfsync("always"), "always");
        assert_eq!(appendfsync("interval=100"), "everysec");
        assert_eq!(appendfsync("never"), "no");
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
        assert_eq!(info_field(info, "role"), Some("master"));
        assert_eq!(info_field(info, "connected_slaves"), Some("2"));
        assert_eq!(info_field(info, "master_link_status"), None);
    }

    #[test]
    fn a_missing_binary_names_its_package() {
        assert_eq!(binary_of(StoreKind::Etcd), Some(("etcd", "etcd-server")));
        assert_eq!(
            binary_of(StoreKind::Redis),
            Some(("redis-server", "redis-server"))
        );
        assert_eq!(binary_of(StoreKind::Kvstore), None);
    }
}
