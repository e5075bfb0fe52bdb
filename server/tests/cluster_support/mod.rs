//! Shared helpers of the cluster integration tests: real `kvstore-server` processes on
//! 127.0.0.1, the generated gRPC clients, and waiting on conditions with generous deadlines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kvstore_proto::pb;
use kvstore_proto::pb::kv_store_client::KvStoreClient;
use kvstore_proto::pb::node_internal_client::NodeInternalClient;
use tonic::transport::Channel;

/// Generous: the machine is shared with other engineers' builds.
pub const START_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline for cluster conditions (convergence, repair, cleanup).
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

/// Flags that make membership react quickly in tests (still tolerant of a loaded machine).
pub const FAST: &[&str] = &[
    "--gossip-interval-ms",
    "300",
    "--ping-interval-ms",
    "250",
    "--suspect-after-ms",
    "1500",
    "--down-after-ms",
    "3000",
    "--transition-grace-ms",
    "500",
    "--request-timeout-ms",
    "3000",
];

/// One `kvstore-server` process; killed (by its own PID) when dropped.
pub struct Node {
    pub id: u32,
    pub addr: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// Starts node `id` listening on `listen`, with extra flags; waits for `ready`.
    pub fn start(id: u32, listen: &str, data_dir: PathBuf, extra: &[String]) -> Node {
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            id.to_string(),
            "--listen".into(),
            listen.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        args.extend(FAST.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        let (child, addr) = spawn(&args);
        Node {
            id,
            addr,
            data_dir,
            args,
            child: Some(child),
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit (bounded); returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        // SAFETY: sending a signal to a child we started, by its PID.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + START_DEADLINE;
        while Instant::now() < until {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Restarts after a kill, on the same port and data directory, same flags.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} still running", self.id);
        let mut args = self.args.clone();
        let i = args.iter().position(|a| a == "--listen").unwrap();
        args[i + 1] = self.addr.clone();
        let (child, addr) = spawn(&args);
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    /// Waits for the process to exit by itself (bounded); returns its success.
    pub fn wait_exit(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let until = Instant::now() + START_DEADLINE;
        while Instant::now() < until {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(args: &[String]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvstore-server"))
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kvstore-server");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                // Keep draining so the child never blocks on a full pipe.
                continue;
            }
        }
    });
    let until = Instant::now() + START_DEADLINE;
    let mut addr = None;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("listening on ") => {
                addr = Some(line["listening on ".len()..].to_string());
            }
            Ok(line) if line == "ready" => break,
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "kvstore-server {args:?} did not become ready: {:?}",
                    child.wait()
                );
            }
        }
    }
    (child, addr.expect("listening line before ready"))
}

/// Starts a cluster of `n` nodes (node 1 first, the others joining it) with extra flags.
pub fn start_cluster(dir: &std::path::Path, n: u32, extra: &[&str]) -> Vec<Node> {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let first = Node::start(1, "127.0.0.1:0", dir.join("n1"), &extra);
    let seed = first.addr.clone();
    let mut nodes = vec![first];
    for id in 2..=n {
        let mut e = extra.clone();
        e.extend(["--join".to_string(), seed.clone()]);
        nodes.push(Node::start(
            id,
            "127.0.0.1:0",
            dir.join(format!("n{id}")),
            &e,
        ));
    }
    nodes
}

/// A KVStore client to `addr`.
pub async fn kv(addr: &str) -> KvStoreClient<Channel> {
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    KvStoreClient::new(ch)
        .max_decoding_message_size(kvstore_proto::limits::GRPC_MESSAGE_LIMIT)
        .max_encoding_message_size(kvstore_proto::limits::GRPC_MESSAGE_LIMIT)
}

/// A NodeInternal client to `addr`.
pub async fn internal(addr: &str) -> NodeInternalClient<Channel> {
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    NodeInternalClient::new(ch)
}

/// Polls `check` until it returns `Some` or `deadline` passes (then panics with `what`).
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The effective state of `id` as `addr` sees it.
pub async fn state_seen(addr: &str, id: u32) -> Option<pb::MemberState> {
    let mut c = internal(addr).await;
    let ring = c
        .get_ring_state(pb::RingStateRequest {})
        .await
        .ok()?
        .into_inner();
    ring.members
        .iter()
        .find(|m| m.id == id)
        .map(|m| pb::MemberState::try_from(m.state).unwrap_or(pb::MemberState::Unknown))
}

/// Waits until every node in `observers` sees every id in `ids` in `state`.
pub async fn wait_states(observers: &[String], ids: &[u32], state: pb::MemberState) {
    for obs in observers {
        for &id in ids {
            wait_for(
                &format!("{obs} to see node {id} as {state:?}"),
                CONVERGE_DEADLINE,
                || async move { (state_seen(obs, id).await == Some(state)).then_some(()) },
            )
            .await;
        }
    }
}

/// The stored entry of `key` on the node at `addr` (bypassing coordination).
pub async fn local(addr: &str, key: &str) -> Option<pb::Entry> {
    let mut c = internal(addr).await;
    let r = c
        .local_read(pb::LocalReadRequest { key: key.into() })
        .await
        .expect("local read")
        .into_inner();
    if r.found { r.entry } else { None }
}

/// Puts at `level`.
pub async fn put(
    c: &mut KvStoreClient<Channel>,
    key: &str,
    value: &str,
    level: pb::Consistency,
) -> Result<pb::PutResponse, tonic::Status> {
    c.put(pb::PutRequest {
        key: key.into(),
        value: value.as_bytes().to_vec().into(),
        consistency: level as i32,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

/// Gets at `level`.
pub async fn get(
    c: &mut KvStoreClient<Channel>,
    key: &str,
    level: pb::Consistency,
) -> Result<pb::GetResponse, tonic::Status> {
    c.get(pb::GetRequest {
        key: key.into(),
        consistency: level as i32,
    })
    .await
    .map(|r| r.into_inner())
}

/// The `kv-outcome` metadata of a status.
pub fn outcome(s: &tonic::Status) -> String {
    s.metadata()
        .get("kv-outcome")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}
