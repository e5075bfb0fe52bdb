//! The in-memory engine: a sharded map. It defines the reference semantics the durable engine
//! is tested against, and backs unit tests of the layers above. Nothing survives a restart.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{Applied, Engine, Entry, StorageError, StorageStats, Version};

/// Shards cut lock contention between concurrent writers (a power of two).
const SHARDS: usize = 64;

/// An in-memory [`Engine`].
#[derive(Debug)]
pub struct Memory {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
    max_version: Mutex<Version>,
    dead_bytes: AtomicU64,
    observer: super::ObserverSlot,
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

impl Memory {
    /// An empty engine.
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_version: Mutex::new(Version::default()),
            dead_bytes: AtomicU64::new(0),
            observer: super::ObserverSlot::default(),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Entry>> {
        let h = kvstore_proto::ring::fnv1a64(key.as_bytes()) as usize;
        // A poisoned shard still holds consistent entries (each insert is one operation).
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

fn record_bytes(key: &str, e: &Entry) -> u64 {
    (key.len() + e.value.len()) as u64
}

impl Engine for Memory {
    fn apply(&self, key: &str, entry: Entry) -> Result<Applied, StorageError> {
        let version = entry.version;
        {
            let mut shard = self.shard(key);
            match shard.get_mut(key) {
                Some(current) if current.version >= entry.version => return Ok(Applied::Stale),
                Some(current) => {
                    self.dead_bytes
                        .fetch_add(record_bytes(key, current), Ordering::Relaxed);
                    let old = current.version;
                    *current = entry;
                    self.observer.notify(key, Some(old), Some(version));
                }
                None => {
                    shard.insert(key.to_owned(), entry);
                    self.observer.notify(key, None, Some(version));
                }
            }
        }
        let mut max = self.max_version.lock().unwrap_or_else(|p| p.into_inner());
        *max = (*max).max(version);
        Ok(Applied::Stored)
    }

    fn get_entry(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        Ok(self.shard(key).get(key).cloned())
    }

    fn version_of(&self, key: &str) -> Option<Version> {
        self.shard(key).get(key).map(|e| e.version)
    }

    fn with_version(&self, key: &str, f: &mut dyn FnMut(Option<Version>)) {
        let shard = self.shard(key);
        f(shard.get(key).map(|e| e.version));
    }

    fn attach_observer(&self, observer: std::sync::Arc<dyn super::ChangeObserver>) -> bool {
        self.observer.attach(observer)
    }

    fn keys(&self) -> Vec<String> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn remove(&self, key: &str, up_to: Version) -> Result<bool, StorageError> {
        let mut shard = self.shard(key);
        match shard.get(key) {
            Some(e) if e.version <= up_to => {
                let old = e.version;
                shard.remove(key);
                self.observer.notify(key, Some(old), None);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn max_version(&self) -> Version {
        *self.max_version.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn compact_with(
        &self,
        _now_ms: u64,
        _policy: &dyn super::CollectPolicy,
    ) -> Result<(), StorageError> {
        self.dead_bytes.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn stats(&self) -> StorageStats {
        let mut stats = StorageStats {
            dead_bytes: self.dead_bytes.load(Ordering::Relaxed),
            ..StorageStats::default()
        };
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            stats.keys += s.len() as u64;
            stats.live_bytes += s.iter().map(|(k, e)| record_bytes(k, e)).sum::<u64>();
        }
        stats
    }
}
