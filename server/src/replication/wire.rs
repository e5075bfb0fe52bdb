//! Wire conversions of the request path between nodes: an [`Entry`] to and from its
//! `pb::Entry` form (alone and keyed, as range streaming and anti-entropy move them), and a
//! write as the `ReplicateRequest` a replica receives. Pure, below everything that sends or
//! serves them.

use kvstore_proto::{Version, pb};

use crate::storage::Entry;

/// The wire form of a replica write.
pub fn to_replicate(key: &str, entry: &Entry) -> pb::ReplicateRequest {
    pb::ReplicateRequest {
        key: key.to_owned(),
        value: entry.value.clone(),
        timestamp: entry.version.hlc,
        version: Some(entry.version.into()),
        tombstone: entry.tombstone,
        expires_at_ms: entry.expires_at_ms,
    }
}

/// An entry from its wire form (a missing version reads as the zero version, which loses
/// against everything).
pub fn from_wire_entry(e: pb::Entry) -> Entry {
    Entry {
        value: e.value,
        version: e.version.map(Version::from).unwrap_or_default(),
        tombstone: e.tombstone,
        expires_at_ms: e.expires_at_ms,
    }
}

/// The wire form of an entry.
pub fn to_wire_entry(e: &Entry) -> pb::Entry {
    pb::Entry {
        value: e.value.clone(),
        version: Some(e.version.into()),
        tombstone: e.tombstone,
        expires_at_ms: e.expires_at_ms,
    }
}

/// Keyed entries from their wire form (one without an entry is left out).
pub fn from_wire_keyed(entries: Vec<pb::KeyedEntry>) -> Vec<(String, Entry)> {
    entries
        .into_iter()
        .filter_map(|ke| Some((ke.key, from_wire_entry(ke.entry?))))
        .collect()
}

/// The wire form of a keyed entry.
pub fn to_wire_keyed(key: String, e: &Entry) -> pb::KeyedEntry {
    pb::KeyedEntry {
        key,
        entry: Some(to_wire_entry(e)),
    }
}
