//! The open-loop schedule: evenly spaced intended start times for one client.
//!
//! Pure arithmetic on instants handed in at construction; the clock is read only in closed loop
//! (where the intended start is "now").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One client's schedule of intended start times.
#[derive(Debug)]
pub struct Schedule {
    start: Instant,
    interval: Option<Duration>,
    next: AtomicU64,
}

impl Schedule {
    /// Open loop at `target_rate` ops/s shared by `clients` clients (so this client's slots are
    /// `clients / target_rate` seconds apart), starting at `start`; closed loop when `None`.
    pub fn new(start: Instant, target_rate: Option<f64>, clients: u32) -> Self {
        Self {
            start,
            interval: target_rate.map(|r| Duration::from_secs_f64(clients.max(1) as f64 / r)),
            next: AtomicU64::new(0),
        }
    }

    /// Whether operations follow a schedule (open loop).
    pub fn is_open(&self) -> bool {
        self.interval.is_some()
    }

    /// The intended start of the next operation: the next free slot of the schedule in open
    /// loop (possibly in the past, when the client is behind), now in closed loop.
    pub fn next_intended(&self) -> Instant {
        match self.interval {
            Some(iv) => {
                let k = self.next.fetch_add(1, Ordering::Relaxed);
                self.start + iv.mul_f64(k as f64)
            }
            None => Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced_per_client() {
        let t0 = Instant::now();
        // 1000 ops/s over 4 clients: each client's slots are 4 ms apart.
        let s = Schedule::new(t0, Some(1000.0), 4);
        let times: Vec<Duration> = (0..4).map(|_| s.next_intended() - t0).collect();
        assert_eq!(times, [0, 4, 8, 12].map(Duration::from_millis));
        assert!(s.is_open());
        assert!(!Schedule::new(t0, None, 4).is_open());
    }
}
