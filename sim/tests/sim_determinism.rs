//! One seed, one run: the same seed replays the same faults, the same message order and the
//! same history, operation for operation (times and versions included); another seed does not.

use kvstore_sim::runtime;
use kvstore_sim::workload::{self, WorkloadConfig};

#[test]
fn a_seed_replays_the_same_history() {
    match runtime::replay_seed() {
        Some(seed) => replays(seed),
        None => (40..43).for_each(replays),
    }
}

fn replays(seed: u64) {
    let cfg = WorkloadConfig::default();
    let a = runtime::run(seed, workload::run(seed, &cfg));
    let b = runtime::run(seed, workload::run(seed, &cfg));
    assert!(a.report.valid, "{}", a.describe());
    assert_eq!(a.faults, b.faults, "seed {seed}: the faults differ");
    if runtime::exactly_repeatable() {
        assert_eq!(a.history.len(), b.history.len(), "seed {seed}");
        for (x, y) in a.history.iter().zip(&b.history) {
            assert_eq!(x, y, "seed {seed}: the histories part here");
        }
        let traffic = |r: &kvstore_sim::workload::RunResult| r.simulated;
        assert_eq!(traffic(&a), traffic(&b), "seed {seed}");
    } else {
        eprintln!(
            "built without --cfg tokio_unstable (RUSTFLAGS overrides .cargo/config.toml): tokio's \
             scheduler is not seeded, so only the faults are compared"
        );
    }
    let c = runtime::run(seed + 1, workload::run(seed + 1, &cfg));
    assert_ne!(
        a.history,
        c.history,
        "seeds {seed} and {}: different seeds gave the same history",
        seed + 1
    );
}
