//! Who stores a key, read and written, given the member table: pure code over
//! [`kvstore_proto::ring::Ring`].
//!
//! Two rings are derived from the announced states:
//! - the *current* ring (members up or leaving) answers reads: it holds the data today;
//! - the *pending* ring (members joining or up) is where the data is going.
//!
//! When they differ a range is moving, and a write goes to the union of both preference lists
//! and must be acknowledged by the write quorum of *each* (so whichever ring a later read uses,
//! it meets the write). Once every move is done both rings are equal and this reduces to plain
//! Dynamo placement. A down member stays in both rings: only join and leave move ownership.
//!
//! This module holds no state beyond what it computes and does no I/O.

use std::collections::BTreeSet;

use kvstore_proto::ring::{Arc, Ring, Token, fmix64, key_hash};

use super::members::{MemberTable, Status};

/// The replicas of one key for a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSet {
    /// Preference list in the current ring.
    pub current: Vec<u32>,
    /// Preference list in the pending ring (equal to `current` when nothing moves).
    pub pending: Vec<u32>,
}

impl WriteSet {
    /// Every replica to send the write to, each once, current owners first.
    pub fn targets(&self) -> Vec<u32> {
        let mut out = self.current.clone();
        for n in &self.pending {
            if !out.contains(n) {
                out.push(*n);
            }
        }
        out
    }
}

/// Placement under one membership view.
#[derive(Debug, Clone)]
pub struct Placement {
    current: Ring,
    pending: Ring,
    replication_factor: usize,
}

impl Placement {
    /// Placement for the given members' announced states.
    pub fn new(table: &MemberTable, vnodes: u32, replication_factor: usize) -> Self {
        let current = table
            .members()
            .filter(|m| matches!(m.status, Status::Up | Status::Leaving))
            .map(|m| m.id);
        let pending = table
            .members()
            .filter(|m| matches!(m.status, Status::Joining | Status::Up))
            .map(|m| m.id);
        Self::from_sets(current, pending, vnodes, replication_factor)
    }

    /// Placement from explicit owner sets (tests, and views without a table).
    pub fn from_sets(
        current: impl IntoIterator<Item = u32>,
        pending: impl IntoIterator<Item = u32>,
        vnodes: u32,
        replication_factor: usize,
    ) -> Self {
        Self {
            current: Ring::new(current, vnodes),
            pending: Ring::new(pending, vnodes),
            replication_factor,
        }
    }

    /// N.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// The ring that serves reads.
    pub fn current(&self) -> &Ring {
        &self.current
    }

    /// The ring data is moving to.
    pub fn pending(&self) -> &Ring {
        &self.pending
    }

    /// Whether ranges are moving (a join or leave is under way).
    pub fn in_transition(&self) -> bool {
        self.current.nodes() != self.pending.nodes()
    }

    /// The replicas a read asks: the key's preference list in the current ring (the pending
    /// one while no member is up yet, i.e. a cluster still bootstrapping).
    pub fn read_replicas(&self, key: &str) -> Vec<u32> {
        let ring = if self.current.is_empty() {
            &self.pending
        } else {
            &self.current
        };
        ring.preference_list(key.as_bytes(), self.replication_factor)
    }

    /// The replicas a write goes to.
    pub fn write_set(&self, key: &str) -> WriteSet {
        let token = key_hash(key.as_bytes());
        let pending = self
            .pending
            .preference_list_for_token(token, self.replication_factor);
        let current = if self.current.is_empty() {
            pending.clone()
        } else {
            self.current
                .preference_list_for_token(token, self.replication_factor)
        };
        WriteSet { current, pending }
    }

    /// Whether `node` must keep `key`: it replicates it in the current or the pending ring.
    pub fn keeps(&self, node: u32, key: &str) -> bool {
        let ws = self.write_set(key);
        ws.current.contains(&node) || ws.pending.contains(&node)
    }

    /// The arcs `node` replicates in the pending ring (what a joining node streams in).
    pub fn pending_arcs_of(&self, node: u32) -> Vec<Arc> {
        self.pending.arcs_of(node, self.replication_factor)
    }

    /// Whether `token` lies on one of `arcs`.
    pub fn token_in(arcs: &[Arc], token: Token) -> bool {
        arcs.iter().any(|a| a.contains(token))
    }

    /// A hash of both rings' owners, to compare two nodes' views cheaply.
    pub fn fingerprint(&self) -> u64 {
        fmix64(self.current.fingerprint() ^ self.pending.fingerprint().rotate_left(1))
    }

