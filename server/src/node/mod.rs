//! Running a node: [`run`] takes an already-bound listener, a configuration and a shutdown
//! future (mini-redis style), so tests bind `127.0.0.1:0` and stop nodes cleanly.
//!
//! Start: lock the data directory, open the engines, restore the clock floor and the member
//! table, serve gRPC, start the background tasks (gossip, probes, hint replay, cleanup,
//! maintenance), join through the seeds if any, then report ready.
//!
//! Stop (shutdown future, or a finished `Leave`): optionally leave the cluster first, then stop
//! accepting, let in-flight calls finish (bounded by [`DRAIN_TIMEOUT`]), stop the tasks, flush
//! the engines and save the member table.

pub mod datadir;
pub mod environment;
pub mod shared;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::cluster::hints::{HintLimits, HintStore};
use crate::cluster::members::{MemberTable, Status, Timing};
use crate::cluster::repair_ledger::{RepairLedger, RepairedSince};
use crate::cluster::{gossip, persist, rebalance};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::hlc::{FileHighWater, Hlc};
use crate::replication::handoff;
use crate::service;
pub use environment::{Environment, Listener, Mount};
use shared::{Shared, Stores, stopped};

/// How long a stopping node waits for in-flight calls before closing anyway.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a running node reports once it serves.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The node's id.
    pub node_id: u32,
    /// The address it serves on.
    pub address: String,
    /// Where it serves Prometheus metrics, when it does.
    pub metrics_address: Option<String>,
}

/// Runs a node until `shutdown` completes (or it left the cluster).
pub async fn run(
    listener: TcpListener,
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    run_with_ready(listener, config, shutdown, |_| {}).await
}

/// [`run`], calling `on_ready` once the node is up and serving.
pub async fn run_with_ready(
    listener: TcpListener,
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_ready: impl FnOnce(Ready) + Send,
) -> Result<()> {
    run_in(
        Environment::default(),
        Listener::Tcp(listener),
        config,
        shutdown,
        on_ready,
    )
    .await
}

