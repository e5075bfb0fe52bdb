//! Simulated power loss and injected I/O errors, through the engine's file-system seam
//! ([`SimFs`]): a power cut drops every byte not fsynced and every directory entry not made
//! durable, which kill -9 cannot show.
//!
//! The sweep runs one deterministic workload (puts, deletes, removals, batches, snapshots and
//! compactions over small segments, fsync `always`) and cuts the power before each of its file
//! operations in turn, so every step of appending, rotating, snapshotting and compacting is a
//! crash point. After every cut the engine must open and hold every acknowledged write.

mod storage_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kvstore_server::storage::{
    Engine, Entry, FaultOp, FsyncPolicy, Log, LogConfig, SimFs, StorageError, Version,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storage_common::{NOW, read, val, ver};

fn sim_config(fs: &SimFs) -> LogConfig {
    let mut c = LogConfig::new("/data");
    c.fs = Arc::new(fs.clone());
    c.fsync = FsyncPolicy::Always;
    c.segment_bytes = 4096;
    c.tombstone_grace = std::time::Duration::from_millis(50);
    c
}

#[derive(Debug, Clone)]
enum Op {
    Put(String, Entry),
    Batch(Vec<(String, Entry)>),
    Remove(String, Version),
    Snapshot,
    Compact(u64),
}

/// The deterministic workload: 12 keys, values of 10..400 bytes, versions mostly increasing
/// with some out of order.
fn workload() -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut ops = Vec::new();
    for step in 0..160u64 {
        let key = format!("key{}", rng.random_range(0..12));
        let when = NOW + step * 10 - rng.random_range(0..3) * 15;
        let version = Version::new(when << 16, rng.random_range(1..4));
        let op = match rng.random_range(0..100) {
            0..60 => {
                let len = rng.random_range(10..400);
                Op::Put(
                    key,
                    Entry::value(vec![b'a' + (step % 26) as u8; len], version),
                )
            }
            60..75 => Op::Put(key, Entry::tombstone(version)),
            75..82 => Op::Remove(key, version),
            82..90 => Op::Batch(
                (0..3)
                    .map(|j| {
                        let k = format!("key{}", (step as usize + j) % 12);
                        (k, Entry::value(format!("batch{step}-{j}"), version))
                    })
                    .collect(),
            ),
            90..95 => Op::Snapshot,
            _ => Op::Compact(when + 100),
        };
        ops.push(op);
    }
    ops
}

/// Acknowledged state: the engine's semantics on plain maps.
type Model = BTreeMap<String, Entry>;

fn model_apply(m: &mut Model, key: &str, e: &Entry) {
    if m.get(key).is_none_or(|cur| cur.version < e.version) {
        m.insert(key.to_owned(), e.clone());
    }
}

fn model_op(m: &mut Model, op: &Op, grace_ms: u64) {
    match op {
        Op::Put(k, e) => model_apply(m, k, e),
        Op::Batch(b) => b.iter().for_each(|(k, e)| model_apply(m, k, e)),
        Op::Remove(k, up_to) => {
            if m.get(k).is_some_and(|e| e.version <= *up_to) {
                m.remove(k);
            }
        }
        Op::Snapshot => {}
        // Compaction may drop tombstones past the grace period: the model forgets them too
        // (the checks below accept either, since both read as absent).
        Op::Compact(now) => {
            m.retain(|_, e| !(e.tombstone && e.version.physical_ms() + grace_ms <= *now));
        }
    }
}

fn run_op(log: &Log, op: &Op) -> Result<(), StorageError> {
    match op {
        Op::Put(k, e) => log.apply(k, e.clone()).map(drop),
        Op::Batch(b) => log.apply_batch(b.clone()).map(drop),
        Op::Remove(k, v) => log.remove(k, *v).map(drop),
        Op::Snapshot => log.snapshot(),
        Op::Compact(now) => log.compact(*now),
    }
}

