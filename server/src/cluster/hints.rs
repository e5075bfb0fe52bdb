//! Hinted handoff storage: writes a replica missed, kept until it can take them.
//!
//! Hints live in their own [`Engine`] (the durable engine in `<data-dir>/hints` when the node
//! has a data directory), keyed `"<target id as 8 hex digits>/<key>"`. Last-write-wins in the
//! engine means a target keeps at most one hint per key, the newest, which is all it needs.
//! Hints are bounded per target ([`HintStore::new`]'s `max_per_target`): beyond it a new hint is
//! dropped and counted (read repair heals those keys), so a long-dead node cannot fill the
//! disk. Replaying belongs to `replication::handoff`; this module only stores.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::storage::{Applied, Engine, Entry, StorageError, Version};

/// Hints waiting for down replicas.
pub struct HintStore {
    engine: Arc<dyn Engine>,
    /// Hint keys per target (kept in step with the engine under this lock).
    counts: Mutex<HashMap<u32, usize>>,
    max_per_target: usize,
    dropped: AtomicU64,
    /// Hints stored (new or replacing an older one for the same key) since start.
    stored: AtomicU64,
    /// Bytes of hints handed to blocking threads and not yet stored.
    backlog: Arc<AtomicUsize>,
}

/// Bytes of hints waiting to be stored, at most. Storing a hint may wait for an fsync; when the
/// disk falls behind (under overload every timed-out write becomes hints), a queue of pending
/// hints would hold every one of their values in memory. Beyond the bound a hint is dropped and
/// counted, as beyond the per-target count: anti-entropy heals what hints miss.
pub const MAX_HINT_BACKLOG_BYTES: usize = 32 * 1024 * 1024;

/// A pending hint's share of the backlog, returned when it is stored (or dropped).
#[derive(Debug)]
pub struct BacklogSlot {
    backlog: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for BacklogSlot {
    fn drop(&mut self) {
        self.backlog.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for HintStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HintStore")
            .field("pending", &self.pending())
            .field("dropped", &self.dropped())
            .finish()
    }
}

fn hint_key(target: u32, key: &str) -> String {
    format!("{target:08x}/{key}")
}

fn parse_hint_key(hk: &str) -> Option<(u32, &str)> {
    let (t, key) = hk.split_at_checked(8)?;
    let key = key.strip_prefix('/')?;
    Some((u32::from_str_radix(t, 16).ok()?, key))
}

impl HintStore {
    /// Hints kept in `engine` (which may already hold some from before a restart).
    pub fn new(engine: Arc<dyn Engine>, max_per_target: usize) -> Self {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for hk in engine.keys() {
            if let Some((target, _)) = parse_hint_key(&hk) {
                *counts.entry(target).or_default() += 1;
            }
        }
        Self {
            engine,
            counts: Mutex::new(counts),
            max_per_target,
            dropped: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            backlog: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Keeps `entry` for `target`. Returns false when the target's hints are full and the hint
    /// was dropped.
    pub fn add(&self, target: u32, key: &str, entry: Entry) -> Result<bool, StorageError> {
        let hk = hint_key(target, key);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(target).or_default();
        let exists = self.engine.version_of(&hk).is_some();
        if !exists && *count >= self.max_per_target {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if self.engine.apply(&hk, entry)? == Applied::Stored {
            self.stored.fetch_add(1, Ordering::Relaxed);
            if !exists {
                *count += 1;
            }
        }
        Ok(true)
    }

    /// Up to `limit` hints for `target`: (key, entry).
    pub fn take_batch(
        &self,
        target: u32,
        limit: usize,
    ) -> Result<Vec<(String, Entry)>, StorageError> {
        let prefix = format!("{target:08x}/");
        let mut out = Vec::new();
        for hk in self.engine.keys() {
            if out.len() >= limit {
                break;
            }
            if let Some(key) = hk.strip_prefix(&prefix)
                && let Some(entry) = self.engine.get_entry(&hk)?
            {
                out.push((key.to_owned(), entry));
            }
        }
        Ok(out)
    }

    /// Forgets the hint for (`target`, `key`) if it is still at most `version` (a newer hint
    /// that arrived meanwhile stays).
    pub fn remove(&self, target: u32, key: &str, version: Version) -> Result<(), StorageError> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.engine.remove(&hint_key(target, key), version)?
            && let Some(c) = counts.get_mut(&target)
        {
            *c = c.saturating_sub(1);
        }
        Ok(())
    }

    /// Targets with hints pending.
    pub fn targets(&self) -> Vec<u32> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(t, _)| *t)
            .collect()
    }

    /// Hints pending, all targets together.
    pub fn pending(&self) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.values().map(|c| *c as u64).sum()
    }

    /// Reserves room in the backlog for a hint of `bytes` about to be stored on a blocking
    /// thread; `None` (the hint is dropped and counted) when the backlog is full.
    pub fn reserve(&self, bytes: usize) -> Option<BacklogSlot> {
        let before = self.backlog.fetch_add(bytes, Ordering::AcqRel);
        let slot = BacklogSlot {
            backlog: self.backlog.clone(),
            bytes,
        };
        if before > 0 && before + bytes > MAX_HINT_BACKLOG_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(slot)
    }

    /// Hints stored since start.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Bytes of the hints held (their records in the hints engine).
    pub fn bytes(&self) -> u64 {
        self.engine.stats().live_bytes
    }

    /// Bytes of hints waiting for a blocking thread to store them.
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed) as u64
    }

    /// Hints dropped because their target's store was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Makes the hints durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.engine.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Memory;

    #[test]
    fn keeps_newest_per_key_bounded_per_target_and_survives_reopen() {
        let engine: Arc<dyn Engine> = Arc::new(Memory::new());
        let hints = HintStore::new(engine.clone(), 2);
        let v = |h| Version::new(h, 1);
        assert!(hints.add(7, "a", Entry::value("1", v(1))).unwrap());
        assert!(hints.add(7, "a", Entry::value("2", v(2))).unwrap()); // same key: replaces
        assert!(hints.add(7, "b", Entry::value("x", v(3))).unwrap());
        assert!(!hints.add(7, "c", Entry::value("y", v(4))).unwrap()); // full
        assert!(hints.add(8, "c", Entry::value("y", v(4))).unwrap()); // other target
        assert_eq!(hints.pending(), 3);
        assert_eq!(hints.dropped(), 1);
        let mut batch = hints.take_batch(7, 10).unwrap();
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(batch[0], ("a".into(), Entry::value("2", v(2))));
        assert_eq!(batch.len(), 2);

        // A replay of an older version does not remove a newer hint.
        hints.remove(7, "a", v(1)).unwrap();
        assert_eq!(hints.pending(), 3);
        hints.remove(7, "a", v(2)).unwrap();
        assert_eq!(hints.pending(), 2);

        // Reopening over the same engine recounts.
        let again = HintStore::new(engine, 2);
        assert_eq!(again.pending(), 2);
        let mut t = again.targets();
        t.sort();
        assert_eq!(t, vec![7, 8]);
    }

    #[test]
    fn hint_keys_round_trip_with_slashes_in_keys() {
        assert_eq!(parse_hint_key(&hint_key(42, "a/b")), Some((42, "a/b")));
        assert_eq!(parse_hint_key("zz"), None);
    }
}
