//! Hinted handoff storage: writes a replica missed, kept until it can take them.
//!
//! Hints live in their own [`Engine`] (the durable engine in `<data-dir>/hints` when the node
//! has a data directory), keyed `"<target id as 8 hex digits>/<key>"`. Last-write-wins in the
//! engine means a target keeps at most one hint per key, the newest, which is all it needs.
//!
//! Hints are best effort, as in Cassandra; anti-entropy repair is what guarantees convergence.
//! So they are bounded three ways, each drop counted:
//! - per target ([`HintLimits::max_per_target`]) and in bytes over all targets
//!   ([`HintLimits::max_bytes`]): a long-dead node cannot fill the disk;
//! - in age ([`HintLimits::window`], Cassandra's `max_hint_window`): a hint whose write is
//!   older than the window is not stored, not replayed, and swept from the store. The window
//!   is kept below the tombstone grace period: a hint older than a delete that its target has
//!   already collected would bring the deleted value back.
//!
//! The store keeps each target's hint keys in memory (beside the count the bounds need), so a
//! replay takes the next batch of its target directly: replaying H hints costs O(H), whatever
//! other targets hold. [`HintStore::upkeep`] sweeps expired hints and snapshots and compacts
//! the hints engine, so replayed and superseded hints leave the disk too. Replaying belongs to
//! `replication::handoff`; this module only stores.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::storage::{Applied, Engine, Entry, Log, StorageError, Version};

/// Hints a node holds at most. See the module header for why each bound exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintLimits {
    /// Hints per target.
    pub max_per_target: usize,
    /// Bytes of hints (keys and values) over every target.
    pub max_bytes: u64,
    /// Age of a write beyond which its hint is dropped (repair covers it).
    pub window: Duration,
}

/// Default [`HintLimits::max_bytes`]: 1 GiB.
pub const DEFAULT_MAX_HINT_BYTES: u64 = 1 << 30;
/// Default [`HintLimits::window`]: 15 minutes, a quarter of the default tombstone grace.
pub const DEFAULT_HINT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// What became of a hint handed to [`HintStore::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Stored (or it replaced an older hint for the same key, or a newer one was there).
    Stored,
    /// Dropped: its target holds [`HintLimits::max_per_target`] hints already.
    TargetFull,
    /// Dropped: the store holds [`HintLimits::max_bytes`] already.
    StoreFull,
    /// Dropped: the write is older than [`HintLimits::window`].
    Expired,
}

/// One target's hints: each key with the bytes it is counted for.
#[derive(Debug, Default)]
struct TargetHints {
    keys: BTreeMap<String, u64>,
}

/// The in-memory side of the store, kept in step with the engine under one lock.
#[derive(Debug, Default)]
struct Held {
    targets: HashMap<u32, TargetHints>,
    bytes: u64,
}

impl Held {
    fn insert(&mut self, target: u32, key: &str, bytes: u64) {
        let old = self
            .targets
            .entry(target)
            .or_default()
            .keys
            .insert(key.to_owned(), bytes);
        self.bytes = self.bytes + bytes - old.unwrap_or(0);
    }

    fn forget(&mut self, target: u32, key: &str) {
        if let Some(t) = self.targets.get_mut(&target) {
            if let Some(b) = t.keys.remove(key) {
                self.bytes -= b;
            }
            if t.keys.is_empty() {
                self.targets.remove(&target);
            }
        }
    }
}

