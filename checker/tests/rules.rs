//! Table tests of the verdict: one small hand-written history per rule and per tricky valid
//! case, each with the exact anomaly counts expected (every class not listed must be 0).
//!
//! Rows follow the header in `kvstore_checker::history::COLUMNS`:
//! op_id,client,node,kind,key,value_id,tombstone,outcome,invoke_ns,complete_ns,
//! version_hlc,version_node,ttl_ms,expires_at_ms,replica

use kvstore_checker::history::COLUMNS;
use kvstore_checker::{
    AnomalyClass as C, CheckConfig, ClockAction, ClockFault, ClockRecord, HistoryReader, Report,
    check,
};

/// Final reads of key `k` on the three replicas, all returning the same state
/// (`value_id,tombstone,version_hlc,version_node`), starting at op id `op`.
fn finals(op: u64, k: &str, state: &str) -> String {
    (0..3)
        .map(|r| {
            let (x, t, h, n) = parts(state);
            format!(
                "{},0,n1,final_read,{k},{x},{t},ok,9000000000,9000000001,{h},{n},,,r{}\n",
                op + r,
                r + 1
            )
        })
        .collect()
}

fn parts(state: &str) -> (&str, &str, &str, &str) {
    let p: Vec<&str> = state.split(',').collect();
    (p[0], p[1], p[2], p[3])
}

fn run(csv: &str, offset_ms: u64) -> Report {
    run_with(csv, offset_ms, 3_600_000)
}

fn run_with(csv: &str, offset_ms: u64, grace_ms: u64) -> Report {
    run_clocked(csv, offset_ms, grace_ms, None)
}

fn run_clocked(csv: &str, offset_ms: u64, grace_ms: u64, clock: Option<ClockRecord>) -> Report {
    let text = format!("{}\n{csv}", COLUMNS.join(","));
    let reader = HistoryReader::new(text.as_bytes()).expect("header");
    check(
        reader,
        &CheckConfig {
            max_clock_offset_ns: offset_ms * 1_000_000,
            tombstone_grace_ns: grace_ms * 1_000_000,
            clock,
            ..CheckConfig::default()
        },
    )
    .expect("readable history")
}

/// The wall-clock anchor of the clocked cases: the run's zero was Unix time 1,000,000 ms.
const ANCHOR_MS: u64 = 1_000_000;

/// An HLC whose physical part is `ms` after the anchor.
const fn hlc_at(ms: u64) -> u64 {
    (ANCHOR_MS + ms) << 16
}

/// A clock record with the anchor, offset 500 ms and node 2's clock bumped 1 h ahead from 0 s.
fn clock_record() -> ClockRecord {
    ClockRecord {
        anchor_unix_ms: ANCHOR_MS,
        max_clock_offset_ms: 500,
        faults: vec![ClockFault {
            node: 2,
            addr: "n2".into(),
            action: ClockAction::Bump,
            from_ns: 0,
            until_ns: None,
            delta_ms: 3_600_000,
            period_ms: None,
            rate: None,
        }],
    }
}

struct Case {
    name: &'static str,
    history: String,
    offset_ms: u64,
    grace_ms: u64,
    clock: Option<ClockRecord>,
    expect: &'static [(C, u64)],
}

fn case(name: &'static str, history: String, expect: &'static [(C, u64)]) -> Case {
    Case {
        name,
        history,
        offset_ms: 500,
        grace_ms: 3_600_000,
        clock: None,
        expect,
    }
}

/// A case judged with [`clock_record`].
fn clocked(name: &'static str, history: String, expect: &'static [(C, u64)]) -> Case {
    Case {
        clock: Some(clock_record()),
        ..case(name, history, expect)
    }
}

