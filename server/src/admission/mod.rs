//! Admission control: a budget of client requests and request bytes a node works on at once.
//!
//! Without it, 1,500 concurrent 1 MiB puts to one node took its RSS to 914 MB, and enough of
//! them would have killed it: every request admitted holds its value (and the copies queued
//! for replicas) until it is answered. Beyond the budget a request is shed at once with
//! RESOURCE_EXHAUSTED naming the limit (a definite failure: nothing was done), and the client
//! backs off and retries, so the node keeps serving what it admitted at full speed instead of
//! slowing everyone down (goodput held, memory flat).
//!
//! A [`Permit`] is taken before the coordinator does anything and released when the request is
//! answered (drop). The request count is a fixed limit; the byte limit adapts to the node's
//! speed ([`limit`]): it is lowered while admitted requests take longer than a target latency,
//! so that what is admitted is answered before its client gives up, instead of coming back as
//! an unknown outcome. The hot path is a few atomics and a compare-and-swap loop; once per
//! window one request folds the window's figures into the limit under a lock nobody waits on.
//! Not here: fairness between clients, or queueing (a queue is latency the client cannot see;
//! shedding is honest).

pub mod limit;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use limit::{ByteLimit, Window};

/// Default budget of client requests in flight on one node.
pub const DEFAULT_MAX_INFLIGHT_REQUESTS: usize = 2_048;
/// Default budget of client request bytes (keys and values) in flight on one node.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 64 * 1024 * 1024;
/// Default mean latency above which the byte limit is lowered: well inside a client's attempt
/// timeout (2 s for ours), so that an admitted request is answered, not abandoned.
pub const DEFAULT_TARGET_LATENCY: Duration = Duration::from_millis(250);
/// The byte limit never goes below this (four 1 MiB values at once): the node always takes
/// some work, and small-value traffic never meets the byte limit at all.
const BYTE_LIMIT_FLOOR: usize = 4 * 1024 * 1024;
/// How often the byte limit moves.
const WINDOW: Duration = Duration::from_millis(200);

/// Which budget a shed request exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    /// Too many requests in flight.
    #[error(
        "node is overloaded: {limit} client requests in flight (the limit, --max-inflight-requests); retry after a backoff"
    )]
    Requests {
        /// The configured limit.
        limit: usize,
    },
    /// Too many request bytes in flight.
    #[error(
        "node is overloaded: {inflight} of {limit} bytes of client requests in flight (the limit now: at most --max-inflight-bytes, lowered while requests take longer than --admission-target-latency-ms); this request needs {wanted} more; retry after a backoff"
    )]
    Bytes {
        /// The byte limit in force (adaptive, at most the configured one).
        limit: usize,
        /// Bytes in flight when the request arrived.
        inflight: usize,
        /// The request's bytes.
        wanted: usize,
    },
}

/// The node's budget.
#[derive(Debug)]
pub struct Admission {
    max_requests: usize,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    shed: AtomicU64,
    /// A moving average of the values reads returned, in bytes: what a read is charged before
    /// it knows its value (a get of a 1 MiB value holds that much, and more while replicas
    /// answer; charging reads their key only let 50/50 traffic of 1 MiB values past the budget).
    read_estimate: AtomicUsize,
    /// A moving average of the puts' keys and values, in bytes: what a put is charged before
    /// its body is read.
    put_estimate: AtomicUsize,
    /// The byte limit in force, as [`ByteLimit`] last set it.
    byte_limit: AtomicUsize,
    controller: Mutex<ByteLimit>,
    /// When this budget was made: window times are microseconds since.
    epoch: Instant,
    window_start_us: AtomicU64,
    window_completed: AtomicU64,
    window_latency_us: AtomicU64,
    window_peak_bytes: AtomicUsize,
}

/// What a read or put is charged before any has been seen.
const INITIAL_ESTIMATE: usize = 1024;
/// What a request without a value (a delete, a status call) is charged.
const SMALL_REQUEST: usize = 256;

/// Which estimate a request is charged when its headers arrive, before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// A put: the moving average of recent puts' keys and values.
    Put,
    /// A read: the moving average of the values reads returned.
    Read,
    /// A request that carries no value.
    Small,
}

/// The bytes a request was charged at the door: the handler charges only what it has beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged(pub usize);

