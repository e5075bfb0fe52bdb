//! The kvstore executor: one [`kvstore_client::Client`] per loadgen client, so every client has
//! its own connections, exactly as independent applications would.

use kvstore_client::{Client, ClientConfig, ClientError, ReadOptions, WriteOptions};

use super::{Executor, OpReport};
use crate::generator::{Op, OpKind};

/// Sends operations to a kvstore cluster through one client.
#[derive(Debug, Clone)]
pub struct KvExecutor {
    client: Client,
}

impl KvExecutor {
    /// Connects a new client (its own connections) to `seeds`.
    pub async fn connect(
        seeds: &[String],
        request_timeout: std::time::Duration,
        tls: Option<kvstore_client::ClientTls>,
    ) -> Result<Self, ClientError> {
        let config = ClientConfig {
            request_timeout,
            tls,
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

impl Executor for KvExecutor {
    async fn execute(&self, op: &Op) -> OpReport {
        let write = WriteOptions {
            ttl_ms: op.ttl_ms,
            ..WriteOptions::default()
        };
        match op.kind {
            OpKind::Read => read(&self.client, &op.key).await,
            OpKind::Update | OpKind::Insert => {
                put(
                    &self.client,
                    &op.key,
                    op.value.clone().unwrap_or_default(),
                    write,
                )
                .await
            }
            OpKind::Delete => match self.client.delete(&op.key, write).await {
                Ok(r) => OpReport::written(r.version, r.coordinator),
                Err(e) => OpReport::failed(e.kind()),
            },
            OpKind::ReadModifyWrite => {
                let r = read(&self.client, &op.key).await;
                if r.outcome.is_err() {
                    return r;
                }
                let mut w = put(
                    &self.client,
                    &op.key,
                    op.value.clone().unwrap_or_default(),
                    write,
                )
                .await;
                w.read_value = r.read_value;
                w.read_version = r.version;
                w.expires_at_ms = r.expires_at_ms;
                w
            }
        }
    }
}

async fn read(client: &Client, key: &str) -> OpReport {
    match client.get(key, ReadOptions::default()).await {
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

async fn put(client: &Client, key: &str, value: bytes::Bytes, opts: WriteOptions) -> OpReport {
    match client.put(key, value, opts).await {
        Ok(r) => OpReport::written(r.version, r.coordinator),
        Err(e) => OpReport::failed(e.kind()),
    }
}
