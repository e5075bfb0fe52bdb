//! The log engine's shared state ([`Inner`]): the index, the active segment and its writer,
//! the sealed segments, the group commit, and the append / read / LWW-store steps every
//! operation is made of.
//!
//! It sits under everything else in the engine: the [`super::log::Log`] front, recovery
//! ([`super::recovery`] builds an `Inner` from the directory), snapshots and compaction all
//! work on an `Inner`, and it imports none of them. Only `Log` calls recovery, snapshot and
//! compaction, so the engine's modules form one-way layers:
//! `log` -> `compaction` -> `snapshot` / `recovery` -> `inner` -> `segment`, `index`, `commit`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kvstore_proto::Version;

use super::commit::{Commit, SyncTarget};
use super::config::{FsyncPolicy, LogConfig};
use super::index::{Index, Loc};
use super::io::DirLock;
use super::record;
use super::segment::{SegId, Segment};
use super::{Applied, Entry, StorageError};
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
    /// Told of every change of a key's version, under the key's index shard lock.
    pub observer: super::ObserverSlot,
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

impl Inner {
    pub(super) fn check_entry(&self, key: &str, value_len: usize) -> Result<(), StorageError> {
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
    pub(super) fn sync_target(&self) -> SyncTarget<'_> {
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
    pub(super) fn store(&self, key: &str, entry: &Entry) -> Result<(Applied, u64), StorageError> {
        self.check_entry(key, entry.value.len())?;
        self.commit.check()?;
        let mut rec = Vec::new();
        record::encode_entry(&mut rec, key, entry);
        let mut shard = self.index.lock(key);
        if !shard.is_newer(key, entry.version) {
            return Ok((Applied::Stale, 0));
        }
        let (seg, offset, seq) = self.append(&rec)?;
        let old = shard.put(
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
        self.observer
            .notify(key, old.map(|l| l.version), Some(entry.version));
        Ok((Applied::Stored, seq))
    }

    pub(super) fn durable_if_always(&self, seq: u64) -> Result<(), StorageError> {
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
    pub(super) fn lookup(
        &self,
        key: &str,
        live_at: Option<u64>,
    ) -> Result<Option<Entry>, StorageError> {
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
