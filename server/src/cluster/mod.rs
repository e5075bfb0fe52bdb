//! Cluster membership and data placement.
//!
//! - [`members`]: the member table and its merge/health rules (pure);
//! - [`placement`]: current and pending rings, read and write replica sets (pure);
//! - [`gossip`]: push-pull gossip, heartbeat probes, announcements (tasks);
//! - [`rebalance`]: join, leave and cleanup of moved keys (tasks);
//! - [`hints`]: durable, bounded storage of hints for replicas that missed writes;
//! - [`identity`]: the cluster's name and placement settings, compared on every exchange;
//! - [`persist`]: the member table on disk.
//!
//! The ring's hash and preference lists come from `kvstore_proto::ring`, shared with clients.
//! Not here: consensus. Membership converges by gossip; ownership changes only through the
//! explicit join and leave protocols, never because a node is down.

pub mod gossip;
pub mod hints;
pub mod identity;
pub mod members;
pub mod persist;
pub mod placement;
pub mod rebalance;
pub mod removal;
pub mod repair_ledger;
pub mod restore;
pub mod streaming;
