//! History recording for the checker (`record_history = true`).
//!
//! Every operation of the load phase and of the run gets a unique id; every written value
//! carries that id in its first bytes ([`kvstore_checker::value_id`]), so any read names the
//! write it saw. Each operation becomes a [`Record`] streamed to `history.csv` as it completes
//! (the file is never held in memory). After the run, [`final_reads`] appends, for every key the
//! run touched, a direct read of each of the key's replicas (`LocalRead`, no repair) and then a
//! read through the cluster, which the checker uses to verify convergence. The replicas are
//! read first because the read through the cluster starts read repair on them: read after it,
//! they would show a repaired key even when no repair mechanism (hints) had done its job.
//!
//! Beside `history.csv`, [`HistoryRecorder::finish`] writes its clock record,
//! `history.clock.json` ([`ClockRecord`]): the run's wall-clock anchor (Unix ms at the history's
//! zero, from loadgen's own clock), the cluster's clock-offset bound and every clock fault
//! applied, so the checker can set versions against real time.
//!
//! For a peer store (Redis, etcd), [`peer_final_reads`] does the same through its driver: a
//! read as clients read, then a read of each member alone (Redis: the primary and each
//! replica; etcd: a serializable read of each member).
//!
//! Quiescing the cluster before the final reads (healing faults, waiting for hints to drain) is
//! the run's job; this module only records.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kvstore_checker::history::{HistoryWriter, OpKind as HKind, Outcome, Record};
use kvstore_checker::value_id;
use kvstore_checker::{ClockFault, ClockRecord};
use kvstore_client::{Client, ErrorKind, ReadOptions};

use crate::LoadgenError;
use crate::driver::executor::StoreExecutor;
use crate::driver::store::Store;
use crate::driver::{OpObserver, OpReport};
use crate::generator::{Op, OpKind};

/// Streams a run's operations to `history.csv`.
pub struct HistoryRecorder {
    writer: Mutex<Option<HistoryWriter<BufWriter<File>>>>,
    next_id: AtomicU64,
    start: Instant,
    failure: Mutex<Option<String>>,
    path: PathBuf,
    /// Written next to the history by [`Self::finish`]; clock faults are added as applied.
    clock: Mutex<ClockRecord>,
}

impl std::fmt::Debug for HistoryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryRecorder")
            .field("next_id", &self.next_id)
            .finish()
    }
}

/// Copies the clock faults the timeline applied (`log`) into `rec`'s clock record, on the
/// history's time base; `origin` is the timeline's zero (a strobe's `until_s` counts from it).
pub fn record_clock_faults(
    rec: &HistoryRecorder,
    log: &crate::cluster::faults::FaultLog,
    origin: Instant,
    endpoints: &[String],
) {
    let applied = log
        .clock_faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (at, f, node) in applied {
        let until = f
            .until_s
            .map(|u| rec.at_ns(origin + Duration::from_secs_f64(u)));
        let addr = endpoints.get(node as usize).cloned().unwrap_or_default();
        if let Some(cf) = crate::cluster::clock::record_fault(&f, node, &addr, rec.at_ns(at), until)
        {
            rec.record_clock_fault(cf);
        }
    }
}

/// The servers' default `--max-clock-offset-ms`.
pub const DEFAULT_MAX_CLOCK_OFFSET_MS: u64 = 500;

/// The clock-offset bound nodes started with `server_args` run with: their
/// `--max-clock-offset-ms` (either spelling, `--flag N` or `--flag=N`), else the default.
pub fn max_clock_offset_ms(server_args: &[String]) -> u64 {
    const FLAG: &str = "--max-clock-offset-ms";
    let mut found = None;
    for (i, a) in server_args.iter().enumerate() {
        if a == FLAG {
            found = server_args.get(i + 1).and_then(|v| v.parse().ok());
        } else if let Some(v) = a.strip_prefix(FLAG).and_then(|r| r.strip_prefix('=')) {
            found = v.parse().ok();
        }
    }
    found.unwrap_or(DEFAULT_MAX_CLOCK_OFFSET_MS)
}

fn outcome(r: &Result<(), ErrorKind>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(ErrorKind::UnknownOutcome) => Outcome::Unknown,
        // Unavailable (nothing written) and definite refusals.
        Err(_) => Outcome::Fail,
    }
}

