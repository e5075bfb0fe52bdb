//! Crash and corruption matrix on real files: torn tails at every byte offset, single flipped
//! bytes, zeroed tails, corruption found while serving, and a full disk (a small tmpfs, when
//! running as root).

mod storage_common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use kvstore_server::storage::{Engine, Entry, FsyncPolicy, Log, StorageError, record};
use storage_common::{NOW, config, read, val};

/// The keys and values the matrix writes: distinct keys, values of varied lengths.
fn records(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("key-{i}"),
                format!("value-{i}-{}", "x".repeat(i * 3)),
            )
        })
        .collect()
}

/// Writes `recs` to a fresh directory and returns the bytes of its one segment and each
/// record's end offset.
fn build(recs: &[(String, String)]) -> (Vec<u8>, Vec<usize>) {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
        for (i, (k, v)) in recs.iter().enumerate() {
            log.apply(k, val(v, i as u64, 1)).unwrap();
        }
    }
    let seg = segment_files(dir.path());
    assert_eq!(seg.len(), 1, "the matrix fits one segment");
    let bytes = std::fs::read(&seg[0]).unwrap();
    let mut ends = Vec::new();
    let mut end = 0;
    for (k, v) in recs {
        end += record::HEADER_LEN + k.len() + v.len();
        ends.push(end);
    }
    assert_eq!(end, bytes.len());
    (bytes, ends)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// A fresh directory holding only `bytes` as its segment.
fn dir_with_segment(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("000000000001-00000.seg"), bytes).unwrap();
    dir
}

#[test]
fn truncating_inside_the_last_two_records_recovers_exactly_the_whole_records() {
    let recs = records(10);
    let (bytes, ends) = build(&recs);
    let from = ends[recs.len() - 3];
    for cut in from..=bytes.len() {
        let dir = dir_with_segment(&bytes[..cut]);
        let log = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        for (i, (k, v)) in recs.iter().enumerate() {
            let expect = (i < whole).then(|| v.clone());
            assert_eq!(read(&log, k), expect, "cut at {cut}, record {i}");
        }
        assert_eq!(
            log.stats().keys as usize,
            whole,
            "cut at {cut}: nothing else"
        );
        let torn = !ends.contains(&cut) && cut != 0;
        assert_eq!(
            log.stats().records_truncated,
            u64::from(torn),
            "cut at {cut}"
        );
        // The torn tail is gone before the next append: a new write survives a reopen.
        log.apply("after", val("after", 100, 1)).unwrap();
        drop(log);
        let log = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
        assert_eq!(
            read(&log, "after").as_deref(),
            Some("after"),
            "cut at {cut}"
        );
        assert_eq!(log.stats().keys as usize, whole + 1, "cut at {cut}");
        assert_eq!(log.stats().records_truncated, 0, "cut at {cut}");
    }
}

#[test]
fn a_flipped_byte_never_serves_a_wrong_value_and_loses_only_its_record() {
    let recs = records(12);
    let (bytes, ends) = build(&recs);
    for pos in 0..bytes.len() {
        let mut broken = bytes.clone();
        broken[pos] ^= 0x20;
        let dir = dir_with_segment(&broken);
        let log = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
        let hit = ends.iter().position(|&e| pos < e).unwrap();
        for (i, (k, v)) in recs.iter().enumerate() {
            let got = read(&log, k);
            if i == hit {
                assert_eq!(
                    got, None,
                    "byte {pos}: the damaged record {i} is not served"
                );
            } else {
                assert_eq!(
                    got.as_ref(),
                    Some(v),
                    "byte {pos}: untouched record {i} is back"
                );
            }
        }
        let s = log.stats();
        assert_eq!(
            s.records_skipped + s.records_truncated,
            1,
            "byte {pos}: the loss is reported: {s:?}"
        );
    }
}

