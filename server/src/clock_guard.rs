//! Clock safety: whether this node's wall clock may stamp writes.
//!
//! Last-write-wins is only as good as the clocks that stamp the versions. A node whose wall
//! clock runs an hour ahead stamps versions that beat every write of the next hour, so an
//! acknowledged write made through a healthy node meanwhile is hidden. Replicas already refuse
//! versions further ahead of *their* clock than the max offset; this module keeps the
//! coordinator from stamping such a version in the first place (and so from keeping a local
//! copy of it), as CockroachDB does:
//!
//! - Each heartbeat answer carries the peer's wall clock. With the local wall clock read at
//!   send and receipt and the round trip from the monotonic clock, [`ClockGuard::record`]
//!   keeps one [`Sample`] per peer: the offset (peer minus us) and its uncertainty (half the
//!   round trip).
//! - A sample stays evidence after it was taken: the local wall clock's movement since then is
//!   compared with the monotonic clock's, so a jump of our own clock (an operator's `date -s`,
//!   a faulty NTP step) shifts every sample at once, with no new round trip needed.
//! - [`judge`] (pure) decides: healthy when this node and the peers within 80% of the max
//!   offset of it make a majority of the cluster; unhealthy when they do not and some peer is
//!   measured further than that; unverified when there is not yet enough evidence either way
//!   (only at start, before the first heartbeats). A clock floor (the highest timestamp this
//!   node ever issued or merged, recovered at restart) more than the max offset ahead of the
//!   wall clock is unhealthy too, whatever the peers say: every write it stamped would be
//!   refused by its replicas.
//! - The coordinator calls [`ClockGuard::verdict`] before stamping: anything but healthy refuses
//!   the write as a definite failure (nothing was sent anywhere), and the client goes to
//!   another node. The verdict is recomputed on every probe round and, on the request path,
//!   whenever the local wall clock moved against the monotonic clock by more than a fifth of
//!   the max offset since the last verdict (a jump is caught at the next write, not a second
//!   later).
//!
//! Not done here: correcting the clock (that is NTP's job), or judging which of two disagreeing
//! nodes is right when there is no majority (then both stop coordinating writes: safe, not
//! available).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::hlc::physical_ms;

/// The share of the max offset beyond which a node stops coordinating writes: the margin
/// leaves room for the measurement's error before replicas would refuse its versions.
pub const UNHEALTHY_FRACTION: f64 = 0.8;

/// How far our wall clock may move unlike the monotonic clock during one heartbeat before the
/// sample is thrown away (reading the two clocks is not one instant).
pub const JUMP_TOLERANCE_MS: u64 = 10;

/// One measurement of a peer's clock against ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Peer's wall clock minus ours, ms (at the time of the measurement).
    pub offset_ms: i64,
    /// Half the round trip: the offset is known within +/- this.
    pub uncertainty_ms: u64,
    /// Our wall clock when the measurement was taken.
    pub taken_wall_ms: u64,
    /// Our monotonic clock when the measurement was taken.
    pub taken_mono_ms: u64,
}

impl Sample {
    /// A sample from a heartbeat: our wall clock at send and at receipt, the peer's wall clock
    /// in its answer, and our monotonic clock at send and receipt. `None` when our own wall
    /// clock jumped during the round trip (it moved more than [`JUMP_TOLERANCE_MS`] unlike the
    /// monotonic clock): the offset would then be measured against one reading of our clock
    /// and anchored to another, and a node whose clock strobes would judge itself healthy while
    /// ahead.
    pub fn from_round_trip(
        sent_wall_ms: u64,
        received_wall_ms: u64,
        peer_wall_ms: u64,
        sent_mono_ms: u64,
        received_mono_ms: u64,
    ) -> Option<Self> {
        let rtt = received_mono_ms.saturating_sub(sent_mono_ms);
        let wall_elapsed = received_wall_ms as i64 - sent_wall_ms as i64;
        if (wall_elapsed - rtt as i64).unsigned_abs() > JUMP_TOLERANCE_MS {
            return None;
        }
        // The peer read its clock somewhere within the round trip: assume the middle, and
        // anchor the sample there on both of our clocks (the same reading the offset uses).
        let midpoint = sent_wall_ms as i64 + rtt as i64 / 2;
        Some(Self {
            offset_ms: peer_wall_ms as i64 - midpoint,
            uncertainty_ms: rtt.div_ceil(2),
            taken_wall_ms: midpoint.max(0) as u64,
            taken_mono_ms: sent_mono_ms + rtt / 2,
        })
    }

