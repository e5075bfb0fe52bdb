//! `loadgen report RUN_DIR...`: finished runs side by side, one row each (the store, ops/s,
//! p50 / p99 / p99.9 latency, errors, efficiency against the echo measured in that run, and
//! server CPU per operation when the run directory has a `nodes.csv`), as a table on stdout,
//! a `comparison.csv` and one `comparison.png` (ops/s and latency percentiles per run,
//! coloured by store: kvstore blue, etcd green, Redis purple).
//!
//! Everything is read back from the run directories (`summary.csv`, `scenario.toml`,
//! `nodes.csv`); nothing is re-measured, so rows taken on different days compare through their
//! efficiency column only.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::plots::{FAMILY, PALETTE, err, register_font};
use super::summary;
use crate::LoadgenError;
use crate::scenario::Scenario;

/// One run, as the comparison shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// The scenario's name (with `-redis` / `-etcd` when run with `--target`).
    pub scenario: String,
    /// kvstore, redis or etcd.
    pub store: String,
    /// What the cluster is and promises (nodes, replication, durability).
    pub cluster: String,
    /// Successful operations per second over the measured phase (overall row).
    pub ops_per_sec: f64,
    /// Latency percentiles from the intended start, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Failed operations of every kind.
    pub errors: u64,
    /// ops/s over the echo ceiling measured in the same run.
    pub efficiency: Option<f64>,
    /// Server CPU seconds per operation, in µs, from `nodes.csv` (every node process).
    pub server_cpu_us_per_op: Option<f64>,
    /// The run directory.
    pub dir: String,
}

/// One sample of `nodes.csv` (written by the process sampler beside the run).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NodeSample {
    /// Seconds since the sampler started.
    pub t_s: f64,
    /// Node index.
    pub node: u32,
    /// The process sampled.
    pub pid: u32,
    /// Cumulative user + system CPU seconds of that process.
    pub cpu_s: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// CPU seconds spent by every sampled process: for each (node, pid) series, its last minus
/// its first cumulative value (a restarted node is a new PID whose counter starts again).
pub fn cpu_seconds(samples: &[NodeSample]) -> f64 {
    let mut spans: std::collections::BTreeMap<(u32, u32), (f64, f64, f64, f64)> =
        Default::default();
    for s in samples {
        let e = spans
            .entry((s.node, s.pid))
            .or_insert((s.t_s, s.cpu_s, s.t_s, s.cpu_s));
        if s.t_s < e.0 {
            (e.0, e.1) = (s.t_s, s.cpu_s);
        }
        if s.t_s >= e.2 {
            (e.2, e.3) = (s.t_s, s.cpu_s);
        }
    }
    spans
        .values()
        .map(|(_, first, _, last)| (last - first).max(0.0))
        .sum()
}

/// Reads one run directory (or the newest run under a scenario's directory).
pub fn load(arg: &Path) -> Result<RunRow, LoadgenError> {
    let summary_path = crate::compare::locate(arg)?;
    let dir: PathBuf = summary_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let rows = summary::read(&summary_path)?;
    let overall = rows
        .iter()
        .find(|r| r.op == "overall")
        .ok_or_else(|| LoadgenError::results(&summary_path, "no `overall` row"))?;
    let scenario = Scenario::load(&dir.join("scenario.toml")).ok();
    let (name, store, cluster) = match &scenario {
        Some(s) => (
            s.name.clone(),
            s.cluster.kind.name().to_string(),
            crate::cluster::peers::describe(&s.cluster),
        ),
        None => (
            dir.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            "?".into(),
            "(no scenario.toml)".into(),
        ),
    };
    let nodes = dir.join("nodes.csv");
    let server_cpu_us_per_op = if nodes.is_file() && overall.count > 0 {
        let samples: Vec<NodeSample> = super::read_csv(&nodes)?;
        Some(cpu_seconds(&samples) * 1e6 / overall.count as f64)
    } else {
        None
    };
    Ok(RunRow {
        scenario: name,
        store,
        cluster,
        ops_per_sec: overall.ops_per_sec,
        p50_us: overall.p50_us,
        p99_us: overall.p99_us,
        p999_us: overall.p999_us,
        errors: overall.err_unavailable + overall.err_unknown_outcome + overall.err_other,
        efficiency: overall.efficiency,
        server_cpu_us_per_op,
        dir: dir.display().to_string(),
    })
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The side-by-side table (Markdown, so it pastes into a README as it is).
pub fn table(rows: &[RunRow]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "| scenario | store | ops/s | p50 ms | p99 ms | p99.9 ms | errors | efficiency | server CPU µs/op |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            o,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.store,
            r.ops_per_sec,
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.p999_us),
            r.errors,
            r.efficiency
                .map(|e| format!("{e:.3}"))
                .unwrap_or_else(|| "n/a".into()),
            r.server_cpu_us_per_op
                .map(|c| format!("{c:.0}"))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
    o
}

/// Writes `comparison.csv`.
pub fn write_csv(path: &Path, rows: &[RunRow]) -> Result<(), LoadgenError> {
    super::write_csv(path, rows.iter().cloned())
}

