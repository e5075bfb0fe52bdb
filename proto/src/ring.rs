//! The placement function: where a key lives.
//!
//! Consistent hashing with virtual nodes. The hash is documented so that any client, in any
//! language, can route exactly as the servers place:
//!
//! ```text
//! fnv1a64(bytes)  = FNV-1a, 64 bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
//! fmix64(h)       = MurmurHash3's 64-bit finaliser:
//!                     h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33;
//!                     h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33
//! key_hash(key)   = fmix64(fnv1a64(utf8 bytes of key))
//! token(node, i)  = key_hash("{node}#{i}")      for i in 0..V (node as decimal)
//! ```
//!
//! The ring is the sorted list of (token, node). A key's preference list is found by walking
//! clockwise from the first token >= key_hash(key) (wrapping around) and taking the first N
//! distinct nodes. FNV-1a alone spreads short, similar strings poorly; the finaliser gives full
//! avalanche so V=64 virtual nodes balance load within a few percent.
//!
//! This module only computes placement; membership (who is in the ring) belongs to the server.

use std::collections::{BTreeMap, BTreeSet};

/// A point on the ring.
pub type Token = u64;

/// FNV-1a 64-bit hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// MurmurHash3's 64-bit finaliser (full avalanche).
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The ring position of a key.
pub fn key_hash(key: &[u8]) -> Token {
    fmix64(fnv1a64(key))
}

/// The ring position of virtual node `i` of `node`.
pub fn vnode_token(node: u32, i: u32) -> Token {
    key_hash(format!("{node}#{i}").as_bytes())
}

/// A half-open arc of the ring: tokens `t` with `start < t <= end`, wrapping past `u64::MAX`.
/// `start == end` is the whole ring (a ring with a single token).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arc {
    /// Exclusive start.
    pub start: Token,
    /// Inclusive end.
    pub end: Token,
}

impl Arc {
    /// Whether `t` lies on this arc.
    pub fn contains(&self, t: Token) -> bool {
        if self.start == self.end {
            true
        } else if self.start < self.end {
            self.start < t && t <= self.end
        } else {
            t > self.start || t <= self.end
        }
    }

    /// The arc's share of the ring, in [0, 1].
    pub fn fraction(&self) -> f64 {
        if self.start == self.end {
            return 1.0;
        }
        let len = self.end.wrapping_sub(self.start);
        len as f64 / 2f64.powi(64)
    }
}

/// A consistent-hash ring over a set of node ids, with `vnodes` tokens per node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    /// Sorted by (token, node); equal tokens (vanishingly rare) are ordered by node id so every
    /// party builds the same ring.
    tokens: Vec<(Token, u32)>,
    nodes: BTreeSet<u32>,
    vnodes: u32,
}

impl Ring {
    /// Builds the ring of `nodes`, each with `vnodes` tokens.
    pub fn new(nodes: impl IntoIterator<Item = u32>, vnodes: u32) -> Self {
        let nodes: BTreeSet<u32> = nodes.into_iter().collect();
        let mut tokens: Vec<(Token, u32)> = nodes
            .iter()
            .flat_map(|&n| (0..vnodes).map(move |i| (vnode_token(n, i), n)))
            .collect();
        tokens.sort_unstable();
        Self {
            tokens,
            nodes,
            vnodes,
        }
    }

    /// The node ids on the ring.
    pub fn nodes(&self) -> &BTreeSet<u32> {
        &self.nodes
    }

    /// Virtual nodes per node.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Whether the ring has no node.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// A hash of the ring's token owners, to compare two views cheaply.
    pub fn fingerprint(&self) -> u64 {
        let mut h = fnv1a64(&self.vnodes.to_le_bytes());
        for n in &self.nodes {
            h = fmix64(h ^ u64::from(*n));
        }
        h
    }

    /// The first `n` distinct nodes clockwise from `token`.
    pub fn preference_list_for_token(&self, token: Token, n: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(n);
        if self.tokens.is_empty() || n == 0 {
            return out;
        }
        let want = n.min(self.nodes.len());
        let start = self.tokens.partition_point(|&(t, _)| t < token);
        for i in 0..self.tokens.len() {
            let node = self.tokens[(start + i) % self.tokens.len()].1;
            if !out.contains(&node) {
                out.push(node);
                if out.len() == want {
                    break;
                }
            }
        }
        out
    }

    /// The first `n` distinct nodes clockwise from the key's hash: its replicas, primary first.
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<u32> {
        self.preference_list_for_token(key_hash(key), n)
    }