/// What a key may hold after a crash: the acknowledged state, or the in-flight op's result.
fn check(log: &Log, acked: &Model, maybe: &Model, ctx: &str) {
    let keys: std::collections::BTreeSet<&String> = acked.keys().chain(maybe.keys()).collect();
    for key in keys {
        let got = log.get_entry(key).unwrap();
        let same = |m: &Model| {
            let want = m.get(key.as_str());
            match (&got, want) {
                (None, None) => true,
                (Some(g), Some(w)) => g == w,
                // A tombstone read back where the model has forgotten it (or vice versa)
                // reads the same: absent.
                (Some(g), None) | (None, Some(g)) => g.tombstone,
            }
        };
        assert!(
            same(acked) || same(maybe),
            "{ctx}: key {key}: got {got:?}, acknowledged {:?}, in flight {:?}",
            acked.get(key.as_str()),
            maybe.get(key.as_str())
        );
    }
    for key in log.keys() {
        assert!(
            acked.contains_key(&key) || maybe.contains_key(&key),
            "{ctx}: {key} was never written"
        );
    }
}

#[test]
fn after_a_power_cut_at_any_file_operation_every_acknowledged_write_is_back() {
    let ops = workload();
    let grace = 50;
    // A dry run counts the file operations, and checks that compactions did real work.
    let total = {
        let fs = SimFs::new();
        let log = Log::open(sim_config(&fs)).unwrap();
        let mut reclaimed = 0;
        for op in &ops {
            let before = log.stats().dead_bytes;
            run_op(&log, op).unwrap();
            if matches!(op, Op::Compact(_)) && log.stats().dead_bytes < before {
                reclaimed += 1;
            }
        }
        assert!(
            reclaimed >= 3,
            "only {reclaimed} compactions reclaimed space"
        );
        fs.ops()
    };
    assert!(total > 200, "the workload exercises the disk: {total} ops");
    let mut crash_points = 0;
    for crash_at in 0..=total {
        let fs = SimFs::new();
        fs.crash_after_ops(crash_at);
        let mut acked = Model::new();
        let mut maybe = Model::new();
        if let Ok(log) = Log::open(sim_config(&fs)) {
            for op in &ops {
                maybe = acked.clone();
                model_op(&mut maybe, op, grace);
                match run_op(&log, op) {
                    Ok(()) => acked = maybe.clone(),
                    Err(_) => break,
                }
            }
        }
        if fs.is_down() {
            crash_points += 1;
        }
        // Every other cut also keeps a torn prefix of what was written but never synced.
        if crash_at % 2 == 1 {
            fs.power_cycle_torn(crash_at);
        } else {
            fs.power_cycle();
        }
        let ctx = format!("power cut before file op {crash_at} of {total}");
        let log = Log::open(sim_config(&fs)).unwrap_or_else(|e| panic!("{ctx}: open: {e}"));
        check(&log, &acked, &maybe, &ctx);
        // The engine is usable, and what it holds now survives another cut.
        log.apply("fresh", val("fresh", 10_000, 1))
            .unwrap_or_else(|e| panic!("{ctx}: write after recovery: {e}"));
        drop(log);
        fs.power_cycle();
        let log = Log::open(sim_config(&fs)).unwrap();
        assert_eq!(read(&log, "fresh").as_deref(), Some("fresh"), "{ctx}");
    }
    assert!(crash_points as u64 >= total, "every point was a real crash");
}

#[test]
fn an_fsync_failure_poisons_writes_but_reads_go_on() {
    let fs = SimFs::new();
    let log = Log::open(sim_config(&fs)).unwrap();
    log.apply("a", val("a", 1, 1)).unwrap();
    fs.fail_nth(FaultOp::Sync, 1, libc::EIO);
    let err = log.apply("b", val("b", 2, 1)).unwrap_err();
    assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
    let err = log.apply("c", val("c", 3, 1)).unwrap_err();
    assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
    assert!(log.flush().is_err());
    assert!(log.snapshot().is_err());
    assert!(log.compact(NOW).is_err());
    assert_eq!(read(&log, "a").as_deref(), Some("a"), "reads go on");
    drop(log);
    fs.power_cycle();
    let log = Log::open(sim_config(&fs)).unwrap();
    assert_eq!(read(&log, "a").as_deref(), Some("a"));
    assert_eq!(read(&log, "c"), None, "refused writes never happened");
    log.apply("d", val("d", 4, 1)).unwrap();
}

