//! The public `KVStore` service: validates each request, hands it to the coordinator, and
//! translates the answer. Every refusal names the field and the limit; nothing invalid reaches
//! the replicas.

use std::sync::Arc;

use kvstore_proto::pb::kv_store_server::KvStore;
use kvstore_proto::{ConsistencyLevel, Version, pb};
use tonic::{Request, Response, Status};

use super::status::{Op, to_status};
use crate::clock_guard::ClockState;
use crate::cluster::members::Status as MemberStatus;
use crate::error::{Error, Result};
use crate::hlc::physical_ms;
use crate::node::shared::Shared;
use crate::replication::coordinator;
use crate::storage::Entry;

/// The KVStore gRPC handlers.
#[derive(Debug, Clone)]
pub struct KvService {
    shared: Arc<Shared>,
}

impl KvService {
    /// Handlers over the node's shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("key", "must not be empty"));
        }
        let max = self.shared.config.max_key_bytes;
        if key.len() > max {
            return Err(Error::invalid(
                "key",
                format!("is {} bytes, over the limit of {max} bytes", key.len()),
            ));
        }
        Ok(())
    }

    fn level(&self, raw: i32, default: ConsistencyLevel) -> Result<ConsistencyLevel> {
        match ConsistencyLevel::from_wire(raw) {
            Ok(level) => Ok(level.unwrap_or(default)),
            Err(n) => Err(Error::invalid(
                "consistency",
                format!(
                    "unknown level {n}: expected ONE (1), QUORUM (2), ALL (3) or 0 for the default"
                ),
            )),
        }
    }

    /// Refuses (counted) unless this node's clock is judged healthy now.
    fn require_healthy_clock(&self) -> Result<()> {
        let s = &self.shared;
        let verdict = s.clock_verdict();
        if verdict.state == ClockState::Healthy {
            return Ok(());
        }
        s.clock.count_refusal();
        Err(Error::ClockUnsafe {
            node: s.id(),
            state: verdict.state.name(),
            reason: verdict.reason,
        })
    }

    /// Refuses to coordinate a read while this node's clock is judged unhealthy (recomputed
    /// first when the wall clock jumped).
    fn refuse_reads_on_unhealthy_clock(&self) -> Result<()> {
        let verdict = self.shared.clock_verdict();
        if verdict.state == ClockState::Unhealthy {
            return Err(Error::ClockUnsafe {
                node: self.shared.id(),
                state: verdict.state.name(),
                reason: verdict.reason,
            });
        }
        Ok(())
    }

    /// The bytes of a request of `bytes` beyond the `charged` ones it was admitted with at the
    /// door ([`super::admit`]), held until it is answered.
    fn admit_extra(&self, bytes: usize, charged: usize) -> Result<crate::admission::Permit> {
        Ok(self
            .shared
            .admission
            .admit_extra(bytes.saturating_sub(charged), tokio::time::Instant::now())?)
    }

    fn check_serving(&self) -> Result<()> {
        match self.shared.view().my_status {
            MemberStatus::Leaving => Err(Error::NodeLeaving {
                node: self.shared.id(),
                state: "leaving",
            }),
            MemberStatus::Left => Err(Error::NodeLeaving {
                node: self.shared.id(),
                state: "left",
            }),
            _ => Ok(()),
        }
    }

    /// A new version for a write this node coordinates, or a refusal when its clock is not
    /// safe: judged against its peers (and re-judged at once when its wall clock jumped), and
    /// the stamp itself never further ahead of the wall clock than the max offset (a recovered
    /// floor from a clock that ran ahead). Refused before anything is sent anywhere, so the
    /// write is a definite failure and the client tries another node.
    fn stamp(&self) -> Result<Version> {
        let s = &self.shared;
        self.require_healthy_clock()?;
        let hlc = s.hlc.now()?;
        // The clock may have jumped between the verdict and the stamp (a strobing clock flips
        // every few hundred ms): judged again after the stamp's own clock reading, so a
        // version taken from a jumped clock is never used.
        self.require_healthy_clock()?;
        let wall = s.wall_ms();
        let max = s.clock.max_offset_ms();
        if physical_ms(hlc) > wall + max {
            s.clock.count_refusal();
            return Err(Error::ClockUnsafe {
                node: s.id(),
                state: ClockState::Unhealthy.name(),
                reason: format!(
                    "its next timestamp {hlc} is {} ms ahead of its wall clock (max clock \
                     offset {max} ms)",
                    physical_ms(hlc) - wall
                ),
            });
        }
        Ok(Version::new(hlc, s.id()))
    }

    async fn put_inner(&self, req: pb::PutRequest, charged: usize) -> Result<pb::PutResponse> {
        let size = req.key.len() + req.value.len();
        self.shared.admission.observe_put(size);
        let _permit = self.admit_extra(size, charged)?;
        self.check_key(&req.key)?;
        let max = self.shared.config.max_value_bytes;
        if req.value.len() > max {
            return Err(Error::invalid(
                "value",
                format!(
                    "is {} bytes, over the limit of {max} bytes",
                    req.value.len()
                ),
            ));
        }
        if req.ttl_ms == Some(0) {
            return Err(Error::invalid(
                "ttl_ms",
                "must be > 0 when set (omit it for no expiry)",
            ));
        }
        let level = self.level(req.consistency, self.shared.config.write_consistency)?;
        self.check_serving()?;
        // The seed returned the previous value with every put; a client that did not opt out
        // must never be told "no old value" falsely, so it is read from the replicas (not the
        // coordinator's local copy, which it may not have). A failed read fails the put before
        // anything is written: a definite failure.
        let old = if req.skip_old_value {
            None
        } else {
            Some(
                coordinator::read(&self.shared, &req.key, level)
                    .await?
                    .filter(|e| e.is_live(self.shared.wall_ms())),
            )
        };
        let version = self.stamp()?;
        let expires_at_ms = match req.ttl_ms {
            Some(ttl) => physical_ms(version.hlc).saturating_add(ttl),
            None => 0,
        };
        let entry = Entry {
            value: req.value,
            version,
            tombstone: false,
            expires_at_ms,
        };
        coordinator::write(&self.shared, &req.key, entry, level).await?;
        let old_value_state = match &old {
            None => pb::OldValueState::OldValueNotRead,
            Some(None) => pb::OldValueState::OldValueAbsent,
            Some(Some(_)) => pb::OldValueState::OldValuePresent,
        };
        let old = old.flatten();
        Ok(pb::PutResponse {
            had_old_value: old.is_some(),
            old_value: old.map(|e| e.value).unwrap_or_default(),
            version: Some(version.into()),
            old_value_state: old_value_state as i32,
        })
    }

    async fn delete_inner(
        &self,
        req: pb::DeleteRequest,
        charged: usize,
    ) -> Result<pb::DeleteResponse> {
        let _permit = self.admit_extra(req.key.len(), charged)?;
        self.check_key(&req.key)?;
        let level = self.level(req.consistency, self.shared.config.write_consistency)?;
        self.check_serving()?;
        let version = self.stamp()?;
        coordinator::write(&self.shared, &req.key, Entry::tombstone(version), level).await?;
        Ok(pb::DeleteResponse {
            version: Some(version.into()),
        })
    }

    async fn get_inner(&self, req: pb::GetRequest, charged: usize) -> Result<pb::GetResponse> {
        // The door charged the read its expected value; only an unusually long key adds.
        let _permit = self.admit_extra(req.key.len(), charged)?;
        self.check_key(&req.key)?;
        let level = self.level(req.consistency, self.shared.config.read_consistency)?;
        self.check_serving()?;
        // A node whose clock is known to be wrong cannot tell a version from the future from
        // a current one, so it does not coordinate reads either (the client goes elsewhere).
        self.refuse_reads_on_unhealthy_clock()?;
        let newest = coordinator::read(&self.shared, &req.key, level).await?;
        self.shared
            .admission
            .observe_read(newest.as_ref().map_or(0, |e| e.value.len()));
        let now = self.shared.wall_ms();
        if newest.as_ref().is_some_and(|e| e.expires_at_ms != 0) {
            // Expiry is judged by this node's wall clock, which may have jumped while the read
            // was in flight (a strobing clock flips every few hundred ms): judged again after
            // reading `now`, so a jumped clock never expires a value early (or keeps one late).
            self.refuse_reads_on_unhealthy_clock()?;
        }
        Ok(match newest {
            Some(e) if e.is_live(now) => pb::GetResponse {
                timestamp: e.version.hlc,
                exists: true,
                version: Some(e.version.into()),
                expires_at_ms: e.expires_at_ms,
                value: e.value,
            },
            Some(e) => pb::GetResponse {
                timestamp: e.version.hlc,
                version: Some(e.version.into()),
                ..Default::default()
            },
            None => pb::GetResponse::default(),
        })
    }
}

