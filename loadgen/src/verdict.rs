//! The checker's verdict on a recorded run: once the history (`history.csv` and its clock
//! record) is complete, it is verified with the checker crate as a library, the full report is
//! written to `checker.json` in the run directory, and a few `[CHECKER]` lines (verdict, count
//! per anomaly class) join the run's printed summary, so one command gives load, faults and
//! verdict. `loadgen run` exits 1 when the verdict has violations.
//!
//! Not here: the rules themselves (`kvstore_checker::rules`) or when a history is recorded.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use kvstore_checker::{CheckConfig, Checker, ClockRecord, HistoryReader, Report};

use crate::LoadgenError;

/// Anomalies listed per class in the printed summary when the verdict fails.
const SHOWN_PER_CLASS: usize = 5;

/// Verifies `dir/history.csv` (with the clock record beside it: its offset bound is the one
/// used) and writes `dir/checker.json`.
pub fn judge(dir: &Path) -> Result<Report, LoadgenError> {
    let history = dir.join("history.csv");
    let err = |e: kvstore_checker::CheckerError| {
        LoadgenError::History(format!("checking {}: {e}", history.display()))
    };
    let clock = ClockRecord::read_sidecar(&history).map_err(err)?;
    let cfg = CheckConfig {
        max_clock_offset_ns: clock
            .as_ref()
            .map_or(CheckConfig::default().max_clock_offset_ns, |c| {
                c.max_clock_offset_ms * 1_000_000
            }),
        clock,
        ..CheckConfig::default()
    };
    let f = File::open(&history).map_err(|e| LoadgenError::results(&history, e))?;
    let mut reader = HistoryReader::new(BufReader::with_capacity(1 << 20, f)).map_err(err)?;
    let mut checker = Checker::new(cfg);
    while let Some((line, rec)) = reader.next_record().map_err(err)? {
        checker.add(line, rec).map_err(err)?;
    }
    let report = checker.finish().map_err(err)?;
    let json = dir.join("checker.json");
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(File::create(&json)?);
        serde_json::to_writer_pretty(&mut w, &report)?;
        w.write_all(b"\n")?;
        w.flush()
    };
    write().map_err(|e| LoadgenError::results(&json, e))?;
    Ok(report)
}

/// The `[CHECKER]` lines of the summary: the verdict, then each class's count; with
/// violations, the checker's listing of them.
pub fn render(report: &Report) -> String {
    let mut o = String::new();
    let s = &report.summary;
    let verdict = if report.valid {
        "VALID".to_string()
    } else {
        let v: Vec<&str> = report.violations().iter().map(|c| c.name()).collect();
        format!("VIOLATIONS ({})", v.join(", "))
    };
    let _ = writeln!(o, "[CHECKER], Verdict, {verdict}");
    let _ = writeln!(
        o,
        "[CHECKER], Operations, {}, Keys verified, {} of {}, Unknown writes applied, {}",
        s.operations, s.keys_verified, s.keys, s.unknown_writes_applied
    );
    for (class, n) in &report.counts {
        let _ = writeln!(
            o,
            "[CHECKER], {}, {n}{}",
            class.name(),
            if class.is_violation() {
                ""
            } else {
                " (reported)"
            }
        );
    }
    if !report.valid {
        let text = report.render_text(SHOWN_PER_CLASS);
        if let Some(i) = text.find("\n\n") {
            o.push_str(&text[i + 1..]);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(dir: &Path, rows: &str) {
        let header = kvstore_checker::history::COLUMNS.join(",");
        std::fs::write(dir.join("history.csv"), format!("{header}\n{rows}")).unwrap();
    }

    const FINALS: &str = "\
        2,0,r1,final_read,a,1,false,ok,9000000000,9000000001,10,1,,,r1\n\
        3,0,r2,final_read,a,1,false,ok,9000000000,9000000001,10,1,,,r2\n\
        4,0,r3,final_read,a,1,false,ok,9000000000,9000000001,10,1,,,r3\n";

    #[test]
    fn a_valid_history_gives_a_valid_verdict_and_its_json() {
        let dir = tempfile::tempdir().unwrap();
        history(
            dir.path(),
            &format!("1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n{FINALS}"),
        );
        let r = judge(dir.path()).unwrap();
        assert!(r.valid);
        let text = render(&r);
        assert!(text.starts_with("[CHECKER], Verdict, VALID\n"), "{text}");
        assert!(text.contains("[CHECKER], lost_write, 0\n"), "{text}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("checker.json")).unwrap())
                .unwrap();
        assert_eq!(json["valid"], serde_json::Value::Bool(true));
    }

    #[test]
    fn a_lost_write_fails_the_verdict_and_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        // Put 2 was acknowledged with a newer version than what every replica holds.
        history(
            dir.path(),
            &format!(
                "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
                 5,0,n1,put,a,2,,ok,2000000,3000000,20,1,,,\n{FINALS}"
            ),
        );
        let r = judge(dir.path()).unwrap();
        assert!(!r.valid);
        let text = render(&r);
        assert!(
            text.starts_with("[CHECKER], Verdict, VIOLATIONS (lost_write)\n"),
            "{text}"
        );
        assert!(text.contains("[CHECKER], lost_write, 1\n"), "{text}");
        assert!(text.contains("lost_write (1 of 1)"), "the listing: {text}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("checker.json")).unwrap())
                .unwrap();
        assert_eq!(json["valid"], serde_json::Value::Bool(false));
    }
}
