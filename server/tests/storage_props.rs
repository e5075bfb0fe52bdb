//! Property test: random sequences of put/delete/remove/batch/reopen/snapshot/compact run on
//! `Log` and `Memory` side by side, comparing every key after every step.

mod storage_common;

use kvstore_server::storage::{Engine, Entry, FsyncPolicy, Log, Memory, Version};
use proptest::prelude::*;
use storage_common::{NOW, config};

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        ms: u64,
        node: u32,
        len: usize,
        ttl: Option<u64>,
    },
    Delete {
        key: u8,
        ms: u64,
        node: u32,
    },
    Remove {
        key: u8,
        ms: u64,
        node: u32,
    },
    Batch(Vec<(u8, u64, u32)>),
    Reopen,
    Snapshot,
    Compact,
}

const KEYS: u8 = 8;

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS;
    let ms = 0..40u64;
    let node = 0..3u32;
    prop_oneof![
        6 => (key.clone(), ms.clone(), node.clone(), 0..300usize, proptest::option::of(1..60u64))
            .prop_map(|(key, ms, node, len, ttl)| Op::Put { key, ms, node, len, ttl }),
        2 => (key.clone(), ms.clone(), node.clone()).prop_map(|(key, ms, node)| Op::Delete { key, ms, node }),
        1 => (key.clone(), ms.clone(), node.clone()).prop_map(|(key, ms, node)| Op::Remove { key, ms, node }),
        1 => proptest::collection::vec((key, ms, node), 1..5).prop_map(Op::Batch),
        1 => Just(Op::Reopen),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Compact),
    ]
}

fn version(ms: u64, node: u32) -> Version {
    Version::new((NOW + ms) << 16, node)
}

fn value(key: u8, ms: u64, node: u32, len: usize) -> Vec<u8> {
    let seed = format!("{key}/{ms}/{node}/");
    seed.bytes().cycle().take(len.max(1)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_reads_exactly_what_memory_reads(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), FsyncPolicy::Never);
        // A tight cache budget (about 600 bytes a shard) so that cached, uncached and
        // over-budget values all occur; values above 256 bytes are never cached.
        cfg.cache_bytes = 256 * 600;
        let mut log = Some(Log::open(cfg.clone()).unwrap());
        let mem = Memory::new();
        let read_at = NOW + 30;
        for (step, op) in ops.iter().enumerate() {
            let l = log.as_ref().unwrap();
            match op {
                Op::Put { key, ms, node, len, ttl } => {
                    let mut e = Entry::value(value(*key, *ms, *node, *len), version(*ms, *node));
                    e.expires_at_ms = ttl.map_or(0, |t| NOW + t);
                    let k = format!("k{key}");
                    prop_assert_eq!(l.apply(&k, e.clone()).unwrap(), mem.apply(&k, e).unwrap());
                }
                Op::Delete { key, ms, node } => {
                    let e = Entry::tombstone(version(*ms, *node));
                    let k = format!("k{key}");
                    prop_assert_eq!(l.apply(&k, e.clone()).unwrap(), mem.apply(&k, e).unwrap());
                }
                Op::Remove { key, ms, node } => {
                    let k = format!("k{key}");
                    let v = version(*ms, *node);
                    prop_assert_eq!(l.remove(&k, v).unwrap(), mem.remove(&k, v).unwrap());
                }
                Op::Batch(items) => {
                    let batch: Vec<(String, Entry)> = items
                        .iter()
                        .map(|(key, ms, node)| {
                            (format!("k{key}"), Entry::value(value(*key, *ms, *node, 20), version(*ms, *node)))
                        })
                        .collect();
                    prop_assert_eq!(l.apply_batch(batch.clone()).unwrap(), mem.apply_batch(batch).unwrap());
                }
                Op::Reopen => {
                    drop(log.take());
                    log = Some(Log::open(cfg.clone()).unwrap());
                }
                Op::Snapshot => l.snapshot().unwrap(),
                Op::Compact => l.compact(read_at).unwrap(),
            }
            let l = log.as_ref().unwrap();
            for key in 0..KEYS {
                let k = format!("k{key}");
                prop_assert_eq!(l.get_entry(&k).unwrap(), mem.get_entry(&k).unwrap(), "step {} {:?} key {}", step, op, k);
                prop_assert_eq!(l.get(&k, read_at).unwrap(), mem.get(&k, read_at).unwrap());
                prop_assert_eq!(l.version_of(&k), mem.version_of(&k));
            }
            let mut lk = l.keys();
            let mut mk = mem.keys();
            lk.sort();
            mk.sort();
            prop_assert_eq!(lk, mk);
            prop_assert_eq!(l.max_version(), mem.max_version());
        }
    }
}
