//! A short real run: `loadgen run` starts three node processes (`loadgen node`), measures the
//! echo ceiling, loads, drives, pauses and resumes a node, and writes its results. Checks that
//! every file is there and that the counts agree: the time series sums to the summary, per
//! type and per error kind, and the overall row is the sum of the types.

use std::path::{Path, PathBuf};
use std::process::Command;

use loadgen::results::{summary, timeseries};

const SCENARIO: &str = r#"
description = "end-to-end test"

[cluster]
nodes = 3
replication = 3
read_quorum = 2
write_quorum = 2
fsync = "never"

[workload]
record_count = 200
read = 0.6
update = 0.3
delete = 0.1
distribution = "zipfian"
value_size = { min = 100, max = 2000 }

[run]
clients = 2
in_flight = 2
duration_s = 5
warmup_s = 1
echo_s = 1
seed = 7
request_timeout_ms = 3000

[[fault]]
at_s = 1.5
action = "pause"
node = 2

[[fault]]
at_s = 3
action = "resume"
node = 2
"#;

fn run(dir: &Path, scenario: &str, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, scenario).unwrap();
    let results = dir.join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--quiet", "--results"])
        .arg(&results)
        .arg(&file)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[OVERALL], Throughput(ops/sec)"),
        "{stdout}"
    );
    assert!(stdout.contains("[FAULT], "), "{stdout}");
    assert!(
        stdout.contains("[RESOURCES], ServerCpuPerOp(us), "),
        "{stdout}"
    );
    if scenario.contains("action = \"pause\"") {
        assert!(stdout.contains("[FAULT], pause node 2"), "{stdout}");
    }
    if scenario.contains("record_history = true") {
        assert!(stdout.contains("[CHECKER], Verdict, VALID\n"), "{stdout}");
    }
    let runs: Vec<PathBuf> = std::fs::read_dir(results.join(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    runs[0].clone()
}

#[test]
fn a_short_run_writes_every_file_and_the_counts_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run(tmp.path(), SCENARIO, "e2e");
    for f in [
        "scenario.toml",
        "summary.csv",
        "timeseries.csv",
        "latency.hlog",
        "service.hlog",
        "phases.csv",
        "faults.csv",
        "throughput.png",
        "latency.png",
        "percentiles.png",
        "nodes.csv",
        "resources.csv",
        "nodes.png",
        "nodes/node-0.log",
    ] {
        let p = dir.join(f);
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .len();
        assert!(len > 0, "{f} is empty");
    }
    for png in [
        "throughput.png",
        "latency.png",
        "percentiles.png",
        "nodes.png",
    ] {
        let bytes = std::fs::read(dir.join(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png} is not a PNG");
    }
    let resolved = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
    assert!(resolved.contains("seed = 7"), "{resolved}");
    let pids = check_node_samples(&dir, 3);
    assert!(
        pids.iter().all(|p| p.len() == 1),
        "one process per node: {pids:?}"
    );

    let sum = summary::read(&dir.join("summary.csv")).unwrap();
    let ts = timeseries::read(&dir.join("timeseries.csv")).unwrap();
    let ops: Vec<&str> = sum.iter().map(|r| r.op.as_str()).collect();
    assert_eq!(ops, ["read", "update", "delete", "overall"]);
    for row in &sum {
        let series_op = if row.op == "overall" {
            "all"
        } else {
            row.op.as_str()
        };
        let rows: Vec<_> = ts.iter().filter(|t| t.op == series_op).collect();
        assert!(!rows.is_empty(), "no time series for {}", row.op);
        let total = |f: fn(&timeseries::SeriesRow) -> u64| rows.iter().map(|t| f(t)).sum::<u64>();
        assert_eq!(total(|t| t.ok), row.count, "{}: ok", row.op);
        assert_eq!(
            total(|t| t.err_unavailable),
            row.err_unavailable,
            "{}: unavailable",
            row.op
        );
        assert_eq!(
            total(|t| t.err_unknown_outcome),
            row.err_unknown_outcome,
            "{}: unknown",
            row.op
        );
        assert_eq!(total(|t| t.err_other), row.err_other, "{}: other", row.op);
        assert!(
            row.efficiency.is_some_and(|e| e > 0.0),
            "{}: efficiency",
            row.op
        );
    }
    let overall = sum.last().unwrap();
    let types = &sum[..sum.len() - 1];
    assert_eq!(types.iter().map(|r| r.count).sum::<u64>(), overall.count);
    assert_eq!(
        types
            .iter()
            .map(|r| r.err_unavailable + r.err_unknown_outcome + r.err_other)
            .sum::<u64>(),
        overall.err_unavailable + overall.err_unknown_outcome + overall.err_other
    );
    assert!(overall.count > 0);
    assert!(overall.p50_us <= overall.p99_us && overall.p99_us <= overall.max_us);

    // The fault timeline was applied and its phases computed.
    let faults = std::fs::read_to_string(dir.join("faults.csv")).unwrap();
    assert_eq!(faults.lines().count(), 3, "{faults}");
    assert!(
        faults.contains(",pause,2,,,\n") && faults.contains(",resume,2,,,\n"),
        "{faults}"
    );
    let phases = std::fs::read_to_string(dir.join("phases.csv")).unwrap();
    assert!(
        phases
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("pause node 2 + resume,2,")),
        "{phases}"
    );
    // The interval log parses back with HdrHistogram's reader.
    let log = std::fs::read(dir.join("latency.hlog")).unwrap();
    let intervals = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log)
        .filter(|e| {
            matches!(
                e,
                Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(_))
            )
        })
        .count();
    assert!(intervals >= 5, "only {intervals} intervals");
}

