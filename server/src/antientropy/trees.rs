//! The node's hash trees: one [`ArcTree`] per arc this node replicates, kept exact by the
//! engine's change observer and refreshed by a throttled rebuild from the engine.
//!
//! Every change of a stored version reaches [`Trees`] through
//! [`ChangeObserver::changed`], under the engine's lock for that key, and toggles the old and
//! new (key, version) pairs in the tree of the arc holding the key. Keys on no tracked arc
//! (this node is not their replica) are not in any tree.
//!
//! A rebuild recomputes a chunk of arcs from the engine, so bit rot, an observer that was not
//! yet attached (replay at open) and anything else that slipped past are caught. It runs while
//! writes go on, so it must end with exactly the pairs the engine holds at its end: it takes a
//! snapshot of the chunk's keys (and of every key changed while the listing runs), then reads each one's version under the engine's key lock
//! ([`Engine::with_version`]) and marks it scanned. A change observed meanwhile also goes into
//! the fresh trees when the key was scanned already, or was not in the snapshot (the scan will
//! not see it); a key still to be scanned is left to the scan, which will read its newest
//! version. When the scan ends, the fresh trees replace the old ones.
//!
//! Lock order: the engine's key lock, then the trees' lock (the observer is called under the
//! first); nothing holding the trees' lock calls into the engine.
//!
//! The set of arcs follows the ring ([`Trees::set_arcs`]): an arc that is no longer this node's
//! is dropped, a new one is unbuilt (exchanges skip it) until a rebuild covers it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use kvstore_proto::Version;
use kvstore_proto::ring::{Arc as TokenArc, Token, key_hash};

use super::tree::{ArcTree, leaf_of};
use crate::storage::{ChangeObserver, Engine};

/// Keys a rebuild chunk covers at most (by the engine's key count times the arcs' share of
/// the ring; at least one arc per chunk): bounds the rebuild's transient key sets.
pub const REBUILD_CHUNK_KEYS: u64 = 65_536;

/// One tracked arc.
#[derive(Debug)]
struct Slot {
    arc: TokenArc,
    tree: ArcTree,
    /// False until a rebuild covered the arc: its tree then says nothing.
    built: bool,
    /// When the last rebuild of the arc ended (ms, the node's wall clock).
    built_at_ms: u64,
}

/// A rebuild in progress over a chunk of arcs.
#[derive(Debug)]
struct Rebuild {
    /// The chunk's arcs, by end token.
    arcs: BTreeMap<Token, TokenArc>,
    fresh: BTreeMap<Token, ArcTree>,
    /// While the caller lists the engine's keys: every key changed meanwhile goes into the
    /// snapshot too, so a key that exists when the listing ends is in the snapshot.
    collecting: bool,
    snapshot: HashSet<String>,
    scanned: HashSet<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Tracked arcs by end token (arcs of one ring are disjoint).
    slots: BTreeMap<Token, Slot>,
    rebuild: Option<Rebuild>,
    rebuilds_done: u64,
}

/// The tree of one arc as an exchange sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcHashes {
    /// The arc.
    pub arc: TokenArc,
    /// Whether the tree is built (when not, the hashes are empty).
    pub built: bool,
    /// The hashes asked for.
    pub hashes: Vec<u64>,
}

/// What a node's trees are like, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeState {
    /// Arcs tracked.
    pub arcs: u64,
    /// Arcs whose tree is built.
    pub built: u64,
    /// (key, version) pairs in the trees.
    pub pairs: u64,
    /// Heap bytes the trees hold.
    pub bytes: u64,
    /// Whether a rebuild is in progress.
    pub rebuilding: bool,
    /// Rebuild chunks completed since the node started.
    pub rebuilds_done: u64,
}

/// The node's hash trees.
#[derive(Debug, Default)]
pub struct Trees {
    inner: Mutex<Inner>,
}

/// The entry of `map` (keyed by arc end token, arcs of one ring) whose arc would hold `token`:
/// the first arc ending at or after it, wrapping to the first. The caller checks `contains`
/// (the map may hold only some of the ring's arcs).
pub fn arc_holding<T>(map: &BTreeMap<Token, T>, token: Token) -> Option<&T> {
    map.range(token..)
        .next()
        .or_else(|| map.iter().next())
        .map(|(_, t)| t)
}

fn arc_holding_mut<T>(map: &mut BTreeMap<Token, T>, token: Token) -> Option<(Token, &mut T)> {
    let end = map
        .range(token..)
        .next()
        .map(|(e, _)| *e)
        .or_else(|| map.keys().next().copied())?;
    map.get_mut(&end).map(|t| (end, t))
}

