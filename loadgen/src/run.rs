//! One scenario run from start to finish: resolve the scenario, measure the echo ceiling,
//! launch (or address) the cluster and wait for the ring, load the records, drive the workload
//! with the fault timeline and the status line beside it, optionally quiesce and append the
//! history's final reads, then write every results file and print the report.
//!
//! Every process started is owned by a value that kills it on drop, so an error or Ctrl-C at
//! any step leaves nothing running.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::LoadgenError;
use crate::cluster::Launched;
use crate::cluster::faults::{FaultLog, FaultTarget, run_timeline};
use crate::cluster::launcher::{LocalCluster, ServerProgram, wait_formed};
use crate::cluster::peers::{self, PeerCluster};
use crate::driver::executor::StoreExecutor;
use crate::driver::{DriveSpec, OpObserver, Stop, drive, load, reported_kinds};
use crate::echo::{Ceiling, measure_ceiling};
use crate::generator::{KeySpace, OpGenerator, ValuePool};
use crate::history::{HistoryRecorder, final_reads, peer_final_reads};
use crate::measure::Aggregate;
use crate::resources::{Sampling, Source};
use crate::results::{self, RunResults};
use crate::scenario::{FaultAction, Scenario, StoreKind};
use crate::status::{StatusLine, run_status};

/// How long the cluster may take to form (first start) or to quiesce (history).
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(90);

/// What a run needs besides the scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Results root (`results/`).
    pub results_root: PathBuf,
    /// The loadgen executable (for `loadgen echo-server` and `loadgen node`).
    pub exe: PathBuf,
    /// A `kvstore-server` binary to use instead of `loadgen node`.
    pub server_bin: Option<PathBuf>,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// No status line.
    pub quiet: bool,
    /// TLS to an existing cluster (`endpoints`): `--ca`, `--cert`, `--key`.
    pub tls: Option<kvstore_client::ClientTls>,
    /// Runs the scenario against this store instead of the one it names (`--target`).
    pub target: Option<StoreKind>,
    /// Overrides the measured duration, in seconds (`--duration`).
    pub duration_s: Option<u64>,
}

/// What a finished run left.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run directory.
    pub dir: PathBuf,
    /// The results written there.
    pub results: RunResults,
    /// The report printed.
    pub report: String,
    /// The checker's verdict on the recorded history (`record_history` runs only).
    pub verdict: Option<kvstore_checker::Report>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the scenario; `cancel` is set by Ctrl-C.
