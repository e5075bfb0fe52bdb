//! Which tombstones and expired values compaction may drop once they are past the grace period.
//!
//! The engine knows when an entry is past its grace period; it cannot know whether dropping it
//! is safe. A tombstone is what keeps a replica that missed the delete from bringing the value
//! back (read repair or a late hint would copy the old value to the others): it may go only
//! once every replica of its key is known to hold the delete, which is what a completed repair
//! of its range says (ScyllaDB's `tombstone_gc = repair`). So the node passes a
//! [`CollectPolicy`] that asks its repair record; an engine on its own (tests, the hints
//! engine, whose entries are never deletes) uses [`AfterGrace`].

/// Decides, for an entry already past the grace period, whether compaction may drop it.
pub trait CollectPolicy: Send + Sync {
    /// Whether the tombstone (or expired value) of `key`, deleted (or expired) at `since_ms`
    /// (wall-clock ms), may be dropped.
    fn may_collect(&self, key: &str, since_ms: u64) -> bool;
}

/// The grace period alone decides: everything past it goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct AfterGrace;

impl CollectPolicy for AfterGrace {
    fn may_collect(&self, _key: &str, _since_ms: u64) -> bool {
        true
    }
}
