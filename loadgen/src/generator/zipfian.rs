//! Zipfian key generators, ported from YCSB (`ZipfianGenerator`, `ScrambledZipfianGenerator`,
//! `SkewedLatestGenerator`), which implement Gray et al., "Quickly Generating Billion-Record
//! Synthetic Databases" (SIGMOD 1994).
//!
//! Item `i` (0-based rank) is drawn with probability `(i+1)^-theta / zeta(n, theta)`, where
//! `zeta(n, theta) = sum_{k=1..n} k^-theta`. Gray's method draws ranks 0 and 1 exactly and the
//! rest from a continuous approximation of the law, in O(1) per draw after computing zeta once;
//! a growing item count (inserts) updates zeta incrementally.
//!
//! The scrambled variant draws from a zipfian over YCSB's fixed space of 10^10 items and hashes
//! the rank (FNV-1a 64) into the record range, so the hot records are scattered over the key
//! space (and so over the ring) instead of being the first keys; as in YCSB its frequency profile
//! is the zipfian law over that fixed space, whatever the record count.
//!
//! Not here: `rand_distr::Zipf` (a different algorithm, not comparable with YCSB figures).

use rand::Rng;

/// YCSB's item space for the scrambled zipfian.
pub const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;

/// zeta(n, theta) = sum_{k=1..n} k^-theta. Exact summation up to 100,000 terms, then the
/// Euler-Maclaurin expansion of the tail (error below 1e-12 for theta in (0, 1)).
pub fn zeta(n: u64, theta: f64) -> f64 {
    const EXACT: u64 = 100_000;
    let m = n.min(EXACT);
    let mut sum = zeta_range(0, m, theta);
    if n > m {
        let f = |x: f64| x.powf(-theta);
        let df = |x: f64| -theta * x.powf(-theta - 1.0);
        let (a, b) = (m as f64, n as f64);
        // sum_{k=m+1..n} f(k) = int_m^n f + (f(n) - f(m))/2 + (f'(n) - f'(m))/12 + ...
        let integral = (b.powf(1.0 - theta) - a.powf(1.0 - theta)) / (1.0 - theta);
        sum += integral + (f(b) - f(a)) / 2.0 + (df(b) - df(a)) / 12.0;
    }
    sum
}

/// sum_{k=from+1..=to} k^-theta: extends a zeta computed for `from` items to `to` items.
fn zeta_range(from: u64, to: u64, theta: f64) -> f64 {
    (from + 1..=to).map(|k| (k as f64).powf(-theta)).sum()
}

/// YCSB's FNV-1a 64 hash of a long, byte by byte, made non-negative as Java's `Math.abs`.
pub fn fnv_hash64(mut val: u64) -> u64 {
    const OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET;
    for _ in 0..8 {
        h ^= val & 0xff;
        val >>= 8;
        h = h.wrapping_mul(PRIME);
    }
    (h as i64).wrapping_abs() as u64
}

/// Zipfian over `0..items`, most popular first (Gray et al.).
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    zeta2: f64,
    eta: f64,
    /// 1 + 0.5^theta: draws below `head * zetan` are ranks 0 or 1 (precomputed: it is on the
    /// hot path).
    head: f64,
}

impl Zipfian {
    /// A zipfian over `items` (>= 1) items with skew `theta` in (0, 1).
    pub fn new(items: u64, theta: f64) -> Self {
        Self::with_zeta(items, theta, zeta(items, theta))
    }

    /// As [`Zipfian::new`] with a precomputed `zetan = zeta(items, theta)`.
    pub fn with_zeta(items: u64, theta: f64, zetan: f64) -> Self {
        let items = items.max(1);
        let zeta2 = zeta(2, theta);
        let mut z = Self {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            zeta2,
            eta: 0.0,
            head: 1.0 + 0.5f64.powf(theta),
        };
        z.eta = z.compute_eta();
        z
    }