impl HistoryRecorder {
    /// Creates `path`; times are recorded relative to `start`, which must be about now: the
    /// wall-clock anchor is read here. `max_clock_offset_ms` is the cluster's offset bound.
    pub fn create(
        path: &Path,
        start: Instant,
        max_clock_offset_ms: u64,
    ) -> Result<Self, LoadgenError> {
        // The anchor: wall-clock time at `start`, from the same moment's two clocks.
        let (now_i, now_s) = (Instant::now(), SystemTime::now());
        let since_epoch = now_s
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let anchor = since_epoch.saturating_sub(now_i.saturating_duration_since(start));
        let f = File::create(path).map_err(|e| LoadgenError::results(path, e))?;
        let w = HistoryWriter::new(BufWriter::with_capacity(1 << 20, f))
            .map_err(|e| LoadgenError::History(e.to_string()))?;
        Ok(Self {
            writer: Mutex::new(Some(w)),
            next_id: AtomicU64::new(1),
            start,
            failure: Mutex::new(None),
            path: path.to_path_buf(),
            clock: Mutex::new(ClockRecord {
                anchor_unix_ms: anchor.as_millis() as u64,
                max_clock_offset_ms,
                faults: Vec::new(),
            }),
        })
    }

    /// ns on the history's time base of `t`.
    pub fn at_ns(&self, t: Instant) -> u64 {
        self.ns(t)
    }

    /// Adds a clock fault to the clock record. A fault on a node ends the one in force there.
    pub fn record_clock_fault(&self, fault: ClockFault) {
        let mut c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        for f in c.faults.iter_mut().filter(|f| f.node == fault.node) {
            if f.until_ns.is_none_or(|u| u > fault.from_ns) {
                f.until_ns = Some(fault.from_ns);
            }
        }
        c.faults.push(fault);
    }

    /// Ends every clock fault still in force at `at` (the healing before the final phase).
    pub fn clock_faults_healed(&self, at: Instant) {
        let at = self.ns(at);
        let mut c = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        for f in c.faults.iter_mut().filter(|f| f.until_ns.is_none()) {
            f.until_ns = Some(at);
        }
    }

    /// The clock record as it stands.
    pub fn clock_record(&self) -> ClockRecord {
        self.clock.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// Appends one record; the first write error is kept and reported by [`Self::finish`].
    pub fn write(&self, r: &Record) {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = w.as_mut()
            && let Err(e) = w.write(r)
        {
            let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| format!("op {}: {e}", r.op_id));
        }
    }

    /// A fresh operation id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Flushes the file and writes the clock record beside it; fails if any record could not
    /// be written.
    pub fn finish(&self) -> Result<(), LoadgenError> {
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.into_inner()
                .map_err(|e| LoadgenError::History(e.to_string()))?;
        }
        self.clock_record()
            .write_sidecar(&self.path)
            .map_err(|e| LoadgenError::History(e.to_string()))?;
        match self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(LoadgenError::History(e)),
            None => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read_record(
        &self,
        op_id: u64,
        client: u32,
        node: String,
        kind: HKind,
        key: &str,
        value: Option<&Bytes>,
        version: Option<kvstore_client::Version>,
        expires_at_ms: u64,
        outcome: Outcome,
        invoke: Instant,
        complete: Instant,
        replica: Option<String>,
    ) -> Record {
        let ok = outcome == Outcome::Ok;
        let value_id = value.and_then(|v| value_id::decode(v));
        Record {
            op_id,
            client,
            node,
            kind,
            key: key.to_string(),
            value_id: if ok { value_id } else { None },
            // A read that found no value but a version saw a tombstone.
            tombstone: ok && value.is_none() && version.is_some(),
            outcome,
            invoke_ns: self.ns(invoke),
            complete_ns: self.ns(complete).max(self.ns(invoke)),
            version: if ok { version } else { None },
            ttl_ms: None,
            expires_at_ms: (ok && expires_at_ms > 0).then_some(expires_at_ms),
            replica,
        }
    }
}

impl OpObserver for HistoryRecorder {
    fn prepare(&self, _client: u32, op: &mut Op) -> u64 {
        let id = self.next_id();
        if let Some(v) = &op.value {
            let len = v.len().max(value_id::MIN_LEN);
            op.value = Some(Bytes::from(value_id::encode(id, len)));
        }
        id
    }

