//! The stale-read and real-time-inversion sweeps (Fenwick trees over version ranks) against
//! the rules' definitions computed by brute force, on seeded random single-key histories with
//! heavy overlap, duplicate versions, TTLs and reads of nothing.

use kvstore_checker::{AnomalyClass, CheckConfig, Checker, OpKind, Outcome, Record};
use kvstore_proto::Version;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_history(seed: u64) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut recs: Vec<Record> = Vec::new();
    let mut puts: Vec<(u64, Version)> = Vec::new();
    for i in 0..300u64 {
        let invoke = rng.random_range(0..1_000_000u64);
        let complete = invoke + rng.random_range(0..200_000u64);
        let version = Version::new(rng.random_range(1..60), rng.random_range(1..4));
        let mut r = Record {
            op_id: i,
            client: 0,
            node: String::new(),
            kind: OpKind::Get,
            key: "k".into(),
            value_id: None,
            tombstone: false,
            outcome: Outcome::Ok,
            invoke_ns: invoke,
            complete_ns: complete,
            version: None,
            ttl_ms: None,
            expires_at_ms: None,
            replica: None,
        };
        match rng.random_range(0..10) {
            0..=3 => {
                r.kind = OpKind::Put;
                r.value_id = Some(i);
                r.version = Some(version);
                if rng.random_bool(0.2) {
                    r.ttl_ms = Some(100_000);
                }
                if rng.random_bool(0.1) {
                    r.outcome = Outcome::Unknown;
                    r.version = None;
                    // Half the unknown-outcome puts took effect: reads may show them.
                    if rng.random_bool(0.5) {
                        puts.push((i, version));
                    }
                } else {
                    puts.push((i, version));
                }
            }
            4 => {
                r.kind = OpKind::Delete;
                r.version = Some(version);
            }
            _ => match rng.random_range(0..3) {
                0 if !puts.is_empty() => {
                    let (x, v) = puts[rng.random_range(0..puts.len())];
                    r.value_id = Some(x);
                    r.version = Some(v);
                }
                1 => {
                    r.tombstone = true;
                    r.version = Some(version);
                }
                _ => {}
            },
        }
        recs.push(r);
    }
    recs
}

fn brute_stale(recs: &[Record]) -> u64 {
    let writes: Vec<&Record> = recs
        .iter()
        .filter(|r| r.kind != OpKind::Get && r.outcome == Outcome::Ok)
        .collect();
    recs.iter()
        .filter(|g| g.kind == OpKind::Get)
        .filter(|g| {
            writes.iter().any(|w| {
                w.complete_ns < g.invoke_ns
                    && match g.version {
                        Some(v) => w.version > Some(v),
                        None => w.ttl_ms.is_none(),
                    }
            })
        })
        .count() as u64
}

/// Writes whose version is known, as (invoke, surely-done-by, version): acknowledged writes,
/// and unknown-outcome puts some read returned (done by that read's completion, the earliest).
fn brute_inversions(recs: &[Record], offset: u64) -> u64 {
    let mut writes: Vec<(u64, u64, Option<Version>)> = recs
        .iter()
        .filter(|r| r.kind != OpKind::Get && r.outcome == Outcome::Ok)
        .map(|r| (r.invoke_ns, r.complete_ns, r.version))
        .collect();
    for p in recs
        .iter()
        .filter(|r| r.kind == OpKind::Put && r.outcome == Outcome::Unknown)
    {
        let reads: Vec<&Record> = recs
            .iter()
            .filter(|g| g.kind == OpKind::Get && g.value_id == p.value_id)
            .collect();
        if let Some(first) = reads.iter().min_by_key(|g| g.complete_ns) {
            writes.push((p.invoke_ns, first.complete_ns, first.version));
        }
    }
    writes
        .iter()
        .filter(|b| writes.iter().any(|a| a.1 + offset < b.0 && a.2 > b.2))
        .count() as u64
}

#[test]
fn sweeps_agree_with_brute_force() {
    let offset = 50_000;
    for seed in 0..40 {
        let recs = random_history(seed);
        let mut c = Checker::new(CheckConfig {
            max_clock_offset_ns: offset,
            ..CheckConfig::default()
        });
        for (i, r) in recs.iter().enumerate() {
            c.add(i as u64 + 2, r.clone()).expect("valid row");
        }
        let report = c.finish().expect("unique op ids");
        assert_eq!(
            report.count(AnomalyClass::StaleRead),
            brute_stale(&recs),
            "stale reads, seed {seed}"
        );
        assert_eq!(
            report.count(AnomalyClass::RealTimeInversion),
            brute_inversions(&recs, offset),
            "inversions, seed {seed}"
        );
        assert!(
            report.count(AnomalyClass::StaleRead) > 0,
            "seed {seed} exercises the sweep"
        );
        // Each stale read's "versions behind" and "ms behind", by their definitions.
        for a in report
            .anomalies
            .iter()
            .filter(|a| a.class == AnomalyClass::StaleRead)
        {
            let g = &recs[(a.ops[0].line - 2) as usize];
            let missed: Vec<&Record> = recs
                .iter()
                .filter(|w| w.kind != OpKind::Get && w.outcome == Outcome::Ok)
                .filter(|w| {
                    w.complete_ns < g.invoke_ns
                        && match g.version {
                            Some(v) => w.version > Some(v),
                            None => w.ttl_ms.is_none(),
                        }
                })
                .collect();
            let first = missed.iter().map(|w| w.complete_ns).min().unwrap();
            let s = a.staleness.unwrap();
            assert_eq!(s.versions, missed.len() as u64, "seed {seed}");
            assert!((s.ms - (g.invoke_ns - first) as f64 / 1e6).abs() < 1e-9);
        }
    }
}
