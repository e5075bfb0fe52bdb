//! One shared connection per node, and this client's own view of which nodes just failed.
//!
//! A [`Node`] holds a lazily connecting tonic [`Channel`] (one HTTP/2 connection, multiplexing
//! any number of concurrent requests) and the generated stubs over it. tonic reconnects a
//! channel on the next request after its connection dropped, so a restarted node is picked up
//! without any work here; a node that refuses connections fails such a request at once with a
//! connect error, which the retry loop classifies as "not sent". To keep a dead node from
//! costing every request a connect attempt, a transport failure marks the node suspect for a
//! while ([`Node::mark_suspect`]) and routing prefers other replicas meanwhile.
//!
//! The [`Pool`] maps addresses to nodes so that ring refreshes and clones of a client reuse
//! connections. It does not route, retry or decide anything.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvstore_proto::limits::GRPC_MESSAGE_LIMIT;
use kvstore_proto::pb::kv_store_client::KvStoreClient;
use kvstore_proto::pb::node_internal_client::NodeInternalClient;
use tonic::transport::{Channel, Endpoint};

use crate::ClientError;

/// HTTP/2 keep-alive ping interval: notices a silently dead connection (a paused or
/// partitioned node) even when no request is waiting on it.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a keep-alive ping may go unanswered before the connection is dropped.
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One cluster node as this client reaches it.
#[derive(Debug)]
pub(crate) struct Node {
    /// The address as the cluster (or the seed list) names it, `host:port`.
    pub addr: String,
    /// Public API stub over the shared channel.
    pub kv: KvStoreClient<Channel>,
    /// Internal API stub over the same channel.
    pub internal: NodeInternalClient<Channel>,
    /// Milliseconds since the pool's epoch until which this node is avoided; 0 when healthy.
    suspect_until_ms: AtomicU64,
    /// The pool's time origin, shared by all its nodes.
    epoch: Instant,
}

impl Node {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a transport failure here is recent enough to prefer other nodes.
    pub fn is_suspect(&self) -> bool {
        let until = self.suspect_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Avoids this node for `period` after a transport failure.
    pub fn mark_suspect(&self, period: Duration) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
        self.suspect_until_ms.store(until, Ordering::Relaxed);
    }

    /// Forgets a suspicion after a successful answer.
    pub fn clear_suspect(&self) {
        // A load first: the common case (healthy) then costs no cache-line write.
        if self.suspect_until_ms.load(Ordering::Relaxed) != 0 {
            self.suspect_until_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// The URI tonic needs for `addr`: `http://` (or `https://` with TLS) is added when no scheme
/// is given.
pub(crate) fn endpoint_uri(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// An endpoint with the settings every kvstore connection uses.
pub(crate) fn endpoint(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<&crate::config::ClientTls>,
    local_address: Option<std::net::IpAddr>,
) -> Result<Endpoint, ClientError> {
    let mut endpoint = Endpoint::from_shared(endpoint_uri(addr, tls.is_some())).map_err(|e| {
        ClientError::InvalidArgument(format!("address {addr:?}: not a host:port ({e})"))
    })?;
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.to_tonic())
            .map_err(|e| ClientError::InvalidArgument(format!("TLS settings for {addr}: {e}")))?;
    }
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .local_address(local_address)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT))
}

/// Address to node, shared by every clone of a client.
#[derive(Debug)]
pub(crate) struct Pool {
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    connect_timeout: Duration,
    tls: Option<crate::config::ClientTls>,
    /// Source address of every connection (`None`: the system's choice).
    local_address: Option<std::net::IpAddr>,
    epoch: Instant,
}

impl Pool {
    /// An empty pool whose connections time out connecting after `connect_timeout` and are
    /// opened from `local_address` (when set).
    pub fn new(
        connect_timeout: Duration,
        tls: Option<crate::config::ClientTls>,
        local_address: Option<std::net::IpAddr>,
    ) -> Self {
        Self {
            nodes: Mutex::new(HashMap::new()),
            connect_timeout,
            tls,
            local_address,
            epoch: Instant::now(),
        }
    }

    /// The node at `addr`, creating its (lazy) connection on first use. Needs a Tokio runtime.
    pub fn get(&self, addr: &str) -> Result<Arc<Node>, ClientError> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = nodes.get(addr) {
            return Ok(Arc::clone(node));
        }
        let channel = endpoint(
            addr,
            self.connect_timeout,
            self.tls.as_ref(),
            self.local_address,
        )?
        .connect_lazy();
        let node = Arc::new(Node {
            addr: addr.to_string(),
            kv: KvStoreClient::new(channel.clone())
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT)
                .max_encoding_message_size(GRPC_MESSAGE_LIMIT),
            internal: NodeInternalClient::new(channel)
                .max_decoding_message_size(GRPC_MESSAGE_LIMIT)
                .max_encoding_message_size(GRPC_MESSAGE_LIMIT),
            suspect_until_ms: AtomicU64::new(0),
            epoch: self.epoch,
        });
        nodes.insert(addr.to_string(), Arc::clone(&node));
        Ok(node)
    }

    /// Drops the connections to addresses not in `keep` (members that left the cluster), so
    /// the pool stays bounded by the cluster's size. In-flight requests keep their own handle.
    pub fn retain(&self, keep: &HashSet<&str>) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.retain(|addr, _| keep.contains(addr.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            endpoint_uri("127.0.0.1:7000", false),
            "http://127.0.0.1:7000"
        );
        assert_eq!(endpoint_uri("http://h:1", false), "http://h:1");
        assert!(matches!(
            endpoint("not an address", Duration::from_secs(1), None, None),
            Err(ClientError::InvalidArgument(_))
        ));
    }

    #[tokio::test]
    async fn one_node_per_address_and_suspicion_expires() {
        let pool = Pool::new(Duration::from_secs(1), None, None);
        let a = pool.get("127.0.0.1:1").expect("valid");
        let b = pool.get("127.0.0.1:1").expect("valid");
        assert!(Arc::ptr_eq(&a, &b), "connections are shared");
        assert!(!a.is_suspect());
        a.mark_suspect(Duration::from_secs(60));
        assert!(b.is_suspect());
        a.clear_suspect();
        assert!(!a.is_suspect());
        a.mark_suspect(Duration::ZERO);
        assert!(!a.is_suspect(), "a zero period expires at once");
        pool.retain(&HashSet::new());
        let c = pool.get("127.0.0.1:1").expect("valid");
        assert!(
            !Arc::ptr_eq(&a, &c),
            "a dropped address gets a new connection"
        );
    }

    #[tokio::test]
    async fn connections_come_from_the_local_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let from: std::net::IpAddr = "127.0.0.9".parse().expect("ip");
        let pool = Pool::new(Duration::from_secs(1), None, Some(from));
        let mut kv = pool.get(&addr).expect("valid").kv.clone();
        // The listener speaks no HTTP/2: the request fails, but its connection shows where
        // it came from.
        let request = tokio::spawn(async move {
            let _ = kv.get(kvstore_proto::pb::GetRequest::default()).await;
        });
        let (_, peer) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("a connection within 5 s")
            .expect("accept");
        assert_eq!(peer.ip(), from);
        request.abort();
    }
}
