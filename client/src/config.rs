//! Client configuration: a typed struct with defaults and a `validate()` that names the bad
//! field. Reading flags or files is the binaries' business, not this module's.

use std::time::Duration;

use crate::ClientError;

/// How a [`crate::Client`] connects, retries and refreshes its ring.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Addresses (`host:port`, or `http://host:port`) to fetch the ring from; at least one.
    pub seeds: Vec<String>,
    /// Deadline for one logical request, retries included.
    pub request_timeout: Duration,
    /// Deadline for establishing one connection.
    pub connect_timeout: Duration,
    /// First retry backoff; doubled per attempt, with jitter, capped by `max_backoff`.
    pub initial_backoff: Duration,
    /// Largest backoff between two attempts.
    pub max_backoff: Duration,
    /// How often the ring is refreshed in the background.
    pub ring_refresh: Duration,
    /// Cluster secret for NodeInternal calls (ring, status, local reads, leave), if the cluster
    /// has one.
    pub cluster_secret: Option<String>,
    /// Longest wait for one attempt's answer (capped by what is left of `request_timeout`), so
    /// a hung node costs a read one attempt, not its whole deadline. A write that times out is
    /// an unknown outcome and is not retried.
    pub attempt_timeout: Duration,
    /// Most attempts for one logical request (the first one included); bounds retries even
    /// when every attempt fails fast.
    pub max_attempts: u32,
    /// How long a node that failed at the transport level (refused, reset, timed out) is
    /// avoided when routing, unless no better replica is left.
    pub suspect_period: Duration,
    /// TLS to every node, when the cluster serves TLS.
    pub tls: Option<ClientTls>,
    /// The local address every connection is opened from; `None` lets the system choose. A
    /// test harness gives each client its own loopback address so that firewall rules can
    /// tell the clients apart (partitions that cut clients off with their side).
    pub local_address: Option<std::net::IpAddr>,
}

/// TLS settings of a client: the CA that issued the nodes' certificates and, for clusters that
/// require client certificates (`--client-cert-auth`), this client's certificate and key. All
/// PEM, as read from the files (`kv --ca --cert --key`).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificate(s) the nodes' certificates must chain to.
    pub ca_pem: Vec<u8>,
    /// This client's certificate and private key, when it presents one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("ClientTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Reads `ca` and, when both are given, `cert` and `key` (a convenience for binaries).
    pub fn from_files(
        ca: &std::path::Path,
        cert_key: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Self, ClientError> {
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| ClientError::InvalidArgument(format!("{what} {}: {e}", p.display())))
        };
        Ok(Self {
            ca_pem: read("--ca", ca)?,
            identity: match cert_key {
                Some((c, k)) => Some((read("--cert", c)?, read("--key", k)?)),
                None => None,
            },
        })
    }

    /// The tonic configuration.
    pub fn to_tonic(&self) -> tonic::transport::ClientTlsConfig {
        let mut c = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        c
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            seeds: Vec::new(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(500),
            ring_refresh: Duration::from_secs(2),
            cluster_secret: None,
            attempt_timeout: Duration::from_secs(2),
            max_attempts: 8,
            suspect_period: Duration::from_secs(1),
            tls: None,
            local_address: None,
        }
    }
}

impl ClientConfig {
    /// A default configuration with these seeds.
    pub fn with_seeds<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> Self {
        Self {
            seeds: seeds.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Checks every field, naming the first bad one and its bound.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |msg: String| Err(ClientError::InvalidArgument(msg));
        if self.seeds.is_empty() {
            return bad("seeds: at least one address is needed".into());
        }
        if let Some(s) = self.seeds.iter().find(|s| s.trim().is_empty()) {
            return bad(format!("seeds: empty address {s:?}"));
        }
        let positive = [
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("ring_refresh", self.ring_refresh),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return bad(format!("{name}: must be > 0"));
            }
        }
        if self.max_backoff < self.initial_backoff {
            return bad(format!(
                "max_backoff: {:?} is below initial_backoff {:?}",
                self.max_backoff, self.initial_backoff
            ));
        }
        if !(1..=100).contains(&self.max_attempts) {
            return bad(format!(
                "max_attempts: {} is outside 1..=100",
                self.max_attempts
            ));
        }
        if let Some(secret) = &self.cluster_secret
            && tonic::metadata::MetadataValue::<tonic::metadata::Ascii>::try_from(secret.as_str())
                .is_err()
        {
            return bad("cluster_secret: must be visible ASCII (it travels in a header)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_field() {
        let ok = ClientConfig::with_seeds(["127.0.0.1:1"]);
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(ClientConfig, &str)> = vec![
            (ClientConfig::default(), "seeds"),
            (ClientConfig::with_seeds([" "]), "seeds"),
            (
                ClientConfig {
                    request_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "request_timeout",
            ),
            (
                ClientConfig {
                    max_backoff: Duration::from_millis(1),
                    ..ok.clone()
                },
                "max_backoff",
            ),
            (
                ClientConfig {
                    max_attempts: 0,
                    ..ok.clone()
                },
                "max_attempts",
            ),
            (
                ClientConfig {
                    cluster_secret: Some("bad\nsecret".into()),
                    ..ok.clone()
                },
                "cluster_secret",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(ClientError::InvalidArgument(msg)) => {
                    assert!(msg.starts_with(field), "{field}: {msg}")
                }
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
    }
}
