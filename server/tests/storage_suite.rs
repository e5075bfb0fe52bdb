//! The shared engine suite: every case runs against `Memory` (the reference) and `Log` (the
//! durable engine, reopened between steps where durability matters), plus `Log`-only cases for
//! what only a durable engine has (reopen, lock, snapshot, compaction, limits).

mod storage_common;

use std::time::Duration;

use kvstore_server::storage::{
    Applied, CollectPolicy, Engine, Entry, FsyncPolicy, Log, LogConfig, SNAPSHOT_FILE,
    StorageError, Version,
};
use storage_common::{NOW, Subject, config, read, subjects, val, ver};

#[test]
fn put_get_delete() {
    for mut s in subjects() {
        let e = s.engine();
        assert_eq!(read(e, "a"), None, "{}", s.name());
        assert_eq!(e.apply("a", val("1", 1, 1)).unwrap(), Applied::Stored);
        assert_eq!(read(e, "a").as_deref(), Some("1"), "{}", s.name());
        e.apply("a", Entry::tombstone(ver(NOW + 2, 0, 1))).unwrap();
        assert_eq!(read(e, "a"), None, "{}", s.name());
        s.reopen();
        assert_eq!(read(s.engine(), "a"), None, "{}", s.name());
    }
}

#[test]
fn overwrite_keeps_the_newest() {
    for mut s in subjects() {
        let e = s.engine();
        e.apply("k", val("old", 1, 1)).unwrap();
        e.apply("k", val("new", 2, 1)).unwrap();
        assert_eq!(read(e, "k").as_deref(), Some("new"), "{}", s.name());
        s.reopen();
        assert_eq!(
            read(s.engine(), "k").as_deref(),
            Some("new"),
            "{}",
            s.name()
        );
    }
}

#[test]
fn lww_with_versions_applied_out_of_order() {
    for mut s in subjects() {
        let e = s.engine();
        assert_eq!(e.apply("k", val("v3", 3, 1)).unwrap(), Applied::Stored);
        assert_eq!(e.apply("k", val("v1", 1, 1)).unwrap(), Applied::Stale);
        assert_eq!(e.apply("k", val("v2", 2, 1)).unwrap(), Applied::Stale);
        // Idempotent: the same version again changes nothing.
        assert_eq!(e.apply("k", val("v3", 3, 1)).unwrap(), Applied::Stale);
        assert_eq!(read(e, "k").as_deref(), Some("v3"), "{}", s.name());
        s.reopen();
        let e = s.engine();
        assert_eq!(read(e, "k").as_deref(), Some("v3"), "{}", s.name());
        assert_eq!(e.apply("k", val("v2", 2, 1)).unwrap(), Applied::Stale);
        assert_eq!(e.version_of("k"), Some(ver(NOW + 3, 0, 1)));
    }
}

#[test]
fn equal_hlc_is_broken_by_node_id() {
    for mut s in subjects() {
        let e = s.engine();
        e.apply("k", val("from-2", 5, 2)).unwrap();
        assert_eq!(e.apply("k", val("from-1", 5, 1)).unwrap(), Applied::Stale);
        assert_eq!(e.apply("k", val("from-3", 5, 3)).unwrap(), Applied::Stored);
        s.reopen();
        assert_eq!(
            read(s.engine(), "k").as_deref(),
            Some("from-3"),
            "{}",
            s.name()
        );
    }
}

#[test]
fn ttl_expiry_is_honoured_on_read_and_after_reopen() {
    for mut s in subjects() {
        let e = s.engine();
        let entry = Entry::expiring(&b"short"[..], ver(NOW, 0, 1), NOW + 1000);
        e.apply("t", entry.clone()).unwrap();
        assert!(e.get("t", NOW + 999).unwrap().is_some(), "{}", s.name());
        assert!(e.get("t", NOW + 1000).unwrap().is_none(), "{}", s.name());
        // The raw entry is still kept (LWW must still compare against it).
        assert_eq!(e.get_entry("t").unwrap(), Some(entry.clone()));
        assert_eq!(
            e.apply("t", Entry::value(&b"older"[..], ver(NOW - 1, 0, 1)))
                .unwrap(),
            Applied::Stale
        );
        s.reopen();
        let e = s.engine();
        assert!(e.get("t", NOW + 500).unwrap().is_some(), "{}", s.name());
        assert!(e.get("t", NOW + 5000).unwrap().is_none(), "{}", s.name());
    }
}

