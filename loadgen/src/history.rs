//! History recording for the checker (`record_history = true`).
//!
//! Every operation of the load phase and of the run gets a unique id; every written value
//! carries that id in its first bytes ([`kvstore_checker::value_id`]), so any read names the
//! write it saw. Each operation becomes a [`Record`] streamed to `history.csv` as it completes
//! (the file is never held in memory). After the run, [`final_reads`] appends, for every key the
//! run touched, a read through the cluster and a direct read of each of the key's replicas
//! (`LocalRead`, no repair), which the checker uses to verify convergence.
//!
//! For a peer store (Redis, etcd), [`peer_final_reads`] does the same through its driver: a
//! read as clients read, then a read of each member alone (Redis: the primary and each
//! replica; etcd: a serializable read of each member).
//!
//! Quiescing the cluster before the final reads (healing faults, waiting for hints to drain) is
//! the run's job; this module only records.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvstore_checker::history::{HistoryWriter, OpKind as HKind, Outcome, Record};
use kvstore_checker::value_id;
use kvstore_client::{Client, ErrorKind, ReadOptions};

use crate::LoadgenError;
use crate::driver::store::{Store, StoreExecutor};
use crate::driver::{OpObserver, OpReport};
use crate::generator::{Op, OpKind};

/// Streams a run's operations to `history.csv`.
pub struct HistoryRecorder {
    writer: Mutex<Option<HistoryWriter<BufWriter<File>>>>,
    next_id: AtomicU64,
    start: Instant,
    failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for HistoryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryRecorder")
            .field("next_id", &self.next_id)
            .finish()
    }
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
    /// Creates `path`; times are recorded relative to `start`.
    pub fn create(path: &Path, start: Instant) -> Result<Self, LoadgenError> {
        let f = File::create(path).map_err(|e| LoadgenError::results(path, e))?;
        let w = HistoryWriter::new(BufWriter::with_capacity(1 << 20, f))
            .map_err(|e| LoadgenError::History(e.to_string()))?;
        Ok(Self {
            writer: Mutex::new(Some(w)),
            next_id: AtomicU64::new(1),
            start,
            failure: Mutex::new(None),
        })
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

    /// Flushes the file; fails if any record could not be written.
    pub fn finish(&self) -> Result<(), LoadgenError> {
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            w.into_inner()
                .map_err(|e| LoadgenError::History(e.to_string()))?;
        }
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

/// Appends final reads of keys `keys` (by name): one through the cluster, then one per replica
/// directly. Bounded: each read has the client's deadline; failures are recorded as such.
pub async fn final_reads(
    rec: &HistoryRecorder,
    client: &Client,
    keys: impl Iterator<Item = String>,
    progress: &AtomicU64,
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
        let replicas = client.replicas_of(&key);
        if replicas.is_empty() {
            return Err(LoadgenError::History(format!(
                "no ring known to find the replicas of {key}"
            )));
        }
        for addr in replicas {
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
