//! The runtime a simulation runs on, and the seeds it runs with.
//!
//! One current-thread tokio runtime with paused time: when every task waits, time jumps to the
//! next timer, so a simulated minute of gossip, timeouts and backoff costs only the work done
//! in it. Storage calls run inline ([`kvstore_server::blocking`]) and, built with
//! `--cfg tokio_unstable` (this workspace's `.cargo/config.toml`), tokio's own random choices
//! are seeded too: one seed then gives one interleaving of every task, one message order, one
//! outcome.

use std::future::Future;

/// Environment variable that replays one seed (`KVSTORE_SIM_SEED=1234`).
pub const SEED_VAR: &str = "KVSTORE_SIM_SEED";

/// Runs `f` to completion in a fresh simulation runtime seeded with `seed`.
pub fn run<F: Future>(seed: u64, f: F) -> F::Output {
    init_logging();
    kvstore_server::blocking::run_inline_on_this_thread();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = seed;
    let rt = builder.build().expect("simulation runtime");
    rt.block_on(f)
}

/// Whether runs repeat exactly (tokio's scheduler randomness seeded): false when the workspace
/// was built without `--cfg tokio_unstable` (a `RUSTFLAGS` in the environment overrides the
/// one in `.cargo/config.toml`).
pub const fn exactly_repeatable() -> bool {
    cfg!(tokio_unstable)
}

/// The seed to replay from [`SEED_VAR`], when set (a bad value panics, naming the variable).
pub fn replay_seed() -> Option<u64> {
    let v = std::env::var(SEED_VAR).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={v:?} is not an unsigned integer")),
    )
}

/// The seed a single scripted test runs with: [`SEED_VAR`] when set, `default` otherwise.
/// Printed, so a failure names it.
pub fn seed_or(default: u64) -> u64 {
    let seed = replay_seed().unwrap_or(default);
    eprintln!("simulation seed {seed} (replay with {SEED_VAR}={seed})");
    seed
}

/// Sends the nodes' logs to the test's output when `RUST_LOG` asks for them (once per
/// process).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