#[test]
fn tombstones_keep_their_version_and_block_older_writes() {
    for mut s in subjects() {
        let e = s.engine();
        e.apply("k", val("v", 1, 1)).unwrap();
        e.apply("k", Entry::tombstone(ver(NOW + 5, 0, 1))).unwrap();
        assert_eq!(e.apply("k", val("late", 3, 1)).unwrap(), Applied::Stale);
        assert_eq!(
            e.get_entry("k").unwrap(),
            Some(Entry::tombstone(ver(NOW + 5, 0, 1)))
        );
        assert!(e.keys().contains(&"k".to_string()));
        s.reopen();
        let e = s.engine();
        assert_eq!(
            e.get_entry("k").unwrap(),
            Some(Entry::tombstone(ver(NOW + 5, 0, 1))),
            "{}",
            s.name()
        );
        assert_eq!(e.apply("k", val("newer", 6, 1)).unwrap(), Applied::Stored);
        assert_eq!(read(e, "k").as_deref(), Some("newer"));
    }
}

#[test]
fn remove_up_to_forgets_only_old_versions_and_survives_reopen() {
    for mut s in subjects() {
        let e = s.engine();
        e.apply("a", val("a", 5, 1)).unwrap();
        e.apply("b", val("b", 9, 1)).unwrap();
        assert!(e.remove("a", ver(NOW + 5, 0, 1)).unwrap());
        assert!(!e.remove("b", ver(NOW + 5, 0, 1)).unwrap(), "newer is kept");
        assert!(!e.remove("zzz", ver(NOW + 5, 0, 1)).unwrap());
        assert_eq!(e.get_entry("a").unwrap(), None);
        s.reopen();
        let e = s.engine();
        assert_eq!(e.get_entry("a").unwrap(), None, "{}", s.name());
        assert_eq!(read(e, "b").as_deref(), Some("b"));
        // After a removal, an older version may be stored again (the range came back).
        assert_eq!(e.apply("a", val("a-again", 2, 1)).unwrap(), Applied::Stored);
        s.reopen();
        assert_eq!(
            read(s.engine(), "a").as_deref(),
            Some("a-again"),
            "{}",
            s.name()
        );
    }
}

#[test]
fn max_version_is_the_highest_ever_applied_and_recovered_at_open() {
    for mut s in subjects() {
        let e = s.engine();
        e.apply("a", val("1", 10, 1)).unwrap();
        e.apply("b", val("2", 20, 4)).unwrap();
        e.apply("a", val("3", 15, 9)).unwrap();
        assert_eq!(e.max_version(), ver(NOW + 20, 0, 4));
        s.reopen();
        if s.is_durable() {
            assert_eq!(s.engine().max_version(), ver(NOW + 20, 0, 4));
        }
    }
}

#[test]
fn batches_apply_in_order_with_lww() {
    for s in subjects() {
        let e = s.engine();
        let out = e
            .apply_batch(vec![
                ("x".into(), val("2", 2, 1)),
                ("x".into(), val("1", 1, 1)),
                ("y".into(), val("y", 1, 1)),
            ])
            .unwrap();
        assert_eq!(out, vec![Applied::Stored, Applied::Stale, Applied::Stored]);
        assert_eq!(read(e, "x").as_deref(), Some("2"), "{}", s.name());
    }
}

#[test]
fn stats_count_keys_and_dead_bytes() {
    for s in subjects() {
        let e = s.engine();
        e.apply("a", val("1", 1, 1)).unwrap();
        e.apply("a", val("2", 2, 1)).unwrap();
        e.apply("b", val("3", 3, 1)).unwrap();
        let st = e.stats();
        assert_eq!(st.keys, 2, "{}", s.name());
        assert!(
            st.live_bytes > 0 && st.dead_bytes > 0,
            "{}: {st:?}",
            s.name()
        );
    }
}

