//! `loadgen compare BASELINE RUN`: a side-by-side table of two runs' `summary.csv` and a verdict.
//!
//! A regression is overall efficiency (ops/s over the echo ceiling measured in the same run)
//! falling by more than the tolerance, or overall p99 latency, in echo units, rising by more
//! than its tolerance. Both are divided by the echo measured in the same run because that
//! cancels most of the machine's speed and load: the same ci_smoke run gave 3,165 ops/s with
//! p99 8.5 ms while other builds loaded the machine (echo 5,642 ops/s) and 9,237 ops/s with p99
//! 1.7 ms on a quiet one (echo 24,556 ops/s); raw p99 moved 4.8x, p99 x echo ops/s 1.12x.
//! When either run has no echo figure (echo disabled), raw ops/s and p99 are compared instead
//! and the table says so.
//!
//! Each argument is a `summary.csv`, a run directory, or a directory of runs (its newest run
//! with a `summary.csv` is used), so CI can compare `results/baseline/ci_smoke` with
//! `results/ci_smoke`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::LoadgenError;
use crate::results::summary::{self, SummaryRow};

/// Allowed relative changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Largest allowed relative drop of efficiency (0.25 = 25%).
    pub efficiency: f64,
    /// Largest allowed relative rise of p99 (0.25 = 25%).
    pub p99: f64,
}

/// Parses `25%` or `0.25`.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("tolerance {s:?} is not a number like 25% or 0.25"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("tolerance {s:?} must be >= 0"));
    }
    Ok(v)
}

