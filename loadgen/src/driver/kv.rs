//! The kvstore driver: one [`kvstore_client::Client`] per loadgen client, so every client has
//! its own connections, exactly as independent applications would. The client already tells
//! a definite failure from an unknown outcome, so its error kinds are reported as they are.

use bytes::Bytes;
use kvstore_client::{Client, ClientConfig, ClientError, ReadOptions, WriteOptions};

use super::store::{Store, execute_on};
use super::{Executor, OpReport};
use crate::generator::Op;

/// Sends operations to a kvstore cluster through one client.
#[derive(Debug, Clone)]
pub struct KvExecutor {
    client: Client,
}

impl KvExecutor {
    /// Connects a new client (its own connections) to `seeds`, from `local_address` when set
    /// (so that partition rules can tell this client apart).
    pub async fn connect(
        seeds: &[String],
        request_timeout: std::time::Duration,
        tls: Option<kvstore_client::ClientTls>,
        local_address: Option<std::net::IpAddr>,
    ) -> Result<Self, ClientError> {
        let config = ClientConfig {
            request_timeout,
            tls,
            local_address,
            ..ClientConfig::with_seeds(seeds.iter().cloned())
        };
        Ok(Self {
            client: Client::connect(config).await?,
        })
    }

    /// The underlying client (status and local reads).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Store for KvExecutor {
    async fn get(&self, key: &str) -> OpReport {
        match self.client.get(key, ReadOptions::default()).await {
            Ok(r) => OpReport {
                outcome: Ok(()),
                read_value: Some(r.value),
                version: r.version,
                coordinator: r.coordinator,
                expires_at_ms: r.expires_at_ms,
                read_version: None,
            },
            Err(e) => OpReport::failed(e.kind()),
        }
    }

    async fn put(&self, key: &str, value: Bytes, ttl_ms: Option<u64>) -> OpReport {
        let opts = WriteOptions {
            ttl_ms,
            ..WriteOptions::default()
        };
        match self.client.put(key, value, opts).await {
            Ok(r) => OpReport::written(r.version, r.coordinator),
            Err(e) => OpReport::failed(e.kind()),
        }
    }

    async fn delete(&self, key: &str) -> OpReport {
        match self.client.delete(key, WriteOptions::default()).await {
            Ok(r) => OpReport::written(r.version, r.coordinator),
            Err(e) => OpReport::failed(e.kind()),
        }
    }
}

impl Executor for KvExecutor {
    async fn execute(&self, op: &Op) -> OpReport {
        execute_on(self, op).await
    }
}
