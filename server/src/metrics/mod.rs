//! The node's Prometheus metrics: a `prometheus-client` registry with one collector that reads
//! the node's existing counters and gauges at scrape time, served as Prometheus text (0.0.4) on
//! `--metrics-listen ADDR` ([`http`]). Off by default: the endpoint has no authentication, so
//! an operator opts in and picks the address (a loopback or management interface).
//!
//! Nothing is counted twice: the families read the same atomics NodeStatus reports
//! (`Counters`, the hint store, admission, the clock guard, the storage engine), plus the
//! hot-path instruments of [`crate::instruments`] (request counts and latency, replica ack and
//! fsync latency). Recording stays a relaxed atomic add; all the formatting happens here, on
//! the scrape. Histogram buckets are fixed constants, so they sum across nodes.
//!
//! Families (units in the names; counters end in `_total`):
//!
//! | family | type | labels |
//! |---|---|---|
//! | `kvstore_client_requests_total` | counter | `op`, `consistency`, `outcome` |
//! | `kvstore_client_request_duration_seconds` | histogram | `op`, `consistency` |
//! | `kvstore_replica_acks_total`, `kvstore_replica_ack_duration_seconds` | counter, histogram | |
//! | `kvstore_replica_failures_total` | counter | `kind` (`not_sent`, `unreachable`, `refused_<refusal>`) |
//! | `kvstore_read_repairs_total`, `kvstore_speculative_reads_total` | counter | |
//! | `kvstore_hints_pending`, `kvstore_hints_bytes`, `kvstore_hints_backlog_bytes` | gauge | |
//! | `kvstore_hints_stored_total`, `kvstore_hints_replayed_total`, `kvstore_hints_dropped_total`, `kvstore_hints_expired_total` | counter | |
//! | `kvstore_repair_exchanges_total`, `kvstore_repair_exchanges_failed_total`, `kvstore_repair_keys_compared_total`, `kvstore_repair_keys_repaired_total`, `kvstore_repair_bytes_total`, `kvstore_repairs_completed_total` | counter | |
//! | `kvstore_repair_last_completed_timestamp_seconds`, `kvstore_repair_tree_bytes`, `kvstore_repair_tree_arcs`, `kvstore_repair_tree_arcs_built` | gauge | |
//! | `kvstore_storage_keys`, `kvstore_storage_live_bytes`, `kvstore_storage_dead_bytes`, `kvstore_storage_segments` | gauge | |
//! | `kvstore_storage_fsync_duration_seconds` | histogram | |
//! | `kvstore_storage_compactions_total`, `kvstore_storage_recovery_records_skipped_total`, `kvstore_storage_recovery_records_truncated_total` | counter | |
//! | `kvstore_clock_skew_rejections_total`, `kvstore_clock_writes_refused_total` | counter | |
//! | `kvstore_clock_peer_offset_seconds`, `kvstore_clock_peer_offset_uncertainty_seconds` | gauge | `peer` |
//! | `kvstore_clock_healthy` | gauge | |
//! | `kvstore_members` | gauge | `state` |
//! | `kvstore_ring_version` | gauge | |
//! | `kvstore_admission_shed_total` | counter | |
//! | `kvstore_admission_inflight_requests`, `kvstore_admission_inflight_bytes` | gauge | |
//! | `kvstore_admission_inflight_bytes_limit` (adaptive) | gauge | |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes` | counter, gauge | |
//! | `kvstore_node_info` | gauge (1) | `node_id`, `pid`, `version` |
//!
//! Not here: pushing anywhere (a Prometheus server scrapes), or any per-key label (cardinality
//! stays fixed: a few hundred series per node).

pub mod http;
pub mod procfs;
pub mod text;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use kvstore_proto::pb;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::clock_guard::ClockState;
use crate::instruments::{HistogramSnapshot, LEVELS, OPS, OUTCOMES};
use crate::node::shared::Shared;

/// The registry of a node: one collector over its shared state. Holds it weakly, so a scrape
/// racing shutdown never keeps the engine (and its directory lock) alive.
pub fn registry(shared: &Arc<Shared>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(NodeCollector {
        shared: Arc::downgrade(shared),
        ticks_per_s: procfs::clock_ticks(),
    }));
    r
}

/// Renders `registry` as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a family here.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
struct NodeCollector {
    shared: Weak<Shared>,
    ticks_per_s: f64,
}

