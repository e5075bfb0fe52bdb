//! Hybrid Logical Clock (Kulkarni, Demirbas et al., 2014).
//!
//! A timestamp packs 48 bits of physical milliseconds since the Unix epoch and 16 bits of
//! logical counter into a `u64`, so timestamps compare as integers and stay close to wall time.
//!
//! - [`Hlc::now`] issues strictly increasing timestamps even when the wall clock stands still or
//!   goes back (the counter advances; a counter overflow carries into the physical part, which
//!   keeps monotonicity at the cost of running slightly ahead).
//! - [`Hlc::update`] merges a timestamp received from another node, so later local timestamps
//!   order after it. A remote timestamp further ahead of the local wall clock than
//!   `max_offset_ms` is refused with [`HlcError::ClockSkew`] and counted, never adopted: one
//!   node with a wild clock must not drag the whole cluster's versions into the future.
//! - Restart safety: [`Hlc::observe`] raises the floor to the highest timestamp found in the
//!   log, and an optional [`HighWater`] store persists a ceiling a little ahead of every issued
//!   timestamp (one small fsync about once per `ceiling_window_ms`), so a node whose wall clock
//!   went backwards across a restart never issues a timestamp older than one it issued before,
//!   even for keys it does not store itself.
//!
//! The physical clock is injected ([`PhysicalClock`]) so tests drive time by hand.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 16;

/// Default bound on how far a remote timestamp may run ahead of the local wall clock.
pub const DEFAULT_MAX_CLOCK_OFFSET_MS: u64 = 500;

/// How far ahead of issued timestamps the persisted ceiling is placed, at most. The window is
/// also capped at half the max clock offset: after a restart the ceiling is the floor of every
/// new timestamp, and a floor further ahead of the wall clock than the max offset would have
/// every replica refuse this node's writes (it did, for up to 2 s after each restart, when the
/// window was a fixed 2 s and the offset 500 ms).
pub const DEFAULT_CEILING_WINDOW_MS: u64 = 2_000;

/// Packs physical milliseconds and a logical counter into one timestamp.
pub const fn pack(physical_ms: u64, logical: u16) -> u64 {
    (physical_ms << LOGICAL_BITS) | logical as u64
}

/// The physical milliseconds of a timestamp.
pub const fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// A source of wall-clock milliseconds since the Unix epoch.
pub trait PhysicalClock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl PhysicalClock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock moved by hand, for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        Self(AtomicU64::new(ms))
    }

    /// Sets the reading (it may go backwards).
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Moves the reading forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl PhysicalClock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Durable storage for the clock's ceiling: no timestamp above the last persisted ceiling is
/// issued before the new ceiling is durable.
pub trait HighWater: Send + Sync {
    /// Makes `ceiling` durable; returns only once it is.
    fn persist(&self, ceiling: u64) -> std::io::Result<()>;
}

/// Why the clock refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum HlcError {
    /// A remote timestamp is too far ahead of the local wall clock.
    #[error(
        "remote timestamp is {ahead_ms} ms ahead of this node's clock (max clock offset {max_offset_ms} ms)"
    )]
    ClockSkew {
        /// How far ahead the remote timestamp was.
        ahead_ms: u64,
        /// The configured bound.
        max_offset_ms: u64,
    },
    /// The ceiling could not be made durable, so no timestamp can be issued safely.
    #[error("cannot persist the clock's high-water mark: {reason}")]
    Persist {
        /// The I/O error.
        reason: String,
        /// The disk holding the ceiling is full (ENOSPC): the node's storage is out of space
        /// too, which is what a peer must be told, not a clock problem.
        disk_full: bool,
    },
}

/// A Hybrid Logical Clock.
pub struct Hlc {
    clock: Arc<dyn PhysicalClock>,
    max_offset_ms: u64,
    ceiling_window_ms: u64,
    state: Mutex<State>,
    high_water: Option<Box<dyn HighWater>>,
    skew_rejections: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// The last timestamp issued or merged.
    last: u64,
    /// The durable ceiling; only meaningful with a `HighWater` store.
    ceiling: u64,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hlc")
            .field("max_offset_ms", &self.max_offset_ms)
            .field("last", &self.last())
            .finish()
    }
}

impl Hlc {
    /// A clock over `clock` that refuses remote timestamps more than `max_offset_ms` ahead.
    pub fn new(clock: Arc<dyn PhysicalClock>, max_offset_ms: u64) -> Self {
        Self {
            clock,
            max_offset_ms,
            ceiling_window_ms: DEFAULT_CEILING_WINDOW_MS.min(max_offset_ms / 2).max(1),
            state: Mutex::new(State {
                last: 0,
                ceiling: 0,
            }),
            high_water: None,
            skew_rejections: AtomicU64::new(0),
        }
    }

