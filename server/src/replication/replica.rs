//! The replica side of replication: applying writes sent by coordinators, hints, repair and
//! rebalancing.
//!
//! Every incoming version is first merged into this node's HLC; a version further ahead of the
//! local wall clock than `max_clock_offset` is refused with the clock's error (and counted), so
//! a node with a wild clock cannot push the cluster's versions into the future. Accepted
//! writes are applied as one engine batch (one fsync under `always`). Synchronous: callers run
//! it on a blocking thread when [`apply_may_sync`] says an apply may wait for an fsync, and
//! inline otherwise (then an apply is an append to the page cache, cheaper than the hand-off).

use kvstore_proto::{Version, pb};

use crate::hlc::HlcError;
use crate::node::shared::Shared;
use crate::storage::{Entry, FsyncPolicy, StorageError};

/// Whether applying a write may wait for an fdatasync (fsync policy `always`, or a policy this
/// build cannot parse, to be safe): then it belongs on a blocking thread. Under `never` and
/// `interval=` an apply only appends to the active segment (a segment rotation, every few MB,
/// syncs the sealed one), which costs less than handing it to another thread.
pub fn apply_may_sync(shared: &Shared) -> bool {
    !matches!(
        shared.config.fsync.parse::<FsyncPolicy>(),
        Ok(FsyncPolicy::Never | FsyncPolicy::Interval(_))
    )
}

fn refused(refusal: pb::Refusal, error: String) -> pb::ReplicateResponse {
    pb::ReplicateResponse {
        success: false,
        error,
        refusal: refusal as i32,
        maybe_applied: false,
    }
}

fn accepted() -> pb::ReplicateResponse {
    pb::ReplicateResponse {
        success: true,
        ..Default::default()
    }
}

/// The refusal kind of a storage error, and whether the write may be stored despite it: a
/// full disk, a read-only engine and an invalid entry are refused before anything is written;
/// any other failure may come after part of a batch reached the log.
pub fn storage_refusal(e: &StorageError) -> (pb::Refusal, bool) {
    match e {
        StorageError::DiskFull { .. } => (pb::Refusal::DiskFull, false),
        StorageError::Poisoned { .. } => (pb::Refusal::ReadOnly, false),
        StorageError::Invalid { .. } => (pb::Refusal::Invalid, false),
        _ => (pb::Refusal::Storage, true),
    }
}

/// The refusal kind of a clock error on a replica write: a version too far ahead is clock
/// skew; a ceiling that cannot be persisted is the disk's fault (full, or failing), and saying
/// "clock skew" there would send an operator after the wrong problem. Either way nothing was
/// written: a definite refusal.
pub fn clock_refusal(e: &HlcError) -> pb::Refusal {
    match e {
        HlcError::ClockSkew { .. } => pb::Refusal::ClockSkew,
        HlcError::Persist {
            disk_full: true, ..
        } => pb::Refusal::DiskFull,
        HlcError::Persist { .. } => pb::Refusal::Storage,
    }
}

/// Tells the node whether its storage takes writes after an apply: a full disk or a read-only
/// engine is announced in gossip (coordinators then hint instead of sending), and the
/// announcement is withdrawn by the next successful write.
pub fn note_storage_outcome<T>(shared: &Shared, outcome: &Result<T, StorageError>) {
    match outcome {
        Ok(_) => {
            if shared.storage_refusal().is_some() {
                shared.set_storage_refusal(None);
            }
        }
        Err(e @ (StorageError::DiskFull { .. } | StorageError::Poisoned { .. })) => {
            shared.set_storage_refusal(Some(e.to_string()))
        }
        Err(_) => {}
    }
}

/// Whether `version` is further ahead of this node's wall clock than the max clock offset:
/// such a version was stamped by a clock that runs ahead, and storing or serving it would hide
/// every later write to its key until real time catches up. Counts and logs a refusal.
pub fn from_the_future(shared: &Shared, key: &str, version: Version, path: &str) -> bool {
    match shared.hlc.check(version.hlc) {
        Ok(()) => false,
        Err(e) => {
            let n = shared
                .counters
                .future_versions_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if (n + 1).is_power_of_two() {
                tracing::warn!(key, %version, path, error = %e, refused = n + 1, "refused a version from the future");
            }
            true
        }
    }
}

