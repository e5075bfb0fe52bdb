//! The anti-entropy state a node shares between its parts: the trees, the bandwidth
//! throttle, the one-cycle-at-a-time lock, the bound on inbound key scans and the figures.
//! It sits under the node's shared state and imports nothing of the layers that drive it
//! (the exchange, the cycle, the handlers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use super::trees::Trees;

/// Inbound key listings (a pass over the engine's keys each) served at once; more wait.
pub const INBOUND_SCANS: usize = 2;

/// A token bucket over bytes: spending waits until the rate allows it.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: u64,
    next_free: Mutex<Instant>,
}

impl Throttle {
    /// A throttle letting `bytes_per_sec` through (with a burst of a quarter second).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// How long to wait before `bytes` may go at `now` (and books them).
    pub fn book(&self, bytes: u64, now: Instant) -> Duration {
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let burst = Duration::from_millis(250);
        let start = (*next).max(now.checked_sub(burst).unwrap_or(now));
        *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        next.saturating_duration_since(now + burst)
    }

    /// Waits until `bytes` may go.
    pub async fn spend(&self, bytes: u64) {
        let wait = self.book(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The last completed repair cycle.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastRepair {
    /// When it started and completed (wall-clock ms).
    pub started_ms: u64,
    pub completed_ms: u64,
    /// Arcs it recorded as repaired.
    pub arcs: u64,
}

/// Figures since the node started.
#[derive(Debug, Default)]
pub struct Figures {
    pub exchanges: AtomicU64,
    pub exchanges_failed: AtomicU64,
    pub keys_compared: AtomicU64,
    pub keys_repaired: AtomicU64,
    pub bytes: AtomicU64,
    pub repairs_completed: AtomicU64,
    pub last: Mutex<LastRepair>,
}

impl Figures {
    /// Adds one exchange's figures.
    pub fn count_exchange(&self, ok: bool, compared: u64, repaired: u64, bytes: u64) {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.exchanges_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.keys_compared.fetch_add(compared, Ordering::Relaxed);
        self.keys_repaired.fetch_add(repaired, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records a completed cycle.
    pub fn count_cycle(&self, last: LastRepair) {
        self.repairs_completed.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = last;
    }

    /// The last completed cycle.
    pub fn last(&self) -> LastRepair {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A node's anti-entropy state.
#[derive(Debug)]
pub struct AntiEntropy {
    /// False with `--no-anti-entropy`: no trees are kept, nothing is exchanged.
    pub enabled: bool,
    /// The hash trees.
    pub trees: Arc<Trees>,
    /// Bandwidth, both ways, all exchanges together.
    pub throttle: Throttle,
    /// Held by the cycle that runs (periodic or asked for): one at a time.
    pub cycle: tokio::sync::Mutex<()>,
    /// Bounds the inbound key listings.
    pub inbound: Arc<tokio::sync::Semaphore>,
    /// Figures.
    pub figures: Figures,
}

impl AntiEntropy {
    /// The state of a node with anti-entropy on (`enabled`) or off, at `bytes_per_sec`.
    pub fn new(enabled: bool, bytes_per_sec: u64) -> Self {
        Self {
            enabled,
            trees: Trees::new(),
            throttle: Throttle::new(bytes_per_sec),
            cycle: tokio::sync::Mutex::new(()),
            inbound: Arc::new(tokio::sync::Semaphore::new(INBOUND_SCANS)),
            figures: Figures::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_a_burst_through_then_paces_at_the_rate() {
        let t = Throttle::new(1000);
        let now = Instant::now();
        assert_eq!(t.book(250, now), Duration::ZERO, "a quarter second's burst");
        let wait = t.book(1000, now);
        assert!(
            wait >= Duration::from_millis(990) && wait <= Duration::from_millis(1010),
            "{wait:?}"
        );
    }
}