    /// Members in either ring.
    pub fn owners(&self) -> BTreeSet<u32> {
        self.current
            .nodes()
            .union(self.pending.nodes())
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::members::{Member, Timing};

    fn table(states: &[(u32, Status)]) -> MemberTable {
        let timing = Timing {
            suspect_after_ms: 1,
            down_after_ms: 2,
        };
        let mut t = MemberTable::new(states[0].0, "a".into(), states[0].1, timing, 0);
        for &(id, status) in &states[1..] {
            t.merge(
                Member {
                    id,
                    address: format!("n{id}"),
                    status,
                    incarnation: 1,
                    heartbeat: 0,
                    conditions: Default::default(),
                },
                0,
            );
        }
        t
    }

    /// Nodes 1..=3 up, plus node 4 in `fourth` when given; 64 vnodes, N=3.
    fn three_up_and(fourth: Option<Status>) -> Placement {
        let mut states = vec![(1, Status::Up), (2, Status::Up), (3, Status::Up)];
        states.extend(fourth.map(|s| (4, s)));
        Placement::new(&table(&states), 64, 3)
    }

    #[test]
    fn stable_ring_reads_and_writes_the_same_n_replicas() {
        let p = three_up_and(None);
        assert!(!p.in_transition());
        for i in 0..200 {
            let key = format!("k{i}");
            let ws = p.write_set(&key);
            assert_eq!(ws.current, ws.pending);
            assert_eq!(ws.targets().len(), 3);
            assert_eq!(p.read_replicas(&key), ws.current);
        }
    }

    #[test]
    fn joining_a_fourth_node_moves_about_a_quarter_of_keys_and_only_to_it() {
        let before = three_up_and(None);
        let joining = three_up_and(Some(Status::Joining));
        let after = three_up_and(Some(Status::Up));
        assert!(joining.in_transition());
        let keys = 20_000;
        let mut gained = 0;
        for i in 0..keys {
            let key = format!("key-{i}");
            let old: BTreeSet<u32> = before.read_replicas(&key).into_iter().collect();
            let new: BTreeSet<u32> = after.read_replicas(&key).into_iter().collect();
            // Whatever a replica set gains, it gains the new node only.
            for n in new.difference(&old) {
                assert_eq!(*n, 4, "key {key} moved to {n}");
            }
            if new.contains(&4) {
                gained += 1;
            }
            // While joining, reads use the old owners and writes reach old and new.
            let ws = joining.write_set(&key);
            assert_eq!(joining.read_replicas(&key), before.read_replicas(&key));
            let targets: BTreeSet<u32> = ws.targets().into_iter().collect();
            assert!(targets.is_superset(&old) && targets.is_superset(&new));
        }
        // With N=3 of 4 nodes the new node replicates 3/4 of keys; as a primary it takes ~1/4.
        let share = f64::from(gained) / f64::from(keys);
        assert!((0.6..0.9).contains(&share), "node 4 replicates {share}");
        let mut primaries_moved = 0;
        for i in 0..keys {
            let key = format!("key-{i}");
            if before.read_replicas(&key)[0] != after.read_replicas(&key)[0] {
                assert_eq!(after.read_replicas(&key)[0], 4);
                primaries_moved += 1;
            }
        }
        let share = f64::from(primaries_moved) / f64::from(keys);
        assert!((0.18..0.32).contains(&share), "primaries moved {share}");
    }

    #[test]
    fn leaving_node_keeps_receiving_writes_until_gone_and_down_nodes_stay() {
        let leaving = three_up_and(Some(Status::Leaving));
        let left = three_up_and(Some(Status::Left));
        for i in 0..500 {
            let key = format!("k{i}");
            let ws = leaving.write_set(&key);
            assert!(!ws.pending.contains(&4));
            if ws.current.contains(&4) {
                assert!(leaving.keeps(4, &key));
                assert_eq!(ws.targets().len(), 4);
            }
            assert!(!left.keeps(4, &key));
        }
        assert_eq!(left.current().nodes().len(), 3);
    }

    #[test]
    fn pending_arcs_cover_exactly_the_keys_a_joiner_will_own() {
        let joining = Placement::new(
            &table(&[
                (1, Status::Up),
                (2, Status::Up),
                (3, Status::Up),
                (4, Status::Joining),
            ]),
            16,
            2,
        );
        let arcs = joining.pending_arcs_of(4);
        for i in 0..2_000 {
            let key = format!("k{i}");
            let owned = joining.write_set(&key).pending.contains(&4);
            assert_eq!(
                Placement::token_in(&arcs, key_hash(key.as_bytes())),
                owned,
                "{key}"
            );
        }
    }
}