#[test]
fn a_zeroed_tail_is_cut_and_appends_continue() {
    let recs = records(6);
    let (mut bytes, _) = build(&recs);
    let good = bytes.len();
    bytes.extend(std::iter::repeat_n(0u8, 8192));
    let dir = dir_with_segment(&bytes);
    {
        let log = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
        assert_eq!(log.stats().records_truncated, 1);
        for (k, v) in &recs {
            assert_eq!(read(&log, k).as_ref(), Some(v));
        }
        let seg = &segment_files(dir.path())[0];
        assert_eq!(std::fs::metadata(seg).unwrap().len() as usize, good);
        log.apply("next", val("n", 50, 1)).unwrap();
    }
    let log = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
    assert_eq!(log.stats().records_truncated, 0);
    assert_eq!(log.stats().records_skipped, 0);
    assert_eq!(read(&log, "next").as_deref(), Some("n"));
    assert_eq!(log.stats().keys as usize, recs.len() + 1);
}

#[test]
fn corruption_found_while_serving_is_an_error_never_a_wrong_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), FsyncPolicy::Never);
    cfg.cache_value_max_bytes = 0; // every read goes to the disk
    let log = Log::open(cfg).unwrap();
    log.apply("a", val("alpha", 1, 1)).unwrap();
    log.apply("b", val("bravo", 2, 1)).unwrap();
    let seg = &segment_files(dir.path())[0];
    let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    // The last byte of the first record's value.
    f.write_all_at(b"A", (record::HEADER_LEN + 1 + 4) as u64)
        .unwrap();
    let err = log.get("a", NOW).unwrap_err();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(read(&log, "b").as_deref(), Some("bravo"));
}

/// Mounts a 2 MiB tmpfs on a fresh directory; `None` (with the reason printed) when not root
/// or the mount fails.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Option<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the disk-full test mounts a tmpfs and needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "skipped: could not mount a tmpfs on {}",
                dir.path().display()
            );
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_disk_fails_writes_with_a_typed_error_and_reads_go_on() {
    let Some(tmpfs) = Tmpfs::mount() else {
        return;
    };
    let dir = tmpfs.0.path().join("data");
    let mut cfg = config(&dir, FsyncPolicy::Always);
    cfg.segment_bytes = 256 * 1024;
    let value = "v".repeat(1000);
    let mut acked = Vec::new();
    {
        let log = Log::open(cfg.clone()).unwrap();
        let err = loop {
            let key = format!("k{}", acked.len());
            match log.apply(&key, val(&value, acked.len() as u64, 1)) {
                Ok(_) => acked.push(key),
                Err(e) => break e,
            }
            assert!(acked.len() < 10_000, "a 2 MiB disk cannot hold this much");
        };
        assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");
        assert!(!acked.is_empty());
        for key in &acked {
            assert_eq!(read(&log, key).as_ref(), Some(&value), "{key}");
        }
        // Still full: still a typed error, still readable.
        let err = log.apply("more", val(&value, 99_999, 1)).unwrap_err();
        assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");
        assert_eq!(read(&log, "more"), None);
        // A delete is tiny and may still fit; either way reads go on.
        let _ = log.apply(
            &acked[0],
            Entry::tombstone(storage_common::ver(NOW + 100_000, 0, 1)),
        );
        assert_eq!(read(&log, &acked[1]).as_ref(), Some(&value));
    }
    let log = Log::open(cfg).unwrap();
    for key in &acked[1..] {
        assert_eq!(read(&log, key).as_ref(), Some(&value), "{key} after reopen");
    }
    assert_eq!(log.stats().records_skipped, 0);
}

