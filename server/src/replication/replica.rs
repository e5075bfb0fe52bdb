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

use crate::node::shared::Shared;
use crate::storage::{Entry, FsyncPolicy};

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

fn refused(error: String) -> pb::ReplicateResponse {
    pb::ReplicateResponse {
        success: false,
        error,
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
            results.push(Some(refused(format!(
                "write of key {:?} carries no version",
                w.key
            ))));
            continue;
        };
        if let Err(e) = shared.hlc.update(version.hlc) {
            tracing::warn!(key = %w.key, %version, error = %e, "refused a version from the future");
            results.push(Some(refused(format!(
                "node {} refused version {version} of key {:?}: {e}",
                shared.id(),
                w.key
            ))));
            continue;
        }
        if shared.config.faults.keep_older && shared.engine.version_of(&w.key).is_some() {
            // Fault injection: keep whatever is stored, claim success.
            results.push(Some(pb::ReplicateResponse {
                success: true,
                error: String::new(),
            }));
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
        for slot in batch_slots {
            results[slot] = Some(match &outcome {
                Ok(_) => pb::ReplicateResponse {
                    success: true,
                    error: String::new(),
                },
                Err(e) => refused(format!("node {}: storage: {e}", shared.id())),
            });
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| refused("internal: no result".into())))
        .collect()
}

/// Applies entries received by streaming (join), merging their versions into the clock but
/// never refusing them: they were accepted by the cluster before.
pub fn apply_streamed(
    shared: &Shared,
    entries: Vec<(String, Entry)>,
) -> Result<usize, crate::storage::StorageError> {
    for (_, e) in &entries {
        shared.hlc.observe(e.version.hlc);
    }
    let n = entries.len();
    shared.engine.apply_batch(entries)?;
    Ok(n)
}