/// [`run_with_ready`] in a given [`Environment`] (clock, network, file system, seed), serving
/// on `listener`: a simulation runs its nodes through this.
pub async fn run_in(
    env: Environment,
    listener: Listener,
    mut config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_ready: impl FnOnce(Ready) + Send,
) -> Result<()> {
    let local = match &listener {
        Listener::Tcp(l) => l.local_addr().map(Some).map_err(|source| Error::Io {
            context: "listener has no local address".into(),
            source,
        })?,
        Listener::Mounted { .. } => None,
    };
    let bound = match (&listener, local) {
        (Listener::Mounted { address, .. }, _) => address.clone(),
        (_, Some(local)) => local.to_string(),
        (_, None) => String::new(),
    };
    if config.advertise_address.ends_with(":0") || config.advertise_address.is_empty() {
        config.advertise_address = bound;
    }
    // A node listening on one address also talks to its peers from it (as Cassandra's
    // listen_address): node-to-node traffic is then identified by source and destination
    // address, which is what a firewall (or the nemesis's partitions) acts on.
    if let Some(local) = local
        && !local.ip().is_unspecified()
    {
        config.peer_source_ip = Some(local.ip());
    }
    config.validate()?;

    // Storage, clock, hints, members.
    let lock = config.data_dir.as_deref().map(datadir::lock).transpose()?;
    let dir = lock.as_ref().map(|l| l.path().to_path_buf());
    if let Some(d) = &dir {
        datadir::bind_cluster(d, &config.cluster_name)?;
    }
    let open = |sub: &str| {
        datadir::open_engine(
            env.fs.clone(),
            dir.as_ref().map(|d| d.join(sub)).as_deref(),
            &config.fsync,
            config.max_key_bytes,
            config.max_value_bytes,
            config.tombstone_grace,
        )
    };
    let datadir::Opened { engine, log } = open("data")?;
    let hints_opened = open("hints")?;
    let hints = HintStore::new(
        hints_opened.engine,
        hints_opened.log,
        HintLimits {
            max_per_target: config.max_hints_per_target,
            max_bytes: config.max_hint_bytes,
            window: config.max_hint_window,
        },
    )?;
    let mut hlc = Hlc::new(env.clock.clone(), config.max_clock_offset_ms);
    if let Some(d) = &dir {
        let (store, recovered) =
            FileHighWater::open(d.join("hlc.ceiling")).map_err(|source| Error::Io {
                context: format!("cannot read {}", d.join("hlc.ceiling").display()),
                source,
            })?;
        hlc = hlc.with_high_water(Box::new(store), recovered);
    }
    hlc.observe(engine.max_version().hlc);

    let saved = match &dir {
        Some(d) => persist::load(&d.join("members")).map_err(|source| Error::Io {
            context: "cannot read the saved member table".into(),
            source,
        })?,
        None => Vec::new(),
    };
    let me_saved = saved
        .iter()
        .find(|m| m.id == config.node_id)
        .map(|m| m.status);
    if me_saved == Some(Status::Left) {
        // It handed its ranges over when it left; what it still stores is stale, and deletes
        // made since may have been collected everywhere else: serving it would resurrect them.
        return Err(Error::Config(format!(
            "node {} left the cluster (its data directory says so) and does not serve its old \
             data again: to rejoin, empty its data directory and start it with --join ADDR",
            config.node_id
        )));
    }
    let initial = match me_saved {
        Some(Status::Up | Status::Leaving) => Status::Up,
        _ if config.join.is_empty() => Status::Up,
        _ => Status::Joining,
    };
    let timing = Timing {
        suspect_after_ms: config.suspect_after.as_millis() as u64,
        down_after_ms: config.down_after.as_millis() as u64,
    };
    let mut table = MemberTable::new(
        config.node_id,
        config.advertise_address.clone(),
        initial,
        timing,
        0,
    );
    let had_peers = saved.iter().any(|m| m.id != config.node_id);
    let no_saved_table = saved.is_empty();
    table.merge_all(saved, 0);
    let tls = config.tls.as_ref().map(crate::tls::load).transpose()?;
    // An empty data directory (no member table, no data) on a node that joins: a new node,
    // or a known one whose disk was replaced. Either way it answers no replica reads until its
    // ranges are streamed in (see cluster::restore).
    let empty_dir = dir.is_some() && no_saved_table && engine.stats().keys == 0;
    let repairs = match &dir {
        Some(d) => RepairLedger::open(d.join("repairs")).map_err(|source| Error::Io {
            context: format!("cannot read {}", d.join("repairs").display()),
            source,
        })?,
        None => RepairLedger::in_memory(),
    };
    let stores = Stores {
        engine,
        log,
        hints,
        repairs,
    };
    let network = env.network.clone().unwrap_or_else(|| {
        crate::replication::channel::tonic_network(
            tls.as_ref().map(|t| t.peer_client.clone()),
            config.peer_source_ip,
        )
    });
    let shared = Shared::new(config, stores, hlc, table, tls, network, env.seed);
    if !had_peers && shared.config.join.is_empty() {
        shared.set_synced();
    }
    if shared.config.replace && !(empty_dir || dir.is_none()) {
        return Err(Error::Config(format!(
            "--replace {} streams the dead node's data into an empty data directory; {} holds \
             data already (empty it, or restart this node without --replace)",
            shared.config.node_id,
            dir.as_ref()
                .map_or(String::new(), |d| d.display().to_string())
        )));
    }
    if (empty_dir || shared.config.replace) && !shared.config.join.is_empty() {
        shared.set_restoring(true);
    }
    let floor_ms = crate::hlc::physical_ms(shared.hlc.last());
    let wall = shared.wall_ms();
    if floor_ms > wall + shared.config.max_clock_offset_ms {
        // Every version this node would stamp now is beyond what its replicas accept: say so
        // once, loudly; the clock guard keeps it from coordinating writes until it catches up.
        tracing::error!(
            ahead_ms = floor_ms - wall,
            highest_timestamp = shared.hlc.last(),
            "this node's recovered clock floor (the highest timestamp it ever issued or merged, \
             from its log and its persisted ceiling) is ahead of its wall clock by more than the \
             max clock offset: it coordinates no writes until the wall clock catches up"
        );
    }
    shared.evaluate_clock();

    // Metrics: bound before serving, so a taken port fails the start with nothing running.
    let mut metrics_address = None;
    let metrics_listener = match &shared.config.metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await.map_err(|source| Error::Io {
                context: format!("cannot serve metrics on {addr} (--metrics-listen)"),
                source,
            })?;
            let bound = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            if !crate::config::is_loopback(&bound) {
                tracing::warn!(address = %bound, "metrics are served without authentication beyond loopback");
            }
            tracing::info!(address = %bound, "serving metrics at /metrics");
            metrics_address = Some(bound);
            Some(l)
        }
        None => None,
    };

    // Serve.
    const MAX_STREAMS_PER_CONNECTION: u32 = 512;
    let services = service::services(&shared);
    let mut server_stop = shared.stop_signal();
    let server = match listener {
        Listener::Tcp(listener) => {
            // Builder::tcp_nodelay only applies to listeners tonic binds itself; set it on
            // every accepted connection, or Nagle plus delayed ACKs add ~40 ms to small answers.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = &shared.tls {
                builder = builder
                    .tls_config(tls.server.clone())
                    .map_err(|e| Error::Config(format!("TLS: {e}")))?;
            }
            tokio::spawn(
                builder
                    .tcp_nodelay(true)
                    // Bounds what one connection can make this node decode and hold at once
                    // (each stream may carry a value of up to the value limit); admission
                    // control bounds the node as a whole. Peers use a handful of streams per
                    // connection.
                    .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
                    .add_service(services.kv)
                    .add_service(services.internal)
                    .add_service(services.echo)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = server_stop.wait_for(|s| *s).await;
                    }),
            )
        }
        Listener::Mounted { mut mount, .. } => {
            mount.mount(
                tonic::service::Routes::new(services.kv)
                    .add_service(services.internal)
                    .add_service(services.echo),
            );
            tokio::spawn(async move {
                let _ = server_stop.wait_for(|s| *s).await;
                mount.unmount();
                Ok::<(), tonic::transport::Error>(())
            })
        }
    };
    tracing::info!(node = shared.id(), address = %shared.config.advertise_address, "serving");

    let mut tasks = Vec::new();
    if let Some(l) = metrics_listener {
        tasks.push(tokio::spawn(crate::metrics::http::serve(
            l,
            crate::metrics::registry(&shared),
        )));
    }
    tasks.extend([
        tokio::spawn(gossip::run_gossip(shared.clone())),
        tokio::spawn(gossip::run_probes(shared.clone())),
        tokio::spawn(handoff::run(shared.clone())),
        tokio::spawn(rebalance::run_cleanup(shared.clone())),
        tokio::spawn(maintenance(shared.clone())),
        tokio::spawn(crate::antientropy::task::run(shared.clone())),
    ]);

    let outcome = async {
        if !shared.config.join.is_empty() {
            rebalance::join(&shared).await?;
        } else if had_peers {
            // Restarted with a saved table: tell the others we are back.
            let missing = gossip::announce(&shared).await;
            if missing.is_empty() {
                shared.set_synced();
            }
        }
        save_members(&shared);
        Ok::<(), Error>(())
    };
    let mut ready_fn = Some(on_ready);
    tokio::pin!(shutdown);
    let stop_rx = shared.stop_signal();
    let joined = tokio::select! {
        r = outcome => r,
        _ = &mut shutdown => Ok(()),
        _ = stopped(stop_rx.clone()) => Ok(()),
    };
    if let Err(e) = joined {
        shared.request_stop();
        let _ = server.await;
        return Err(e);
    }
    if !shared.stopping() {
        tracing::info!(node = shared.id(), "ready");
        if let Some(f) = ready_fn.take() {
            f(Ready {
                node_id: shared.id(),
                address: shared.config.advertise_address.clone(),
                metrics_address: metrics_address.clone(),
            });
        }
        tokio::select! {
            _ = &mut shutdown => {
                if shared.config.leave_on_shutdown && shared.view().my_status == Status::Up {
                    match rebalance::start_leave(&shared).await {
                        Ok(moved) => tracing::info!(moved, "left the cluster before shutting down"),
                        Err(e) => tracing::error!(error = %e, "leave on shutdown failed"),
                    }
                }
            }
            _ = stopped(stop_rx) => {}
        }
    }

    tracing::info!("shutting down: draining in-flight requests");
    shared.request_stop();
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("in-flight requests still running after the drain timeout"),
    }
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    save_members(&shared);
    let s = shared.clone();
    crate::blocking::spawn(move || {
        s.engine.flush()?;
        s.hints.flush()
    })
    .await
    .map_err(|e| Error::Membership(format!("flush task failed: {e}")))??;
    // Background work of finished requests (read repair, straggler hints, stream handlers)
    // still holds the shared state for a moment; the engines (and their directory locks) are
    // released only when the last holder is gone, so wait for it (bounded) before returning:
    // a node restarted on the same directory right after must find it free.
    let until = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while Arc::strong_count(&shared) > 1 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if Arc::strong_count(&shared) > 1 {
        tracing::warn!("background work still holds the engine after the drain timeout");
    }
    drop(shared);
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

