//! The local launcher: every node its own OS process on a free 127.0.0.1 port with its own
//! temporary data directory, started either as `loadgen node <flags>` (loadgen re-executing
//! itself with the server library linked in, so a fresh clone needs no second build) or as a
//! real `kvstore-server` binary (`--server-bin`).
//!
//! Nodes get fixed ports (chosen free at start), so a restarted node comes back on the same
//! address and data directory, as an operator's would. Node `i` (0-based) has node id `i + 1`.
//! Every process is killed when the [`LocalCluster`] is dropped; its data directories are
//! removed with it. Node output goes to `<log_dir>/node-<i>.log`. Nodes a clock fault targets
//! run under libfaketime with their own timestamp file ([`super::clock`]), across restarts.
//!
//! Not here: deciding when to fault (the timeline) or judging the cluster's health beyond
//! "every node lists every member up".

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kvstore_client::{Client, ClientConfig, ClientTls, ConsistencyLevel, pb};
use kvstore_harness::process::ChildProcess;

use super::clock::{ClockProgram, NodeClock, faketime_env};
use super::link_proxy::{LinkProxy, LinkShape};
use super::partition::{self, Firewall};
use super::small_disk::{SMALL_DISK_MIB, SmallDisk};
use crate::scenario::{FaultAction, FaultSpec, PartitionClients};

use crate::LoadgenError;
use crate::scenario::{ClusterSpec, NodeState};

/// How to start a node.
#[derive(Debug, Clone)]
pub enum ServerProgram {
    /// `<loadgen> node <flags>`: loadgen re-executes itself.
    SelfExec(PathBuf),
    /// A `kvstore-server` binary.
    Binary(PathBuf),
}

impl ServerProgram {
    fn command(&self, flags: Vec<String>) -> (PathBuf, Vec<String>) {
        match self {
            Self::SelfExec(exe) => {
                let mut args = vec!["node".to_string()];
                args.extend(flags);
                (exe.clone(), args)
            }
            Self::Binary(bin) => (bin.clone(), flags),
        }
    }
}

/// The server's `--read-quorum` / `--write-quorum` value for `count` of `n` replicas (QUORUM
/// when no level needs exactly that many; validation refuses such counts first).
fn level_flag(count: u32, n: u32) -> String {
    ConsistencyLevel::for_count(count as usize, n as usize)
        .unwrap_or(ConsistencyLevel::Quorum)
        .to_string()
        .to_lowercase()
}

#[derive(Debug)]
struct Node {
    addr: String,
    /// Where it serves metrics (`[cluster] metrics = true`).
    metrics: Option<String>,
    data_dir: PathBuf,
    process: Option<ChildProcess>,
    state: NodeState,
    /// Set for nodes a clock fault targets: their processes run under libfaketime.
    clock: Option<NodeClock>,
    /// Set for nodes a disk_full fault targets: their data directory is a small tmpfs.
    /// Declared after `process`, so the process is gone before it is unmounted.
    disk: Option<SmallDisk>,
}

/// A cluster of local node processes.
#[derive(Debug)]
pub struct LocalCluster {
    nodes: Vec<Node>,
    program: ServerProgram,
    spec: ClusterSpec,
    log_dir: PathBuf,
    /// Certificates of a TLS cluster (`[cluster] tls = true`), under the data directory.
    certs: Option<PathBuf>,
    /// The partition rules, for a cluster started by [`Self::start_partitioned`].
    firewall: Option<Firewall>,
    /// One shaping proxy per directed link `(from, to)` between launched nodes, for a cluster
    /// started with `shape_links` (a run with `slow` link faults); at full speed until one.
    links: BTreeMap<(usize, usize), LinkProxy>,
    /// The run's clients that partitions with `clients = "follow"` cut off with their home's
    /// side: each one's source address and home node index ([`Self::set_clients`]).
    clients: Vec<(std::net::Ipv4Addr, usize)>,
    /// Whether the partition in force also cuts clients (its heal then counts their drops).
    clients_cut: bool,
    // Removed on drop, after the processes (fields drop in order: nodes first).
    _data: tempfile::TempDir,
}

/// The address link proxies connect to nodes from: a loopback address no node has and no
/// steering or drop rule names, so a proxy's own connections are neither steered back to it nor
/// cut.
const PROXY_SOURCE: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

