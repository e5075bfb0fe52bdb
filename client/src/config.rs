//! Client configuration.

use std::time::Duration;

/// How a [`crate::Client`] connects, retries and refreshes its ring.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Addresses (`host:port`) to fetch the ring from; at least one.
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
}
