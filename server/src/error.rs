//! The node's error type: every way a request or the node itself can fail.
//!
//! One enum for the crate (besides the storage engine's own [`StorageError`] and the clock's
//! [`HlcError`], which it wraps). It says *what* went wrong in terms a caller can act on; the
//! mapping to gRPC status codes lives in exactly one place, `service::status`, and this module
//! deliberately knows nothing about tonic.

use crate::hlc::HlcError;
use crate::storage::StorageError;

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is malformed or over a limit; nothing was written.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field at fault (`key`, `value`, `ttl_ms`, `consistency`, ...).
        field: &'static str,
        /// What is wrong, naming the limit.
        reason: String,
    },
    /// Fewer live replicas than the consistency level needs, known before anything was sent;
    /// nothing was written (a definite failure).
    #[error("needed {kind}={needed} replicas ({level}), {live} answered (the others are down)")]
    Unavailable {
        /// `W` for writes, `R` for reads.
        kind: &'static str,
        /// Replica answers needed.
        needed: usize,
        /// Replicas believed live (they would have answered).
        live: usize,
        /// The level asked, for the message (e.g. `W=2`).
        level: String,
    },
    /// Replicas were asked but fewer than needed acknowledged. When `maybe_applied` the write
    /// may be stored somewhere and spread (hints, repair): its outcome is unknown to the caller;
    /// otherwise no replica holds it (a definite failure).
    #[error("needed {kind}={needed} replicas ({level}), {acked} answered{}", if *timed_out { " before the deadline" } else { "" })]
    NotEnoughReplicas {
        /// `W` for writes, `R` for reads.
        kind: &'static str,
        /// Replica answers needed.
        needed: usize,
        /// Replicas that acknowledged (or answered, for reads).
        acked: usize,
        /// The level asked, for the message.
        level: String,
        /// Whether the deadline passed (rather than every replica answering with a failure).
        timed_out: bool,
        /// Whether some replica may hold the write: it acknowledged, failed in a way that may
        /// have stored it, or had not answered when the coordinator gave up. Always false for
        /// reads.
        maybe_applied: bool,
    },
    /// This node's clock is not safe to stamp writes with (too far from its peers, not yet
    /// measured, or its floor is ahead of its wall clock); nothing was written anywhere.
    #[error("node {node} coordinates no writes: clock {state}: {reason}")]
    ClockUnsafe {
        /// This node's id.
        node: u32,
        /// `unhealthy` or `unverified`.
        state: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// The node is leaving the cluster (or has left) and coordinates no more requests.
    #[error("node {node} is {state} and no longer coordinates requests; use another node")]
    NodeLeaving {
        /// This node's id.
        node: u32,
        /// `leaving` or `left`.
        state: &'static str,
    },
    /// The node's admission budget is spent: the request was shed before anything was done.
    #[error("{0}")]
    Overloaded(#[from] crate::admission::Shed),
    /// A replica refused a version too far ahead of its clock.
    #[error("clock: {0}")]
    Clock(#[from] HlcError),
    /// The storage engine failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The node's configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory is held by another running node.
    #[error("data directory {path} is locked by another running node")]
    Locked {
        /// The directory.
        path: std::path::PathBuf,
    },
    /// A peer could not be reached or answered with an error.
    #[error("peer {peer}: {reason}")]
    Peer {
        /// The peer's id.
        peer: u32,
        /// What happened.
        reason: String,
    },
    /// The request is valid but not in this node's current state (e.g. a leave asked of a
    /// node that is not up).
    #[error("{0}")]
    Precondition(String),
    /// Joining or leaving the cluster failed.
    #[error("membership: {0}")]
    Membership(String),
    /// An I/O error outside the engine (listener, lock file, hints directory).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::InvalidArgument`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// Whether a write that failed with this error may nonetheless have been applied.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::NotEnoughReplicas { maybe_applied, .. } => *maybe_applied,
            _ => false,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
