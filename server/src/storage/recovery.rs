//! Opening a data directory: lock it, load the snapshot if it is valid, replay the log after
//! it, and pick the segment to append to.
//!
//! Replay checks every record's CRC. A corrupt record in the middle of a segment is skipped
//! (the scanner resynchronises on the next valid record) and counted; bytes after the last
//! valid record are a torn tail, cut off the file before anything is appended. Both are
//! logged with the file and offset. A snapshot that fails its checks is renamed `.broken` and
//! the log is replayed from the start; a snapshot that no longer matches the segments (a crash
//! during compaction) is ignored. Leftover temporary files are removed.
//!
//! Not here: the formats themselves ([`super::record`], [`super::snapshot`]).

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kvstore_proto::Version;

use super::StorageError;
use super::commit::Commit;
use super::config::LogConfig;
use super::index::{Index, Loc};
use super::inner::{Inner, OpenCounts, Writer, create_segment};
use super::io::TMP_SUFFIX;
use super::record::{self, Kind, Scan, Scanner};
use super::segment::{SegId, Segment};
use super::snapshot::{self, Loaded};

/// Opens the engine's state from `cfg.dir`.
pub(crate) fn open(cfg: LogConfig) -> Result<Inner, StorageError> {
    cfg.validate()?;
    let fs = cfg.fs.clone();
    let dir = cfg.dir.clone();
    let io_err = |e: io::Error| StorageError::from_io(&dir, e);
    fs.create_dir_all(&dir).map_err(io_err)?;
    let dir_lock = fs.lock_dir(&dir).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            StorageError::Locked { path: dir.clone() }
        } else {
            io_err(e)
        }
    })?;

    let names = fs.list(&dir).map_err(io_err)?;
    let mut removed_tmp = false;
    for name in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
        tracing::info!(file = %name, "removing a temporary file left by an interrupted write");
        let path = dir.join(name);
        fs.remove(&path)
            .map_err(|e| StorageError::from_io(&path, e))?;
        removed_tmp = true;
    }
    if removed_tmp {
        fs.sync_dir(&dir).map_err(io_err)?;
    }

    let mut segments = BTreeMap::new();
    for id in names.iter().filter_map(|n| SegId::parse(n)) {
        let path = dir.join(id.file_name());
        let file = fs
            .open(&path, false)
            .map_err(|e| StorageError::from_io(&path, e))?;
        segments.insert(id, Arc::new(Segment::new(&dir, id, file)));
    }

    let index = Index::new(cfg.cache_bytes);
    let counts = OpenCounts::default();
    let mut floor = Version::default();
    let mut replay_from: BTreeMap<SegId, u64> = BTreeMap::new();
    if names.iter().any(|n| n == snapshot::SNAPSHOT_FILE) {
        match snapshot::load(&cfg, &segments, &index)? {
            Loaded::Used { floor: f, covered } => {
                floor = f;
                replay_from = covered;
            }
            Loaded::Stale(reason) => {
                tracing::warn!(%reason, "snapshot does not match the segments; replaying the log");
            }
            Loaded::Broken(reason) => {
                let from = dir.join(snapshot::SNAPSHOT_FILE);
                let to = dir.join(format!("{}.broken", snapshot::SNAPSHOT_FILE));
                tracing::error!(%reason, "corrupt snapshot set aside as {}; replaying the log", to.display());
                fs.rename(&from, &to)
                    .map_err(|e| StorageError::from_io(&from, e))?;
                fs.sync_dir(&dir).map_err(io_err)?;
            }
        }
    }

    let mut total = 0;
    for seg in segments.values() {
        let from = replay_from.get(&seg.id).copied().unwrap_or(0);
        total += replay(
            seg,
            from,
            &index,
            &mut floor,
            &counts,
            cfg.cache_value_max_bytes,
        )?;
    }

    let commit = Commit::new(0);
    // Appends continue in the last segment if it is an append segment; otherwise (none yet,
    // or compaction output) a new one is started.
    let active = match segments.values().next_back() {
        Some(seg) if seg.id.sub == 0 => seg.clone(),
        last => {
            let base = last.map_or(1, |s| s.id.base + 1);
            let seg = create_segment(&cfg, &commit, SegId { base, sub: 0 })?;
            segments.insert(seg.id, seg.clone());
            seg
        }
    };
    let len = active
        .file
        .len()
        .map_err(|e| StorageError::from_io(&active.path, e))?;
    let draft = Inner {
        writer: Mutex::new(Writer {
            active,
            len,
            seq: 0,
        }),
        cfg,
        index,
        commit,
        segments: Mutex::new(segments),
        total_bytes: AtomicU64::new(total),
        floor: Mutex::new(floor),
        maintenance: Mutex::new(()),
        counts,
        fsync_latency: crate::instruments::Histogram::new(crate::instruments::FSYNC_BUCKETS),
        compactions: AtomicU64::new(0),
        _lock: dir_lock,
        observer: Default::default(),
    };
    let s = &draft.counts;
    tracing::info!(
        dir = %draft.cfg.dir.display(),
        recovered = s.recovered.load(Ordering::Relaxed),
        truncated = s.truncated.load(Ordering::Relaxed),
        skipped = s.skipped.load(Ordering::Relaxed),
        "storage opened"
    );
    Ok(draft)
}

