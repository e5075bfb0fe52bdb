//! Group commit: turning appended records into durable ones with as few fdatasyncs as possible.
//!
//! Every append gets a sequence number. A writer that must wait for durability calls
//! [`Commit::wait_durable`]: if no sync is running it becomes the leader, syncs the active
//! segment once for everything appended so far, and wakes all waiters it covered; otherwise it
//! waits for the running sync and, if that did not cover it, leads the next one. So concurrent
//! writers share one fdatasync, and a write is acknowledged only after a sync that covers it.
//!
//! After a failed sync the engine is poisoned: the kernel may have dropped the dirty pages, so
//! every later write is refused instead of pretending (reads go on). This module decides only
//! when to sync; the caller supplies what to sync.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::StorageError;

/// Why the engine refuses writes.
#[derive(Debug, Clone)]
struct Poison {
    path: PathBuf,
    reason: String,
}

#[derive(Debug, Default)]
struct State {
    /// Every record with a sequence number up to this is durable.
    synced: u64,
    /// A sync is running.
    leader: bool,
    poison: Option<Poison>,
}

/// Group-commit coordinator and the poisoned flag.
#[derive(Debug, Default)]
pub struct Commit {
    state: Mutex<State>,
    cv: Condvar,
    poisoned: AtomicBool,
    /// Group-commit syncs led so far.
    syncs: AtomicU64,
}

/// What a sync leader syncs: the target sequence number and an action that makes it durable.
pub type SyncTarget<'a> = Box<dyn FnOnce() -> (u64, Result<(), (PathBuf, std::io::Error)>) + 'a>;

impl Commit {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A commit whose records up to `synced` are already durable (at open).
    pub fn new(synced: u64) -> Self {
        let c = Self::default();
        c.lock().synced = synced;
        c
    }

    /// Refuses writes from now on.
    pub fn poison(&self, path: PathBuf, reason: String) {
        let mut s = self.lock();
        if s.poison.is_none() {
            tracing::error!(path = %path.display(), %reason, "storage poisoned: refusing writes");
            s.poison = Some(Poison { path, reason });
        }
        self.poisoned.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// `Err(Poisoned)` once a sync has failed.
    pub fn check(&self) -> Result<(), StorageError> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match &self.lock().poison {
            Some(p) => Err(poisoned(p)),
            None => Ok(()),
        }
    }

    /// Group-commit syncs performed so far (each may cover many writes).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Records that everything up to `seq` is durable (a segment was synced when sealed).
    pub fn mark_synced(&self, seq: u64) {
        let mut s = self.lock();
        s.synced = s.synced.max(seq);
    }

    /// Returns once record `seq` is durable, leading a sync through `target` when needed.
    /// `target` reports the sequence number it will cover and performs the sync.
    pub fn wait_durable<'a>(
        &self,
        seq: u64,
        mut target: impl FnMut() -> SyncTarget<'a>,
    ) -> Result<(), StorageError> {
        let mut s = self.lock();
        loop {
            if let Some(p) = &s.poison {
                return Err(poisoned(p));
            }
            if s.synced >= seq {
                return Ok(());
            }
            if s.leader {
                s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.leader = true;
            drop(s);
            let (covered, result) = target()();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            s = self.lock();
            s.leader = false;
            match result {
                Ok(()) => s.synced = s.synced.max(covered),
                Err((path, e)) => {
                    let reason = format!("fdatasync failed: {e}");
                    tracing::error!(path = %path.display(), %reason, "storage poisoned");
                    s.poison = Some(Poison { path, reason });
                    self.poisoned.store(true, Ordering::Release);
                }
            }
            self.cv.notify_all();
        }
    }
}

fn poisoned(p: &Poison) -> StorageError {
    StorageError::Poisoned {
        path: p.path.clone(),
        reason: p.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_waiter_returns_only_after_a_sync_covering_it_and_a_failed_sync_poisons() {
        let commit = Arc::new(Commit::new(0));
        let appended = Arc::new(AtomicU64::new(0));
        // What the simulated disk holds durably: set only when a sync finishes.
        let durable = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (commit, appended, durable) =
                    (commit.clone(), appended.clone(), durable.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let seq = appended.fetch_add(1, Ordering::SeqCst) + 1;
                        commit
                            .wait_durable(seq, || {
                                let covered = appended.load(Ordering::SeqCst);
                                let durable = durable.clone();
                                Box::new(move || {
                                    std::thread::sleep(std::time::Duration::from_micros(100));
                                    durable.fetch_max(covered, Ordering::SeqCst);
                                    (covered, Ok(()))
                                })
                            })
                            .unwrap();
                        let on_disk = durable.load(Ordering::SeqCst);
                        assert!(
                            on_disk >= seq,
                            "acknowledged {seq} with only {on_disk} durable"
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let err = commit
            .wait_durable(10_000, || {
                Box::new(|| {
                    (
                        10_000,
                        Err((PathBuf::from("seg"), std::io::Error::other("EIO"))),
                    )
                })
            })
            .unwrap_err();
        assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
        assert!(commit.check().is_err());
    }
}