fn cases() -> Vec<Case> {
    // Versions with a physical part of 1000 ms for TTL cases: hlc = 1000 << 16.
    const T1000: u64 = 1000 << 16;
    vec![
        // ---------------------------------------------------------------- valid histories
        case(
            "one acknowledged put, converged",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n".to_string() + &finals(2, "a", "1,false,10,1"),
            &[],
        ),
        case(
            "an unknown-outcome write that won",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,1,n2,put,a,2,,unknown,2000000,9000000,,,,,\n"
                .to_string()
                + &finals(3, "a", "2,false,20,2"),
            &[],
        ),
        case(
            "an unknown-outcome write that never took effect",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,1,n2,put,a,2,,unknown,2000000,9000000,,,,,\n"
                .to_string()
                + &finals(3, "a", "1,false,10,1"),
            &[],
        ),
        case(
            "an acknowledged write superseded by a newer one",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,2,,ok,2000000,3000000,20,1,,,\n"
                .to_string()
                + &finals(3, "a", "2,false,20,1"),
            &[],
        ),
        case(
            "a delete then a newer put",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,ok,2000000,3000000,20,1,,,\n\
             3,0,n1,put,a,2,,ok,4000000,5000000,30,1,,,\n"
                .to_string()
                + &finals(4, "a", "2,false,30,1"),
            &[],
        ),
        case(
            "equal HLC broken by node id",
            "1,0,n1,put,a,1,,ok,0,1000000,50,1,,,\n\
             2,1,n2,put,a,2,,ok,0,1000000,50,2,,,\n"
                .to_string()
                + &finals(3, "a", "2,false,50,2"),
            &[],
        ),
        case(
            "a delete wins: every replica holds its tombstone",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,ok,2000000,3000000,20,1,,,\n"
                .to_string()
                + &finals(3, "a", ",true,20,1"),
            &[],
        ),
        Case {
            name: "a tombstone collected on every replica after its grace period",
            history: "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
                      2,0,n1,delete,a,,,ok,2000000,3000000,20,1,,,\n"
                .to_string()
                + &finals(3, "a", ",false,,"),
            offset_ms: 500,
            grace_ms: 1000,
            clock: None,
            expect: &[],
        },
        case(
            "lost write: a tombstone gone from every replica before its grace period",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,ok,2000000,3000000,15,1,,,\n\
             3,0,n1,delete,a,,,ok,4000000,5000000,20,1,,,\n"
                .to_string()
                + &finals(4, "a", ",false,,"),
            &[(C::LostWrite, 1)],
        ),
        case(
            "an unknown-outcome delete that won",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,unknown,2000000,3000000,,,,,\n"
                .to_string()
                + &finals(3, "a", ",true,30,1"),
            &[],
        ),
        case(
            "an expired value compacted on one replica only",
            format!(
                "1,0,n1,put,a,1,,ok,0,1000000,{T1000},1,100,,\n\
                 2,0,n1,final_read,a,,,ok,9000000000,9000000001,,,,,r1\n\
                 3,0,n1,final_read,a,1,,ok,9000000000,9000000001,{T1000},1,,1100,r2\n\
                 4,0,n1,final_read,a,1,,ok,9000000000,9000000001,{T1000},1,,1100,r3\n\
                 5,0,n1,final_read,a,,true,ok,9000000000,9000000001,{T1000},1,,,\n"
            ),
            &[],
        ),
        case(
            "a get of a value before its expiry, with the exact expires_at_ms",
            format!(
                "1,0,n1,put,a,1,,ok,0,1000000,{T1000},1,100,,\n\
                 2,0,n1,get,a,1,,ok,50000000,51000000,{T1000},1,,1100,\n\
                 3,0,n1,delete,a,,,ok,60000000,61000000,{},1,,,\n",
                T1000 + 5
            ) + &finals(4, "a", &format!(",true,{},1", T1000 + 5)),
            &[],
        ),
        Case {
            name: "an unknown-outcome delete whose tombstone was collected after its grace",
            history: "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
                      2,0,n1,delete,a,,,unknown,500000,3000000,,,,,\n"
                .to_string()
                + &finals(3, "a", ",false,,"),
            offset_ms: 500,
            grace_ms: 1000,
            clock: None,
            expect: &[],
        },
        case(
            "lost write: nothing left, an unknown delete's tombstone cannot be collected yet",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,unknown,500000,3000000,,,,,\n"
                .to_string()
                + &finals(3, "a", ",false,,"),
            &[(C::LostWrite, 1)],
        ),
        case(
            "an expired put compacted away everywhere",
            format!("1,0,n1,put,a,1,,ok,0,1000000,{T1000},1,100,,\n") + &finals(2, "a", ",false,,"),
            &[],
        ),
        case(
            "lost write: an unknown delete long before the put cannot excuse it",
            "1,0,n1,delete,a,,,unknown,0,1000000,,,,,\n\
             2,0,n1,put,a,1,,ok,2000000000,2001000000,10,1,,,\n"
                .to_string()
                + &finals(3, "a", ",false,,"),
            &[(C::LostWrite, 1)],
        ),
        case(
            "a failed get and a failed put are ignored",
            "1,0,n1,put,a,1,,fail,0,1000000,,,,,\n\
             2,0,n1,get,a,,,fail,0,1000000,,,,,\n"
                .to_string()
                + &finals(3, "a", ",false,,"),
            &[],
        ),
        // ---------------------------------------------------------------- one rule each
        case(
            "agreement: replicas hold different versions",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,2,,ok,2000000,3000000,20,1,,,\n\
             3,0,n1,final_read,a,1,,ok,9000000000,9000000001,10,1,,,r1\n\
             4,0,n1,final_read,a,2,,ok,9000000000,9000000001,20,1,,,r2\n\
             5,0,n1,final_read,a,2,,ok,9000000000,9000000001,20,1,,,r3\n"
                .to_string(),
            &[(C::Divergence, 1)],
        ),
        case(
            "agreement: a tombstone lost on one replica",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,ok,2000000,3000000,20,1,,,\n\
             3,0,n1,final_read,a,,,ok,9000000000,9000000001,,,,,r1\n\
             4,0,n1,final_read,a,,true,ok,9000000000,9000000001,20,1,,,r2\n\
             5,0,n1,final_read,a,,true,ok,9000000000,9000000001,20,1,,,r3\n"
                .to_string(),
            &[(C::Divergence, 1)],
        ),
        case(
            "agreement: the read through the cluster disagrees with the replicas",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,2,,ok,2000000,3000000,20,1,,,\n\
             3,0,n1,final_read,a,1,,ok,8000000000,8000000001,10,1,,,\n"
                .to_string()
                + &finals(4, "a", "2,false,20,1"),
            &[(C::Divergence, 1)],
        ),
        case(
            "winner: replicas hold the value of a put that definitely failed",
            "1,0,n1,put,a,1,,fail,0,1000000,,,,,\n".to_string() + &finals(2, "a", "1,false,10,1"),
            &[(C::BadWinner, 1)],
        ),
        case(
            "winner: a tombstone no delete can explain",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n".to_string() + &finals(2, "a", ",true,20,1"),
            &[(C::BadWinner, 1)],
        ),
        case(
            "winner: replicas hold a value id nobody wrote",
            finals(1, "a", "77,false,20,1"),
            &[(C::BadWinner, 1)],
        ),
        case(
            "lost write: the older acknowledged value won",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,2,,ok,2000000,3000000,20,1,,,\n"
                .to_string()
                + &finals(3, "a", "1,false,10,1"),
            &[(C::LostWrite, 1)],
        ),
        case(
            "lost write: nothing left of an acknowledged put without TTL",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n".to_string() + &finals(2, "a", ",false,,"),
            &[(C::LostWrite, 1)],
        ),
        case(
            "lost write: a newer acknowledged put lost under a tombstone",
            "1,0,n1,delete,a,,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,1,,ok,2000000,3000000,20,1,,,\n"
                .to_string()
                + &finals(3, "a", ",true,10,1"),
            &[(C::LostWrite, 1)],
        ),
        case(
            "resurrection: an acknowledged delete lost under the older value",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,ok,2000000,3000000,20,1,,,\n"
                .to_string()
                + &finals(3, "a", "1,false,10,1"),
            &[(C::Resurrection, 1)],
        ),
        case(
            "phantom: a get returns a value id nobody wrote",
            "1,0,n1,get,a,42,,ok,0,1000000,10,1,,,\n".to_string() + &finals(2, "a", ",false,,"),
            &[(C::PhantomRead, 1)],
        ),
        case(
            "phantom: a get returns another key's value",
            "1,0,n1,put,b,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,get,a,1,,ok,2000000,3000000,10,1,,,\n"
                .to_string()
                + &finals(3, "a", ",false,,")
                + &finals(6, "b", "1,false,10,1"),
            &[(C::PhantomRead, 1)],
        ),
        case(
            "phantom: a get returns a value without a value id",
            "1,0,n1,get,a,,false,ok,0,1000000,10,1,,,\n".to_string() + &finals(2, "a", ",false,,"),
            &[(C::PhantomRead, 1)],
        ),
        case(
            "winner: replicas hold a value without a value id",
            finals(1, "a", ",false,10,1"),
            &[(C::BadWinner, 1)],
        ),
        case(
            "failed write read: a get returns the value of a failed put",
            "1,0,n1,put,a,1,,fail,0,1000000,,,,,\n\
             2,0,n1,get,a,1,,ok,2000000,3000000,10,1,,,\n"
                .to_string()
                + &finals(3, "a", ",false,,"),
            &[(C::FailedWriteRead, 1)],
        ),
        case(
            "version integrity: a value read with another version than acknowledged",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,get,a,1,,ok,2000000,3000000,11,1,,,\n\
             3,0,n1,get,a,1,,ok,4000000,5000000,11,1,,,\n"
                .to_string()
                + &finals(4, "a", "1,false,10,1"),
            &[(C::VersionConflict, 1)],
        ),
        case(
            "version integrity: two writes acknowledged with one version",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,2,,ok,0,1000000,10,1,,,\n"
                .to_string()
                + &finals(3, "a", "2,false,10,1"),
            &[(C::VersionConflict, 1)],
        ),
        case(
            "version integrity: a tombstone carrying a put's version",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,delete,a,,,unknown,2000000,3000000,,,,,\n"
                .to_string()
                + &finals(3, "a", ",true,10,1"),
            &[(C::VersionConflict, 1)],
        ),
        case(
            "ttl: a value read long after its expiry",
            format!(
                "1,0,n1,put,a,1,,ok,0,1000000,{T1000},1,100,,\n\
                 2,0,n1,get,a,1,,ok,700000000,701000000,{T1000},1,,,\n"
            ) + &finals(3, "a", &format!("1,false,{T1000},1")),
            &[(C::ExpiredRead, 1)],
        ),
        case(
            "ttl: the store reports an expiry other than physical_ms + ttl_ms",
            format!(
                "1,0,n1,put,a,1,,ok,0,1000000,{T1000},1,100,,\n\
                 2,0,n1,get,a,1,,ok,2000000,3000000,{T1000},1,,1099,\n"
            ) + &finals(3, "a", &format!("1,false,{T1000},1")),
            &[(C::ExpiredRead, 1)],
        ),
        case(
            "unverified: a written key without final reads (another key has them)",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,b,2,,ok,0,1000000,11,1,,,\n"
                .to_string()
                + &finals(3, "b", "2,false,11,1"),
            &[(C::UnverifiedKey, 1)],
        ),
        case(
            "unverified: no final phase at all",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n".to_string(),
            &[(C::UnverifiedKey, 1)],
        ),
        case(
            "unverified: only the read through the cluster, no replica read directly",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,final_read,a,1,,ok,9000000000,9000000001,10,1,,,\n"
                .to_string(),
            &[(C::UnverifiedKey, 1)],
        ),
        case(
            "unverified: a replica's final read failed",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,final_read,a,1,,ok,9000000000,9000000001,10,1,,,r1\n\
             3,0,n1,final_read,a,1,,ok,9000000000,9000000001,10,1,,,r2\n\
             4,0,n1,final_read,a,,,unknown,9000000000,9000000001,,,,,r3\n"
                .to_string(),
            &[(C::UnverifiedKey, 1)],
        ),
        // ---------------------------------------------------------------- reported only
        case(
            "stale read: a get missed an acknowledged write completed before it began",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,2,,ok,1000000,2000000,20,1,,,\n\
             3,0,n1,get,a,1,,ok,5000000,6000000,10,1,,,\n"
                .to_string()
                + &finals(4, "a", "2,false,20,1"),
            &[(C::StaleRead, 1)],
        ),
        case(
            "not stale: the missed write was concurrent with the read",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,put,a,2,,ok,1000000,8000000,20,1,,,\n\
             3,0,n1,get,a,1,,ok,5000000,6000000,10,1,,,\n"
                .to_string()
                + &finals(4, "a", "2,false,20,1"),
            &[],
        ),
        case(
            "an unknown-outcome TTL put stamped after the client gave up is read within its ttl",
            // The put timed out at 1 s (a paused coordinator); it took effect later: first
            // read at 4 s. A read at 5.5 s is within ttl 2000 ms of that, not an expired read.
            "1,0,n1,put,a,1,,unknown,0,1000000000,,,2000,,\n\
             2,0,n2,get,a,1,false,ok,3900000000,4000000000,10,1,,,\n\
             3,0,n2,get,a,1,false,ok,5500000000,5600000000,10,1,,,\n"
                .to_string()
                + &finals(4, "a", ",false,,"),
            &[],
        ),
        case(
            "expired read of an unknown-outcome TTL put: past ttl + offset of the first read of it",
            "1,0,n1,put,a,1,,unknown,0,1000000000,,,2000,,\n\
             2,0,n2,get,a,1,false,ok,3900000000,4000000000,10,1,,,\n\
             3,0,n2,get,a,1,false,ok,6600000000,6700000000,10,1,,,\n"
                .to_string()
                + &finals(4, "a", ",false,,"),
            &[(C::ExpiredRead, 1)],
        ),
        // ------------------------------------------------ versions against real time
        Case {
            name: "real-time inversion: a later write got the older version",
            history: "1,0,n1,put,a,1,,ok,0,1000000,50,1,,,\n\
                      2,1,n2,put,a,2,,ok,20000000,21000000,40,2,,,\n"
                .to_string()
                + &finals(3, "a", "1,false,50,1"),
            offset_ms: 10,
            grace_ms: 3_600_000,
            clock: None,
            expect: &[(C::RealTimeInversion, 1)],
        },
        Case {
            name: "no inversion within the clock offset",
            history: "1,0,n1,put,a,1,,ok,0,1000000,50,1,,,\n\
                      2,1,n2,put,a,2,,ok,5000000,6000000,40,2,,,\n"
                .to_string()
                + &finals(3, "a", "1,false,50,1"),
            offset_ms: 10,
            grace_ms: 3_600_000,
            clock: None,
            expect: &[],
        },
        Case {
            name: "real-time inversion through an unknown-outcome write whose version a read showed",
            history: "1,0,n1,put,a,1,,unknown,0,30000000,,,,,\n\
                      2,0,n1,get,a,1,false,ok,1000000,2000000,50,1,,,\n\
                      3,1,n2,put,a,2,,ok,20000000,21000000,40,2,,,\n"
                .to_string()
                + &finals(4, "a", "1,false,50,1"),
            offset_ms: 10,
            grace_ms: 3_600_000,
            clock: None,
            expect: &[(C::RealTimeInversion, 1)],
        },
        Case {
            name: "no inversion against an unknown-outcome write no read showed",
            history: "1,0,n1,put,a,1,,unknown,0,1000000,,,,,\n\
                      2,1,n2,put,a,2,,ok,20000000,21000000,40,2,,,\n"
                .to_string()
                + &finals(3, "a", "2,false,40,2"),
            offset_ms: 10,
            grace_ms: 3_600_000,
            clock: None,
            expect: &[],
        },
        clocked(
            "future version: an acknowledged write stamped 2 s ahead of real time",
            format!(
                "1,0,n2,put,a,1,,ok,0,1000000,{h},2,,,\n{}",
                finals(2, "a", &format!("1,false,{},2", hlc_at(2001))),
                h = hlc_at(2001)
            ),
            &[(C::FutureVersion, 1)],
        ),
        clocked(
            "no future version within the clock offset",
            format!(
                "1,0,n2,put,a,1,,ok,0,1000000,{h},2,,,\n{}",
                finals(2, "a", &format!("1,false,{},2", hlc_at(450))),
                h = hlc_at(450)
            ),
            &[],
        ),
        clocked(
            "future version of an unknown-outcome put, judged at the first read that showed it",
            format!(
                "1,0,n2,put,a,1,,unknown,0,1000000,,,,,\n\
                 2,0,n1,get,a,1,false,ok,3000000,5000000,{h},2,,,\n{}",
                finals(3, "a", &format!("1,false,{},2", hlc_at(1000))),
                h = hlc_at(1000)
            ),
            &[(C::FutureVersion, 1)],
        ),
        case(
            "no future_version without a clock record (an older history)",
            format!(
                "1,0,n2,put,a,1,,ok,0,1000000,{h},2,,,\n{}",
                finals(2, "a", &format!("1,false,{},2", hlc_at(2001))),
                h = hlc_at(2001)
            ),
            &[],
        ),
        case(
            "causality: a read returned a value whose put was invoked after the read completed",
            "1,0,n1,get,a,1,false,ok,1000000,5000000,10,1,,,\n\
             2,0,n1,put,a,1,,ok,10000000,11000000,10,1,,,\n"
                .to_string()
                + &finals(3, "a", "1,false,10,1"),
            &[(C::Causality, 1)],
        ),
        case(
            "causality: a tombstone read before its delete was invoked",
            "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
             2,0,n1,get,a,,true,ok,2000000,5000000,20,1,,,\n\
             3,0,n1,delete,a,,,ok,10000000,11000000,20,1,,,\n"
                .to_string()
                + &finals(4, "a", ",true,20,1"),
            &[(C::Causality, 1)],
        ),
        case(
            "no causality violation: a read concurrent with the put it returned",
            "1,0,n1,put,a,1,,ok,1000000,9000000,10,1,,,\n\
             2,0,n1,get,a,1,false,ok,0,5000000,10,1,,,\n"
                .to_string()
                + &finals(3, "a", "1,false,10,1"),
            &[],
        ),
    ]
}