fn free_port(ip: std::net::Ipv4Addr) -> Result<u16, LoadgenError> {
    let l = TcpListener::bind((ip, 0))
        .map_err(|e| LoadgenError::Cluster(format!("cannot find a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| LoadgenError::Cluster(format!("cannot find a free port: {e}")))
}

impl LocalCluster {
    /// Starts `spec.nodes` nodes; node 0 first, the others joining through it. Returns once
    /// every process is spawned; call [`wait_formed`] before sending load.
    pub fn start(
        spec: &ClusterSpec,
        program: ServerProgram,
        log_dir: &Path,
    ) -> Result<Self, LoadgenError> {
        Self::start_with(spec, program, log_dir, None, &[], &[])
    }

    /// [`start`](Self::start), each node on its own loopback address
    /// ([`super::partition::node_ip`]) so that links between nodes can be cut.
    pub fn start_partitionable(
        spec: &ClusterSpec,
        program: ServerProgram,
        log_dir: &Path,
    ) -> Result<Self, LoadgenError> {
        Self::start_with(spec, program, log_dir, Some((None, false)), &[], &[])
    }

    /// Like [`Self::start`], with the nodes of index `faked_clocks` under libfaketime (their
    /// wall clocks at true time until [`Self::clock`] moves them). Fails when libfaketime is
    /// missing.
    pub fn start_with_clocks(
        spec: &ClusterSpec,
        program: ServerProgram,
        log_dir: &Path,
        faked_clocks: &[u32],
    ) -> Result<Self, LoadgenError> {
        Self::start_with(spec, program, log_dir, None, faked_clocks, &[])
    }

    /// [`start_with_clocks`](Self::start_with_clocks), and nodes `small_disks` keep their data
    /// on a small tmpfs of their own ([`SmallDisk`], root only) that `disk_full` can fill.
    pub fn start_for_faults(
        spec: &ClusterSpec,
        program: ServerProgram,
        log_dir: &Path,
        faked_clocks: &[u32],
        small_disks: &[u32],
    ) -> Result<Self, LoadgenError> {
        Self::start_with(spec, program, log_dir, None, faked_clocks, small_disks)
    }

    /// [`start_for_faults`](Self::start_for_faults), each node on its own loopback address, with
    /// the (empty) partition chain installed so that [`Self::partition`] can cut links. Call
    /// only inside the run's private network namespace (loadgen's `netns` module): the rules would
    /// otherwise apply to the whole machine.
    ///
    /// With `shape_links`, every connection a node opens to another goes through a proxy of
    /// that directed link ([`super::link_proxy`], steered by an iptables nat rule installed
    /// before the nodes start), so that [`Self::link`] can slow it. Must be called inside a
    /// tokio runtime (the proxies are its tasks).
    pub fn start_partitioned(
        spec: &ClusterSpec,
        program: ServerProgram,
        log_dir: &Path,
        faked_clocks: &[u32],
        small_disks: &[u32],
        shape_links: bool,
    ) -> Result<Self, LoadgenError> {
        let firewall = Firewall::install().map_err(LoadgenError::Cluster)?;
        Self::start_with(
            spec,
            program,
            log_dir,
            Some((Some(firewall), shape_links)),
            faked_clocks,
            small_disks,
        )
    }

    /// `partitionable`: each node on its own loopback address, with the firewall (when one is
    /// installed) and whether to shape links.
    fn start_with(
        spec: &ClusterSpec,
        program: ServerProgram,
        log_dir: &Path,
        partitionable: Option<(Option<Firewall>, bool)>,
        faked_clocks: &[u32],
        small_disks: &[u32],
    ) -> Result<Self, LoadgenError> {
        let own_addresses = partitionable.is_some();
        let (firewall, shape_links) = match partitionable {
            Some((fw, shape)) => (fw, shape),
            None => (None, false),
        };
        std::fs::create_dir_all(log_dir).map_err(|e| {
            LoadgenError::Cluster(format!("cannot create {}: {e}", log_dir.display()))
        })?;
        let data = tempfile::Builder::new()
            .prefix("kvstore-loadgen-")
            .tempdir()
            .map_err(|e| LoadgenError::Cluster(format!("cannot create a data directory: {e}")))?;
        let mut nodes = Vec::new();
        for i in 0..spec.nodes {
            let ip = if own_addresses {
                super::partition::node_ip(i as usize)
            } else {
                std::net::Ipv4Addr::LOCALHOST
            };
            let port = free_port(ip)?;
            let metrics = if spec.metrics {
                Some(format!(
                    "127.0.0.1:{}",
                    free_port(std::net::Ipv4Addr::LOCALHOST)?
                ))
            } else {
                None
            };
            let clock = if faked_clocks.contains(&i) {
                let file = data.path().join(format!("node-{i}.faketime"));
                Some(NodeClock::create(file.clone()).map_err(|e| {
                    LoadgenError::Cluster(format!("cannot write {}: {e}", file.display()))
                })?)
            } else {
                None
            };
            let data_dir = data.path().join(format!("node-{i}"));
            let disk = if small_disks.contains(&i) {
                Some(SmallDisk::mount(&data_dir, SMALL_DISK_MIB).map_err(LoadgenError::Cluster)?)
            } else {
                None
            };
            nodes.push(Node {
                addr: format!("{ip}:{port}"),
                metrics,
                data_dir,
                process: None,
                state: NodeState::Up,
                clock,
                disk,
            });
        }
        let certs = if spec.tls {
            let dir = data.path().join("certs");
            kvstore_server::tls::certs::write_cluster(&dir, spec.nodes, &[])
                .map_err(|e| LoadgenError::Cluster(format!("cannot make TLS certificates: {e}")))?;
            Some(dir)
        } else {
            None
        };
        let mut cluster = Self {
            nodes,
            program,
            spec: spec.clone(),
            log_dir: log_dir.to_path_buf(),
            certs,
            firewall,
            links: BTreeMap::new(),
            clients: Vec::new(),
            clients_cut: false,
            _data: data,
        };
        if shape_links {
            cluster.install_link_proxies()?;
        }
        for i in 0..cluster.nodes.len() {
            // The first node founds the cluster; the others join through it.
            let join = if i == 0 {
                Vec::new()
            } else {
                vec![cluster.nodes[0].addr.clone()]
            };
            cluster.spawn(i, join)?;
        }
        Ok(cluster)
    }

    fn flags(&self, i: usize, join: Vec<String>) -> Vec<String> {
        let s = &self.spec;
        let n = &self.nodes[i];
        let mut f = vec![
            "--node-id".to_string(),
            (i + 1).to_string(),
            "--listen".into(),
            n.addr.clone(),
            "--data-dir".into(),
            n.data_dir.display().to_string(),
            "--replication-factor".into(),
            s.replication.to_string(),
            "--read-quorum".into(),
            level_flag(s.read_quorum, s.replication),
            "--write-quorum".into(),
            level_flag(s.write_quorum, s.replication),
            "--fsync".into(),
            s.fsync.clone(),
        ];
        for j in join {
            f.push("--join".into());
            f.push(j);
        }
        if let Some(m) = &n.metrics {
            f.push("--metrics-listen".into());
            f.push(m.clone());
        }
        if let Some(d) = &self.certs {
            // Mutual TLS everywhere: between nodes (always), and for loadgen's clients.
            let p = |name: String| d.join(name).display().to_string();
            let id = i + 1;
            for (flag, file) in [
                ("--cert", format!("node-{id}.pem")),
                ("--key", format!("node-{id}.key")),
                ("--peer-cert", format!("node-{id}.pem")),
                ("--peer-key", format!("node-{id}.key")),
                ("--peer-ca", "ca.pem".into()),
                ("--ca", "client-ca.pem".into()),
            ] {
                f.push(flag.into());
                f.push(p(file));
            }
            f.push("--client-cert-auth".into());
        }
        f.extend(s.server_args.iter().cloned());
        f
    }

    fn spawn(&mut self, i: usize, join: Vec<String>) -> Result<(), LoadgenError> {
        let flags = self.flags(i, join);
        let (program, args) = self.program.command(flags);
        let log = self.log_dir.join(format!("node-{i}.log"));
        let env = match &self.nodes[i].clock {
            Some(c) => faketime_env(&c.file).map_err(LoadgenError::Cluster)?,
            None => Vec::new(),
        };
        let cannot = |e: std::io::Error| {
            LoadgenError::Cluster(format!(
                "cannot start node {i} ({}): {e}",
                program.display()
            ))
        };
        let p = if env.is_empty() {
            ChildProcess::spawn_logged(&format!("node-{i}"), &program, &args, Some(&log))
                .map_err(cannot)?
        } else {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(cannot)?;
            let mut cmd = std::process::Command::new(&program);
            cmd.args(&args)
                .envs(env)
                .stdin(std::process::Stdio::null())
                .stdout(f.try_clone().map_err(cannot)?)
                .stderr(f);
            ChildProcess::spawn(&format!("node-{i}"), cmd).map_err(cannot)?
        };
        self.nodes[i].process = Some(p);
        self.nodes[i].state = NodeState::Up;
        Ok(())
    }

    /// Every node's address, in index order.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// What clients need to reach a TLS cluster (its CA and the client certificate), or
    /// `None` for a plaintext one.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, LoadgenError> {
        let Some(d) = &self.certs else {
            return Ok(None);
        };
        ClientTls::from_files(
            &d.join("ca.pem"),
            Some((&d.join("client.pem"), &d.join("client.key"))),
        )
        .map(Some)
        .map_err(|e| LoadgenError::Cluster(format!("TLS certificates: {e}")))
    }

    /// Every node's metrics address, when the cluster serves metrics.
    pub fn metrics_endpoints(&self) -> Vec<Option<String>> {
        self.nodes.iter().map(|n| n.metrics.clone()).collect()
    }

    /// Every node's current process id (`None` while it is killed), in index order.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.nodes
            .iter()
            .map(|n| n.process.as_ref().map(ChildProcess::pid))
            .collect()
    }

    /// The addresses of the nodes that are still members (not left or replaced), in index
    /// order: what the final phase reads and waits for.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.state != NodeState::Gone)
            .map(|n| n.addr.clone())
            .collect()
    }

    /// The addresses of the nodes that left or were replaced.
    pub fn gone_endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.state == NodeState::Gone)
            .map(|n| n.addr.clone())
            .collect()
    }

    /// Node `i`'s address and data directory.
    pub fn node_paths(&mut self, i: u32) -> Result<(String, PathBuf), String> {
        let n = self.node(i)?;
        Ok((n.addr.clone(), n.data_dir.clone()))
    }

    /// Adds a node of the next index (id = index + 1) on a fresh address and data directory
    /// and starts it joining through every live member ([`super::membership`]). Returns its
    /// index.
    pub fn add_node(&mut self) -> Result<u32, String> {
        let i = self.nodes.len();
        // A partitionable cluster gives every node its own loopback address (the partition
        // rules name them); otherwise every node is on 127.0.0.1.
        let own_addresses = self
            .nodes
            .first()
            .is_some_and(|n| n.addr.rsplit_once(':').map(|(h, _)| h) != Some("127.0.0.1"));
        let ip = if own_addresses {
            super::partition::node_ip(i)
        } else {
            std::net::Ipv4Addr::LOCALHOST
        };
        let port = free_port(ip).map_err(|e| e.to_string())?;
        let join: Vec<String> = self.live_endpoints();
        self.nodes.push(Node {
            addr: format!("{ip}:{port}"),
            metrics: None,
            data_dir: self._data.path().join(format!("node-{i}")),
            process: None,
            state: NodeState::Up,
            clock: None,
            disk: None,
        });
        self.spawn(i, join).map_err(|e| e.to_string())?;
        Ok(i as u32)
    }

    /// Reaps node `i` once its process has ended by itself (a finished leave), or SIGKILLs it
    /// (a replace), and marks it gone for the rest of the run.
    pub fn retire(&mut self, i: u32) -> Result<(), String> {
        let n = self.node(i)?;
        if let Some(mut p) = n.process.take() {
            p.kill();
        }
        n.state = NodeState::Gone;
        Ok(())
    }

    /// Every node's state as loadgen left it.
    pub fn states(&self) -> Vec<NodeState> {
        self.nodes.iter().map(|n| n.state).collect()
    }

    /// The node's log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.log_dir.join(format!("node-{i}.log"))
    }

    fn node(&mut self, i: u32) -> Result<&mut Node, String> {
        let count = self.nodes.len();
        self.nodes
            .get_mut(i as usize)
            .ok_or_else(|| format!("node {i} does not exist ({count} nodes)"))
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: u32) -> Result<(), String> {
        let n = self.node(i)?;
        super::signals::kill(&mut n.process, &mut n.state)
    }

    /// Starts killed node `i` again, same address and data, joining through the others.
    pub fn restart(&mut self, i: u32) -> Result<(), String> {
        if self.node(i)?.process.is_some() {
            return Err("node is running".into());
        }
        let join = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, n)| *j != i as usize && n.state != NodeState::Gone)
            .map(|(_, n)| n.addr.clone())
            .collect();
        self.spawn(i as usize, join).map_err(|e| e.to_string())
    }

    /// SIGKILL every running node at once: every signal is sent before any process is reaped,
    /// so no node sees another's death first. Leaves every node killed.
    pub fn kill_all(&mut self) -> Result<(), String> {
        for n in &self.nodes {
            if let Some(p) = &n.process {
                p.signal(libc::SIGKILL)
                    .map_err(|e| format!("cannot SIGKILL node at {}: {e}", n.addr))?;
            }
        }
        for n in self.nodes.iter_mut().filter(|n| n.state != NodeState::Gone) {
            if let Some(mut p) = n.process.take() {
                p.kill();
            }
            n.state = NodeState::Killed;
        }
        Ok(())
    }

    /// Starts every killed node again, each on its address and data directory.
    pub fn restart_all(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() as u32 {
            let n = &self.nodes[i as usize];
            if n.process.is_none() && n.state != NodeState::Gone {
                self.restart(i)?;
            }
        }
        Ok(())
    }

    /// A disk fault on killed node `i` ([`super::disk::damage`]): what was done, for
    /// `faults.csv`.
    pub fn damage(&mut self, i: u32, action: FaultAction, seed: u64) -> Result<String, String> {
        let n = self.node(i)?;
        if n.process.is_some() {
            return Err(format!(
                "{} damages a stopped node's files: node {i} is running",
                action.name()
            ));
        }
        super::disk::damage(&n.data_dir, action, seed)
    }

    /// `disk_full` on node `i`: fills its small disk. What was done, for `faults.csv`.
    pub fn fill_disk(&mut self, i: u32) -> Result<String, String> {
        self.small_disk(i)?.fill()
    }

    /// `disk_free` on node `i`: frees what `disk_full` took.
    pub fn free_disk(&mut self, i: u32) -> Result<String, String> {
        self.small_disk(i)?.free()
    }

    fn small_disk(&mut self, i: u32) -> Result<&SmallDisk, String> {
        self.node(i)?.disk.as_ref().ok_or_else(|| {
            format!("node {i} was not started on a small disk (only a disk_full fault's node is)")
        })
    }

    /// `crash_all`: [`Self::kill_all`], then [`Self::restart_all`].
    pub fn crash_all(&mut self) -> Result<(), String> {
        self.kill_all()?;
        self.restart_all()
    }

    /// Whether node `i` has a live process.
    pub fn is_running(&mut self, i: u32) -> bool {
        self.nodes
            .get_mut(i as usize)
            .and_then(|n| n.process.as_mut())
            .is_some_and(|p| !p.has_exited())
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: u32) -> Result<(), String> {
        let n = self.node(i)?;
        super::signals::pause(&n.process, &mut n.state)
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: u32) -> Result<(), String> {
        let n = self.node(i)?;
        super::signals::resume(&n.process, &mut n.state)
    }

    /// Applies clock fault `f` to node `i` at `now` (`until` = its `until_s` as an instant).
    pub fn clock(
        &mut self,
        i: u32,
        f: &FaultSpec,
        now: Instant,
        until: Option<Instant>,
    ) -> Result<(), String> {
        let n = self.node(i)?;
        let c = n
            .clock
            .as_mut()
            .ok_or("the node was not started under libfaketime")?;
        let next = c.program.after(f, now, until);
        c.set(next, now)
            .map_err(|e| format!("cannot write {}: {e}", c.file.display()))
    }

    /// Rewrites the clock files whose programs changed offset by `now` (strobe flips, drift).
    pub fn tick_clocks(&mut self, now: Instant) -> Result<(), String> {
        for c in self.nodes.iter_mut().filter_map(|n| n.clock.as_mut()) {
            c.tick(now)
                .map_err(|e| format!("cannot write {}: {e}", c.file.display()))?;
        }
        Ok(())
    }

    /// True when some node runs under libfaketime.
    pub fn has_faked_clocks(&self) -> bool {
        self.nodes.iter().any(|n| n.clock.is_some())
    }

    /// Heals every fault: resumes paused nodes, restarts killed ones, sets every clock back to
    /// true time, frees every filled disk.
    pub fn heal(&mut self) -> Result<(), String> {
        if let Some(fw) = &self.firewall {
            fw.heal()?;
            fw.restore()?;
        }
        for proxy in self.links.values() {
            proxy.set_shape(LinkShape::FULL_SPEED);
        }
        for d in self.nodes.iter().filter_map(|n| n.disk.as_ref()) {
            if d.is_full() {
                d.free()?;
            }
        }
        let now = Instant::now();
        for c in self.nodes.iter_mut().filter_map(|n| n.clock.as_mut()) {
            c.set(ClockProgram::default(), now)
                .map_err(|e| format!("cannot write {}: {e}", c.file.display()))?;
        }
        for i in 0..self.nodes.len() as u32 {
            match self.nodes[i as usize].state {
                NodeState::Paused => self.resume(i)?,
                NodeState::Killed => self.restart(i)?,
                NodeState::Up | NodeState::Gone => {}
            }
        }
        Ok(())
    }

    /// Applies partition fault `f` (isolate, halves, bridge, one_way, ring, heal), replacing
    /// the cut in force; says which directed links it cut, for `faults.csv`.
    pub fn partition(&mut self, f: &FaultSpec) -> Result<String, String> {
        let fw = self.firewall.as_ref().ok_or_else(|| {
            "partition faults need a cluster started partitioned (in a network namespace)"
                .to_string()
        })?;
        let Some(shape) = partition::shape_of(f) else {
            let dropped = if self.clients_cut {
                let clients: Vec<std::net::Ipv4Addr> =
                    self.clients.iter().map(|&(a, _)| a).collect();
                Some(fw.client_dropped_packets(|a| clients.contains(&a))?)
            } else {
                None
            };
            fw.heal()?;
            self.clients_cut = false;
            return Ok(match dropped {
                Some(n) => format!("healed;client_packets_dropped={n}"),
                None => "healed".into(),
            });
        };
        let n = self.nodes.len();
        let links = partition::cut_links(&shape, n);
        let follow = f.clients == Some(PartitionClients::Follow);
        if follow && self.clients.is_empty() {
            return Err(
                "clients = \"follow\" needs the run's clients on addresses of their own \
                 (none were registered)"
                    .into(),
            );
        }
        let client_cuts = if follow {
            let homes: Vec<usize> = self.clients.iter().map(|&(_, h)| h).collect();
            partition::client_cuts(&links, n, &homes)
        } else {
            Default::default()
        };
        let addrs: Vec<std::net::Ipv4Addr> = self.clients.iter().map(|&(a, _)| a).collect();
        fw.cut_with_clients(&links, &client_cuts, &addrs)?;
        self.clients_cut = follow;
        let mut detail = partition::describe(&links);
        if follow {
            detail.push_str(&format!(
                ";clients=follow;client_cuts={}",
                partition::describe_clients(&client_cuts)
            ));
        }
        Ok(detail)
    }

    /// Registers the run's clients for partitions with `clients = "follow"`: client `c`
    /// connects from `clients[c].0` and its home (the node it first talked to) is node
    /// `clients[c].1`.
    pub fn set_clients(&mut self, clients: Vec<(std::net::Ipv4Addr, usize)>) {
        self.clients = clients;
    }

    /// Applies link fault `f` (loss on the directed link `node` -> `to`, or restore); says
    /// what it did, for `faults.csv`.
    pub fn link(&mut self, f: &FaultSpec) -> Result<String, String> {
        let fw = self.firewall.as_ref().ok_or_else(|| {
            "link faults need a cluster started partitioned (in a network namespace)".to_string()
        })?;
        match (f.action, f.node_index(), f.to, f.probability) {
            (FaultAction::Loss, Some(from), Some(to), Some(p)) => {
                fw.lose(from as usize, to as usize, p)?;
                Ok(format!("link {from}->{to};probability={p}"))
            }
            (FaultAction::Slow, Some(from), Some(to), _) => {
                let proxy = self
                    .links
                    .get(&(from as usize, to as usize))
                    .ok_or_else(|| {
                        format!("link {from}->{to} has no proxy (the run did not shape links)")
                    })?;
                let shape = LinkShape {
                    delay: Duration::from_millis(f.delay_ms.unwrap_or(0)),
                    jitter: Duration::from_millis(f.jitter_ms.unwrap_or(0)),
                    bytes_per_sec: f.bytes_per_sec,
                };
                proxy.set_shape(shape);
                let mut d = format!("link {from}->{to};delay_ms={}", shape.delay.as_millis());
                if !shape.jitter.is_zero() {
                    d.push_str(&format!(";jitter_ms={}", shape.jitter.as_millis()));
                }
                if let Some(b) = shape.bytes_per_sec {
                    d.push_str(&format!(";bytes_per_sec={b}"));
                }
                d.push_str(&format!(";bytes_so_far={}", proxy.bytes()));
                Ok(d)
            }
            _ => {
                let lost = fw.lost_packets().unwrap_or(0);
                fw.restore()?;
                let mut slowed = Vec::new();
                for ((from, to), proxy) in &self.links {
                    if proxy.shape() != LinkShape::FULL_SPEED {
                        proxy.set_shape(LinkShape::FULL_SPEED);
                        slowed.push(format!("{from}->{to}:bytes={}", proxy.bytes()));
                    }
                }
                let mut d = format!("restored;packets_dropped={lost}");
                if !slowed.is_empty() {
                    d.push_str(&format!(";full_speed={}", slowed.join(",")));
                }
                Ok(d)
            }
        }
    }

    /// Starts a proxy at full speed for every directed link between the nodes and steers the
    /// link's connections through it (before any node runs: a connection is steered when it
    /// opens).
    fn install_link_proxies(&mut self) -> Result<(), LoadgenError> {
        let fw = self
            .firewall
            .as_ref()
            .ok_or_else(|| LoadgenError::Cluster("shaped links need the run's firewall".into()))?;
        let n = self.nodes.len();
        for from in 0..n {
            for to in (0..n).filter(|&to| to != from) {
                let target: std::net::SocketAddr = self.nodes[to]
                    .addr
                    .parse()
                    .map_err(|e| LoadgenError::Cluster(format!("node {to}'s address: {e}")))?;
                let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                    .map_err(|e| LoadgenError::Cluster(format!("cannot bind a proxy: {e}")))?;
                let proxy = LinkProxy::spawn(listener, PROXY_SOURCE, target, LinkShape::FULL_SPEED)
                    .map_err(|e| LoadgenError::Cluster(format!("cannot start link proxy: {e}")))?;
                fw.steer(from, target, proxy.addr())
                    .map_err(LoadgenError::Cluster)?;
                self.links.insert((from, to), proxy);
            }
        }
        Ok(())
    }

    /// Nodes whose process has exited although loadgen did not kill them.
    pub fn crashed(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if n.process.as_mut().is_some_and(|p| p.has_exited()) {
                out.push(i as u32);
            }
        }
        out
    }
}

