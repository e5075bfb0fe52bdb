//! kvstore's wire contract.
//!
//! This crate is what clients and nodes must agree on bit for bit:
//! - [`pb`]: the code generated from `kvstore.proto` (services `KVStore` and `NodeInternal`);
//! - [`Version`]: the total order of writes (HLC, then node id) that last-write-wins relies on;
//! - [`ring`]: the placement function (stable hash, virtual nodes, preference lists), so that a
//!   client routes a key exactly where the servers place it;
//! - [`limits`]: the message-size limits both sides configure on their gRPC channels.
//!
//! It holds no I/O and no policy: the server decides what to do with these types.

pub mod consistency;
pub mod limits;
pub mod ring;
mod version;

pub use consistency::ConsistencyLevel;
pub use version::Version;

/// Generated protobuf and gRPC code for `kvstore.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("kvstore");
}

/// The metadata header carrying the cluster secret on `NodeInternal` calls.
pub const CLUSTER_SECRET_HEADER: &str = "x-cluster-secret";