/// Applies a batch of replica writes in order, answering one result per write.
pub fn apply_writes(
    shared: &Shared,
    writes: Vec<pb::ReplicateRequest>,
) -> Vec<pb::ReplicateResponse> {
    let mut results: Vec<Option<pb::ReplicateResponse>> = Vec::with_capacity(writes.len());
    let mut batch: Vec<(String, Entry)> = Vec::with_capacity(writes.len());
    let mut batch_slots: Vec<usize> = Vec::with_capacity(writes.len());
    for w in writes {
        let Some(version) = w.version.map(Version::from) else {
            results.push(Some(refused(
                pb::Refusal::Invalid,
                format!("write of key {:?} carries no version", w.key),
            )));
            continue;
        };
        if let Err(e) = shared.hlc.update(version.hlc) {
            let refusal = clock_refusal(&e);
            if refusal == pb::Refusal::ClockSkew {
                tracing::warn!(key = %w.key, %version, error = %e, "refused a version from the future");
            } else {
                tracing::warn!(key = %w.key, %version, error = %e, "refused a write: the clock's high-water mark cannot be persisted");
            }
            results.push(Some(refused(
                refusal,
                format!(
                    "node {} refused version {version} of key {:?}: {e}",
                    shared.id(),
                    w.key
                ),
            )));
            continue;
        }
        if shared.config.faults.keep_older && shared.engine.version_of(&w.key).is_some() {
            // Fault injection: keep whatever is stored, claim success.
            results.push(Some(accepted()));
            continue;
        }
        batch_slots.push(results.len());
        results.push(None);
        batch.push((
            w.key,
            Entry {
                value: w.value,
                version,
                tombstone: w.tombstone,
                expires_at_ms: w.expires_at_ms,
            },
        ));
    }
    if !batch.is_empty() {
        let outcome = shared.engine.apply_batch(batch);
        note_storage_outcome(shared, &outcome);
        for slot in batch_slots {
            results[slot] = Some(match &outcome {
                Ok(_) => accepted(),
                Err(e) => {
                    // A batch that failed part-way may have stored some of its writes: those
                    // are never reported as refused for sure.
                    let (refusal, maybe_applied) = storage_refusal(e);
                    pb::ReplicateResponse {
                        maybe_applied,
                        ..refused(refusal, format!("node {}: storage: {e}", shared.id()))
                    }
                }
            });
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| pb::ReplicateResponse {
                maybe_applied: true,
                ..refused(pb::Refusal::Storage, "internal: no result".into())
            })
        })
        .collect()
}

/// Applies entries received by streaming (join, leave), merging their versions into the
/// clock. An entry further ahead of this node's wall clock than the max offset is refused
/// (counted, logged, not stored): it was stamped by a clock that ran ahead, and the owner that
/// streamed it should never have kept it. Returns the entries applied.
pub fn apply_streamed(
    shared: &Shared,
    entries: Vec<(String, Entry)>,
) -> Result<usize, StorageError> {
    let entries: Vec<(String, Entry)> = entries
        .into_iter()
        .filter(|(k, e)| !from_the_future(shared, k, e.version, "range stream"))
        .collect();
    for (_, e) in &entries {
        shared.hlc.observe(e.version.hlc);
    }
    let n = entries.len();
    let outcome = shared.engine.apply_batch(entries);
    note_storage_outcome(shared, &outcome);
    outcome?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_clock_that_cannot_persist_is_not_called_skewed() {
        let skew = HlcError::ClockSkew {
            ahead_ms: 3_600_000,
            max_offset_ms: 500,
        };
        let full = HlcError::Persist {
            reason: "No space left on device (os error 28)".into(),
            disk_full: true,
        };
        let eio = HlcError::Persist {
            reason: "Input/output error (os error 5)".into(),
            disk_full: false,
        };
        assert_eq!(clock_refusal(&skew), pb::Refusal::ClockSkew);
        assert_eq!(clock_refusal(&full), pb::Refusal::DiskFull);
        assert_eq!(clock_refusal(&eio), pb::Refusal::Storage);
    }

    #[test]
    fn only_errors_raised_before_writing_are_definite_refusals() {
        let path = PathBuf::from("/data/seg-1");
        let cases = [
            (
                StorageError::DiskFull { path: path.clone() },
                pb::Refusal::DiskFull,
                false,
            ),
            (
                StorageError::Poisoned {
                    path: path.clone(),
                    reason: "EIO".into(),
                },
                pb::Refusal::ReadOnly,
                false,
            ),
            (
                StorageError::Invalid {
                    field: "key",
                    reason: "empty".into(),
                },
                pb::Refusal::Invalid,
                false,
            ),
            // An I/O error part-way through a batch: some records may be in the log.
            (
                StorageError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("EIO"),
                },
                pb::Refusal::Storage,
                true,
            ),
            (
                StorageError::Corrupt { path, offset: 7 },
                pb::Refusal::Storage,
                true,
            ),
        ];
        for (err, refusal, maybe_applied) in cases {
            assert_eq!(storage_refusal(&err), (refusal, maybe_applied), "{err}");
        }
    }
}
