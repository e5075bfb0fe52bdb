//! The verdict: the rules that judge a history, as pure functions over the parsed model
//! (no I/O, no clock; time comes from the history's own timestamps).
//!
//! The rules, per key (each explained where it is implemented):
//! - `reads`: every read names a value some put of that key wrote (phantom), not one that
//!   definitely failed, with that put's one version (version integrity, also: no two writes
//!   share a version), and no value is read after its expiry beyond the clock offset;
//! - `convergence`: the replicas' final reads agree; the agreed state was written by an
//!   acknowledged or unknown-outcome write; no acknowledged write is newer than it (lost write,
//!   or resurrection when a delete was lost under an older value);
//! - `realtime`: versions against real time: no version further ahead of the real time it was
//!   observed at than the clock offset (`future_version`, needs the history's clock record), no
//!   write older than one that completed more than the offset before it began
//!   (`real_time_inversion`), no read of a write invoked after the read completed
//!   (`causality`);
//! - `staleness`: reported, not failed: stale reads.
//!
//! Deliberately not checked: anything across keys (no transactions), read-your-writes or
//! monotonic reads during the run (eventual consistency does not promise them), and replica
//! placement (the history does not say which nodes should hold a key).

pub(crate) mod convergence;
pub(crate) mod reads;
pub(crate) mod realtime;
pub(crate) mod staleness;

use crate::fasthash::FastMap as HashMap;
use crate::fasthash::FastSet as HashSet;

use crate::model::{Model, Op};
use crate::report::{Anomaly, AnomalyClass, Findings, Report, Summary};
use crate::{CheckerError, ClockRecord, Record};

/// Tuning of the verdict.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// Largest difference between any two clocks (nodes' and loadgen's), in ns. Real-time rules
    /// (expiry, real-time inversion) only judge events further apart than this. Default 500 ms,
    /// the servers' default `max_clock_offset`.
    pub max_clock_offset_ns: u64,
    /// How long the servers keep a tombstone before compaction may drop it, in ns (their
    /// `tombstone_grace`, default 1 hour). A key whose acknowledged delete left no tombstone on
    /// any replica is only excused once this has surely passed. Default 1 hour.
    pub tombstone_grace_ns: u64,
    /// Anomalies listed per class in the report (all are counted). Default 1000.
    pub max_listed_per_class: usize,
    /// The history's clock record (wall-clock anchor, clock faults): `future_version` is only
    /// checked with one. Its `max_clock_offset_ms` is informative here; the offset used is
    /// `max_clock_offset_ns` (the binary sets it from the record unless told otherwise).
    pub clock: Option<ClockRecord>,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            max_clock_offset_ns: 500_000_000,
            tombstone_grace_ns: 3_600_000_000_000,
            max_listed_per_class: 1000,
            clock: None,
        }
    }
}

