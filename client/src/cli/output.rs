//! Human-readable renderings of the ring and of a node's status for `kv ring` and `kv status`.
//! Pure functions from responses to text, so they are tested without a cluster.

use std::fmt::Write as _;

use kvstore_client::{pb, ring_placement};

/// A member state's name as operators read it.
fn state_name(raw: i32) -> &'static str {
    match pb::MemberState::try_from(raw) {
        Ok(pb::MemberState::Joining) => "joining",
        Ok(pb::MemberState::Up) => "up",
        Ok(pb::MemberState::Leaving) => "leaving",
        Ok(pb::MemberState::Down) => "down",
        Ok(pb::MemberState::Left) => "left",
        Ok(pb::MemberState::Suspect) => "suspect",
        Ok(pb::MemberState::Unknown) | Err(_) => "unknown",
    }
}

/// `kv ring`: one line per member with its state, the share of the ring it is primary for and
/// the share it replicates (at the ring's N).
pub fn ring_table(ring: &pb::RingStateResponse) -> String {
    let placement = ring_placement(ring);
    let primary = placement.ownership();
    let n = usize::try_from(ring.replication_factor.max(1)).unwrap_or(usize::MAX);
    let mut replicated = std::collections::BTreeMap::<u32, f64>::new();
    for (arc, owners) in placement.arcs(n) {
        for id in owners {
            *replicated.entry(id).or_default() += arc.fraction();
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ring version {}  hash {:016x}  N={}  vnodes={}  members={}",
        ring.ring_version,
        ring.ring_hash,
        ring.replication_factor,
        ring.vnodes,
        ring.members.len()
    );
    let _ = writeln!(
        out,
        "{:>6}  {:<22} {:<8} {:>9} {:>11}",
        "ID", "ADDRESS", "STATE", "PRIMARY%", "REPLICAS%"
    );
    let mut members: Vec<&pb::Member> = ring.members.iter().collect();
    members.sort_by_key(|m| m.id);
    for m in members {
        let pct = |map: &std::collections::BTreeMap<u32, f64>| {
            map.get(&m.id)
                .map_or_else(|| "-".to_string(), |f| format!("{:.1}", f * 100.0))
        };
        let _ = writeln!(
            out,
            "{:>6}  {:<22} {:<8} {:>9} {:>11}",
            m.id,
            m.address,
            state_name(m.state),
            pct(&primary),
            pct(&replicated)
        );
    }
    out
}

/// `kv status`: one block per node.
pub fn status_block(s: &pb::NodeStatusResponse) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node {} at {}", s.node_id, s.address);
    let _ = writeln!(
        out,
        "  ring version {}  hash {:016x}",
        s.ring_version, s.ring_hash
    );
    let mut members: Vec<&pb::Member> = s.members.iter().collect();
    members.sort_by_key(|m| m.id);
    let view: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.id, state_name(m.state)))
        .collect();
    let _ = writeln!(out, "  members  {}", view.join(" "));
    let _ = writeln!(
        out,
        "  keys {}  hints pending {}  hints replayed {}  read repairs {}  clock-skew rejections {}",
        s.keys, s.hints_pending, s.hints_replayed, s.read_repairs, s.clock_skew_rejections
    );
    let _ = writeln!(
        out,
        "  hints: {} bytes held, {} dropped at a bound, {} past the hint window",
        s.hints_bytes, s.hints_dropped, s.hints_expired
    );
    if let Some(ae) = &s.anti_entropy {
        let _ = writeln!(out, "{}", anti_entropy_line(ae));
    }
    if s.restoring {
        let _ = writeln!(
            out,
            "  RESTORING: started with an empty data directory; streaming its ranges from the \
             other replicas, answering no replica reads until then"
        );
    }
    if let Some(c) = &s.clock {
        let offsets: Vec<String> = c
            .offsets
            .iter()
            .map(|o| format!("{}:{:+}ms±{}", o.node, o.offset_ms, o.uncertainty_ms))
            .collect();
        let _ = writeln!(
            out,
            "  clock {}  offsets to peers {}  floor ahead {} ms  writes refused for the clock {}",
            c.state,
            if offsets.is_empty() {
                "-".into()
            } else {
                offsets.join(" ")
            },
            c.floor_ahead_ms,
            c.writes_refused
        );
        if !c.reason.is_empty() {
            let _ = writeln!(out, "    {}", c.reason);
        }
    }
    let _ = writeln!(
        out,
        "  admission: {} requests and {} of {} bytes in flight, {} shed  speculative reads {}",
        s.inflight_requests,
        s.inflight_bytes,
        s.inflight_bytes_limit,
        s.requests_shed,
        s.speculative_reads
    );
    if !s.writes_refused.is_empty() {
        let _ = writeln!(out, "  storage takes no writes: {}", s.writes_refused);
    }
    if !s.replica_refusals.is_empty() {
        let refusals: Vec<String> = s
            .replica_refusals
            .iter()
            .map(|r| {
                let kind = pb::Refusal::try_from(r.refusal)
                    .map(|k| {
                        k.as_str_name()
                            .trim_start_matches("REFUSAL_")
                            .to_lowercase()
                    })
                    .unwrap_or_else(|_| r.refusal.to_string());
                format!("node {} {kind} {}", r.node, r.count)
            })
            .collect();
        let _ = writeln!(out, "  replica refusals  {}", refusals.join(", "));
    }
    if let Some(st) = &s.storage {
        let _ = writeln!(
            out,
            "  storage: {} keys, {} live bytes, {} dead bytes, {} segments; recovered {}, truncated {}, skipped {}",
            st.keys,
            st.live_bytes,
            st.dead_bytes,
            st.segments,
            st.records_recovered,
            st.records_truncated,
            st.records_skipped
        );
    }
    out.push('\n');
    out
}

