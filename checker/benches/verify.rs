//! Verification throughput: reading and judging a synthetic history (100,000 operations over
//! 100 hot keys, the shape of a convergence scenario) held in memory, so the figure is the
//! checker's own cost. The 1,000,000-operation figure for the closing note comes from
//! `checker synth` + `checker verify` on a file (see checker/README.md).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kvstore_checker::synth::{Inject, SynthConfig, generate};
use kvstore_checker::{CheckConfig, HistoryReader, check};

fn verify(c: &mut Criterion) {
    let cfg = SynthConfig {
        ops: 100_000,
        keys: 100,
        seed: 1,
        inject: Inject::None,
    };
    let mut csv = Vec::new();
    let rows = generate(&cfg, &mut csv).expect("synthetic history");
    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows));
    g.bench_function("100k_ops_100_keys", |b| {
        b.iter(|| {
            let reader = HistoryReader::new(&csv[..]).expect("header");
            let report = check(reader, &CheckConfig::default()).expect("readable");
            assert!(report.valid);
            report.summary.operations
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