type Labels = Vec<(&'static str, String)>;

/// Writes one family of `metric_type` with one sample per label set.
fn family<V: Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: Vec<(Labels, V)>,
    mut write: impl FnMut(&mut prometheus_client::encoding::MetricEncoder, V) -> fmt::Result,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, metric_type)?;
    for (labels, v) in series {
        if labels.is_empty() {
            write(&mut m, v)?;
        } else {
            let mut fm = m.encode_family(&labels)?;
            write(&mut fm, v)?;
        }
    }
    Ok(())
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    counters(enc, name, help, vec![(Vec::new(), v)])
}

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, u64)>,
) -> fmt::Result {
    family(enc, name, help, MetricType::Counter, series, |m, v| {
        m.encode_counter::<NoLabelSet, _, u64>(&v, None)
    })
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> fmt::Result {
    gauges(enc, name, help, vec![(Vec::new(), v)])
}

fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, f64)>,
) -> fmt::Result {
    family(enc, name, help, MetricType::Gauge, series, |m, v| {
        m.encode_gauge(&v)
    })
}

fn histograms(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: Vec<(Labels, HistogramSnapshot)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in series {
        // The encoder accumulates: hand it per-bucket counts.
        let mut prev = 0;
        let per_bucket: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .map(|&(le, cum)| {
                let n = cum - prev;
                prev = cum;
                (le, n)
            })
            .collect();
        if labels.is_empty() {
            m.encode_histogram::<NoLabelSet>(h.sum_s, h.count, &per_bucket, None)?;
        } else {
            m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                h.sum_s,
                h.count,
                &per_bucket,
                None,
            )?;
        }
    }
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Some(s) = self.shared.upgrade() else {
            return Ok(());
        };
        let enc = &mut enc;
        requests(enc, &s)?;
        replication(enc, &s)?;
        hints(enc, &s)?;
        anti_entropy(enc, &s)?;
        storage(enc, &s)?;
        clock(enc, &s)?;
        membership(enc, &s)?;
        admission(enc, &s)?;
        process(enc, &s, self.ticks_per_s)
    }
}

fn requests(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    let r = &s.requests;
    let mut counts = Vec::new();
    let mut latency = Vec::new();
    for (o, op) in OPS.iter().enumerate() {
        for (l, level) in LEVELS.iter().enumerate() {
            let h = r.latency(o, l).snapshot();
            if h.count == 0 {
                continue; // no request of this kind yet: no series (fixed cardinality anyway)
            }
            for (x, outcome) in OUTCOMES.iter().enumerate() {
                let n = r.count(o, l, x);
                if n > 0 || x == 0 {
                    counts.push((
                        vec![
                            ("op", op.to_string()),
                            ("consistency", level.to_string()),
                            ("outcome", outcome.to_string()),
                        ],
                        n,
                    ));
                }
            }
            latency.push((
                vec![("op", op.to_string()), ("consistency", level.to_string())],
                h,
            ));
        }
    }
    counters(
        enc,
        "kvstore_client_requests",
        "Client requests this node coordinated, by operation, consistency level and outcome \
         (ok or the gRPC status code).",
        counts,
    )?;
    histograms(
        enc,
        "kvstore_client_request_duration_seconds",
        "Time from receiving a client request to answering it, by operation and consistency.",
        latency,
    )
}

fn replication(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    let ack = s.peers.latency().buckets().snapshot();
    counter(
        enc,
        "kvstore_replica_acks",
        "Replica writes sent to peers and acknowledged.",
        ack.count,
    )?;
    histograms(
        enc,
        "kvstore_replica_ack_duration_seconds",
        "Time from handing a write to a peer's replication stream to its acknowledgement.",
        vec![(Vec::new(), ack)],
    )?;
    let c = &s.counters;
    let mut failures = vec![
        (
            vec![("kind", "not_sent".to_string())],
            c.replica_not_sent.load(Ordering::Relaxed),
        ),
        (
            vec![("kind", "unreachable".to_string())],
            c.replica_unreachable.load(Ordering::Relaxed),
        ),
    ];
    let mut refused: std::collections::BTreeMap<String, u64> = Default::default();
    for (&(_, refusal), &n) in c
        .replica_refusals
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let name = refusal.as_str_name().to_ascii_lowercase();
        let name = name.strip_prefix("refusal_").unwrap_or(&name).to_string();
        *refused.entry(format!("refused_{name}")).or_default() += n;
    }
    failures.extend(refused.into_iter().map(|(k, n)| (vec![("kind", k)], n)));
    counters(
        enc,
        "kvstore_replica_failures",
        "Replica writes this node sent that failed, by kind: not_sent (never left this node), \
         unreachable (no answer; may be applied), refused_<reason> (the replica said no).",
        failures,
    )?;
    counter(
        enc,
        "kvstore_read_repairs",
        "Read repairs sent (one per stale replica healed).",
        c.read_repairs.load(Ordering::Relaxed),
    )?;
    counter(
        enc,
        "kvstore_speculative_reads",
        "Reads that also asked a spare replica because the first ones were slow.",
        c.speculative_reads.load(Ordering::Relaxed),
    )
}