/// A request's share of the budget, returned on drop.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    bytes: usize,
    admitted: Instant,
    /// Whether this permit holds a request slot (the door's permit) or only bytes (the
    /// handler's top-up).
    request: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        a.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        if !self.request {
            return;
        }
        a.requests.fetch_sub(1, Ordering::AcqRel);
        a.window_completed.fetch_add(1, Ordering::Relaxed);
        a.window_latency_us.fetch_add(
            self.admitted.elapsed().as_micros() as u64,
            Ordering::Relaxed,
        );
    }
}

impl Admission {
    /// A budget of `max_requests` requests and at most `max_bytes` bytes, the byte limit
    /// lowered while requests take longer than `target_latency` on average.
    pub fn new(max_requests: usize, max_bytes: usize, target_latency: Duration) -> Arc<Self> {
        let controller = ByteLimit::new(BYTE_LIMIT_FLOOR, max_bytes, target_latency);
        Arc::new(Self {
            max_requests,
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            read_estimate: AtomicUsize::new(INITIAL_ESTIMATE),
            put_estimate: AtomicUsize::new(INITIAL_ESTIMATE),
            byte_limit: AtomicUsize::new(controller.limit()),
            controller: Mutex::new(controller),
            epoch: Instant::now(),
            window_start_us: AtomicU64::new(0),
            window_completed: AtomicU64::new(0),
            window_latency_us: AtomicU64::new(0),
            window_peak_bytes: AtomicUsize::new(0),
        })
    }

