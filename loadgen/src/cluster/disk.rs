//! Disk faults (`[[fault]] kind = "disk"`): damage to a stopped node's data directory, as a
//! failing disk, a bad controller or an operator's mistake would leave it.
//!
//! Each fault is applied to a killed node (validation makes sure of that), so no running
//! process holds the files open and the damage is exactly what the next start finds:
//! - `bitflip`: one bit of one byte flipped in the largest data segment (a sealed one when
//!   there is one), the byte chosen from the fault's time and node so a scenario replays the
//!   same damage;
//! - `truncate`: the newest data segment cut to half its length (a torn tail, or a disk that
//!   lost what it had acknowledged);
//! - `corrupt_snapshot`: one bit flipped in the index snapshot, chosen the same way;
//! - `delete_snapshot`: the index snapshot removed;
//! - `delete_hints`: every file of the hints engine removed (the hints it held are lost).
//!
//! The layout read here is the server's (`<data-dir>/data/*.seg`, `<data-dir>/data/snapshot`,
//! `<data-dir>/hints/`), as documented in its `node::datadir` module. Every function returns
//! what it did in one line for `faults.csv`; a fault that finds nothing to damage is an error
//! (a scenario that damages nothing proves nothing).

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use kvstore_server::storage::{SEGMENT_SUFFIX, SNAPSHOT_FILE};

use crate::scenario::FaultAction;

/// Applies the disk fault `action` to the node data directory `dir`; `seed` picks the byte
/// (the same seed damages the same byte of the same file). Returns what was done.
pub fn damage(dir: &Path, action: FaultAction, seed: u64) -> Result<String, String> {
    let data = dir.join("data");
    match action {
        FaultAction::Bitflip => {
            let seg = largest_segment(&data)?;
            flip_one_bit(dir, &seg, seed)
        }
        FaultAction::Truncate => {
            let seg = newest_segment(&data)?;
            let len = file_len(&seg)?;
            let keep = len / 2;
            OpenOptions::new()
                .write(true)
                .open(&seg)
                .and_then(|f| {
                    f.set_len(keep)?;
                    f.sync_all()
                })
                .map_err(|e| format!("cannot truncate {}: {e}", seg.display()))?;
            Ok(format!(
                "file={};from_bytes={len};to_bytes={keep}",
                relative(dir, &seg)
            ))
        }
        FaultAction::CorruptSnapshot => {
            let snap = existing(data.join(SNAPSHOT_FILE))?;
            flip_one_bit(dir, &snap, seed)
        }
        FaultAction::DeleteSnapshot => {
            let snap = existing(data.join(SNAPSHOT_FILE))?;
            let len = file_len(&snap)?;
            fs::remove_file(&snap).map_err(|e| format!("cannot delete {}: {e}", snap.display()))?;
            Ok(format!("file={};deleted_bytes={len}", relative(dir, &snap)))
        }
        FaultAction::DeleteHints => {
            let hints = dir.join("hints");
            let files = regular_files(&hints)?;
            if files.is_empty() {
                return Err(format!("{} holds no files to delete", hints.display()));
            }
            let mut bytes = 0;
            for f in &files {
                bytes += file_len(f)?;
                fs::remove_file(f).map_err(|e| format!("cannot delete {}: {e}", f.display()))?;
            }
            Ok(format!(
                "dir={};deleted_files={};deleted_bytes={bytes}",
                relative(dir, &hints),
                files.len()
            ))
        }
        other => Err(format!("{} is not a disk fault", other.name())),
    }
}

/// Flips bit `seed % 8` of the byte at `seed`-chosen offset of `file`.
fn flip_one_bit(dir: &Path, file: &Path, seed: u64) -> Result<String, String> {
    let len = file_len(file)?;
    if len == 0 {
        return Err(format!("{} is empty: no byte to flip", file.display()));
    }
    let mixed = splitmix64(seed);
    let offset = mixed % len;
    let bit = (mixed >> 59) as u8 % 8;
    let io = |e: std::io::Error| format!("cannot flip a byte of {}: {e}", file.display());
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(io)?;
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    f.read_exact(&mut byte).map_err(io)?;
    let before = byte[0];
    byte[0] ^= 1 << bit;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    f.write_all(&byte).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(format!(
        "file={};offset={offset};bit={bit};byte=0x{before:02x}->0x{:02x}",
        relative(dir, file),
        byte[0]
    ))
}

/// The data segments of `data`, sorted by name (the server names them so that name order is
/// write order).
fn segments(data: &Path) -> Result<Vec<PathBuf>, String> {
    let mut segs: Vec<PathBuf> = regular_files(data)?
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(SEGMENT_SUFFIX))
        .collect();
    segs.sort();
    if segs.is_empty() {
        return Err(format!("{} holds no data segment", data.display()));
    }
    Ok(segs)
}

/// The newest data segment (the one being written when the node stopped).
fn newest_segment(data: &Path) -> Result<PathBuf, String> {
    Ok(segments(data)?.pop().expect("segments is never empty"))
}