fn save_members(shared: &Shared) {
    let Some(dir) = &shared.config.data_dir else {
        return;
    };
    // Two tasks may save at once; they must not share the temporary file.
    static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = SAVING.lock().unwrap_or_else(|p| p.into_inner());
    let members: Vec<_> = shared.read_members(|t, _| t.members().cloned().collect());
    if let Err(e) = persist::save(&dir.join("members"), &members) {
        tracing::warn!(error = %e, "cannot save the member table");
    }
}

/// Periodic storage upkeep: snapshot and compaction, plus saving the member table when it
/// changed.
async fn maintenance(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.maintenance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut members_tick = tokio::time::interval(Duration::from_secs(1));
    let mut saved_version = 0;
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let s = shared.clone();
                let r = crate::blocking::spawn(move || storage_upkeep(&s)).await;
                match r {
                    Ok(Ok(())) => tracing::debug!("maintenance done"),
                    Ok(Err(e)) => tracing::error!(error = %e, "storage maintenance failed"),
                    Err(e) => tracing::error!(error = %e, "storage maintenance task failed"),
                }
            }
            _ = members_tick.tick() => {
                let v = shared.view().ring_version;
                if v != saved_version {
                    saved_version = v;
                    save_members(&shared);
                }
            }
        }
    }
}