/// Copies every file of `from` into a fresh directory, leaving out `skip` (file names).
fn copy_dir(from: &Path, skip: &[&str]) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        if !skip.contains(&name.as_str()) && name != "LOCK" {
            std::fs::copy(&p, to.path().join(&name)).unwrap();
        }
    }
    to
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// Builds, on real files, each state a crash can leave between the steps of a compaction and
/// of a snapshot, and checks that each opens to the same data.
#[test]
fn every_intermediate_file_state_of_compaction_and_snapshot_recovers() {
    let work = tempfile::tempdir().unwrap();
    let cfg = |d: &Path| config(d, FsyncPolicy::Never);
    let mut expect = std::collections::BTreeMap::new();
    {
        let log = Log::open(cfg(work.path())).unwrap();
        for i in 0..400u64 {
            let (k, v) = (format!("k{}", i % 40), format!("v{i}-{}", "p".repeat(40)));
            log.apply(&k, val(&v, i, 1)).unwrap();
            expect.insert(k, v);
        }
        // A removal followed by an older write: replay order matters for this key.
        log.remove("k3", storage_common::ver(NOW + 1000, 0, 1))
            .unwrap();
        log.apply("k3", val("old-again", 1, 1)).unwrap();
        expect.insert("k3".into(), "old-again".into());
        log.snapshot().unwrap();
        for i in 400..440u64 {
            let (k, v) = (format!("k{}", i % 40), format!("v{i}"));
            log.apply(&k, val(&v, i, 1)).unwrap();
            expect.insert(k, v);
        }
    }
    let before = copy_dir(work.path(), &[]);
    let inputs: Vec<String> = names(before.path())
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    assert!(inputs.len() > 3, "several segments: {inputs:?}");
    {
        let log = Log::open(cfg(work.path())).unwrap();
        log.compact(NOW + 10_000).unwrap();
    }
    let after = names(work.path());
    let outputs: Vec<&String> = after
        .iter()
        .filter(|n| !inputs.contains(n) && n.ends_with(".seg"))
        .collect();
    assert!(!outputs.is_empty());

    let check = |dir: &Path, state: &str| {
        let log = Log::open(cfg(dir)).unwrap();
        for (k, v) in &expect {
            assert_eq!(read(&log, k).as_ref(), Some(v), "{state}: {k}");
        }
        assert_eq!(log.stats().keys as usize, expect.len(), "{state}");
        assert_eq!(log.stats().records_skipped, 0, "{state}");
        assert!(
            !names(dir).iter().any(|n| n.ends_with(".tmp")),
            "{state}: temporary files are removed"
        );
    };
    // The active segment (the newest input) kept growing after the compaction sealed it;
    // states below use the sealed copy from `before`, as the crash would have left it.
    type MakeState<'a> = Box<dyn Fn(&Path) + 'a>;
    let states: Vec<(&str, MakeState)> = vec![
        (
            "a snapshot temp file half written",
            Box::new(|d: &Path| {
                std::fs::write(d.join("snapshot.tmp"), b"KVSNAP01 partial").unwrap();
            }),
        ),
        (
            "a compaction output still a temp file",
            Box::new(|d: &Path| {
                let out = outputs[0];
                std::fs::copy(work.path().join(out), d.join(format!("{out}.tmp"))).unwrap();
            }),
        ),
        (
            "outputs renamed, inputs all still there",
            Box::new(|d: &Path| {
                for out in &outputs {
                    std::fs::copy(work.path().join(out), d.join(out)).unwrap();
                }
            }),
        ),
        (
            "outputs renamed, the oldest half of the inputs deleted",
            Box::new(|d: &Path| {
                for out in &outputs {
                    std::fs::copy(work.path().join(out), d.join(out)).unwrap();
                }
                for old in &inputs[..inputs.len() / 2] {
                    std::fs::remove_file(d.join(old)).unwrap();
                }
            }),
        ),
        (
            "outputs renamed, all inputs deleted, old snapshot left",
            Box::new(|d: &Path| {
                for out in &outputs {
                    std::fs::copy(work.path().join(out), d.join(out)).unwrap();
                }
                for old in &inputs {
                    std::fs::remove_file(d.join(old)).unwrap();
                }
            }),
        ),
    ];
    for (state, make) in &states {
        let dir = copy_dir(before.path(), &[]);
        make(dir.path());
        check(dir.path(), state);
    }
    check(work.path(), "compaction finished");
}
