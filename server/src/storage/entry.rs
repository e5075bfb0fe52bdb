//! A stored entry (value or tombstone with its version and expiry) and the outcome of applying
//! one.

use bytes::Bytes;
use kvstore_proto::Version;

/// A versioned value or tombstone, as replicas store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value; empty for a tombstone.
    pub value: Bytes,
    /// The version the coordinator stamped.
    pub version: Version,
    /// Whether this entry records a delete.
    pub tombstone: bool,
    /// Absolute expiry in ms since the Unix epoch; 0 means never.
    pub expires_at_ms: u64,
}

impl Entry {
    /// A value that never expires.
    pub fn value(value: impl Into<Bytes>, version: Version) -> Self {
        Self {
            value: value.into(),
            version,
            tombstone: false,
            expires_at_ms: 0,
        }
    }

    /// A value that expires at `expires_at_ms`.
    pub fn expiring(value: impl Into<Bytes>, version: Version, expires_at_ms: u64) -> Self {
        Self {
            expires_at_ms,
            ..Self::value(value, version)
        }
    }

    /// A tombstone.
    pub fn tombstone(version: Version) -> Self {
        Self {
            value: Bytes::new(),
            version,
            tombstone: true,
            expires_at_ms: 0,
        }
    }

    /// Whether the entry has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }

    /// Whether a read at `now_ms` should return this entry's value.
    pub fn is_live(&self, now_ms: u64) -> bool {
        !self.tombstone && !self.is_expired(now_ms)
    }
}

/// What [`crate::storage::Engine::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The entry was newer and is now the stored version.
    Stored,
    /// The stored version was equal or newer; nothing changed (LWW).
    Stale,
}
