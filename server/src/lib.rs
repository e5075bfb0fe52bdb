//! A kvstore node.
//!
//! - [`hlc`]: the Hybrid Logical Clock that stamps every write;
//! - [`clock_guard`]: whether this node's clock may stamp writes (offsets measured against
//!   its peers, jumps of its own clock, a recovered floor ahead of its wall clock);
//! - [`storage`]: the storage engine (the [`storage::Engine`] trait, an in-memory reference and
//!   the durable log-structured engine);
//! - [`cluster`]: membership (gossip, failure detection), placement, join/leave rebalancing,
//!   hints;
//! - [`replication`]: the coordinator (quorums, read repair, hinted handoff) and the per-peer
//!   replication streams;
//! - [`antientropy`]: hash trees per arc and the repair exchanges between replicas (what
//!   makes every replica converge, and tombstones collectable);
//! - [`service`]: the gRPC handlers, the only place errors become statuses;
//! - [`blocking`]: where storage work runs (the blocking pool, or inline under a simulation);
//! - [`admission`]: the budget of client requests and bytes a node works on at once;
//! - [`node`]: [`node::run`], a node on an already-bound listener;
//! - [`cli`]: the `kvstore-server` command line ([`cli::main`]);
//!
//! Decision logic (placement, quorum counting, member merge and health) is synchronous code
//! taking time and messages as arguments; the tasks around it only move messages.

pub mod admission;
pub mod antientropy;
pub mod blocking;
pub mod cli;
pub mod clock_guard;
pub mod cluster;
pub mod config;
pub mod error;
pub mod hlc;
pub mod instruments;
pub mod metrics;
pub mod node;
pub mod replication;
pub mod service;
pub mod storage;
pub mod tls;

pub use config::{Faults, NodeConfig};
pub use error::{Error, Result};
