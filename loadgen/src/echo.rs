//! The machine's ceiling: a bare gRPC echo service and loadgen's own client driving it at the
//! run's concurrency, measured before every run so that each summary can report
//! `efficiency = kvstore ops/s / echo ops/s` and runs on different machines compare.
//!
//! The echo server runs as its own process (`loadgen echo-server`), like the nodes, so it does
//! not share loadgen's runtime; each loadgen client gets its own connection. The payload is the
//! workload's mean value size, so a 1 MB scenario is compared with a 1 MB echo. It is measured
//! before the run and again after the nodes stopped; the better sample is the ceiling.
//!
//! Not here: any kvstore logic. The same driver and recorder measure both, so the ratio compares
//! like with like.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvstore_client::ErrorKind;
use kvstore_proto::limits::GRPC_MESSAGE_LIMIT;
use kvstore_proto::pb::{EchoMessage, echo_client::EchoClient};
use tonic::transport::{Channel, Endpoint};

use crate::LoadgenError;
use crate::driver::{DriveSpec, Executor, OpReport, Stop, drive};
use crate::generator::{KeySpace, Op, OpGenerator, ValuePool};
use crate::measure::Aggregate;
use crate::scenario::WorkloadSpec;
use kvstore_harness::process::{Announcement, ChildProcess};

pub use kvstore_harness::echo::{EchoService, serve};

/// Maps a gRPC status to the error classes loadgen counts.
pub fn classify(status: &tonic::Status) -> ErrorKind {
    match status.code() {
        tonic::Code::Unavailable => ErrorKind::Unavailable,
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => ErrorKind::UnknownOutcome,
        _ => ErrorKind::Other,
    }
}

/// One client's echo connection, sending a fixed payload.
#[derive(Debug, Clone)]
pub struct EchoExecutor {
    client: EchoClient<Channel>,
    payload: Bytes,
}

impl EchoExecutor {
    /// Opens a new connection to `addr`; every request carries `payload` and must answer
    /// within `timeout`.
    pub async fn connect(
        addr: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Self, LoadgenError> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| LoadgenError::Echo(format!("bad address {addr}: {e}")))?
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| LoadgenError::Echo(format!("cannot connect to {addr}: {e}")))?;
        Ok(Self {
            client: EchoClient::new(channel)
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT)
                .max_encoding_message_size(GRPC_MESSAGE_LIMIT),
            payload,
        })
    }
}

impl Executor for EchoExecutor {
    async fn execute(&self, _op: &Op) -> OpReport {
        let mut client = self.client.clone();
        let msg = EchoMessage {
            payload: self.payload.clone(),
        };
        match client.echo(msg).await {
            Ok(r) if r.get_ref().payload.len() == self.payload.len() => OpReport::default(),
            Ok(_) => OpReport::failed(ErrorKind::Other),
            Err(status) => OpReport::failed(classify(&status)),
        }
    }
}

/// An echo server in its own process, killed on drop.
#[derive(Debug)]
pub struct EchoProcess {
    /// The process.
    pub process: ChildProcess,
    /// Where it listens.
    pub addr: String,
}

impl EchoProcess {
    /// Starts `loadgen echo-server` from the loadgen executable `exe`.
    pub fn start(exe: &Path) -> Result<Self, LoadgenError> {
        let args = vec![
            "echo-server".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        let mut cmd = std::process::Command::new(exe);
        cmd.args(&args);
        let (process, addr) = ChildProcess::spawn_announced(
            "echo",
            cmd,
            Announcement::Listening,
            Duration::from_secs(30),
        )
        .map_err(|e| LoadgenError::Echo(format!("cannot start {}: {e}", exe.display())))?;
        addr.parse::<SocketAddr>().map_err(|e| {
            LoadgenError::Echo(format!("echo server printed a bad address {addr:?}: {e}"))
        })?;
        Ok(Self { process, addr })
    }
}

/// The ceiling measured.
#[derive(Debug, Clone)]
pub struct Ceiling {
    /// Echo round trips per second.
    pub ops_per_sec: f64,
    /// Median round trip, microseconds.
    pub p50_us: u64,
    /// 99th percentile round trip, microseconds.
    pub p99_us: u64,
    /// Payload bytes each way.
    pub payload: usize,
    /// Every measurement taken (before the run, and after it when the run got that far): the
    /// ceiling is the best of them, since on a shared machine a neighbour's burst can only make
    /// one sample look slower than the machine is.
    pub samples: Vec<f64>,
}

impl Ceiling {
    /// The better of two measurements, keeping both samples.
    pub fn best(self, other: Ceiling) -> Ceiling {
        let mut samples = self.samples.clone();
        samples.extend(other.samples.iter().copied());
        let mut best = if other.ops_per_sec > self.ops_per_sec {
            other
        } else {
            self
        };
        best.samples = samples;
        best
    }
}

/// Measures the echo ceiling: `clients` connections with `in_flight` requests each, closed
/// loop, for `seconds` (after a half-second warm-up), with a payload of `payload` bytes.
pub async fn measure_ceiling(
    exe: &Path,
    clients: u32,
    in_flight: u32,
    seconds: u64,
    payload: usize,
    cancel: Arc<AtomicBool>,
) -> Result<Ceiling, LoadgenError> {
    let server = EchoProcess::start(exe)?;
    let bytes = ValuePool::new(payload, 1).value(&mut rand::rng(), payload);
    let mut executors = Vec::with_capacity(clients as usize);
    for _ in 0..clients {
        executors.push(Arc::new(
            EchoExecutor::connect(&server.addr, bytes.clone(), Duration::from_secs(10)).await?,
        ));
    }
    let warmup = Duration::from_millis(500);
    let agg = Arc::new(Aggregate::new(Instant::now() + warmup));
    let w = WorkloadSpec {
        read: 1.0,
        update: 0.0,
        record_count: 1,
        ..WorkloadSpec::default()
    };
    let space = Arc::new(KeySpace::new(1, "echo"));
    let pool = ValuePool::new(16, 1);
    let make_gen = |worker: u64| OpGenerator::new(&w, 1, worker, pool.clone(), space.clone());
    let spec = DriveSpec {
        clients,
        in_flight,
        warmup,
        stop: Stop::After(Duration::from_secs(seconds.max(1))),
        target_rate: None,
    };
    let end = drive(&executors, &make_gen, &spec, agg.clone(), None, cancel).await;
    let m = agg.finish(end, vec![crate::generator::OpKind::Read]);
    drop(server);
    let all = m.overall();
    if all.ok == 0 {
        return Err(LoadgenError::Echo(format!(
            "no echo succeeded ({} errors)",
            all.error_total()
        )));
    }
    Ok(Ceiling {
        ops_per_sec: all.ok as f64 / m.elapsed.as_secs_f64().max(1e-9),
        p50_us: all.latency.value_at_quantile(0.5),
        p99_us: all.latency.value_at_quantile(0.99),
        payload,
        samples: vec![all.ok as f64 / m.elapsed.as_secs_f64().max(1e-9)],
    })
}