pub async fn run(opts: &RunOptions, cancel: Arc<AtomicBool>) -> Result<RunOutcome, LoadgenError> {
    let mut scenario = Scenario::load(&opts.scenario)?;
    if let Some(kind) = opts.target {
        scenario = scenario.retarget(kind, &opts.scenario)?;
    }
    if let Some(seed) = opts.seed {
        scenario.run.seed = Some(seed);
    }
    if let Some(d) = opts.duration_s {
        // Validated with the rest when the scenario is resolved.
        scenario.run.duration_s = Some(d);
        scenario.run.operations = None;
    }
    let fallback_seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let scenario = scenario.resolve(fallback_seed, &opts.scenario)?;
    let seed = scenario.run.seed.unwrap_or(fallback_seed);
    let dir = results::create_run_dir(
        &opts.results_root,
        &scenario.name,
        &results::utc_stamp(now_unix()),
    )?;
    std::fs::write(dir.join("scenario.toml"), scenario.to_toml())
        .map_err(|e| LoadgenError::results(dir.join("scenario.toml"), e))?;
    let status = Arc::new(StatusLine::new(opts.quiet));
    status.println(&format!(
        "loadgen: {} (seed {seed}) -> {}",
        scenario.name,
        dir.display()
    ));

    // 1. The ceiling, before any node runs.
    let ceiling = if scenario.run.echo_s > 0 {
        status.println(&format!(
            "echo ceiling: {} s at {} clients x {} in flight",
            scenario.run.echo_s, scenario.run.clients, scenario.run.in_flight
        ));
        let payload = scenario.workload.value_size.mean().round().max(1.0) as usize;
        let c = measure_ceiling(
            &opts.exe,
            scenario.run.clients,
            scenario.run.in_flight,
            scenario.run.echo_s,
            payload,
            cancel.clone(),
        )
        .await?;
        status.println(&format!(
            "echo ceiling: {:.0} ops/s (p50 {} us, p99 {} us, payload {} B)",
            c.ops_per_sec, c.p50_us, c.p99_us, c.payload
        ));
        Some(c)
    } else {
        None
    };
    check_cancel(&cancel)?;

    // 2. The cluster.
    let kind = scenario.cluster.kind;
    let (cluster, endpoints) = if scenario.cluster.is_local() && kind != StoreKind::Kvstore {
        let c = PeerCluster::start(&scenario.cluster, &dir.join("nodes"))?;
        let endpoints = c.endpoints();
        status.println(&format!(
            "cluster: {} {} members at {}",
            endpoints.len(),
            kind.name(),
            endpoints.join(" ")
        ));
        (Some(Launched::Peer(Arc::new(Mutex::new(c)))), endpoints)
    } else if scenario.cluster.is_local() {
        let program = match &opts.server_bin {
            Some(bin) => ServerProgram::Binary(bin.clone()),
            None => ServerProgram::SelfExec(opts.exe.clone()),
        };
        // Nodes a clock fault targets run under libfaketime.
        let mut faked: Vec<u32> = scenario
            .faults
            .iter()
            .filter(|f| f.action.is_clock())
            .filter_map(|f| f.node_index())
            .collect();
        faked.sort_unstable();
        faked.dedup();
        // Nodes a disk_full fault targets keep their data on a small tmpfs of their own.
        let mut small: Vec<u32> = scenario
            .faults
            .iter()
            .filter(|f| f.action == FaultAction::DiskFull)
            .filter_map(|f| f.node_index())
            .collect();
        small.sort_unstable();
        small.dedup();
        let c = if crate::netns::needs_namespace(&scenario) {
            if !crate::netns::inside() {
                return Err(LoadgenError::Cluster(
                    "this scenario cuts links between nodes: it runs inside a network namespace \
                     of its own, which `loadgen run` enters (root, unshare and iptables needed)"
                        .into(),
                ));
            }
            LocalCluster::start_partitioned(
                &scenario.cluster,
                program,
                &dir.join("nodes"),
                &faked,
                &small,
                scenario.shapes_links(),
            )?
        } else {
            LocalCluster::start_for_faults(
                &scenario.cluster,
                program,
                &dir.join("nodes"),
                &faked,
                &small,
            )?
        };
        let endpoints = c.endpoints();
        status.println(&format!(
            "cluster: {} nodes at {}",
            endpoints.len(),
            endpoints.join(" ")
        ));
        (Some(Launched::Kv(Arc::new(Mutex::new(c)))), endpoints)
    } else {
        (None, scenario.cluster.endpoints.clone())
    };
    // Node resources, sampled from now until the measured phase ends.
    let sampling = match &cluster {
        Some(c) => Some(Source::Local(c.clone())),
        None if !scenario.cluster.metrics_endpoints.is_empty() => {
            Some(Source::Metrics(scenario.cluster.metrics_endpoints.clone()))
        }
        None => None,
    }
    .map(|source| Sampling::start(&dir.join("nodes.csv"), source))
    .transpose()?;
    let tls = match &cluster {
        Some(Launched::Kv(c)) => c.lock().unwrap_or_else(|p| p.into_inner()).client_tls()?,
        Some(Launched::Peer(_)) => None,
        None => opts.tls.clone(),
    };
    let formed = tokio::select! {
        r = ready(kind, &endpoints, tls.as_ref()) => r,
        _ = wait_cancel(&cancel) => Err(LoadgenError::Interrupted),
    };
    if let Err(e) = formed {
        return Err(with_logs(e, cluster.as_ref()));
    }
    status.println(match kind {
        StoreKind::Kvstore => "cluster: ring formed, every member up",
        StoreKind::Redis => "cluster: redis primary up, every replica linked",
        StoreKind::Etcd => "cluster: etcd has a leader and serves linearizable reads",
    });
    let outcome = drive_and_report(
        &scenario,
        seed,
        &dir,
        ceiling,
        &endpoints,
        cluster.clone(),
        sampling,
        tls,
        status.clone(),
        cancel.clone(),
    )
    .await;
    if let Some(Launched::Kv(c)) = &cluster {
        save_metrics(c, &dir.join("nodes"), &status).await;
    }
    // Stop every node now (also on error), before measuring the ceiling again and plotting.
    drop(cluster);
    let (mut results, history_result) = outcome?;
    if let Some(before) = results.ceiling.clone() {
        check_cancel(&cancel)?;
        let r = &scenario.run;
        let after = measure_ceiling(
            &opts.exe,
            r.clients,
            r.in_flight,
            r.echo_s,
            before.payload,
            cancel.clone(),
        )
        .await?;
        status.println(&format!(
            "echo ceiling after the run: {:.0} ops/s",
            after.ops_per_sec
        ));
        results.ceiling = Some(before.best(after));
    }
    status.finish();
    let phases = results::phases::compute(
        &results.measurements,
        &results.faults,
        results.measured_seconds,
    );
    results::write_all(&dir, &results, &phases)?;
    let mut report = results::report::render(&results, &phases, Some(&dir));
    history_result?;
    let verdict = if scenario.run.record_history {
        let v = crate::verdict::judge(&dir)?;
        report.push_str(&crate::verdict::render(&v));
        Some(v)
    } else {
        None
    };
    Ok(RunOutcome {
        dir,
        results,
        report,
        verdict,
    })
}