    /// Persists a ceiling through `store` before issuing timestamps beyond it; `recovered` is
    /// the ceiling read back at start (the floor for every later timestamp).
    pub fn with_high_water(mut self, store: Box<dyn HighWater>, recovered: u64) -> Self {
        self.observe(recovered);
        self.high_water = Some(store);
        self
    }

    /// The wall clock this HLC reads.
    pub fn physical_now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The configured maximum clock offset.
    pub fn max_offset_ms(&self) -> u64 {
        self.max_offset_ms
    }

    /// The last timestamp issued or merged.
    pub fn last(&self) -> u64 {
        self.lock().last
    }

    /// Remote timestamps refused for skew so far.
    pub fn skew_rejections(&self) -> u64 {
        self.skew_rejections.load(Ordering::Relaxed)
    }

    /// Raises the floor: every later timestamp is greater than `ts`. Used at recovery with the
    /// highest timestamp found in the log. Never refuses (the log is trusted).
    pub fn observe(&self, ts: u64) {
        let mut s = self.lock();
        if ts > s.last {
            s.last = ts;
        }
        if ts > s.ceiling {
            s.ceiling = ts;
        }
    }

    /// A new timestamp, greater than every one issued or merged before.
    pub fn now(&self) -> Result<u64, HlcError> {
        let pt = pack(self.clock.now_ms(), 0);
        let mut s = self.lock();
        let next = pt.max(s.last + 1);
        self.ensure_ceiling(&mut s, next)?;
        s.last = next;
        Ok(next)
    }

    /// Merges a remote timestamp (a receive event) and returns the resulting local timestamp,
    /// which is greater than both `remote` and every earlier local one.
    pub fn update(&self, remote: u64) -> Result<u64, HlcError> {
        let local_ms = self.clock.now_ms();
        let remote_ms = physical_ms(remote);
        if remote_ms > local_ms + self.max_offset_ms {
            self.skew_rejections.fetch_add(1, Ordering::Relaxed);
            return Err(HlcError::ClockSkew {
                ahead_ms: remote_ms - local_ms,
                max_offset_ms: self.max_offset_ms,
            });
        }
        let mut s = self.lock();
        let next = pack(local_ms, 0).max(s.last.max(remote) + 1);
        self.ensure_ceiling(&mut s, next)?;
        s.last = next;
        Ok(next)
    }

    /// Checks a remote timestamp for skew without merging it.
    pub fn check(&self, remote: u64) -> Result<(), HlcError> {
        let local_ms = self.clock.now_ms();
        let remote_ms = physical_ms(remote);
        if remote_ms > local_ms + self.max_offset_ms {
            self.skew_rejections.fetch_add(1, Ordering::Relaxed);
            return Err(HlcError::ClockSkew {
                ahead_ms: remote_ms - local_ms,
                max_offset_ms: self.max_offset_ms,
            });
        }
        Ok(())
    }

