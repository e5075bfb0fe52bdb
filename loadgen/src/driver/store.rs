//! The one driver interface every store implements ([`Store`]: get, put, delete) and the
//! read-modify-write built on it the same way for all ([`execute_on`]). The drivers
//! ([`super::kv`], [`super::redis`], [`super::etcd`]) implement it; [`super::executor`] picks
//! one for a run. This module imports none of them.
//!
//! Every driver reports an [`OpReport`] with the same meaning: the outcome classified by
//! [`super::outcome::classify`], the value read, and a version in the checker's order (see
//! `checker/README.md`, "Versions of peer stores"), so `record_history` and the checker apply
//! to every store.

use std::future::Future;

use bytes::Bytes;

use super::OpReport;
use crate::generator::{Op, OpKind};

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