/// Finds the `summary.csv` a compare argument names.
pub fn locate(arg: &Path) -> Result<PathBuf, LoadgenError> {
    if arg.is_file() {
        return Ok(arg.to_path_buf());
    }
    let direct = arg.join("summary.csv");
    if direct.is_file() {
        return Ok(direct);
    }
    let mut runs: Vec<PathBuf> = std::fs::read_dir(arg)
        .map_err(|e| LoadgenError::Compare(format!("{}: {e}", arg.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.csv").is_file())
        .collect();
    runs.sort();
    runs.pop().map(|p| p.join("summary.csv")).ok_or_else(|| {
        LoadgenError::Compare(format!(
            "{}: no summary.csv in it or in any run under it",
            arg.display()
        ))
    })
}

/// The comparison's outcome.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The side-by-side table.
    pub table: String,
    /// One line per regression; empty when the run passes.
    pub regressions: Vec<String>,
}

/// p99 in echo units: how many echo round trips (at the run's concurrency) the machine
/// completed in one p99 latency. `None` when the run measured no echo.
fn p99_in_echo_units(row: &SummaryRow) -> Option<f64> {
    row.echo_ops_per_sec
        .filter(|e| *e > 0.0)
        .map(|e| row.p99_us as f64 * e / 1e6)
}

fn change(base: f64, run: f64) -> String {
    if base == 0.0 {
        return "n/a".into();
    }
    format!("{:+.1}%", 100.0 * (run - base) / base)
}

/// Compares two summaries.
pub fn compare(
    base: &[SummaryRow],
    run: &[SummaryRow],
    tol: Tolerance,
) -> Result<Comparison, LoadgenError> {
    let find = |rows: &[SummaryRow], op: &str| rows.iter().find(|r| r.op == op).cloned();
    let (Some(b), Some(r)) = (find(base, "overall"), find(run, "overall")) else {
        return Err(LoadgenError::Compare(
            "both summaries need an `overall` row".into(),
        ));
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<20} {:<14} {:>14} {:>14} {:>9}",
        "op", "metric", "baseline", "run", "change"
    );
    for row in base {
        let Some(other) = find(run, &row.op) else {
            continue;
        };
        let lines: [(&str, f64, f64, usize); 4] = [
            ("ops/s", row.ops_per_sec, other.ops_per_sec, 1),
            ("p50 (us)", row.p50_us as f64, other.p50_us as f64, 0),
            ("p99 (us)", row.p99_us as f64, other.p99_us as f64, 0),
            (
                "errors",
                (row.err_unavailable + row.err_unknown_outcome + row.err_other) as f64,
                (other.err_unavailable + other.err_unknown_outcome + other.err_other) as f64,
                0,
            ),
        ];
        for (metric, x, y, prec) in lines {
            let _ = writeln!(
                t,
                "{:<20} {:<14} {:>14.prec$} {:>14.prec$} {:>9}",
                row.op,
                metric,
                x,
                y,
                change(x, y)
            );
        }
        let normalised = [
            ("efficiency", row.efficiency, other.efficiency),
            (
                "p99 x echo/s",
                p99_in_echo_units(row),
                p99_in_echo_units(&other),
            ),
        ];
        for (metric, x, y) in normalised {
            if let (Some(x), Some(y)) = (x, y) {
                let _ = writeln!(
                    t,
                    "{:<20} {:<14} {:>14.4} {:>14.4} {:>9}",
                    row.op,
                    metric,
                    x,
                    y,
                    change(x, y)
                );
            }
        }
    }
    let mut regressions = Vec::new();
    let (metric, bx, rx) = match (b.efficiency, r.efficiency) {
        (Some(x), Some(y)) => ("efficiency", x, y),
        _ => {
            let _ = writeln!(
                t,
                "note: efficiency missing (echo not measured); gating on ops/s instead"
            );
            ("ops/s", b.ops_per_sec, r.ops_per_sec)
        }
    };
    if rx < bx * (1.0 - tol.efficiency) {
        regressions.push(format!(
            "overall {metric} fell from {bx:.4} to {rx:.4} ({}), beyond the {:.0}% tolerance",
            change(bx, rx),
            tol.efficiency * 100.0
        ));
    }
    let (what, bp, rp) = match (p99_in_echo_units(&b), p99_in_echo_units(&r)) {
        (Some(x), Some(y)) => ("p99 in echo units (p99 x echo ops/s)", x, y),
        _ => ("p99 (us)", b.p99_us as f64, r.p99_us as f64),
    };
    if rp > bp * (1.0 + tol.p99) {
        regressions.push(format!(
            "overall {what} rose from {bp:.1} to {rp:.1} ({}), beyond the {:.0}% tolerance",
            change(bp, rp),
            tol.p99 * 100.0
        ));
    }
    Ok(Comparison {
        table: t,
        regressions,
    })
}

/// Reads both arguments and compares them.
pub fn compare_paths(
    base: &Path,
    run: &Path,
    tol: Tolerance,
) -> Result<(PathBuf, PathBuf, Comparison), LoadgenError> {
    let (bp, rp) = (locate(base)?, locate(run)?);
    let c = compare(&summary::read(&bp)?, &summary::read(&rp)?, tol)?;
    Ok((bp, rp, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: &str, ops: f64, p99: u64, eff: Option<f64>) -> SummaryRow {
        SummaryRow {
            op: op.into(),
            count: 100,
            ops_per_sec: ops,
            mean_us: 1.0,
            p50_us: 1,
            p95_us: 1,
            p99_us: p99,
            p999_us: 1,
            max_us: 1,
            svc_mean_us: 1.0,
            svc_p50_us: 1,
            svc_p99_us: 1,
            err_unavailable: 0,
            err_unknown_outcome: 0,
            err_other: 0,
            echo_ops_per_sec: eff.map(|e| ops / e),
            efficiency: eff,
            elapsed_s: 1.0,
        }
    }

    const TOL: Tolerance = Tolerance {
        efficiency: 0.25,
        p99: 0.5,
    };

    #[test]
    fn within_tolerance_passes() {
        let c = compare(
            &[row("overall", 1000.0, 1000, Some(0.20))],
            &[row("overall", 500.0, 1400, Some(0.16))],
            TOL,
        )
        .unwrap();
        assert!(c.regressions.is_empty(), "{:?}", c.regressions);
        assert!(c.table.contains("efficiency"));
    }

    #[test]
    fn efficiency_drop_and_p99_rise_are_regressions() {
        let c = compare(
            &[row("overall", 1000.0, 1000, Some(0.20))],
            &[row("overall", 1000.0, 1600, Some(0.14))],
            TOL,
        )
        .unwrap();
        assert_eq!(c.regressions.len(), 2, "{:?}", c.regressions);
        assert!(c.regressions[0].contains("efficiency"));
        assert!(c.regressions[1].contains("p99 in echo units"));
    }

    #[test]
    fn a_slower_machine_is_not_a_regression() {
        // Everything 4x slower, echo included: efficiency and p99 in echo units are unchanged.
        let c = compare(
            &[row("overall", 8000.0, 2000, Some(0.40))],
            &[row("overall", 2000.0, 8000, Some(0.40))],
            TOL,
        )
        .unwrap();
        assert!(c.regressions.is_empty(), "{:?}", c.regressions);
        assert!(c.table.contains("p99 x echo/s"));
    }

    #[test]
    fn a_p99_rise_the_echo_does_not_explain_is_a_regression() {
        let c = compare(
            &[row("overall", 8000.0, 2000, Some(0.40))],
            &[row("overall", 8000.0, 4000, Some(0.40))],
            TOL,
        )
        .unwrap();
        assert_eq!(c.regressions.len(), 1, "{:?}", c.regressions);
        assert!(
            c.regressions[0].contains("from 40.0 to 80.0"),
            "{:?}",
            c.regressions
        );
    }

    #[test]
    fn without_echo_ops_per_sec_is_gated() {
        let c = compare(
            &[row("overall", 1000.0, 10, None)],
            &[row("overall", 700.0, 10, None)],
            TOL,
        )
        .unwrap();
        assert_eq!(c.regressions.len(), 1);
        assert!(c.regressions[0].contains("ops/s"));
    }

    #[test]
    fn tolerances_parse() {
        assert_eq!(parse_fraction("25%"), Ok(0.25));
        assert_eq!(parse_fraction("0.5"), Ok(0.5));
        assert!(parse_fraction("-1").is_err());
        assert!(parse_fraction("abc").is_err());
    }
}