/// Parses a duration like `500ms`, `1s`, `250us`, `100ns`, `2m`, `1h` or `0` into ns.
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` must start with a whole number, like 500ms"))?;
    let mul = match unit {
        "" if n == 0 => 1,
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(format!("`{s}`: unit must be one of ns, us, ms, s, m, h")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("`{s}` overflows 64-bit nanoseconds"))
}

/// Streaming front end: feed rows with [`Checker::add`] as they are read, then [`Checker::finish`].
#[derive(Debug, Default)]
pub struct Checker {
    model: Model,
    cfg: CheckConfig,
}

impl Checker {
    /// A checker with the given configuration.
    pub fn new(cfg: CheckConfig) -> Self {
        Self {
            model: Model::default(),
            cfg,
        }
    }

    /// Adds one row (as read by [`crate::HistoryReader`], with its line number). Fails on a row
    /// that contradicts an earlier one (a reused op id or value id).
    pub fn add(&mut self, line: u64, record: Record) -> Result<(), CheckerError> {
        record.validate(line)?;
        self.model.add(line, record)
    }

    /// Runs every rule and returns the report. Fails when two rows share an op_id (checked
    /// here, once every row is in).
    pub fn finish(mut self) -> Result<Report, CheckerError> {
        self.model.seal()?;
        Ok(judge(&self.model, &self.cfg))
    }
}

/// Checks a whole history: reads every row, then judges. The first unreadable row stops it.
pub fn check<I>(records: I, cfg: &CheckConfig) -> Result<Report, CheckerError>
where
    I: IntoIterator<Item = Result<(u64, Record), CheckerError>>,
{
    let mut c = Checker::new(cfg.clone());
    for r in records {
        let (line, rec) = r?;
        c.add(line, rec)?;
    }
    c.finish()
}

/// Context the rule modules share.
pub(crate) struct Ctx<'a> {
    pub model: &'a Model,
    pub offset: u64,
    /// [`CheckConfig::tombstone_grace_ns`].
    pub grace: u64,
    /// Value ids of unknown-outcome puts observed by some read (their effect is proven).
    pub applied_unknown: HashSet<u64>,
    /// [`CheckConfig::clock`].
    pub clock: Option<&'a ClockRecord>,
    /// Value id -> earliest completion of an ok read that returned it: by then the put surely
    /// took effect (for an unknown-outcome put, the only such bound: the coordinator may stamp
    /// it long after the client gave up, e.g. once a paused node resumes).
    pub first_seen: HashMap<u64, u64>,
}

impl Ctx<'_> {
    /// When `put` surely took effect (its version was stamped by then): its ack, or for an
    /// unknown outcome the first ok read that returned its value (`None`: never shown).
    pub fn stamped_by(&self, put: &Op) -> Option<u64> {
        match put.outcome {
            crate::Outcome::Ok => Some(put.complete),
            _ => put.value_id.and_then(|x| self.first_seen.get(&x).copied()),
        }
    }

    /// When `put`'s value surely expired, for judging a read that returned it (a violation):
    /// stamped by [`Self::stamped_by`], plus the TTL, the clock offset and 1 ms for the
    /// millisecond granularity of expiry times. `None` for an unknown-outcome put no read showed.
    pub fn surely_expired_for_reads(&self, put: &Op) -> Option<u64> {
        let ttl = put.ttl_ms?;
        Some(
            self.stamped_by(put)?
                .saturating_add(ttl.saturating_mul(1_000_000))
                .saturating_add(self.offset)
                .saturating_add(1_000_000),
        )
    }

    /// The same bound from the put's completion, for excusing a final state (nothing where an
    /// expired value was): lenient for unknown-outcome puts, whose late stamping would only
    /// leave the value live, which the replicas' states then show.
    pub fn surely_expired_at(&self, put: &Op) -> Option<u64> {
        put.ttl_ms.map(|ttl| {
            put.complete
                .saturating_add(ttl.saturating_mul(1_000_000))
                .saturating_add(self.offset)
                .saturating_add(1_000_000)
        })
    }

    /// Earliest time (ns since run start) `put`'s value may have expired.
    pub fn maybe_expired_at(&self, put: &Op) -> Option<u64> {
        put.ttl_ms.map(|ttl| {
            put.invoke
                .saturating_add(ttl.saturating_mul(1_000_000))
                .saturating_sub(self.offset)
                .saturating_sub(1_000_000)
        })
    }
}

fn judge(model: &Model, cfg: &CheckConfig) -> Report {
    let mut f = Findings::new(cfg.max_listed_per_class);
    let mut ctx = Ctx {
        model,
        offset: cfg.max_clock_offset_ns,
        grace: cfg.tombstone_grace_ns,
        applied_unknown: HashSet::default(),
        clock: cfg.clock.as_ref(),
        first_seen: first_seen(model),
    };
    reads::check(&mut ctx, &mut f);
    let has_final_phase = model.final_reads_count.total() > 0;
    let writes = model.puts_count.total() + model.deletes_count.total();
    let mut keys_verified = 0;
    if has_final_phase {
        keys_verified = convergence::check(&mut ctx, &mut f);
    } else if writes > 0 {
        f.push(AnomalyClass::UnverifiedKey, || Anomaly {
            class: AnomalyClass::UnverifiedKey,
            key: String::new(),
            message: format!(
                "the history has no final reads, so the convergence of its {} keys cannot be \
                 verified (record_history needs the quiescent final phase)",
                model.keys.len()
            ),
            ops: Vec::new(),
            staleness: None,
        });
    }
    realtime::check(&ctx, &mut f);
    staleness::check(&ctx, &mut f);
    let gets_ok = model.gets_count.ok;
    let stale = f.count(AnomalyClass::StaleRead);
    let (counts, anomalies) = f.finish();
    let valid = counts.iter().all(|(c, n)| !c.is_violation() || *n == 0);
    Report {
        summary: Summary {
            operations: model.operations(),
            keys: model.keys.len() as u64,
            keys_verified,
            replicas: model.replicas.len() as u64,
            puts: model.puts_count,
            deletes: model.deletes_count,
            gets: model.gets_count,
            final_reads: model.final_reads_count,
            unknown_writes_applied: ctx.applied_unknown.len() as u64,
            stale_read_share: if gets_ok == 0 {
                0.0
            } else {
                stale as f64 / gets_ok as f64
            },
            max_clock_offset_ms: cfg.max_clock_offset_ns as f64 / 1e6,
            anchor_unix_ms: cfg.clock.as_ref().map(|c| c.anchor_unix_ms),
            clock_faults: cfg.clock.as_ref().map_or(0, |c| c.faults.len() as u64),
            quiesce_ms: quiesce_ms(model),
        },
        counts,
        anomalies,
        valid,
    }
}

/// Value id -> earliest completion of an ok read (get or final read) that returned it.
fn first_seen(model: &Model) -> HashMap<u64, u64> {
    let mut out: HashMap<u64, u64> = HashMap::default();
    for op in model.keys.iter().flat_map(|k| &k.ops) {
        if let (true, Some(x)) = (op.is_ok_read(), op.value_id) {
            out.entry(x)
                .and_modify(|t| *t = (*t).min(op.complete))
                .or_insert(op.complete);
        }
    }
    out
}

/// First final read's start minus the last run operation's completion, in ms.
fn quiesce_ms(model: &Model) -> Option<f64> {
    let mut last_op = None::<u64>;
    let mut first_final = None::<u64>;
    for op in model.keys.iter().flat_map(|k| &k.ops) {
        if op.kind == crate::OpKind::FinalRead {
            first_final = Some(first_final.map_or(op.invoke, |f| f.min(op.invoke)));
        } else {
            last_op = Some(last_op.map_or(op.complete, |l| l.max(op.complete)));
        }
    }
    let (last, first) = (last_op?, first_final?);
    Some(first.saturating_sub(last) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_with_units() {
        let cases = [
            ("500ms", Ok(500_000_000)),
            ("1s", Ok(1_000_000_000)),
            ("250us", Ok(250_000)),
            ("7ns", Ok(7)),
            ("0", Ok(0)),
            ("2m", Ok(120_000_000_000)),
            ("1h", Ok(3_600_000_000_000)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration_ns(s), want, "{s}");
        }
        for bad in ["", "ms", "5", "5d", "1.5s", "99999999999999999999s"] {
            assert!(parse_duration_ns(bad).is_err(), "{bad}");
        }
    }
}
