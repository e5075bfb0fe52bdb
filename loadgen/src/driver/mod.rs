//! Driving load: independent clients, each with `in_flight` concurrent request slots, in closed
//! or open loop, plus the load phase that inserts the records first.
//!
//! Closed loop: a slot sends its next operation as soon as the previous one answers; latency
//! equals service time. Open loop (`target_rate`): each client owns a schedule of evenly spaced
//! intended start times (`clients / target_rate` apart); a slot takes the next scheduled
//! operation, sleeps until its intended time if that is still ahead, and sends it. When the
//! server stalls, the schedule runs on while the slots wait, so the operations queued behind the
//! stall carry the waiting time in their latency (measured from the intended start) but not in
//! their service time (measured from the actual send): the coordinated-omission correction.
//! Slots never exceed `in_flight` per client, so a stalled cluster cannot make loadgen open
//! unbounded requests. (The tokio timer's 1 ms granularity can add up to ~1 ms to open-loop
//! latencies; that is the cost of sleeping instead of spinning.)
//!
//! Everything the driver talks to is an [`Executor`]: a store through its [`store::Store`]
//! driver ([`executor::StoreExecutor`]: kvstore's client, [`redis`] or [`etcd`]), or the gRPC echo
//! service for the ceiling. The drive loop itself knows nothing about any store or protocol.

pub mod etcd;
pub mod executor;
pub mod kv;
pub mod outcome;
pub mod redis;
pub mod schedule;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvstore_client::{ErrorKind, Version};

use crate::LoadgenError;
use crate::generator::{Op, OpGenerator, OpKind};
use crate::measure::{Aggregate, Recorder};
pub use schedule::Schedule;

/// What an executed operation returned, beyond success or failure (for history recording).
#[derive(Debug, Clone)]
pub struct OpReport {
    /// Success, or the class of failure.
    pub outcome: Result<(), ErrorKind>,
    /// For reads (and the read of a read-modify-write): the value read, `None` when absent.
    pub read_value: Option<Option<Bytes>>,
    /// The version read (reads) or assigned (writes), when the cluster reported one.
    pub version: Option<Version>,
    /// The coordinator that answered.
    pub coordinator: String,
    /// For reads: the expiry the store reported, ms since the Unix epoch (0 = none).
    pub expires_at_ms: u64,
    /// For read-modify-writes: the version the read saw (`version` is the write's).
    pub read_version: Option<Version>,
}

impl Default for OpReport {
    /// A bare success.
    fn default() -> Self {
        Self {
            outcome: Ok(()),
            read_value: None,
            version: None,
            coordinator: String::new(),
            expires_at_ms: 0,
            read_version: None,
        }
    }
}

impl OpReport {
    /// A bare failure.
    pub fn failed(kind: ErrorKind) -> Self {
        Self {
            outcome: Err(kind),
            ..Self::default()
        }
    }

    /// An acknowledged write (put or delete) and the version it was given.
    pub fn written(version: Version, coordinator: String) -> Self {
        Self {
            outcome: Ok(()),
            version: Some(version),
            coordinator,
            ..Self::default()
        }
    }
}

/// Sends operations somewhere. One executor per client: it owns that client's connections.
pub trait Executor: Send + Sync + 'static {
    /// Executes `op`.
    fn execute(&self, op: &Op) -> impl Future<Output = OpReport> + Send;
}

/// Sees every operation, warm-up and load phase included (history recording).
pub trait OpObserver: Send + Sync + 'static {
    /// Called before `op` is sent by client `client`; may rewrite its value (to embed an id).
    /// Returns a token handed back to [`OpObserver::completed`].
    fn prepare(&self, client: u32, op: &mut Op) -> u64;
    /// Called when `op` answered.
    fn completed(
        &self,
        token: u64,
        client: u32,
        op: &Op,
        started: Instant,
        done: Instant,
        report: &OpReport,
    );
}

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (warm-up excluded).
    After(Duration),
    /// After this many measured operations have been started.
    Operations(u64),
}

/// How to drive.
#[derive(Debug, Clone)]
pub struct DriveSpec {
    /// Independent clients.
    pub clients: u32,
    /// Concurrent requests per client.
    pub in_flight: u32,
    /// Time before the origin whose operations are not recorded.
    pub warmup: Duration,
    /// End of the measured phase.
    pub stop: Stop,
    /// Open loop at this many operations per second in total; closed loop when `None`.
    pub target_rate: Option<f64>,
}

