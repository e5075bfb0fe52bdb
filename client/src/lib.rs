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
//!
//! Modules: `client` (the request loop), `error` (the one status-to-error mapping), `routing`
//! and `backoff` (pure decisions), `topology` (the cluster snapshot), `pool` (connections).
//! Deliberately not here: any server logic, and command-line parsing (the `kv` binary).

mod backoff;
mod client;
mod config;
mod error;
mod pool;
mod routing;
mod topology;

pub use client::{Client, DeleteResult, GetResult, PutResult, ReadOptions, WriteOptions};
pub use config::{ClientConfig, ClientTls};
pub use error::{ClientError, ErrorKind, OUTCOME_HEADER};
pub use kvstore_proto::{ConsistencyLevel, Version, pb};
pub use topology::ring_placement;
