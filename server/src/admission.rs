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
//! answered (drop). Lock-free: two atomics and a compare-and-swap loop each. Not here: fairness
//! between clients, or queueing (a queue is latency the client cannot see; shedding is honest).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Default budget of client requests in flight on one node.
pub const DEFAULT_MAX_INFLIGHT_REQUESTS: usize = 2_048;
/// Default budget of client request bytes (keys and values) in flight on one node.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 64 * 1024 * 1024;

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
        "node is overloaded: {inflight} of {limit} bytes of client requests in flight (--max-inflight-bytes); this request needs {wanted} more; retry after a backoff"
    )]
    Bytes {
        /// The configured limit.
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
    max_bytes: usize,
    requests: AtomicUsize,
    bytes: AtomicUsize,
    shed: AtomicU64,
    /// A moving average of the values reads returned, in bytes: what a read is charged before
    /// it knows its value (a get of a 1 MiB value holds that much, and more while replicas
    /// answer; charging reads their key only let 50/50 traffic of 1 MiB values past the budget).
    read_estimate: AtomicUsize,
}

/// What a read is charged before any read has been seen.
const INITIAL_READ_ESTIMATE: usize = 1024;

/// A request's share of the budget, returned on drop.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    bytes: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.requests.fetch_sub(1, Ordering::AcqRel);
        self.admission.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Admission {
    /// A budget of `max_requests` requests and `max_bytes` bytes.
    pub fn new(max_requests: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            max_requests,
            max_bytes,
            requests: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            read_estimate: AtomicUsize::new(INITIAL_READ_ESTIMATE),
        })
    }

    /// Admits a request of `bytes`, or sheds it. A single request larger than the whole byte
    /// budget is admitted when nothing else is in flight (it passed the value-size limit, so
    /// it is legitimate; refusing it forever would be a false answer).
    pub fn admit(self: &Arc<Self>, bytes: usize) -> Result<Permit, Shed> {
        let prev = self.requests.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max_requests {
            self.requests.fetch_sub(1, Ordering::AcqRel);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return Err(Shed::Requests {
                limit: self.max_requests,
            });
        }
        let mut cur = self.bytes.load(Ordering::Acquire);
        loop {
            if cur > 0 && cur + bytes > self.max_bytes {
                self.requests.fetch_sub(1, Ordering::AcqRel);
                self.shed.fetch_add(1, Ordering::Relaxed);
                return Err(Shed::Bytes {
                    limit: self.max_bytes,
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
        Ok(Permit {
            admission: self.clone(),
            bytes,
        })
    }

    /// What a read is charged now: the moving average of recent read values.
    pub fn read_estimate(&self) -> usize {
        self.read_estimate.load(Ordering::Relaxed)
    }

    /// Folds the size of a value a read returned into the estimate (weight 1/8: a change of
    /// workload shows within a few dozen reads).
    pub fn observe_read(&self, value_bytes: usize) {
        let old = self.read_estimate.load(Ordering::Relaxed);
        let new = (old * 7 + value_bytes) / 8;
        self.read_estimate.store(new.max(1), Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_beyond_either_budget_and_returns_permits_on_drop() {
        let a = Admission::new(2, 100);
        let p1 = a.admit(60).unwrap();
        assert_eq!(
            a.admit(50).unwrap_err(),
            Shed::Bytes {
                limit: 100,
                inflight: 60,
                wanted: 50
            }
        );
        let p2 = a.admit(40).unwrap();
        assert_eq!(a.admit(0).unwrap_err(), Shed::Requests { limit: 2 });
        assert_eq!((a.inflight_requests(), a.inflight_bytes()), (2, 100));
        assert_eq!(a.shed(), 2);
        drop(p1);
        drop(p2);
        assert_eq!((a.inflight_requests(), a.inflight_bytes()), (0, 0));
        // One request larger than the whole budget passes when alone.
        let big = a.admit(1_000).unwrap();
        assert!(a.admit(1).is_err());
        drop(big);
        assert!(a.admit(1).is_ok());
    }

    #[test]
    fn reads_are_charged_the_values_they_have_been_returning() {
        let a = Admission::new(100, 1 << 30);
        assert_eq!(a.read_estimate(), INITIAL_READ_ESTIMATE);
        for _ in 0..64 {
            a.observe_read(1 << 20);
        }
        let e = a.read_estimate();
        assert!(e > 1_000_000 && e <= 1 << 20, "{e}");
        for _ in 0..64 {
            a.observe_read(0);
        }
        assert!(a.read_estimate() < 1_000, "{}", a.read_estimate());
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
