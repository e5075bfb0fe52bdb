//! Quorum counting for writes and reads, and the last-write-wins choice among replica
//! answers: pure code, fed one replica answer at a time.
//!
//! A write is acknowledged once the write quorum of the current preference list *and* of the
//! pending one (they differ only while ranges move) have acknowledged; it has definitely not
//! reached its quorum once too few replicas remain outstanding. A read succeeds once R replicas
//! answered (an answer of "nothing stored" counts), and the newest version among the answers
//! wins; every replica that answered older or nothing is a read-repair target.
//!
//! No timers here: the caller decides when the deadline has passed.

use std::collections::BTreeSet;

use crate::cluster::placement::WriteSet;
use crate::storage::Entry;

/// Where a quorum stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More answers needed and still possible.
    Waiting,
    /// The quorum is met.
    Succeeded,
    /// The quorum can no longer be met: too many replicas failed.
    Failed,
}

/// Replicas needed out of a list of `len`: the level's count, capped by the list (a ring with
/// fewer members than N has shorter preference lists).
pub fn needed(required: usize, len: usize) -> usize {
    required.min(len).max(1)
}

/// Checks, before sending anything, that enough replicas are live for `required` answers from
/// each list. On failure returns `(needed, live)` of the list that falls short.
pub fn check_live(
    ws: &WriteSet,
    required: usize,
    is_live: impl Fn(u32) -> bool,
) -> Result<(), (usize, usize)> {
    for list in [&ws.current, &ws.pending] {
        let need = needed(required, list.len());
        let live = list.iter().filter(|&&n| is_live(n)).count();
        if live < need {
            return Err((need, live));
        }
    }
    Ok(())
}

/// Counts acknowledgements of one write.
#[derive(Debug, Clone)]
pub struct WriteQuorum {
    current: Vec<u32>,
    pending: Vec<u32>,
    need_current: usize,
    need_pending: usize,
    acked: BTreeSet<u32>,
    failed: BTreeSet<u32>,
}

impl WriteQuorum {
    /// A quorum of `required` acknowledgements from each list of `ws`.
    pub fn new(ws: &WriteSet, required: usize) -> Self {
        Self {
            need_current: needed(required, ws.current.len()),
            need_pending: needed(required, ws.pending.len()),
            current: ws.current.clone(),
            pending: ws.pending.clone(),
            acked: BTreeSet::new(),
            failed: BTreeSet::new(),
        }
    }

    /// Records one replica's answer (later answers from the same replica are ignored).
    pub fn record(&mut self, node: u32, ok: bool) -> Progress {
        if !self.acked.contains(&node) && !self.failed.contains(&node) {
            if ok {
                self.acked.insert(node);
            } else {
                self.failed.insert(node);
            }
        }
        self.progress()
    }

    /// Where the quorum stands.
    pub fn progress(&self) -> Progress {
        let mut all_met = true;
        for (list, need) in [
            (&self.current, self.need_current),
            (&self.pending, self.need_pending),
        ] {
            let acked = list.iter().filter(|n| self.acked.contains(n)).count();
            let failed = list.iter().filter(|n| self.failed.contains(n)).count();
            if list.len() - failed < need {
                return Progress::Failed;
            }
            all_met &= acked >= need;
        }
        if all_met {
            Progress::Succeeded
        } else {
            Progress::Waiting
        }
    }

    /// The acknowledgements needed (of the stricter list).
    pub fn needed(&self) -> usize {
        self.need_current.max(self.need_pending)
    }

    /// Replicas that acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.len()
    }
}

/// Collects replica answers to one read.
#[derive(Debug, Clone)]
pub struct ReadQuorum {
    need: usize,
    asked: usize,
    answers: Vec<(u32, Option<Entry>)>,
    failed: usize,
}

impl ReadQuorum {
    /// A read of `asked` replicas that succeeds after `required` answers.
    pub fn new(required: usize, asked: usize) -> Self {
        Self {
            need: needed(required, asked),
            asked,
            answers: Vec::with_capacity(asked),
            failed: 0,
        }
    }

    /// Records a replica's answer: `Ok(entry or nothing)` or a failure.
    pub fn record(&mut self, node: u32, answer: Result<Option<Entry>, ()>) -> Progress {
        match answer {
            Ok(entry) => self.answers.push((node, entry)),
            Err(()) => self.failed += 1,
        }
        self.progress()
    }

    /// Where the read stands.
    pub fn progress(&self) -> Progress {
        if self.answers.len() >= self.need {
            Progress::Succeeded
        } else if self.asked - self.failed < self.need {
            Progress::Failed
        } else {
            Progress::Waiting
        }
    }

    /// Answers needed.
    pub fn needed(&self) -> usize {
        self.need
    }

    /// Answers received.
    pub fn answered(&self) -> usize {
        self.answers.len()
    }

