//! Reopen time for 1,000,000 keys of 100 B, with an index snapshot and without one (full
//! replay of the log, checking every CRC).
//!
//! Run: `cargo bench -p kvstore-server --bench storage_reopen`. Building the data set takes a
//! few seconds before the measurements start.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kvstore_server::storage::{Engine, Entry, FsyncPolicy, Log, LogConfig, SNAPSHOT_FILE, Version};

const KEYS: u64 = 1_000_000;

fn config(dir: &std::path::Path) -> LogConfig {
    let mut cfg = LogConfig::new(dir);
    cfg.fsync = FsyncPolicy::Never;
    cfg
}

/// Time spent in `iters` opens; each engine is closed (its index freed) outside the timing,
/// since only one may hold the directory at a time.
fn timed_opens(dir: &std::path::Path, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let log = Log::open(config(dir)).unwrap();
        total += start.elapsed();
        assert_eq!(log.stats().keys, KEYS);
    }
    total
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(config(dir.path())).unwrap();
        let value = bytes::Bytes::from(vec![0x42u8; 100]);
        let batch = 1000;
        for chunk in 0..KEYS / batch {
            let items = (0..batch)
                .map(|i| {
                    let n = chunk * batch + i;
                    (
                        format!("key{n:010}"),
                        Entry::value(value.clone(), Version::new(n + 1, 1)),
                    )
                })
                .collect();
            log.apply_batch(items).unwrap();
        }
        log.snapshot().unwrap();
    }
    let snapshot = dir.path().join(SNAPSHOT_FILE);
    let aside = dir.path().join("snapshot.aside");

    let mut g = c.benchmark_group("storage_reopen_1M_keys_100B");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    g.bench_function("with_snapshot", |b| {
        b.iter_custom(|iters| timed_opens(dir.path(), iters))
    });
    std::fs::rename(&snapshot, &aside).unwrap();
    g.bench_function("without_snapshot", |b| {
        b.iter_custom(|iters| timed_opens(dir.path(), iters))
    });
    std::fs::rename(&aside, &snapshot).unwrap();
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
