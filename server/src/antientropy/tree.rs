//! One arc's hash tree, Tictac-style: a fixed number of leaves, each the XOR of the hashes of
//! the (key, version) pairs whose tokens fall in its slice of the arc.
//!
//! XOR makes the tree incremental and order-free: a change of a key's version toggles the old
//! pair's hash out of its leaf and the new one in, and two replicas holding the same pairs hold
//! the same leaves whatever order the writes came in. Leaves are grouped into [`BRANCHES`]
//! branches (the XOR of their leaves) under one root, so an exchange compares one root, then
//! 32 branch hashes, then 32 leaves per differing branch, and lists keys only for differing
//! leaves. The leaf of a token is its position on the arc scaled to [`LEAVES`], so replicas
//! of the same arc slice it identically. The size is fixed whatever the key count (8 KiB per
//! arc): more keys only make each leaf cover more of them.
//!
//! A key's version identifies its write (the HLC plus the stamping node), so a tombstone and a
//! value never share a hash; tombstones are in the tree like values.

use kvstore_proto::Version;
use kvstore_proto::ring::{Arc as TokenArc, Token, fmix64, fnv1a64};

/// Leaves per arc.
pub const LEAVES: usize = 1024;
/// Branches per arc (each the XOR of [`LEAVES_PER_BRANCH`] consecutive leaves).
pub const BRANCHES: usize = 32;
/// Leaves under one branch.
pub const LEAVES_PER_BRANCH: usize = LEAVES / BRANCHES;

/// The hash a stored (key, version) pair contributes to its leaf.
pub fn pair_hash(key: &str, version: Version) -> u64 {
    fmix64(fnv1a64(key.as_bytes()) ^ fmix64(version.hlc ^ (u64::from(version.node) << 48)))
}

/// The leaf of `token` on `arc` (which must contain it).
pub fn leaf_of(arc: TokenArc, token: Token) -> usize {
    let offset = token.wrapping_sub(arc.start).wrapping_sub(1) as u128;
    // The arc holds `width` tokens; `start == end` is the whole ring (2^64).
    let width = match arc.end.wrapping_sub(arc.start) {
        0 => 1u128 << 64,
        w => w as u128,
    };
    ((offset * LEAVES as u128) / width).min(LEAVES as u128 - 1) as usize
}

/// One arc's leaves.
#[derive(Clone, PartialEq, Eq)]
pub struct ArcTree {
    leaves: Box<[u64]>,
    pairs: u64,
}

impl std::fmt::Debug for ArcTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ArcTree(root={:016x}, pairs={})",
            self.root(),
            self.pairs
        )
    }
}

impl Default for ArcTree {
    fn default() -> Self {
        Self {
            leaves: vec![0; LEAVES].into_boxed_slice(),
            pairs: 0,
        }
    }
}

impl ArcTree {
    /// Adds the pair (`key`, `version`) at `leaf`.
    pub fn insert(&mut self, leaf: usize, key: &str, version: Version) {
        self.leaves[leaf] ^= pair_hash(key, version);
        self.pairs += 1;
    }

    /// Removes the pair (`key`, `version`) from `leaf` (it must have been inserted).
    pub fn remove(&mut self, leaf: usize, key: &str, version: Version) {
        self.leaves[leaf] ^= pair_hash(key, version);
        self.pairs = self.pairs.saturating_sub(1);
    }

    /// Pairs held (keys of the arc).
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// The XOR of every leaf.
    pub fn root(&self) -> u64 {
        self.leaves.iter().fold(0, |a, l| a ^ l)
    }

    /// The branch hashes, in order.
    pub fn branches(&self) -> Vec<u64> {
        self.leaves
            .chunks(LEAVES_PER_BRANCH)
            .map(|c| c.iter().fold(0, |a, l| a ^ l))
            .collect()
    }

    /// The leaves under `branch`.
    pub fn leaves_of(&self, branch: usize) -> &[u64] {
        &self.leaves[branch * LEAVES_PER_BRANCH..(branch + 1) * LEAVES_PER_BRANCH]
    }

    /// Heap bytes this tree holds.
    pub fn heap_bytes(&self) -> usize {
        self.leaves.len() * std::mem::size_of::<u64>()
    }
}

/// Indexes where two equally long hash lists differ.
pub fn differing(a: &[u64], b: &[u64]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(hlc: u64) -> Version {
        Version { hlc, node: 1 }
    }

    #[test]
    fn leaves_slice_the_arc_evenly_and_wrap() {
        let arc = TokenArc {
            start: 0,
            end: 1024,
        };
        assert_eq!(leaf_of(arc, 1), 0);
        assert_eq!(leaf_of(arc, 2), 1);
        assert_eq!(leaf_of(arc, 1024), LEAVES - 1);
        let wrapping = TokenArc {
            start: u64::MAX - 511,
            end: 512,
        };
        assert_eq!(leaf_of(wrapping, u64::MAX - 510), 0);
        assert_eq!(leaf_of(wrapping, 0), 511);
        assert_eq!(leaf_of(wrapping, 512), LEAVES - 1);
        let whole = TokenArc { start: 7, end: 7 };
        assert_eq!(leaf_of(whole, 8), 0);
        assert_eq!(leaf_of(whole, 7), LEAVES - 1);
    }

    #[test]
    fn order_does_not_matter_and_a_change_toggles_out_the_old_pair() {
        let mut a = ArcTree::default();
        let mut b = ArcTree::default();
        a.insert(3, "x", v(1));
        a.insert(900, "y", v(2));
        b.insert(900, "y", v(2));
        b.insert(3, "x", v(1));
        assert_eq!(a, b);
        assert_ne!(a.root(), 0);
        a.remove(3, "x", v(1));
        a.insert(3, "x", v(5));
        assert_ne!(a.root(), b.root());
        let diff = differing(&a.branches(), &b.branches());
        assert_eq!(diff, vec![0]);
        assert_eq!(differing(a.leaves_of(0), b.leaves_of(0)), vec![3]);
        b.remove(3, "x", v(1));
        b.insert(3, "x", v(5));
        assert_eq!(a, b);
        a.remove(3, "x", v(5));
        a.remove(900, "y", v(2));
        assert_eq!(a.root(), 0);
        assert_eq!(a.pairs(), 0);
    }
}
