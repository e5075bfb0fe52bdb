//! Node resources in every run: once a second, the CPU time and resident memory of every node
//! process, into `nodes.csv` (`t_s,node,pid,cpu_s,rss_bytes`), summarised as server CPU
//! microseconds per operation and peak RSS per node, and plotted into `nodes.png`.
//!
//! - For a cluster loadgen launches, each node's current process is read from `/proc`
//!   ([`kvstore_server::metrics::procfs`]); a killed and restarted node appears under its new
//!   pid, a paused one keeps being read (its CPU simply stops growing).
//! - For an existing cluster (`endpoints`) loadgen cannot see the processes; it scrapes each
//!   node's Prometheus endpoint (`[cluster] metrics_endpoints`, same order as `endpoints`) for
//!   `process_cpu_seconds_total` and `process_resident_memory_bytes` ([`scrape`]).
//!
//! `t_s` counts seconds from when sampling began (just after the nodes were started); `cpu_s`
//! is the cumulative user + system CPU of that pid. Rows are appended and flushed as they are
//! taken, so an interrupted run keeps what it saw. Besides the once-a-second ticks the run takes
//! a sample exactly when the measured phase begins and ends, so the CPU spent in it is the
//! difference of two readings, not an interpolation.
//!
//! Not here: reading anything else about a node (its metrics families are the server's).

pub mod plot;
pub mod scrape;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::LoadgenError;
use crate::cluster::Launched;
use kvstore_server::metrics::procfs;

/// How often every node is sampled.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One row of `nodes.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    /// Seconds since sampling began.
    pub t_s: f64,
    /// Node index (0-based, as in the scenario's faults).
    pub node: u32,
    /// The process read (0 when a scraped node does not say).
    pub pid: u32,
    /// Cumulative user + system CPU seconds of that process.
    pub cpu_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Where the readings come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `/proc` of the processes loadgen launched.
    Local(Launched),
    /// `GET /metrics` of each node of an existing cluster, in node order.
    Metrics(Vec<String>),
}

/// One node's reading: its pid and figures, or why it could not be read.
type Reading = Result<(u32, procfs::ProcReading), String>;

/// Samples every node into `nodes.csv`.
#[derive(Debug)]
pub struct Sampler {
    start: Instant,
    source: Source,
    path: PathBuf,
    ticks_per_s: f64,
    state: Mutex<SamplerState>,
}

#[derive(Debug)]
struct SamplerState {
    rows: Vec<NodeRow>,
    writer: Option<csv::Writer<std::fs::File>>,
    /// The last error per node (a scrape that failed), reported once at the end.
    errors: BTreeMap<u32, String>,
}

impl Sampler {
    /// A sampler writing `path`; time 0 is now.
    pub fn create(path: &Path, source: Source) -> Result<Arc<Self>, LoadgenError> {
        let writer = csv::Writer::from_path(path).map_err(|e| LoadgenError::results(path, e))?;
        Ok(Arc::new(Self {
            start: Instant::now(),
            source,
            path: path.to_path_buf(),
            ticks_per_s: procfs::clock_ticks(),
            state: Mutex::new(SamplerState {
                rows: Vec::new(),
                writer: Some(writer),
                errors: BTreeMap::new(),
            }),
        }))
    }

    /// Seconds since sampling began at `at`.
    pub fn t_of(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }

    /// Reads every node now and appends the rows; returns the time they were taken.
    pub async fn sample_now(&self) -> f64 {
        let readings: Vec<(u32, Reading)> = match &self.source {
            Source::Local(cluster) => {
                let pids = cluster.pids();
                pids.into_iter()
                    .enumerate()
                    .filter_map(|(i, pid)| {
                        let pid = pid?;
                        // A process that exited between the lock and the read has no row.
                        procfs::read_process(Path::new("/proc"), pid, self.ticks_per_s)
                            .map(|r| (i as u32, Ok((pid, r))))
                    })
                    .collect()
            }
            Source::Metrics(addrs) => {
                let scrapes =
                    futures::future::join_all(addrs.iter().map(|a| scrape::fetch(a))).await;
                scrapes
                    .into_iter()
                    .enumerate()
                    .map(|(i, body)| {
                        let r = body.and_then(|text| {
                            let samples = scrape::parse(&text)?;
                            let (r, pid) = scrape::reading(&samples).ok_or_else(|| {
                                format!(
                                    "{}: no process_cpu_seconds_total / \
                                     process_resident_memory_bytes",
                                    addrs[i]
                                )
                            })?;
                            Ok((pid.unwrap_or(0), r))
                        });
                        (i as u32, r)
                    })
                    .collect()
            }
        };
        let t_s = self.t_of(Instant::now());
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (node, r) in readings {
            match r {
                Ok((pid, r)) => {
                    let row = NodeRow {
                        t_s: (t_s * 1000.0).round() / 1000.0,
                        node,
                        pid,
                        cpu_s: (r.cpu_s * 1000.0).round() / 1000.0,
                        rss_bytes: r.rss_bytes,
                    };
                    if let Some(w) = st.writer.as_mut() {
                        // A full disk loses rows, not the run; `finish` reports it.
                        if w.serialize(&row).and_then(|_| Ok(w.flush()?)).is_err() {
                            st.errors
                                .insert(u32::MAX, format!("cannot write {}", self.path.display()));
                        }
                    }
                    st.rows.push(row);
                }
                Err(e) => {
                    st.errors.insert(node, e);
                }
            }
        }
        t_s
    }