/// One round of storage upkeep: a snapshot, and compaction when the durable engine says enough
/// is reclaimable.
fn storage_upkeep(shared: &Shared) -> std::result::Result<(), crate::storage::StorageError> {
    if shared.config.faults.lose_tombstones {
        forget_tombstones(shared.engine.as_ref())?;
    }
    shared.engine.snapshot()?;
    if let Err(e) = shared.hints.upkeep(shared.wall_ms()) {
        // The data engine's upkeep does not depend on the hints'.
        tracing::error!(error = %e, "hint store upkeep failed");
    }
    let due = shared.log.as_ref().is_some_and(|l| l.compaction_due());
    if due || shared.config.faults.lose_tombstones {
        // A tombstone past the grace period goes only once a repair of its range started
        // after it: before that a replica may still lack the delete.
        let policy = RepairedSince {
            ledger: &shared.repairs,
            margin_ms: shared.config.max_clock_offset_ms,
        };
        shared.engine.compact_with(shared.wall_ms(), &policy)?;
    }
    Ok(())
}
/// FAULT INJECTION (`--fault-lose-tombstones`, tests of the checker only): forgets every
/// tombstone at compaction whatever its age, as a storage bug dropping them before the grace
/// period would; a deleted value may then come back from a replica that missed the delete.
fn forget_tombstones(
    engine: &dyn crate::storage::Engine,
) -> Result<(), crate::storage::StorageError> {
    for key in engine.keys() {
        if let Some(e) = engine.get_entry(&key)?
            && e.tombstone
        {
            engine.remove(&key, e.version)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod fault_tests {
    use crate::storage::{Engine, Entry, Memory, Version};

    #[test]
    fn lose_tombstones_forgets_every_tombstone_and_nothing_else() {
        let engine = Memory::new();
        engine
            .apply("kept", Entry::value(&b"v"[..], Version::new(5, 1)))
            .unwrap();
        engine
            .apply("deleted", Entry::tombstone(Version::new(7, 2)))
            .unwrap();
        super::forget_tombstones(&engine).unwrap();
        assert_eq!(engine.get_entry("deleted").unwrap(), None);
        assert_eq!(
            engine.get_entry("kept").unwrap().map(|e| e.version),
            Some(Version::new(5, 1))
        );
    }
}
