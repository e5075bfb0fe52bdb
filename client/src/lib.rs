//! The kvstore client library.
//!
//! [`Client`] talks to a cluster: it fetches the ring from any seed, routes each request to the
//! first live node of the key's preference list (computed with [`kvstore_proto::ring`], exactly
//! as servers place keys), refreshes the ring on routing errors and periodically, falls back to
//! trying every known server when no ring is known, and retries with exponential backoff and
//! jitter within a per-request deadline.
//!
//! Errors tell a definite failure (the write was not applied) from an unknown outcome (it may
//! have been applied): [`ClientError::is_unknown_outcome`]. A write whose outcome is unknown is
//! never retried silently.

mod client;
mod config;
mod error;

pub use client::{Client, DeleteResult, GetResult, PutResult, ReadOptions, WriteOptions};
pub use config::ClientConfig;
pub use error::{ClientError, ErrorKind};
pub use kvstore_proto::{ConsistencyLevel, Version, pb};
