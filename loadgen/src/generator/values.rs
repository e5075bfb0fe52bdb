//! Value sizes and contents.
//!
//! [`ValueSizer`] draws sizes from the scenario's spec. [`ValuePool`] holds one random buffer
//! and hands out values as zero-copy slices of it at random offsets, so producing a 1 MB value
//! costs nothing; values that must carry a unique id (history recording) are built by the
//! history module instead.

use bytes::Bytes;
use rand::{Rng, RngCore, SeedableRng, rngs::SmallRng};

use crate::scenario::ValueSize;

/// Draws value sizes.
#[derive(Debug, Clone)]
pub enum ValueSizer {
    /// Always this many bytes.
    Fixed(usize),
    /// Uniform in `min..=max`.
    Range(usize, usize),
    /// Cumulative weights and their sizes.
    Weighted(Vec<(u64, usize)>, u64),
}

impl ValueSizer {
    /// From a validated spec.
    pub fn new(spec: &ValueSize) -> Self {
        match spec {
            ValueSize::Fixed(s) => Self::Fixed(*s as usize),
            ValueSize::Range { min, max } => Self::Range(*min as usize, *max as usize),
            ValueSize::Weighted(list) => {
                let mut acc = 0;
                let cumulative = list
                    .iter()
                    .filter(|(_, w)| *w > 0)
                    .map(|(s, w)| {
                        acc += w;
                        (acc, *s as usize)
                    })
                    .collect();
                Self::Weighted(cumulative, acc)
            }
        }
    }

    /// Draws a size in bytes.
    #[inline]
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        match self {
            Self::Fixed(s) => *s,
            Self::Range(a, b) => rng.random_range(*a..=*b),
            Self::Weighted(cum, total) => {
                let x = rng.random_range(0..*total);
                cum.iter()
                    .find(|(c, _)| x < *c)
                    .map(|(_, s)| *s)
                    .unwrap_or(0)
            }
        }
    }
}

/// Spread of the random offsets into the pool.
const OFFSET_SPREAD: usize = 4096;

/// A shared random buffer that values are sliced from.
#[derive(Debug, Clone)]
pub struct ValuePool {
    buf: Bytes,
}

impl ValuePool {
    /// A pool able to serve values up to `max_len` bytes.
    pub fn new(max_len: usize, seed: u64) -> Self {
        let mut v = vec![0u8; max_len + OFFSET_SPREAD];
        SmallRng::seed_from_u64(seed).fill_bytes(&mut v);
        Self {
            buf: Bytes::from(v),
        }
    }

    /// A value of `len` bytes (at most the pool's `max_len`).
    #[inline]
    pub fn value<R: Rng + ?Sized>(&self, rng: &mut R, len: usize) -> Bytes {
        let off = rng.random_range(0..OFFSET_SPREAD);
        self.buf.slice(off..off + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_sizes_follow_weights() {
        let s = ValueSizer::new(&ValueSize::Weighted(vec![(10, 3), (20, 0), (30, 1)]));
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 40_000;
        let tens = (0..n).filter(|_| s.next(&mut rng) == 10).count();
        let share = tens as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.01, "share of size 10: {share}");
    }

    #[test]
    fn pool_values_have_the_asked_length() {
        let pool = ValuePool::new(1 << 20, 1);
        let mut rng = SmallRng::seed_from_u64(2);
        for len in [1, 1024, 1 << 20] {
            assert_eq!(pool.value(&mut rng, len).len(), len);
        }
    }
}