/// The value of the record at the start of `rec`, copied, if it is small enough to cache.
fn small_value(rec: &[u8], h: record::Header, cache_max: usize) -> Option<Bytes> {
    (h.kind == Kind::Value && h.value_len <= cache_max).then(|| {
        let start = record::HEADER_LEN + h.key_len;
        Bytes::copy_from_slice(&rec[start..start + h.value_len])
    })
}

/// Replays `seg` from byte `from` into the index; returns the segment's length after any
/// torn tail was cut off.
fn replay(
    seg: &Arc<Segment>,
    from: u64,
    index: &Index,
    floor: &mut Version,
    counts: &OpenCounts,
    cache_max: usize,
) -> Result<u64, StorageError> {
    let err = |e: io::Error| StorageError::from_io(&seg.path, e);
    let len = seg.file.len().map_err(err)?;
    if from >= len {
        return Ok(len);
    }
    let mut buf = vec![0u8; (len - from) as usize];
    seg.file.read_exact_at(&mut buf, from).map_err(err)?;
    for step in Scanner::new(&buf, 0) {
        match step {
            Scan::Record(at, p) => {
                counts.recovered.fetch_add(1, Ordering::Relaxed);
                let h = p.header;
                match h.kind {
                    Kind::Value | Kind::Tombstone => {
                        let tombstone = h.kind == Kind::Tombstone;
                        index.lock(p.key).offer(
                            p.key,
                            Loc {
                                seg: seg.clone(),
                                offset: from + at as u64,
                                len: h.record_len() as u32,
                                version: h.version,
                                tombstone,
                                expires_at_ms: if tombstone { 0 } else { h.expires_at_ms },
                                cached: small_value(&buf[at..], h, cache_max),
                            },
                        );
                    }
                    Kind::Removal => {
                        index.lock(p.key).remove_up_to(p.key, h.version);
                    }
                    Kind::Marker => *floor = (*floor).max(h.version),
                }
            }
            Scan::Skipped { from: a, to: b } => {
                counts.skipped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    file = %seg.path.display(),
                    offset = from + a as u64,
                    bytes = b - a,
                    "corrupt record skipped; its data is lost on this replica"
                );
            }
            Scan::Tail(at) => {
                let cut = from + at as u64;
                counts.truncated.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    file = %seg.path.display(),
                    offset = cut,
                    bytes = len - cut,
                    "torn tail cut off"
                );
                seg.file.set_len(cut).map_err(err)?;
                seg.file.sync_data().map_err(err)?;
                return Ok(cut);
            }
        }
    }
    Ok(len)
}
