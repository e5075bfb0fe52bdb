//! `loadgen run` on a scenario with a partition and a lossy link, end to end: the run enters a
//! network namespace of its own (the command is run from outside one), the timeline cuts node
//! 2 off and heals it at `until_s`, drops packets on link 0->1 and restores it, `faults.csv`
//! lists the links cut and the packets dropped, `phases.csv` names both faults, the history is
//! VALID, and no rule is left in this (the caller's) namespace. Needs root, unshare and
//! iptables; elsewhere it skips with the reason (and fails under CI=true, which installs them).

use std::process::Command;

const SCENARIO: &str = r#"
[cluster]
nodes = 3
replication = 3
read_quorum = 2
write_quorum = 2

[workload]
record_count = 20
read = 0.5
update = 0.5
value_size = 32

[run]
clients = 2
in_flight = 2
duration_s = 8
warmup_s = 0
echo_s = 0
seed = 9
request_timeout_ms = 1000
record_history = true

[[fault]]
at_s = 1.0
kind = "partition"
action = "isolate"
node = 2
until_s = 3.0

[[fault]]
at_s = 4.0
kind = "link"
action = "loss"
node = 0
to = 1
probability = 0.5
until_s = 6.0
"#;

#[test]
fn a_run_with_a_partition_and_a_lossy_link_cuts_heals_and_judges() {
    if let Err(why) = loadgen::cluster::partition::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "partition run cannot run in CI: {why}"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let results = dir.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--quiet", "--results"])
        .arg(&results)
        .arg(&file)
        .env_remove(loadgen::netns::INSIDE_ENV)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[CHECKER], Verdict, VALID"), "{stdout}");
    let run_dir = std::fs::read_dir(results.join("cut"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let faults = std::fs::read_to_string(run_dir.join("faults.csv")).unwrap();
    let rows: Vec<Vec<&str>> = faults
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let actions: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(actions, ["isolate", "heal", "loss", "restore"], "{faults}");
    assert!(
        rows.iter().all(|r| r[3].is_empty()),
        "no fault failed: {faults}"
    );
    assert_eq!(rows[0][5], "cut 0->2 1->2 2->0 2->1", "{faults}");
    let dropped: u64 = rows[3][5]
        .strip_prefix("restored;packets_dropped=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("restore detail: {faults}"));
    assert!(dropped > 0, "the lossy link dropped packets: {faults}");
    let phases = std::fs::read_to_string(run_dir.join("phases.csv")).unwrap();
    assert!(phases.contains("isolate node 2 + heal,2,"), "{phases}");
    assert!(phases.contains("loss node 0 + restore,0,"), "{phases}");
    // The rules lived in the run's namespace: its chains are not here.
    let here = Command::new("iptables").arg("-S").output().unwrap();
    let here = String::from_utf8_lossy(&here.stdout);
    assert!(
        !here.contains(loadgen::cluster::partition::LINK_CHAIN),
        "the run's chains leaked into the caller's namespace:\n{here}"
    );
}

const SLOW: &str = r#"
[cluster]
nodes = 3
replication = 3
read_quorum = 2
write_quorum = 2

[workload]
record_count = 20
read = 0.5
update = 0.5
value_size = 32

[run]
clients = 2
in_flight = 2
duration_s = 8
warmup_s = 0
echo_s = 0
seed = 9
request_timeout_ms = 2000
record_history = true

[[fault]]
at_s = 1.0
kind = "link"
action = "slow"
node = 0
to = 1
delay_ms = 100
jitter_ms = 20
until_s = 6.0
"#;

/// A slow link end to end: node 0's connections to node 1 run through the link's proxy from
/// the start (the proxy counts their bytes), the fault shapes them and the restore sets them
/// back to full speed, `faults.csv` and `phases.csv` name it, and the history is VALID.
#[test]
fn a_run_with_a_slow_link_steers_shapes_restores_and_judges() {
    if let Err(why) = loadgen::cluster::partition::available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "slow link run cannot run in CI: {why}"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.toml");
    std::fs::write(&file, SLOW).unwrap();
    let results = dir.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--quiet", "--results"])
        .arg(&results)
        .arg(&file)
        .env_remove(loadgen::netns::INSIDE_ENV)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[CHECKER], Verdict, VALID"), "{stdout}");
    let run_dir = std::fs::read_dir(results.join("slow"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let faults = std::fs::read_to_string(run_dir.join("faults.csv")).unwrap();
    let rows: Vec<Vec<&str>> = faults
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let actions: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(actions, ["slow", "restore"], "{faults}");
    assert!(
        rows.iter().all(|r| r[3].is_empty()),
        "no fault failed: {faults}"
    );
    assert!(
        rows[0][5].starts_with("link 0->1;delay_ms=100;jitter_ms=20;bytes_so_far="),
        "{faults}"
    );
    let before: u64 = rows[0][5]
        .rsplit_once('=')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap();
    let after: u64 = rows[1][5]
        .split_once("full_speed=0->1:bytes=")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("restore detail: {faults}"));
    assert!(
        before > 0,
        "node 0's connections to node 1 were steered through the proxy from the start: {faults}"
    );
    assert!(after > before, "the slowed link carried traffic: {faults}");
    let phases = std::fs::read_to_string(run_dir.join("phases.csv")).unwrap();
    assert!(phases.contains("slow node 0 + restore,0,"), "{phases}");
}
