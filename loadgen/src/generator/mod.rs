//! Workload generation: which operation comes next, on which key, with which value.
//!
//! - [`zipfian`]: YCSB's zipfian, scrambled zipfian and skewed-latest generators (Gray et al.);
//! - [`keys`]: the per-worker [`KeyChooser`] (uniform, zipfian, latest, hotspot);
//! - [`values`]: value sizes and zero-copy value contents.
//!
//! [`OpGenerator`] combines them. Each worker owns one, seeded from the scenario's seed and the
//! worker's index, so a run's sequence of operations is a function of the scenario alone. The
//! only shared state is the [`KeySpace`]'s insert counter. Nothing here does I/O or reads a
//! clock: this is the code `loadgen selftest` measures.

pub mod keys;
pub mod values;
pub mod zipfian;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rand::{Rng, SeedableRng, rngs::SmallRng};

pub use keys::KeyChooser;
pub use values::{ValuePool, ValueSizer};

use crate::scenario::WorkloadSpec;

/// Operation types, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// A get.
    Read,
    /// A put on an existing record.
    Update,
    /// A put on a new record.
    Insert,
    /// A delete.
    Delete,
    /// A get then a put of the same key.
    ReadModifyWrite,
}

impl Default for Op {
    fn default() -> Self {
        Self {
            kind: OpKind::Read,
            index: 0,
            key: String::new(),
            value: None,
            ttl_ms: None,
        }
    }
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 5] = [
        Self::Read,
        Self::Update,
        Self::Insert,
        Self::Delete,
        Self::ReadModifyWrite,
    ];

    /// Index into per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lowercase name used in CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Update => "update",
            Self::Insert => "insert",
            Self::Delete => "delete",
            Self::ReadModifyWrite => "read_modify_write",
        }
    }

    /// YCSB's upper-case label.
    pub fn ycsb_label(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Update => "UPDATE",
            Self::Insert => "INSERT",
            Self::Delete => "DELETE",
            Self::ReadModifyWrite => "READ-MODIFY-WRITE",
        }
    }

    /// Parses [`OpKind::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether this kind writes a value.
    pub fn writes_value(self) -> bool {
        matches!(self, Self::Update | Self::Insert | Self::ReadModifyWrite)
    }
}

/// One operation to send.
#[derive(Debug, Clone)]
pub struct Op {
    /// What to do.
    pub kind: OpKind,
    /// The record index (keys are `<prefix><index>`).
    pub index: u64,
    /// The key.
    pub key: String,
    /// The value to write (updates, inserts, read-modify-writes).
    pub value: Option<Bytes>,
    /// TTL for the write, in milliseconds.
    pub ttl_ms: Option<u64>,
}

/// The record count, shared by every worker: the loaded records plus inserts issued so far.
#[derive(Debug)]
pub struct KeySpace {
    count: AtomicU64,
    prefix: String,
}

impl KeySpace {
    /// Starting with `loaded` records.
    pub fn new(loaded: u64, prefix: &str) -> Self {
        Self {
            count: AtomicU64::new(loaded),
            prefix: prefix.to_string(),
        }
    }

    /// The current record count.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Reserves the index of a new record.
    pub fn next_insert(&self) -> u64 {
        self.count.fetch_add(1, Ordering::Relaxed)
    }

    /// The key of record `index`.
    pub fn key(&self, index: u64) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 20);
        self.write_key(index, &mut k);
        k
    }

    /// Writes the key of record `index` into `k`, reusing its allocation.
    pub fn write_key(&self, index: u64, k: &mut String) {
        k.clear();
        k.push_str(&self.prefix);
        k.push_str(itoa(index, &mut [0u8; 20]));
    }
}

/// Formats `n` in decimal into `buf` without allocating.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// The operation mix as cumulative thresholds over [0, 1).
#[derive(Debug, Clone)]
pub struct OpMix {
    thresholds: [(f64, OpKind); 5],
    /// The last kind with a non-zero share: drawn when rounding leaves a sliver above 1.
    last: OpKind,
}