    /// The newest entry among the answers (last-write-wins), if any replica stores one.
    pub fn newest(&self) -> Option<&Entry> {
        newest(self.answers.iter().filter_map(|(_, e)| e.as_ref()))
    }

    /// Replicas that answered with an older version than `newest`, or with nothing.
    pub fn stale_replicas(&self) -> Vec<u32> {
        let Some(best) = self.newest() else {
            return Vec::new();
        };
        self.answers
            .iter()
            .filter(|(_, e)| e.as_ref().is_none_or(|e| e.version < best.version))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// The entry with the greatest version.
pub fn newest<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Option<&'a Entry> {
    entries.into_iter().max_by_key(|e| e.version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvstore_proto::Version;

    fn ws(current: &[u32], pending: &[u32]) -> WriteSet {
        WriteSet {
            current: current.to_vec(),
            pending: pending.to_vec(),
        }
    }

    #[test]
    fn write_quorum_table() {
        use Progress::*;
        // (current, pending, required, answers in order, progress after each)
        type Case<'a> = (
            &'a [u32],
            &'a [u32],
            usize,
            &'a [(u32, bool)],
            &'a [Progress],
        );
        let cases: &[Case] = &[
            // N=3 W=2: two acks succeed
            (
                &[1, 2, 3],
                &[1, 2, 3],
                2,
                &[(1, true), (2, true)],
                &[Waiting, Succeeded],
            ),
            // one failure still leaves a way
            (
                &[1, 2, 3],
                &[1, 2, 3],
                2,
                &[(1, false), (2, true), (3, true)],
                &[Waiting, Waiting, Succeeded],
            ),
            // two failures: W=2 impossible
            (
                &[1, 2, 3],
                &[1, 2, 3],
                2,
                &[(1, true), (2, false), (3, false)],
                &[Waiting, Waiting, Failed],
            ),
            // ALL: one failure is fatal
            (
                &[1, 2, 3],
                &[1, 2, 3],
                3,
                &[(1, true), (3, false)],
                &[Waiting, Failed],
            ),
            // ONE
            (&[1, 2, 3], &[1, 2, 3], 1, &[(2, true)], &[Succeeded]),
            // joining node 4 replaces 3: needs 2 of [1,2,3] and 2 of [1,2,4]
            (
                &[1, 2, 3],
                &[1, 2, 4],
                2,
                &[(3, true), (4, true), (1, true)],
                &[Waiting, Waiting, Succeeded],
            ),
            // acks only from the old owners do not do
            (
                &[1, 2, 3],
                &[1, 2, 4],
                2,
                &[(3, true), (2, false), (1, true), (4, false)],
                &[Waiting, Waiting, Waiting, Failed],
            ),
            // duplicate answers count once
            (
                &[1, 2, 3],
                &[1, 2, 3],
                2,
                &[(1, true), (1, true)],
                &[Waiting, Waiting],
            ),
            // a ring smaller than N caps the quorum
            (&[1], &[1], 2, &[(1, true)], &[Succeeded]),
        ];
        for (current, pending, required, answers, want) in cases {
            let mut q = WriteQuorum::new(&ws(current, pending), *required);
            for ((node, ok), want) in answers.iter().zip(want.iter()) {
                assert_eq!(
                    q.record(*node, *ok),
                    *want,
                    "{current:?}/{pending:?} W={required} after {node}={ok}"
                );
            }
        }
    }

    #[test]
    fn live_check_names_the_shortfall() {
        let w = ws(&[1, 2, 3], &[1, 2, 3]);
        assert_eq!(check_live(&w, 2, |n| n != 3), Ok(()));
        assert_eq!(check_live(&w, 3, |n| n != 3), Err((3, 2)));
        assert_eq!(check_live(&w, 2, |n| n == 1), Err((2, 1)));
        let moving = ws(&[1, 2, 3], &[1, 2, 4]);
        assert_eq!(check_live(&moving, 2, |n| n != 4 && n != 2), Err((2, 1)));
    }

    #[test]
    fn read_picks_newest_and_lists_stale_replicas() {
        let old = Entry::value("old", Version::new(10, 1));
        let new = Entry::tombstone(Version::new(20, 2));
        let mut q = ReadQuorum::new(2, 3);
        assert_eq!(q.record(1, Ok(Some(old.clone()))), Progress::Waiting);
        assert_eq!(q.record(2, Ok(Some(new.clone()))), Progress::Succeeded);
        q.record(3, Ok(None));
        assert_eq!(q.newest(), Some(&new));
        assert_eq!(q.stale_replicas(), vec![1, 3]);

        let mut none = ReadQuorum::new(2, 3);
        none.record(1, Ok(None));
        none.record(2, Err(()));
        assert_eq!(none.record(3, Err(())), Progress::Failed);
        assert_eq!(none.newest(), None);
        assert!(none.stale_replicas().is_empty());
    }
}
