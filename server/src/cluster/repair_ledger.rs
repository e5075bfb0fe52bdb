//! The repair ledger: for each token arc, when the last repair that covered it started. It is
//! what makes collecting a tombstone safe (issue: tombstones tied to repair).
//!
//! A repair of an arc that started at time S and completed brought every replica of the arc up
//! to date with every write made before S, deletes included. So a tombstone written at T < S
//! (by its version's physical time, plus the max clock offset for a writer whose clock ran
//! ahead) is on every replica of its key and may be collected once past the grace period; a
//! tombstone on an arc never repaired since it was written is never collected (ScyllaDB's
//! `tombstone_gc = repair`). Expired values follow the same rule from their expiry time.
//!
//! Arcs are token ranges, independent of who owns them: a ring change does not invalidate a
//! record (the data of the arc was converged at S whoever holds it now). Anti-entropy records
//! an arc when a repair of it completes ([`RepairLedger::record`]); compaction asks through
//! [`RepairedSince`], the engine's [`CollectPolicy`]. Kept in `<data-dir>/repairs` (one arc per
//! line: `start end started_ms`), written atomically, so a restart does not forget a repair and
//! collect nothing for a day, nor remember one that never finished.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use kvstore_proto::ring::{Arc as TokenArc, Token, key_hash};

use crate::storage::CollectPolicy;

/// Arcs recorded at most (a ring has vnodes x nodes arcs; repairs of other rings' arcs
/// accumulate after ring changes): beyond it the oldest records go first, which can only make
/// collection wait for the next repair.
pub const MAX_ARCS: usize = 16_384;

/// When the last repair covering each arc started.
#[derive(Debug)]
pub struct RepairLedger {
    arcs: Mutex<BTreeMap<(Token, Token), u64>>,
    path: Option<PathBuf>,
}

impl RepairLedger {
    /// An empty ledger kept in memory only (a node without a data directory).
    pub fn in_memory() -> Self {
        Self {
            arcs: Mutex::new(BTreeMap::new()),
            path: None,
        }
    }

    /// The ledger saved at `path` (empty when there is none yet).
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let mut arcs = BTreeMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let parsed = match f.as_slice() {
                        [s, e, t] => s
                            .parse::<Token>()
                            .ok()
                            .zip(e.parse::<Token>().ok())
                            .zip(t.parse::<u64>().ok()),
                        _ => None,
                    };
                    let ((start, end), started) = parsed.ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "{} line {}: {line:?} is not `start end started_ms`",
                                path.display(),
                                n + 1
                            ),
                        )
                    })?;
                    arcs.insert((start, end), started);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            arcs: Mutex::new(arcs),
            path: Some(path),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Token, Token), u64>> {
        self.arcs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a repair of `arcs`, started at `started_ms`, completed; saves the ledger.
    pub fn record(&self, arcs: &[TokenArc], started_ms: u64) -> std::io::Result<()> {
        let text = {
            let mut map = self.lock();
            for a in arcs {
                let e = map.entry((a.start, a.end)).or_insert(0);
                *e = (*e).max(started_ms);
            }
            while map.len() > MAX_ARCS {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| *k)
                    .expect("not empty");
                map.remove(&oldest);
            }
            map.iter()
                .map(|((s, e), t)| format!("{s} {e} {t}\n"))
                .collect::<String>()
        };
        let Some(path) = &self.path else {
            return Ok(());
        };
        super::persist::write_atomic(path, text.as_bytes())
    }

    /// Whether a repair covering `token` started after `since_ms`.
    pub fn repaired_since(&self, token: Token, since_ms: u64) -> bool {
        self.lock().iter().any(|(&(start, end), &started)| {
            started > since_ms && TokenArc { start, end }.contains(token)
        })
    }

    /// The start of the last repair of each recorded arc (operator views).
    pub fn arcs(&self) -> Vec<(TokenArc, u64)> {
        self.lock()
            .iter()
            .map(|(&(start, end), &t)| (TokenArc { start, end }, t))
            .collect()
    }
}

/// The data engine's [`CollectPolicy`]: a tombstone or expired value goes only when a repair
/// of its key's arc started after it, by more than `margin_ms` (the max clock offset: the
/// writer's clock may have run that far ahead of the repairing node's).
#[derive(Debug)]
pub struct RepairedSince<'a> {
    /// The ledger to ask.
    pub ledger: &'a RepairLedger,
    /// Added to the entry's time before comparing.
    pub margin_ms: u64,
}

impl CollectPolicy for RepairedSince<'_> {
    fn may_collect(&self, key: &str, since_ms: u64) -> bool {
        self.ledger.repaired_since(
            key_hash(key.as_bytes()),
            since_ms.saturating_add(self.margin_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key whose token is `token`'s arc in a test: any key works with a whole-ring arc.
    const WHOLE: TokenArc = TokenArc { start: 0, end: 0 };

    #[test]
    fn a_tombstone_goes_only_after_a_repair_that_started_after_it() {
        let ledger = RepairLedger::in_memory();
        let policy = RepairedSince {
            ledger: &ledger,
            margin_ms: 500,
        };
        assert!(
            !policy.may_collect("k", 1_000),
            "never repaired: never collected"
        );
        ledger.record(&[WHOLE], 1_400).unwrap();
        assert!(
            !policy.may_collect("k", 1_000),
            "within the clock margin of the repair"
        );
        ledger.record(&[WHOLE], 2_000).unwrap();
        assert!(policy.may_collect("k", 1_000));
        assert!(
            !policy.may_collect("k", 1_600),
            "written after the repair started"
        );
    }

    #[test]
    fn only_the_arc_of_the_key_counts() {
        let ledger = RepairLedger::in_memory();
        let t = key_hash(b"k");
        let elsewhere = TokenArc {
            start: t.wrapping_add(10),
            end: t.wrapping_add(20),
        };
        ledger.record(&[elsewhere], 9_000).unwrap();
        assert!(!ledger.repaired_since(t, 1_000));
        let around = TokenArc {
            start: t.wrapping_sub(1),
            end: t,
        };
        ledger.record(&[around], 9_000).unwrap();
        assert!(ledger.repaired_since(t, 1_000));
    }

    #[test]
    fn the_ledger_survives_a_restart_and_refuses_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repairs");
        let ledger = RepairLedger::open(path.clone()).unwrap();
        ledger
            .record(&[TokenArc { start: 5, end: 9 }, WHOLE], 1_234)
            .unwrap();
        let again = RepairLedger::open(path.clone()).unwrap();
        assert_eq!(again.arcs().len(), 2);
        assert!(again.repaired_since(7, 1_000));
        std::fs::write(&path, "5 nine 1234\n").unwrap();
        let e = RepairLedger::open(path).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
