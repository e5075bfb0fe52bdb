//! Compaction: rewriting sealed segments so that only records the index still points at
//! survive, and tombstones (and expired values) older than the grace period go when the
//! caller's [`super::CollectPolicy`] allows (the node's waits for a repair of their range).
//!
//! Steps, each leaving a state that recovers to every acknowledged write if the process or the
//! machine stops right there:
//! 1. seal the active segment (writers move on to a new one and never wait for compaction);
//! 2. collect the index entries that point into sealed segments (the inputs);
//! 3. copy those records, oldest first, into output files written as `*.tmp`, each fsynced,
//!    the first starting with a version marker so the highest version survives dropped
//!    records; outputs are named `(b, s+1)`, `(b, s+2)`, ... after the last input `(b, s)`,
//!    so they replay after every input and before every later segment;
//! 4. rename the outputs into place, fsync the directory (inputs plus any outputs replay to
//!    the same index: outputs only repeat what the inputs say);
//! 5. point the index at the outputs, unless a concurrent write moved a key meanwhile;
//! 6. delete the inputs oldest first, fsyncing the directory after each (any suffix of the
//!    inputs followed by the outputs still replays correctly, removal records included);
//! 7. write a fresh snapshot (the old one named the inputs, so it is no longer used).
//!
//! Not here: deciding when to compact (the server asks [`super::Log::compaction_due`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::StorageError;
use super::index::Loc;
use super::inner::{Inner, lock};
use super::io::TMP_SUFFIX;
use super::record::{self, Kind};
use super::segment::{SegId, Segment};

/// Output is written in chunks of this many bytes.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Compaction is skipped when the inputs hold at most this many reclaimable bytes per segment
/// (a version marker is 33).
const NOTHING_TO_GAIN_PER_SEGMENT: u64 = 64;

/// One output file being written.
struct Output {
    seg: Arc<Segment>,
    tmp: PathBuf,
    len: u64,
    buf: Vec<u8>,
}

impl Output {
    fn flush(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.len - self.buf.len() as u64;
        self.seg
            .file
            .write_all_at(&self.buf, at)
            .map_err(|e| StorageError::from_io(&self.tmp, e))?;
        self.buf.clear();
        Ok(())
    }
}

/// Compacts every sealed segment; see the module documentation.
pub(crate) fn compact(
    inner: &Inner,
    now_ms: u64,
    policy: &dyn super::CollectPolicy,
) -> Result<(), StorageError> {
    let _m = lock(&inner.maintenance);
    inner.commit.check()?;
    let active_id = {
        let mut w = lock(&inner.writer);
        if w.len > 0 {
            inner.rotate(&mut w)?;
        }
        w.active.id
    };
    let inputs: Vec<Arc<Segment>> = lock(&inner.segments)
        .values()
        .filter(|s| s.id < active_id)
        .cloned()
        .collect();
    if inputs.is_empty() {
        return Ok(());
    }
    let input_ids: HashSet<SegId> = inputs.iter().map(|s| s.id).collect();
    let mut input_bytes = 0;
    for s in &inputs {
        input_bytes += s
            .file
            .len()
            .map_err(|e| StorageError::from_io(&s.path, e))?;
    }

    let grace_ms = inner.cfg.tombstone_grace.as_millis() as u64;
    let mut keep: Vec<(String, Loc)> = Vec::new();
    let mut dropped: Vec<(String, Loc)> = Vec::new();
    let mut referenced = 0u64;
    for i in 0..inner.index.shards() {
        let shard = inner.index.lock_shard(i);
        for (key, loc) in &shard.map {
            if !input_ids.contains(&loc.seg.id) {
                continue;
            }
            referenced += u64::from(loc.len);
            let since_ms = if loc.tombstone {
                Some(loc.version.physical_ms())
            } else {
                (loc.expires_at_ms != 0).then_some(loc.expires_at_ms)
            };
            let collect = since_ms.is_some_and(|since| {
                since.saturating_add(grace_ms) <= now_ms && policy.may_collect(key, since)
            });
            let item = (key.to_string(), loc.clone());
            if collect {
                dropped.push(item);
            } else {
                keep.push(item);
            }
        }
    }
    let reclaimable = input_bytes.saturating_sub(referenced);
    if dropped.is_empty() && reclaimable <= NOTHING_TO_GAIN_PER_SEGMENT * inputs.len() as u64 {
        return Ok(());
    }
    keep.sort_by_key(|(_, l)| (l.seg.id, l.offset));
    let last = inputs.last().map(|s| s.id).expect("inputs is not empty");

    let mut outputs: Vec<Output> = Vec::new();
    let mut moved: Vec<(String, Loc, Loc)> = Vec::with_capacity(keep.len());
    let result = write_outputs(inner, last, &keep, &mut outputs, &mut moved, &mut dropped);
    if let Err(e) = result {
        for out in &outputs {
            let _ = inner.cfg.fs.remove(&out.tmp);
        }
        return Err(e);
    }

    // 4. Into place.
    let fs = &inner.cfg.fs;
    let dir = &inner.cfg.dir;
    for out in &outputs {
        fs.rename(&out.tmp, &out.seg.path)
            .map_err(|e| StorageError::from_io(&out.tmp, e))?;
    }
    sync_dir(inner)?;

    // 5. The index follows, unless a concurrent write got there first.
    for (key, old, new) in moved {
        inner.index.lock(&key).relocate_if_same(&key, &old, new);
    }
    for (key, old) in &dropped {
        let mut shard = inner.index.lock(key);
        if shard.remove_if_same(key, old) {
            inner.observer.notify(key, Some(old.version), None);
        }
    }
    {
        let mut segs = lock(&inner.segments);
        for s in &inputs {
            segs.remove(&s.id);
        }
        for out in &outputs {
            segs.insert(out.seg.id, out.seg.clone());
        }
    }
    let output_bytes: u64 = outputs.iter().map(|o| o.len).sum();
    inner.total_bytes.fetch_add(output_bytes, Ordering::Relaxed);
    inner.total_bytes.fetch_sub(input_bytes, Ordering::Relaxed);

    // 6. Inputs go, oldest first, each removal durable before the next.
    for s in &inputs {
        fs.remove(&s.path)
            .map_err(|e| StorageError::from_io(&s.path, e))?;
        sync_dir(inner)?;
    }
    tracing::info!(
        dir = %dir.display(),
        inputs = inputs.len(),
        outputs = outputs.len(),
        input_bytes,
        output_bytes,
        dropped = dropped.len(),
        "compaction done"
    );

    // 7. A snapshot naming the new segments.
    super::snapshot::write(inner)
}