    fn completed(
        &self,
        id: u64,
        client: u32,
        op: &Op,
        started: Instant,
        done: Instant,
        report: &OpReport,
    ) {
        let oc = outcome(&report.outcome);
        let write = |kind: HKind, op_id: u64| Record {
            op_id,
            client,
            node: report.coordinator.clone(),
            kind,
            key: op.key.clone(),
            value_id: (kind == HKind::Put).then_some(id),
            tombstone: false,
            outcome: oc,
            invoke_ns: self.ns(started),
            complete_ns: self.ns(done).max(self.ns(started)),
            version: if oc == Outcome::Ok {
                report.version
            } else {
                None
            },
            ttl_ms: if kind == HKind::Put { op.ttl_ms } else { None },
            expires_at_ms: None,
            replica: None,
        };
        match op.kind {
            OpKind::Read => {
                let value = report.read_value.as_ref().and_then(|v| v.as_ref());
                let r = self.read_record(
                    id,
                    client,
                    report.coordinator.clone(),
                    HKind::Get,
                    &op.key,
                    value,
                    report.version,
                    report.expires_at_ms,
                    oc,
                    started,
                    done,
                    None,
                );
                self.write(&r);
            }
            OpKind::Update | OpKind::Insert => self.write(&write(HKind::Put, id)),
            OpKind::Delete => self.write(&write(HKind::Delete, id)),
            OpKind::ReadModifyWrite => {
                // The read happened (it succeeded, or the write would not have been sent) when
                // a read value is reported; it gets its own op id.
                if let Some(value) = &report.read_value {
                    let r = self.read_record(
                        self.next_id(),
                        client,
                        report.coordinator.clone(),
                        HKind::Get,
                        &op.key,
                        value.as_ref(),
                        report.read_version,
                        report.expires_at_ms,
                        Outcome::Ok,
                        started,
                        done,
                        None,
                    );
                    self.write(&r);
                    self.write(&write(HKind::Put, id));
                } else if report.outcome.is_err() {
                    // The read failed: nothing was written. Record the attempt as a failed get.
                    let r = self.read_record(
                        id,
                        client,
                        report.coordinator.clone(),
                        HKind::Get,
                        &op.key,
                        None,
                        None,
                        0,
                        oc,
                        started,
                        done,
                        None,
                    );
                    self.write(&r);
                }
            }
        }
    }
}