// ---- Log only ----

#[test]
fn a_data_directory_open_elsewhere_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
    let err = Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap_err();
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    drop(first);
    Log::open(config(dir.path(), FsyncPolicy::Never)).unwrap();
}

#[test]
fn invalid_entries_are_refused_naming_the_field_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), FsyncPolicy::Never);
    cfg.max_key_bytes = 8;
    cfg.max_value_bytes = 16;
    let log = Log::open(cfg).unwrap();
    let cases: [(&str, usize, &str); 3] = [
        ("", 1, "key"),
        ("123456789", 1, "limit of 8"),
        ("k", 17, "limit of 16"),
    ];
    for (key, value_len, expect) in cases {
        let err = log
            .apply(key, Entry::value(vec![0u8; value_len], ver(NOW, 0, 1)))
            .unwrap_err();
        assert!(
            matches!(err, StorageError::Invalid { .. }) && err.to_string().contains(expect),
            "{key:?}/{value_len}: {err}"
        );
    }
    assert_eq!(log.stats().keys, 0);
}

#[test]
fn every_fsync_policy_keeps_writes_across_a_clean_reopen() {
    for policy in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Subject::log_with(config(dir.path(), policy));
        for i in 0..200u64 {
            s.engine()
                .apply(&format!("k{i}"), val(&format!("v{i}"), i, 1))
                .unwrap();
        }
        s.reopen();
        for i in 0..200u64 {
            assert_eq!(
                read(s.engine(), &format!("k{i}")),
                Some(format!("v{i}")),
                "{policy}"
            );
        }
        assert!(s.engine().stats().segments > 1, "small segments rotated");
    }
}

#[test]
fn snapshot_makes_reopen_skip_replay_and_stays_correct() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Subject::log_with(config(dir.path(), FsyncPolicy::Never));
    for i in 0..300u64 {
        s.engine()
            .apply(&format!("k{}", i % 100), val(&format!("v{i}"), i, 1))
            .unwrap();
    }
    s.engine().remove("k7", ver(NOW + 1_000_000, 0, 1)).unwrap();
    s.engine().snapshot().unwrap();
    // Writes after the snapshot are replayed on top of it.
    s.engine().apply("k1", val("after", 1000, 1)).unwrap();
    s.engine().remove("k2", ver(NOW + 1_000_000, 0, 1)).unwrap();
    s.reopen();
    let e = s.engine();
    assert!(
        e.stats().records_recovered <= 2,
        "only the tail is replayed: {:?}",
        e.stats()
    );
    assert_eq!(read(e, "k1").as_deref(), Some("after"));
    assert_eq!(read(e, "k2"), None);
    assert_eq!(read(e, "k7"), None);
    assert_eq!(read(e, "k99").as_deref(), Some("v299"));
    assert_eq!(e.stats().keys, 98);
    assert_eq!(e.max_version(), ver(NOW + 1000, 0, 1));
}

#[test]
fn compaction_reclaims_dead_bytes_and_drops_old_tombstones_only_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), FsyncPolicy::Never);
    cfg.tombstone_grace = Duration::from_secs(60);
    let mut s = Subject::log_with(cfg);
    for round in 0..5u64 {
        for i in 0..50u64 {
            s.engine()
                .apply(
                    &format!("k{i}"),
                    val(&format!("v{round}-{i}"), round * 100 + i, 1),
                )
                .unwrap();
        }
    }
    s.engine()
        .apply("gone", Entry::tombstone(ver(NOW + 1000, 0, 1)))
        .unwrap();
    s.engine().apply("moved", val("m", 1000, 1)).unwrap();
    s.engine().remove("moved", ver(NOW + 1000, 0, 1)).unwrap();
    let before = s.engine().stats();
    assert!(before.dead_bytes > 0);

    // Within the grace period the tombstone stays.
    s.engine().compact(NOW + 1000 + 59_000).unwrap();
    let mid = s.engine().stats();
    assert!(
        mid.dead_bytes < before.dead_bytes / 4,
        "{before:?} -> {mid:?}"
    );
    assert!(s.engine().get_entry("gone").unwrap().is_some());
    // After it, the tombstone goes.
    s.engine().compact(NOW + 1000 + 61_000).unwrap();
    assert_eq!(s.engine().get_entry("gone").unwrap(), None);
    for reopen in [false, true] {
        if reopen {
            s.reopen();
        }
        let e = s.engine();
        for i in 0..50u64 {
            assert_eq!(
                read(e, &format!("k{i}")),
                Some(format!("v4-{i}")),
                "reopen {reopen}"
            );
        }
        assert_eq!(e.get_entry("gone").unwrap(), None);
        assert_eq!(e.get_entry("moved").unwrap(), None);
        assert_eq!(e.stats().keys, 50);
        assert_eq!(
            e.max_version(),
            ver(NOW + 1000, 0, 1),
            "floor survives dropped records"
        );
    }
}