/// Saves each node's last `/metrics` as `<dir>/node-<i>.prom` (when the cluster serves them);
/// a node that does not answer is reported, not fatal.
async fn save_metrics(cluster: &Arc<Mutex<LocalCluster>>, dir: &Path, status: &StatusLine) {
    let endpoints = cluster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .metrics_endpoints();
    for (i, m) in endpoints.into_iter().enumerate() {
        let Some(addr) = m else { continue };
        let path = dir.join(format!("node-{i}.prom"));
        match crate::resources::scrape::fetch(&addr).await {
            Ok(text) => {
                if let Err(e) = std::fs::write(&path, text) {
                    status.println(&format!("metrics: cannot write {}: {e}", path.display()));
                }
            }
            Err(e) => status.println(&format!("metrics: node {i}: {e}")),
        }
    }
}

fn check_cancel(cancel: &AtomicBool) -> Result<(), LoadgenError> {
    if cancel.load(Ordering::Relaxed) {
        Err(LoadgenError::Interrupted)
    } else {
        Ok(())
    }
}

/// Waits until the store at `endpoints` serves every member.
async fn ready(
    kind: StoreKind,
    endpoints: &[String],
    tls: Option<&kvstore_client::ClientTls>,
) -> Result<(), LoadgenError> {
    match kind {
        StoreKind::Kvstore => wait_formed(endpoints, FORM_TIMEOUT, false, tls).await,
        peer => peers::wait_ready(peer, endpoints, FORM_TIMEOUT).await,
    }
}