/// Drives `executors` (one per client) with operations from `make_gen(worker)`, recording into
/// `agg` (whose origin is the end of the warm-up; the run starts `spec.warmup` before it).
/// Returns when every slot has finished; `cancel` stops the slots early (Ctrl-C).
pub async fn drive<E: Executor>(
    executors: &[Arc<E>],
    make_gen: &(dyn Fn(u64) -> OpGenerator + Sync),
    spec: &DriveSpec,
    agg: Arc<Aggregate>,
    observer: Option<Arc<dyn OpObserver>>,
    cancel: Arc<AtomicBool>,
) -> Instant {
    let origin = agg.origin();
    let start = origin.checked_sub(spec.warmup).unwrap_or(origin);
    let measured_started = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (c, exec) in executors.iter().enumerate() {
        let schedule = Arc::new(Schedule::new(start, spec.target_rate, spec.clients));
        for slot in 0..spec.in_flight {
            let worker = c as u64 * spec.in_flight as u64 + slot as u64;
            let mut generator = make_gen(worker);
            let (exec, schedule, agg, cancel) =
                (exec.clone(), schedule.clone(), agg.clone(), cancel.clone());
            let (measured_started, observer, stop) =
                (measured_started.clone(), observer.clone(), spec.stop);
            tasks.spawn(async move {
                let mut rec = Recorder::new(agg);
                let mut last = Instant::now();
                let mut op = Op::default();
                while !cancel.load(Ordering::Relaxed) {
                    let intended = schedule.next_intended();
                    let measured = intended >= origin;
                    let go_on = match stop {
                        Stop::After(d) => intended < origin + d,
                        Stop::Operations(n) => {
                            !measured || measured_started.fetch_add(1, Ordering::Relaxed) < n
                        }
                    };
                    if !go_on {
                        break;
                    }
                    if schedule.is_open() {
                        tokio::time::sleep_until(intended.into()).await;
                    }
                    generator.next_op_into(&mut op);
                    // The history sees warm-up operations too: their writes are real.
                    let token = observer.as_ref().map(|o| o.prepare(c as u32, &mut op));
                    let intended = if schedule.is_open() {
                        intended
                    } else {
                        Instant::now()
                    };
                    let started = Instant::now();
                    let report = exec.execute(&op).await;
                    let done = Instant::now();
                    rec.record(op.kind, intended, started, done, report.outcome);
                    if let (Some(o), Some(t)) = (&observer, token) {
                        o.completed(t, c as u32, &op, started, done, &report);
                    }
                    last = done;
                }
                rec.finish();
                last
            });
        }
    }
    let mut end = origin;
    while let Some(r) = tasks.join_next().await {
        if let Ok(last) = r {
            end = end.max(last);
        }
    }
    end
}

/// Inserts records `0..count` through `executors` with `concurrency` slots per executor,
/// retrying each failed insert up to `RETRIES` times. Fails when any record could not be
/// written, since the run would then read a key space that is not what the scenario says.
pub async fn load<E: Executor>(
    executors: &[Arc<E>],
    make_gen: &(dyn Fn(u64) -> OpGenerator + Sync),
    count: u64,
    concurrency: u32,
    progress: Arc<AtomicU64>,
    observer: Option<Arc<dyn OpObserver>>,
    cancel: Arc<AtomicBool>,
) -> Result<(), LoadgenError> {
    const RETRIES: u32 = 5;
    let next = Arc::new(AtomicU64::new(0));
    // Set when one slot failed for good: the others stop early.
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for (c, exec) in executors.iter().enumerate() {
        for slot in 0..concurrency {
            let mut generator = make_gen(1_000_000 + c as u64 * concurrency as u64 + slot as u64);
            let (exec, next, progress, cancel, failed, observer) = (
                exec.clone(),
                next.clone(),
                progress.clone(),
                cancel.clone(),
                failed.clone(),
                observer.clone(),
            );
            tasks.spawn(async move {
                loop {
                    if cancel.load(Ordering::Relaxed) {
                        return Err(LoadgenError::Interrupted);
                    }
                    if failed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok(());
                    }
                    let template = generator.load_op(i);
                    let mut attempt = 0;
                    loop {
                        // Each attempt is its own operation in a history (its own value id).
                        let mut op = template.clone();
                        let token = observer.as_ref().map(|o| o.prepare(c as u32, &mut op));
                        let started = Instant::now();
                        let r = exec.execute(&op).await;
                        if let (Some(o), Some(t)) = (&observer, token) {
                            o.completed(t, c as u32, &op, started, Instant::now(), &r);
                        }
                        match r.outcome {
                            Ok(()) => break,
                            Err(kind) if attempt >= RETRIES => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(LoadgenError::Load(format!(
                                    "insert of {} failed {} times, last as {kind:?}",
                                    op.key,
                                    attempt + 1
                                )));
                            }
                            Err(_) => {
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                            }
                        }
                    }
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
    let mut result = Ok(());
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap_or_else(|e| Err(LoadgenError::Load(format!("load task failed: {e}"))));
        if result.is_ok() {
            result = r;
        }
    }
    result
}

/// The kinds reported for a run (those with a share in the mix).
pub fn reported_kinds(w: &crate::scenario::WorkloadSpec) -> Vec<OpKind> {
    crate::generator::OpMix::new(w).kinds()
}