/// Hints waiting for down replicas.
pub struct HintStore {
    engine: Arc<dyn Engine>,
    /// The engine as the durable log, when it is one (compaction is judged on it).
    log: Option<Arc<Log>>,
    held: Mutex<Held>,
    limits: HintLimits,
    dropped: AtomicU64,
    expired: AtomicU64,
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
            .field("expired", &self.expired())
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

/// What a hint is counted for against [`HintLimits::max_bytes`].
fn hint_bytes(key: &str, entry: &Entry) -> u64 {
    // Key twice (engine and memory), value, and the record's fixed fields.
    (2 * key.len() + entry.value.len() + 48) as u64
}

impl HintStore {
    /// Hints kept in `engine` (which may already hold some from before a restart; they are
    /// counted, expired ones included, until the next [`HintStore::upkeep`] sweeps them).
    /// `log` is the same engine as the durable log, when it is one.
    pub fn new(
        engine: Arc<dyn Engine>,
        log: Option<Arc<Log>>,
        limits: HintLimits,
    ) -> Result<Self, StorageError> {
        let mut held = Held::default();
        for hk in engine.keys() {
            if let Some((target, key)) = parse_hint_key(&hk)
                && let Some(entry) = engine.get_entry(&hk)?
            {
                held.insert(target, key, hint_bytes(key, &entry));
            }
        }
        Ok(Self {
            engine,
            log,
            held: Mutex::new(held),
            limits,
            dropped: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            backlog: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a hint of a write at `version` is past the window at `now_ms`.
    fn is_expired(&self, version: Version, now_ms: u64) -> bool {
        let window = self.limits.window.as_millis() as u64;
        version.physical_ms().saturating_add(window) < now_ms
    }

    /// Keeps `entry` for `target`, unless a bound says otherwise (see [`Kept`]).
    pub fn add(
        &self,
        target: u32,
        key: &str,
        entry: Entry,
        now_ms: u64,
    ) -> Result<Kept, StorageError> {
        if self.is_expired(entry.version, now_ms) {
            self.expired.fetch_add(1, Ordering::Relaxed);
            return Ok(Kept::Expired);
        }
        let hk = hint_key(target, key);
        let bytes = hint_bytes(key, &entry);
        let mut held = self.held();
        let old = held
            .targets
            .get(&target)
            .and_then(|t| t.keys.get(key).copied());
        let count = held.targets.get(&target).map_or(0, |t| t.keys.len());
        if old.is_none() && count >= self.limits.max_per_target {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(Kept::TargetFull);
        }
        if held.bytes - old.unwrap_or(0) + bytes > self.limits.max_bytes {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(Kept::StoreFull);
        }
        if self.engine.apply(&hk, entry)? == Applied::Stored {
            self.stored.fetch_add(1, Ordering::Relaxed);
            held.insert(target, key, bytes);
        }
        Ok(Kept::Stored)
    }

    /// The next (at most `limit`) hints for `target` in key order from `after` (exclusive):
    /// (key, entry). Hints past the window are removed and counted on the way, not returned.
    /// A replay walks its target's hints with `after` = the last key of the previous batch,
    /// so each hint is read once.
    pub fn take_batch(
        &self,
        target: u32,
        after: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<(String, Entry)>, StorageError> {
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_owned);
        while out.len() < limit {
            let keys: Vec<String> = {
                let held = self.held();
                let Some(t) = held.targets.get(&target) else {
                    break;
                };
                let range = match &cursor {
                    Some(c) => t.keys.range::<str, _>((
                        std::ops::Bound::Excluded(c.as_str()),
                        std::ops::Bound::Unbounded,
                    )),
                    None => t.keys.range::<str, _>(..),
                };
                range
                    .take(limit - out.len())
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in keys {
                match self.engine.get_entry(&hint_key(target, &key))? {
                    Some(e) if self.is_expired(e.version, now_ms) => {
                        self.expired.fetch_add(1, Ordering::Relaxed);
                        self.remove(target, &key, e.version)?;
                    }
                    Some(e) => out.push((key, e)),
                    // Removed meanwhile (replayed by a concurrent round).
                    None => self.held().forget(target, &key),
                }
            }
            cursor = Some(last);
        }
        Ok(out)
    }

    /// Forgets the hint for (`target`, `key`) if it is still at most `version` (a newer hint
    /// that arrived meanwhile stays).
    pub fn remove(&self, target: u32, key: &str, version: Version) -> Result<(), StorageError> {
        let mut held = self.held();
        if self.engine.remove(&hint_key(target, key), version)? {
            held.forget(target, key);
        }
        Ok(())
    }

    /// Removes every hint past the window at `now_ms`; returns how many.
    pub fn sweep_expired(&self, now_ms: u64) -> Result<u64, StorageError> {
        let all: Vec<(u32, String)> = {
            let held = self.held();
            held.targets
                .iter()
                .flat_map(|(t, h)| h.keys.keys().map(move |k| (*t, k.clone())))
                .collect()
        };
        let mut swept = 0;
        for (target, key) in all {
            if let Some(v) = self.engine.version_of(&hint_key(target, &key))
                && self.is_expired(v, now_ms)
            {
                self.remove(target, &key, v)?;
                swept += 1;
            }
        }
        self.expired.fetch_add(swept, Ordering::Relaxed);
        Ok(swept)
    }

    /// Background upkeep of the store: sweeps expired hints, then snapshots the hints engine
    /// and compacts it when enough of it is dead (replayed, superseded or swept hints).
    pub fn upkeep(&self, now_ms: u64) -> Result<(), StorageError> {
        let swept = self.sweep_expired(now_ms)?;
        if swept > 0 {
            tracing::info!(
                swept,
                "hints older than the hint window dropped (repair covers them)"
            );
        }
        self.engine.snapshot()?;
        if self.log.as_ref().is_some_and(|l| l.compaction_due()) {
            self.engine.compact(now_ms)?;
        }
        Ok(())
    }

    /// Targets with hints pending.
    pub fn targets(&self) -> Vec<u32> {
        self.held().targets.keys().copied().collect()
    }

    /// Hints pending, all targets together.
    pub fn pending(&self) -> u64 {
        self.held()
            .targets
            .values()
            .map(|t| t.keys.len() as u64)
            .sum()
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

    /// Bytes of the hints held, as counted against [`HintLimits::max_bytes`].
    pub fn bytes(&self) -> u64 {
        self.held().bytes
    }

    /// The bounds in force.
    pub fn limits(&self) -> HintLimits {
        self.limits
    }

    /// Bytes of hints waiting for a blocking thread to store them.
    pub fn backlog_bytes(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed) as u64
    }

    /// Hints dropped because a bound was reached (per target, bytes, backlog).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hints dropped because their write was older than the window.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Makes the hints durable.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.engine.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{LogConfig, Memory};

    /// Wall-clock "now" of the tests, in ms; versions are stamped close to it.
    const NOW: u64 = 1_800_000_000_000;

    fn v(ms_ago: u64, logical: u32) -> Version {
        Version::new(crate::hlc::pack(NOW - ms_ago, 0), logical)
    }

    fn limits(max_per_target: usize) -> HintLimits {
        HintLimits {
            max_per_target,
            max_bytes: DEFAULT_MAX_HINT_BYTES,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn keeps_newest_per_key_bounded_per_target_and_survives_reopen() {
        let engine: Arc<dyn Engine> = Arc::new(Memory::new());
        let hints = HintStore::new(engine.clone(), None, limits(2)).unwrap();
        let add = |t, k, val: &'static str, ver| hints.add(t, k, Entry::value(val, ver), NOW);
        assert_eq!(add(7, "a", "1", v(40, 1)).unwrap(), Kept::Stored);
        assert_eq!(add(7, "a", "2", v(30, 1)).unwrap(), Kept::Stored); // same key: replaces
        assert_eq!(add(7, "b", "x", v(20, 1)).unwrap(), Kept::Stored);
        assert_eq!(add(7, "c", "y", v(10, 1)).unwrap(), Kept::TargetFull);
        assert_eq!(add(8, "c", "y", v(10, 1)).unwrap(), Kept::Stored); // other target
        assert_eq!(hints.pending(), 3);
        assert_eq!(hints.dropped(), 1);
        let batch = hints.take_batch(7, None, 10, NOW).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0], ("a".into(), Entry::value("2", v(30, 1))));

        // A replay of an older version does not remove a newer hint.
        hints.remove(7, "a", v(40, 1)).unwrap();
        assert_eq!(hints.pending(), 3);
        hints.remove(7, "a", v(30, 1)).unwrap();
        assert_eq!(hints.pending(), 2);

        // Reopening over the same engine recounts, bytes included.
        let bytes = hints.bytes();
        let again = HintStore::new(engine, None, limits(2)).unwrap();
        assert_eq!(again.pending(), 2);
        assert_eq!(again.bytes(), bytes);
        let mut t = again.targets();
        t.sort();
        assert_eq!(t, vec![7, 8]);
    }

    #[test]
    fn hints_past_the_window_are_not_stored_replayed_or_kept() {
        let engine: Arc<dyn Engine> = Arc::new(Memory::new());
        let hints = HintStore::new(engine, None, limits(100)).unwrap();
        // A write older than the window is not hinted at all.
        assert_eq!(
            hints
                .add(1, "old", Entry::value("x", v(61_000, 1)), NOW)
                .unwrap(),
            Kept::Expired
        );
        assert_eq!(hints.pending(), 0);
        // Stored while young...
        assert_eq!(
            hints
                .add(1, "k1", Entry::value("x", v(1_000, 1)), NOW)
                .unwrap(),
            Kept::Stored
        );
        assert_eq!(
            hints
                .add(1, "k2", Entry::value("x", v(50_000, 1)), NOW)
                .unwrap(),
            Kept::Stored
        );
        // ...a replay 20 s later skips (and removes) the one now past the window.
        let later = NOW + 20_000;
        let batch = hints.take_batch(1, None, 10, later).unwrap();
        assert_eq!(
            batch.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["k1"]
        );
        assert_eq!(hints.pending(), 1);
        assert_eq!(hints.expired(), 2);
        // The sweep drops the rest once they age out, without any replay.
        assert_eq!(hints.sweep_expired(NOW + 120_000).unwrap(), 1);
        assert_eq!(hints.pending(), 0);
        assert_eq!(hints.bytes(), 0);
        assert_eq!(hints.expired(), 3);
    }

    #[test]
    fn the_byte_bound_drops_new_hints_but_lets_a_key_be_replaced() {
        let engine: Arc<dyn Engine> = Arc::new(Memory::new());
        let one = hint_bytes("k0", &Entry::value(vec![0u8; 1000], v(1, 1)));
        let hints = HintStore::new(
            engine,
            None,
            HintLimits {
                max_bytes: 3 * one,
                ..limits(100)
            },
        )
        .unwrap();
        let big = |k: &str, ago| (k.to_string(), Entry::value(vec![0u8; 1000], v(ago, 1)));
        for k in ["k0", "k1", "k2"] {
            let (key, e) = big(k, 10);
            assert_eq!(hints.add(2, &key, e, NOW).unwrap(), Kept::Stored);
        }
        let (key, e) = big("k3", 10);
        assert_eq!(hints.add(2, &key, e, NOW).unwrap(), Kept::StoreFull);
        // Replacing a held key with a newer write of the same size fits.
        let (key, e) = big("k1", 5);
        assert_eq!(hints.add(2, &key, e, NOW).unwrap(), Kept::Stored);
        assert_eq!(hints.pending(), 3);
        assert_eq!(hints.bytes(), 3 * one);
        assert_eq!(hints.dropped(), 1);
    }

    #[test]
    fn a_replay_walks_its_targets_hints_once_in_key_order() {
        let engine: Arc<dyn Engine> = Arc::new(Memory::new());
        let hints = HintStore::new(engine, None, limits(10_000)).unwrap();
        for i in 0..1000 {
            for target in [1, 2, 3] {
                let key = format!("key{i:04}");
                hints
                    .add(target, &key, Entry::value("v", v(5, 1)), NOW)
                    .unwrap();
            }
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = hints.take_batch(2, after.as_deref(), 64, NOW).unwrap();
            let Some(last) = batch.last() else { break };
            after = Some(last.0.clone());
            seen.extend(batch.into_iter().map(|(k, _)| k));
        }
        let want: Vec<String> = (0..1000).map(|i| format!("key{i:04}")).collect();
        assert_eq!(seen, want);
        assert_eq!(
            hints.pending(),
            3000,
            "taking a batch does not remove hints"
        );
    }

    #[test]
    fn upkeep_compacts_replayed_hints_off_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = LogConfig::new(dir.path());
        cfg.segment_bytes = 64 * 1024;
        cfg.compaction_min_dead_bytes = 64 * 1024;
        let log = Arc::new(Log::open(cfg).unwrap());
        let engine: Arc<dyn Engine> = log.clone();
        let hints = HintStore::new(engine, Some(log.clone()), limits(100_000)).unwrap();
        let value = vec![7u8; 1024];
        for i in 0..2000 {
            let e = Entry::value(value.clone(), v(5, 1));
            hints.add(9, &format!("k{i}"), e, NOW).unwrap();
        }
        let disk = |p: &std::path::Path| -> u64 {
            std::fs::read_dir(p)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .map(|e| e.metadata().unwrap().len())
                .sum()
        };
        let full = disk(dir.path());
        assert!(full > 2000 * 1024, "{full} bytes of segments");
        for (key, e) in hints.take_batch(9, None, 100_000, NOW).unwrap() {
            hints.remove(9, &key, e.version).unwrap();
        }
        assert_eq!(hints.pending(), 0);
        hints.upkeep(NOW).unwrap();
        let after = disk(dir.path());
        assert!(
            after < full / 10,
            "replayed hints still on disk after upkeep: {after} of {full} bytes"
        );
    }

    #[test]
    fn hint_keys_round_trip_with_slashes_in_keys() {
        assert_eq!(parse_hint_key(&hint_key(42, "a/b")), Some((42, "a/b")));
        assert_eq!(parse_hint_key("zz"), None);
    }
}
