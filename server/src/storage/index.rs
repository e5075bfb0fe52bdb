//! The in-memory index of the durable engine: key -> where its newest record lives.
//!
//! Sharded by key hash so concurrent readers and writers rarely meet on a lock; each shard is a
//! `std::sync::Mutex` held for a short section (a map operation, or an append of one small
//! record while deciding LWW, which must be atomic with the index update). Every entry carries
//! the version, tombstone flag and expiry, so LWW decisions, `version_of` and tombstone reads
//! need no disk access. The index does no I/O and knows nothing of fsync.
//!
//! Small values may be kept in their entry ([`Loc::cached`]) so that reading them costs no
//! system call: each shard has a byte budget (the configured cache size split evenly), a value
//! is cached only while the budget allows, and replacing or forgetting an entry returns its
//! bytes to the budget. There is no eviction: the budget bounds memory, and a workload that
//! overwrites keys keeps recycling it. The benchmarks show why it is worth it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kvstore_proto::Version;

use super::segment::Segment;

/// Shards of the index (a power of two): enough that two to a few dozen threads rarely collide.
pub const SHARDS: usize = 256;

/// Where the newest record of a key lives, and what the index must know without reading it.
#[derive(Debug, Clone)]
pub struct Loc {
    /// The segment holding the record.
    pub seg: Arc<Segment>,
    /// The record's byte offset in the segment.
    pub offset: u64,
    /// The whole record's length in bytes.
    pub len: u32,
    /// The record's version.
    pub version: Version,
    /// Whether the record is a tombstone.
    pub tombstone: bool,
    /// Expiry in ms since the epoch, 0 = never.
    pub expires_at_ms: u64,
    /// The value itself, when small enough to be cached (see the module documentation).
    pub cached: Option<Bytes>,
}

impl Loc {
    /// Whether `other` is the very same record.
    pub fn same_record(&self, other: &Loc) -> bool {
        Arc::ptr_eq(&self.seg, &other.seg) && self.offset == other.offset
    }
}

/// One shard: its map plus figures kept under the same lock.
#[derive(Debug, Default)]
pub struct Shard {
    /// Key -> newest record.
    pub map: HashMap<Box<str>, Loc>,
    /// Bytes of the records the map points at.
    pub live_bytes: u64,
    /// Highest version ever stored through this shard.
    pub max_version: Version,
    /// Bytes of cached values in this shard.
    pub cache_used: u64,
    /// Most bytes of cached values this shard may hold.
    pub cache_budget: u64,
}

impl Shard {
    /// Keeps `loc`'s cached value only if the budget allows, and charges it.
    fn admit(&mut self, loc: &mut Loc) {
        if let Some(v) = &loc.cached {
            let n = v.len() as u64;
            if self.cache_used + n <= self.cache_budget {
                self.cache_used += n;
            } else {
                loc.cached = None;
            }
        }
    }

    /// Returns the budget `loc`'s cached value used.
    fn release(&mut self, loc: &Loc) {
        if let Some(v) = &loc.cached {
            self.cache_used -= v.len() as u64;
        }
    }

    /// Caches `value` in `key`'s entry if there is room (after a read from disk).
    pub fn cache(&mut self, key: &str, value: &Bytes) {
        let n = value.len() as u64;
        if self.cache_used + n > self.cache_budget {
            return;
        }
        if let Some(loc) = self.map.get_mut(key) {
            if loc.cached.is_none() {
                loc.cached = Some(Bytes::copy_from_slice(value));
                self.cache_used += n;
            }
        }
    }

    /// Whether a record with `version` would be newer than what `key` holds.
    pub fn is_newer(&self, key: &str, version: Version) -> bool {
        self.map.get(key).is_none_or(|cur| cur.version < version)
    }

    /// Points `key` at `loc` (the caller checked it is newer); returns the replaced record.
    pub fn put(&mut self, key: &str, mut loc: Loc) -> Option<Loc> {
        self.admit(&mut loc);
        self.max_version = self.max_version.max(loc.version);
        self.live_bytes += u64::from(loc.len);
        let old = match self.map.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, loc)),
            None => {
                self.map.insert(key.into(), loc);
                None
            }
        };
        if let Some(old) = &old {
            self.live_bytes -= u64::from(old.len);
            self.release(old);
        }
        old
    }

    /// Applies `loc` if newer (replay); returns whether it was.
    pub fn offer(&mut self, key: &str, loc: Loc) -> bool {
        if self.is_newer(key, loc.version) {
            self.put(key, loc);
            true
        } else {
            false
        }
    }

    /// Forgets `key` if its version is at most `up_to`; returns the removed record.
    pub fn remove_up_to(&mut self, key: &str, up_to: Version) -> Option<Loc> {
        if self.map.get(key).is_some_and(|cur| cur.version <= up_to) {
            let old = self.map.remove(key)?;
            self.live_bytes -= u64::from(old.len);
            self.release(&old);
            Some(old)
        } else {
            None
        }
    }

    /// Forgets `key` only if it still points at the very record `expected` (compaction).
    pub fn remove_if_same(&mut self, key: &str, expected: &Loc) -> bool {
        if self
            .map
            .get(key)
            .is_some_and(|cur| cur.same_record(expected))
        {
            if let Some(old) = self.map.remove(key) {
                self.live_bytes -= u64::from(old.len);
                self.release(&old);
            }
            true
        } else {
            false
        }
    }

    /// Moves `key` to `moved` only if it still points at `expected` (compaction).
    /// The cached value moves along with the entry.
    pub fn relocate_if_same(&mut self, key: &str, expected: &Loc, moved: Loc) -> bool {
        match self.map.get_mut(key) {
            Some(cur) if cur.same_record(expected) => {
                self.live_bytes = self.live_bytes - u64::from(cur.len) + u64::from(moved.len);
                let cached = cur.cached.take();
                *cur = Loc { cached, ..moved };
                true
            }
            _ => false,
        }
    }
}

/// The sharded index.
#[derive(Debug)]
pub struct Index {
    shards: Box<[Mutex<Shard>]>,
}

impl Index {
    /// An empty index that caches values up to `cache_bytes` in total.
    pub fn new(cache_bytes: u64) -> Self {
        let cache_budget = cache_bytes / SHARDS as u64;
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        cache_budget,
                        ..Shard::default()
                    })
                })
                .collect(),
        }
    }

    /// The shard number of `key`.
    pub fn shard_of(key: &str) -> usize {
        kvstore_proto::ring::fnv1a64(key.as_bytes()) as usize & (SHARDS - 1)
    }

    /// Locks the shard holding `key`.
    pub fn lock(&self, key: &str) -> MutexGuard<'_, Shard> {
        self.lock_shard(Self::shard_of(key))
    }

    /// Locks shard `i`. A poisoned shard is still consistent: each map change is one operation.
    pub fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}
