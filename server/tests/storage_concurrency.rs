//! Many concurrent writers and readers on overlapping keys (fsync `always`, so group commit,
//! segment rotation, snapshots and compaction all run concurrently), then a check that each key
//! holds its highest-versioned write, before and after reopen.

mod storage_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kvstore_server::storage::{Engine, Entry, FsyncPolicy, Log, Version};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storage_common::{NOW, config};

const WRITERS: u32 = 40;
const READERS: u32 = 4;
const WRITES_EACH: u32 = 60;
const KEYS: u32 = 30;

/// Every value names its key and version, so any read can be checked on its own.
fn value_for(key: &str, v: Version) -> String {
    format!("{key}/{}/{}", v.hlc, v.node)
}

fn check_entry(key: &str, e: &Entry) {
    assert_eq!(
        std::str::from_utf8(&e.value).unwrap(),
        value_for(key, e.version),
        "a read returned a value that belongs to another write"
    );
}

#[test]
fn concurrent_writers_leave_each_key_at_its_highest_version_before_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), FsyncPolicy::Always);
    cfg.segment_bytes = 16 * 1024;
    let log = Arc::new(Log::open(cfg.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|node| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(u64::from(node));
                let mut written = Vec::new();
                for i in 0..WRITES_EACH {
                    let key = format!("key{}", rng.random_range(0..KEYS));
                    let ms = NOW + rng.random_range(0..1000u64);
                    let v = Version::new((ms << 16) | u64::from(i), node);
                    log.apply(&key, Entry::value(value_for(&key, v), v))
                        .unwrap();
                    written.push((key, v));
                }
                written
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(1000 + u64::from(r));
                let mut seen: HashMap<String, Version> = HashMap::new();
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) || reads < 100 {
                    let key = format!("key{}", rng.random_range(0..KEYS));
                    if let Some(e) = log.get_entry(&key).unwrap() {
                        check_entry(&key, &e);
                        let last = seen.entry(key.clone()).or_default();
                        assert!(
                            e.version >= *last,
                            "{key} went back from {last} to {}",
                            e.version
                        );
                        *last = e.version;
                    }
                    reads += 1;
                }
            })
        })
        .collect();
    let maintenance = {
        let (log, done) = (log.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rounds = 0;
            while !done.load(Ordering::Acquire) || rounds < 2 {
                log.snapshot().unwrap();
                log.compact(NOW).unwrap();
                rounds += 1;
            }
        })
    };

    let mut highest: HashMap<String, Version> = HashMap::new();
    for w in writers {
        for (key, v) in w.join().unwrap() {
            let h = highest.entry(key).or_default();
            *h = (*h).max(v);
        }
    }
    done.store(true, Ordering::Release);
    for r in readers {
        r.join().unwrap();
    }
    maintenance.join().unwrap();

    let check_all = |log: &Log| {
        for (key, v) in &highest {
            let e = log.get_entry(key).unwrap().unwrap();
            assert_eq!(e.version, *v, "{key}");
            check_entry(key, &e);
        }
        assert_eq!(log.stats().keys as usize, highest.len());
        assert_eq!(log.max_version(), *highest.values().max().unwrap());
    };
    check_all(&log);
    drop(log);
    let log = Log::open(cfg).unwrap();
    check_all(&log);
}
