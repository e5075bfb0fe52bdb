//! The client's snapshot of the cluster: members, their states and connections, and the
//! route table built from the ring a node reported.
//!
//! A [`Topology`] is immutable; the client swaps in a new one (behind an `Arc`) when a ring
//! refresh brings news, so a request works on one consistent snapshot without holding a lock.
//! Without a ring (every ring fetch failed, e.g. the cluster requires a secret this client does
//! not have), the topology is just the seed list and requests try every server in turn.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kvstore_proto::pb::{self, MemberState};
use kvstore_proto::ring::Ring;

use crate::ClientError;
use crate::pool::{Node, Pool};
use crate::routing::{self, Health, RouteTable};

/// The placement ring a ring state describes: the members that own tokens (up, suspect, down
/// or leaving; see the routing module), with the reported virtual nodes. The same function the
/// client routes with, public so tools (the `kv ring` command, loadgen) compute ownership the
/// same way.
pub fn ring_placement(ring: &pb::RingStateResponse) -> Ring {
    let owners = ring.members.iter().filter_map(|m| {
        let state = MemberState::try_from(m.state).unwrap_or(MemberState::Unknown);
        routing::owns_tokens(state).then_some(m.id)
    });
    Ring::new(owners, ring.vnodes.max(1))
}

/// One member as this client knows it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Gossiped lifecycle state.
    pub state: MemberState,
    /// Its connection.
    pub node: Arc<Node>,
}

/// An immutable view of the cluster.
#[derive(Debug)]
pub(crate) struct Topology {
    /// The ring version it was built from; `None` when no ring is known.
    pub ring_version: Option<u64>,
    /// Preference lists; `None` when no ring is known.
    pub routes: Option<RouteTable>,
    /// Members by node id (empty without a ring).
    pub members: HashMap<u32, Member>,
    /// Every server worth trying: members that have not left, or the seeds without a ring.
    pub all: Vec<Arc<Node>>,
}

impl Topology {
    /// The view before any ring is known: only the seeds.
    pub fn seeds_only(seeds: Vec<Arc<Node>>) -> Self {
        Self {
            ring_version: None,
            routes: None,
            members: HashMap::new(),
            all: seeds,
        }
    }

    /// The view described by `ring`, with connections from `pool`; seeds stay reachable as a
    /// last resort in case every member address turns out wrong.
    pub fn from_ring(
        ring: &pb::RingStateResponse,
        pool: &Pool,
        seeds: &[Arc<Node>],
    ) -> Result<Self, ClientError> {
        let mut members = HashMap::with_capacity(ring.members.len());
        let mut all = Vec::with_capacity(ring.members.len() + seeds.len());
        for m in &ring.members {
            let state = MemberState::try_from(m.state).unwrap_or(MemberState::Unknown);
            if m.address.is_empty() {
                continue;
            }
            let node = pool.get(&m.address)?;
            if state != MemberState::Left {
                all.push(Arc::clone(&node));
            }
            members.insert(m.id, Member { state, node });
        }
        for seed in seeds {
            if !all.iter().any(|n| Arc::ptr_eq(n, seed)) {
                all.push(Arc::clone(seed));
            }
        }
        let placement = ring_placement(ring);
        let n = usize::try_from(ring.replication_factor.max(1)).unwrap_or(usize::MAX);
        let routes = (!placement.is_empty()).then(|| RouteTable::new(&placement, n));
        Ok(Self {
            ring_version: routes.as_ref().map(|_| ring.ring_version),
            routes,
            members,
            all,
        })
    }

    /// Coordinator health of member `id` (unknown ids are doubtful).
    pub fn health(&self, id: u32) -> Health {
        match self.members.get(&id) {
            Some(m) => routing::health(m.state, m.node.is_suspect()),
            None => Health::Doubtful,
        }
    }

    /// Health of a node by handle, for nodes reached without a member id (seeds).
    pub fn node_health(&self, node: &Arc<Node>) -> Health {
        let state = self
            .members
            .values()
            .find(|m| Arc::ptr_eq(&m.node, node))
            .map_or(MemberState::Up, |m| m.state);
        routing::health(state, node.is_suspect())
    }

    /// The addresses this view uses, so the pool can drop the others.
    pub fn addresses(&self) -> HashSet<&str> {
        self.all
            .iter()
            .map(|n| n.addr.as_str())
            .chain(self.members.values().map(|m| m.node.addr.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u32, state: MemberState) -> pb::Member {
        pb::Member {
            id,
            address: format!("127.0.0.1:{}", 10_000 + id),
            state: state as i32,
            incarnation: 1,
            heartbeat: 1,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn ring_excludes_joining_and_left_members() {
        let pool = Pool::new(std::time::Duration::from_secs(1), None, None);
        let seed = pool.get("127.0.0.1:9999").expect("valid");
        let ring = pb::RingStateResponse {
            ring_version: 7,
            members: vec![
                member(1, MemberState::Up),
                member(2, MemberState::Down),
                member(3, MemberState::Joining),
                member(4, MemberState::Left),
            ],
            vnodes: 16,
            replication_factor: 3,
            ring_hash: 0,
        };
        let topo = Topology::from_ring(&ring, &pool, &[seed]).expect("valid");
        assert_eq!(topo.ring_version, Some(7));
        let routes = topo.routes.as_ref().expect("a ring");
        let expected = Ring::new([1, 2], 16);
        for i in 0..200 {
            let key = format!("k{i}");
            assert_eq!(
                routes.replicas(key.as_bytes()),
                expected.preference_list(key.as_bytes(), 3).as_slice()
            );
        }
        // Left members are not tried; the seed stays as a last resort.
        let addrs: Vec<&str> = topo.all.iter().map(|n| n.addr.as_str()).collect();
        assert_eq!(addrs.len(), 4, "{addrs:?}");
        assert!(!addrs.contains(&"127.0.0.1:10004"));
        assert!(addrs.contains(&"127.0.0.1:9999"));
        assert_eq!(topo.health(1), Health::Good);
        assert_eq!(topo.health(2), Health::Bad);
        assert_eq!(topo.health(3), Health::Doubtful);
    }
}