impl Trees {
    /// Trees tracking no arc yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tracks exactly `arcs`: keeps the trees of arcs tracked already, drops the others and
    /// adds the new ones unbuilt. Returns whether anything changed.
    pub fn set_arcs(&self, arcs: &[TokenArc]) -> bool {
        let mut inner = self.lock();
        let wanted: BTreeMap<Token, TokenArc> = arcs.iter().map(|a| (a.end, *a)).collect();
        let same = inner.slots.len() == wanted.len()
            && inner
                .slots
                .iter()
                .all(|(e, s)| wanted.get(e).is_some_and(|a| *a == s.arc));
        if same {
            return false;
        }
        let mut old = std::mem::take(&mut inner.slots);
        for (end, arc) in wanted {
            let slot = match old.remove(&end) {
                Some(s) if s.arc == arc => s,
                _ => Slot {
                    arc,
                    tree: ArcTree::default(),
                    built: false,
                    built_at_ms: 0,
                },
            };
            inner.slots.insert(end, slot);
        }
        // A rebuild over arcs that changed is void.
        let void = inner.rebuild.as_ref().is_some_and(|r| {
            r.arcs
                .iter()
                .any(|(e, a)| inner.slots.get(e).is_none_or(|s| s.arc != *a))
        });
        if void {
            inner.rebuild = None;
        }
        true
    }

    /// The arcs tracked.
    pub fn arcs(&self) -> Vec<TokenArc> {
        self.lock().slots.values().map(|s| s.arc).collect()
    }

    /// Roots of `arcs` (unknown arcs are reported unbuilt).
    pub fn roots(&self, arcs: &[TokenArc]) -> Vec<ArcHashes> {
        self.hashes(arcs, |t| vec![t.root()])
    }

    /// Branch hashes of `arcs`.
    pub fn branches(&self, arcs: &[TokenArc]) -> Vec<ArcHashes> {
        self.hashes(arcs, ArcTree::branches)
    }

    /// Leaves of `arc` under `branches`, in the order asked.
    pub fn leaves(&self, arc: TokenArc, branches: &[usize]) -> ArcHashes {
        self.hashes(&[arc], |t| {
            branches
                .iter()
                .filter(|b| **b < super::tree::BRANCHES)
                .flat_map(|b| t.leaves_of(*b).to_vec())
                .collect()
        })
        .remove(0)
    }

    fn hashes(&self, arcs: &[TokenArc], f: impl Fn(&ArcTree) -> Vec<u64>) -> Vec<ArcHashes> {
        let inner = self.lock();
        arcs.iter()
            .map(|a| match inner.slots.get(&a.end) {
                Some(s) if s.arc == *a && s.built => ArcHashes {
                    arc: *a,
                    built: true,
                    hashes: f(&s.tree),
                },
                _ => ArcHashes {
                    arc: *a,
                    built: false,
                    hashes: Vec::new(),
                },
            })
            .collect()
    }

    /// The figures of the trees.
    pub fn state(&self) -> TreeState {
        let inner = self.lock();
        TreeState {
            arcs: inner.slots.len() as u64,
            built: inner.slots.values().filter(|s| s.built).count() as u64,
            pairs: inner.slots.values().map(|s| s.tree.pairs()).sum(),
            bytes: inner
                .slots
                .values()
                .map(|s| s.tree.heap_bytes() as u64)
                .sum(),
            rebuilding: inner.rebuild.is_some(),
            rebuilds_done: inner.rebuilds_done,
        }
    }

    /// Whether some arc is unbuilt or was built before `stale_before_ms`.
    pub fn any_due(&self, stale_before_ms: u64) -> bool {
        self.lock()
            .slots
            .values()
            .any(|s| !s.built || s.built_at_ms < stale_before_ms)
    }

    /// The next chunk of arcs due for a rebuild: the unbuilt ones first, then those built
    /// longest ago if that is before `stale_before_ms`; at most about
    /// [`REBUILD_CHUNK_KEYS`] keys' worth (out of `engine_keys`), at least one arc.
    pub fn due_chunk(&self, stale_before_ms: u64, engine_keys: u64) -> Vec<TokenArc> {
        let inner = self.lock();
        let mut due: Vec<&Slot> = inner
            .slots
            .values()
            .filter(|s| !s.built || s.built_at_ms < stale_before_ms)
            .collect();
        due.sort_by_key(|s| (s.built, s.built_at_ms, s.arc.end));
        let mut chunk = Vec::new();
        let mut share = 0.0;
        for s in due {
            let keys = (share + s.arc.fraction()) * engine_keys as f64;
            if !chunk.is_empty() && keys > REBUILD_CHUNK_KEYS as f64 {
                break;
            }
            share += s.arc.fraction();
            chunk.push(s.arc);
        }
        chunk
    }

