//! A repair cycle: this node exchanges with every other replica of every arc it replicates
//! (or of those meeting the ranges asked), then records the arcs it fully repaired in the
//! repair ledger.
//!
//! Exchanging once with each peer in turn is not enough for the ledger's promise ("every
//! replica holds every write made before the cycle started"): what the last peer gave this
//! node has not reached the peers before it. So the cycle goes over the peers twice, the second
//! time without the last one: after the first pass this node holds the union of every
//! replica's pre-cycle writes, and the second pass hands it to the rest. An arc is recorded
//! only if every exchange that covered it was complete (every peer reached, both trees built,
//! nothing cut at the key limit); its record carries the cycle's start time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::time::Instant;

use kvstore_proto::pb;
use kvstore_proto::ring::Arc as TokenArc;

use super::exchange::{ExchangeReport, exchange};
use super::state::LastRepair;
use crate::node::shared::Shared;

/// Whether `arc` meets the token range `(start, end]` (`start == end`: the whole ring).
fn meets(arc: &TokenArc, range: &TokenArc) -> bool {
    range.contains(arc.end)
        || arc.contains(range.end)
        || (range.start == range.end)
        || (arc.start == arc.end)
}

/// What a cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleSummary {
    /// Exchanges run, and those that failed.
    pub exchanges: u64,
    pub failed: u64,
    /// Totals over the exchanges.
    pub total: ExchangeReport,
    /// Arcs recorded as repaired, out of the arcs covered.
    pub arcs_repaired: u64,
    pub arcs: u64,
    /// Wall time.
    pub elapsed_ms: u64,
}

/// One exchange's progress message.
pub fn progress_of(node: u32, r: &ExchangeReport, error: Option<String>) -> pb::RepairProgress {
    pb::RepairProgress {
        node,
        peer: r.peer,
        arcs: r.arcs,
        arcs_differing: r.arcs_differing,
        leaves_differing: r.leaves_differing,
        keys_compared: r.keys_compared,
        keys_fetched: r.fetched,
        keys_pushed: r.pushed,
        bytes: r.bytes,
        complete: error.is_none() && r.complete(),
        error: error.unwrap_or_default(),
        done: false,
        arcs_repaired: 0,
        elapsed_ms: 0,
    }
}

/// Runs a cycle over the arcs meeting `ranges` (all when empty), telling `progress` of each
/// exchange. Waits for a cycle already running to end first.
pub async fn run_cycle(
    shared: &Arc<Shared>,
    ranges: &[TokenArc],
    mut progress: impl FnMut(pb::RepairProgress),
) -> CycleSummary {
    let ae = &shared.anti_entropy;
    let _one = ae.cycle.lock().await;
    let began = Instant::now();
    let started_ms = shared.wall_ms();
    let view = shared.view();
    let me = shared.id();
    let rf = shared.config.replication_factor;
    let arcs: Vec<TokenArc> = ae
        .trees
        .arcs()
        .into_iter()
        .filter(|a| ranges.is_empty() || ranges.iter().any(|r| meets(a, r)))
        .collect();
    // Each arc's other replicas, and each peer's arcs.
    let mut ok: BTreeMap<TokenArc, bool> = BTreeMap::new();
    let mut by_peer: BTreeMap<u32, Vec<TokenArc>> = BTreeMap::new();
    for a in &arcs {
        let owners = view
            .placement
            .current()
            .preference_list_for_token(a.end, rf);
        ok.insert(*a, owners.contains(&me));
        for p in owners.into_iter().filter(|p| *p != me) {
            by_peer.entry(p).or_default().push(*a);
        }
    }
    let peers: Vec<u32> = by_peer.keys().copied().collect();
    let second: Vec<u32> = peers[..peers.len().saturating_sub(1)].to_vec();
    let mut summary = CycleSummary {
        arcs: arcs.len() as u64,
        ..CycleSummary::default()
    };
    for p in peers.iter().chain(second.iter()) {
        let peer_arcs = &by_peer[p];
        let outcome = if view.is_live(*p) {
            exchange(shared, *p, peer_arcs).await
        } else {
            Err(crate::error::Error::Peer {
                peer: *p,
                reason: "down".into(),
            })
        };
        summary.exchanges += 1;
        let (report, error) = match outcome {
            Ok(r) => (r, None),
            Err(e) => {
                summary.failed += 1;
                (
                    ExchangeReport {
                        peer: *p,
                        arcs: peer_arcs.len() as u64,
                        ..ExchangeReport::default()
                    },
                    Some(e.to_string()),
                )
            }
        };
        let synced: BTreeSet<&TokenArc> = report.synced.iter().collect();
        for a in peer_arcs {
            if !synced.contains(a)
                && let Some(flag) = ok.get_mut(a)
            {
                *flag = false;
            }
        }
        ae.figures.count_exchange(
            error.is_none(),
            report.keys_compared,
            report.fetched + report.pushed,
            report.bytes,
        );
        let t = &mut summary.total;
        t.arcs += report.arcs;
        t.arcs_differing += report.arcs_differing;
        t.leaves_differing += report.leaves_differing;
        t.keys_compared += report.keys_compared;
        t.fetched += report.fetched;
        t.pushed += report.pushed;
        t.bytes += report.bytes;
        progress(progress_of(me, &report, error));
    }
    let repaired: Vec<TokenArc> = ok.into_iter().filter(|(_, v)| *v).map(|(a, _)| a).collect();
    summary.arcs_repaired = repaired.len() as u64;
    if !repaired.is_empty() {
        match shared.repairs.record(&repaired, started_ms) {
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot save the repair ledger");
                summary.arcs_repaired = 0;
            }
        }
    }
    summary.elapsed_ms = began.elapsed().as_millis() as u64;
    if summary.arcs_repaired == summary.arcs && summary.arcs > 0 {
        ae.figures.count_cycle(LastRepair {
            started_ms,
            completed_ms: shared.wall_ms(),
            arcs: summary.arcs_repaired,
        });
    }
    tracing::info!(
        arcs = summary.arcs,
        repaired = summary.arcs_repaired,
        exchanges = summary.exchanges,
        failed = summary.failed,
        fetched = summary.total.fetched,
        pushed = summary.total.pushed,
        bytes = summary.total.bytes,
        elapsed_ms = summary.elapsed_ms,
        "repair cycle"
    );
    summary
}

/// The summary message of a cycle.
pub fn summary_message(node: u32, s: &CycleSummary) -> pb::RepairProgress {
    pb::RepairProgress {
        done: true,
        complete: s.arcs_repaired == s.arcs,
        arcs: s.arcs,
        arcs_repaired: s.arcs_repaired,
        elapsed_ms: s.elapsed_ms,
        error: if s.failed > 0 {
            format!("{} of {} exchanges failed", s.failed, s.exchanges)
        } else {
            String::new()
        },
        ..progress_of(node, &s.total, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arc_meets_a_range_that_overlaps_it() {
        let a = TokenArc { start: 10, end: 20 };
        assert!(meets(&a, &TokenArc { start: 15, end: 30 }));
        assert!(meets(&a, &TokenArc { start: 0, end: 12 }));
        assert!(meets(&a, &TokenArc { start: 12, end: 14 }));
        assert!(meets(&a, &TokenArc { start: 5, end: 5 }));
        assert!(!meets(&a, &TokenArc { start: 20, end: 30 }));
        assert!(!meets(&a, &TokenArc { start: 0, end: 10 }));
    }
}