    /// Admits a request of `bytes` arriving at `now`, or sheds it. A single request larger
    /// than the whole byte limit is admitted when nothing else is in flight (it passed the
    /// value-size limit, so it is legitimate; refusing it forever would be a false answer).
    pub fn admit(self: &Arc<Self>, bytes: usize, now: Instant) -> Result<Permit, Shed> {
        self.maybe_close_window(now);
        let prev = self.requests.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_requests {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return Err(Shed::Requests {
                limit: self.max_requests,
            });
        }
        self.take_bytes(bytes, now, true).inspect_err(|_| {
            self.requests.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Charges an admitted request the `bytes` it has beyond what it was charged at the door
    /// (its real size was known only once its body was read), or sheds it. The request slot
    /// stays the door's permit's.
    pub fn admit_extra(self: &Arc<Self>, bytes: usize, now: Instant) -> Result<Permit, Shed> {
        self.take_bytes(bytes, now, false)
    }

    fn take_bytes(
        self: &Arc<Self>,
        bytes: usize,
        now: Instant,
        request: bool,
    ) -> Result<Permit, Shed> {
        let max_bytes = self.byte_limit.load(Ordering::Relaxed);
        let mut cur = self.bytes.load(Ordering::Acquire);
        loop {
            if bytes > 0 && cur > 0 && cur + bytes > max_bytes {
                self.shed.fetch_add(1, Ordering::Relaxed);
                return Err(Shed::Bytes {
                    limit: max_bytes,
                    inflight: cur,
                    wanted: bytes,
                });
            }
            match self.bytes.compare_exchange_weak(
                cur,
                cur + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.window_peak_bytes
            .fetch_max(cur + bytes, Ordering::Relaxed);
        Ok(Permit {
            admission: self.clone(),
            bytes,
            admitted: now,
            request,
        })
    }

    /// What a request of this kind is charged before its body is read.
    pub fn estimate(&self, kind: Estimate) -> usize {
        match kind {
            Estimate::Put => self.put_estimate.load(Ordering::Relaxed),
            Estimate::Read => self.read_estimate.load(Ordering::Relaxed),
            Estimate::Small => SMALL_REQUEST,
        }
    }

    /// Folds the size of a put (key and value) into the put estimate.
    pub fn observe_put(&self, bytes: usize) {
        fold(&self.put_estimate, bytes);
    }

    /// Once a window has passed, folds its figures into the byte limit. One caller wins the
    /// lock; the others go on with the limit as it is.
    fn maybe_close_window(&self, now: Instant) {
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let start = self.window_start_us.load(Ordering::Relaxed);
        if now_us < start + WINDOW.as_micros() as u64 {
            return;
        }
        let Ok(mut controller) = self.controller.try_lock() else {
            return;
        };
        if self
            .window_start_us
            .compare_exchange(start, now_us, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let completed = self.window_completed.swap(0, Ordering::AcqRel);
        let latency_us = self.window_latency_us.swap(0, Ordering::AcqRel);
        let peak = self
            .window_peak_bytes
            .swap(self.bytes.load(Ordering::Relaxed), Ordering::AcqRel);
        let window = Window {
            completed,
            mean_latency: Duration::from_micros(latency_us.checked_div(completed).unwrap_or(0)),
            peak_inflight_bytes: peak,
        };
        let limit = controller.update(&window);
        self.byte_limit.store(limit, Ordering::Relaxed);
    }

    /// The byte limit in force now (at most the configured one).
    pub fn byte_limit(&self) -> usize {
        self.byte_limit.load(Ordering::Relaxed)
    }

    /// Folds the size of a value a read returned into the estimate (weight 1/8: a change of
    /// workload shows within a few dozen reads).
    pub fn observe_read(&self, value_bytes: usize) {
        fold(&self.read_estimate, value_bytes);
    }

    /// Requests in flight now.
    pub fn inflight_requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Request bytes in flight now.
    pub fn inflight_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Requests shed since the node started.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// One step of a moving average with weight 1/8. Racy by design: a lost update among
/// concurrent ones moves an estimate a little less, which nothing depends on.
fn fold(average: &AtomicUsize, sample: usize) {
    let old = average.load(Ordering::Relaxed);
    let new = (old * 7 + sample) / 8;
    average.store(new.max(1), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_beyond_either_budget_and_returns_permits_on_drop() {
        let a = Admission::new(2, 100, DEFAULT_TARGET_LATENCY);
        let now = a.epoch;
        let p1 = a.admit(60, now).unwrap();
        assert_eq!(
            a.admit(50, now).unwrap_err(),
            Shed::Bytes {
                limit: 100,
                inflight: 60,
                wanted: 50
            }
        );
        let p2 = a.admit(40, now).unwrap();
        assert_eq!(a.admit(0, now).unwrap_err(), Shed::Requests { limit: 2 });
        assert_eq!((a.inflight_requests(), a.inflight_bytes()), (2, 100));
        assert_eq!(a.shed(), 2);
        drop(p1);
        drop(p2);
        assert_eq!((a.inflight_requests(), a.inflight_bytes()), (0, 0));
        // One request larger than the whole budget passes when alone.
        let big = a.admit(1_000, now).unwrap();
        assert!(a.admit(1, now).is_err());
        drop(big);
        assert!(a.admit(1, now).is_ok());
    }

    #[test]
    fn slow_requests_lower_the_byte_limit_and_fast_ones_at_the_limit_raise_it() {
        const MIB: usize = 1 << 20;
        let a = Admission::new(1_000, 64 * MIB, Duration::from_millis(250));
        let t0 = a.epoch;
        // A window of 1 MiB requests that each took a second.
        let permits: Vec<_> = (0..32).map(|_| a.admit(MIB, t0).unwrap()).collect();
        let t1 = t0 + Duration::from_secs(1);
        for mut p in permits {
            // Drop measures against the real clock: admitted a second ago.
            p.admitted = Instant::now().checked_sub(Duration::from_secs(1)).unwrap();
            drop(p);
        }
        drop(a.admit(1, t1).unwrap());
        assert_eq!(a.byte_limit(), 48 * MIB);
        // 48 MiB may now be in flight, and not a byte more.
        let held: Vec<_> = (0..48).map(|_| a.admit(MIB, t1)).collect();
        assert_eq!(held.iter().filter(|p| p.is_ok()).count(), 48);
        assert!(a.admit(MIB, t1).is_err());
        // Fast answers with the limit reached: it grows again.
        let t2 = t1 + WINDOW;
        drop(held);
        drop(a.admit(1, t2).unwrap());
        assert_eq!(
            a.byte_limit(),
            60 * MIB,
            "fast window at the limit grows it by a quarter"
        );
    }

    #[test]
    fn reads_are_charged_the_values_they_have_been_returning() {
        let a = Admission::new(100, 1 << 30, DEFAULT_TARGET_LATENCY);
        assert_eq!(a.estimate(Estimate::Read), INITIAL_ESTIMATE);
        for _ in 0..64 {
            a.observe_read(1 << 20);
        }
        let e = a.estimate(Estimate::Read);
        assert!(e > 1_000_000 && e <= 1 << 20, "{e}");
        for _ in 0..64 {
            a.observe_read(0);
        }
        assert!(
            a.estimate(Estimate::Read) < 1_000,
            "{}",
            a.estimate(Estimate::Read)
        );
    }

    #[test]
    fn messages_name_the_limit_and_the_flag() {
        let m = Shed::Requests { limit: 7 }.to_string();
        assert!(m.contains("7 client requests") && m.contains("--max-inflight-requests"));
        let m = Shed::Bytes {
            limit: 10,
            inflight: 8,
            wanted: 5,
        }
        .to_string();
        assert!(m.contains("8 of 10 bytes") && m.contains("--max-inflight-bytes"));
    }
}
