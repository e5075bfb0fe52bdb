//! TLS for a node's gRPC port (tonic's rustls), configured like etcd but on kvstore's single
//! port, which serves clients (KVStore) and peers (NodeInternal) alike:
//!
//! - `--cert/--key`: the certificate the node serves with, to clients and peers.
//! - `--peer-cert/--peer-key`: the certificate it presents when it calls other nodes.
//! - `--peer-ca`: the CA a peer's certificate must chain to, checked both ways: when this node
//!   connects (the other node's serving certificate) and when a node calls this one (its
//!   client certificate). Node-to-node authentication is always mutual: the handshake asks
//!   every connection for a certificate, and every node-only call (replication, gossip, joins,
//!   streams, heartbeats, leave) is refused with UNAUTHENTICATED unless the caller's
//!   certificate verifies against `--peer-ca` ([`PeerVerdict`]). Clients may still read the
//!   ring and status (what the client library needs) over TLS.
//! - `--ca` and `--client-cert-auth`: with the flag, clients must present a certificate that
//!   chains to `--ca` (or to `--peer-ca`: nodes and operators holding a node certificate);
//!   without it, client certificates are optional.
//!
//! TLS is all or nothing on a node: with `--cert` the port speaks only TLS, so the peer flags
//! are needed too (other nodes must reach it). A plaintext client gets a failed handshake. The
//! cluster secret still works, alone (plaintext test clusters) or on top of TLS.
//!
//! [`certs`] makes the certificates (`kvstore-server certs`).

pub mod certs;
pub mod flags;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::error::{Error, Result};

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The certificate files of a TLS node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// Serving certificate (PEM, leaf first, then any intermediates).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// CA bundle client certificates are checked against (`--ca`).
    pub ca: Option<PathBuf>,
    /// Clients must present a certificate.
    pub client_cert_auth: bool,
    /// The certificate this node presents to other nodes.
    pub peer_cert: PathBuf,
    /// Its private key.
    pub peer_key: PathBuf,
    /// CA bundle peers' certificates are checked against.
    pub peer_ca: PathBuf,
}

/// A node's loaded TLS settings.
#[derive(Clone)]
pub struct NodeTls {
    /// For the node's listener.
    pub server: ServerTlsConfig,
    /// For the node's connections to its peers.
    pub peer_client: ClientTlsConfig,
    /// Checks a caller's certificate against the peer CA (node-only calls).
    pub peer_verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").finish_non_exhaustive()
    }
}

/// Makes ring rustls's process default (once), so every TLS config in the process uses it
/// whichever other providers a dependency enables.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("{flag} {}: {e}", path.display())))
}

/// Reads a PEM file holding at least one certificate.
pub fn read_certs(path: &Path, flag: &str) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>)> {
    let pem = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Config(format!(
                "{flag} {}: not PEM certificates: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{flag} {}: no certificate in it",
            path.display()
        )));
    }
    Ok((pem, certs))
}

/// Reads a PEM private key file.
pub fn read_key(path: &Path, flag: &str) -> Result<Vec<u8>> {
    let pem = read(path, flag)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        Error::Config(format!(
            "{flag} {}: no private key in it: {e}",
            path.display()
        ))
    })?;
    Ok(pem)
}

fn verifier(roots: &[CertificateDer<'static>], flag: &str) -> Result<Arc<dyn ClientCertVerifier>> {
    let mut store = rustls::RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(roots.iter().cloned());
    if added == 0 {
        return Err(Error::Config(format!("{flag}: no usable CA certificate")));
    }
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(store),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| Error::Config(format!("{flag}: {e}")))
}

/// Loads and checks every file of `p`, naming the flag of any bad one.
pub fn load(p: &TlsPaths) -> Result<NodeTls> {
    install_crypto_provider();
    let (cert, _) = read_certs(&p.cert, "--cert")?;
    let key = read_key(&p.key, "--key")?;
    let (peer_cert, _) = read_certs(&p.peer_cert, "--peer-cert")?;
    let peer_key = read_key(&p.peer_key, "--peer-key")?;
    let (peer_ca_pem, peer_ca) = read_certs(&p.peer_ca, "--peer-ca")?;
    // The handshake accepts certificates of either CA; which calls each may make is decided
    // per call (PeerVerdict).
    let mut roots = peer_ca_pem.clone();
    if let Some(ca) = &p.ca {
        let (ca_pem, _) = read_certs(ca, "--ca")?;
        roots.push(b'\n');
        roots.extend_from_slice(&ca_pem);
    }
    if p.client_cert_auth && p.ca.is_none() {
        return Err(Error::Config(
            "--client-cert-auth needs --ca (the CA client certificates must chain to)".into(),
        ));
    }
    let server = ServerTlsConfig::new()
        .identity(Identity::from_pem(&cert, &key))
        .client_ca_root(Certificate::from_pem(&roots))
        .client_auth_optional(!p.client_cert_auth)
        .timeout(HANDSHAKE_TIMEOUT);
    let peer_client = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&peer_ca_pem))
        .identity(Identity::from_pem(&peer_cert, &peer_key))
        .timeout(HANDSHAKE_TIMEOUT);
    Ok(NodeTls {
        server,
        peer_client,
        peer_verifier: verifier(&peer_ca, "--peer-ca")?,
    })
}

/// Whether the caller of a NodeInternal call proved to be a node (its certificate chains to
/// the peer CA). Put in the request's extensions by the internal API's interceptor when peer
/// TLS is on; absent otherwise.
#[derive(Debug, Clone)]
pub struct PeerVerdict(pub std::result::Result<(), String>);

/// Judges the certificates a caller presented.
pub fn judge_peer(
    verifier: &dyn ClientCertVerifier,
    certs: Option<&[CertificateDer<'static>]>,
) -> PeerVerdict {
    let Some((leaf, intermediates)) = certs.and_then(|c| c.split_first()) else {
        return PeerVerdict(Err(
            "this call is for cluster nodes only: present a node certificate (mutual TLS, \
             --peer-cert) issued by the cluster's peer CA"
                .into(),
        ));
    };
    PeerVerdict(
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "this call is for cluster nodes only, and the caller's certificate is not \
                     one of theirs (not issued by the peer CA): {e}"
                )
            }),
    )
}
