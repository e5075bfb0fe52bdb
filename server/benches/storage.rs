//! Storage engine micro-benchmarks with fsync `never`: get, put and an 80/20 get/put mix over
//! 100 B, 1 KB and 1 MB values, single-threaded and (for the mix) over two threads.
//!
//! Run: `cargo bench -p kvstore-server --bench storage`. Criterion reports time per operation
//! and throughput (elements = operations).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kvstore_server::storage::{Engine, Entry, FsyncPolicy, Log, LogConfig, Memory, Version};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// (label, value bytes, keys preloaded): about 10-60 MB of data per size.
const SIZES: [(&str, usize, u64); 3] = [
    ("100B", 100, 200_000),
    ("1KB", 1024, 50_000),
    ("1MB", 1024 * 1024, 48),
];

/// A monotonic version source shared by all writers.
static CLOCK: AtomicU64 = AtomicU64::new(1 << 20);

fn next_version() -> Version {
    Version::new(CLOCK.fetch_add(1, Ordering::Relaxed), 1)
}

fn key(i: u64) -> String {
    format!("key{i:010}")
}

fn open(dir: &std::path::Path) -> Log {
    let mut cfg = LogConfig::new(dir);
    cfg.fsync = FsyncPolicy::Never;
    Log::open(cfg).unwrap()
}

fn preload(log: &dyn Engine, keys: u64, value: &bytes::Bytes) {
    for i in 0..keys {
        log.apply(&key(i), Entry::value(value.clone(), next_version()))
            .unwrap();
    }
}

/// One 80/20 operation on a random key.
fn mix_op(log: &dyn Engine, rng: &mut StdRng, keys: u64, value: &bytes::Bytes) {
    let k = key(rng.random_range(0..keys));
    if rng.random_range(0..100) < 80 {
        black_box(log.get(&k, 0).unwrap());
    } else {
        log.apply(&k, Entry::value(value.clone(), next_version()))
            .unwrap();
    }
}

fn bench(c: &mut Criterion) {
    for (label, size, keys) in SIZES {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(open(dir.path()));
        let value = bytes::Bytes::from(vec![0xA5u8; size]);
        preload(&*log, keys, &value);

        let mut g = c.benchmark_group("storage");
        g.throughput(Throughput::Elements(1));
        if size >= 1024 * 1024 {
            g.sample_size(20);
            g.measurement_time(Duration::from_secs(5));
        }
        let mut rng = StdRng::seed_from_u64(1);
        g.bench_function(BenchmarkId::new("get", label), |b| {
            b.iter(|| black_box(log.get(&key(rng.random_range(0..keys)), 0).unwrap()))
        });
        g.bench_function(BenchmarkId::new("put", label), |b| {
            b.iter(|| {
                log.apply(
                    &key(rng.random_range(0..keys)),
                    Entry::value(value.clone(), next_version()),
                )
                .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("mix80_20_1thread", label), |b| {
            b.iter(|| mix_op(&*log, &mut rng, keys, &value))
        });
        g.bench_function(BenchmarkId::new("mix80_20_2threads", label), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..2u64 {
                        let (log, value) = (&log, &value);
                        s.spawn(move || {
                            let mut rng = StdRng::seed_from_u64(t + 7);
                            for _ in 0..iters.div_ceil(2) {
                                mix_op(&**log, &mut rng, keys, value);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        g.finish();
        // Overwrites leave dead bytes; keep the disk use of the run bounded.
        log.compact(0).unwrap();
    }
    baseline(c);
}

/// The same 100 B mix on the in-memory reference engine: the ceiling of this harness on this
/// machine (key formatting, RNG, index lookup, no I/O at all).
fn baseline(c: &mut Criterion) {
    let (keys, value) = (200_000, bytes::Bytes::from(vec![0xA5u8; 100]));
    let mem = Memory::new();
    preload(&mem, keys, &value);
    let mut g = c.benchmark_group("memory_baseline");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("mix80_20_2threads", "100B"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (mem, value) = (&mem, &value);
                    s.spawn(move || {
                        let mut rng = StdRng::seed_from_u64(t + 7);
                        for _ in 0..iters.div_ceil(2) {
                            mix_op(mem, &mut rng, keys, value);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
