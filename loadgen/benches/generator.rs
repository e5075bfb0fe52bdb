//! loadgen's own ceiling, per operation: drawing an operation (kind, key, value) and recording
//! its latency, with no network. `loadgen selftest` reports the same loop as ops/s per core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use loadgen::generator::{KeySpace, OpGenerator, ValuePool};
use loadgen::measure::{Aggregate, Recorder};
use loadgen::scenario::{Distribution, WorkloadSpec};

fn generate_and_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate_and_record");
    group.throughput(Throughput::Elements(1));
    for d in [
        Distribution::Zipfian,
        Distribution::Uniform,
        Distribution::Latest,
        Distribution::Hotspot,
    ] {
        let w = WorkloadSpec {
            distribution: d,
            insert: if d == Distribution::Latest { 0.05 } else { 0.0 },
            update: if d == Distribution::Latest { 0.45 } else { 0.5 },
            ..WorkloadSpec::default()
        };
        let space = Arc::new(KeySpace::new(w.record_count, &w.key_prefix));
        let mut g = OpGenerator::new(&w, 1, 0, ValuePool::new(1024, 1), space);
        let start = Instant::now();
        let mut rec = Recorder::new(Arc::new(Aggregate::new(start)));
        let mut i = 0u64;
        let mut op = loadgen::generator::Op::default();
        group.bench_function(format!("{d:?}").to_lowercase(), |b| {
            b.iter(|| {
                i += 1;
                g.next_op_into(&mut op);
                let done = start + Duration::from_micros(200 + (i & 1023));
                rec.record(op.kind, start, start, done, Ok(()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, generate_and_record);
criterion_main!(benches);