fn hints(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    let h = &s.hints;
    gauge(
        enc,
        "kvstore_hints_pending",
        "Hints waiting to be replayed, all targets together.",
        h.pending() as f64,
    )?;
    gauge(
        enc,
        "kvstore_hints_bytes",
        "Bytes of the hints held.",
        h.bytes() as f64,
    )?;
    gauge(
        enc,
        "kvstore_hints_backlog_bytes",
        "Bytes of hints waiting to be stored.",
        h.backlog_bytes() as f64,
    )?;
    counter(enc, "kvstore_hints_stored", "Hints stored.", h.stored())?;
    counter(
        enc,
        "kvstore_hints_replayed",
        "Hints replayed to their replica successfully.",
        s.counters.hints_replayed.load(Ordering::Relaxed),
    )?;
    counter(
        enc,
        "kvstore_hints_dropped",
        "Hints dropped because a bound was reached (per target, bytes, backlog).",
        h.dropped(),
    )?;
    counter(
        enc,
        "kvstore_hints_expired",
        "Hints dropped because their write was older than the hint window.",
        h.expired(),
    )
}

fn anti_entropy(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    let ae = &s.anti_entropy;
    let f = &ae.figures;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        enc,
        "kvstore_repair_exchanges",
        "Anti-entropy exchanges this node ran with a peer.",
        load(&f.exchanges),
    )?;
    counter(
        enc,
        "kvstore_repair_exchanges_failed",
        "Anti-entropy exchanges that failed (peer down or unreachable).",
        load(&f.exchanges_failed),
    )?;
    counter(
        enc,
        "kvstore_repair_keys_compared",
        "Keys listed in differing tree leaves, both sides.",
        load(&f.keys_compared),
    )?;
    counter(
        enc,
        "kvstore_repair_keys_repaired",
        "Keys copied by anti-entropy, fetched and pushed.",
        load(&f.keys_repaired),
    )?;
    counter(
        enc,
        "kvstore_repair_bytes",
        "Bytes of anti-entropy messages, sent and received.",
        load(&f.bytes),
    )?;
    counter(
        enc,
        "kvstore_repairs_completed",
        "Repair cycles that repaired every arc they covered.",
        load(&f.repairs_completed),
    )?;
    gauge(
        enc,
        "kvstore_repair_last_completed_timestamp_seconds",
        "When the last complete repair cycle ended (Unix seconds; 0: never).",
        f.last().completed_ms as f64 / 1000.0,
    )?;
    let t = ae.trees.state();
    gauge(
        enc,
        "kvstore_repair_tree_bytes",
        "Heap bytes of the anti-entropy hash trees.",
        t.bytes as f64,
    )?;
    gauge(
        enc,
        "kvstore_repair_tree_arcs",
        "Arcs this node keeps a hash tree for.",
        t.arcs as f64,
    )?;
    gauge(
        enc,
        "kvstore_repair_tree_arcs_built",
        "Arcs whose hash tree is built (the others are skipped by exchanges).",
        t.built as f64,
    )
}

fn storage(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    let st = s.engine.stats();
    gauge(
        enc,
        "kvstore_storage_keys",
        "Keys stored (values and tombstones).",
        st.keys as f64,
    )?;
    gauge(
        enc,
        "kvstore_storage_live_bytes",
        "Bytes of records that are the newest version of their key.",
        st.live_bytes as f64,
    )?;
    gauge(
        enc,
        "kvstore_storage_dead_bytes",
        "Bytes of superseded records on disk, reclaimable by compaction.",
        st.dead_bytes as f64,
    )?;
    gauge(
        enc,
        "kvstore_storage_segments",
        "Segment files.",
        st.segments as f64,
    )?;
    let (fsync, compactions) = match &s.log {
        Some(l) => (l.fsync_latency().snapshot(), l.compactions()),
        None => (
            crate::instruments::Histogram::new(crate::instruments::FSYNC_BUCKETS).snapshot(),
            0,
        ),
    };
    histograms(
        enc,
        "kvstore_storage_fsync_duration_seconds",
        "Latency of each segment fdatasync (one group commit may cover many writes).",
        vec![(Vec::new(), fsync)],
    )?;
    counter(
        enc,
        "kvstore_storage_compactions",
        "Compactions completed.",
        compactions,
    )?;
    counter(
        enc,
        "kvstore_storage_recovery_records_skipped",
        "Corrupt records skipped when the storage was opened (never served).",
        st.records_skipped,
    )?;
    counter(
        enc,
        "kvstore_storage_recovery_records_truncated",
        "Records cut off a torn tail when the storage was opened.",
        st.records_truncated,
    )
}