/// Checks `nodes.csv` (exact header, about a row per node per second, RSS > 0, CPU never going
/// backwards for a pid) and `resources.csv`; returns each node's pids in order of appearance.
fn check_node_samples(dir: &Path, nodes: u32) -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("nodes.csv")).unwrap();
    assert_eq!(text.lines().next(), Some("t_s,node,pid,cpu_s,rss_bytes"));
    let rows = loadgen::resources::read_samples(&dir.join("nodes.csv")).unwrap();
    let last_t = rows.iter().map(|r| r.t_s).fold(0.0, f64::max);
    // Load, 1 s warm-up and 5 s measured: at least 6 s of samples.
    assert!(last_t >= 6.0, "samples end at {last_t} s");
    let mut pids = Vec::new();
    for node in 0..nodes {
        let mine: Vec<_> = rows.iter().filter(|r| r.node == node).collect();
        // Once a second, plus the two taken at the measured phase's edges; a killed node
        // misses a few.
        assert!(
            mine.len() as f64 >= last_t * 0.6,
            "node {node}: {} rows over {last_t} s",
            mine.len()
        );
        let mut seen: Vec<u32> = Vec::new();
        for w in mine.windows(2) {
            assert!(w[1].t_s >= w[0].t_s, "node {node}: time goes back: {w:?}");
            if w[0].pid == w[1].pid {
                assert!(
                    w[1].cpu_s >= w[0].cpu_s,
                    "node {node}: CPU goes back: {w:?}"
                );
            }
        }
        for r in &mine {
            // (A process read between fork and exec has a tiny RSS, but never none.)
            assert!(r.rss_bytes > 0, "node {node}: RSS {r:?}");
            assert!(r.pid > 0);
            if !seen.contains(&r.pid) {
                seen.push(r.pid);
            }
        }
        let peak = mine.iter().map(|r| r.rss_bytes).max().unwrap();
        assert!(peak > 1024 * 1024, "node {node}: peak RSS {peak}");
        let last = mine.last().unwrap();
        assert!(last.cpu_s > 0.0, "node {node} used no CPU: {last:?}");
        pids.push(seen);
    }
    let res = std::fs::read_to_string(dir.join("resources.csv")).unwrap();
    assert!(
        res.starts_with("node,processes,peak_rss_bytes,measured_cpu_s,cpu_percent,cpu_us_per_op\n"),
        "{res}"
    );
    let all = res.lines().last().unwrap();
    let fields: Vec<&str> = all.split(',').collect();
    assert_eq!(fields[0], "all", "{res}");
    assert!(fields[3].parse::<f64>().unwrap() > 0.0, "{res}");
    assert!(fields[5].parse::<f64>().unwrap() > 0.0, "{res}");
    pids
}

