//! Shared helpers of the cluster integration tests: real `kvstore-server` processes on
//! 127.0.0.1, the generated gRPC clients, and waiting on conditions with generous deadlines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use kvstore_harness::process::NodeProcess as Node;
use kvstore_harness::process::{Launcher, server_binary};
use kvstore_proto::pb;
use kvstore_proto::pb::kv_store_client::KvStoreClient;
use kvstore_proto::pb::node_internal_client::NodeInternalClient;
use tonic::transport::Channel;

/// Generous: the machine is shared with other engineers' builds.
pub const START_DEADLINE: Duration = Duration::from_secs(90);
/// Deadline for cluster conditions (convergence, repair, cleanup).
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

/// Flags that make membership react quickly in tests (still tolerant of a loaded machine).
const FAST: &str = "--gossip-interval-ms 300 --ping-interval-ms 250 --suspect-after-ms 1500 \
                    --down-after-ms 3000 --transition-grace-ms 500 --request-timeout-ms 3000";

/// The `kvstore-server` binary of this package with [`FAST`] timings, logging at
/// `TEST_RUST_LOG` (default warn).
fn launcher() -> Launcher {
    let log = std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into());
    Launcher::new(server_binary(env!("CARGO_BIN_EXE_kvstore-server")))
        .with_flags(FAST.split_whitespace())
        .with_env("RUST_LOG", &log)
        .with_start_timeout(START_DEADLINE)
}

/// Starts node `id` listening on `listen`, with extra flags; waits for `ready`.
pub fn start_node(id: u32, listen: &str, data_dir: PathBuf, extra: &[String]) -> Node {
    let started = launcher().start(id, listen, data_dir, extra);
    started.unwrap_or_else(|e| panic!("start node {id}: {e}"))
}

/// Starts node `id` like [`start_node`], with extra environment variables (libfaketime's, say).
pub fn start_node_with_env(
    id: u32,
    listen: &str,
    data_dir: PathBuf,
    extra: &[String],
    env: &[(&str, &str)],
) -> Node {
    let mut l = launcher();
    for (k, v) in env {
        l = l.with_env(k, v);
    }
    l.start(id, listen, data_dir, extra)
        .unwrap_or_else(|e| panic!("start node {id}: {e}"))
}

/// Starts a cluster of `n` nodes (node 1 first, the others joining it) with extra flags.
pub fn start_cluster(dir: &Path, n: u32, extra: &[&str]) -> Vec<Node> {
    let started = launcher().start_cluster(dir, n, extra);
    started.unwrap_or_else(|e| panic!("start a {n}-node cluster: {e}"))
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

/// Puts at `level`, without reading the previous value (as the client library does).
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
        skip_old_value: true,
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

/// NodeStatus of the node at `addr`.
pub async fn status(addr: &str) -> pb::NodeStatusResponse {
    internal(addr)
        .await
        .node_status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The `kv-outcome` metadata of a status.
pub fn outcome(s: &tonic::Status) -> String {
    s.metadata()
        .get("kv-outcome")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}