/// Appends final reads of keys `keys` (by name): one per replica directly (`LocalRead`, which
/// repairs nothing), then one through the cluster (which may start read repair). Bounded: each
/// read has the client's deadline; failures are recorded as such. Replicas at the addresses
/// `gone` (nodes a membership fault ended for good, still in the ring while the store has no
/// removenode) are not read.
pub async fn final_reads(
    rec: &HistoryRecorder,
    client: &Client,
    keys: impl Iterator<Item = String>,
    progress: &AtomicU64,
    gone: &[String],
) -> Result<(), LoadgenError> {
    let client_id = u32::MAX;
    // A final read that returned nothing: failed, or timed out (unknown).
    let unread = |key: &str, coordinator: String, oc: Outcome, (t0, t1), replica| {
        rec.read_record(
            rec.next_id(),
            client_id,
            coordinator,
            HKind::FinalRead,
            key,
            None,
            None,
            0,
            oc,
            t0,
            t1,
            replica,
        )
    };
    for key in keys {
        let replicas = client.replicas_of(&key);
        if replicas.is_empty() {
            return Err(LoadgenError::History(format!(
                "no ring known to find the replicas of {key}"
            )));
        }
        for addr in replicas.into_iter().filter(|a| !gone.contains(a)) {
            let t0 = Instant::now();
            let r =
                tokio::time::timeout(Duration::from_secs(10), client.local_read(&addr, &key)).await;
            let t1 = Instant::now();
            let record = match r {
                Ok(Ok(lr)) => {
                    let entry = lr.entry.unwrap_or_default();
                    let version = entry.version.map(|v| kvstore_client::Version {
                        hlc: v.hlc,
                        node: v.node,
                    });
                    let mut rr = rec.read_record(
                        rec.next_id(),
                        client_id,
                        addr.clone(),
                        HKind::FinalRead,
                        &key,
                        (lr.found && !entry.tombstone).then_some(&entry.value),
                        if lr.found { version } else { None },
                        entry.expires_at_ms,
                        Outcome::Ok,
                        t0,
                        t1,
                        Some(addr.clone()),
                    );
                    rr.tombstone = lr.found && entry.tombstone;
                    rr
                }
                Ok(Err(e)) => unread(
                    &key,
                    addr.clone(),
                    outcome(&Err(e.kind())),
                    (t0, t1),
                    Some(addr.clone()),
                ),
                Err(_) => unread(
                    &key,
                    addr.clone(),
                    Outcome::Unknown,
                    (t0, t1),
                    Some(addr.clone()),
                ),
            };
            rec.write(&record);
        }
        // Through the cluster last: its read repair must not touch the replicas read above.
        let t0 = Instant::now();
        let r = client.get(&key, ReadOptions::default()).await;
        let t1 = Instant::now();
        let record = match &r {
            Ok(g) => rec.read_record(
                rec.next_id(),
                client_id,
                g.coordinator.clone(),
                HKind::FinalRead,
                &key,
                g.value.as_ref(),
                g.version,
                g.expires_at_ms,
                Outcome::Ok,
                t0,
                t1,
                None,
            ),
            Err(e) => unread(&key, String::new(), outcome(&Err(e.kind())), (t0, t1), None),
        };
        rec.write(&record);
        progress.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// One final read of `key` from what a driver reported (`replica`: the member read alone).
fn final_record(
    rec: &HistoryRecorder,
    key: &str,
    r: &OpReport,
    (t0, t1): (Instant, Instant),
    replica: Option<String>,
) -> Record {
    let value = r.read_value.as_ref().and_then(|v| v.as_ref());
    rec.read_record(
        rec.next_id(),
        u32::MAX,
        r.coordinator.clone(),
        HKind::FinalRead,
        key,
        value,
        r.version,
        r.expires_at_ms,
        outcome(&r.outcome),
        t0,
        t1,
        replica,
    )
}

/// Appends final reads of `keys` from a peer store: one through the store as clients read it,
/// then one of every member directly. kvstore's are [`final_reads`].
pub async fn peer_final_reads(
    rec: &HistoryRecorder,
    exec: &StoreExecutor,
    keys: impl Iterator<Item = String>,
    progress: &AtomicU64,
) -> Result<(), LoadgenError> {
    let timed = |t0: Instant, r: OpReport| (r, (t0, Instant::now()));
    for key in keys {
        let t0 = Instant::now();
        let (r, t) = match exec {
            StoreExecutor::Redis(d) => timed(t0, d.get(&key).await),
            StoreExecutor::Etcd(d) => timed(t0, d.get(&key).await),
            StoreExecutor::Kv(_) => {
                return Err(LoadgenError::History(
                    "kvstore final reads go through final_reads".into(),
                ));
            }
        };
        rec.write(&final_record(rec, &key, &r, t, None));
        match exec {
            StoreExecutor::Redis(d) => {
                let members = std::iter::once(d.primary().to_string()).chain(d.replicas().to_vec());
                for addr in members {
                    let t0 = Instant::now();
                    let (r, t) = timed(t0, d.get_at(&addr, &key).await);
                    rec.write(&final_record(rec, &key, &r, t, Some(addr)));
                }
            }
            StoreExecutor::Etcd(d) => {
                for (i, addr) in d.endpoints().iter().enumerate() {
                    let t0 = Instant::now();
                    let (r, t) = timed(t0, d.get_at(i, &key).await);
                    rec.write(&final_record(rec, &key, &r, t, Some(addr.clone())));
                }
            }
            StoreExecutor::Kv(_) => {}
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_bound_comes_from_the_server_flags() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(max_clock_offset_ms(&args(&[])), 500);
        assert_eq!(
            max_clock_offset_ms(&args(&["--vnodes", "8", "--max-clock-offset-ms", "250"])),
            250
        );
        assert_eq!(
            max_clock_offset_ms(&args(&["--max-clock-offset-ms=90"])),
            90
        );
    }

    #[tokio::test]
    async fn finish_writes_the_clock_record_beside_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        let start = Instant::now();
        let before = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let h = HistoryRecorder::create(&path, start, 250).unwrap();
        h.record_clock_fault(ClockFault {
            node: 2,
            addr: "a".into(),
            action: kvstore_checker::ClockAction::Bump,
            from_ns: 10,
            until_ns: None,
            delta_ms: 1000,
            period_ms: None,
            rate: None,
        });
        h.record_clock_fault(ClockFault {
            node: 2,
            addr: "a".into(),
            action: kvstore_checker::ClockAction::Reset,
            from_ns: 20,
            until_ns: None,
            delta_ms: 0,
            period_ms: None,
            rate: None,
        });
        h.finish().unwrap();
        let r = ClockRecord::read_sidecar(&path).unwrap().expect("sidecar");
        assert!(r.anchor_unix_ms.abs_diff(before) < 1000, "{r:?}");
        assert_eq!(r.max_clock_offset_ms, 250);
        assert_eq!(r.faults.len(), 2);
        assert_eq!(r.faults[0].until_ns, Some(20), "the reset ended the bump");
    }
}