#[test]
fn a_killed_and_restarted_node_is_sampled_under_its_new_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = SCENARIO
        .replace("seed = 7", "seed = 9")
        .replace(
            "action = \"pause\"\nnode = 2",
            "action = \"kill\"\nnode = 1",
        )
        .replace(
            "action = \"resume\"\nnode = 2",
            "action = \"restart\"\nnode = 1",
        );
    assert!(scenario.contains("\"restart\""), "{scenario}");
    let dir = run(tmp.path(), &scenario, "restart");
    let pids = check_node_samples(&dir, 3);
    assert_eq!(pids[0].len(), 1, "{pids:?}");
    assert_eq!(pids[1].len(), 2, "node 1 was restarted: {pids:?}");
    let res = std::fs::read_to_string(dir.join("resources.csv")).unwrap();
    assert!(res.lines().nth(2).unwrap().starts_with("1,2,"), "{res}");
}

#[test]
fn a_tls_cluster_runs_with_mutual_tls_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = SCENARIO.replace("seed = 7", "seed = 10").replace(
        "fsync = \"never\"",
        "fsync = \"never\"\ntls = true\nmetrics = true",
    );
    let dir = run(tmp.path(), &scenario, "tls");
    let resolved = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
    assert!(resolved.contains("tls = true"), "{resolved}");
    let sum = summary::read(&dir.join("summary.csv")).unwrap();
    let overall = sum.last().unwrap();
    assert!(overall.count > 0, "{overall:?}");
    let log = std::fs::read_to_string(dir.join("nodes/node-1.log")).unwrap_or_default();
    assert!(!log.contains("ERROR"), "{log}");
    check_node_samples(&dir, 3);
    // Each node's last metrics were saved: the puts it coordinated over TLS are counted.
    let mut coordinated = 0.0;
    for i in 0..3 {
        let text = std::fs::read_to_string(dir.join(format!("nodes/node-{i}.prom")))
            .unwrap_or_else(|e| panic!("node-{i}.prom: {e}"));
        let samples = kvstore_server::metrics::text::parse(&text).unwrap();
        coordinated += samples
            .iter()
            .filter(|s| {
                s.name == "kvstore_client_requests_total" && s.label("outcome") == Some("ok")
            })
            .map(|s| s.value)
            .sum::<f64>();
        assert!(
            samples
                .iter()
                .any(|s| s.name == "process_resident_memory_bytes" && s.value > 0.0),
            "node {i}"
        );
    }
    // Load plus the measured phase, all through the TLS nodes.
    assert!(
        coordinated >= overall.count as f64 + 200.0,
        "{coordinated} < {}",
        overall.count
    );
}

