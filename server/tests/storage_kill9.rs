//! kill -9 of a real node under write load, fsync `always` (the default): after a restart on
//! the same data directory every acknowledged write is there. One node with N = 1, so no other
//! replica, hint or read repair can bring a lost write back: what is read is what the node's
//! own log kept.

mod cluster_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cluster_support::*;
use kvstore_proto::pb::Consistency::One;

const WRITERS: usize = 8;
/// Acknowledged writes to collect before the kill.
const ACKED_BEFORE_KILL: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start_node(
        1,
        "127.0.0.1:0",
        dir.path().join("n1"),
        &["--replication-factor".into(), "1".into()],
    );
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (addr, acked, stop) = (node.addr.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut c = kv(&addr).await;
            let mut i = 0u64;
            // Overwrites too: half the puts go to keys this writer wrote before.
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}-k{}", if i % 2 == 0 { i } else { i / 4 });
                let value = format!("w{w}-v{i}");
                match put(&mut c, &key, &value, One).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(key, value);
                    }
                    // The node is gone: whatever was in flight has an unknown outcome.
                    Err(_) => return,
                }
                i += 1;
            }
        }));
    }
    wait_for("writes to be acknowledged", CONVERGE_DEADLINE, || {
        let n = acked.lock().unwrap().len();
        async move { (n >= ACKED_BEFORE_KILL).then_some(()) }
    })
    .await;

    // SIGKILL while the writers are still writing. Each writer has at most one put in flight,
    // unanswered: it may or may not have landed, and may overwrite an acknowledged key.
    node.kill();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let restarted = tokio::task::spawn_blocking(move || {
        node.restart().expect("restart on the same data directory");
        node
    })
    .await
    .unwrap();
    let mut c = kv(&restarted.addr).await;
    let mut unknown_overwrites = 0;
    for (key, value) in &acked {
        let got = get(&mut c, key, One).await.expect("get after restart");
        assert!(got.exists, "acknowledged {key} lost by kill -9");
        if got.value != value.as_bytes() {
            // Only a later put of the same writer, sent but unanswered at the kill, may have
            // replaced it: same writer, a higher sequence number.
            let newer = std::str::from_utf8(&got.value).unwrap();
            let seq = |v: &str| v.rsplit_once("-v").and_then(|(_, s)| s.parse::<u64>().ok());
            assert_eq!(
                newer.split_once('-').map(|(w, _)| w),
                value.split_once('-').map(|(w, _)| w),
                "{key}: another writer's value {newer}"
            );
            assert!(
                seq(newer) > seq(value),
                "{key}: holds {newer}, older than the acknowledged {value}"
            );
            unknown_overwrites += 1;
        }
    }
    // At most one put per writer was in flight when the node died.
    assert!(
        unknown_overwrites <= WRITERS,
        "{unknown_overwrites} keys hold values newer than their last acknowledged write"
    );
}