/// What the request was charged at the door (none when the service runs without it).
fn charged<T>(request: &Request<T>) -> usize {
    request
        .extensions()
        .get::<crate::admission::Charged>()
        .map_or(0, |c| c.0)
}

/// The metrics label index of a request's consistency level (the node default when unset).
fn level_index(raw: i32, default: ConsistencyLevel) -> usize {
    match ConsistencyLevel::from_wire(raw) {
        Ok(level) => match level.unwrap_or(default) {
            ConsistencyLevel::One => 0,
            ConsistencyLevel::Quorum => 1,
            ConsistencyLevel::All => 2,
        },
        Err(_) => 3,
    }
}

/// The metrics label index of a request's outcome (see `instruments::OUTCOMES`).
fn outcome_index<T>(r: &std::result::Result<T, Status>) -> usize {
    use tonic::Code;
    match r {
        Ok(_) => 0,
        Err(s) => match s.code() {
            Code::InvalidArgument => 1,
            Code::Unavailable => 2,
            Code::DeadlineExceeded => 3,
            Code::ResourceExhausted => 4,
            Code::FailedPrecondition => 5,
            _ => 6,
        },
    }
}

impl KvService {
    /// Counts and times one answered request.
    fn record<T>(
        &self,
        op: usize,
        level: usize,
        started: tokio::time::Instant,
        r: std::result::Result<T, Status>,
    ) -> std::result::Result<T, Status> {
        self.shared
            .requests
            .record(op, level, outcome_index(&r), started.elapsed());
        r
    }
}

#[tonic::async_trait]
impl KvStore for KvService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let started = tokio::time::Instant::now();
        let charged = charged(&request);
        let req = request.into_inner();
        let level = level_index(req.consistency, self.shared.config.read_consistency);
        let r = self
            .get_inner(req, charged)
            .await
            .map(Response::new)
            .map_err(|e| to_status(&e, Op::Read));
        self.record(0, level, started, r)
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let started = tokio::time::Instant::now();
        let charged = charged(&request);
        let req = request.into_inner();
        let level = level_index(req.consistency, self.shared.config.write_consistency);
        let r = self
            .put_inner(req, charged)
            .await
            .map(Response::new)
            .map_err(|e| to_status(&e, Op::Write));
        self.record(1, level, started, r)
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let started = tokio::time::Instant::now();
        let charged = charged(&request);
        let req = request.into_inner();
        let level = level_index(req.consistency, self.shared.config.write_consistency);
        let r = self
            .delete_inner(req, charged)
            .await
            .map(Response::new)
            .map_err(|e| to_status(&e, Op::Write));
        self.record(2, level, started, r)
    }
}
