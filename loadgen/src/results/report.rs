//! The summary a person reads at a glance at the end of a run, in YCSB's `[SECTION], metric,
//! value` layout, plus efficiency, the faults' phases and where the files are.

use std::fmt::Write;
use std::path::Path;

use super::RunResults;
use super::phases::Phase;
use super::summary;

/// The report text.
pub fn render(r: &RunResults, phases: &[Phase], dir: Option<&Path>) -> String {
    let mut o = String::new();
    let rows = summary::rows(r);
    let s = &r.scenario;
    let _ = writeln!(
        o,
        "\n== {} ({}) ==",
        s.name,
        if s.description.is_empty() {
            "no description"
        } else {
            &s.description
        }
    );
    let _ = writeln!(
        o,
        "[CONFIG], Cluster, {}",
        if s.cluster.kind != crate::scenario::StoreKind::Kvstore {
            crate::cluster::peers::describe(&s.cluster)
        } else if s.cluster.is_local() {
            format!(
                "{} local nodes, N={} R={} W={}, fsync {}",
                s.cluster.nodes,
                s.cluster.replication,
                s.cluster.read_quorum,
                s.cluster.write_quorum,
                s.cluster.fsync
            )
        } else {
            format!("endpoints {}", s.cluster.endpoints.join(" "))
        }
    );
    let _ = writeln!(
        o,
        "[CONFIG], Load, {} clients x {} in flight, {}, seed {}",
        s.run.clients,
        s.run.in_flight,
        match s.run.target_rate {
            Some(t) => format!("open loop at {t} ops/s"),
            None => "closed loop".into(),
        },
        s.run.seed.unwrap_or(0)
    );
    if let Some((n, secs)) = r.load {
        let _ = writeln!(o, "[LOAD], Records, {n}");
        let _ = writeln!(
            o,
            "[LOAD], Throughput(ops/sec), {:.1}",
            n as f64 / secs.max(1e-9)
        );
    }
    if let Some(overall) = rows.last() {
        let _ = writeln!(
            o,
            "[OVERALL], RunTime(ms), {:.0}",
            overall.elapsed_s * 1000.0
        );
        let _ = writeln!(
            o,
            "[OVERALL], Throughput(ops/sec), {:.1}",
            overall.ops_per_sec
        );
        match (&r.ceiling, overall.efficiency) {
            (Some(c), Some(e)) => {
                let samples: Vec<String> = c.samples.iter().map(|s| format!("{s:.0}")).collect();
                let _ = writeln!(
                    o,
                    "[OVERALL], EchoCeiling(ops/sec), {:.1} (best of {}; payload {} B, p50 {} us, p99 {} us)",
                    c.ops_per_sec,
                    samples.join(" and "),
                    c.payload,
                    c.p50_us,
                    c.p99_us
                );
                let _ = writeln!(o, "[OVERALL], Efficiency, {e:.4}");
            }
            _ => {
                let _ = writeln!(o, "[OVERALL], Efficiency, not measured (echo_s = 0)");
            }
        }
        if let Some(res) = &r.resources {
            crate::resources::render(&mut o, res);
        }
    }
    for row in &rows {
        let label = match row.op.as_str() {
            "overall" => "ALL".to_string(),
            op => crate::generator::OpKind::from_name(op)
                .map(|k| k.ycsb_label().to_string())
                .unwrap_or_else(|| op.to_uppercase()),
        };
        let _ = writeln!(o, "[{label}], Operations, {}", row.count);
        let _ = writeln!(o, "[{label}], Throughput(ops/sec), {:.1}", row.ops_per_sec);
        let _ = writeln!(o, "[{label}], AverageLatency(us), {:.1}", row.mean_us);
        let _ = writeln!(o, "[{label}], 50thPercentileLatency(us), {}", row.p50_us);
        let _ = writeln!(o, "[{label}], 95thPercentileLatency(us), {}", row.p95_us);
        let _ = writeln!(o, "[{label}], 99thPercentileLatency(us), {}", row.p99_us);
        let _ = writeln!(o, "[{label}], 99.9thPercentileLatency(us), {}", row.p999_us);
        let _ = writeln!(o, "[{label}], MaxLatency(us), {}", row.max_us);
        if r.scenario.run.target_rate.is_some() {
            let _ = writeln!(
                o,
                "[{label}], 50thPercentileServiceTime(us), {}",
                row.svc_p50_us
            );
            let _ = writeln!(
                o,
                "[{label}], 99thPercentileServiceTime(us), {}",
                row.svc_p99_us
            );
        }
        let _ = writeln!(o, "[{label}], Return=OK, {}", row.count);
        for (name, n) in [
            ("UNAVAILABLE", row.err_unavailable),
            ("UNKNOWN_OUTCOME", row.err_unknown_outcome),
            ("OTHER", row.err_other),
        ] {
            if n > 0 {
                let _ = writeln!(o, "[{label}], Return={name}, {n}");
            }
        }
    }
    for p in phases {
        let _ = writeln!(
            o,
            "[FAULT], {} at {:.1} s{}, before {:.0} ops/s p99 {} us | during {:.0} ops/s p99 {} us, {} errors | after {:.0} ops/s p99 {} us | recovery {}",
            p.label,
            p.start_s,
            p.end_s
                .map(|e| format!(" until {e:.1} s"))
                .unwrap_or_default(),
            p.before.ops_per_sec,
            p.before.p99_us,
            p.during.ops_per_sec,
            p.during.p99_us,
            p.during.errors,
            p.after.ops_per_sec,
            p.after.p99_us,
            p.recovery_s
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_else(|| "not within the run".into())
        );
    }
    if let Some(d) = dir {
        let _ = writeln!(o, "[RESULTS], Directory, {}", d.display());
    }
    o
}
