//! [`StoreExecutor`]: the executor a run uses whatever the store: kvstore through its own
//! client ([`super::kv::KvExecutor`]), Redis ([`super::redis::RedisDriver`]) or etcd
//! ([`super::etcd::EtcdDriver`]), each driven through the one [`super::store::Store`]
//! interface. It sits above the drivers, which know nothing of it.

use std::time::Duration;

use super::etcd::EtcdDriver;
use super::kv::KvExecutor;
use super::redis::{RedisDriver, RedisOptions};
use super::store::execute_on;
use super::{Executor, OpReport};
use crate::LoadgenError;
use crate::generator::Op;
use crate::scenario::{ClusterSpec, StoreKind};

/// One loadgen client's connections to the store under test.
#[derive(Debug)]
pub enum StoreExecutor {
    /// kvstore's ring-aware client.
    Kv(KvExecutor),
    /// A multiplexed Redis connection to the primary.
    Redis(Box<RedisDriver>),
    /// gRPC channels to every etcd member.
    Etcd(EtcdDriver),
}

impl StoreExecutor {
    /// Connects client number `client` to `endpoints` of the store `spec.kind`; a kvstore
    /// client connects from `local_address` when set (the other stores ignore it).
    pub async fn connect(
        spec: &ClusterSpec,
        endpoints: &[String],
        client: u32,
        request_timeout: Duration,
        tls: Option<kvstore_client::ClientTls>,
        local_address: Option<std::net::IpAddr>,
    ) -> Result<Self, LoadgenError> {
        let cannot = |e: String| LoadgenError::Cluster(format!("client cannot connect: {e}"));
        Ok(match spec.kind {
            StoreKind::Kvstore => Self::Kv(
                KvExecutor::connect(endpoints, request_timeout, tls, local_address)
                    .await
                    .map_err(|e| cannot(e.to_string()))?,
            ),
            StoreKind::Redis => Self::Redis(Box::new(
                RedisDriver::connect(endpoints, RedisOptions::for_spec(spec, request_timeout))
                    .await
                    .map_err(cannot)?,
            )),
            StoreKind::Etcd => Self::Etcd(
                EtcdDriver::connect(endpoints, client, request_timeout)
                    .await
                    .map_err(cannot)?,
            ),
        })
    }
}

impl Executor for StoreExecutor {
    async fn execute(&self, op: &Op) -> OpReport {
        match self {
            Self::Kv(k) => execute_on(k, op).await,
            Self::Redis(r) => execute_on(r.as_ref(), op).await,
            Self::Etcd(e) => execute_on(e, op).await,
        }
    }
}