/// Draws `comparison.png`: one horizontal bar per run, ops/s (left) and p50 / p99 / p99.9
/// (right, log ms); runs are named on the left axis, coloured by store.
pub fn plot(path: &Path, rows: &[RunRow]) -> Result<(), LoadgenError> {
    register_font();
    let n = rows.len().max(1);
    let height = 140 + 46 * n as u32;
    let root = BitMapBackend::new(path, (1500, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let (left, right) = root.split_horizontally(820);
    // Row i is drawn at y = n-1-i, so the first run is on top.
    let y_of = |i: usize| (n - 1 - i) as f64;
    let label = |y: &f64| -> String {
        let k = y.round();
        if (y - k).abs() > 0.01 || k < 0.0 || k as usize >= n {
            return String::new();
        }
        rows.get(n - 1 - k as usize)
            .map(|r| format!("{} ({})", r.scenario, r.store))
            .unwrap_or_default()
    };
    let x_max = rows.iter().map(|r| r.ops_per_sec).fold(1.0, f64::max) * 1.1;
    let y_range = -0.6f64..(n as f64 - 0.4);
    let mut c = ChartBuilder::on(&left)
        .caption("throughput", (FAMILY, 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(300)
        .build_cartesian_2d(0f64..x_max, y_range.clone())
        .map_err(|e| err(path, e))?;
    c.configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&label)
        .x_desc("successful operations per second")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| err(path, e))?;
    c.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let y = y_of(i);
        Rectangle::new(
            [(0.0, y - 0.35), (r.ops_per_sec, y + 0.35)],
            store_color(&r.store).filled(),
        )
    }))
    .map_err(|e| err(path, e))?;
    let lat_max = rows
        .iter()
        .map(|r| r.p999_us as f64 / 1000.0)
        .fold(1.0, f64::max)
        // Room on the right for the legend.
        * 4.0;
    let lat_min = rows
        .iter()
        .map(|r| (r.p50_us as f64 / 1000.0).max(0.01))
        .fold(lat_max, f64::min)
        / 2.0;
    let mut c = ChartBuilder::on(&right)
        .caption("latency from intended start", (FAMILY, 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(10)
        .build_cartesian_2d((lat_min..lat_max).log_scale(), y_range)
        .map_err(|e| err(path, e))?;
    c.configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("ms (log scale)")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| err(path, e))?;
    let marks: [Mark; 3] = [
        ("p50", |r| r.p50_us, 0.25),
        ("p99", |r| r.p99_us, 0.0),
        ("p99.9", |r| r.p999_us, -0.25),
    ];
    for (k, (name, get, dy)) in marks.iter().enumerate() {
        let color = [PALETTE[1], PALETTE[4], PALETTE[5]][k];
        c.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = y_of(i) + dy;
            Rectangle::new(
                [
                    (lat_min, y - 0.1),
                    ((get(r) as f64 / 1000.0).max(lat_min), y + 0.1),
                ],
                color.filled(),
            )
        }))
        .map_err(|e| err(path, e))?
        .label(*name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

/// A latency bar: its legend, the percentile it shows, its offset from the run's x.
type Mark = (&'static str, fn(&RunRow) -> u64, f64);

fn store_color(store: &str) -> RGBColor {
    match store {
        "kvstore" => PALETTE[0],
        "etcd" => PALETTE[2],
        "redis" => PALETTE[3],
        _ => PALETTE[4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: f64, node: u32, pid: u32, cpu_s: f64) -> NodeSample {
        NodeSample {
            t_s,
            node,
            pid,
            cpu_s,
            rss_bytes: 0,
        }
    }

    #[test]
    fn cpu_is_summed_per_process_and_survives_restarts() {
        let samples = [
            s(0.0, 0, 10, 1.0),
            s(1.0, 0, 10, 3.0),
            s(0.0, 1, 11, 0.5),
            s(2.0, 1, 11, 1.5),
            // Node 0 restarted as PID 12: its counter starts again.
            s(1.5, 0, 12, 0.1),
            s(2.0, 0, 12, 0.6),
        ];
        assert!((cpu_seconds(&samples) - (2.0 + 1.0 + 0.5)).abs() < 1e-9);
        assert_eq!(cpu_seconds(&[]), 0.0);
    }

    #[test]
    fn the_table_says_na_when_cpu_or_echo_is_unknown() {
        let row = RunRow {
            scenario: "ycsb_a-etcd".into(),
            store: "etcd".into(),
            cluster: String::new(),
            ops_per_sec: 1234.4,
            p50_us: 1500,
            p99_us: 9000,
            p999_us: 20000,
            errors: 0,
            efficiency: None,
            server_cpu_us_per_op: None,
            dir: String::new(),
        };
        let t = table(&[row]);
        assert!(
            t.contains("| ycsb_a-etcd | etcd | 1234 | 1.50 | 9.00 | 20.00 | 0 | n/a | n/a |"),
            "{t}"
        );
    }
}