/// The policy decides for entries past the grace period: one that refuses keeps a tombstone and
/// an expired value however old (the node refuses until a repair of their range started after
/// them), one that allows drops exactly those it is asked about.
struct Only(&'static str);

impl CollectPolicy for Only {
    fn may_collect(&self, key: &str, _since_ms: u64) -> bool {
        key == self.0
    }
}

#[test]
fn compaction_keeps_what_its_policy_refuses_past_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), FsyncPolicy::Never);
    cfg.tombstone_grace = Duration::from_secs(60);
    let s = Subject::log_with(cfg);
    let e = s.engine();
    e.apply("deleted-a", Entry::tombstone(ver(NOW, 0, 1)))
        .unwrap();
    e.apply("deleted-b", Entry::tombstone(ver(NOW, 0, 1)))
        .unwrap();
    let mut expiring = val("x", 10, 1);
    expiring.expires_at_ms = NOW;
    e.apply("expired", expiring).unwrap();
    let late = NOW + 3_600_000;
    e.compact_with(late, &Only("none")).unwrap();
    for k in ["deleted-a", "deleted-b", "expired"] {
        assert!(
            e.get_entry(k).unwrap().is_some(),
            "{k} collected against the policy"
        );
    }
    e.compact_with(late, &Only("deleted-b")).unwrap();
    assert!(e.get_entry("deleted-a").unwrap().is_some());
    assert_eq!(e.get_entry("deleted-b").unwrap(), None);
    assert!(e.get_entry("expired").unwrap().is_some());
}

#[test]
fn a_corrupt_snapshot_is_set_aside_and_the_log_replayed() {
    for corruption in ["truncate", "flip"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), FsyncPolicy::Never);
        {
            let log = Log::open(cfg.clone()).unwrap();
            for i in 0..100u64 {
                log.apply(&format!("k{i}"), val(&format!("v{i}"), i, 1))
                    .unwrap();
            }
            log.snapshot().unwrap();
        }
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        match corruption {
            "truncate" => bytes.truncate(bytes.len() / 2),
            _ => {
                let at = bytes.len() / 3;
                bytes[at] ^= 0x10;
            }
        }
        std::fs::write(&path, bytes).unwrap();
        let log = Log::open(cfg).unwrap();
        assert!(dir.path().join("snapshot.broken").exists(), "{corruption}");
        assert_eq!(log.stats().records_recovered, 100, "{corruption}");
        for i in 0..100u64 {
            assert_eq!(read(&log, &format!("k{i}")), Some(format!("v{i}")));
        }
    }
}

#[test]
fn compaction_due_follows_dead_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new(dir.path());
    cfg.fsync = FsyncPolicy::Never;
    cfg.compaction_min_dead_bytes = 1000;
    let log = Log::open(cfg).unwrap();
    log.apply("k", val("x", 0, 1)).unwrap();
    assert!(!log.compaction_due());
    for i in 1..100u64 {
        log.apply("k", val("some value", i, 1)).unwrap();
    }
    assert!(log.compaction_due(), "{:?}", log.stats());
    log.compact(NOW).unwrap();
    assert!(!log.compaction_due(), "{:?}", log.stats());
    assert_eq!(log.version_of("k"), Some(Version::new((NOW + 99) << 16, 1)));
}