    /// Samples every [`INTERVAL`] (on whole seconds since the start) until `stop` is set.
    pub fn spawn(self: &Arc<Self>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::from_std(me.start + INTERVAL),
                INTERVAL,
            );
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                me.sample_now().await;
            }
        })
    }

    /// Every row so far, and the last error of each node that failed to be read.
    pub fn finish(&self) -> (Vec<NodeRow>, Vec<String>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut w) = st.writer.take() {
            let _ = w.flush();
        }
        let errors = st
            .errors
            .iter()
            .map(|(n, e)| {
                if *n == u32::MAX {
                    e.clone()
                } else {
                    format!("node {n}: {e}")
                }
            })
            .collect();
        (st.rows.clone(), errors)
    }
}

/// A running [`Sampler`] with its once-a-second task.
#[derive(Debug)]
pub struct Sampling {
    sampler: Arc<Sampler>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampling {
    /// Starts sampling `source` into `path`.
    pub fn start(path: &Path, source: Source) -> Result<Self, LoadgenError> {
        let sampler = Sampler::create(path, source)?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = sampler.spawn(stop.clone());
        Ok(Self {
            sampler,
            stop,
            task,
        })
    }

    /// The sampler, to take extra samples at chosen moments.
    pub fn sampler(&self) -> &Arc<Sampler> {
        &self.sampler
    }

    /// Takes a sample when `at` comes (the measured phase's start), returning its time.
    pub fn sample_at(&self, at: Instant) -> tokio::task::JoinHandle<f64> {
        let sampler = self.sampler.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            sampler.sample_now().await
        })
    }

    /// Stops sampling and summarises the `nodes` nodes over `window` (seconds on the `t_s`
    /// axis) in which `ops` operations succeeded.
    pub fn finish(&self, nodes: u32, window: (f64, f64), ops: u64) -> ResourceSummary {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
        let (rows, errors) = self.sampler.finish();
        summarize(rows, nodes, window, ops, errors)
    }
}

impl Drop for Sampling {
    fn drop(&mut self) {
        // An error or Ctrl-C mid-run: the task must not outlive the run.
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

/// One node's resources over a run (or the whole cluster's, `node = "all"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRow {
    /// Node index, or `all`.
    pub node: String,
    /// Processes seen (more than one when the node was restarted).
    pub processes: u32,
    /// Largest resident set seen, bytes (for `all`: the largest of any node).
    pub peak_rss_bytes: u64,
    /// CPU seconds spent during the measured phase (for `all`: the sum).
    pub measured_cpu_s: f64,
    /// Mean CPU utilisation during the measured phase, percent of one core.
    pub cpu_percent: f64,
    /// `measured_cpu_s` per successful operation of the measured phase, microseconds.
    pub cpu_us_per_op: Option<f64>,
}

/// The resources of a run: the raw rows (for the plot) and the summary rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSummary {
    /// Every `nodes.csv` row.
    pub samples: Vec<NodeRow>,
    /// Per node, then `all`.
    pub rows: Vec<ResourceRow>,
    /// The measured phase, seconds on the `t_s` axis.
    pub window: (f64, f64),
    /// Nodes that could not be read, and why.
    pub errors: Vec<String>,
}

/// CPU of one process at time `t`: its last reading at or before `t`; 0 when its first reading
/// comes after `t` (it started later); `None` when it has no reading at all.
fn cpu_at(readings: &[&NodeRow], t: f64) -> f64 {
    readings
        .iter()
        .take_while(|r| r.t_s <= t + 1e-6)
        .last()
        .map(|r| r.cpu_s)
        .unwrap_or(0.0)
}

