//! Membership faults on loadgen's own cluster: a node joins, leaves, is wiped (its data
//! directory emptied, restarted with the same id: a replaced disk) or replaced (killed for
//! good, a new id started in its place).
//!
//! Each returns what it did for `faults.csv` once it has really acted: a join once the ring
//! lists the new node up, a leave once the node handed its ranges over and its process ended,
//! a wipe once the node runs again on the empty directory. The cluster's mutex is never held
//! across an await: a leave's handoff takes seconds and the status line reads the cluster
//! meanwhile.
//!
//! Today's store has no removenode: a replaced node's id stays in the ring as a down member,
//! its ranges served by the other replicas (and hinted) until an operator removes it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvstore_client::{Client, ClientConfig, pb};

use super::launcher::LocalCluster;
use crate::scenario::FaultAction;

/// Longest a join (until the ring lists the node up) or a leave (handoff) may take.
pub const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(120);

fn lock(c: &Arc<Mutex<LocalCluster>>) -> std::sync::MutexGuard<'_, LocalCluster> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Applies membership `action` to `node` (for join: ignored, the new node takes the next
/// index). What was done comes back for `faults.csv`.
pub async fn apply(
    cluster: &Arc<Mutex<LocalCluster>>,
    action: FaultAction,
    node: u32,
) -> Result<String, String> {
    match action {
        FaultAction::Join => join(cluster).await,
        FaultAction::Leave => leave(cluster, node).await,
        FaultAction::Wipe => wipe(cluster, node),
        FaultAction::Replace => {
            lock(cluster).retire(node)?;
            let joined = join(cluster).await?;
            Ok(format!("node {node} killed for good; {joined}"))
        }
        other => Err(format!("{} is not a membership fault", other.name())),
    }
}

/// A client of the cluster's live members, patient enough for a leave's handoff.
async fn client(cluster: &Arc<Mutex<LocalCluster>>) -> Result<Client, String> {
    let seeds = lock(cluster).live_endpoints();
    let config = ClientConfig {
        request_timeout: MEMBERSHIP_DEADLINE,
        // A leave answers once its handoff is done: one attempt may take that long.
        attempt_timeout: MEMBERSHIP_DEADLINE,
        ..ClientConfig::with_seeds(seeds)
    };
    Client::connect(config)
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))
}

/// The state of member `id` in the ring one live node reports now.
async fn member_state(client: &Client, id: u32) -> Option<i32> {
    let ring = client.ring().await.ok()?;
    ring.members.iter().find(|m| m.id == id).map(|m| m.state)
}

async fn join(cluster: &Arc<Mutex<LocalCluster>>) -> Result<String, String> {
    let started = Instant::now();
    let i = lock(cluster).add_node()?;
    let id = i + 1;
    let addr = lock(cluster).node_paths(i)?.0;
    let client = client(cluster).await?;
    loop {
        if member_state(&client, id).await == Some(pb::MemberState::Up as i32) {
            return Ok(format!(
                "node {i} (id {id}, {addr}) joined, up in the ring after {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
        if !lock(cluster).is_running(i) {
            return Err(format!("node {i} (id {id}) exited while joining"));
        }
        if started.elapsed() > MEMBERSHIP_DEADLINE {
            return Err(format!(
                "node {i} (id {id}) not up in the ring within {MEMBERSHIP_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn leave(cluster: &Arc<Mutex<LocalCluster>>, node: u32) -> Result<String, String> {
    let started = Instant::now();
    let id = node + 1;
    let client = client(cluster).await?;
    let left = client
        .leave(id)
        .await
        .map_err(|e| format!("kv leave {id}: {e}"))?;
    // The node stops by itself once it announced `left`.
    while lock(cluster).is_running(node) {
        if started.elapsed() > MEMBERSHIP_DEADLINE {
            return Err(format!(
                "node {node} (id {id}) left but its process still runs after {MEMBERSHIP_DEADLINE:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lock(cluster).retire(node)?;
    Ok(format!(
        "node {node} (id {id}) left: {} keys handed over, process ended after {:.1} s",
        left.keys_moved,
        started.elapsed().as_secs_f64()
    ))
}

fn wipe(cluster: &Arc<Mutex<LocalCluster>>, node: u32) -> Result<String, String> {
    let mut c = lock(cluster);
    c.kill(node)?;
    let (_, dir) = c.node_paths(node)?;
    let (files, bytes) = empty_dir(&dir)?;
    // Checked right before the restart: the node really starts on nothing.
    let left = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .count();
    if left != 0 {
        return Err(format!(
            "{} still holds {left} entries after the wipe",
            dir.display()
        ));
    }
    c.restart(node)?;
    Ok(format!(
        "node {node} wiped: {files} files ({bytes} bytes) removed from {}, empty at restart",
        dir.display()
    ))
}

/// Removes everything inside `dir` (the directory itself stays: it may be a mount point).
/// Returns the files and bytes removed.
pub fn empty_dir(dir: &Path) -> Result<(u64, u64), String> {
    let mut files = 0;
    let mut bytes = 0;
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let path = e.path();
        let meta = e
            .metadata()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        if meta.is_dir() {
            let (f, b) = empty_dir(&path)?;
            files += f;
            bytes += b;
            std::fs::remove_dir(&path)
        } else {
            files += 1;
            bytes += meta.len();
            std::fs::remove_file(&path)
        }
        .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    Ok((files, bytes))
}

/// Polls between samples of the hints settling.
pub const SETTLE_POLL: Duration = Duration::from_secs(1);
/// Consecutive samples with no hint replayed that count as settled.
pub const SETTLED_SAMPLES: u32 = 5;

/// Waits until the live members' pending hints stop falling: [`SETTLED_SAMPLES`] samples in a
/// row with the same total. Used instead of "no hints pending" when a node was replaced, whose
/// hints are kept for it (a down member) and never drain.
pub async fn wait_hints_settled(
    endpoints: &[String],
    timeout: Duration,
    tls: Option<&kvstore_client::ClientTls>,
) -> Result<(), crate::LoadgenError> {
    let deadline = Instant::now() + timeout;
    let config = ClientConfig {
        tls: tls.cloned(),
        request_timeout: Duration::from_secs(2),
        ..ClientConfig::with_seeds(endpoints.iter().cloned())
    };
    let client = Client::connect(config)
        .await
        .map_err(|e| crate::LoadgenError::Cluster(format!("cannot connect: {e}")))?;
    let mut last = None;
    let mut same = 0;
    loop {
        let mut total = Some(0u64);
        for addr in endpoints {
            match client.status(addr).await {
                Ok(st) => total = total.map(|t| t + st.hints_pending),
                Err(_) => total = None,
            }
        }
        if total.is_some() && total == last {
            same += 1;
            if same >= SETTLED_SAMPLES {
                return Ok(());
            }
        } else {
            same = 0;
        }
        last = total;
        if Instant::now() >= deadline {
            return Err(crate::LoadgenError::Cluster(format!(
                "the live members' hints did not settle within {timeout:?} (last total {last:?})"
            )));
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}