fn clock(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    counter(
        enc,
        "kvstore_clock_skew_rejections",
        "Remote versions refused for being too far ahead of this node's clock.",
        s.hlc.skew_rejections(),
    )?;
    counter(
        enc,
        "kvstore_clock_writes_refused",
        "Writes this node refused to coordinate because its clock was unsafe.",
        s.clock.refusals(),
    )?;
    let (wall, mono) = (s.wall_ms(), s.mono_ms());
    let samples = s.clock.samples();
    gauges(
        enc,
        "kvstore_clock_peer_offset_seconds",
        "Measured clock offset of each peer (peer minus this node).",
        samples
            .iter()
            .map(|(node, sample)| {
                (
                    vec![("peer", node.to_string())],
                    sample.offset_now(wall, mono) as f64 / 1000.0,
                )
            })
            .collect(),
    )?;
    gauges(
        enc,
        "kvstore_clock_peer_offset_uncertainty_seconds",
        "Half the round trip of each peer's offset measurement.",
        samples
            .iter()
            .map(|(node, sample)| {
                (
                    vec![("peer", node.to_string())],
                    sample.uncertainty_ms as f64 / 1000.0,
                )
            })
            .collect(),
    )?;
    gauge(
        enc,
        "kvstore_clock_healthy",
        "1 when this node judges its clock safe to stamp writes, else 0.",
        if s.clock_verdict().state == ClockState::Healthy {
            1.0
        } else {
            0.0
        },
    )
}

fn membership(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    let ring = crate::service::internal::ring_state(s);
    let states = [
        pb::MemberState::Joining,
        pb::MemberState::Up,
        pb::MemberState::Suspect,
        pb::MemberState::Down,
        pb::MemberState::Leaving,
        pb::MemberState::Left,
    ];
    gauges(
        enc,
        "kvstore_members",
        "Members of the cluster as this node judges them, by state.",
        states
            .iter()
            .map(|st| {
                let n = ring
                    .members
                    .iter()
                    .filter(|m| m.state == *st as i32)
                    .count();
                let name = st.as_str_name().to_ascii_lowercase();
                (vec![("state", name)], n as f64)
            })
            .collect(),
    )?;
    gauge(
        enc,
        "kvstore_ring_version",
        "Version of the ring (member table) this node routes by.",
        ring.ring_version as f64,
    )
}

fn admission(enc: &mut DescriptorEncoder, s: &Shared) -> fmt::Result {
    let a = &s.admission;
    counter(
        enc,
        "kvstore_admission_shed",
        "Client requests shed (RESOURCE_EXHAUSTED) because the in-flight budget was spent.",
        a.shed(),
    )?;
    gauge(
        enc,
        "kvstore_admission_inflight_requests",
        "Client requests in flight.",
        a.inflight_requests() as f64,
    )?;
    gauge(
        enc,
        "kvstore_admission_inflight_bytes",
        "Bytes of client requests in flight (reads counted by their expected size).",
        a.inflight_bytes() as f64,
    )?;
    gauge(
        enc,
        "kvstore_admission_inflight_bytes_limit",
        "The in-flight byte limit in force: at most --max-inflight-bytes, lowered while requests \
         take longer than --admission-target-latency-ms.",
        a.byte_limit() as f64,
    )
}

fn process(enc: &mut DescriptorEncoder, s: &Shared, ticks_per_s: f64) -> fmt::Result {
    let pid = std::process::id();
    if let Some(r) = procfs::read_process(std::path::Path::new("/proc"), pid, ticks_per_s) {
        let c = prometheus_client::metrics::counter::ConstCounter::new(r.cpu_s);
        let m = enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            c.metric_type(),
        )?;
        c.encode(m)?;
        gauge(
            enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            r.rss_bytes as f64,
        )?;
    }
    gauges(
        enc,
        "kvstore_node_info",
        "Always 1; the labels say which node and process this is.",
        vec![(
            vec![
                ("node_id", s.id().to_string()),
                ("pid", pid.to_string()),
                ("version", env!("CARGO_PKG_VERSION").to_string()),
            ],
            1.0,
        )],
    )
}
