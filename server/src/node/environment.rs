//! What a node takes from the world around it: its wall clock, the network to its peers, the
//! file system its engines write to, the seed of its random choices, and where it serves.
//!
//! A node process uses [`Environment::default`] (the system clock, tonic over TCP, the real
//! file system, OS randomness) and a bound TCP listener. A simulation gives each node a clock
//! it can set, jump and slow, an in-memory network it can partition, a `SimFs` it can cut the
//! power of, a seed, and [`Listener::Mounted`]: the node's gRPC services are handed to the
//! simulated network instead of a socket. Nothing else about the node differs.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::hlc::{PhysicalClock, SystemClock};
use crate::replication::channel::PeerNetwork;
use crate::storage::io::{FileSystem, StdFs};

/// The world a node runs in.
#[derive(Clone)]
pub struct Environment {
    /// The wall clock that stamps writes and judges TTLs (gossip and the failure detector use
    /// tokio's monotonic time, which a simulation pauses and advances).
    pub clock: Arc<dyn PhysicalClock>,
    /// The network to peers; `None`: tonic over TCP, with the node's TLS and source address.
    pub network: Option<Arc<dyn PeerNetwork>>,
    /// The file system the data and hint engines live on.
    pub fs: Arc<dyn FileSystem>,
    /// The seed of the node's random choices; `None`: from the OS.
    pub seed: Option<u64>,
}

impl Default for Environment {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            network: None,
            fs: Arc::new(StdFs),
            seed: None,
        }
    }
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("network", &self.network)
            .field("fs", &self.fs)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Takes a node's gRPC services for a network that is not a socket (a simulation's).
pub trait Mount: Send {
    /// From now on calls to the node's address reach `routes`.
    fn mount(&mut self, routes: tonic::service::Routes);
    /// The node stopped serving: calls to its address fail as refused connections.
    fn unmount(&mut self);
}

/// Where a node serves.
pub enum Listener {
    /// A bound TCP listener (the node process, real-process tests).
    Tcp(TcpListener),
    /// Handed to a simulated network, at `address`.
    Mounted {
        /// The address peers and clients reach this node at (its advertise address).
        address: String,
        /// Where its services go.
        mount: Box<dyn Mount>,
    },
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(l) => f.debug_tuple("Tcp").field(&l.local_addr().ok()).finish(),
            Self::Mounted { address, .. } => f.debug_tuple("Mounted").field(address).finish(),
        }
    }
}
