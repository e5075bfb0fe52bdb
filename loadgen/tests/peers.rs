//! Real-process tests of the peer bindings (issue 13): `redis-server` and `etcd` started from
//! PATH by loadgen's peer launcher, driven through the same `Store` trait as kvstore, faulted
//! by PID, and a recorded etcd run verified by the checker. A test whose binary is missing
//! skips with a printed reason (`.ci/run` installs `redis-server` and `etcd-server`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kvstore_checker::{CheckConfig, HistoryReader, check};
use kvstore_client::ErrorKind;
use loadgen::cluster::peers::{PeerCluster, find_on_path, wait_ready};
use loadgen::driver::OpReport;
use loadgen::driver::etcd::EtcdDriver;
use loadgen::driver::redis::{RedisDriver, RedisOptions};
use loadgen::driver::store::Store;
use loadgen::scenario::{ClusterSpec, StoreKind};

/// Generous: the machine is shared and busy.
const READY: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(5);

fn have(bin: &str, package: &str) -> bool {
    if find_on_path(bin).is_some() {
        return true;
    }
    eprintln!("skipping: `{bin}` is not on PATH (apt-get install {package})");
    false
}

fn spec(kind: StoreKind, nodes: u32, fsync: &str) -> ClusterSpec {
    ClusterSpec {
        kind,
        nodes,
        replication: nodes,
        read_quorum: nodes / 2 + 1,
        write_quorum: nodes / 2 + 1,
        fsync: fsync.into(),
        ..ClusterSpec::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn value(r: &OpReport) -> Option<&[u8]> {
    r.read_value.as_ref().and_then(|v| v.as_deref())
}

/// Retries `op` until it succeeds or `within` passes; returns the last report.
async fn eventually<F, Fut>(within: Duration, mut op: F) -> OpReport
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = OpReport>,
{
    let deadline = Instant::now() + within;
    loop {
        let r = op().await;
        if r.outcome.is_ok() || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn redis_put_get_delete_carry_increasing_versions_and_tombstones() {
    if !have("redis-server", "redis-server") {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let s = spec(StoreKind::Redis, 1, "never");
    let cluster = PeerCluster::start(&s, logs.path()).unwrap();
    let ep = cluster.endpoints();
    rt().block_on(async {
        wait_ready(StoreKind::Redis, &ep, READY).await.unwrap();
        let d = RedisDriver::connect(&ep, RedisOptions::for_spec(&s, TIMEOUT))
            .await
            .unwrap();
        let absent = d.get("k").await;
        assert_eq!(absent.outcome, Ok(()));
        assert_eq!(absent.read_value, Some(None));
        assert_eq!(absent.version, None);

        let w1 = d.put("k", "one".into(), None).await;
        let w2 = d.put("k", "two".into(), None).await;
        let (v1, v2) = (w1.version.unwrap(), w2.version.unwrap());
        assert!(v2 > v1, "{v1:?} then {v2:?}");
        let r = d.get("k").await;
        assert_eq!(value(&r), Some(&b"two"[..]));
        assert_eq!(r.version, Some(v2));

        let del = d.delete("k").await;
        let v3 = del.version.unwrap();
        assert!(v3 > v2);
        let r = d.get("k").await;
        assert_eq!(r.read_value, Some(None), "deleted");
        assert_eq!(
            r.version,
            Some(v3),
            "the tombstone keeps the delete's version"
        );

        // A TTL expires the value, as Redis's PX does.
        d.put("t", "short".into(), Some(200)).await.outcome.unwrap();
        let gone = eventually(Duration::from_secs(10), || async {
            let r = d.get("t").await;
            if value(&r).is_none() {
                r
            } else {
                OpReport::failed(ErrorKind::Other)
            }
        })
        .await;
        assert_eq!(gone.read_value, Some(None));
    });
}

#[test]
fn redis_primary_killed_and_restarted_keeps_what_it_acknowledged_with_appendfsync_always() {
    if !have("redis-server", "redis-server") {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    // One primary and one replica, WAIT 1.
    let s = spec(StoreKind::Redis, 2, "always");
    let mut cluster = PeerCluster::start(&s, logs.path()).unwrap();
    let ep = cluster.endpoints();
    let rt = rt();
    let d = rt.block_on(async {
        wait_ready(StoreKind::Redis, &ep, READY).await.unwrap();
        let d = RedisDriver::connect(&ep, RedisOptions::for_spec(&s, TIMEOUT))
            .await
            .unwrap();
        for i in 0..50 {
            let r = d.put(&format!("k{i}"), format!("v{i}").into(), None).await;
            assert_eq!(r.outcome, Ok(()), "put {i} with WAIT 1");
        }
        d
    });
    let pid = cluster.pids()[0].unwrap();
    cluster.kill(0).unwrap();
    assert_eq!(cluster.pids()[0], None, "killed process {pid} is gone");
    rt.block_on(async {
        let r = d.put("during", "x".into(), None).await;
        assert!(
            matches!(
                r.outcome,
                Err(ErrorKind::Unavailable | ErrorKind::UnknownOutcome)
            ),
            "a write to a killed primary fails: {:?}",
            r.outcome
        );
    });
    cluster.restart(0).unwrap();
    assert_ne!(cluster.pids()[0], Some(pid));
    rt.block_on(async {
        wait_ready(StoreKind::Redis, &ep, READY).await.unwrap();
        for i in 0..50 {
            let key = format!("k{i}");
            let r = eventually(READY, || d.get(&key)).await;
            assert_eq!(value(&r), Some(format!("v{i}").as_bytes()), "{key}");
        }
        // The replica has them too, once it resynced.
        d.wait_replicated(READY).await.unwrap();
        let r = d.get_at(&ep[1], "k49").await;
        assert_eq!(value(&r), Some(&b"v49"[..]));
    });
}

#[test]
fn etcd_put_get_delete_use_revisions() {
    if !have("etcd", "etcd-server") {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let s = spec(StoreKind::Etcd, 1, "always");
    let cluster = PeerCluster::start(&s, logs.path()).unwrap();
    let ep = cluster.endpoints();
    rt().block_on(async {
        wait_ready(StoreKind::Etcd, &ep, READY).await.unwrap();
        let d = EtcdDriver::connect(&ep, 0, TIMEOUT).await.unwrap();
        let w1 = d.put("k", "one".into(), None).await;
        let w2 = d.put("k", "two".into(), None).await;
        let (v1, v2) = (w1.version.unwrap(), w2.version.unwrap());
        assert!(v2 > v1);
        let r = d.get("k").await;
        assert_eq!(value(&r), Some(&b"two"[..]));
        assert_eq!(r.version, Some(v2), "a read reports the key's mod_revision");
        let del = d.delete("k").await;
        assert!(del.version.unwrap() > v2);
        let r = d.get("k").await;
        assert_eq!(r.read_value, Some(None));
        assert_eq!(r.version, None, "etcd keeps no tombstone");
        // The member read alone agrees.
        let w = d.put("k", "three".into(), None).await;
        let local = d.get_at(0, "k").await;
        assert_eq!(value(&local), Some(&b"three"[..]));
        assert_eq!(local.version, w.version);
    });
}

#[test]
fn etcd_keeps_serving_when_a_member_is_killed_and_takes_it_back() {
    if !have("etcd", "etcd-server") {
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let s = spec(StoreKind::Etcd, 3, "always");
    let mut cluster = PeerCluster::start(&s, logs.path()).unwrap();
    let ep = cluster.endpoints();
    let rt = rt();
    // This client starts on member 0, the one killed: it must move on.
    let d = rt.block_on(async {
        wait_ready(StoreKind::Etcd, &ep, READY).await.unwrap();
        let d = EtcdDriver::connect(&ep, 0, TIMEOUT).await.unwrap();
        d.put("before", "b".into(), None).await.outcome.unwrap();
        d
    });
    cluster.kill(0).unwrap();
    rt.block_on(async {
        let w = eventually(READY, || d.put("during", "d".into(), None)).await;
        assert_eq!(w.outcome, Ok(()), "two of three members still commit");
        assert_ne!(w.coordinator, ep[0]);
    });
    cluster.restart(0).unwrap();
    rt.block_on(async {
        wait_ready(StoreKind::Etcd, &ep, READY).await.unwrap();
        loadgen::cluster::peers::etcd_quiesce(&ep, READY)
            .await
            .unwrap();
        let r = d.get_at(0, "during").await;
        assert_eq!(value(&r), Some(&b"d"[..]), "the restarted member caught up");
    });
}

const ETCD_HISTORY: &str = r#"
description = "peers test: recorded etcd run with a member killed and restarted"

[cluster]
kind = "etcd"
nodes = 3
replication = 3
read_quorum = 2
write_quorum = 2
fsync = "always"

[workload]
record_count = 100
read = 0.5
update = 0.45
insert = 0.05
distribution = "zipfian"
value_size = 256

[run]
clients = 2
in_flight = 2
duration_s = 5
warmup_s = 1
echo_s = 0
request_timeout_ms = 3000
seed = 5
record_history = true

[[fault]]
at_s = 1
action = "kill"
node = 0

[[fault]]
at_s = 3
action = "restart"
node = 0
"#;

fn run_loadgen(dir: &Path, scenario: &str, extra: &[&str]) -> std::process::Output {
    let file = dir.join("s.toml");
    std::fs::write(&file, scenario).unwrap();
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--quiet", "--results"])
        .arg(dir.join("results"))
        .arg(&file)
        .args(extra)
        .output()
        .expect("loadgen runs")
}

#[test]
fn a_recorded_etcd_run_with_a_killed_member_is_valid_for_the_checker() {
    if !have("etcd", "etcd-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = run_loadgen(dir.path(), ETCD_HISTORY, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("etcd: 3 members"), "{stdout}");
    let history = std::fs::read_dir(dir.path().join("results/s"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("history.csv");
    let faults = std::fs::read_to_string(history.with_file_name("faults.csv")).unwrap();
    assert_eq!(
        faults.lines().count(),
        3,
        "kill and restart applied: {faults}"
    );
    let reader = HistoryReader::new(std::fs::File::open(&history).unwrap()).unwrap();
    let report = check(reader, &CheckConfig::default()).unwrap();
    assert!(report.violations().is_empty(), "{}", report.render_text(5));
    let s = &report.summary;
    assert!(
        s.keys_verified > 0 && s.keys_verified == s.keys,
        "{}",
        report.render_text(0)
    );
}

#[test]
fn a_missing_peer_binary_names_the_package_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = "[cluster]\nnodes = 1\nreplication = 1\nread_quorum = 1\nwrite_quorum = 1\n[run]\nduration_s = 1\necho_s = 0\n";
    let file = dir.path().join("s.toml");
    std::fs::write(&file, scenario).unwrap();
    for (target, package) in [("redis", "redis-server"), ("etcd", "etcd-server")] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["run", "--quiet", "--target", target, "--results"])
            .arg(dir.path().join("results"))
            .arg(&file)
            .env("PATH", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("apt-get install {package}")),
            "{target}: {stderr}"
        );
    }
}

#[test]
fn a_running_redis_named_by_endpoints_is_driven_and_recorded_without_being_launched() {
    if !have("redis-server", "redis-server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Started here, not by loadgen: the scenario only names its address.
    let cluster = PeerCluster::start(&spec(StoreKind::Redis, 1, "never"), dir.path()).unwrap();
    let ep = cluster.endpoints();
    rt().block_on(wait_ready(StoreKind::Redis, &ep, READY))
        .unwrap();
    let scenario = format!(
        "[cluster]\nkind = \"redis\"\nendpoints = [\"{}\"]\nreplication = 1\nread_quorum = 1\nwrite_quorum = 1\n\
         [workload]\nrecord_count = 50\nread = 0.5\nupdate = 0.5\nvalue_size = 64\n\
         [run]\nduration_s = 2\necho_s = 0\nseed = 3\nrecord_history = true\n",
        ep[0]
    );
    let out = run_loadgen(dir.path(), &scenario, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(dir.path().join("results/s"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!run.join("nodes").exists(), "nothing was launched");
    let reader = HistoryReader::new(std::fs::File::open(run.join("history.csv")).unwrap()).unwrap();
    let report = check(reader, &CheckConfig::default()).unwrap();
    assert!(report.violations().is_empty(), "{}", report.render_text(5));
    assert_eq!(
        report.summary.keys_verified,
        50,
        "{}",
        report.render_text(0)
    );
    // The server loadgen did not start is still running.
    let d = rt().block_on(RedisDriver::connect(
        &ep,
        RedisOptions::for_spec(&spec(StoreKind::Redis, 1, "never"), TIMEOUT),
    ));
    assert!(d.is_ok());
}
