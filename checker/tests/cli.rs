//! The `checker` binary end to end: exit codes (0 valid, 1 violations, 2 unreadable input),
//! the human report naming classes and CSV lines, the JSON report, and synthetic histories with
//! planted faults at a scale where the sweeps matter.

use std::path::Path;
use std::process::{Command, Output};

use kvstore_checker::history::COLUMNS;

fn checker(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_checker"))
        .args(args)
        .output()
        .expect("run checker")
}

fn write_history(dir: &Path, name: &str, rows: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{}\n{rows}", COLUMNS.join(","))).unwrap();
    p.to_str().unwrap().to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const CONVERGED: &str = "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
2,0,n1,put,a,2,,unknown,2000000,3000000,,,,,\n\
3,0,n1,final_read,a,2,,ok,9000000000,9000000001,20,2,,,r1\n\
4,0,n1,final_read,a,2,,ok,9000000000,9000000001,20,2,,,r2\n\
5,0,n1,final_read,a,2,,ok,9000000000,9000000001,20,2,,,r3\n";

const LOST: &str = "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
2,0,n1,put,a,2,,ok,2000000,3000000,20,1,,,\n\
3,0,n1,final_read,a,1,,ok,9000000000,9000000001,10,1,,,r1\n\
4,0,n1,final_read,a,1,,ok,9000000000,9000000001,10,1,,,r2\n";

#[test]
fn valid_history_exits_0_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_history(dir.path(), "h.csv", CONVERGED);
    let o = checker(&["verify", &p]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("history: 5 operations, 1 keys"), "{out}");
    assert!(out.contains("verdict: VALID"), "{out}");
}

#[test]
fn violations_exit_1_naming_the_class_and_lines_and_json_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_history(dir.path(), "h.csv", LOST);
    let json = dir.path().join("report.json");
    let o = checker(&["verify", &p, "--json", json.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("lost_write (1 of 1)"), "{out}");
    assert!(out.contains("line        3"), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["anomalies"][0]["class"], "lost_write");
    assert_eq!(v["anomalies"][0]["ops"][0]["line"], 3);
    assert_eq!(v["summary"]["puts"]["ok"], 2);
}

#[test]
fn unreadable_input_exits_2_naming_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_history(
        dir.path(),
        "h.csv",
        "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n2,0,n1,put,a,2,,maybe,0,1,,,,,\n",
    );
    let o = checker(&["verify", &p]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("history line 3, column outcome: `maybe` is not one of ok, fail, unknown"),
        "{err}"
    );
    let missing = checker(&["verify", dir.path().join("nope.csv").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    let bad_offset = checker(&["verify", &p, "--max-clock-offset", "5 parsecs"]);
    assert_eq!(bad_offset.status.code(), Some(2));
}

#[test]
fn synthetic_histories_pass_clean_and_name_each_planted_fault() {
    let dir = tempfile::tempdir().unwrap();
    for (inject, class) in [
        ("none", None),
        ("divergence", Some("divergence")),
        ("lost-write", Some("lost_write")),
        ("phantom", Some("phantom_read")),
    ] {
        let p = dir.path().join(format!("{inject}.csv"));
        let p = p.to_str().unwrap();
        let g = checker(&[
            "synth", p, "--ops", "30000", "--keys", "40", "--seed", "7", "--inject", inject,
        ]);
        assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
        let json = dir.path().join(format!("{inject}.json"));
        let o = checker(&["verify", p, "--json", json.to_str().unwrap()]);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let nonzero: Vec<String> = v["counts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c[1].as_u64().unwrap() > 0)
            .map(|c| c[0].as_str().unwrap().to_string())
            .filter(|c| c != "stale_read")
            .collect();
        match class {
            None => {
                assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
                assert!(nonzero.is_empty(), "{nonzero:?}");
                assert!(v["summary"]["puts"]["unknown"].as_u64().unwrap() > 0);
                assert!(v["summary"]["deletes"]["ok"].as_u64().unwrap() > 0);
            }
            Some(c) => {
                assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
                assert!(nonzero.contains(&c.to_string()), "{inject}: {nonzero:?}");
            }
        }
    }
}
