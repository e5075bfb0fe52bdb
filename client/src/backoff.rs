//! The retry backoff schedule: exponential growth from an initial delay, capped, with "equal
//! jitter" (half fixed, half random) so that many clients failing together do not retry in
//! lockstep, while each still waits at least half its step.
//!
//! Pure arithmetic: the random draw is an argument, so the schedule is tested without a clock
//! or an RNG. The retry loop owns the deadline; this module only says how long to wait.

use std::time::Duration;

/// Exponential backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    /// Step before the first retry.
    pub initial: Duration,
    /// Largest step.
    pub max: Duration,
}

impl Backoff {
    /// The un-jittered step before retry number `retry` (0 for the first retry):
    /// `min(max, initial * 2^retry)`.
    pub fn step(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The wait before retry number `retry`, given a uniform draw `jitter` in `[0, 1)`: between
    /// half the step and the full step.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let step = self.step(retry);
        let half = step / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(500),
    };

    #[test]
    fn doubles_then_caps() {
        let steps: Vec<u128> = (0..8).map(|r| B.step(r).as_millis()).collect();
        assert_eq!(steps, [10, 20, 40, 80, 160, 320, 500, 500]);
        // Huge retry numbers do not overflow.
        assert_eq!(B.step(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_between_half_and_full_step() {
        for retry in 0..10 {
            let step = B.step(retry);
            assert_eq!(B.delay(retry, 0.0), step / 2);
            assert!(B.delay(retry, 0.999) <= step);
            assert!(B.delay(retry, 0.5) > step / 2);
            // Out-of-range draws are clamped rather than trusted.
            assert_eq!(B.delay(retry, 7.0), step / 2 + step / 2);
        }
    }
}
