//! Routing decisions: which nodes replicate a key, and in which order to try them.
//!
//! [`RouteTable`] precomputes, from a [`Ring`], the preference list of every arc, so routing a
//! key is one hash and one binary search with no allocation (the hot path of every request).
//! [`order_candidates`] sorts a preference list by health (live first, primary first among
//! equals) into a caller-provided array. Which member states own tokens is decided here once
//! ([`owns_tokens`]) and must match the servers' placement.
//!
//! Pure code: no sockets, no clock. Node health comes in as a function argument.

use kvstore_proto::pb::MemberState;
use kvstore_proto::ring::{Ring, Token, key_hash};

/// Most candidates considered per request: replication factors beyond this are truncated for
/// routing purposes (the coordinator still writes every replica).
pub(crate) const MAX_CANDIDATES: usize = 16;

/// Whether a member in `state` owns ring tokens. A down or suspect node keeps its ranges (a
/// temporary failure moves no data) and a leaving node owns them until it has handed them
/// over; a joining node does not serve its ranges before it is up, and a left one owns none.
pub(crate) fn owns_tokens(state: MemberState) -> bool {
    matches!(
        state,
        MemberState::Up | MemberState::Suspect | MemberState::Down | MemberState::Leaving
    )
}

/// How good a node is as a coordinator, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Health {
    /// Up, and no recent transport failure here.
    Good,
    /// Suspected by the cluster or by this client recently, or joining: try after good ones.
    Doubtful,
    /// Down, leaving or gone: only as a last resort (any node can coordinate any key, and our
    /// view may be stale).
    Bad,
}

/// A node's coordinator health from its gossiped state and this client's own experience.
pub(crate) fn health(state: MemberState, locally_suspect: bool) -> Health {
    match state {
        MemberState::Up if !locally_suspect => Health::Good,
        MemberState::Up | MemberState::Suspect | MemberState::Joining | MemberState::Unknown => {
            Health::Doubtful
        }
        MemberState::Down | MemberState::Leaving | MemberState::Left => Health::Bad,
    }
}

/// Every arc's preference list, laid out for allocation-free lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteTable {
    /// Inclusive end token of each arc, ascending.
    ends: Vec<Token>,
    /// Preference lists, `stride` node ids per arc, in the order of `ends`.
    prefs: Vec<u32>,
    /// Length of every preference list: min(N, nodes on the ring).
    stride: usize,
}

impl RouteTable {
    /// Precomputes the preference lists of `ring` at replication factor `n`.
    pub fn new(ring: &Ring, n: usize) -> Self {
        let arcs = ring.arcs(n);
        let stride = arcs.first().map_or(0, |(_, owners)| owners.len());
        let mut ends = Vec::with_capacity(arcs.len());
        let mut prefs = Vec::with_capacity(arcs.len() * stride);
        for (arc, owners) in arcs {
            debug_assert_eq!(owners.len(), stride);
            ends.push(arc.end);
            prefs.extend_from_slice(&owners);
        }
        Self {
            ends,
            prefs,
            stride,
        }
    }

    /// The key's replicas, primary first: exactly [`Ring::preference_list`], without allocating.
    pub fn replicas(&self, key: &[u8]) -> &[u32] {
        if self.ends.is_empty() {
            return &[];
        }
        let t = key_hash(key);
        // The arc owning `t` is the first whose end is >= t, wrapping to the first arc.
        let mut i = self.ends.partition_point(|&end| end < t);
        if i == self.ends.len() {
            i = 0;
        }
        &self.prefs[i * self.stride..(i + 1) * self.stride]
    }
}

/// Writes `replicas` into `out` ordered by [`Health`] (stable: the preference order breaks
/// ties, so the primary coordinates when it is healthy) and returns how many were written.
pub(crate) fn order_candidates(
    replicas: &[u32],
    health: impl Fn(u32) -> Health,
    out: &mut [u32; MAX_CANDIDATES],
) -> usize {
    let mut ranks = [Health::Bad; MAX_CANDIDATES];
    let len = replicas.len().min(MAX_CANDIDATES);
    for (i, &node) in replicas[..len].iter().enumerate() {
        // Insertion sort: at most a handful of elements.
        let h = health(node);
        let mut j = i;
        while j > 0 && ranks[j - 1] > h {
            out[j] = out[j - 1];
            ranks[j] = ranks[j - 1];
            j -= 1;
        }
        out[j] = node;
        ranks[j] = h;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_ring_for_every_key() {
        for (nodes, n) in [
            (vec![1, 2, 3], 3),
            (vec![1, 2, 3, 4, 5], 3),
            (vec![7], 3),
            (vec![1, 2], 3),
            (vec![1, 2, 3, 4], 1),
        ] {
            let ring = Ring::new(nodes.clone(), 64);
            let table = RouteTable::new(&ring, n);
            for i in 0..2000 {
                let key = format!("key-{i}");
                assert_eq!(
                    table.replicas(key.as_bytes()),
                    ring.preference_list(key.as_bytes(), n).as_slice(),
                    "{key} on {nodes:?} n={n}"
                );
            }
        }
        let empty = RouteTable::new(&Ring::new([], 64), 3);
        assert!(empty.replicas(b"k").is_empty());
    }

    #[test]
    fn healthy_primary_first_then_replicas_then_bad() {
        use Health::*;
        type Case = (Vec<(u32, Health)>, Vec<u32>);
        let cases: Vec<Case> = vec![
            (vec![(1, Good), (2, Good), (3, Good)], vec![1, 2, 3]),
            (vec![(1, Bad), (2, Good), (3, Good)], vec![2, 3, 1]),
            (vec![(1, Doubtful), (2, Bad), (3, Good)], vec![3, 1, 2]),
            (vec![(1, Bad), (2, Bad), (3, Bad)], vec![1, 2, 3]),
            (vec![(5, Doubtful), (6, Good)], vec![6, 5]),
            (vec![], vec![]),
        ];
        for (nodes, want) in cases {
            let ids: Vec<u32> = nodes.iter().map(|(id, _)| *id).collect();
            let lookup = |id: u32| nodes.iter().find(|(n, _)| *n == id).expect("known").1;
            let mut out = [0; MAX_CANDIDATES];
            let len = order_candidates(&ids, lookup, &mut out);
            assert_eq!(&out[..len], want.as_slice(), "{nodes:?}");
        }
    }

    #[test]
    fn member_states() {
        assert!(owns_tokens(MemberState::Down));
        assert!(owns_tokens(MemberState::Leaving));
        assert!(!owns_tokens(MemberState::Joining));
        assert!(!owns_tokens(MemberState::Left));
        assert_eq!(health(MemberState::Up, false), Health::Good);
        assert_eq!(health(MemberState::Up, true), Health::Doubtful);
        assert_eq!(health(MemberState::Down, false), Health::Bad);
    }
}
