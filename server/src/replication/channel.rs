//! The channel to a peer: a lazily connected tonic channel (plaintext or TLS, from this
//! node's own source address when it has one) and the NodeInternal client on it that carries
//! the cluster secret. Both of a peer's streams, the replicator ([`super::peer`]) and the
//! read stream ([`super::reader`]), run over one such channel; this module knows neither.

use std::net::IpAddr;
use std::time::Duration;

use kvstore_proto::CLUSTER_SECRET_HEADER;
use kvstore_proto::pb::node_internal_client::NodeInternalClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

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

/// A NodeInternal client carrying the cluster secret.
pub type InternalClient = NodeInternalClient<InterceptedService<Channel, AddSecret>>;

/// A lazily connected channel to the peer at `address`.
pub fn channel(
    address: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
    source_ip: Option<IpAddr>,
) -> Result<Channel, String> {
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