    /// The offset now, corrected for how our own wall clock moved since the sample against
    /// the monotonic clock (a forward jump of ours makes every peer look further behind).
    pub fn offset_now(&self, now_wall_ms: u64, now_mono_ms: u64) -> i64 {
        let wall = now_wall_ms as i64 - self.taken_wall_ms as i64;
        let mono = now_mono_ms as i64 - self.taken_mono_ms as i64;
        self.offset_ms - (wall - mono)
    }
}

/// Whether the clock may stamp writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockState {
    /// Within the bound of a majority of the cluster.
    Healthy,
    /// Not yet measured against enough peers to tell.
    Unverified,
    /// Too far from a majority, or its floor is too far ahead of its wall clock.
    Unhealthy,
}

impl ClockState {
    /// Lower-case name for status and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unverified => "unverified",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// A judgement with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The state.
    pub state: ClockState,
    /// Why, in words a user can act on (empty when healthy).
    pub reason: String,
}

/// What [`judge`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Our wall clock, ms since the Unix epoch.
    pub wall_ms: u64,
    /// Our monotonic clock, ms.
    pub mono_ms: u64,
    /// The highest timestamp this node issued or merged (its HLC floor).
    pub hlc_last: u64,
}

/// Judges the clock: `peers` are the other members of the cluster that have not left, with
/// their latest sample if any; `max_offset_ms` is the configured bound.
pub fn judge(peers: &[(u32, Option<Sample>)], now: Now, max_offset_ms: u64) -> Verdict {
    let floor_ms = physical_ms(now.hlc_last);
    if floor_ms > now.wall_ms + max_offset_ms {
        let ahead = floor_ms - now.wall_ms;
        return Verdict {
            state: ClockState::Unhealthy,
            reason: format!(
                "this node's clock floor is {ahead} ms ahead of its wall clock (it issued or \
                 merged timestamp {} before, e.g. before a restart with a clock that ran ahead); \
                 it coordinates writes again once its wall clock catches up, in about {} ms",
                now.hlc_last,
                ahead - max_offset_ms
            ),
        };
    }
    let cluster = peers.len() + 1;
    let majority = cluster / 2 + 1;
    if cluster == 1 {
        return healthy();
    }
    let limit = (max_offset_ms as f64 * UNHEALTHY_FRACTION) as i64;
    let mut ok = 1; // this node agrees with itself
    let mut far: Vec<(u32, i64)> = Vec::new();
    for (id, sample) in peers {
        let Some(s) = sample else { continue };
        let offset = s.offset_now(now.wall_ms, now.mono_ms);
        if offset.abs() <= limit {
            ok += 1;
        } else if offset.abs() - s.uncertainty_ms as i64 > limit {
            far.push((*id, offset));
        }
    }
    if ok >= majority {
        return healthy();
    }
    if far.is_empty() {
        return Verdict {
            state: ClockState::Unverified,
            reason: format!(
                "this node's clock is not yet compared with a majority of the cluster \
                 ({ok} of {cluster} nodes, {majority} needed); it coordinates writes once \
                 heartbeats have measured it"
            ),
        };
    }
    let listed: Vec<String> = far
        .iter()
        .map(|(id, off)| format!("node {id} {:+} ms", off))
        .collect();
    Verdict {
        state: ClockState::Unhealthy,
        reason: format!(
            "this node's wall clock is more than {limit} ms (80% of the max clock offset \
             {max_offset_ms} ms) from a majority of the cluster (peer minus this node: {}); \
             it coordinates no writes until its clock is corrected",
            listed.join(", ")
        ),
    }
}

fn healthy() -> Verdict {
    Verdict {
        state: ClockState::Healthy,
        reason: String::new(),
    }
}

/// The node's clock guard: samples, the current verdict, and refusal counts.
#[derive(Debug)]
pub struct ClockGuard {
    max_offset_ms: u64,
    samples: Mutex<HashMap<u32, Sample>>,
    verdict: Mutex<Verdict>,
    /// `wall - mono` when the verdict was last computed: a jump of the wall clock since shows
    /// as a change of this difference.
    baseline: AtomicI64,
    refusals: AtomicU64,
}

