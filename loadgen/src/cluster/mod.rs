//! The cluster under test: a [`launcher::LocalCluster`] of node processes, or the endpoints of
//! an existing cluster; and the [`faults`] timeline that kills, restarts, pauses and resumes
//! nodes mid-run, moves their wall clocks ([`clock`], through libfaketime), damages the files of
//! stopped ones ([`disk`]) and fills the disks of running ones ([`small_disk`]). The processes
//! themselves are [`kvstore_harness::process::ChildProcess`]es (killed on drop, signalled by PID
//! only), shared with the integration tests. [`peers`] launches Redis and etcd the same way, and
//! [`Launched`] is whichever a run started; [`partition`] cuts links between nodes and
//! [`link_proxy`] slows them; [`membership`] joins, leaves, wipes and replaces nodes.

pub mod clock;
pub mod disk;
pub mod faults;
pub mod launcher;
pub mod link_proxy;
pub mod membership;
pub mod partition;
pub mod peers;
pub mod signals;
pub mod small_disk;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use launcher::LocalCluster;
use peers::PeerCluster;

/// The processes loadgen launched for a run: kvstore nodes, or a peer store's members.
#[derive(Debug, Clone)]
pub enum Launched {
    /// kvstore nodes.
    Kv(Arc<Mutex<LocalCluster>>),
    /// Redis or etcd members.
    Peer(Arc<Mutex<PeerCluster>>),
}

impl Launched {
    /// Heals every fault (resume paused, restart killed).
    pub fn heal(&self) -> Result<(), String> {
        match self {
            Self::Kv(c) => c.lock().unwrap_or_else(|p| p.into_inner()).heal(),
            Self::Peer(c) => c.lock().unwrap_or_else(|p| p.into_inner()).heal(),
        }
    }

    /// Node `i`'s log file.
    pub fn log_path(&self, i: usize) -> PathBuf {
        match self {
            Self::Kv(c) => c.lock().unwrap_or_else(|p| p.into_inner()).log_path(i),
            Self::Peer(c) => c.lock().unwrap_or_else(|p| p.into_inner()).log_path(i),
        }
    }

    /// Every node's PID, `None` while it is not running.
    pub fn pids(&self) -> Vec<Option<u32>> {
        match self {
            Self::Kv(c) => c.lock().unwrap_or_else(|p| p.into_inner()).pids(),
            Self::Peer(c) => c.lock().unwrap_or_else(|p| p.into_inner()).pids(),
        }
    }
}
