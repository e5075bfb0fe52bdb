//! Deterministic simulation of kvstore clusters.
//!
//! The product's nodes (`kvstore_server::node::run_in`: every task, handler and engine of a
//! real node) run inside one process, on a simulated network ([`network`]), each with a
//! simulated wall clock ([`clock`]) and a simulated disk (`SimFs`), on one paused-time
//! runtime ([`runtime`]). [`cluster::SimCluster`] holds the controls: partitions (both ways
//! or one), loss, delay, pauses, crashes that lose unsynced data, restarts, clock jumps and
//! rates, joins and leaves. [`workload`] drives clients against it under random faults and
//! records a history in the checker's format, judged by `kvstore-checker`'s rules.
//!
//! Test support only: no product binary depends on this crate.

pub mod clock;
pub mod cluster;
pub mod network;
pub mod runtime;
pub mod workload;

pub use cluster::SimCluster;