impl OpMix {
    /// From the workload's shares (validated to add up to 1).
    pub fn new(w: &WorkloadSpec) -> Self {
        let shares = [
            (w.read, OpKind::Read),
            (w.update, OpKind::Update),
            (w.insert, OpKind::Insert),
            (w.delete, OpKind::Delete),
            (w.read_modify_write, OpKind::ReadModifyWrite),
        ];
        let mut acc = 0.0;
        let mut thresholds = shares;
        let mut last = OpKind::Read;
        for (i, (share, kind)) in shares.into_iter().enumerate() {
            acc += share;
            thresholds[i] = (acc, kind);
            if share > 0.0 {
                last = kind;
            }
        }
        Self { thresholds, last }
    }

    /// Draws an operation kind.
    #[inline]
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> OpKind {
        let x: f64 = rng.random();
        for (t, k) in self.thresholds {
            if x < t {
                return k;
            }
        }
        self.last
    }

    /// The kinds with a non-zero share.
    pub fn kinds(&self) -> Vec<OpKind> {
        let mut prev = 0.0;
        let mut out = Vec::new();
        for (t, k) in self.thresholds {
            if t > prev {
                out.push(k);
            }
            prev = t;
        }
        out
    }
}

/// One worker's operation generator.
#[derive(Debug)]
pub struct OpGenerator {
    rng: SmallRng,
    mix: OpMix,
    keys: KeyChooser,
    sizes: ValueSizer,
    pool: ValuePool,
    space: Arc<KeySpace>,
    ttl_share: f64,
    ttl_ms: u64,
}

impl OpGenerator {
    /// Worker `worker`'s generator for workload `w`; `pool` and `space` are shared.
    pub fn new(
        w: &WorkloadSpec,
        seed: u64,
        worker: u64,
        pool: ValuePool,
        space: Arc<KeySpace>,
    ) -> Self {
        // Distinct, well-mixed streams per worker.
        let stream = seed ^ kvstore_proto::ring::fmix64(worker.wrapping_add(0x9e37_79b9_7f4a_7c15));
        Self {
            rng: SmallRng::seed_from_u64(stream),
            mix: OpMix::new(w),
            keys: KeyChooser::new(w),
            sizes: ValueSizer::new(&w.value_size),
            pool,
            space,
            ttl_share: w.ttl_share,
            ttl_ms: w.ttl_ms,
        }
    }

    /// Overwrites `op` with the next operation, reusing its key's allocation (the driver's
    /// hot path).
    #[inline]
    pub fn next_op_into(&mut self, op: &mut Op) {
        let kind = self.mix.next(&mut self.rng);
        let index = match kind {
            OpKind::Insert => self.space.next_insert(),
            _ => self.keys.next(&mut self.rng, self.space.count()),
        };
        op.kind = kind;
        op.index = index;
        self.space.write_key(index, &mut op.key);
        if kind.writes_value() {
            let len = self.sizes.next(&mut self.rng);
            op.ttl_ms = (self.ttl_share > 0.0 && self.rng.random::<f64>() < self.ttl_share)
                .then_some(self.ttl_ms);
            op.value = Some(self.pool.value(&mut self.rng, len));
        } else {
            op.value = None;
            op.ttl_ms = None;
        }
    }

    /// The next operation.
    #[inline]
    pub fn next_op(&mut self) -> Op {
        let kind = self.mix.next(&mut self.rng);
        let index = match kind {
            OpKind::Insert => self.space.next_insert(),
            _ => self.keys.next(&mut self.rng, self.space.count()),
        };
        let (value, ttl_ms) = if kind.writes_value() {
            let len = self.sizes.next(&mut self.rng);
            let ttl = (self.ttl_share > 0.0 && self.rng.random::<f64>() < self.ttl_share)
                .then_some(self.ttl_ms);
            (Some(self.pool.value(&mut self.rng, len)), ttl)
        } else {
            (None, None)
        };
        Op {
            kind,
            index,
            key: self.space.key(index),
            value,
            ttl_ms,
        }
    }

    /// A load-phase insert of record `index` (no TTL: the run needs the records).
    pub fn load_op(&mut self, index: u64) -> Op {
        let len = self.sizes.next(&mut self.rng);
        Op {
            kind: OpKind::Insert,
            index,
            key: self.space.key(index),
            value: Some(self.pool.value(&mut self.rng, len)),
            ttl_ms: None,
        }
    }

    /// The generator's random source, for callers that derive more choices from the same seed.
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests;
