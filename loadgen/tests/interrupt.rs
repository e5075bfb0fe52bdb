//! Ctrl-C in the middle of a run: `loadgen run` stops every node process it started, removes
//! their data directories, says it was interrupted and exits with a failure. Linux only: the
//! node processes are found through /proc.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough that the interrupt always lands mid-run.
const SCENARIO: &str = r#"
description = "interrupt test"

[cluster]
nodes = 3
replication = 3
read_quorum = 2
write_quorum = 2
fsync = "never"

[workload]
record_count = 100
read = 0.8
update = 0.2
distribution = "uniform"
value_size = "1KiB"

[run]
clients = 1
in_flight = 2
duration_s = 90
warmup_s = 0
echo_s = 0
seed = 3
"#;

/// Generous: the machine may be busy compiling.
const DEADLINE: Duration = Duration::from_secs(120);

/// A node process of the run: its PID, address and data directory.
struct NodeSeen {
    pid: u32,
    addr: String,
    data_dir: PathBuf,
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The `loadgen node` children of `parent` that are running.
fn nodes_of(parent: u32) -> Vec<NodeSeen> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
        return Vec::new();
    };
    let mut nodes = Vec::new();
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
            let Some(args) = cmdline(pid) else { continue };
            if args.get(1).map(String::as_str) != Some("node") {
                continue;
            }
            let flag = |name: &str| {
                let at = args.iter().position(|a| a == name)?;
                args.get(at + 1).cloned()
            };
            if let (Some(addr), Some(dir)) = (flag("--listen"), flag("--data-dir")) {
                nodes.push(NodeSeen {
                    pid,
                    addr,
                    data_dir: PathBuf::from(dir),
                });
            }
        }
    }
    nodes
}

/// Whether `pid` is still the node process it was (not exited, not a zombie, not reused).
fn still_running(node: &NodeSeen) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", node.pid)) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    let same = cmdline(node.pid)
        .is_some_and(|args| args.iter().any(|a| Path::new(a) == node.data_dir.as_path()));
    state != Some('Z') && same
}

/// Keys node `addr` stores, 0 while it cannot say.
fn keys_stored(addr: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = kvstore_client::ClientConfig::with_seeds([addr]);
        let Ok(client) = kvstore_client::Client::connect(config).await else {
            return 0;
        };
        client.status(addr).await.map_or(0, |s| s.keys)
    })
}

#[test]
fn ctrl_c_stops_every_node_and_removes_their_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("interrupt.toml");
    std::fs::write(&scenario, SCENARIO).expect("write scenario");
    let stderr_path = dir.path().join("stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut loadgen = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg("--quiet")
        .arg("--results")
        .arg(dir.path().join("results"))
        .arg(&scenario)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start loadgen");
    let pid = loadgen.id();

    // Every node started, then the records loaded (node 1 stores all 100, N = 3 of 3): the
    // measured run is under way.
    let until = Instant::now() + DEADLINE;
    let nodes = loop {
        let nodes = nodes_of(pid);
        if nodes.len() == 3 && keys_stored(&nodes[0].addr) >= 100 {
            break nodes;
        }
        if let Ok(Some(status)) = loadgen.try_wait() {
            panic!(
                "loadgen ended before the interrupt ({status}): {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < until,
            "loadgen never had its 3 nodes running"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // SAFETY: kill(2) on the PID of the child this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let until = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = loadgen.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= until {
            let _ = loadgen.kill();
            panic!("loadgen did not exit within {DEADLINE:?} of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(!status.success(), "an interrupted run is not a success");
    assert!(said.contains("interrupted"), "stderr: {said}");
    for node in &nodes {
        assert!(
            !still_running(node),
            "node process {} outlived loadgen",
            node.pid
        );
        assert!(
            !node.data_dir.exists(),
            "{} was not removed",
            node.data_dir.display()
        );
    }
}