fn sync_dir(inner: &Inner) -> Result<(), StorageError> {
    let dir = &inner.cfg.dir;
    inner.cfg.fs.sync_dir(dir).map_err(|e| {
        inner
            .commit
            .poison(dir.clone(), format!("directory fsync failed: {e}"));
        StorageError::from_io(dir, e)
    })
}

fn new_output(inner: &Inner, id: SegId) -> Result<Output, StorageError> {
    let dir = &inner.cfg.dir;
    let tmp = dir.join(format!("{}{TMP_SUFFIX}", id.file_name()));
    let file = inner
        .cfg
        .fs
        .open(&tmp, true)
        .and_then(|f| f.set_len(0).map(|()| f))
        .map_err(|e| StorageError::from_io(&tmp, e))?;
    Ok(Output {
        seg: Arc::new(Segment::new(dir, id, file)),
        tmp,
        len: 0,
        buf: Vec::with_capacity(WRITE_CHUNK),
    })
}

fn finish(inner: &Inner, out: &mut Output) -> Result<(), StorageError> {
    out.flush()?;
    out.seg.file.sync_data().map_err(|e| {
        inner
            .commit
            .poison(out.tmp.clone(), format!("fdatasync failed: {e}"));
        StorageError::from_io(&out.tmp, e)
    })
}

/// Step 3: copies `keep` into new output files after `last`. A record that fails its check
/// while being copied is logged, counted and moved to `dropped` (it is never served).
fn write_outputs(
    inner: &Inner,
    last: SegId,
    keep: &[(String, Loc)],
    outputs: &mut Vec<Output>,
    moved: &mut Vec<(String, Loc, Loc)>,
    dropped: &mut Vec<(String, Loc)>,
) -> Result<(), StorageError> {
    let mut sub = last.sub + 1;
    let id = |sub| SegId {
        base: last.base,
        sub,
    };
    // Every output is in `outputs` from its creation, so a failure removes all of them.
    outputs.push(new_output(inner, id(sub))?);
    let floor = super::snapshot::log_max_version(inner);
    let out = outputs.last_mut().expect("just pushed");
    record::encode(&mut out.buf, Kind::Marker, &[], &[], floor, 0);
    out.len = out.buf.len() as u64;
    for (key, old) in keep {
        let rec = old.seg.read(old.offset, old.len as usize)?;
        let ok = record::parse(&rec)
            .is_some_and(|p| p.key == key.as_str() && p.header.version == old.version);
        if !ok {
            inner.counts.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                file = %old.seg.path.display(),
                offset = old.offset,
                "corrupt record found by compaction; dropped, its data is lost on this replica"
            );
            dropped.push((key.clone(), old.clone()));
            continue;
        }
        let full = {
            let out = outputs.last().expect("at least one output");
            out.len > 0 && out.len + rec.len() as u64 > inner.cfg.segment_bytes
        };
        if full {
            finish(inner, outputs.last_mut().expect("at least one output"))?;
            sub += 1;
            outputs.push(new_output(inner, id(sub))?);
        }
        let out = outputs.last_mut().expect("at least one output");
        let new = Loc {
            seg: out.seg.clone(),
            offset: out.len,
            cached: None,
            ..old.clone()
        };
        out.buf.extend_from_slice(&rec);
        out.len += rec.len() as u64;
        if out.buf.len() >= WRITE_CHUNK {
            out.flush()?;
        }
        moved.push((key.clone(), old.clone(), new));
    }
    finish(inner, outputs.last_mut().expect("at least one output"))?;
    Ok(())
}
