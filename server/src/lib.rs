//! A kvstore node.
//!
//! - [`hlc`]: the Hybrid Logical Clock that stamps every write;
//! - [`storage`]: the storage engine (the [`storage::Engine`] trait, an in-memory reference and
//!   the durable log-structured engine).
//!
//! Cluster membership, replication and the gRPC service arrive with issue 3.

pub mod hlc;
pub mod storage;