async fn wait_cancel(cancel: &AtomicBool) {
    while !cancel.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Adds the tail of the first node log to a cluster error, so a node that would not start says
/// why.
fn with_logs(e: LoadgenError, cluster: Option<&Launched>) -> LoadgenError {
    let Some(c) = cluster else { return e };
    let log = c.log_path(0);
    let tail = std::fs::read_to_string(&log)
        .map(|t| {
            t.lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    match e {
        LoadgenError::Cluster(m) if !tail.is_empty() => LoadgenError::Cluster(format!(
            "{m}\n--- {} (last lines) ---\n{tail}",
            log.display()
        )),
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive_and_report(
    scenario: &Scenario,
    seed: u64,
    dir: &Path,
    ceiling: Option<Ceiling>,
    endpoints: &[String],
    cluster: Option<Launched>,
    sampling: Option<Sampling>,
    tls: Option<kvstore_client::ClientTls>,
    status: Arc<StatusLine>,
    cancel: Arc<AtomicBool>,
) -> Result<(RunResults, Result<(), LoadgenError>), LoadgenError> {
    let run = &scenario.run;
    let w = &scenario.workload;
    let timeout = Duration::from_millis(run.request_timeout_ms);
    let mut executors = Vec::with_capacity(run.clients as usize);
    // With `clients = "follow"` partitions, client c connects from its own loopback address
    // and starts at node c mod n (its home: the node it first talks to, for its ring), so the
    // clients spread over the nodes and the partition can cut each off with its home's side.
    let follow = match &cluster {
        Some(Launched::Kv(c)) if scenario.partitions_clients() => Some(c),
        _ => None,
    };
    let mut homes = Vec::new();
    for c in 0..run.clients {
        let (seeds, local) = match follow {
            Some(_) => {
                let home = c as usize % endpoints.len().max(1);
                let mut seeds = endpoints.to_vec();
                seeds.rotate_left(home);
                let ip = crate::cluster::partition::client_ip(c as usize);
                homes.push((ip, home));
                (seeds, Some(std::net::IpAddr::V4(ip)))
            }
            None => (endpoints.to_vec(), None),
        };
        let e = StoreExecutor::connect(&scenario.cluster, &seeds, c, timeout, tls.clone(), local)
            .await?;
        executors.push(Arc::new(e));
    }
    if let Some(c) = follow {
        c.lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_clients(homes);
    }
    let pool = ValuePool::new(w.value_size.max() as usize, seed);
    let space = Arc::new(KeySpace::new(w.record_count, &w.key_prefix));
    let make_gen = |worker: u64| OpGenerator::new(w, seed, worker, pool.clone(), space.clone());
    let history = if run.record_history {
        Some(Arc::new(HistoryRecorder::create(
            &dir.join("history.csv"),
            Instant::now(),
            crate::history::max_clock_offset_ms(&scenario.cluster.server_args),
        )?))
    } else {
        None
    };
    let observer = history.clone().map(|h| h as Arc<dyn OpObserver>);

    // 3. Load phase.
    let progress = Arc::new(AtomicU64::new(0));
    let load_start = Instant::now();
    let load_concurrency = run.in_flight.clamp(8, 64);
    {
        let (p, s, total, done) = (
            progress.clone(),
            status.clone(),
            w.record_count,
            Arc::new(AtomicBool::new(false)),
        );
        let d2 = done.clone();
        let ticker = tokio::spawn(async move {
            while !d2.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                s.show(&format!(
                    "[load] {} / {total} records",
                    p.load(Ordering::Relaxed)
                ));
            }
        });
        let r = load(
            &executors,
            &make_gen,
            w.record_count,
            load_concurrency,
            progress.clone(),
            observer.clone(),
            cancel.clone(),
        )
        .await;
        done.store(true, Ordering::Relaxed);
        let _ = ticker.await;
        r?;
    }
    let load_secs = load_start.elapsed().as_secs_f64();
    status.println(&format!(
        "load: {} records in {load_secs:.1} s",
        w.record_count
    ));

    // 4. The run, with faults and status beside it.
    let warmup = Duration::from_secs(run.warmup_s);
    let origin = Instant::now() + warmup;
    let agg = Arc::new(Aggregate::new(origin));
    let fault_log = Arc::new(FaultLog::new(endpoints.len()));
    let target = match &cluster {
        Some(Launched::Kv(c)) => FaultTarget::Local(c.clone()),
        Some(Launched::Peer(c)) => FaultTarget::Peers(c.clone()),
        None => FaultTarget::Commands {
            commands: scenario.cluster.fault_commands.clone(),
            endpoints: endpoints.to_vec(),
        },
    };
    let timeline_cancel = Arc::new(AtomicBool::new(false));
    let timeline = tokio::spawn(run_timeline(
        scenario.faults.clone(),
        target,
        origin,
        fault_log.clone(),
        timeline_cancel.clone(),
    ));
    let origin_sample = sampling.as_ref().map(|s| s.sample_at(origin));
    let status_done = Arc::new(AtomicBool::new(false));
    let status_task = tokio::spawn(run_status(
        status.clone(),
        agg.clone(),
        fault_log.clone(),
        run.duration_s.map(Duration::from_secs),
        status_done.clone(),
    ));
    let spec = DriveSpec {
        clients: run.clients,
        in_flight: run.in_flight,
        warmup,
        stop: match (run.duration_s, run.operations) {
            (_, Some(n)) => Stop::Operations(n),
            (Some(d), None) => Stop::After(Duration::from_secs(d)),
            (None, None) => Stop::After(Duration::from_secs(10)),
        },
        target_rate: run.target_rate,
    };
    let end = drive(
        &executors,
        &make_gen,
        &spec,
        agg.clone(),
        observer.clone(),
        cancel.clone(),
    )
    .await;
    timeline_cancel.store(true, Ordering::Relaxed);
    let _ = timeline.await;
    status_done.store(true, Ordering::Relaxed);
    let _ = status_task.await;
    let end_sample = match &sampling {
        Some(s) => Some(s.sampler().sample_now().await),
        None => None,
    };
    check_cancel(&cancel)?;
    let measurements = agg.finish(end, reported_kinds(w));
    let resources = match (&sampling, origin_sample, end_sample) {
        (Some(s), Some(start), Some(end_t)) => {
            let start_t = start.await.unwrap_or(0.0);
            Some(s.finish(
                scenario.cluster.node_count(),
                (start_t, end_t),
                measurements.overall().ok,
            ))
        }
        _ => None,
    };
    let measured_seconds = match run.duration_s {
        Some(d) if run.operations.is_none() => d,
        _ => measurements.elapsed.as_secs(),
    };
    let results = RunResults {
        scenario: scenario.clone(),
        ceiling,
        measurements,
        faults: fault_log.events(),
        measured_seconds,
        load: Some((w.record_count, load_secs)),
        resources,
    };

    // 5. History: quiesce, then final reads of every key the run touched.
    let history_result = match history {
        Some(h) => {
            crate::history::record_clock_faults(&h, &fault_log, origin, endpoints);
            finish_history(
                &h,
                &executors[0],
                endpoints,
                cluster.as_ref(),
                tls.as_ref(),
                space.count(),
                w,
                scenario.run.final_repair,
                &status,
                &cancel,
            )
            .await
        }
        None => Ok(()),
    };
    Ok((results, history_result))
}

#[allow(clippy::too_many_arguments)]
async fn finish_history(
    h: &HistoryRecorder,
    exec: &StoreExecutor,
    endpoints: &[String],
    cluster: Option<&Launched>,
    tls: Option<&kvstore_client::ClientTls>,
    keys: u64,
    w: &crate::scenario::WorkloadSpec,
    final_repair: bool,
    status: &StatusLine,
    cancel: &AtomicBool,
) -> Result<(), LoadgenError> {
    if let Some(c) = cluster {
        c.heal()
            .map_err(|e| LoadgenError::History(format!("cannot heal the cluster: {e}")))?;
        h.clock_faults_healed(Instant::now());
    }
    // The membership at the end of the run: nodes that left or were replaced are neither
    // waited for nor read.
    let (live, gone) = match cluster {
        Some(Launched::Kv(c)) => {
            let c = c.lock().unwrap_or_else(|p| p.into_inner());
            (c.live_endpoints(), c.gone_endpoints())
        }
        _ => (endpoints.to_vec(), Vec::new()),
    };
    let endpoints = &live[..];
    let space = KeySpace::new(keys, &w.key_prefix);
    let progress = AtomicU64::new(0);
    let keys_iter = (0..keys).map(|i| space.key(i));
    match exec {
        StoreExecutor::Kv(kv) => {
            status.println(
                "history: quiescing (faults healed, waiting for every member up and hints drained)",
            );
            if gone.is_empty() {
                wait_formed(endpoints, QUIESCE_TIMEOUT, true, tls).await?;
            } else {
                // Hints for a replaced node never drain (it stays a down member): wait until
                // the live members' hint counts stop falling instead.
                wait_formed(endpoints, QUIESCE_TIMEOUT, false, tls).await?;
                crate::cluster::membership::wait_hints_settled(endpoints, QUIESCE_TIMEOUT, tls)
                    .await?;
            }
            check_cancel(cancel)?;
            if final_repair {
                repair_everywhere(kv.client(), endpoints, status).await?;
                check_cancel(cancel)?;
            }
            // Route the final reads by the ring as it is now (joined nodes, left ones gone).
            kv.client()
                .ring()
                .await
                .map_err(|e| LoadgenError::History(format!("cannot fetch the final ring: {e}")))?;
            status.println(&format!("history: final reads of {keys} keys"));
            final_reads(h, kv.client(), keys_iter, &progress, &gone).await?;
        }
        peer => {
            status.println(
                "history: quiescing (faults healed, waiting for every member to catch up)",
            );
            quiesce_peer(peer, endpoints).await?;
            check_cancel(cancel)?;
            status.println(&format!("history: final reads of {keys} keys"));
            peer_final_reads(h, peer, keys_iter, &progress).await?;
        }
    }
    h.finish()
}

/// Cycles a node gets to complete a repair (its trees may still be building after a restart).
const REPAIR_ATTEMPTS: u32 = 5;

/// Runs a repair cycle on every live node in turn (`run.final_repair`), each until complete.
async fn repair_everywhere(
    client: &kvstore_client::Client,
    endpoints: &[String],
    status: &StatusLine,
) -> Result<(), LoadgenError> {
    for addr in endpoints {
        let mut attempt = 1;
        loop {
            let s = client
                .repair(addr, Vec::new(), |_| {})
                .await
                .map_err(|e| LoadgenError::History(format!("repair on {addr}: {e}")))?;
            status.println(&format!(
                "history: repair on {addr}: {} of {} arcs repaired, {} keys compared, {} \
                 fetched, {} pushed, {} bytes, {} ms{}",
                s.arcs_repaired,
                s.arcs,
                s.keys_compared,
                s.keys_fetched,
                s.keys_pushed,
                s.bytes,
                s.elapsed_ms,
                if s.error.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", s.error)
                }
            ));
            if s.complete {
                break;
            }
            if attempt >= REPAIR_ATTEMPTS {
                return Err(LoadgenError::History(format!(
                    "repair on {addr} still incomplete after {attempt} cycles: {}",
                    s.error
                )));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

/// A healed peer is ready again and every member holds every acknowledged write it will get.
async fn quiesce_peer(exec: &StoreExecutor, endpoints: &[String]) -> Result<(), LoadgenError> {
    match exec {
        StoreExecutor::Kv(_) => wait_formed(endpoints, QUIESCE_TIMEOUT, true, None).await,
        StoreExecutor::Redis(r) => {
            peers::wait_ready(StoreKind::Redis, endpoints, QUIESCE_TIMEOUT).await?;
            r.wait_replicated(QUIESCE_TIMEOUT)
                .await
                .map_err(LoadgenError::History)
        }
        StoreExecutor::Etcd(_) => {
            peers::wait_ready(StoreKind::Etcd, endpoints, QUIESCE_TIMEOUT).await?;
            peers::etcd_quiesce(endpoints, QUIESCE_TIMEOUT).await
        }
    }
}