    /// Every arc between consecutive tokens with the `n` nodes that replicate it.
    pub fn arcs(&self, n: usize) -> Vec<(Arc, Vec<u32>)> {
        let len = self.tokens.len();
        (0..len)
            .filter_map(|i| {
                let end = self.tokens[i].0;
                let start = self.tokens[(i + len - 1) % len].0;
                // Duplicate tokens give an empty arc, except for the single-token ring.
                if start == end && len > 1 {
                    return None;
                }
                Some((Arc { start, end }, self.preference_list_for_token(end, n)))
            })
            .collect()
    }

    /// The arcs that `node` replicates at replication factor `n`.
    pub fn arcs_of(&self, node: u32, n: usize) -> Vec<Arc> {
        self.arcs(n)
            .into_iter()
            .filter(|(_, owners)| owners.contains(&node))
            .map(|(arc, _)| arc)
            .collect()
    }

    /// Each node's share of the ring as a primary (first in the preference list), in [0, 1].
    pub fn ownership(&self) -> BTreeMap<u32, f64> {
        let mut out: BTreeMap<u32, f64> = self.nodes.iter().map(|&n| (n, 0.0)).collect();
        for (arc, owners) in self.arcs(1) {
            if let Some(primary) = owners.first() {
                *out.entry(*primary).or_default() += arc.fraction();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable() {
        // Golden values: changing them breaks every client that routes by this function.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_hash(b"user:42"), fmix64(fnv1a64(b"user:42")));
        assert_eq!(fmix64(0), 0);
    }

    #[test]
    fn preference_list_has_n_distinct_nodes() {
        let ring = Ring::new([1, 2, 3, 4, 5], 64);
        for i in 0..1000 {
            let key = format!("key{i}");
            let list = ring.preference_list(key.as_bytes(), 3);
            assert_eq!(list.len(), 3);
            let distinct: BTreeSet<_> = list.iter().collect();
            assert_eq!(distinct.len(), 3, "{list:?}");
        }
        // Fewer nodes than N: every node, once.
        let small = Ring::new([1, 2], 8);
        assert_eq!(small.preference_list(b"k", 3).len(), 2);
        assert!(Ring::new([], 8).preference_list(b"k", 3).is_empty());
    }

    #[test]
    fn same_members_same_ring_whatever_the_order() {
        let a = Ring::new([3, 1, 2], 16);
        let b = Ring::new([1, 2, 3], 16);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), Ring::new([1, 2], 16).fingerprint());
    }

    #[test]
    fn ownership_is_balanced_and_sums_to_one() {
        let ring = Ring::new([1, 2, 3], 64);
        let own = ring.ownership();
        let total: f64 = own.values().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        for (node, share) in own {
            assert!((0.2..0.47).contains(&share), "node {node} owns {share}");
        }
    }

    #[test]
    fn adding_a_node_moves_about_a_quarter_of_primaries_only_to_it() {
        let before = Ring::new([1, 2, 3], 64);
        let after = Ring::new([1, 2, 3, 4], 64);
        let keys = 20_000;
        let mut moved = 0;
        for i in 0..keys {
            let key = format!("k{i}");
            let a = before.preference_list(key.as_bytes(), 1)[0];
            let b = after.preference_list(key.as_bytes(), 1)[0];
            if a != b {
                assert_eq!(b, 4, "key {key} moved from {a} to {b}, not to the new node");
                moved += 1;
            }
        }
        let share = f64::from(moved) / f64::from(keys);
        assert!((0.18..0.32).contains(&share), "moved {share}");
    }

    #[test]
    fn arcs_cover_the_ring_and_match_preference_lists() {
        let ring = Ring::new([1, 2, 3, 4], 16);
        let arcs = ring.arcs(3);
        let total: f64 = arcs.iter().map(|(a, _)| a.fraction()).sum();
        assert!((total - 1.0).abs() < 1e-9);
        for i in 0..500 {
            let key = format!("x{i}");
            let t = key_hash(key.as_bytes());
            let hits: Vec<_> = arcs.iter().filter(|(a, _)| a.contains(t)).collect();
            assert_eq!(hits.len(), 1, "token {t} on {} arcs", hits.len());
            assert_eq!(hits[0].1, ring.preference_list(key.as_bytes(), 3));
        }
    }

    #[test]
    fn arc_contains_wraps() {
        let wrap = Arc {
            start: u64::MAX - 5,
            end: 5,
        };
        assert!(wrap.contains(u64::MAX));
        assert!(wrap.contains(0));
        assert!(wrap.contains(5));
        assert!(!wrap.contains(6));
        assert!(!wrap.contains(u64::MAX - 5));
        let whole = Arc { start: 9, end: 9 };
        assert!(whole.contains(0) && whole.contains(9));
    }
}