/// Waits until every node in `endpoints` answers NodeStatus and lists `endpoints.len()`
/// members, all up (and, when `hints_drained`, reports no pending hints). Gives up after
/// `timeout`, naming what was still missing.
pub async fn wait_formed(
    endpoints: &[String],
    timeout: Duration,
    hints_drained: bool,
    tls: Option<&ClientTls>,
) -> Result<(), LoadgenError> {
    let deadline = Instant::now() + timeout;
    let config = ClientConfig {
        tls: tls.cloned(),
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::with_seeds(endpoints.iter().cloned())
    };
    let mut last = String::from("no node answered yet");
    loop {
        let client = Client::connect(config.clone()).await;
        if let Ok(client) = client {
            match check_all(&client, endpoints, hints_drained).await {
                Ok(()) => return Ok(()),
                Err(why) => last = why,
            }
        } else if let Err(e) = client {
            last = format!("cannot connect: {e}");
        }
        if Instant::now() >= deadline {
            return Err(LoadgenError::Cluster(format!(
                "the cluster did not {} within {timeout:?}: {last}",
                if hints_drained { "quiesce" } else { "form" }
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn check_all(
    client: &Client,
    endpoints: &[String],
    hints_drained: bool,
) -> Result<(), String> {
    for addr in endpoints {
        let st: pb::NodeStatusResponse = client
            .status(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let up = st
            .members
            .iter()
            .filter(|m| m.state == pb::MemberState::Up as i32)
            .count();
        if up < endpoints.len() {
            return Err(format!(
                "{addr} sees {up} of {} members up",
                endpoints.len()
            ));
        }
        if hints_drained && st.hints_pending > 0 {
            return Err(format!("{addr} still holds {} hints", st.hints_pending));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_counts_map_to_the_servers_flag_values() {
        assert_eq!(level_flag(2, 3), "quorum");
        assert_eq!(level_flag(1, 3), "one");
        assert_eq!(level_flag(3, 3), "all");
        assert_eq!(level_flag(1, 1), "all");
    }
}
