//! No acknowledged write hidden by a clock that runs ahead: one real node of three started an
//! hour ahead under libfaketime.
//!
//! Reproduces a defect seen on a 3-node cluster with default flags: the node an hour ahead
//! kept its own +1 h copy of a write its peers refused, read repair spread it, and every later
//! acknowledged write to the key was hidden for the hour.

mod cluster_support;

use std::path::Path;
use std::time::Duration;

use cluster_support::*;
use kvstore_proto::pb;
use kvstore_proto::pb::Consistency::{All, Quorum};

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const HOUR_MS: u64 = 3_600_000;

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn physical_ms(hlc: u64) -> u64 {
    hlc >> 16
}

/// Versions of `key` stored on each node, with their physical time.
async fn stored(addrs: &[String], key: &str) -> Vec<Option<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(local(a, key).await.map(|e| {
            let v = e.version.expect("version");
            (physical_ms(v.hlc), e.value.to_vec())
        }));
    }
    out
}

/// Whether libfaketime is here. Elsewhere the test skips with a printed reason; in CI (which
/// installs it) a missing library fails the test rather than let it pass unseen.
fn faketime_available() -> bool {
    if Path::new(FAKETIME_LIB).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{FAKETIME_LIB} missing in CI: .ci/run should have installed libfaketime"
    );
    eprintln!("SKIPPED: {FAKETIME_LIB} missing (apt-get install libfaketime; .ci/run does)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_an_hour_ahead_hides_no_acknowledged_write() {
    if !faketime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n1 = start_node(1, "127.0.0.1:0", dir.path().join("n1"), &[]);
    let join = vec!["--join".to_string(), n1.addr.clone()];
    let n2 = start_node(2, "127.0.0.1:0", dir.path().join("n2"), &join);
    let n3 = start_node_with_env(
        3,
        "127.0.0.1:0",
        dir.path().join("n3"),
        &join,
        &[
            ("LD_PRELOAD", FAKETIME_LIB),
            ("FAKETIME", "+1h"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let addrs = vec![n1.addr.clone(), n2.addr.clone(), n3.addr.clone()];
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;

    // The fast node knows its clock is wrong, says why, and tells the cluster.
    let s3 = wait_for(
        "node 3 to judge its clock unhealthy",
        CONVERGE_DEADLINE,
        || async {
            let s = status(&addrs[2]).await;
            (s.clock.as_ref().is_some_and(|c| c.state == "unhealthy")).then_some(s)
        },
    )
    .await;
    let clock = s3.clock.unwrap();
    assert!(
        clock.reason.contains("majority"),
        "reason names the majority: {}",
        clock.reason
    );
    assert!(
        clock
            .offsets
            .iter()
            .all(|o| o.offset_ms < -(HOUR_MS as i64) + 60_000),
        "both peers measured about an hour behind: {:?}",
        clock.offsets
    );
    let s1 = status(&addrs[0]).await;
    assert_eq!(s1.clock.unwrap().state, "healthy");
    wait_for(
        "node 1 to see node 3's clock condition in gossip",
        CONVERGE_DEADLINE,
        || async {
            let s = status(&addrs[0]).await;
            s.members
                .iter()
                .any(|m| m.id == 3 && m.clock_unhealthy)
                .then_some(())
        },
    )
    .await;

    // 1. A write through the fast node is refused before anything is stored anywhere.
    let mut c3 = kv(&addrs[2]).await;
    let err = put(&mut c3, "k", "from-the-future", Quorum)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    assert_eq!(outcome(&err), "failed", "{}", err.message());
    assert!(err.message().contains("clock"), "{}", err.message());
    assert_eq!(
        stored(&addrs, "k").await,
        vec![None, None, None],
        "a refused write left a copy behind"
    );

    // 2. A version an hour ahead reaches node 3 anyway (as from before the fix, or from a
    //    client of an older node): node 3's own clock accepts it.
    let now = wall_ms();
    let future = pb::Version {
        hlc: (now + HOUR_MS) << 16,
        node: 3,
    };
    let write = |value: &str, version: pb::Version| pb::ReplicateRequest {
        key: "k".into(),
        value: value.as_bytes().to_vec().into(),
        timestamp: version.hlc,
        version: Some(version),
        ..Default::default()
    };
    let r = internal(&addrs[2])
        .await
        .replicate(write("from-the-future", future))
        .await
        .unwrap()
        .into_inner();
    assert!(r.success, "node 3 (an hour ahead) takes it: {}", r.error);
    // Node 1 refuses it as a replica, with a typed refusal.
    let r = internal(&addrs[0])
        .await
        .replicate(write("from-the-future", future))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.success);
    assert_eq!(r.refusal(), pb::Refusal::ClockSkew, "{}", r.error);
    assert!(!r.maybe_applied);

    // 3. An acknowledged write through a healthy node is what every read returns, and read
    //    repair never copies the future version onto the healthy replicas.
    let mut c1 = kv(&addrs[0]).await;
    let ack = put(&mut c1, "k", "acknowledged", All).await;
    // ALL includes node 3, which keeps its future copy (LWW): the write cannot be acknowledged
    // by all three, so use QUORUM for the acknowledged write when ALL is refused.
    if ack.is_err() {
        put(&mut c1, "k", "acknowledged", Quorum)
            .await
            .expect("QUORUM put through a healthy node");
    }
    let mut c2 = kv(&addrs[1]).await;
    // The fast node cannot tell a future version from a current one: it coordinates no reads.
    let err = get(&mut c3, "k", Quorum).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{}", err.message());
    assert!(err.message().contains("clock"), "{}", err.message());
    for (name, c) in [("node 1", &mut c1), ("node 2", &mut c2)] {
        for level in [Quorum, All] {
            match get(c, "k", level).await {
                Ok(got) => assert_eq!(
                    got.value,
                    b"acknowledged".as_slice(),
                    "get at {level:?} through {name} returned {:?}",
                    String::from_utf8_lossy(&got.value)
                ),
                // ALL cannot be met when node 3's answer is unusable: a failure, never the
                // future value.
                Err(e) => assert_eq!(level, All, "get at {level:?} through {name}: {e}"),
            }
        }
    }
    // Give background read repair time to act, then look at the stored copies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let copies = stored(&addrs, "k").await;
    for (i, c) in copies.iter().take(2).enumerate() {
        let (pt, value) = c.clone().unwrap_or_else(|| panic!("node {} lost k", i + 1));
        assert!(
            pt < wall_ms() + 1_000,
            "node {} stores a version {} ms ahead (value {:?})",
            i + 1,
            pt.saturating_sub(wall_ms()),
            String::from_utf8_lossy(&value)
        );
        assert_eq!(value, b"acknowledged", "node {}", i + 1);
    }
    let s1 = status(&addrs[0]).await;
    let s2 = status(&addrs[1]).await;
    assert!(
        s1.clock_skew_rejections + s2.clock_skew_rejections > 0,
        "refusals are counted"
    );
    drop((n1, n2, n3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_by_a_node_behind_are_hinted_and_arrive_once_its_clock_is_fixed() {
    if !faketime_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Node 3's clock is an hour behind, through a timestamp file libfaketime re-reads, so the
    // test can fix the clock while the node runs.
    let clock_file = dir.path().join("n3.faketime");
    std::fs::write(&clock_file, "-1h\n").unwrap();
    let n1 = start_node(1, "127.0.0.1:0", dir.path().join("n1"), &[]);
    let join = vec!["--join".to_string(), n1.addr.clone()];
    let n2 = start_node(2, "127.0.0.1:0", dir.path().join("n2"), &join);
    let clock_path = clock_file.display().to_string();
    let n3 = start_node_with_env(
        3,
        "127.0.0.1:0",
        dir.path().join("n3"),
        &join,
        &[
            ("LD_PRELOAD", FAKETIME_LIB),
            ("FAKETIME_TIMESTAMP_FILE", &clock_path),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let addrs = vec![n1.addr.clone(), n2.addr.clone(), n3.addr.clone()];
    wait_states(&addrs, &[1, 2, 3], pb::MemberState::Up).await;

    // Writes through node 1 are acknowledged by nodes 1 and 2; node 3 refuses them (their
    // versions are an hour ahead of its clock). Its refusals are counted at the coordinator,
    // and the writes are hinted for it.
    let mut c1 = kv(&addrs[0]).await;
    for i in 0..10 {
        put(&mut c1, &format!("b{i}"), "v", Quorum)
            .await
            .expect("QUORUM put with one replica refusing");
    }
    let s1 = wait_for(
        "node 1 to count node 3's refusals",
        CONVERGE_DEADLINE,
        || async {
            let s = status(&addrs[0]).await;
            s.replica_refusals
                .iter()
                .any(|r| r.node == 3 && r.refusal() == pb::Refusal::ClockSkew)
                .then_some(s)
        },
    )
    .await;
    assert!(s1.hints_pending > 0, "refused writes were not hinted");
    for i in 0..10 {
        assert!(local(&addrs[2], &format!("b{i}")).await.is_none());
    }

    // The operator fixes node 3's clock: the kept hints are replayed and it holds every write,
    // with no read of those keys to repair them.
    std::fs::write(&clock_file, "+0\n").unwrap();
    wait_for(
        "node 3 to receive every hinted write",
        CONVERGE_DEADLINE,
        || async {
            for i in 0..10 {
                local(&addrs[2], &format!("b{i}")).await?;
            }
            Some(())
        },
    )
    .await;
    drop((n1, n2, n3));
}
