//! The last phase of an exchange: the keys of differing leaves, listed on both sides, and
//! what to copy which way ([`plan`]). Plain code over lists, no I/O.
//!
//! A key newer on the other side is fetched, a key newer here is pushed; both land through
//! the ordinary last-write-wins apply. A key that one side lacks and the other holds only as a
//! tombstone (or an expired value) past the grace period is left alone: the side that lacks it
//! collected it after a repair covered it (or never saw a value to delete), and copying it back
//! would only have it collected again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kvstore_proto::Version;
use kvstore_proto::ring::{Arc as TokenArc, Token, key_hash};

use super::tree::leaf_of;
use super::trees::arc_holding;
use crate::storage::{Engine, StorageError};

/// What an exchange knows of one key on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMeta {
    /// The stored version.
    pub version: Version,
    /// A tombstone or expired value past the grace period (collectable once repaired).
    pub collectable: bool,
}

/// The leaves asked for, per arc.
pub type LeafSets = BTreeMap<Token, (TokenArc, BTreeSet<usize>)>;

/// Every stored key of `engine` that falls in one of `leaves`, with its metadata. One pass
/// over the engine's keys, whatever the number of arcs. `grace_ms` is the tombstone grace.
pub fn list_keys(
    engine: &dyn Engine,
    leaves: &LeafSets,
    now_ms: u64,
    grace_ms: u64,
) -> Result<BTreeMap<String, KeyMeta>, StorageError> {
    let mut out = BTreeMap::new();
    if leaves.is_empty() {
        return Ok(out);
    }
    for key in engine.keys() {
        let t = key_hash(key.as_bytes());
        let Some((arc, set)) = arc_holding(leaves, t) else {
            continue;
        };
        if !arc.contains(t) || !set.contains(&leaf_of(*arc, t)) {
            continue;
        }
        let Some(e) = engine.get_entry(&key)? else {
            continue;
        };
        let dead_since = if e.tombstone {
            Some(e.version.physical_ms())
        } else if e.expires_at_ms != 0 && e.expires_at_ms <= now_ms {
            Some(e.expires_at_ms)
        } else {
            None
        };
        let collectable = dead_since.is_some_and(|t| t.saturating_add(grace_ms) < now_ms);
        out.insert(
            key,
            KeyMeta {
                version: e.version,
                collectable,
            },
        );
    }
    Ok(out)
}

/// What one exchange copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys newer (or only) on the other side: fetched and applied here.
    pub fetch: Vec<String>,
    /// Keys newer (or only) here: pushed to the other side.
    pub push: Vec<String>,
}

impl Plan {
    /// Keys to copy, both ways.
    pub fn len(&self) -> usize {
        self.fetch.len() + self.push.len()
    }

    /// Whether nothing is to be copied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps at most `max` keys (fetches first); returns whether some were cut.
    pub fn truncate(&mut self, max: usize) -> bool {
        if self.len() <= max {
            return false;
        }
        self.fetch.truncate(max);
        self.push.truncate(max - self.fetch.len());
        true
    }
}

/// What to copy between `local` and `remote`, the key lists of the same leaves.
pub fn plan(local: &BTreeMap<String, KeyMeta>, remote: &HashMap<String, KeyMeta>) -> Plan {
    let mut p = Plan::default();
    for (key, l) in local {
        match remote.get(key) {
            Some(r) if r.version > l.version => p.fetch.push(key.clone()),
            Some(r) if r.version < l.version => p.push.push(key.clone()),
            Some(_) => {}
            None if l.collectable => {}
            None => p.push.push(key.clone()),
        }
    }
    let mut only_remote: Vec<&String> = remote
        .iter()
        .filter(|(k, r)| !local.contains_key(*k) && !r.collectable)
        .map(|(k, _)| k)
        .collect();
    only_remote.sort();
    p.fetch.extend(only_remote.into_iter().cloned());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(hlc: u64, collectable: bool) -> KeyMeta {
        KeyMeta {
            version: Version { hlc, node: 1 },
            collectable,
        }
    }

    #[test]
    fn newer_goes_over_equal_stays_and_collected_tombstones_are_not_copied_back() {
        let local: BTreeMap<String, KeyMeta> = [
            ("same", m(5, false)),
            ("newer_here", m(9, false)),
            ("older_here", m(2, false)),
            ("only_here", m(4, false)),
            ("old_tombstone_here", m(1, true)),
            ("old_tombstone_vs_value", m(8, true)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let remote: HashMap<String, KeyMeta> = [
            ("same", m(5, false)),
            ("newer_here", m(3, false)),
            ("older_here", m(7, false)),
            ("only_there", m(4, false)),
            ("old_tombstone_there", m(1, true)),
            ("old_tombstone_vs_value", m(6, false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let p = plan(&local, &remote);
        assert_eq!(p.fetch, vec!["older_here", "only_there"]);
        // A tombstone past the grace still wins over an older value: the replica with the
        // value is exactly the one that must get the delete.
        assert_eq!(
            p.push,
            vec!["newer_here", "old_tombstone_vs_value", "only_here"]
        );
        let mut cut = p.clone();
        assert!(cut.truncate(3));
        assert_eq!(cut.fetch.len() + cut.push.len(), 3);
        assert_eq!(cut.fetch, p.fetch);
    }
}