    /// Starts a rebuild of `arcs`: lists the engine's keys (holding nothing, while changes
    /// are collected into the snapshot too). Replaces a rebuild in progress.
    pub fn begin_rebuild(&self, engine: &dyn Engine, arcs: &[TokenArc]) {
        let arcs: BTreeMap<Token, TokenArc> = arcs.iter().map(|a| (a.end, *a)).collect();
        let fresh = arcs.keys().map(|e| (*e, ArcTree::default())).collect();
        self.lock().rebuild = Some(Rebuild {
            arcs,
            fresh,
            collecting: true,
            snapshot: HashSet::new(),
            scanned: HashSet::new(),
        });
        let keys = engine.keys();
        let mut inner = self.lock();
        let Some(r) = inner.rebuild.as_mut() else {
            return;
        };
        for k in keys {
            let t = key_hash(k.as_bytes());
            if arc_holding(&r.arcs, t).is_some_and(|a| a.contains(t)) {
                r.snapshot.insert(k);
            }
        }
        r.collecting = false;
    }

    /// The keys the rebuild in progress has still to scan.
    pub fn rebuild_pending(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .rebuild
            .as_ref()
            .map(|r| r.snapshot.difference(&r.scanned).cloned().collect())
            .unwrap_or_default()
    }

    /// Scans `key` for the rebuild in progress: reads its version under the engine's key lock
    /// and adds it to the fresh tree. False when no rebuild is in progress.
    pub fn rebuild_scan(&self, engine: &dyn Engine, key: &str) -> bool {
        let mut going = false;
        engine.with_version(key, &mut |version| {
            let mut inner = self.lock();
            let Some(r) = inner.rebuild.as_mut() else {
                return;
            };
            going = true;
            if !r.scanned.insert(key.to_owned()) {
                return;
            }
            let (Some(v), t) = (version, key_hash(key.as_bytes())) else {
                return;
            };
            if let Some((end, tree)) = arc_holding_mut(&mut r.fresh, t)
                && r.arcs[&end].contains(t)
            {
                toggle(tree, r.arcs[&end], key, t, None, Some(v));
            }
        });
        going
    }

    /// Ends the rebuild in progress: its fresh trees replace the tracked ones (for arcs still
    /// tracked unchanged). Returns the arcs rebuilt.
    pub fn finish_rebuild(&self, now_ms: u64) -> Vec<TokenArc> {
        let mut inner = self.lock();
        let Some(r) = inner.rebuild.take() else {
            return Vec::new();
        };
        let mut done = Vec::new();
        for (end, tree) in r.fresh {
            let arc = r.arcs[&end];
            if let Some(s) = inner.slots.get_mut(&end)
                && s.arc == arc
            {
                s.tree = tree;
                s.built = true;
                s.built_at_ms = now_ms;
                done.push(arc);
            }
        }
        inner.rebuilds_done += 1;
        done
    }

    /// Rebuilds `arcs` from `engine` in one go (tests, and small nodes).
    pub fn rebuild_now(&self, engine: &dyn Engine, arcs: &[TokenArc], now_ms: u64) {
        self.begin_rebuild(engine, arcs);
        for k in self.rebuild_pending() {
            self.rebuild_scan(engine, &k);
        }
        self.finish_rebuild(now_ms);
    }
}

/// Moves `key` (at `token`, on `arc`) from `old` to `new` in `tree`.
fn toggle(
    tree: &mut ArcTree,
    arc: TokenArc,
    key: &str,
    token: Token,
    old: Option<Version>,
    new: Option<Version>,
) {
    let leaf = leaf_of(arc, token);
    if let Some(o) = old {
        tree.remove(leaf, key, o);
    }
    if let Some(n) = new {
        tree.insert(leaf, key, n);
    }
}