#[test]
fn every_rule_and_tricky_valid_case_gives_the_expected_verdict() {
    let mut failures = Vec::new();
    for c in cases() {
        let report = run_clocked(&c.history, c.offset_ms, c.grace_ms, c.clock.clone());
        for class in C::ALL {
            let want = c
                .expect
                .iter()
                .find(|(k, _)| *k == class)
                .map_or(0, |(_, n)| *n);
            let got = report.count(class);
            if got != want {
                failures.push(format!(
                    "{}: {} = {got}, expected {want}\n{}",
                    c.name,
                    class.name(),
                    report.render_text(5)
                ));
            }
        }
        let want_valid = c.expect.iter().all(|(k, _)| !k.is_violation());
        if report.valid != want_valid {
            failures.push(format!("{}: valid = {}", c.name, report.valid));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn anomalies_name_the_operations_and_their_csv_lines() {
    let report = run(
        &("1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
           2,0,n1,delete,a,,,ok,2000000,3000000,20,1,,,\n"
            .to_string()
            + &finals(3, "a", "1,false,10,1")),
        500,
    );
    let a = &report.anomalies[0];
    assert_eq!(a.class, C::Resurrection);
    assert_eq!(a.key, "a");
    let lines: Vec<u64> = a.ops.iter().map(|o| o.line).collect();
    // The header is line 1: the delete is line 3, the final reads lines 4..=6.
    assert_eq!(lines, vec![3, 4, 5, 6]);
    assert!(
        a.message.contains("deleted value came back"),
        "{}",
        a.message
    );
    let text = report.render_text(10);
    assert!(text.contains("line        3"), "{text}");
    assert!(text.contains("VIOLATIONS (resurrection)"), "{text}");
}

#[test]
fn staleness_is_measured_in_versions_and_ms() {
    let report = run(
        &("1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
           2,0,n1,put,a,2,,ok,1000000,2000000,20,1,,,\n\
           3,0,n1,put,a,3,,ok,1000000,3000000,30,1,,,\n\
           4,0,n1,get,a,1,,ok,5000000,6000000,10,1,,,\n"
            .to_string()
            + &finals(5, "a", "3,false,30,1")),
        500,
    );
    let s = report.anomalies[0].staleness.expect("stale read");
    assert_eq!(s.versions, 2);
    assert!((s.ms - 3.0).abs() < 1e-9, "{}", s.ms);
    assert_eq!(report.anomalies[0].ops[1].line, 3, "first missed write");
    assert!((report.summary.stale_read_share - 1.0).abs() < 1e-9);
    assert!(report.valid);
}

#[test]
fn summary_counts_outcomes_and_applied_unknown_writes() {
    let report = run(
        &("1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
           2,1,n2,put,a,2,,unknown,2000000,9000000,,,,,\n\
           3,1,n2,put,a,3,,fail,2000000,9000000,,,,,\n\
           4,1,n2,get,a,2,,ok,10000000,11000000,20,2,,,\n"
            .to_string()
            + &finals(5, "a", "2,false,20,2")),
        500,
    );
    let s = &report.summary;
    assert_eq!(s.operations, 7);
    assert_eq!(s.keys, 1);
    assert_eq!(s.keys_verified, 1);
    assert_eq!(s.replicas, 3);
    assert_eq!((s.puts.ok, s.puts.unknown, s.puts.fail), (1, 1, 1));
    assert_eq!(s.gets.ok, 1);
    assert_eq!(s.final_reads.ok, 3);
    assert_eq!(s.unknown_writes_applied, 1);
    // Last run operation completes at 11 ms, final reads start at 9 s.
    assert_eq!(s.quiesce_ms, Some(8989.0));
    assert!(report.valid, "{}", report.render_text(5));
}

#[test]
fn reused_ids_make_the_history_unreadable() {
    let cases = [
        (
            "1,0,n1,put,a,1,,ok,0,1,10,1,,,\n1,0,n1,get,a,,,ok,0,1,,,,,\n",
            "history line 3: op_id 1 is used twice (first seen on line 2)",
        ),
        (
            "1,0,n1,put,a,1,,ok,0,1,10,1,,,\n2,0,n1,put,b,1,,ok,0,1,11,1,,,\n",
            "history line 3: value_id 1 is written by two puts (first seen on line 2)",
        ),
    ];
    for (csv, want) in cases {
        let text = format!("{}\n{csv}", COLUMNS.join(","));
        let err = check(
            HistoryReader::new(text.as_bytes()).unwrap(),
            &CheckConfig::default(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn the_readme_example_is_a_valid_history() {
    let readme = include_str!("../README.md");
    let start = readme.find("```csv\n").expect("csv block") + "```csv\n".len();
    let end = start + readme[start..].find("```").expect("end of block");
    let reader = HistoryReader::new(&readme.as_bytes()[start..end]).expect("header");
    let report = check(reader, &CheckConfig::default()).expect("readable");
    assert!(report.valid, "{}", report.render_text(5));
    assert_eq!(report.summary.operations, 9);
    assert_eq!(report.summary.keys_verified, 1);
}

#[test]
fn a_future_version_names_the_clock_fault_in_force_on_the_stamping_node() {
    let h = hlc_at(3_600_000);
    let report = run_clocked(
        &format!(
            "1,0,n2,put,a,1,,ok,0,1000000,{h},2,,,\n{}",
            finals(2, "a", &format!("1,false,{h},2"))
        ),
        500,
        3_600_000,
        Some(clock_record()),
    );
    assert!(!report.valid);
    let a = &report.anomalies[0];
    assert_eq!(a.class, C::FutureVersion);
    assert!(
        a.message.contains("clock bump +3600000 ms on node 2"),
        "{}",
        a.message
    );
    assert_eq!(a.ops[0].line, 2, "the acknowledged write");
    assert_eq!(report.summary.anchor_unix_ms, Some(ANCHOR_MS));
    assert_eq!(report.summary.clock_faults, 1);
}

#[test]
fn divergence_read_before_the_cluster_read_is_called_a_missing_repair() {
    // Replica r3 missed the put; the final read through the cluster, taken after the replica
    // reads, returned the newest state (and would have repaired r3 by read repair).
    let report = run(
        "1,0,n1,put,a,1,,ok,0,1000000,10,1,,,\n\
         2,0,n1,final_read,a,1,false,ok,9000000000,9000000001,10,1,,,r1\n\
         3,0,n1,final_read,a,1,false,ok,9000000000,9000000001,10,1,,,r2\n\
         4,0,n1,final_read,a,,false,ok,9000000000,9000000001,,,,,r3\n\
         5,0,n1,final_read,a,1,false,ok,9000000002,9000000003,10,1,,,\n",
        500,
    );
    assert_eq!(report.count(C::Divergence), 1, "{}", report.render_text(5));
    let a = &report.anomalies[0];
    assert!(a.message.contains("no repair mechanism"), "{}", a.message);
}
