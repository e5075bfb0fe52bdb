//! [`Log`]: the durable, log-structured [`Engine`] (Bitcask-like).
//!
//! Writes are framed records ([`super::record`]) appended to the active segment with a
//! positional write while the key's index shard is locked, so the LWW decision and the index
//! update are atomic per key; reads find the record through the in-memory index
//! ([`super::index`]) and fetch it with a positional read, checking its CRC. Durability follows
//! the [`FsyncPolicy`]: `always` waits for a group commit ([`super::commit`]), `interval` has a
//! background thread sync, `never` leaves it to the OS. Opening, snapshots and compaction live
//! in [`super::recovery`], [`super::snapshot`] and [`super::compaction`], which this front
//! alone calls; the state they all share is [`super::inner`]'s.
//!
//! A write is visible to readers as soon as it is appended, before its fsync; it is
//! acknowledged (its `apply` returns) only after the fsync its policy asks for. A write whose
//! fsync fails was never acknowledged, but a reader may have seen it: the same unknown outcome
//! a client gets from a timed-out request.
//!
//! Not here: any cluster logic (the engine stores what it is given), caching of values (reads
//! of small values are one `pread`; see the benchmarks before adding a cache).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use kvstore_proto::Version;

use super::config::{FsyncPolicy, LogConfig};
use super::inner::{Inner, lock};
use super::record::{self, Kind};
use super::{Applied, Engine, Entry, StorageError, StorageStats};

/// The durable log-structured engine. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Log {
    /// Opens (creating if needed) the data directory in `config`: takes its lock
    /// ([`StorageError::Locked`] if a live process holds it), loads the snapshot if it is
    /// valid, replays the log after it checking every CRC, truncates a torn tail and starts
    /// the background fsync for `interval`.
    pub fn open(config: LogConfig) -> Result<Log, StorageError> {
        let inner = Arc::new(super::recovery::open(config)?);
        let flusher = match inner.cfg.fsync {
            FsyncPolicy::Interval(every) => {
                let (tx, rx) = mpsc::channel::<()>();
                let shared = inner.clone();
                let handle = std::thread::Builder::new()
                    .name("kvstore-fsync".into())
                    .spawn(move || {
                        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                            if let Err(e) = shared.sync_all() {
                                tracing::error!(error = %e, "interval fsync failed");
                            }
                        }
                    })
                    .map_err(|source| StorageError::Io {
                        path: inner.cfg.dir.clone(),
                        source,
                    })?;
                Some((tx, handle))
            }
            FsyncPolicy::Always | FsyncPolicy::Never => None,
        };
        Ok(Log { inner, flusher })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.cfg
    }

    /// Group-commit fdatasyncs performed since open (each may cover many writes): with
    /// `always`, writes divided by this is the group-commit batching factor.
    pub fn group_syncs(&self) -> u64 {
        self.inner.commit.syncs()
    }

    /// Latency of every segment fdatasync since open.
    pub fn fsync_latency(&self) -> &crate::instruments::Histogram {
        &self.inner.fsync_latency
    }

    /// Compactions completed since open.
    pub fn compactions(&self) -> u64 {
        self.inner.compactions.load(Ordering::Relaxed)
    }

    /// Whether compaction would reclaim enough to be worth it: dead bytes above both
    /// `compaction_min_dead_bytes` and `compaction_dead_ratio` of all segment bytes.
    pub fn compaction_due(&self) -> bool {
        let s = self.stats();
        let total = s.live_bytes + s.dead_bytes;
        s.dead_bytes >= self.inner.cfg.compaction_min_dead_bytes
            && s.dead_bytes as f64 >= self.inner.cfg.compaction_dead_ratio * total as f64
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.flusher.take() {
            drop(tx);
            let _ = handle.join();
        }
        // A clean close leaves nothing un-synced, whatever the policy. Failure here only
        // means the last writes keep the durability their policy promised.
        if self.inner.commit.check().is_ok() {
            let _ = self.inner.sync_all();
        }
    }
}

