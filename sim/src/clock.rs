//! A node's simulated wall clock: it runs with the runtime's (paused, advanced) time, at a rate
//! of its own, and can be set and jumped.
//!
//! The node reads it through the same `PhysicalClock` seam the system clock sits behind, so the
//! HLC, TTLs, compaction and the clock guard all see it; the node's monotonic time (gossip,
//! the failure detector, deadlines) is tokio's, which a jump does not move, exactly as on a
//! machine whose `date` was changed.

use std::sync::Mutex;

use kvstore_server::hlc::PhysicalClock;
use tokio::time::Instant;

/// The wall time every simulated clock starts at: 2027-01-15T08:00:00Z (fixed, so a seed
/// gives the same versions every run).
pub const EPOCH_MS: u64 = 1_800_000_000_000;

#[derive(Debug)]
struct Anchor {
    /// Runtime time at the anchor.
    at: Instant,
    /// Wall ms at the anchor (fractional: a slowed clock accrues fractions).
    wall_ms: f64,
    /// Wall ms per runtime ms from the anchor on.
    rate: f64,
}

/// A settable wall clock.
#[derive(Debug)]
pub struct SimClock {
    anchor: Mutex<Anchor>,
}

impl SimClock {
    /// A clock reading `wall_ms` now (inside the runtime), running at rate 1.
    pub fn starting_at(wall_ms: u64) -> Self {
        Self {
            anchor: Mutex::new(Anchor {
                at: Instant::now(),
                wall_ms: wall_ms as f64,
                rate: 1.0,
            }),
        }
    }

    fn reanchor(&self, f: impl FnOnce(&mut Anchor)) {
        let mut a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        a.wall_ms += now.duration_since(a.at).as_secs_f64() * 1000.0 * a.rate;
        a.at = now;
        f(&mut a);
    }

    /// Moves the clock by `delta_ms` (forward when positive), as `date -s` would.
    pub fn jump(&self, delta_ms: i64) {
        self.reanchor(|a| a.wall_ms = (a.wall_ms + delta_ms as f64).max(0.0));
    }

    /// From now on the clock advances `rate` wall ms per real ms (1.0: a good clock).
    pub fn set_rate(&self, rate: f64) {
        self.reanchor(|a| a.rate = rate.max(0.0));
    }

    /// The current reading, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        let a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        (a.wall_ms + Instant::now().duration_since(a.at).as_secs_f64() * 1000.0 * a.rate) as u64
    }
}

impl PhysicalClock for SimClock {
    fn now_ms(&self) -> u64 {
        SimClock::now_ms(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn jumps_and_rates_move_the_reading() {
        let c = SimClock::starting_at(EPOCH_MS);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(c.now_ms(), EPOCH_MS + 100);
        c.jump(5_000);
        assert_eq!(c.now_ms(), EPOCH_MS + 5_100);
        c.set_rate(0.5);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(c.now_ms(), EPOCH_MS + 5_150);
        c.jump(-10_000);
        assert_eq!(c.now_ms(), EPOCH_MS - 4_850);
    }
}
