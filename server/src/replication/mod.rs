//! The request path between nodes.
//!
//! - [`quorum`]: write and read quorum counting and the last-write-wins choice (pure);
//! - [`coordinator`]: a client request's fan-out to replicas, hints for the ones that miss,
//!   read repair;
//! - [`channel`]: the channel to a peer and the NodeInternal client carrying the secret;
//! - [`peer`]: per-peer connections and the batching replication stream;
//! - [`reader`]: the per-peer batching read stream (remote replica reads of gets);
//! - [`replica`]: applying incoming writes, with the clock-skew check;
//! - [`handoff`]: replaying hints to replicas that came back;
//! - [`slow`]: replicas that made reads speculate, asked last for a while;
//! - [`wire`]: entries and replica writes to and from their wire form.
//!
//! Not here: anything about gRPC statuses (the service layer) or ownership changes (cluster).

pub mod channel;
pub mod coordinator;
pub mod handoff;
pub mod peer;
pub mod quorum;
pub mod reader;
pub mod replica;
pub mod slow;
pub mod wire;
