//! The request path between nodes.
//!
//! - [`quorum`]: write and read quorum counting and the last-write-wins choice (pure);
//! - [`coordinator`]: a client request's fan-out to replicas, hints for the ones that miss,
//!   read repair;
//! - [`peer`]: per-peer connections and the batching replication stream;
//! - [`reader`]: the per-peer batching read stream (remote replica reads of gets);
//! - [`replica`]: applying incoming writes, with the clock-skew check;
//! - [`handoff`]: replaying hints to replicas that came back;
//! - [`slow`]: replicas that made reads speculate, asked last for a while.
//!
//! Not here: anything about gRPC statuses (the service layer) or ownership changes (cluster).

pub mod coordinator;
pub mod handoff;
pub mod peer;
pub mod quorum;
pub mod reader;
pub mod replica;
pub mod slow;
