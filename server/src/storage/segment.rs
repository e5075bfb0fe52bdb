//! Segment files: their names, their order, and reading one record back.
//!
//! A segment is identified by [`SegId`] `(base, sub)`, ordered lexicographically. Appends go to
//! the newest segment `(n, 0)`; compaction of everything up to `(b, s)` writes its output as
//! `(b, s+1)`, `(b, s+2)`, ..., which sorts after its inputs and before any later segment.
//! Replaying segments in this order therefore replays writes in the order they were made,
//! which removal records rely on. This module does not decide what goes in a segment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::StorageError;
use super::io::File;

/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// A segment's place in the replay order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegId {
    /// Generation of appends: the active segment has the highest base.
    pub base: u64,
    /// 0 for a segment written by appends; 1.. for compaction output placed after `(base, 0..)`.
    pub sub: u32,
}

impl SegId {
    /// The segment's file name, e.g. `000000000007-00000.seg` (zero-padded so names sort).
    pub fn file_name(&self) -> String {
        format!("{:012}-{:05}{SEGMENT_SUFFIX}", self.base, self.sub)
    }

    /// Parses a file name made by [`Self::file_name`].
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
        let (base, sub) = stem.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(base) || !digits(sub) {
            return None;
        }
        Some(Self {
            base: base.parse().ok()?,
            sub: sub.parse().ok()?,
        })
    }
}

/// An open segment file. Shared (`Arc`) by the index entries that point into it, so a reader
/// can finish reading a segment that compaction has just deleted.
#[derive(Debug)]
pub struct Segment {
    /// Its place in the order.
    pub id: SegId,
    /// Its path, for error messages.
    pub path: PathBuf,
    /// The open file.
    pub file: Arc<dyn File>,
}

impl Segment {
    /// A segment over an open file.
    pub fn new(dir: &Path, id: SegId, file: Arc<dyn File>) -> Self {
        Self {
            id,
            path: dir.join(id.file_name()),
            file,
        }
    }

    /// Reads the `len`-byte record at `offset` (no checks; see [`super::record::entry_of`]).
    pub fn read(&self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| StorageError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_replay_order() {
        let ids = [
            SegId { base: 1, sub: 0 },
            SegId { base: 2, sub: 0 },
            SegId { base: 2, sub: 1 },
            SegId { base: 2, sub: 7 },
            SegId { base: 10, sub: 0 },
        ];
        let mut names: Vec<String> = ids.iter().map(SegId::file_name).collect();
        names.sort();
        let parsed: Vec<SegId> = names.iter().map(|n| SegId::parse(n).unwrap()).collect();
        assert_eq!(parsed, ids);
        for bad in [
            "LOCK",
            "snapshot",
            "1-.seg",
            "-0.seg",
            "0000000001-00000.seg.tmp",
        ] {
            assert_eq!(SegId::parse(bad), None, "{bad}");
        }
    }
}