#[test]
fn a_failed_write_is_not_acknowledged_and_writes_resume() {
    for errno in [libc::ENOSPC, libc::EIO] {
        let fs = SimFs::new();
        let log = Log::open(sim_config(&fs)).unwrap();
        log.apply("a", val("a", 1, 1)).unwrap();
        fs.fail_nth(FaultOp::Write, 1, errno);
        let err = log.apply("b", val(&"b".repeat(100), 2, 1)).unwrap_err();
        if errno == libc::ENOSPC {
            assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");
        } else {
            assert!(matches!(err, StorageError::Io { .. }), "{err}");
        }
        assert_eq!(read(&log, "b"), None);
        log.apply("c", val("c", 3, 1)).unwrap();
        drop(log);
        fs.power_cycle();
        let log = Log::open(sim_config(&fs)).unwrap();
        assert_eq!(read(&log, "a").as_deref(), Some("a"));
        assert_eq!(read(&log, "b"), None);
        assert_eq!(read(&log, "c").as_deref(), Some("c"));
        let s = log.stats();
        assert_eq!(
            s.records_skipped + s.records_truncated,
            0,
            "the partial write was cut back"
        );
    }
}

#[test]
fn a_full_disk_during_compaction_or_snapshot_leaves_the_store_intact() {
    let fs = SimFs::new();
    let log = Log::open(sim_config(&fs)).unwrap();
    for i in 0..200u64 {
        log.apply(&format!("k{}", i % 20), val(&format!("v{i}"), i, 1))
            .unwrap();
    }
    fs.fail_nth(FaultOp::Write, 1, libc::ENOSPC);
    let err = log.compact(NOW + 1000).unwrap_err();
    assert!(matches!(err, StorageError::DiskFull { .. }), "{err}");
    fs.fail_nth(FaultOp::Write, 1, libc::ENOSPC);
    assert!(log.snapshot().is_err());
    for i in 180..200u64 {
        assert_eq!(read(&log, &format!("k{}", i % 20)), Some(format!("v{i}")));
    }
    log.compact(NOW + 1000).unwrap();
    drop(log);
    fs.power_cycle();
    let log = Log::open(sim_config(&fs)).unwrap();
    for i in 180..200u64 {
        assert_eq!(read(&log, &format!("k{}", i % 20)), Some(format!("v{i}")));
    }
    assert!(
        !fs.read_all(Path::new("/data/snapshot")).unwrap().is_empty(),
        "compaction left a snapshot"
    );
}

#[test]
fn max_version_floor_survives_a_power_cut_after_compaction_dropped_its_record() {
    let fs = SimFs::new();
    let log = Log::open(sim_config(&fs)).unwrap();
    log.apply("k", val("v", 1, 1)).unwrap();
    log.apply("k", Entry::tombstone(ver(NOW + 500, 0, 3)))
        .unwrap();
    log.compact(NOW + 10_000).unwrap();
    assert_eq!(
        log.get_entry("k").unwrap(),
        None,
        "tombstone past grace dropped"
    );
    drop(log);
    fs.power_cycle();
    let log = Log::open(sim_config(&fs)).unwrap();
    assert_eq!(log.max_version(), ver(NOW + 500, 0, 3));
}

#[test]
fn interval_fsync_makes_writes_durable_without_a_flush_and_never_does_not() {
    // `interval`: the background thread syncs; once it has, a power cut keeps the write.
    let fs = SimFs::new();
    let mut cfg = sim_config(&fs);
    cfg.fsync = FsyncPolicy::Interval(std::time::Duration::from_millis(10));
    let log = Log::open(cfg.clone()).unwrap();
    log.apply("a", val("a", 1, 1)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while log.group_syncs() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the interval thread never synced"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    fs.power_cycle(); // the machine dies with the engine still open
    drop(log);
    let log = Log::open(cfg).unwrap();
    assert_eq!(read(&log, "a").as_deref(), Some("a"));
    drop(log);

    // `never`: nothing syncs the record, so a power cut loses it (a clean close would not).
    let fs = SimFs::new();
    let mut cfg = sim_config(&fs);
    cfg.fsync = FsyncPolicy::Never;
    let log = Log::open(cfg.clone()).unwrap();
    log.apply("b", val("b", 1, 1)).unwrap();
    assert_eq!(log.group_syncs(), 0);
    fs.power_cycle();
    drop(log);
    let log = Log::open(cfg).unwrap();
    assert_eq!(read(&log, "b"), None);
}