impl Engine for Log {
    fn apply(&self, key: &str, entry: Entry) -> Result<Applied, StorageError> {
        let (applied, seq) = self.inner.store(key, &entry)?;
        self.inner.durable_if_always(seq)?;
        Ok(applied)
    }

    fn apply_batch(&self, batch: Vec<(String, Entry)>) -> Result<Vec<Applied>, StorageError> {
        let mut last = 0;
        let mut out = Vec::with_capacity(batch.len());
        for (key, entry) in &batch {
            let (applied, seq) = self.inner.store(key, entry)?;
            last = last.max(seq);
            out.push(applied);
        }
        self.inner.durable_if_always(last)?;
        Ok(out)
    }

    fn get_entry(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.inner.lookup(key, None)
    }

    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Entry>, StorageError> {
        self.inner.lookup(key, Some(now_ms))
    }

    fn version_of(&self, key: &str) -> Option<Version> {
        self.inner.index.lock(key).map.get(key).map(|l| l.version)
    }

    fn with_version(&self, key: &str, f: &mut dyn FnMut(Option<Version>)) {
        let shard = self.inner.index.lock(key);
        f(shard.map.get(key).map(|l| l.version));
    }

    fn attach_observer(&self, observer: std::sync::Arc<dyn super::ChangeObserver>) -> bool {
        self.inner.observer.attach(observer)
    }

    fn keys(&self) -> Vec<String> {
        let index = &self.inner.index;
        (0..index.shards())
            .flat_map(|i| {
                index
                    .lock_shard(i)
                    .map
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn remove(&self, key: &str, up_to: Version) -> Result<bool, StorageError> {
        let inner = &*self.inner;
        inner.check_entry(key, 0)?;
        inner.commit.check()?;
        let mut rec = Vec::new();
        record::encode(&mut rec, Kind::Removal, key.as_bytes(), &[], up_to, 0);
        let seq = {
            let mut shard = inner.index.lock(key);
            if shard.map.get(key).is_none_or(|l| l.version > up_to) {
                return Ok(false);
            }
            let (_, _, seq) = inner.append(&rec)?;
            if let Some(old) = shard.remove_up_to(key, up_to) {
                inner.observer.notify(key, Some(old.version), None);
            }
            seq
        };
        inner.durable_if_always(seq)?;
        Ok(true)
    }

    fn max_version(&self) -> Version {
        let index = &self.inner.index;
        let floor = *lock(&self.inner.floor);
        (0..index.shards())
            .map(|i| index.lock_shard(i).max_version)
            .fold(floor, Version::max)
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.inner.commit.check()?;
        self.inner.sync_all()
    }

    fn compact_with(
        &self,
        now_ms: u64,
        policy: &dyn super::CollectPolicy,
    ) -> Result<(), StorageError> {
        super::compaction::compact(&self.inner, now_ms, policy)?;
        self.inner.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn snapshot(&self) -> Result<(), StorageError> {
        let _m = lock(&self.inner.maintenance);
        super::snapshot::write(&self.inner)
    }

    fn stats(&self) -> StorageStats {
        let inner = &*self.inner;
        let (mut keys, mut live) = (0u64, 0u64);
        for i in 0..inner.index.shards() {
            let s = inner.index.lock_shard(i);
            keys += s.map.len() as u64;
            live += s.live_bytes;
        }
        let total = inner.total_bytes.load(Ordering::Relaxed);
        StorageStats {
            keys,
            live_bytes: live,
            dead_bytes: total.saturating_sub(live),
            segments: lock(&inner.segments).len() as u64,
            records_recovered: inner.counts.recovered.load(Ordering::Relaxed),
            records_truncated: inner.counts.truncated.load(Ordering::Relaxed),
            records_skipped: inner.counts.skipped.load(Ordering::Relaxed),
        }
    }
}
