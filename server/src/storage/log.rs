//! [`Log`]: the durable, log-structured [`Engine`] (Bitcask-like).
//!
//! Writes are framed records ([`super::record`]) appended to the active segment with a
//! positional write while the key's index shard is locked, so the LWW decision and the index
//! update are atomic per key; reads find the record through the in-memory index
//! ([`super::index`]) and fetch it with a positional read, checking its CRC. Durability follows
//! the [`FsyncPolicy`]: `always` waits for a group commit ([`super::commit`]), `interval` has a
//! background thread sync, `never` leaves it to the OS. Opening, snapshots and compaction live
//! in [`super::recovery`], [`super::snapshot`] and [`super::compaction`].
//!
//! A write is visible to readers as soon as it is appended, before its fsync; it is
//! acknowledged (its `apply` returns) only after the fsync its policy asks for. A write whose
//! fsync fails was never acknowledged, but a reader may have seen it: the same unknown outcome
//! a client gets from a timed-out request.
//!
//! Not here: any cluster logic (the engine stores what it is given), caching of values (reads
//! of small values are one `pread`; see the benchmarks before adding a cache).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use kvstore_proto::Version;

use super::commit::{Commit, SyncTarget};
use super::config::{FsyncPolicy, LogConfig};
use super::index::{Index, Loc};
use super::io::DirLock;
use super::record::{self, Kind};
use super::segment::{SegId, Segment};
use super::{Applied, Engine, Entry, StorageError, StorageStats};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Records up to this size are read while their index shard stays locked (cheaper than
/// cloning the location); larger ones are read after releasing it.
const READ_UNDER_LOCK_MAX: u32 = 4096;

/// The appending side: the active segment and how far it is written.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The segment appends go to.
    pub active: Arc<Segment>,
    /// Its length in bytes (where the next record goes).
    pub len: u64,
    /// Sequence number of the last appended record.
    pub seq: u64,
}

/// Counts from the last open.
#[derive(Debug, Default)]
pub(crate) struct OpenCounts {
    pub recovered: AtomicU64,
    pub truncated: AtomicU64,
    pub skipped: AtomicU64,
}

/// The engine's shared state (the flusher thread holds it too).
#[derive(Debug)]
pub(crate) struct Inner {
    pub cfg: LogConfig,
    pub index: Index,
    pub writer: Mutex<Writer>,
    pub commit: Commit,
    /// Every live segment, in replay order.
    pub segments: Mutex<BTreeMap<SegId, Arc<Segment>>>,
    /// Bytes in all live segments.
    pub total_bytes: AtomicU64,
    /// Highest version known from markers and snapshots (the index shards know the rest).
    pub floor: Mutex<Version>,
    /// Serialises snapshots and compactions.
    pub maintenance: Mutex<()>,
    pub counts: OpenCounts,
    /// Latency of every segment fdatasync (group commit and sealing), for the metrics.
    pub fsync_latency: crate::instruments::Histogram,
    /// Compactions run to completion since open.
    pub compactions: AtomicU64,
    pub _lock: Box<dyn DirLock>,
}

