//! loadgen: kvstore's benchmark and fault harness.
//!
//! A run reads a [`scenario`] (TOML), launches a local cluster of `kvstore-server` processes or
//! addresses an existing one ([`cluster`]), measures this machine's gRPC ceiling with an
//! [`echo`] service, loads the records, then drives the workload ([`driver`]) from independent
//! clients in closed or open loop while a fault timeline kills, restarts, pauses and resumes
//! nodes. Every operation is timed from its intended start (coordinated-omission correction) and
//! from its actual start (service time) into HdrHistograms ([`measure`]); [`results`] writes the
//! summary, time series, interval logs, per-phase figures and PNG plots, and [`compare`] gates
//! regressions against a baseline. [`resources`] samples every node's CPU and memory beside the
//! run.
//!
//! The same scenarios run against Redis and etcd (`[cluster] kind`, `loadgen run --target`):
//! [`driver::store`] is the one driver interface, [`cluster::peers`] launches the peers, and
//! [`results::side_by_side`] (`loadgen report`) puts runs of any store next to each other. A
//! run that records a history ends with the checker's [`verdict`] on it.
//!
//! Deliberately not here: anything about how a node works inside. loadgen drives servers as
//! separate processes exactly as a user would, and talks to them only through
//! `kvstore_client::Client` and the wire contract (and to peers through their own protocols).

pub mod cluster;
pub mod compare;
mod csv_file;
pub mod driver;
pub mod echo;
mod error;
pub mod generator;
pub mod history;
pub mod measure;
pub mod netns;
mod plot_style;
pub mod resources;
pub mod results;
pub mod run;
pub mod scenario;
pub mod selftest;
pub mod status;
pub mod verdict;

pub use error::LoadgenError;
