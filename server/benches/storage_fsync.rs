//! Put throughput with fsync `always` and 1, 8 and 64 concurrent writers: group commit must
//! let many writers share each fdatasync (64 writers should reach far more than one
//! fdatasync's worth of writes per second).
//!
//! Run: `cargo bench -p kvstore-server --bench storage_fsync`. Throughput is in puts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvstore_server::storage::{Engine, Entry, FsyncPolicy, Log, LogConfig, Version};

static CLOCK: AtomicU64 = AtomicU64::new(1 << 20);
/// Puts made, to report how many each fdatasync covered.
static PUTS: AtomicU64 = AtomicU64::new(0);

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new(dir.path());
    cfg.fsync = FsyncPolicy::Always;
    let log = Log::open(cfg).unwrap();
    let value = bytes::Bytes::from(vec![0x5Au8; 100]);

    let mut g = c.benchmark_group("storage_fsync_always");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for writers in [1u64, 8, 64] {
        let (puts_before, syncs_before) = (PUTS.load(Ordering::Relaxed), log.group_syncs());
        g.bench_function(
            BenchmarkId::new("put_100B", format!("{writers}writers")),
            |b| {
                b.iter_custom(|iters| {
                    let each = iters.div_ceil(writers);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for w in 0..writers {
                            let (log, value) = (&log, &value);
                            s.spawn(move || {
                                for i in 0..each {
                                    let v = Version::new(CLOCK.fetch_add(1, Ordering::Relaxed), 1);
                                    let k = format!("w{w}-{}", i % 1000);
                                    log.apply(&k, Entry::value(value.clone(), v)).unwrap();
                                    PUTS.fetch_add(1, Ordering::Relaxed);
                                }
                            });
                        }
                    });
                    // Report per put actually made (each writer does `each`).
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (each * writers) as f64)
                })
            },
        );
        let puts = PUTS.load(Ordering::Relaxed) - puts_before;
        let syncs = log.group_syncs() - syncs_before;
        eprintln!(
            "{writers} writers: {puts} puts, {syncs} fdatasyncs, {:.1} puts per fdatasync",
            puts as f64 / syncs.max(1) as f64
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
