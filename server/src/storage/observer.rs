//! The change observer: what lets a layer above the engine follow every change of a key's
//! stored version exactly (anti-entropy's hash trees do).
//!
//! The engine calls [`ChangeObserver::changed`] with the old and the new version of a key
//! while it still holds the lock under which it made the change, so the calls for one key come
//! in the order of the changes and never interleave with [`crate::storage::Engine::with_version`]
//! for that key. An observer must therefore be quick and must never call back into the engine.
//! Replay at open is not observed (nothing is attached yet): an observer attached to an open
//! engine starts from a scan of it.

use std::sync::{Arc, OnceLock};

use kvstore_proto::Version;

/// Told of every change of a key's stored version.
pub trait ChangeObserver: Send + Sync + std::fmt::Debug {
    /// `key` went from `old` to `new` (`None`: absent).
    fn changed(&self, key: &str, old: Option<Version>, new: Option<Version>);
}

/// The observer slot an engine keeps: empty until one is attached, then fixed.
#[derive(Debug, Default)]
pub struct ObserverSlot(OnceLock<Arc<dyn ChangeObserver>>);

impl ObserverSlot {
    /// Attaches `observer`; false when one was attached already (it stays).
    pub fn attach(&self, observer: Arc<dyn ChangeObserver>) -> bool {
        self.0.set(observer).is_ok()
    }

    /// Tells the observer, if any, that `key` went from `old` to `new`.
    pub fn notify(&self, key: &str, old: Option<Version>, new: Option<Version>) {
        if old == new {
            return;
        }
        if let Some(o) = self.0.get() {
            o.changed(key, old, new);
        }
    }
}