/// An absolute expiry for humans: `never`, or the time left.
pub fn expiry(expires_at_ms: u64) -> String {
    if expires_at_ms == 0 {
        return "never".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if expires_at_ms <= now {
        format!("at {expires_at_ms} (past)")
    } else {
        format!("at {expires_at_ms} (in {} ms)", expires_at_ms - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, state: pb::MemberState) -> pb::Member {
        pb::Member {
            id,
            address: format!("127.0.0.1:700{id}"),
            state: state as i32,
            incarnation: 1,
            heartbeat: 3,
            ..Default::default()
        }
    }

    #[test]
    fn ring_table_shares() {
        let ring = pb::RingStateResponse {
            ring_version: 4,
            members: vec![
                member(2, pb::MemberState::Down),
                member(1, pb::MemberState::Up),
                member(3, pb::MemberState::Up),
                member(4, pb::MemberState::Joining),
            ],
            vnodes: 64,
            replication_factor: 3,
            ring_hash: 0xabc,
        };
        let text = ring_table(&ring);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].contains("ring version 4"), "{text}");
        // Sorted by id; three owners replicate everything at N=3; the joiner owns nothing yet.
        assert!(lines[2].contains("127.0.0.1:7001") && lines[2].contains("up"));
        assert!(
            lines[3].contains("down") && lines[3].ends_with("100.0"),
            "{text}"
        );
        assert!(
            lines[5].contains("joining") && lines[5].ends_with("-"),
            "{text}"
        );
        let primaries: f64 = lines[2..5]
            .iter()
            .map(|l| {
                l.split_whitespace()
                    .nth(3)
                    .and_then(|p| p.parse::<f64>().ok())
                    .expect("a share")
            })
            .sum();
        assert!((primaries - 100.0).abs() < 0.5, "{text}");
    }

    #[test]
    fn expiry_text() {
        assert_eq!(expiry(0), "never");
        assert!(expiry(1).contains("past"));
        assert!(expiry(u64::MAX).contains("in "));
    }
}

/// The anti-entropy line of `kv status`.
pub fn anti_entropy_line(ae: &pb::AntiEntropyStatus) -> String {
    if !ae.enabled {
        return "  anti-entropy off (--no-anti-entropy)".into();
    }
    let last = if ae.last_repair_completed_ms == 0 {
        "never".to_string()
    } else {
        format!(
            "{} (started {}, {} arcs)",
            utc_ms(ae.last_repair_completed_ms),
            utc_ms(ae.last_repair_started_ms),
            ae.last_repair_arcs
        )
    };
    format!(
        "  anti-entropy: last repair {last}; {} repairs, {} exchanges ({} failed), {} keys \
         compared, {} repaired, {} bytes\n    trees: {}/{} arcs built{}, {} keys, {} bytes, {} \
         rebuilds",
        ae.repairs_completed,
        ae.exchanges,
        ae.exchanges_failed,
        ae.keys_compared,
        ae.keys_repaired,
        ae.bytes,
        ae.arcs_built,
        ae.arcs,
        if ae.rebuilding { " (rebuilding)" } else { "" },
        ae.tree_pairs,
        ae.tree_bytes,
        ae.rebuilds
    )
}

/// `kv repair`: one exchange.
pub fn repair_line(p: &pb::RepairProgress) -> String {
    let mut line = format!(
        "node {} <-> node {}: {} arcs, {} differing, {} leaves, {} keys compared, {} fetched, {} \
         pushed, {} bytes{}",
        p.node,
        p.peer,
        p.arcs,
        p.arcs_differing,
        p.leaves_differing,
        p.keys_compared,
        p.keys_fetched,
        p.keys_pushed,
        p.bytes,
        if p.complete { "" } else { ", INCOMPLETE" }
    );
    if !p.error.is_empty() {
        line.push_str(&format!(" ({})", p.error));
    }
    line
}

/// `kv repair`: a node's summary.
pub fn repair_summary(p: &pb::RepairProgress) -> String {
    format!(
        "{} node {}: {} of {} arcs repaired in {} ms; {} keys compared, {} fetched, {} pushed, \
         {} bytes{}",
        if p.complete { "OK" } else { "INCOMPLETE" },
        p.node,
        p.arcs_repaired,
        p.arcs,
        p.elapsed_ms,
        p.keys_compared,
        p.keys_fetched,
        p.keys_pushed,
        p.bytes,
        if p.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.error)
        }
    )
}

/// `ms` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn utc_ms(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod repair_tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_ms(1_796_342_400_123), "2026-12-04T00:00:00.123Z");
        assert_eq!(utc_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
