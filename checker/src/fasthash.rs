//! A fast non-cryptographic hasher for the checker's maps, keyed by ids, versions and keys that
//! loadgen chose (never by an adversary), where SipHash's DoS resistance buys nothing and costs
//! a fifth of the verification time of a 1,000,000-operation history.

use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hashing in the style of rustc's FxHasher.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    #[inline]
    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(26) ^ x).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.mix(x);
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.mix(u64::from(x));
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.mix(x as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Spread the high bits down: hashbrown uses the top 7 bits and the low bits.
        self.0 ^ (self.0 >> 29)
    }
}

/// `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// `HashSet` with [`FastHasher`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<FastHasher>::default();
        let mut top = FastSet::default();
        let mut low: FastMap<u64, u32> = FastMap::default();
        for id in 0u64..4096 {
            let h = b.hash_one(id);
            top.insert(h >> 57);
            *low.entry(h & 0xfff).or_default() += 1;
        }
        assert_eq!(top.len(), 128, "every 7-bit tag is used");
        // 4096 ids in 4096 buckets: a random hash puts at most ~7 in one.
        let worst = low.values().max().copied().unwrap_or(0);
        assert!(worst <= 10, "a bucket holds {worst} ids");
    }

    #[test]
    fn strings_differing_in_length_only_differ() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<FastHasher>::default();
        assert_ne!(b.hash_one("a"), b.hash_one("a\0"));
        assert_ne!(b.hash_one("key1"), b.hash_one("key2"));
    }
}