impl ChangeObserver for Trees {
    fn changed(&self, key: &str, old: Option<Version>, new: Option<Version>) {
        let t = key_hash(key.as_bytes());
        let mut guard = self.lock();
        let inner = &mut *guard;
        if let Some((_, slot)) = arc_holding_mut(&mut inner.slots, t)
            && slot.arc.contains(t)
        {
            toggle(&mut slot.tree, slot.arc, key, t, old, new);
        }
        let Some(r) = inner.rebuild.as_mut() else {
            return;
        };
        if r.collecting {
            if arc_holding(&r.arcs, t).is_some_and(|a| a.contains(t)) {
                r.snapshot.insert(key.to_owned());
            }
            return;
        }
        if (r.scanned.contains(key) || !r.snapshot.contains(key))
            && let Some((end, tree)) = arc_holding_mut(&mut r.fresh, t)
            && r.arcs[&end].contains(t)
        {
            toggle(tree, r.arcs[&end], key, t, old, new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Entry, Memory};

    fn put(e: &Memory, key: &str, hlc: u64) {
        e.apply(
            key,
            Entry {
                value: b"v".to_vec().into(),
                version: Version { hlc, node: 1 },
                tombstone: false,
                expires_at_ms: 0,
            },
        )
        .unwrap();
    }

    fn ring_arcs() -> Vec<TokenArc> {
        kvstore_proto::ring::Ring::new([1, 2, 3], 8).arcs_of(1, 3)
    }

    fn roots(t: &Trees) -> Vec<u64> {
        t.roots(&t.arcs())
            .into_iter()
            .map(|h| h.hashes[0])
            .collect()
    }

    #[test]
    fn observed_changes_keep_the_trees_equal_to_a_fresh_build() {
        let engine = Memory::new();
        let trees = Trees::new();
        trees.set_arcs(&ring_arcs());
        engine.attach_observer(trees.clone());
        trees.rebuild_now(&engine, &ring_arcs(), 1);
        for i in 0..500 {
            put(&engine, &format!("k{i}"), 10 + i);
        }
        for i in 0..100 {
            put(&engine, &format!("k{i}"), 1000 + i);
        }
        engine
            .remove(
                "k7",
                Version {
                    hlc: u64::MAX,
                    node: 9,
                },
            )
            .unwrap();
        let fresh = Trees::new();
        fresh.set_arcs(&ring_arcs());
        fresh.rebuild_now(&engine, &ring_arcs(), 1);
        assert_eq!(roots(&trees), roots(&fresh));
        assert_eq!(trees.state().pairs, 499);
        assert!(trees.state().built == trees.state().arcs);
    }

    #[test]
    fn writes_during_a_rebuild_end_in_the_rebuilt_trees() {
        let engine = Memory::new();
        let trees = Trees::new();
        trees.set_arcs(&ring_arcs());
        engine.attach_observer(trees.clone());
        for i in 0..300 {
            put(&engine, &format!("k{i}"), 10 + i);
        }
        trees.begin_rebuild(&engine, &ring_arcs());
        let pending = trees.rebuild_pending();
        assert_eq!(pending.len(), 300);
        for (n, k) in pending.iter().enumerate() {
            trees.rebuild_scan(&engine, k);
            // Interleave: keys scanned, keys to come, and new keys.
            put(&engine, k, 5000 + n as u64);
            put(&engine, &pending[(n * 7) % pending.len()], 9000 + n as u64);
            put(&engine, &format!("new{n}"), 20 + n as u64);
        }
        let built = trees.finish_rebuild(2);
        assert_eq!(built.len(), ring_arcs().len());
        let fresh = Trees::new();
        fresh.set_arcs(&ring_arcs());
        fresh.rebuild_now(&engine, &ring_arcs(), 1);
        assert_eq!(roots(&trees), roots(&fresh));
        assert_eq!(trees.state().pairs, 600);
    }

    #[test]
    fn a_ring_change_keeps_unchanged_arcs_and_unbuilds_new_ones() {
        let trees = Trees::new();
        let engine = Memory::new();
        assert!(trees.set_arcs(&ring_arcs()));
        assert!(!trees.set_arcs(&ring_arcs()));
        trees.rebuild_now(&engine, &ring_arcs(), 1);
        let bigger = kvstore_proto::ring::Ring::new([1, 2, 3, 4], 8).arcs_of(1, 3);
        assert!(trees.set_arcs(&bigger));
        let kept = bigger.iter().filter(|a| ring_arcs().contains(a)).count() as u64;
        assert_eq!(trees.state().built, kept);
        assert!(kept < bigger.len() as u64);
        let due = trees.due_chunk(0, 0);
        assert_eq!(
            due.len() as u64,
            bigger.len() as u64 - kept,
            "only unbuilt arcs are due"
        );
        assert!(trees.roots(&due).iter().all(|h| !h.built));
    }
}
