//! The one driver interface every store implements ([`Store`]: get, put, delete), the
//! read-modify-write built on it the same way for all ([`execute_on`]), and [`StoreExecutor`],
//! the executor a run uses whatever the store: kvstore through its own client
//! ([`super::kv::KvExecutor`]), Redis ([`super::redis::RedisDriver`]) or etcd
//! ([`super::etcd::EtcdDriver`]).
//!
//! Every driver reports an [`OpReport`] with the same meaning: the outcome classified by
//! [`super::outcome::classify`], the value read, and a version in the checker's order (see
//! `checker/README.md`, "Versions of peer stores"), so `record_history` and the checker apply
//! to every store.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use super::etcd::EtcdDriver;
use super::kv::KvExecutor;
use super::redis::{RedisDriver, RedisOptions};
use super::{Executor, OpReport};
use crate::LoadgenError;
use crate::generator::{Op, OpKind};
use crate::scenario::{ClusterSpec, StoreKind};

/// A key-value store as loadgen drives it.
pub trait Store: Send + Sync + 'static {
    /// Reads `key`: the live value (or none), its version, the store's expiry when known.
    fn get(&self, key: &str) -> impl Future<Output = OpReport> + Send;
    /// Writes `value` under `key`, expiring after `ttl_ms` when set; reports the version given.
    fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl_ms: Option<u64>,
    ) -> impl Future<Output = OpReport> + Send;
    /// Deletes `key`; reports the version of the delete.
    fn delete(&self, key: &str) -> impl Future<Output = OpReport> + Send;
}

/// Runs `op` on `store`. A read-modify-write is a get, then (when it succeeded) a put of the
/// same key, reported as one operation carrying both versions, as YCSB's workload F does.
pub async fn execute_on<S: Store>(store: &S, op: &Op) -> OpReport {
    let value = || op.value.clone().unwrap_or_default();
    match op.kind {
        OpKind::Read => store.get(&op.key).await,
        OpKind::Update | OpKind::Insert => store.put(&op.key, value(), op.ttl_ms).await,
        OpKind::Delete => store.delete(&op.key).await,
        OpKind::ReadModifyWrite => {
            let r = store.get(&op.key).await;
            if r.outcome.is_err() {
                return r;
            }
            let mut w = store.put(&op.key, value(), op.ttl_ms).await;
            w.read_value = r.read_value;
            w.read_version = r.version;
            w.expires_at_ms = r.expires_at_ms;
            w
        }
    }
}

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
    /// Connects client number `client` to `endpoints` of the store `spec.kind`.
    pub async fn connect(
        spec: &ClusterSpec,
        endpoints: &[String],
        client: u32,
        request_timeout: Duration,
        tls: Option<kvstore_client::ClientTls>,
    ) -> Result<Self, LoadgenError> {
        let cannot = |e: String| LoadgenError::Cluster(format!("client cannot connect: {e}"));
        Ok(match spec.kind {
            StoreKind::Kvstore => Self::Kv(
                KvExecutor::connect(endpoints, request_timeout, tls)
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
