//! One worker's recorder: lock-free recording into the current second, merged into the shared
//! aggregate when the second changes and when the recorder is dropped (nothing recorded is lost).

use std::sync::Arc;
use std::time::Instant;

use super::{Aggregate, ErrorKind, OpStats, SECOND_SIGFIG, TOTAL_SIGFIG};
use crate::generator::OpKind;

/// Records one worker's operations.
#[derive(Debug)]
pub struct Recorder {
    agg: Arc<Aggregate>,
    origin: Instant,
    second: u64,
    current: [Option<OpStats>; 5],
    totals: [Option<OpStats>; 5],
    /// Successes and failures not yet added to the aggregate's live counters (batched: one
    /// shared atomic per operation would cost more than the recording itself).
    unpublished: (u64, u64),
}

/// Operations between two updates of the live counters.
const PUBLISH_EVERY: u64 = 64;

impl Recorder {
    /// A recorder feeding `agg`, whose measured time starts at the aggregate's origin.
    pub fn new(agg: Arc<Aggregate>) -> Self {
        Self {
            origin: agg.origin(),
            agg,
            second: 0,
            current: Default::default(),
            totals: Default::default(),
            unpublished: (0, 0),
        }
    }

    /// Records one operation of `kind`: intended start, actual start, end, and outcome.
    /// Operations intended before the origin (warm-up) are ignored; returns whether it counted.
    #[inline]
    pub fn record(
        &mut self,
        kind: OpKind,
        intended: Instant,
        started: Instant,
        done: Instant,
        outcome: Result<(), ErrorKind>,
    ) -> bool {
        if intended < self.origin {
            return false;
        }
        let second = done.saturating_duration_since(self.origin).as_secs();
        if second != self.second {
            self.flush_second();
            self.second = second;
        }
        if outcome.is_ok() {
            self.unpublished.0 += 1;
        } else {
            self.unpublished.1 += 1;
        }
        if self.unpublished.0 + self.unpublished.1 >= PUBLISH_EVERY {
            self.publish();
        }
        let latency = done.saturating_duration_since(intended).as_micros() as u64;
        let service = done.saturating_duration_since(started).as_micros() as u64;
        let i = kind.index();
        self.current[i]
            .get_or_insert_with(|| OpStats::new(SECOND_SIGFIG))
            .record(latency, service, outcome);
        self.totals[i]
            .get_or_insert_with(|| OpStats::new(TOTAL_SIGFIG))
            .record(latency, service, outcome);
        true
    }

    fn publish(&mut self) {
        let (ok, err) = std::mem::take(&mut self.unpublished);
        self.agg.count_live(ok, err);
    }

    fn flush_second(&mut self) {
        self.publish();
        if self.current.iter().any(Option::is_some) {
            let current = std::mem::take(&mut self.current);
            self.agg.merge_second(self.second, current);
        }
    }

    /// Merges everything recorded into the aggregate. Also done on drop.
    pub fn finish(&mut self) {
        self.flush_second();
        if self.totals.iter().any(Option::is_some) {
            let totals = std::mem::take(&mut self.totals);
            self.agg.merge_totals(totals);
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}
