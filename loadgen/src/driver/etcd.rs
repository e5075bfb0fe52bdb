//! The etcd driver: etcd's v3 gRPC KV API (Range, Put, DeleteRange) from its own .proto files
//! (vendored and reduced under `loadgen/etcd-proto/`, compiled by `build.rs` with protox), with
//! a channel to every member. Each loadgen client starts on member `client % members` and
//! moves to the next member when one stops answering, as etcd's own client does; etcd forwards
//! proposals to the leader, so any member serves writes.
//!
//! Versions are etcd's: a key's `mod_revision`, the store-wide Raft-ordered revision of its
//! last change (node id 0 in the checker's order). Reads are etcd's default, linearizable. A
//! delete is the DeleteRange response's revision; etcd keeps no tombstone, so a read after a
//! delete finds nothing without a version, and a delete of an absent key creates no revision:
//! it is reported with version (current revision, node 1), ordered after the state it saw.
//! TTLs need leases, which this driver does not create (the scenario check refuses them).

#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod pb {
    //! etcd's generated messages and clients.
    pub mod mvccpb {
        //! etcd's `mvccpb` package.
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        //! etcd's `etcdserverpb` package (KV and Maintenance).
        tonic::include_proto!("etcdserverpb");
    }
}

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kvstore_client::Version;
use pb::etcdserverpb::kv_client::KvClient;
use pb::etcdserverpb::maintenance_client::MaintenanceClient;
use pb::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, StatusRequest, StatusResponse,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::OpReport;
use super::outcome::{Failure, classify};
use super::store::Store;

/// Largest message either way: 1 MiB values with headroom (tonic's default is 4 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// One client's channels to an etcd cluster.
#[derive(Debug)]
pub struct EtcdDriver {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
}

/// What a gRPC status from etcd tells about the request's effect.
pub fn failure_of(s: &Status) -> Failure {
    match s.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::AlreadyExists
        | Code::NotFound
        | Code::Unimplemented => Failure::Refused,
        Code::Unavailable if refused(s) => Failure::NotSent,
        // Timeouts, lost connections, "leader changed", "request timed out": may have applied.
        _ => Failure::Indeterminate,
    }
}

/// Whether the status comes from a connection that was refused (nothing was sent).
fn refused(s: &Status) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(err) = e {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        e = err.source();
    }
    false
}

fn version_of(revision: i64, node: u32) -> Version {
    Version {
        hlc: revision.max(0) as u64,
        node,
    }
}

/// A lazily connecting channel to `addr`.
pub fn channel(addr: &str, timeout: Duration) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("{addr}: {e}"))?
        .connect_timeout(timeout.min(Duration::from_secs(2)))
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

fn kv(c: &Channel) -> KvClient<Channel> {
    KvClient::new(c.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// The member's status (leader, raft indexes), through `c`.
pub async fn status(c: &Channel) -> Result<StatusResponse, Status> {
    MaintenanceClient::new(c.clone())
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner())
}

impl EtcdDriver {
    /// Channels to every member in `endpoints`; client number `client` starts on member
    /// `client % members`. Connects lazily: a member down at start is skipped when used.
    pub async fn connect(
        endpoints: &[String],
        client: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        if endpoints.is_empty() {
            return Err("no etcd endpoint given".into());
        }
        let channels = endpoints
            .iter()
            .map(|e| channel(e, timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            endpoints: endpoints.to_vec(),
            channels,
            current: AtomicUsize::new(client as usize % endpoints.len()),
        })
    }

    /// The members' addresses.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn pick(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.channels.len()
    }

    /// Classifies `s` from member `i`, moving this client to the next member when `i` may be
    /// down or cut off.
    fn fail(&self, i: usize, s: &Status) -> OpReport {
        let f = failure_of(s);
        if matches!(f, Failure::NotSent | Failure::Indeterminate) {
            let _ = self.current.compare_exchange(
                i,
                (i + 1) % self.channels.len(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        OpReport::failed(classify(f))
    }

    /// Reads `key` from member `i` alone (serializable: its own applied state, no consensus),
    /// for the history's final reads of each replica.
    pub async fn get_at(&self, i: usize, key: &str) -> OpReport {
        self.range(i, key, true).await
    }

    async fn range(&self, i: usize, key: &str, serializable: bool) -> OpReport {
        let req = RangeRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            serializable,
            ..RangeRequest::default()
        };
        match kv(&self.channels[i]).range(req).await {
            Ok(r) => {
                let kv = r.into_inner().kvs.into_iter().next();
                OpReport {
                    outcome: Ok(()),
                    version: kv.as_ref().map(|kv| version_of(kv.mod_revision, 0)),
                    read_value: Some(kv.map(|kv| kv.value)),
                    coordinator: self.endpoints[i].clone(),
                    expires_at_ms: 0,
                    read_version: None,
                }
            }
            Err(s) => self.fail(i, &s),
        }
    }
}

impl Store for EtcdDriver {
    async fn get(&self, key: &str) -> OpReport {
        self.range(self.pick(), key, false).await
    }

    async fn put(&self, key: &str, value: Bytes, _ttl_ms: Option<u64>) -> OpReport {
        let i = self.pick();
        let req = PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value,
            ..PutRequest::default()
        };
        match kv(&self.channels[i]).put(req).await {
            Ok(r) => {
                let rev = r.into_inner().header.map(|h| h.revision).unwrap_or(0);
                OpReport::written(version_of(rev, 0), self.endpoints[i].clone())
            }
            Err(s) => self.fail(i, &s),
        }
    }

    async fn delete(&self, key: &str) -> OpReport {
        let i = self.pick();
        let req = DeleteRangeRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            ..DeleteRangeRequest::default()
        };
        match kv(&self.channels[i]).delete_range(req).await {
            Ok(r) => {
                let r = r.into_inner();
                let rev = r.header.map(|h| h.revision).unwrap_or(0);
                // Deleting nothing creates no revision: order it after the state it saw.
                let node = if r.deleted > 0 { 0 } else { 1 };
                OpReport::written(version_of(rev, node), self.endpoints[i].clone())
            }
            Err(s) => self.fail(i, &s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_by_what_they_say_about_the_effect() {
        let table = [
            (Code::InvalidArgument, Failure::Refused),
            (Code::ResourceExhausted, Failure::Refused),
            (Code::DeadlineExceeded, Failure::Indeterminate),
            (Code::Unavailable, Failure::Indeterminate),
            (Code::Unknown, Failure::Indeterminate),
        ];
        for (code, want) in table {
            assert_eq!(failure_of(&Status::new(code, "x")), want, "{code:?}");
        }
    }
}