/// The largest data segment, preferring sealed ones (all but the newest) when any is not
/// empty: damage there is in the middle of the log, not in a tail recovery may cut anyway.
fn largest_segment(data: &Path) -> Result<PathBuf, String> {
    let mut segs = segments(data)?;
    let newest = segs.pop().expect("segments is never empty");
    let mut best: Option<(u64, PathBuf)> = None;
    for s in segs {
        let len = file_len(&s)?;
        if len > 0 && best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, s));
        }
    }
    Ok(best.map(|(_, p)| p).unwrap_or(newest))
}

fn regular_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let entry = e.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let path = entry.path();
        let is_file = entry
            .file_type()
            .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
            .is_file();
        if is_file {
            out.push(path);
        }
    }
    Ok(out)
}

fn existing(p: PathBuf) -> Result<PathBuf, String> {
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("{} does not exist", p.display()))
    }
}

fn file_len(p: &Path) -> Result<u64, String> {
    fs::metadata(p)
        .map(|m| m.len())
        .map_err(|e| format!("cannot stat {}: {e}", p.display()))
}

fn relative(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

/// SplitMix64: spreads a small seed (a fault's time and node) over the whole offset range.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of a disk fault at `at_s` on `node`: the same scenario damages the same bytes.
pub fn seed_of(at_s: f64, node: u32) -> u64 {
    at_s.to_bits() ^ ((node as u64) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node directory with two segments, a snapshot and two hint files.
    fn node_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        fs::create_dir_all(&data).unwrap();
        fs::create_dir_all(d.path().join("hints")).unwrap();
        fs::write(data.join("000000000001-00000.seg"), vec![0xAAu8; 4096]).unwrap();
        fs::write(data.join("000000000002-00000.seg"), vec![0x55u8; 1000]).unwrap();
        fs::write(data.join(SNAPSHOT_FILE), vec![0x11u8; 300]).unwrap();
        fs::write(d.path().join("hints/000000000001-00000.seg"), b"hint").unwrap();
        fs::write(d.path().join("hints/snapshot"), b"snap").unwrap();
        d
    }

    fn differing_bits(a: &[u8], b: &[u8]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    #[test]
    fn bitflip_changes_exactly_one_bit_of_the_sealed_segment() {
        let d = node_dir();
        let seg = d.path().join("data/000000000001-00000.seg");
        let before = fs::read(&seg).unwrap();
        let done = damage(d.path(), FaultAction::Bitflip, 42).unwrap();
        let after = fs::read(&seg).unwrap();
        assert_eq!(before.len(), after.len());
        assert_eq!(differing_bits(&before, &after), 1, "{done}");
        assert!(done.starts_with("file=data/000000000001-00000.seg;offset="));
        // The newest segment is left alone.
        assert_eq!(
            fs::read(d.path().join("data/000000000002-00000.seg")).unwrap(),
            vec![0x55u8; 1000]
        );
    }

    #[test]
    fn the_same_seed_damages_the_same_byte() {
        let (a, b) = (node_dir(), node_dir());
        let da = damage(a.path(), FaultAction::Bitflip, seed_of(12.5, 1)).unwrap();
        let db = damage(b.path(), FaultAction::Bitflip, seed_of(12.5, 1)).unwrap();
        assert_eq!(da, db);
        let other = node_dir();
        let dc = damage(other.path(), FaultAction::Bitflip, seed_of(12.5, 2)).unwrap();
        assert_ne!(da, dc, "another node's seed picks another byte");
    }

    #[test]
    fn truncate_halves_the_newest_segment() {
        let d = node_dir();
        let done = damage(d.path(), FaultAction::Truncate, 0).unwrap();
        let len = fs::metadata(d.path().join("data/000000000002-00000.seg"))
            .unwrap()
            .len();
        assert_eq!(len, 500);
        assert_eq!(
            done,
            "file=data/000000000002-00000.seg;from_bytes=1000;to_bytes=500"
        );
    }

    #[test]
    fn snapshot_faults_corrupt_or_delete_it() {
        let d = node_dir();
        let snap = d.path().join("data/snapshot");
        damage(d.path(), FaultAction::CorruptSnapshot, 7).unwrap();
        assert_eq!(differing_bits(&[0x11u8; 300], &fs::read(&snap).unwrap()), 1);
        damage(d.path(), FaultAction::DeleteSnapshot, 0).unwrap();
        assert!(!snap.exists());
        let again = damage(d.path(), FaultAction::DeleteSnapshot, 0).unwrap_err();
        assert!(again.contains("does not exist"), "{again}");
    }

    #[test]
    fn delete_hints_empties_the_hints_engine() {
        let d = node_dir();
        let done = damage(d.path(), FaultAction::DeleteHints, 0).unwrap();
        assert_eq!(done, "dir=hints;deleted_files=2;deleted_bytes=8");
        assert_eq!(fs::read_dir(d.path().join("hints")).unwrap().count(), 0);
        let err = damage(d.path(), FaultAction::DeleteHints, 0).unwrap_err();
        assert!(err.contains("holds no files"), "{err}");
    }

    #[test]
    fn a_directory_without_segments_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("data")).unwrap();
        let err = damage(d.path(), FaultAction::Bitflip, 0).unwrap_err();
        assert!(err.contains("holds no data segment"), "{err}");
        assert!(damage(d.path(), FaultAction::Kill, 0).is_err());
    }
}
