//! Index snapshots: the whole index written to one file so reopening does not replay every
//! byte of the log.
//!
//! A snapshot is a consistent cut: it lists every segment with its length at the cut and the
//! index entries pointing below those lengths. Writers keep going while it is taken; records
//! appended after the cut are not in it and are replayed at open, which lands on the same
//! index because replay applies them in log order on top of the state at the cut (removal
//! records included). The active segment is fsynced before the snapshot points at it.
//!
//! Layout, little-endian: `KVSNAP01`; segment count (u32) then per segment base (u64), sub (u32),
//! length (u64); the floor version (u64 hlc, u32 node); entry count (u64) then per entry segment
//! number in the list (u32), offset (u64), record length (u32), flags (u8, bit 0 tombstone),
//! hlc (u64), node (u32), expiry (u64), key length (u32), key; finally the CRC32C of everything
//! before it (u32). Written to `snapshot.tmp`, fsynced, renamed over `snapshot`, directory
//! fsynced. A snapshot failing any check is reported [`Loaded::Broken`]; one whose segments no
//! longer exist as listed is [`Loaded::Stale`] (a crash during compaction) and simply unused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kvstore_proto::Version;

use super::StorageError;
use super::config::LogConfig;
use super::index::{Index, Loc};
use super::inner::{Inner, lock};
use super::io::TMP_SUFFIX;
use super::segment::{SegId, Segment};

/// File name of the snapshot in the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot";
const MAGIC: &[u8; 8] = b"KVSNAP01";

/// What loading a snapshot gave.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The index was filled; replay each listed segment from its listed length and every
    /// other segment from the start.
    Used {
        floor: Version,
        covered: BTreeMap<SegId, u64>,
    },
    /// It does not match the segments on disk; replay everything.
    Stale(String),
    /// It failed a check; set it aside and replay everything.
    Broken(String),
}

/// Writes a snapshot of the index. The caller holds the maintenance lock.
pub(crate) fn write(inner: &Inner) -> Result<(), StorageError> {
    inner.commit.check()?;
    let (active, cut_len) = {
        let w = lock(&inner.writer);
        (w.active.clone(), w.len)
    };
    if let Err(e) = active.file.sync_data() {
        inner
            .commit
            .poison(active.path.clone(), format!("fdatasync failed: {e}"));
        return inner.commit.check();
    }
    let segs: Vec<Arc<Segment>> = lock(&inner.segments)
        .values()
        .filter(|s| s.id <= active.id)
        .cloned()
        .collect();

    let mut out = Vec::with_capacity(64 + segs.len() * 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(segs.len() as u32).to_le_bytes());
    let mut number = HashMap::with_capacity(segs.len());
    for (i, seg) in segs.iter().enumerate() {
        let len = if seg.id == active.id {
            cut_len
        } else {
            seg.file
                .len()
                .map_err(|e| StorageError::from_io(&seg.path, e))?
        };
        out.extend_from_slice(&seg.id.base.to_le_bytes());
        out.extend_from_slice(&seg.id.sub.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        number.insert(seg.id, i as u32);
    }
    let count_at = out.len() + 12;
    let floor = log_max_version(inner);
    out.extend_from_slice(&floor.hlc.to_le_bytes());
    out.extend_from_slice(&floor.node.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let mut count = 0u64;
    for i in 0..inner.index.shards() {
        let shard = inner.index.lock_shard(i);
        for (key, loc) in &shard.map {
            let id = loc.seg.id;
            let included = id < active.id || (id == active.id && loc.offset < cut_len);
            let Some(&n) = number.get(&id).filter(|_| included) else {
                continue;
            };
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&loc.offset.to_le_bytes());
            out.extend_from_slice(&loc.len.to_le_bytes());
            out.push(u8::from(loc.tombstone));
            out.extend_from_slice(&loc.version.hlc.to_le_bytes());
            out.extend_from_slice(&loc.version.node.to_le_bytes());
            out.extend_from_slice(&loc.expires_at_ms.to_le_bytes());
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            count += 1;
        }
    }
    out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    replace_file(inner, SNAPSHOT_FILE, &out)
}

pub(crate) fn log_max_version(inner: &Inner) -> Version {
    let floor = *lock(&inner.floor);
    (0..inner.index.shards())
        .map(|i| inner.index.lock_shard(i).max_version)
        .fold(floor, Version::max)
}

/// Atomically replaces `name` in the data directory with `data`: temp file, fsync, rename,
/// directory fsync. A failed fsync poisons the engine.
pub(crate) fn replace_file(inner: &Inner, name: &str, data: &[u8]) -> Result<(), StorageError> {
    let cfg = &inner.cfg;
    let fs = &cfg.fs;
    let tmp = cfg.dir.join(format!("{name}{TMP_SUFFIX}"));
    let dst = cfg.dir.join(name);
    let io = |p: &std::path::Path, e| StorageError::from_io(p, e);
    let file = fs.open(&tmp, true).map_err(|e| io(&tmp, e))?;
    let written = file
        .set_len(0)
        .and_then(|()| file.write_all_at(data, 0))
        .map_err(|e| io(&tmp, e));
    if let Err(e) = written {
        let _ = fs.remove(&tmp);
        return Err(e);
    }
    if let Err(e) = file.sync_data() {
        inner
            .commit
            .poison(tmp.clone(), format!("fdatasync failed: {e}"));
        return Err(io(&tmp, e));
    }
    fs.rename(&tmp, &dst).map_err(|e| io(&tmp, e))?;
    if let Err(e) = fs.sync_dir(&cfg.dir) {
        inner
            .commit
            .poison(cfg.dir.clone(), format!("directory fsync failed: {e}"));
        return Err(io(&cfg.dir, e));
    }
    Ok(())
}

/// A little-endian reader over the snapshot's bytes; every read is bounds-checked.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.b.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Loads the snapshot into `index` (empty on entry) if it is valid for `segments`.
pub(crate) fn load(
    cfg: &LogConfig,
    segments: &BTreeMap<SegId, Arc<Segment>>,
    index: &Index,
) -> Result<Loaded, StorageError> {
    let path = cfg.dir.join(SNAPSHOT_FILE);
    let io = |e| StorageError::from_io(&path, e);
    let file = cfg.fs.open(&path, false).map_err(io)?;
    let len = file.len().map_err(io)? as usize;
    if len < MAGIC.len() + 4 {
        return Ok(Loaded::Broken(format!("{len} bytes is too short")));
    }
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0).map_err(io)?;
    let (body, trailer) = buf.split_at(len - 4);
    if crc32c::crc32c(body).to_le_bytes() != trailer {
        return Ok(Loaded::Broken("checksum mismatch".into()));
    }
    if &body[..MAGIC.len()] != MAGIC {
        return Ok(Loaded::Broken("bad magic".into()));
    }
    let mut c = Cursor {
        b: body,
        at: MAGIC.len(),
    };
    let Some(listed) = read_segments(&mut c) else {
        return Ok(Loaded::Broken("truncated segment list".into()));
    };
    let mut segs = Vec::with_capacity(listed.len());
    for &(id, seg_len) in &listed {
        match segments.get(&id) {
            Some(seg) if seg.file.len().map_err(io)? >= seg_len => segs.push(seg.clone()),
            _ => {
                return Ok(Loaded::Stale(format!(
                    "segment {} missing or short",
                    id.file_name()
                )));
            }
        }
    }
    if let Some(&(last, _)) = listed.last() {
        let listed_ids: std::collections::HashSet<SegId> =
            listed.iter().map(|(id, _)| *id).collect();
        if let Some(extra) = segments
            .keys()
            .find(|id| **id < last && !listed_ids.contains(id))
        {
            return Ok(Loaded::Stale(format!(
                "segment {} is not in the snapshot",
                extra.file_name()
            )));
        }
    }
    let (Some(hlc), Some(node)) = (c.u64(), c.u32()) else {
        return Ok(Loaded::Broken("truncated floor".into()));
    };
    let entries_at = c.at;
    // Validate every entry before touching the index, then fill it.
    if let Err(reason) = read_entries(&mut c, &listed, &segs, |_, _| {}) {
        return Ok(Loaded::Broken(reason));
    }
    let mut c = Cursor {
        b: body,
        at: entries_at,
    };
    read_entries(&mut c, &listed, &segs, |key, loc| {
        index.lock(key).offer(key, loc);
    })
    .map_err(|reason| StorageError::Config(format!("snapshot changed while loading: {reason}")))?;
    Ok(Loaded::Used {
        floor: Version::new(hlc, node),
        covered: listed.into_iter().collect(),
    })
}

