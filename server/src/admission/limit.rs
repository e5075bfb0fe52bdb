//! The adaptive part of the byte budget: how many request bytes this node can hold in flight
//! and still answer them within a target latency.
//!
//! A fixed byte budget is right for one machine and wrong for the next: 64 MiB of 1 MiB puts is
//! a few milliseconds of work on a fast server and two seconds on a busy 2-core one, where every
//! admitted request then outlives its client's deadline and comes back as an unknown outcome
//! (admitted, possibly applied, not answered: worse than shed). So the byte limit follows the
//! requests' own latency, the way TCP's window follows loss: each window of completed requests
//! whose mean latency (admission to answer) is over the target shrinks the limit by a quarter;
//! a window well under the target grows it by a quarter, but only when the limit is what held
//! the node back (in-flight bytes reached most of it), since an idle node's latency says nothing
//! about how much more it could take. The limit stays between a floor (a few large requests at
//! once: the node never refuses all work) and the configured maximum.
//!
//! Pure: the caller hands in each window's figures; [`super::Admission`] gathers them.

use std::time::Duration;

/// What one window of completed requests looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests answered in the window.
    pub completed: u64,
    /// Their mean latency from admission to answer.
    pub mean_latency: Duration,
    /// The most request bytes in flight at any moment of the window.
    pub peak_inflight_bytes: usize,
}

/// The byte limit and the rule that moves it.
#[derive(Debug, Clone)]
pub struct ByteLimit {
    limit: usize,
    floor: usize,
    max: usize,
    target: Duration,
}

impl ByteLimit {
    /// A limit that starts at `max` (no evidence of trouble yet) and moves between `floor` and
    /// `max` to keep mean latency under `target`.
    pub fn new(floor: usize, max: usize, target: Duration) -> Self {
        let floor = floor.min(max);
        Self {
            limit: max,
            floor,
            max,
            target,
        }
    }

    /// The limit now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Folds one window in and returns the new limit.
    pub fn update(&mut self, w: &Window) -> usize {
        if w.completed == 0 {
            // Nothing finished: no evidence either way (an idle node, or one whose requests all
            // wait on a dead replica's timeout, which shedding would not shorten).
            return self.limit;
        }
        if w.mean_latency > self.target {
            self.limit = (self.limit - self.limit / 4).max(self.floor);
        } else if w.mean_latency < self.target / 2
            && w.peak_inflight_bytes.saturating_mul(10) >= self.limit.saturating_mul(8)
        {
            self.limit = self
                .limit
                .saturating_add((self.limit / 4).max(self.floor / 4).max(1))
                .min(self.max);
        }
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn window(completed: u64, ms: u64, peak: usize) -> Window {
        Window {
            completed,
            mean_latency: Duration::from_millis(ms),
            peak_inflight_bytes: peak,
        }
    }

    #[test]
    fn slow_windows_shrink_the_limit_down_to_the_floor() {
        let mut l = ByteLimit::new(4 * MIB, 64 * MIB, Duration::from_millis(250));
        assert_eq!(l.limit(), 64 * MIB);
        assert_eq!(l.update(&window(10, 900, 64 * MIB)), 48 * MIB);
        assert_eq!(l.update(&window(10, 900, 48 * MIB)), 36 * MIB);
        for _ in 0..50 {
            l.update(&window(10, 900, MIB));
        }
        assert_eq!(l.limit(), 4 * MIB);
    }

    #[test]
    fn fast_windows_grow_it_back_only_when_it_was_the_bottleneck() {
        let mut l = ByteLimit::new(4 * MIB, 64 * MIB, Duration::from_millis(250));
        for _ in 0..50 {
            l.update(&window(10, 900, MIB));
        }
        assert_eq!(l.limit(), 4 * MIB);
        // Fast, but the node was nearly idle: no growth.
        assert_eq!(l.update(&window(10, 20, MIB)), 4 * MIB);
        // Fast and at the limit: grows by a quarter (at least a quarter of the floor).
        assert_eq!(l.update(&window(10, 20, 4 * MIB)), 5 * MIB);
        for _ in 0..50 {
            let peak = l.limit();
            l.update(&window(10, 20, peak));
        }
        assert_eq!(l.limit(), 64 * MIB, "capped at the configured maximum");
    }

    #[test]
    fn latency_between_half_and_the_target_or_no_completions_hold_it() {
        let mut l = ByteLimit::new(4 * MIB, 64 * MIB, Duration::from_millis(250));
        l.update(&window(10, 900, 64 * MIB));
        assert_eq!(l.update(&window(10, 200, 48 * MIB)), 48 * MIB);
        assert_eq!(l.update(&window(0, 0, 48 * MIB)), 48 * MIB);
    }

    #[test]
    fn a_floor_above_the_maximum_is_the_maximum() {
        let mut l = ByteLimit::new(8 * MIB, 2 * MIB, Duration::from_millis(250));
        assert_eq!(l.update(&window(10, 900, 2 * MIB)), 2 * MIB);
    }
}
