//! Measurement: per-operation latencies into HdrHistograms, per second and per operation type.
//!
//! Every operation has three instants: its intended start (the open-loop schedule's slot, or
//! the actual start in closed loop), its actual start, and its end. *Latency* is end minus
//! intended start: it includes time spent waiting behind a stalled server, which is the
//! coordinated-omission correction (Tene; YCSB's `-target` intended-time measurement).
//! *Service time* is end minus actual start. Both are kept, in microseconds.
//!
//! Each worker owns a [`Recorder`] (no locks on the hot path); when its current second ends it
//! merges that second into the shared [`Aggregate`], which the status line and the results
//! read. Per-second histograms keep 2 significant digits (1% value resolution, ~20 KB each);
//! the whole-run histograms 3 (0.1%). Operations whose intended start falls in the warm-up are
//! not recorded at all. Failed operations are counted by [`ErrorKind`] and their latencies are
//! left out of the histograms (a fast refusal is not a fast answer).
//!
//! Not here: clocks. Callers pass the instants in, so this is tested without sleeping.

mod aggregate;
mod recorder;

pub use aggregate::{Aggregate, LiveFigures, Measurements};
pub use recorder::Recorder;

use hdrhistogram::Histogram;
pub use kvstore_client::ErrorKind;

/// Largest recordable latency, in microseconds (10 minutes); longer ones are clamped.
pub const HIGHEST_US: u64 = 600_000_000;

/// Significant digits of the per-second histograms.
pub const SECOND_SIGFIG: u8 = 2;

/// Significant digits of the whole-run histograms.
pub const TOTAL_SIGFIG: u8 = 3;

/// Error classes, in report order.
pub const ERROR_KINDS: [ErrorKind; 3] = [
    ErrorKind::Unavailable,
    ErrorKind::UnknownOutcome,
    ErrorKind::Other,
];

/// Index of an error kind in per-kind arrays.
pub fn error_index(kind: ErrorKind) -> usize {
    match kind {
        ErrorKind::Unavailable => 0,
        ErrorKind::UnknownOutcome => 1,
        ErrorKind::Other => 2,
    }
}

/// CSV column name of an error kind.
pub fn error_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::UnknownOutcome => "unknown_outcome",
        ErrorKind::Other => "other",
    }
}

/// `h`'s value at quantile `q`, 0 when it recorded nothing.
pub fn quantile_or_zero(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// `h`'s largest value, 0 when it recorded nothing.
pub fn max_or_zero(h: &Histogram<u64>) -> u64 {
    if h.is_empty() { 0 } else { h.max() }
}

/// A growable histogram of microseconds with `sigfig` significant digits.
pub fn new_histogram(sigfig: u8) -> Histogram<u64> {
    // Auto-resizing: only the range actually seen is allocated. `new` cannot fail for 2 or 3.
    Histogram::new(sigfig).unwrap_or_else(|_| Histogram::new(2).expect("2 sigfig is valid"))
}

/// Counts and latencies of one operation type over one interval.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations by kind, indexed by [`error_index`].
    pub errors: [u64; 3],
    /// Latency from intended start, microseconds (successful operations).
    pub latency: Histogram<u64>,
    /// Service time from actual start, microseconds (successful operations).
    pub service: Histogram<u64>,
}

impl OpStats {
    /// Empty stats with `sigfig` significant digits.
    pub fn new(sigfig: u8) -> Self {
        Self {
            ok: 0,
            errors: [0; 3],
            latency: new_histogram(sigfig),
            service: new_histogram(sigfig),
        }
    }

    /// Records one operation.
    #[inline]
    pub fn record(&mut self, latency_us: u64, service_us: u64, outcome: Result<(), ErrorKind>) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                // Values are clamped into range, so recording cannot fail.
                let _ = self.latency.record(latency_us.clamp(1, HIGHEST_US));
                let _ = self.service.record(service_us.clamp(1, HIGHEST_US));
            }
            Err(kind) => self.errors[error_index(kind)] += 1,
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &OpStats) {
        self.ok += other.ok;
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        // Auto-resizing histograms accept any other histogram's values.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
    }

    /// All failed operations.
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.ok == 0 && self.error_total() == 0
    }
}
