//! Open loop against a real gRPC server (loadgen's echo service, in its own process) that is
//! stalled with SIGSTOP for a second: operations scheduled during the stall wait for it, so
//! their latency (from the intended start) includes the wait while their service time (from
//! the actual send) does not. Closed loop would hide the stall (coordinated omission).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use bytes::Bytes;
use loadgen::driver::{DriveSpec, Stop, drive};
use loadgen::echo::{EchoExecutor, EchoProcess};
use loadgen::generator::{KeySpace, OpGenerator, OpKind, ValuePool};
use loadgen::measure::Aggregate;
use loadgen::scenario::WorkloadSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intended_time_latency_includes_a_pause_and_service_time_does_not() {
    let server = EchoProcess::start(Path::new(env!("CARGO_BIN_EXE_loadgen"))).expect("echo server");
    let exec = Arc::new(
        EchoExecutor::connect(
            &server.addr,
            Bytes::from_static(&[7u8; 64]),
            Duration::from_secs(30),
        )
        .await
        .expect("connect"),
    );
    let w = WorkloadSpec {
        read: 1.0,
        update: 0.0,
        record_count: 10,
        ..WorkloadSpec::default()
    };
    let space = Arc::new(KeySpace::new(10, "k"));
    let pool = ValuePool::new(16, 1);
    let make_gen = |worker: u64| OpGenerator::new(&w, 1, worker, pool.clone(), space.clone());
    let origin = Instant::now() + Duration::from_millis(200);
    let agg = Arc::new(Aggregate::new(origin));
    let spec = DriveSpec {
        clients: 1,
        in_flight: 4,
        warmup: Duration::from_millis(200),
        stop: Stop::After(Duration::from_secs(4)),
        target_rate: Some(200.0),
    };
    // Stall the server from 1 s to 2 s of the measured phase.
    let pid = server.process.pid();
    let staller = tokio::spawn(async move {
        tokio::time::sleep_until((origin + Duration::from_secs(1)).into()).await;
        // SAFETY: signals to the child this test started, by its PID.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };
        let paused_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
        paused_at.elapsed()
    });
    let end = drive(
        &[exec],
        &make_gen,
        &spec,
        agg.clone(),
        None,
        Arc::new(AtomicBool::new(false)),
    )
    .await;
    let paused_for = staller.await.expect("staller");
    let m = agg.finish(end, vec![OpKind::Read]);
    let t = &m.totals[OpKind::Read.index()];
    assert_eq!(t.error_total(), 0, "no echo may fail");
    // ~800 operations were scheduled; ~200 of them fell into the stall.
    assert!(t.ok >= 600, "only {} operations", t.ok);
    let lat = |q| t.latency.value_at_quantile(q);
    let svc = |q| t.service.value_at_quantile(q);
    // The first operation scheduled after the stall began waited (almost) all of it.
    assert!(
        t.latency.max() >= (paused_for.as_micros() as u64) * 8 / 10,
        "max latency {} us for a {paused_for:?} stall",
        t.latency.max()
    );
    // About a quarter of the operations waited between 0 and 1 s: the 90th percentile of latency
    // is well into the stall, while at most `in_flight` operations were on the wire when it
    // began, so service time's 90th percentile stays at a normal round trip.
    assert!(
        lat(0.9) >= 250_000,
        "latency p90 {} us should include the stall",
        lat(0.9)
    );
    assert!(
        svc(0.9) < lat(0.9) / 2,
        "service p90 {} us vs latency p90 {} us",
        svc(0.9),
        lat(0.9)
    );
    assert!(svc(0.5) < 100_000, "service p50 {} us", svc(0.5));
}