    fn compute_eta(&self) -> f64 {
        (1.0 - (2.0 / self.items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// The item count.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The normalising constant zeta(items, theta).
    pub fn zetan(&self) -> f64 {
        self.zetan
    }

    /// Grows the item space to `items` (never shrinks), updating zeta incrementally.
    pub fn grow_to(&mut self, items: u64) {
        if items > self.items {
            self.zetan += zeta_range(self.items, items, self.theta);
            self.items = items;
            self.eta = self.compute_eta();
        }
    }

    /// Draws a rank in `0..items`.
    #[inline]
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.head {
            return 1;
        }
        let r = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        r.min(self.items - 1)
    }

    /// The analytic probability of rank `i` under Zipf's law.
    pub fn probability(&self, i: u64) -> f64 {
        ((i + 1) as f64).powf(-self.theta) / self.zetan
    }

    /// The exact probability that [`Zipfian::next`] returns rank `i`: Gray's method gives ranks
    /// 0 and 1 their Zipf probabilities and maps the rest of the unit interval through a smooth
    /// curve, so rank `i >= 2` gets the length of the `u` interval whose image floors to `i`.
    /// (For theta 0.99 this is within 20% of Zipf's law at rank 2 and converges with rank.)
    pub fn generator_probability(&self, i: u64) -> f64 {
        let n = self.items as f64;
        let head = 1.0 + 0.5f64.powf(self.theta);
        let discrete = match i {
            0 => 1.0 / self.zetan,
            1 => (head - 1.0) / self.zetan,
            _ => 0.0,
        };
        // u such that n * (eta*u - eta + 1)^alpha = x, i.e. the curve's inverse.
        let inverse = |x: f64| 1.0 + ((x / n).powf(1.0 - self.theta) - 1.0) / self.eta;
        let lo = inverse(i as f64).max(head / self.zetan);
        let hi = inverse((i + 1) as f64).min(1.0);
        discrete + (hi - lo).max(0.0)
    }
}

/// YCSB's ScrambledZipfian over `0..records`: zipfian ranks over 10^10 items, hashed into the
/// record range.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    inner: Zipfian,
    records: u64,
}

impl ScrambledZipfian {
    /// Over `records` (>= 1) records with skew `theta`.
    pub fn new(records: u64, theta: f64) -> Self {
        Self {
            inner: Zipfian::new(SCRAMBLED_ITEM_COUNT, theta),
            records: records.max(1),
        }
    }

    /// Draws a record index in `0..records`.
    #[inline]
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        fnv_hash64(self.inner.next(rng)) % self.records
    }

    /// Where rank `rank` of the underlying law lands.
    pub fn item_of_rank(&self, rank: u64) -> u64 {
        fnv_hash64(rank) % self.records
    }

    /// The underlying law (over 10^10 items).
    pub fn law(&self) -> &Zipfian {
        &self.inner
    }
}

/// YCSB's SkewedLatest: the newest record is the most popular, the one before it next, and so
/// on, following the zipfian law over the current record count.
#[derive(Debug, Clone)]
pub struct Latest {
    inner: Zipfian,
}

impl Latest {
    /// Over an initial `records` (>= 1) records.
    pub fn new(records: u64, theta: f64) -> Self {
        Self {
            inner: Zipfian::new(records, theta),
        }
    }

    /// Draws a record index in `0..count`, where `count` is the current record count (records
    /// inserted since are included; it only grows).
    #[inline]
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R, count: u64) -> u64 {
        self.inner.grow_to(count);
        let newest = self.inner.items() - 1;
        newest - self.inner.next(rng)
    }

    /// The law over the current count: `probability(k)` is that of the k-th newest record.
    pub fn law(&self) -> &Zipfian {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::SmallRng};

    #[test]
    fn zeta_matches_ycsb_constant() {
        // YCSB's ScrambledZipfianGenerator.ZETAN for 10^10 items, theta 0.99.
        let z = zeta(SCRAMBLED_ITEM_COUNT, 0.99);
        assert!((z - 26.469_028_201_783_02).abs() < 1e-6, "zeta = {z}");
        // The expansion agrees with exact summation where both are cheap.
        let exact: f64 = (1..=300_000u64).map(|k| (k as f64).powf(-0.99)).sum();
        assert!((zeta(300_000, 0.99) - exact).abs() < 1e-9);
    }

    #[test]
    fn fnv_is_fnv1a_over_little_endian_bytes() {
        // YCSB hashes the long's 8 bytes, lowest first, with FNV-1a, then takes Math.abs.
        for v in [0u64, 1, 42, 1 << 40, u64::MAX] {
            let reference = kvstore_proto::ring::fnv1a64(&v.to_le_bytes()) as i64;
            assert_eq!(fnv_hash64(v), reference.wrapping_abs() as u64);
        }
    }

    #[test]
    fn incremental_zeta_equals_fresh() {
        let mut z = Zipfian::new(1000, 0.99);
        z.grow_to(5000);
        let fresh = Zipfian::new(5000, 0.99);
        assert!((z.zetan() - fresh.zetan()).abs() < 1e-9);
        let mut rng = SmallRng::seed_from_u64(1);
        assert!((0..10_000).all(|_| z.next(&mut rng) < 5000));
    }
}