/// The durable log-structured engine. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates an empty segment file and makes its name durable; a failed directory fsync
/// poisons `commit`.
pub(crate) fn create_segment(
    cfg: &LogConfig,
    commit: &Commit,
    id: SegId,
) -> Result<Arc<Segment>, StorageError> {
    let dir = &cfg.dir;
    let path = dir.join(id.file_name());
    let file = cfg
        .fs
        .open(&path, true)
        .map_err(|e| StorageError::from_io(&path, e))?;
    if let Err(e) = cfg.fs.sync_dir(dir) {
        commit.poison(dir.clone(), format!("directory fsync failed: {e}"));
        return Err(StorageError::from_io(dir, e));
    }
    Ok(Arc::new(Segment::new(dir, id, file)))
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

impl Inner {
    fn check_entry(&self, key: &str, value_len: usize) -> Result<(), StorageError> {
        if key.is_empty() {
            return Err(StorageError::Invalid {
                field: "key",
                reason: "must not be empty".into(),
            });
        }
        if key.len() > self.cfg.max_key_bytes {
            return Err(StorageError::Invalid {
                field: "key",
                reason: format!(
                    "{} bytes exceeds the limit of {} bytes",
                    key.len(),
                    self.cfg.max_key_bytes
                ),
            });
        }
        if value_len > self.cfg.max_value_bytes {
            return Err(StorageError::Invalid {
                field: "value",
                reason: format!(
                    "{value_len} bytes exceeds the limit of {} bytes",
                    self.cfg.max_value_bytes
                ),
            });
        }
        Ok(())
    }

    /// Appends one encoded record to the active segment, sealing it first when full.
    /// Returns where it went and its sequence number. A failed write is cut back off the file
    /// (or, if even that fails, the engine is poisoned) and never acknowledged.
    pub fn append(&self, rec: &[u8]) -> Result<(Arc<Segment>, u64, u64), StorageError> {
        let mut w = lock(&self.writer);
        if w.len > 0 && w.len + rec.len() as u64 > self.cfg.segment_bytes {
            self.rotate(&mut w)?;
        }
        let offset = w.len;
        if let Err(e) = w.active.file.write_all_at(rec, offset) {
            let err = StorageError::from_io(&w.active.path, e);
            if let Err(cut) = w.active.file.set_len(offset) {
                self.commit.poison(
                    w.active.path.clone(),
                    format!("could not cut a failed write ({err}) back off: {cut}"),
                );
            }
            return Err(err);
        }
        w.len += rec.len() as u64;
        w.seq += 1;
        self.total_bytes
            .fetch_add(rec.len() as u64, Ordering::Relaxed);
        Ok((w.active.clone(), offset, w.seq))
    }

    /// Seals the active segment (synced, so group commit may count it durable) and starts the
    /// next one, whose directory entry is made durable before any record goes in it.
    pub fn rotate(&self, w: &mut Writer) -> Result<(), StorageError> {
        let t = std::time::Instant::now();
        let synced = w.active.file.sync_data();
        self.fsync_latency.observe(t.elapsed());
        if let Err(e) = synced {
            self.commit
                .poison(w.active.path.clone(), format!("fdatasync failed: {e}"));
            return self.commit.check();
        }
        self.commit.mark_synced(w.seq);
        let id = SegId {
            base: w.active.id.base + 1,
            sub: 0,
        };
        let seg = self.create_segment(id)?;
        lock(&self.segments).insert(id, seg.clone());
        w.active = seg;
        w.len = 0;
        Ok(())
    }

    /// Creates an empty segment file and makes its name durable.
    pub fn create_segment(&self, id: SegId) -> Result<Arc<Segment>, StorageError> {
        create_segment(&self.cfg, &self.commit, id)
    }

    /// What a group-commit leader syncs: the active segment, covering every record appended
    /// so far (sealed segments were synced when sealed).
    fn sync_target(&self) -> SyncTarget<'_> {
        let (seg, covered) = {
            let w = lock(&self.writer);
            (w.active.clone(), w.seq)
        };
        Box::new(move || {
            let t = std::time::Instant::now();
            let r = seg.file.sync_data().map_err(|e| (seg.path.clone(), e));
            self.fsync_latency.observe(t.elapsed());
            (covered, r)
        })
    }

    /// Waits until record `seq` is durable.
    pub fn wait_durable(&self, seq: u64) -> Result<(), StorageError> {
        self.commit.wait_durable(seq, || self.sync_target())
    }

    /// Makes everything appended so far durable.
    pub fn sync_all(&self) -> Result<(), StorageError> {
        let seq = lock(&self.writer).seq;
        self.wait_durable(seq)
    }

    /// Stores `entry` if newer; returns the outcome and the record's sequence number.
    fn store(&self, key: &str, entry: &Entry) -> Result<(Applied, u64), StorageError> {
        self.check_entry(key, entry.value.len())?;
        self.commit.check()?;
        let mut rec = Vec::new();
        record::encode_entry(&mut rec, key, entry);
        let mut shard = self.index.lock(key);
        if !shard.is_newer(key, entry.version) {
            return Ok((Applied::Stale, 0));
        }
        let (seg, offset, seq) = self.append(&rec)?;
        shard.put(
            key,
            Loc {
                seg,
                offset,
                len: rec.len() as u32,
                version: entry.version,
                tombstone: entry.tombstone,
                expires_at_ms: if entry.tombstone {
                    0
                } else {
                    entry.expires_at_ms
                },
                cached: (!entry.tombstone && entry.value.len() <= self.cfg.cache_value_max_bytes)
                    .then(|| Bytes::copy_from_slice(&entry.value)),
            },
        );
        Ok((Applied::Stored, seq))
    }

    fn durable_if_always(&self, seq: u64) -> Result<(), StorageError> {
        if seq > 0 && self.cfg.fsync == FsyncPolicy::Always {
            self.wait_durable(seq)?;
        }
        Ok(())
    }

    /// Reads and checks the record `loc` points at.
    pub fn read_entry(&self, key: &str, loc: &Loc) -> Result<Entry, StorageError> {
        let corrupt = || StorageError::Corrupt {
            path: loc.seg.path.clone(),
            offset: loc.offset,
        };
        let bytes = loc.seg.read(loc.offset, loc.len as usize)?;
        let parsed = record::parse(&bytes).ok_or_else(corrupt)?;
        if parsed.key != key || parsed.header.version != loc.version {
            return Err(corrupt());
        }
        record::entry_of(&bytes).ok_or_else(corrupt)
    }

    /// The stored entry for `key`; with `live_at`, `None` for tombstones and entries expired at
    /// that time, decided from the index before any disk read.
    fn lookup(&self, key: &str, live_at: Option<u64>) -> Result<Option<Entry>, StorageError> {
        let mut shard = self.index.lock(key);
        let Some(loc) = shard.map.get(key) else {
            return Ok(None);
        };
        if let Some(now) = live_at {
            if loc.tombstone || (loc.expires_at_ms != 0 && loc.expires_at_ms <= now) {
                return Ok(None);
            }
        }
        if loc.tombstone {
            return Ok(Some(Entry::tombstone(loc.version)));
        }
        if let Some(value) = &loc.cached {
            return Ok(Some(Entry {
                value: value.clone(),
                version: loc.version,
                tombstone: false,
                expires_at_ms: loc.expires_at_ms,
            }));
        }
        if loc.len > READ_UNDER_LOCK_MAX {
            let loc = loc.clone();
            drop(shard);
            return self.read_entry(key, &loc).map(Some);
        }
        let entry = self.read_entry(key, loc)?;
        if entry.value.len() <= self.cfg.cache_value_max_bytes {
            shard.cache(key, &entry.value);
        }
        Ok(Some(entry))
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
            shard.remove_up_to(key, up_to);
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

    fn compact(&self, now_ms: u64) -> Result<(), StorageError> {
        super::compaction::compact(&self.inner, now_ms)?;
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
