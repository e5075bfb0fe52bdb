//! The node's anti-entropy task: keeps the set of trees in step with the ring, rebuilds them
//! from the engine (unbuilt arcs first, then each one every `anti_entropy_rebuild_interval`),
//! and starts a repair cycle every `anti_entropy_interval`, jittered by a quarter either way so
//! that nodes started together do not repair in lockstep.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use rand::{Rng, SeedableRng};

use super::cycle::run_cycle;
use crate::node::shared::{Periodic, Shared};

/// How often the task looks at the ring and the rebuild queue.
pub const TICK: Duration = Duration::from_millis(500);
/// Keys a rebuild scans per second at most, so a rebuild never takes a core from requests.
pub const REBUILD_KEYS_PER_SEC: u64 = 500_000;

/// `mean` jittered uniformly by up to a quarter either way.
pub fn jittered(mean: Duration, rng: &mut impl Rng) -> Duration {
    let quarter = mean.as_millis() as u64 / 4;
    let ms = mean.as_millis() as u64 - quarter + rng.random_range(0..=2 * quarter);
    Duration::from_millis(ms)
}

/// Makes the trees track the arcs this node replicates in the current ring, unless the ring
/// is still the one of fingerprint `last` (updated).
pub fn follow_ring(shared: &Shared, last: &mut Option<u64>) -> bool {
    let view = shared.view();
    let ring = view.placement.current();
    if *last == Some(ring.fingerprint()) {
        return false;
    }
    *last = Some(ring.fingerprint());
    let arcs = ring.arcs_of(shared.id(), shared.config.replication_factor);
    shared.anti_entropy.trees.set_arcs(&arcs)
}

/// Rebuilds the next due chunk of trees (blocking: run it on a blocking thread); returns how
/// many arcs it rebuilt.
pub fn rebuild_step(shared: &Shared) -> usize {
    let trees = &shared.anti_entropy.trees;
    let now = shared.wall_ms();
    let stale_before =
        now.saturating_sub(shared.config.anti_entropy_rebuild_interval.as_millis() as u64);
    // The engine's figures are asked only when some arc is due, and never under the trees'
    // lock: the engine calls into the trees under its key locks.
    if !trees.any_due(stale_before) {
        return 0;
    }
    let chunk = trees.due_chunk(stale_before, shared.engine.stats().keys);
    if chunk.is_empty() {
        return 0;
    }
    trees.begin_rebuild(shared.engine.as_ref(), &chunk);
    let pending = trees.rebuild_pending();
    let began = Instant::now();
    for (n, k) in pending.iter().enumerate() {
        if !trees.rebuild_scan(shared.engine.as_ref(), k) {
            // Voided by a ring change: the next step starts over.
            return 0;
        }
        if n % 4096 == 4095 {
            let due = Duration::from_secs_f64((n + 1) as f64 / REBUILD_KEYS_PER_SEC as f64);
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(wait);
            }
            if shared.stopping() {
                return 0;
            }
        }
    }
    trees.finish_rebuild(shared.wall_ms()).len()
}

/// Runs until the node stops.
pub async fn run(shared: Arc<Shared>) {
    if !shared.anti_entropy.enabled {
        return;
    }
    let mut tick = Periodic::new(TICK, shared.stop_signal());
    let mut rng = rand::rngs::StdRng::seed_from_u64(shared.with_rng(|r| r.random()));
    let mut next_cycle = shared
        .config
        .anti_entropy_interval
        .map(|i| Instant::now() + jittered(i, &mut rng));
    let mut ring = None;
    while tick.next().await {
        follow_ring(&shared, &mut ring);
        let s = shared.clone();
        match crate::blocking::spawn(move || rebuild_step(&s)).await {
            Ok(n) if n > 0 => tracing::debug!(arcs = n, "hash trees rebuilt"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "hash tree rebuild failed"),
        }
        let (Some(at), Some(every)) = (next_cycle, shared.config.anti_entropy_interval) else {
            continue;
        };
        if Instant::now() < at {
            continue;
        }
        let state = shared.anti_entropy.trees.state();
        if state.built < state.arcs {
            // Exchanges would skip the unbuilt arcs; wait for them.
            continue;
        }
        run_cycle(&shared, &[], |_| {}).await;
        next_cycle = Some(Instant::now() + jittered(every, &mut rng));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mean = Duration::from_millis(1000);
        let draws: Vec<Duration> = (0..200).map(|_| jittered(mean, &mut rng)).collect();
        assert!(
            draws
                .iter()
                .all(|d| *d >= Duration::from_millis(750) && *d <= Duration::from_millis(1250))
        );
        assert!(draws.iter().any(|d| *d < Duration::from_millis(900)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(1100)));
    }
}