    fn ensure_ceiling(&self, s: &mut State, next: u64) -> Result<(), HlcError> {
        let Some(store) = &self.high_water else {
            return Ok(());
        };
        if next <= s.ceiling {
            return Ok(());
        }
        // Rare (about once per window): the fsync happens under the lock on purpose, so no
        // timestamp beyond a non-durable ceiling can be handed out meanwhile.
        let ceiling = pack(physical_ms(next) + self.ceiling_window_ms, 0);
        store.persist(ceiling).map_err(|e| HlcError::Persist {
            disk_full: e.kind() == std::io::ErrorKind::StorageFull,
            reason: e.to_string(),
        })?;
        s.ceiling = ceiling;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two integers updated together; a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`HighWater`] store in a file: written to a temporary file, fsynced, renamed over the
/// old one, and the directory fsynced, so a crash leaves either the old or the new ceiling.
#[derive(Debug)]
pub struct FileHighWater {
    path: std::path::PathBuf,
}

impl FileHighWater {
    /// The store at `path`, and the ceiling it holds (0 when there is none yet).
    pub fn open(path: impl Into<std::path::PathBuf>) -> std::io::Result<(Self, u64)> {
        let path = path.into();
        let recovered = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a timestamp: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok((Self { path }, recovered))
    }
}

impl HighWater for FileHighWater {
    fn persist(&self, ceiling: u64) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(ceiling.to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual(ms: u64) -> (Arc<ManualClock>, Hlc) {
        let clock = Arc::new(ManualClock::new(ms));
        let hlc = Hlc::new(clock.clone(), DEFAULT_MAX_CLOCK_OFFSET_MS);
        (clock, hlc)
    }

    #[test]
    fn follows_the_wall_clock_when_it_moves() {
        let (clock, hlc) = manual(1_000);
        assert_eq!(hlc.now().unwrap(), pack(1_000, 0));
        clock.advance(5);
        assert_eq!(hlc.now().unwrap(), pack(1_005, 0));
    }

    #[test]
    fn strictly_increasing_when_the_clock_stands_still_or_goes_back() {
        let (clock, hlc) = manual(10_000);
        let mut prev = hlc.now().unwrap();
        for step in 0..1_000 {
            if step % 100 == 0 {
                clock.set(10_000 - step); // goes back
            }
            let ts = hlc.now().unwrap();
            assert!(ts > prev, "{ts} after {prev}");
            prev = ts;
        }
        // Still anchored near the highest wall time seen, counting in the logical part.
        assert_eq!(physical_ms(prev), 10_000);
    }

    #[test]
    fn logical_overflow_carries_and_stays_monotonic() {
        let (_clock, hlc) = manual(50);
        hlc.observe(pack(50, u16::MAX));
        let ts = hlc.now().unwrap();
        assert_eq!(ts, pack(51, 0));
    }

    #[test]
    fn update_merges_remote_and_orders_after_it() {
        let cases = [
            // (local wall ms, remote ts, expected merged)
            (1_000, pack(900, 7), pack(1_000, 0)), // remote behind: wall clock wins
            (1_000, pack(1_200, 3), pack(1_200, 4)), // remote ahead within bound: counter
            (1_000, pack(1_000, 9), pack(1_000, 10)), // same ms: counter past the remote
        ];
        for (wall, remote, want) in cases {
            let (_clock, hlc) = manual(wall);
            assert_eq!(
                hlc.update(remote).unwrap(),
                want,
                "wall {wall} remote {remote}"
            );
            assert!(hlc.now().unwrap() > want);
        }
    }

    #[test]
    fn update_takes_the_larger_of_local_and_remote() {
        let (_clock, hlc) = manual(1_000);
        hlc.observe(pack(1_300, 5));
        assert_eq!(hlc.update(pack(1_100, 0)).unwrap(), pack(1_300, 6));
    }

    #[test]
    fn refuses_remote_timestamps_too_far_ahead() {
        let (_clock, hlc) = manual(1_000);
        let err = hlc.update(pack(1_501, 0)).unwrap_err();
        assert_eq!(
            err,
            HlcError::ClockSkew {
                ahead_ms: 501,
                max_offset_ms: 500
            }
        );
        assert!(err.to_string().contains("max clock offset 500 ms"));
        assert_eq!(hlc.skew_rejections(), 1);
        // Not adopted: the next local timestamp is still at the wall clock.
        assert_eq!(hlc.now().unwrap(), pack(1_000, 0));
        // Exactly at the bound is accepted.
        assert!(hlc.update(pack(1_500, 0)).is_ok());
        assert!(hlc.check(pack(9_999, 0)).is_err());
        assert_eq!(hlc.skew_rejections(), 2);
    }

    #[test]
    fn recovered_floor_survives_a_clock_that_went_back() {
        let (_clock, hlc) = manual(5_000);
        hlc.observe(pack(9_000, 3)); // highest timestamp found in the log
        let ts = hlc.now().unwrap();
        assert_eq!(ts, pack(9_000, 4));
    }

    #[test]
    fn persisted_ceiling_bounds_every_issued_timestamp_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hlc.ceiling");
        let clock = Arc::new(ManualClock::new(100_000));
        let mut issued_max = 0;
        {
            let (store, recovered) = FileHighWater::open(&path).unwrap();
            assert_eq!(recovered, 0);
            let hlc = Hlc::new(clock.clone(), 500).with_high_water(Box::new(store), recovered);
            for _ in 0..10 {
                issued_max = hlc.now().unwrap();
                clock.advance(700);
            }
        }
        // Restart with the wall clock far behind: no timestamp at or below the old ones.
        clock.set(1_000);
        let (store, recovered) = FileHighWater::open(&path).unwrap();
        assert!(recovered >= issued_max);
        let hlc = Hlc::new(clock.clone(), 500).with_high_water(Box::new(store), recovered);
        assert!(hlc.now().unwrap() > issued_max);
    }

    #[test]
    fn a_failing_high_water_store_refuses_to_issue() {
        struct Broken(i32);
        impl HighWater for Broken {
            fn persist(&self, _: u64) -> std::io::Result<()> {
                Err(std::io::Error::from_raw_os_error(self.0))
            }
        }
        let clock = Arc::new(ManualClock::new(1_000));
        let hlc = Hlc::new(clock.clone(), 500).with_high_water(Box::new(Broken(5)), 0); // EIO
        assert!(matches!(
            hlc.now(),
            Err(HlcError::Persist {
                disk_full: false,
                ..
            })
        ));
        // ENOSPC is told apart: the node is out of space, its clock is fine.
        let hlc = Hlc::new(clock, 500).with_high_water(Box::new(Broken(28)), 0);
        assert!(matches!(
            hlc.update(pack(1_000, 0)),
            Err(HlcError::Persist {
                disk_full: true,
                ..
            })
        ));
    }
}
