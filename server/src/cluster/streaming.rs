//! Range streaming between nodes: the sending side ([`scan_ranges`], behind `StreamRange`)
//! and the receiving side ([`stream_from`]: pull the arcs from one source, apply them through
//! last-write-wins). Used by a join, by a node restoring an empty data directory, and served to
//! both; this module knows neither.

use std::sync::Arc;
use std::time::Duration;

use kvstore_proto::pb;
use kvstore_proto::ring::{Arc as TokenArc, key_hash};

use super::placement::Placement;
use crate::error::{Error, Result};
use crate::node::shared::Shared;
use crate::replication::replica::apply_streamed;
use crate::replication::wire::{from_wire_keyed, to_wire_keyed};

/// Attempts per source when streaming a range in.
pub const STREAM_ATTEMPTS: usize = 3;
/// Entries per `EntryBatch` when streaming a range out.
pub const STREAM_BATCH: usize = 256;

/// Streams `arcs` from `source`, retrying a broken stream; returns entries applied.
pub async fn stream_from(shared: &Arc<Shared>, source: u32, arcs: &[TokenArc]) -> Result<usize> {
    let ranges: Vec<pb::TokenRange> = arcs
        .iter()
        .map(|a| pb::TokenRange {
            start: a.start,
            end: a.end,
        })
        .collect();
    let mut last = String::new();
    for attempt in 1..=STREAM_ATTEMPTS {
        let Some(peer) = shared.peer(source) else {
            return Err(Error::Membership(format!("node {source} has no address")));
        };
        let mut client = peer.client();
        let result: std::result::Result<usize, String> = async {
            let mut stream = client
                .stream_range(pb::StreamRangeRequest {
                    ranges: ranges.clone(),
                })
                .await
                .map_err(|s| s.message().to_owned())?
                .into_inner();
            let mut applied = 0;
            while let Some(batch) = stream.message().await.map_err(|s| s.message().to_owned())? {
                let entries = from_wire_keyed(batch.entries);
                let s = shared.clone();
                applied += crate::blocking::spawn(move || apply_streamed(&s, entries))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
            Ok(applied)
        }
        .await;
        match result {
            Ok(n) => return Ok(n),
            Err(e) => {
                tracing::debug!(source, attempt, error = %e, "range stream failed");
                last = e;
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
    }
    Err(Error::Membership(format!(
        "streaming from node {source}: {last}"
    )))
}

/// The entries this node stores whose keys hash into `arcs`, in batches (a blocking scan: run
/// it on a blocking thread). `send` returns false when the receiver is gone.
pub fn scan_ranges(
    shared: &Shared,
    arcs: &[TokenArc],
    mut send: impl FnMut(pb::EntryBatch) -> bool,
) -> std::result::Result<(), String> {
    let mut batch = Vec::with_capacity(STREAM_BATCH);
    for key in shared.engine.keys() {
        if !Placement::token_in(arcs, key_hash(key.as_bytes())) {
            continue;
        }
        let Some(entry) = shared.engine.get_entry(&key).map_err(|e| e.to_string())? else {
            continue;
        };
        batch.push(to_wire_keyed(key, &entry));
        if batch.len() >= STREAM_BATCH
            && !send(pb::EntryBatch {
                entries: std::mem::take(&mut batch),
            })
        {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        send(pb::EntryBatch { entries: batch });
    }
    Ok(())
}
