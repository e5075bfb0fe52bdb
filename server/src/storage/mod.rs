//! The storage engine: where a node keeps its versioned entries.
//!
//! One trait, [`Engine`], with two implementations that pass one shared test suite:
//! - [`Memory`]: a map, the reference semantics (and what unit tests of higher layers use);
//! - [`Log`]: the durable log-structured engine (Bitcask-like segments, CRC32C-framed records,
//!   an in-memory index of where each key's newest version lives, snapshots and compaction),
//!   configured by [`LogConfig`] and [`FsyncPolicy`].
//!
//! The durable engine's modules: [`record`] (the on-disk frame), `segment` (file naming and
//! order), `index` (the sharded key -> location map), `commit` (group commit and the poisoned
//! state), `recovery` (open and replay), `snapshot`, `compaction`, and [`io`] (the file-system
//! seam) with [`SimFs`] (power loss and fault injection for tests).
//!
//! Semantics both share: [`Engine::apply`] keeps an entry only if its [`Version`] is newer than
//! the stored one (last-write-wins, idempotent, so replication, hints and repair may retry
//! freely); deletes are tombstones with a version; TTL is an absolute expiry honoured on every
//! read. The engine decides nothing about the cluster: it stores what it is given.
//!
//! A `Log` data directory holds `NNNNNNNNNNNN-SSSSS.seg` segments, `snapshot` (the index at a
//! consistent cut), `LOCK` (an `flock` held while open) and, after a crash, `*.tmp` files
//! (removed at open) or `snapshot.broken` (a snapshot that failed its checks, kept for study).
//!
//! Deliberately left out: range scans and ordered iteration (the index is a hash map; the
//! cluster streams whole key sets), multi-key transactions, compression, and partial
//! compaction (compaction rewrites every sealed segment at once, so it needs free space for the
//! live data it copies; the server runs it when [`Log::compaction_due`] says so). A snapshot and
//! a compaction each hold a copy of the affected index entries in memory while they run.

mod collect;
mod commit;
mod compaction;
mod config;
mod entry;
mod error;
mod index;
mod inner;
pub mod io;
mod log;
mod memory;
mod observer;
pub mod record;
mod recovery;
mod segment;
mod simfs;
mod snapshot;

pub use collect::{AfterGrace, CollectPolicy};
pub use config::{DEFAULT_TOMBSTONE_GRACE, FsyncPolicy, LogConfig, ParseFsyncPolicyError};
pub use entry::{Applied, Entry};
pub use error::StorageError;
pub use io::LOCK_FILE;
pub use kvstore_proto::Version;
pub use log::Log;
pub use memory::Memory;
pub use observer::{ChangeObserver, ObserverSlot};
pub use segment::SEGMENT_SUFFIX;
pub use simfs::{FaultOp, SimFs};
pub use snapshot::SNAPSHOT_FILE;

/// Figures an engine reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Keys indexed (values and tombstones).
    pub keys: u64,
    /// Bytes of records that are the newest version of their key.
    pub live_bytes: u64,
    /// Bytes of superseded records still on disk, reclaimable by compaction.
    pub dead_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Records read back at open.
    pub records_recovered: u64,
    /// Records cut off a torn tail at open.
    pub records_truncated: u64,
    /// Corrupt records skipped at open (never served).
    pub records_skipped: u64,
}

/// A key-value store of versioned entries with last-write-wins semantics.
///
/// Implementations are internally synchronised: every method takes `&self` and may be called
/// from many threads at once.
pub trait Engine: Send + Sync + 'static {
    /// Stores `entry` under `key` if its version is newer than the stored one. When this returns
    /// `Ok`, the entry is as durable as the engine's fsync policy promises.
    fn apply(&self, key: &str, entry: Entry) -> Result<Applied, StorageError>;

    /// Applies many entries; under fsync `always` they share one fsync. Results are in order.
    fn apply_batch(&self, batch: Vec<(String, Entry)>) -> Result<Vec<Applied>, StorageError> {
        batch.into_iter().map(|(k, e)| self.apply(&k, e)).collect()
    }

    /// The stored entry for `key` exactly as kept: values, tombstones and expired values alike.
    fn get_entry(&self, key: &str) -> Result<Option<Entry>, StorageError>;

    /// The live value of `key` at `now_ms`: `None` when absent, deleted or expired.
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Entry>, StorageError> {
        Ok(self.get_entry(key)?.filter(|e| e.is_live(now_ms)))
    }

    /// The stored version of `key` without reading its value (index only).
    fn version_of(&self, key: &str) -> Option<Version>;

    /// Every stored key (values and tombstones), in no particular order.
    fn keys(&self) -> Vec<String>;

    /// Calls `f` with the stored version of `key` while no change to `key` can interleave
    /// (under the lock its changes are made and observed under).
    fn with_version(&self, key: &str, f: &mut dyn FnMut(Option<Version>));

    /// Attaches the observer told of every later change of a stored version (see
    /// [`ChangeObserver`]); false when one is attached already.
    fn attach_observer(&self, observer: std::sync::Arc<dyn ChangeObserver>) -> bool;

    /// Physically forgets `key` if its stored version is at most `up_to` (rebalancing hands a
    /// range to its new owners, then drops it here). A newer version is kept. Returns whether
    /// something was removed.
    fn remove(&self, key: &str, up_to: Version) -> Result<bool, StorageError>;

    /// The highest version ever applied (for the HLC's floor at restart).
    fn max_version(&self) -> Version;

    /// Makes everything applied so far durable, whatever the fsync policy.
    fn flush(&self) -> Result<(), StorageError>;

    /// Rewrites sealed data keeping only live, newest entries (no-op for `Memory`); every
    /// tombstone and expired value past the grace period goes.
    fn compact(&self, now_ms: u64) -> Result<(), StorageError> {
        self.compact_with(now_ms, &AfterGrace)
    }

    /// [`Engine::compact`], dropping a tombstone or expired value past the grace period only
    /// when `policy` allows it.
    fn compact_with(&self, now_ms: u64, policy: &dyn CollectPolicy) -> Result<(), StorageError>;

    /// Writes a snapshot of the index so the next open need not replay everything (no-op for
    /// `Memory`).
    fn snapshot(&self) -> Result<(), StorageError>;

    /// Figures about the engine.
    fn stats(&self) -> StorageStats;
}
