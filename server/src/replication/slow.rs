//! Replicas this coordinator found slow: asked last for a while.
//!
//! Speculative retry asks a spare when the first replicas of a read are slow; without memory,
//! every read that lists a paused or overloaded replica among its first R pays the speculative
//! wait again. Like Cassandra's dynamic snitch (much reduced), a replica that made a read
//! speculate is marked slow for [`SLOW_MARK_MS`]: reads order it after the others, so it is only
//! asked as a spare. When the mark expires it is asked first again; if it is still slow, one
//! read pays the wait and marks it again. Pure: time comes in as an argument.

use std::collections::HashMap;
use std::sync::Mutex;

/// How long a replica that made a read speculate is asked last.
pub const SLOW_MARK_MS: u64 = 1_000;

/// Replicas marked slow, with the monotonic ms their mark expires.
#[derive(Debug, Default)]
pub struct SlowReplicas {
    until: Mutex<HashMap<u32, u64>>,
}

impl SlowReplicas {
    /// Marks `node` slow from `now_ms`.
    pub fn mark(&self, node: u32, now_ms: u64) {
        self.lock().insert(node, now_ms + SLOW_MARK_MS);
    }

    /// Whether `node` is marked slow at `now_ms`.
    pub fn is_slow(&self, node: u32, now_ms: u64) -> bool {
        self.lock().get(&node).is_some_and(|&t| t > now_ms)
    }

    /// Moves the replicas marked slow to the end of `order`, keeping the rest in order.
    pub fn order(&self, order: &mut [u32], now_ms: u64) {
        let marks = self.lock();
        if marks.is_empty() {
            return;
        }
        order.sort_by_key(|n| marks.get(n).is_some_and(|&t| t > now_ms));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, u64>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_replicas_go_last_until_their_mark_expires() {
        let s = SlowReplicas::default();
        let mut order = vec![1, 2, 3];
        s.order(&mut order, 0);
        assert_eq!(order, vec![1, 2, 3]);
        s.mark(2, 100);
        s.order(&mut order, 500);
        assert_eq!(order, vec![1, 3, 2]);
        assert!(s.is_slow(2, 1_099));
        let mut order = vec![2, 1, 3];
        s.order(&mut order, 1_100);
        assert_eq!(order, vec![2, 1, 3], "the mark expired");
    }
}