fn read_segments(c: &mut Cursor<'_>) -> Option<Vec<(SegId, u64)>> {
    let n = c.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(c.b.len() / 20));
    for _ in 0..n {
        let id = SegId {
            base: c.u64()?,
            sub: c.u32()?,
        };
        out.push((id, c.u64()?));
    }
    Some(out)
}

fn read_entries(
    c: &mut Cursor<'_>,
    listed: &[(SegId, u64)],
    segs: &[Arc<Segment>],
    mut f: impl FnMut(&str, Loc),
) -> Result<(), String> {
    let short = || "truncated entry".to_string();
    let count = c.u64().ok_or_else(short)?;
    for i in 0..count {
        let n = c.u32().ok_or_else(short)? as usize;
        let offset = c.u64().ok_or_else(short)?;
        let len = c.u32().ok_or_else(short)?;
        let flags = c.u8().ok_or_else(short)?;
        let hlc = c.u64().ok_or_else(short)?;
        let node = c.u32().ok_or_else(short)?;
        let expires_at_ms = c.u64().ok_or_else(short)?;
        let key_len = c.u32().ok_or_else(short)? as usize;
        let key = c.take(key_len).ok_or_else(short)?;
        let key = std::str::from_utf8(key).map_err(|_| format!("entry {i}: key not UTF-8"))?;
        let Some(&(_, seg_len)) = listed.get(n) else {
            return Err(format!("entry {i}: segment number {n} out of range"));
        };
        if offset.saturating_add(u64::from(len)) > seg_len || flags > 1 || key.is_empty() {
            return Err(format!("entry {i}: out of bounds"));
        }
        f(
            key,
            Loc {
                seg: segs[n].clone(),
                offset,
                len,
                version: Version::new(hlc, node),
                tombstone: flags == 1,
                expires_at_ms,
                cached: None,
            },
        );
    }
    if c.at != c.b.len() {
        return Err("trailing bytes".into());
    }
    Ok(())
}