impl ClockGuard {
    /// A guard for a node with max clock offset `max_offset_ms`, unverified until judged.
    pub fn new(max_offset_ms: u64) -> Self {
        Self {
            max_offset_ms,
            samples: Mutex::new(HashMap::new()),
            verdict: Mutex::new(Verdict {
                state: ClockState::Unverified,
                reason: "this node's clock has not been judged yet".into(),
            }),
            baseline: AtomicI64::new(i64::MIN),
            refusals: AtomicU64::new(0),
        }
    }

    /// The configured max offset.
    pub fn max_offset_ms(&self) -> u64 {
        self.max_offset_ms
    }

    /// Keeps `sample` as the latest measurement of `peer`.
    pub fn record(&self, peer: u32, sample: Sample) {
        self.lock_samples().insert(peer, sample);
    }

    /// Forgets measurements of nodes that are no longer members.
    pub fn retain(&self, members: impl Fn(u32) -> bool) {
        self.lock_samples().retain(|id, _| members(*id));
    }

    /// The latest sample of each peer.
    pub fn samples(&self) -> Vec<(u32, Sample)> {
        let mut v: Vec<(u32, Sample)> = self.lock_samples().iter().map(|(k, s)| (*k, *s)).collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Recomputes the verdict for a cluster whose other (not left) members are `peers`.
    /// Returns the new verdict and whether its state changed.
    pub fn evaluate(&self, peers: &[u32], now: Now) -> (Verdict, bool) {
        let with_samples: Vec<(u32, Option<Sample>)> = {
            let samples = self.lock_samples();
            peers
                .iter()
                .map(|id| (*id, samples.get(id).copied()))
                .collect()
        };
        let v = judge(&with_samples, now, self.max_offset_ms);
        self.baseline
            .store(now.wall_ms as i64 - now.mono_ms as i64, Ordering::Relaxed);
        let mut cur = self.verdict.lock().unwrap_or_else(|p| p.into_inner());
        let changed = cur.state != v.state;
        *cur = v.clone();
        (v, changed)
    }

    /// Whether the wall clock moved against the monotonic clock by more than a fifth of the
    /// max offset since the last verdict (then the verdict must be recomputed before use).
    pub fn jumped(&self, now_wall_ms: u64, now_mono_ms: u64) -> bool {
        let base = self.baseline.load(Ordering::Relaxed);
        if base == i64::MIN {
            return true;
        }
        let diff = now_wall_ms as i64 - now_mono_ms as i64;
        (diff - base).unsigned_abs() > self.max_offset_ms / 5
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts a write refused because of the clock.
    pub fn count_refusal(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes refused because of the clock so far.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    fn lock_samples(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Sample>> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::pack;

    const MAX: u64 = 500;
    const T0: u64 = 1_700_000_000_000;

    fn sample(offset_ms: i64) -> Option<Sample> {
        Some(Sample {
            offset_ms,
            uncertainty_ms: 1,
            taken_wall_ms: T0,
            taken_mono_ms: 1_000,
        })
    }

    fn now() -> Now {
        Now {
            wall_ms: T0,
            mono_ms: 1_000,
            hlc_last: pack(T0, 0),
        }
    }

    #[test]
    fn verdict_table() {
        use ClockState::*;
        let h = 3_600_000;
        // (peers with their offsets (peer minus us), expected state)
        type Peers = Vec<(u32, Option<Sample>)>;
        let cases: Vec<(Peers, ClockState)> = vec![
            // alone: nobody to disagree with
            (vec![], Healthy),
            // 3 nodes, both peers agree
            (vec![(2, sample(3)), (3, sample(-10))], Healthy),
            // one peer far, the other agrees: we are in the majority
            (vec![(2, sample(h)), (3, sample(5))], Healthy),
            // we are an hour ahead: both peers an hour behind us
            (vec![(2, sample(-h)), (3, sample(-h))], Unhealthy),
            // nothing measured yet
            (vec![(2, None), (3, None)], Unverified),
            // one agrees, one unmeasured: 2 of 3 is a majority
            (vec![(2, sample(1)), (3, None)], Healthy),
            // one far, one unmeasured: cannot tell who is wrong, so do not stamp
            (vec![(2, sample(-h)), (3, None)], Unhealthy),
            // at 80% of the max offset exactly: still fine
            (vec![(2, sample(400)), (3, sample(400))], Healthy),
            // beyond 80% of the max offset: unhealthy before replicas would refuse
            (vec![(2, sample(450)), (3, sample(-450))], Unhealthy),
            // 5 nodes, 2 peers far, 2 agree: 3 of 5
            (
                vec![
                    (2, sample(h)),
                    (3, sample(h)),
                    (4, sample(0)),
                    (5, sample(0)),
                ],
                Healthy,
            ),
        ];
        for (peers, want) in cases {
            let v = judge(&peers, now(), MAX);
            assert_eq!(v.state, want, "{peers:?}: {}", v.reason);
        }
    }

    #[test]
    fn a_jump_of_our_own_clock_shifts_every_sample() {
        let peers = vec![(2, sample(0)), (3, sample(2))];
        assert_eq!(judge(&peers, now(), MAX).state, ClockState::Healthy);
        // Our wall clock jumps an hour ahead while the monotonic clock moves 10 ms.
        let later = Now {
            wall_ms: T0 + 3_600_000,
            mono_ms: 1_010,
            hlc_last: pack(T0, 0),
        };
        let v = judge(&peers, later, MAX);
        assert_eq!(v.state, ClockState::Unhealthy, "{}", v.reason);
        assert!(v.reason.contains("node 2 -3599990 ms"), "{}", v.reason);
    }

    #[test]
    fn a_floor_ahead_of_the_wall_clock_is_unhealthy_and_says_why() {
        let ahead = Now {
            hlc_last: pack(T0 + 3_600_000, 7),
            ..now()
        };
        let v = judge(&[(2, sample(0)), (3, sample(0))], ahead, MAX);
        assert_eq!(v.state, ClockState::Unhealthy);
        assert!(v.reason.contains("3600000 ms ahead"), "{}", v.reason);
        // Within the max offset (merged from a peer slightly ahead): fine.
        let slightly = Now {
            hlc_last: pack(T0 + 400, 0),
            ..now()
        };
        assert_eq!(
            judge(&[(2, sample(0))], slightly, MAX).state,
            ClockState::Healthy
        );
    }

    #[test]
    fn round_trip_sample_takes_the_midpoint() {
        // Sent at wall 1000 (mono 50), received at wall 1100 (mono 150); the peer said 5050.
        let s = Sample::from_round_trip(1_000, 1_100, 5_050, 50, 150).unwrap();
        assert_eq!(s.offset_ms, 4_000);
        assert_eq!(s.uncertainty_ms, 50);
        assert_eq!((s.taken_wall_ms, s.taken_mono_ms), (1_050, 100));
    }

    #[test]
    fn a_sample_across_a_jump_of_our_clock_is_thrown_away() {
        // Our clock jumped 2 s ahead between send and receipt (a strobing clock): the peer's
        // 1050 was measured against the send-time reading, so anchoring the sample to the
        // receipt-time reading would make this node look in step with the peer while 2 s
        // ahead. Such a sample is dropped.
        assert_eq!(Sample::from_round_trip(1_000, 3_100, 1_050, 50, 150), None);
        assert_eq!(Sample::from_round_trip(3_000, 1_100, 1_050, 50, 150), None);
        // Within the tolerance it is kept.
        assert!(Sample::from_round_trip(1_000, 1_105, 1_050, 50, 150).is_some());
    }

    #[test]
    fn a_node_that_jumps_ahead_after_a_sample_is_unhealthy_at_once() {
        // Sample at true time (peer in step), then our wall clock jumps +2 s: the sample,
        // corrected by our own jump, shows the peer 2 s behind.
        let s = Sample::from_round_trip(T0, T0 + 10, T0 + 5, 1_000, 1_010).unwrap();
        let later = Now {
            wall_ms: T0 + 2_020,
            mono_ms: 1_020,
            hlc_last: 0,
        };
        let v = judge(&[(2, Some(s)), (3, Some(s))], later, MAX);
        assert_eq!(v.state, ClockState::Unhealthy, "{}", v.reason);
    }

    #[test]
    fn guard_notices_a_jump_since_its_verdict() {
        let g = ClockGuard::new(MAX);
        assert!(g.jumped(T0, 1_000), "never judged");
        g.evaluate(&[], now());
        assert!(!g.jumped(T0 + 50, 1_050));
        assert!(g.jumped(T0 + 5_000, 1_050));
    }
}