/// Kills the node it holds on drop (the test may fail half way).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_existing_cluster_is_sampled_through_its_metrics() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["node", "--node-id", "1", "--listen", "127.0.0.1:0"])
        .args([
            "--replication-factor",
            "1",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let node = Killed(child);
    let (mut addr, mut metrics) = (String::new(), String::new());
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            addr = a.trim().into();
        } else if let Some(m) = line.strip_prefix("metrics on ") {
            metrics = m.trim().into();
        } else if line.trim() == "ready" {
            break;
        }
    }
    assert!(
        !addr.is_empty() && !metrics.is_empty(),
        "{addr:?} {metrics:?}"
    );
    let scenario = format!(
        r#"
description = "existing cluster"

[cluster]
endpoints = ["{addr}"]
metrics_endpoints = ["{metrics}"]
replication = 1
read_quorum = 1
write_quorum = 1

[workload]
record_count = 100
read = 0.5
update = 0.5

[run]
clients = 1
in_flight = 2
duration_s = 4
warmup_s = 1
echo_s = 0
seed = 11
"#
    );
    let file = tmp.path().join("existing.toml");
    std::fs::write(&file, scenario).unwrap();
    let results = tmp.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--quiet", "--results"])
        .arg(&results)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[RESOURCES], ServerCpuPerOp(us), "),
        "{stdout}"
    );
    let dir = std::fs::read_dir(results.join("existing"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let rows = loadgen::resources::read_samples(&dir.join("nodes.csv")).unwrap();
    assert!(rows.len() >= 4, "{rows:?}");
    let pid = node.0.id();
    for r in &rows {
        assert_eq!((r.node, r.pid), (0, pid), "{r:?}");
        assert!(r.rss_bytes > 1024 * 1024, "{r:?}");
    }
    for w in rows.windows(2) {
        assert!(w[1].cpu_s >= w[0].cpu_s, "{w:?}");
    }
    assert!(rows.last().unwrap().cpu_s > 0.0);
}

#[test]
fn a_recorded_history_ends_with_final_reads_of_every_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = SCENARIO
        .replace("seed = 7", "seed = 8\nrecord_history = true")
        .replace("record_count = 200", "record_count = 50")
        .replace(
            "value_size = { min = 100, max = 2000 }",
            "value_size = 64\nttl_share = 0.2\nttl_ms = 600000",
        );
    let dir = run(tmp.path(), &scenario, "hist");
    let file = std::fs::File::open(dir.join("history.csv")).expect("history.csv");
    let mut reader = kvstore_checker::history::HistoryReader::new(file).expect("header");
    let (mut writes, mut finals, mut replica_reads) = (0, 0, 0);
    // Per key: the last replica read's completion, then the read through the cluster's start.
    let mut replicas_done: std::collections::HashMap<String, u64> = Default::default();
    let mut read_after_repair = Vec::new();
    while let Some((_, r)) = reader.next_record().expect("every row is valid") {
        use kvstore_checker::history::OpKind;
        match r.kind {
            OpKind::Put | OpKind::Delete => writes += 1,
            OpKind::FinalRead if r.replica.is_some() => {
                replica_reads += 1;
                let e = replicas_done.entry(r.key.clone()).or_default();
                *e = (*e).max(r.complete_ns);
            }
            OpKind::FinalRead => {
                finals += 1;
                // The replicas must be read before the read through the cluster repairs them.
                if replicas_done
                    .get(&r.key)
                    .is_none_or(|&done| done > r.invoke_ns)
                {
                    read_after_repair.push(r.key.clone());
                }
            }
            OpKind::Get => {}
        }
    }
    assert!(writes >= 50, "{writes} writes (the load alone has 50)");
    assert!(finals >= 50, "one final read per touched key, got {finals}");
    assert_eq!(replica_reads, finals * 3, "N = 3 replica reads per key");
    assert!(
        read_after_repair.is_empty(),
        "replicas not all read before the cluster read of {read_after_repair:?}"
    );
    let clock = kvstore_checker::ClockRecord::read_sidecar(&dir.join("history.csv"))
        .expect("readable clock record")
        .expect("history.clock.json beside history.csv");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        clock.anchor_unix_ms < now_ms && now_ms - clock.anchor_unix_ms < 600_000,
        "the anchor is the run's start: {clock:?}"
    );
    assert_eq!(clock.max_clock_offset_ms, 500, "the servers' default");
    assert!(clock.faults.is_empty(), "no clock fault in this scenario");
    // The run ended with the checker's verdict (the run's exit status 0 says it was valid).
    let verdict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("checker.json")).expect("checker.json"))
            .expect("JSON");
    assert_eq!(verdict["valid"], serde_json::Value::Bool(true), "{verdict}");
    assert_eq!(
        verdict["summary"]["keys_verified"].as_u64(),
        Some(50),
        "{verdict}"
    );
}