/// Summarises `samples` for `nodes` nodes over the measured phase `window` in which `ops`
/// operations succeeded.
pub fn summarize(
    samples: Vec<NodeRow>,
    nodes: u32,
    window: (f64, f64),
    ops: u64,
    errors: Vec<String>,
) -> ResourceSummary {
    let secs = (window.1 - window.0).max(1e-9);
    let per_op = |cpu: f64| (ops > 0).then(|| cpu * 1e6 / ops as f64);
    let mut rows = Vec::new();
    let (mut total_cpu, mut max_rss, mut total_procs) = (0.0, 0, 0);
    for node in 0..nodes {
        let mine: Vec<&NodeRow> = samples.iter().filter(|r| r.node == node).collect();
        let mut pids: Vec<u32> = mine.iter().map(|r| r.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        let cpu: f64 = pids
            .iter()
            .map(|pid| {
                let of: Vec<&NodeRow> = mine.iter().copied().filter(|r| r.pid == *pid).collect();
                (cpu_at(&of, window.1) - cpu_at(&of, window.0)).max(0.0)
            })
            .sum();
        let peak = mine.iter().map(|r| r.rss_bytes).max().unwrap_or(0);
        total_cpu += cpu;
        max_rss = max_rss.max(peak);
        total_procs += pids.len() as u32;
        rows.push(ResourceRow {
            node: node.to_string(),
            processes: pids.len() as u32,
            peak_rss_bytes: peak,
            measured_cpu_s: round3(cpu),
            cpu_percent: round3(cpu / secs * 100.0),
            cpu_us_per_op: per_op(cpu).map(round3),
        });
    }
    rows.push(ResourceRow {
        node: "all".into(),
        processes: total_procs,
        peak_rss_bytes: max_rss,
        measured_cpu_s: round3(total_cpu),
        cpu_percent: round3(total_cpu / secs * 100.0),
        cpu_us_per_op: per_op(total_cpu).map(round3),
    });
    ResourceSummary {
        samples,
        rows,
        window,
        errors,
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Writes `resources.csv` and `nodes.png` (`nodes.csv` is written while sampling).
pub fn write(dir: &Path, s: &ResourceSummary, title: &str) -> Result<(), LoadgenError> {
    crate::csv_file::write_csv(&dir.join("resources.csv"), &s.rows)?;
    plot::nodes(&dir.join("nodes.png"), s, title)
}

/// Reads a `nodes.csv`.
pub fn read_samples(path: &Path) -> Result<Vec<NodeRow>, LoadgenError> {
    crate::csv_file::read_csv(path)
}

/// The report lines, in the report's `[SECTION], metric, value` layout.
pub fn render(o: &mut String, s: &ResourceSummary) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    if let Some(all) = s.rows.last() {
        let _ = writeln!(
            o,
            "[RESOURCES], ServerCpuPerOp(us), {} ({:.2} CPU s of {} processes over the measured phase)",
            all.cpu_us_per_op
                .map(|v| format!("{v:.1}"))
                .unwrap_or_else(|| "n/a (no operation succeeded)".into()),
            all.measured_cpu_s,
            all.processes
        );
        let _ = writeln!(o, "[RESOURCES], ServerCpu(%), {:.1}", all.cpu_percent);
    }
    for r in s.rows.iter().filter(|r| r.node != "all") {
        let _ = writeln!(
            o,
            "[RESOURCES], Node{}PeakRss(MiB), {:.1} (CPU {:.1} %{})",
            r.node,
            mib(r.peak_rss_bytes),
            r.cpu_percent,
            if r.processes > 1 {
                format!(", {} processes", r.processes)
            } else {
                String::new()
            }
        );
    }
    for e in &s.errors {
        let _ = writeln!(o, "[RESOURCES], NotSampled, {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t_s: f64, node: u32, pid: u32, cpu_s: f64, rss: u64) -> NodeRow {
        NodeRow {
            t_s,
            node,
            pid,
            cpu_s,
            rss_bytes: rss,
        }
    }

    #[test]
    fn measured_cpu_counts_each_process_of_a_restarted_node() {
        // Node 0 runs throughout; node 1 is killed after t=3 and restarted as pid 30 at t=4.
        let samples = vec![
            row(1.0, 0, 10, 1.0, 100),
            row(1.0, 1, 20, 2.0, 200),
            row(2.0, 0, 10, 1.5, 150),
            row(2.0, 1, 20, 2.5, 250),
            row(3.0, 0, 10, 2.0, 120),
            row(3.0, 1, 20, 3.0, 900),
            row(4.5, 0, 10, 2.5, 120),
            row(4.5, 1, 30, 0.4, 300),
            row(6.0, 0, 10, 3.0, 120),
            row(6.0, 1, 30, 0.9, 310),
        ];
        let s = summarize(samples, 2, (2.0, 6.0), 1000, Vec::new());
        // Node 0: 3.0 - 1.5. Node 1: pid 20 from 2.5 to its last 3.0, pid 30 from 0 to 0.9.
        assert_eq!(s.rows[0].measured_cpu_s, 1.5);
        assert_eq!(s.rows[1].measured_cpu_s, 1.4);
        assert_eq!(s.rows[1].processes, 2);
        assert_eq!(s.rows[1].peak_rss_bytes, 900);
        let all = &s.rows[2];
        assert_eq!(all.node, "all");
        assert_eq!(all.measured_cpu_s, 2.9);
        assert_eq!(all.cpu_us_per_op, Some(2900.0));
        assert_eq!(all.cpu_percent, 72.5);
        assert_eq!(all.peak_rss_bytes, 900);
        let mut text = String::new();
        render(&mut text, &s);
        assert!(
            text.contains("[RESOURCES], ServerCpuPerOp(us), 2900.0"),
            "{text}"
        );
        assert!(text.contains("Node1PeakRss(MiB)"), "{text}");
    }

    #[test]
    fn no_operations_means_no_cpu_per_op() {
        let s = summarize(vec![row(0.0, 0, 1, 1.0, 1)], 1, (0.0, 1.0), 0, Vec::new());
        assert_eq!(s.rows[1].cpu_us_per_op, None);
    }
}
