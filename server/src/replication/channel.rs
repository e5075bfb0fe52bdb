//! The channel to a peer, and the network seam every node-to-node call goes through.
//!
//! [`PeerNetwork`] hands out a [`PeerChannel`] per address: the gRPC service every call of the
//! NodeInternal client runs on (replication and read streams, gossip, heartbeats, joins, range
//! streaming, leaves, hint replay, removal, anti-entropy). [`TonicNetwork`] is the product's: a
//! lazily connected tonic channel (plaintext or TLS, from this node's own source address when
//! it has one). A simulation implements the same trait with an in-memory network that routes
//! each call to another node's services in the same process and decides, message by message,
//! whether a partition, a loss or a delay holds it back.
//!
//! [`InternalClient`] is the NodeInternal client on such a channel, carrying the cluster
//! secret. Both of a peer's streams, the replicator ([`super::peer`]) and the read stream
//! ([`super::reader`]), run over one channel; this module knows neither.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kvstore_proto::CLUSTER_SECRET_HEADER;
use kvstore_proto::pb::node_internal_client::NodeInternalClient;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Endpoint;

/// Least time between two attempts to open a stream to a failing peer.
pub const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// How long opening a TCP connection to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Adds the cluster secret to every outgoing NodeInternal call.
#[derive(Clone, Debug, Default)]
pub struct AddSecret(Option<MetadataValue<Ascii>>);

impl AddSecret {
    /// An interceptor sending `secret` (or nothing).
    pub fn new(secret: Option<&str>) -> Self {
        Self(secret.and_then(|s| s.parse().ok()))
    }
}

impl Interceptor for AddSecret {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(CLUSTER_SECRET_HEADER, v.clone());
        }
        Ok(req)
    }
}

/// Any error a channel's calls end with (a transport error, or a simulated link's). A named
/// type rather than a bare boxed error: tonic's client bounds are then met without the
/// higher-ranked trait-object coercions the compiler cannot prove inside spawned futures.
#[derive(Debug)]
pub struct ChannelError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The wrapped error is the cause: tonic walks this chain to find the transport error
        // (or a simulated link's status) and the status code it means.
        Some(self.0.as_ref())
    }
}

/// The gRPC service one peer's calls run on: HTTP requests in, HTTP responses out.
pub type PeerChannel =
    tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, ChannelError>;

/// A NodeInternal client carrying the cluster secret.
pub type InternalClient = NodeInternalClient<InterceptedService<PeerChannel, AddSecret>>;

/// What a node reaches its peers through: one channel per address, made on demand (it may
/// connect lazily) and shared by every call to that peer.
pub trait PeerNetwork: Send + Sync + std::fmt::Debug {
    /// A channel to the node serving at `address`; an error names what is wrong with the
    /// address or the connection settings.
    fn channel(&self, address: &str) -> Result<PeerChannel, String>;
}

/// The product's network: tonic channels over TCP (TLS with this node's peer certificate when
/// the cluster uses it), each started from this node's own listen address when it has one.
#[derive(Debug, Clone, Default)]
pub struct TonicNetwork {
    /// TLS for every connection, when the cluster uses it.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// The local address connections start from.
    pub source_ip: Option<IpAddr>,
}

impl PeerNetwork for TonicNetwork {
    fn channel(&self, address: &str) -> Result<PeerChannel, String> {
        let channel = tcp_channel(address, self.tls.as_ref(), self.source_ip)?;
        Ok(PeerChannel::new(tower::ServiceExt::map_err(
            channel,
            |e: tonic::transport::Error| ChannelError(Box::new(e)),
        )))
    }
}

/// The product network as a trait object.
pub fn tonic_network(
    tls: Option<tonic::transport::ClientTlsConfig>,
    source_ip: Option<IpAddr>,
) -> Arc<dyn PeerNetwork> {
    Arc::new(TonicNetwork { tls, source_ip })
}

/// A lazily connected TCP channel to the peer at `address`.
fn tcp_channel(
    address: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
    source_ip: Option<IpAddr>,
) -> Result<tonic::transport::Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| format!("bad peer address {address:?}: {e}"))?
        .local_address(source_ip);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS to peer {address}: {e}"))?;
    }
    let endpoint = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5));
    Ok(endpoint.connect_lazy())
}
