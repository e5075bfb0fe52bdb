//! Key choice: which record an operation addresses, by the scenario's distribution.
//!
//! [`KeyChooser`] is per worker (it owns no shared state; a `Latest` chooser keeps its own
//! incrementally updated zeta). The current record count is passed in, so inserts made by any
//! worker widen the key space for `latest`. Uniform, zipfian and hotspot address the records of
//! the load phase, as YCSB's core workload does for its request distribution.

use rand::Rng;

use super::zipfian::{Latest, ScrambledZipfian};
use crate::scenario::{Distribution, WorkloadSpec};

/// YCSB's HotspotIntegerGenerator: `op_fraction` of draws land uniformly in the first
/// `data_fraction` of the records, the rest uniformly in the others.
#[derive(Debug, Clone)]
pub struct Hotspot {
    hot: u64,
    cold: u64,
    op_fraction: f64,
}

impl Hotspot {
    /// Over `records` (>= 1) records.
    pub fn new(records: u64, data_fraction: f64, op_fraction: f64) -> Self {
        let records = records.max(1);
        let hot = ((records as f64 * data_fraction) as u64).clamp(1, records);
        Self {
            hot,
            cold: records - hot,
            op_fraction,
        }
    }

    /// The number of hot records (the first ones).
    pub fn hot_records(&self) -> u64 {
        self.hot
    }

    /// Draws a record index.
    #[inline]
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        if self.cold == 0 || rng.random::<f64>() < self.op_fraction {
            rng.random_range(0..self.hot)
        } else {
            self.hot + rng.random_range(0..self.cold)
        }
    }
}

/// One worker's key chooser.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Uniform over the loaded records.
    Uniform(u64),
    /// Scrambled zipfian over the loaded records.
    Zipfian(ScrambledZipfian),
    /// Newest records hottest, over the current count.
    Latest(Latest),
    /// A hot set and a cold set.
    Hotspot(Hotspot),
}

impl KeyChooser {
    /// The chooser the workload asks for.
    pub fn new(w: &WorkloadSpec) -> Self {
        let n = w.record_count.max(1);
        match w.distribution {
            Distribution::Uniform => Self::Uniform(n),
            Distribution::Zipfian => Self::Zipfian(ScrambledZipfian::new(n, w.zipfian_theta)),
            Distribution::Latest => Self::Latest(Latest::new(n, w.zipfian_theta)),
            Distribution::Hotspot => Self::Hotspot(Hotspot::new(
                n,
                w.hotspot_data_fraction,
                w.hotspot_op_fraction,
            )),
        }
    }

    /// Draws the record index of an existing record; `count` is the current record count.
    #[inline]
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R, count: u64) -> u64 {
        match self {
            Self::Uniform(n) => rng.random_range(0..*n),
            Self::Zipfian(z) => z.next(rng),
            Self::Latest(l) => l.next(rng, count.max(1)),
            Self::Hotspot(h) => h.next(rng),
        }
    }
}
