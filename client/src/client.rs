//! The cluster client: [`Client`] and its request loop.
//!
//! Every request runs through [`Inner::run`]: take the current [`Topology`] snapshot, pick the
//! best untried candidate (the key's replicas ordered by health, then every other server),
//! send with a per-attempt timeout, classify a failure ([`crate::error::classify`]) and either
//! return, retry elsewhere at once (the node looked dead), or back off with jitter and retry
//! (the cluster said "not now") while the request's deadline and attempt budget allow. A write
//! that may have been applied is returned as [`ClientError::UnknownOutcome`], never retried.
//!
//! A background task refreshes the ring every `ring_refresh` and on demand (routing errors);
//! it holds only a weak reference and stops when the last clone of the client is dropped.
//!
//! Not here: placement (`kvstore_proto::ring`), status mapping (`error.rs`), connections
//! (`pool.rs`), ordering decisions (`routing.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvstore_proto::{CLUSTER_SECRET_HEADER, ConsistencyLevel, Version, pb};
use tokio::sync::{Notify, oneshot};
use tonic::metadata::{Ascii, MetadataValue};

use crate::backoff::Backoff;
use crate::error::{Classified, Disposition, Op, attempt_timed_out, classify};
use crate::pool::{Node, Pool};
use crate::routing::{MAX_CANDIDATES, order_candidates};
use crate::topology::Topology;
use crate::{ClientConfig, ClientError};

/// The generated KVStore stub, as the pool holds one per node.
type KvClient = pb::kv_store_client::KvStoreClient<tonic::transport::Channel>;

/// Shortest gap between two on-demand ring refreshes, so a burst of routing errors costs one
/// fetch, not one per failed request.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

/// Per-read options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Overrides the cluster's default R.
    pub consistency: Option<ConsistencyLevel>,
}

/// Per-write options.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Overrides the cluster's default W.
    pub consistency: Option<ConsistencyLevel>,
    /// Time to live in milliseconds (> 0).
    pub ttl_ms: Option<u64>,
}

/// What a get returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    /// The live value, if any.
    pub value: Option<Bytes>,
    /// Its version (or the tombstone's, for a deleted key); `None` when never written.
    pub version: Option<Version>,
    /// Absolute expiry in ms since the Unix epoch; 0 means never.
    pub expires_at_ms: u64,
    /// Address of the node that coordinated the request.
    pub coordinator: String,
}

/// What a put returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// The version the write was given.
    pub version: Version,
    /// Address of the coordinating node.
    pub coordinator: String,
}

/// What a delete returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteResult {
    /// The tombstone's version.
    pub version: Version,
    /// Address of the coordinating node.
    pub coordinator: String,
}

/// A connection to a kvstore cluster. Cheap to clone; clones share connections and the ring.
///
/// Creating a client costs one ring fetch; connections are opened lazily, one HTTP/2
/// connection per node, multiplexing every concurrent request of every clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Where an operation may be sent.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// The replicas of this key first, then any server (any node can coordinate).
    Key(&'a [u8]),
    /// Any server.
    Any,
    /// Only this node (status, local reads, leave).
    Node(&'a Arc<Node>),
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    backoff: Backoff,
    secret: Option<MetadataValue<Ascii>>,
    pool: Pool,
    /// The seeds' connections, kept as a last resort whatever the ring says.
    seeds: Vec<Arc<Node>>,
    /// The current view; replaced whole, read by cloning the `Arc` (no lock across `.await`).
    topology: RwLock<Arc<Topology>>,
    /// Wakes the background refresher for an on-demand refresh.
    refresh_wanted: Arc<Notify>,
    /// Spreads requests without a ring over the known servers.
    round_robin: AtomicUsize,
    /// Dropped with the last clone: stops the background refresher.
    _stop: oneshot::Sender<()>,
}

impl Client {
    /// Connects to the cluster through `config.seeds`: fetches the ring from the first seed
    /// that answers. Fails with [`ClientError::NoServers`] when no seed can be reached at all,
    /// and with [`ClientError::InvalidArgument`] for a bad configuration. When seeds answer but
    /// refuse the ring (e.g. a cluster secret is required), the client still works, trying
    /// every known server in turn.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        config.validate()?;
        let pool = Pool::new(
            config.connect_timeout,
            config.tls.clone(),
            config.local_address,
        );
        let seeds = config
            .seeds
            .iter()
            .map(|s| pool.get(s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let secret = match &config.cluster_secret {
            Some(s) => Some(s.parse().map_err(|_| {
                ClientError::InvalidArgument("cluster_secret: must be visible ASCII".into())
            })?),
            None => None,
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let inner = Arc::new(Inner {
            backoff: Backoff {
                initial: config.initial_backoff,
                max: config.max_backoff,
            },
            secret,
            topology: RwLock::new(Arc::new(Topology::seeds_only(seeds.clone()))),
            seeds,
            pool,
            refresh_wanted: Arc::new(Notify::new()),
            round_robin: AtomicUsize::new(0),
            _stop: stop_tx,
            config,
        });
        match inner.refresh_ring().await {
            Ok(()) => {}
            Err(e @ ClientError::NoServers(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "no ring from any seed: trying every server in turn")
            }
        }
        let refresh = Arc::clone(&inner.refresh_wanted);
        tokio::spawn(refresher(Arc::downgrade(&inner), refresh, stop_rx));
        Ok(Self { inner })
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str, opts: ReadOptions) -> Result<GetResult, ClientError> {
        let request = pb::GetRequest {
            key: key.to_string(),
            consistency: wire_consistency(opts.consistency),
        };
        let (resp, node) = self
            .keyed(Op::Read, key, request, |mut kv, req| async move {
                kv.get(req).await
            })
            .await?;
        Ok(GetResult {
            value: resp.exists.then_some(resp.value),
            version: resp
                .version
                .map(Version::from)
                .filter(|v| *v != Version::default()),
            expires_at_ms: resp.expires_at_ms,
            coordinator: node.addr.clone(),
        })
    }

    /// Writes `value` under `key`.
    pub async fn put(
        &self,
        key: &str,
        value: Bytes,
        opts: WriteOptions,
    ) -> Result<PutResult, ClientError> {
        let request = pb::PutRequest {
            key: key.to_string(),
            value,
            ttl_ms: opts.ttl_ms,
            consistency: wire_consistency(opts.consistency),
            return_old_value: false,
            // Reading the previous value costs a replica read per put; this library does not
            // return it.
            skip_old_value: true,
        };
        let (resp, node) = self
            .keyed(Op::Write, key, request, |mut kv, req| async move {
                kv.put(req).await
            })
            .await?;
        Ok(PutResult {
            version: assigned_version(resp.version, &node, "put")?,
            coordinator: node.addr.clone(),
        })
    }

    /// Deletes `key` (writes a tombstone).
    pub async fn delete(&self, key: &str, opts: WriteOptions) -> Result<DeleteResult, ClientError> {
        let request = pb::DeleteRequest {
            key: key.to_string(),
            consistency: wire_consistency(opts.consistency),
        };
        let (resp, node) = self
            .keyed(Op::Write, key, request, |mut kv, req| async move {
                kv.delete(req).await
            })
            .await?;
        Ok(DeleteResult {
            version: assigned_version(resp.version, &node, "delete")?,
            coordinator: node.addr.clone(),
        })
    }

    /// Sends `request` about `key` to a coordinator chosen by the ring, with retries as `op`
    /// allows; each attempt carries the time left as its gRPC deadline.
    async fn keyed<Req, Resp, F, Fut>(
        &self,
        op: Op,
        key: &str,
        request: Req,
        call: F,
    ) -> Result<(Resp, Arc<Node>), ClientError>
    where
        Req: Clone,
        F: Fn(KvClient, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let attempts = self.inner.config.max_attempts;
        let (resp, node) = self
            .inner
            .run(op, Target::Key(key.as_bytes()), attempts, |node, budget| {
                let mut req = tonic::Request::new(request.clone());
                req.set_timeout(budget);
                call(node.kv.clone(), req)
            })
            .await?;
        Ok((resp.into_inner(), node))
    }

    /// The ring as the cluster reports it (fetched now, from any node); also refreshes this
    /// client's routing.
    pub async fn ring(&self) -> Result<pb::RingStateResponse, ClientError> {
        let ring = self
            .inner
            .fetch_ring(Target::Any, self.inner.config.max_attempts)
            .await?;
        self.inner.install(&ring)?;
        Ok(ring)
    }

    /// One node's status.
    pub async fn status(&self, addr: &str) -> Result<pb::NodeStatusResponse, ClientError> {
        let node = self.inner.pool.get(addr)?;
        let (resp, _) = self
            .inner
            .run(
                Op::Read,
                Target::Node(&node),
                self.inner.config.max_attempts,
                |node, budget| {
                    let mut internal = node.internal.clone();
                    let req = self
                        .inner
                        .internal_request(pb::NodeStatusRequest {}, budget);
                    async move { internal.node_status(req).await }
                },
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// Runs a repair cycle on the node at `addr` now (over the arcs meeting `ranges`, every
    /// arc it replicates when empty), calling `progress` with each exchange's report as it
    /// ends; returns the summary (`done` set). No deadline: a repair takes as long as the
    /// data it compares; the cycle belongs to the node and goes on if this call gives up.
    pub async fn repair(
        &self,
        addr: &str,
        ranges: Vec<pb::TokenRange>,
        mut progress: impl FnMut(&pb::RepairProgress),
    ) -> Result<pb::RepairProgress, ClientError> {
        let node = self.inner.pool.get(addr)?;
        let mut internal = node.internal.clone();
        let req = self.inner.internal_request(
            pb::RepairRequest { ranges },
            Duration::from_secs(7 * 24 * 3600),
        );
        let fail = |s: tonic::Status| crate::error::classify(&s, Op::Read, addr).error;
        let mut stream = internal.repair(req).await.map_err(fail)?.into_inner();
        while let Some(p) = stream.message().await.map_err(fail)? {
            if p.done {
                return Ok(p);
            }
            progress(&p);
        }
        Err(ClientError::UnknownOutcome(format!(
            "{addr}: the repair stream ended without a summary (the node may have stopped)"
        )))
    }

    /// One replica's stored entry for `key`, bypassing coordination and read repair.
    pub async fn local_read(
        &self,
        addr: &str,
        key: &str,
    ) -> Result<pb::LocalReadResponse, ClientError> {
        let node = self.inner.pool.get(addr)?;
        let (resp, _) = self
            .inner
            .run(
                Op::Read,
                Target::Node(&node),
                self.inner.config.max_attempts,
                |node, budget| {
                    let mut internal = node.internal.clone();
                    let req = self.inner.internal_request(
                        pb::LocalReadRequest {
                            key: key.to_string(),
                        },
                        budget,
                    );
                    async move { internal.local_read(req).await }
                },
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// Asks node `node_id` to leave the cluster and waits for the handoff. The node is found in
    /// the ring; the call is a write (it moves data), so a lost answer is an unknown outcome.
    /// The leave itself belongs to the node: it goes on if this call gives up, and asking again
    /// while it runs waits for the same leave.
    pub async fn leave(&self, node_id: u32) -> Result<pb::LeaveResponse, ClientError> {
        let ring = self.ring().await?;
        let member = ring
            .members
            .iter()
            .find(|m| m.id == node_id)
            .ok_or_else(|| {
                let known: Vec<u32> = ring.members.iter().map(|m| m.id).collect();
                ClientError::InvalidArgument(format!(
                    "node_id: {node_id} is not a member (members: {known:?})"
                ))
            })?;
        let node = self.inner.pool.get(&member.address)?;
        let (resp, _) = self
            .inner
            .run(
                Op::Write,
                Target::Node(&node),
                self.inner.config.max_attempts,
                |node, budget| {
                    let mut internal = node.internal.clone();
                    let req = self
                        .inner
                        .internal_request(pb::LeaveRequest { node_id }, budget);
                    async move { internal.leave(req).await }
                },
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// Removes the dead node `node_id` from the ring for good and waits while every live member
    /// copies its ranges to their new owners (Cassandra's `nodetool removenode`). Any live
    /// node runs it; the removal belongs to that node and goes on if this call gives up, and
    /// asking again repeats it harmlessly. Refused while `node_id` is not judged down.
    pub async fn remove_node(&self, node_id: u32) -> Result<pb::RemoveNodeResponse, ClientError> {
        let (resp, _) = self
            .inner
            .run(
                Op::Write,
                Target::Any,
                self.inner.config.max_attempts,
                |node, budget| {
                    let mut internal = node.internal.clone();
                    let req = self
                        .inner
                        .internal_request(pb::RemoveNodeRequest { node_id }, budget);
                    async move { internal.remove_node(req).await }
                },
            )
            .await?;
        Ok(resp.into_inner())
    }

    /// The addresses of every server this client currently knows (ring members that have not
    /// left, plus the seeds).
    pub fn known_servers(&self) -> Vec<String> {
        self.inner
            .snapshot()
            .all
            .iter()
            .map(|n| n.addr.clone())
            .collect()
    }

    /// The ring version routing currently uses; `None` when no ring is known and requests go
    /// to every server in turn.
    pub fn ring_version(&self) -> Option<u64> {
        self.inner.snapshot().ring_version
    }

    /// The key's replicas (node addresses, primary first) by this client's current ring;
    /// empty when no ring is known.
    pub fn replicas_of(&self, key: &str) -> Vec<String> {
        let topo = self.inner.snapshot();
        let Some(routes) = &topo.routes else {
            return Vec::new();
        };
        routes
            .replicas(key.as_bytes())
            .iter()
            .filter_map(|id| topo.members.get(id).map(|m| m.node.addr.clone()))
            .collect()
    }
}

/// The version a write was given; a write answered without one has an unknown outcome.
fn assigned_version(
    version: Option<pb::Version>,
    node: &Node,
    what: &str,
) -> Result<Version, ClientError> {
    version.map(Version::from).ok_or_else(|| {
        ClientError::UnknownOutcome(format!("{}: {what} answered without a version", node.addr))
    })
}

/// The wire value of an optional consistency level.
fn wire_consistency(level: Option<ConsistencyLevel>) -> i32 {
    level.map_or(pb::Consistency::Default, ConsistencyLevel::to_wire) as i32
}

impl Inner {
    /// The current topology snapshot.
    fn snapshot(&self) -> Arc<Topology> {
        Arc::clone(&self.topology.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A NodeInternal request carrying the cluster secret, if configured, and a deadline.
    fn internal_request<T>(&self, msg: T, budget: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Some(secret) = &self.secret {
            req.metadata_mut()
                .insert(CLUSTER_SECRET_HEADER, secret.clone());
        }
        req.set_timeout(budget);
        req
    }

    /// The next node to try: the best-ranked candidate not yet in `tried`, or, when every
    /// candidate was tried, the best one again (a new round).
    fn pick(&self, topo: &Topology, target: Target<'_>, tried: &[Arc<Node>]) -> Option<Arc<Node>> {
        let untried = |n: &Arc<Node>| !tried.iter().any(|t| Arc::ptr_eq(t, n));
        if let Target::Node(node) = target {
            return Some(Arc::clone(node));
        }
        if let (Target::Key(key), Some(routes)) = (target, &topo.routes) {
            let mut order = [0u32; MAX_CANDIDATES];
            let len = order_candidates(routes.replicas(key), |id| topo.health(id), &mut order);
            let mut first = None;
            for id in &order[..len] {
                if let Some(m) = topo.members.get(id) {
                    if untried(&m.node) {
                        return Some(Arc::clone(&m.node));
                    }
                    first.get_or_insert(&m.node);
                }
            }
            // Every replica tried: any other server can coordinate.
            if let Some(n) = self.best_of_all(topo, &untried) {
                return Some(n);
            }
            if let Some(n) = first {
                return Some(Arc::clone(n));
            }
        }
        self.best_of_all(topo, &untried)
            .or_else(|| self.best_of_all(topo, &|_| true))
    }

    /// The healthiest node of `topo.all` passing `filter`, starting from a rotating offset so
    /// that requests without a ring spread over every server.
    fn best_of_all(
        &self,
        topo: &Topology,
        filter: &dyn Fn(&Arc<Node>) -> bool,
    ) -> Option<Arc<Node>> {
        let len = topo.all.len();
        if len == 0 {
            return None;
        }
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % len;
        (0..len)
            .map(|i| &topo.all[(start + i) % len])
            .filter(|n| filter(n))
            .min_by_key(|n| topo.node_health(n))
            .cloned()
    }

    /// Runs one logical request: attempts, classification, retries and backoff within the
    /// request deadline. Returns the response and the node that answered.
    async fn run<T, F, Fut>(
        &self,
        op: Op,
        target: Target<'_>,
        max_attempts: u32,
        mut attempt: F,
    ) -> Result<(T, Arc<Node>), ClientError>
    where
        F: FnMut(Arc<Node>, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut tried: Vec<Arc<Node>> = Vec::new();
        let mut retries = 0u32;
        let mut last: Option<ClientError> = None;
        for _ in 0..max_attempts {
            let topo = self.snapshot();
            let Some(node) = self.pick(&topo, target, &tried) else {
                break;
            };
            drop(topo);
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let budget = self.config.attempt_timeout.min(deadline - now);
            let Classified { disposition, error } =
                match tokio::time::timeout(budget, attempt(Arc::clone(&node), budget)).await {
                    Ok(Ok(resp)) => {
                        node.clear_suspect();
                        return Ok((resp, node));
                    }
                    Ok(Err(status)) => {
                        let c = classify(&status, op, &node.addr);
                        if c.disposition == Disposition::MaybeApplied
                            && std::error::Error::source(&status).is_some()
                        {
                            // The connection broke under the request: avoid the node a while.
                            node.mark_suspect(self.config.suspect_period);
                        }
                        c
                    }
                    Err(_) => {
                        node.mark_suspect(self.config.suspect_period);
                        attempt_timed_out(op, &node.addr, budget)
                    }
                };
            tracing::debug!(node = %node.addr, ?disposition, error = %error, "attempt failed");
            let new_round = tried.iter().any(|t| Arc::ptr_eq(t, &node));
            let pause = match disposition {
                Disposition::Final => return Err(error),
                Disposition::MaybeApplied if op == Op::Write => return Err(error),
                // A dead node: the next replica at once, unless every one was tried already.
                Disposition::NotSent | Disposition::MaybeApplied => {
                    if disposition == Disposition::NotSent {
                        node.mark_suspect(self.config.suspect_period);
                        self.refresh_wanted.notify_one();
                    }
                    new_round
                }
                Disposition::RetryDefinite { refresh_ring } => {
                    if refresh_ring {
                        self.refresh_wanted.notify_one();
                    }
                    true
                }
            };
            if new_round {
                tried.clear();
            }
            tried.push(node);
            last = Some(error);
            if pause {
                let delay = self.backoff.delay(retries, rand::random::<f64>());
                retries += 1;
                if Instant::now() + delay >= deadline {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::NoServers(format!(
                "no attempt possible within {} ms",
                self.config.request_timeout.as_millis()
            ))
        }))
    }

    /// Fetches the ring from `target`, in at most `max_attempts` attempts.
    async fn fetch_ring(
        &self,
        target: Target<'_>,
        max_attempts: u32,
    ) -> Result<pb::RingStateResponse, ClientError> {
        let (resp, _) = self
            .run(Op::Read, target, max_attempts, |node, budget| {
                let mut internal = node.internal.clone();
                let req = self.internal_request(pb::RingStateRequest {}, budget);
                async move { internal.get_ring_state(req).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Fetches the ring from the first server that answers, trying each known one once, and
    /// installs it. A single pass (no backoff): the background loop retries later.
    async fn refresh_ring(&self) -> Result<(), ClientError> {
        let candidates: Vec<Arc<Node>> = {
            let topo = self.snapshot();
            let mut all = topo.all.clone();
            all.sort_by_key(|n| topo.node_health(n));
            all
        };
        let mut last = ClientError::NoServers("no server known".into());
        for node in &candidates {
            match self.fetch_ring(Target::Node(node), 1).await {
                Ok(ring) => return self.install(&ring),
                // Every node shares the secret: no point asking the others.
                Err(e @ ClientError::Unauthenticated(_)) => return Err(e),
                Err(e) => {
                    // Keep the most telling error: a server's answer beats "unreachable".
                    if matches!(last, ClientError::NoServers(_)) {
                        last = e;
                    }
                }
            }
        }
        Err(last)
    }

    /// Replaces the topology with the one `ring` describes, unless it is older than the
    /// current one.
    fn install(&self, ring: &pb::RingStateResponse) -> Result<(), ClientError> {
        let topo = Topology::from_ring(ring, &self.pool, &self.seeds)?;
        if topo.routes.is_none() {
            return Ok(());
        }
        let mut current = self.topology.write().unwrap_or_else(|p| p.into_inner());
        if current.ring_version.is_some_and(|v| v > ring.ring_version) {
            return Ok(());
        }
        self.pool.retain(&topo.addresses());
        *current = Arc::new(topo);
        Ok(())
    }
}

/// Refreshes the ring every `ring_refresh`, or sooner when asked, until the client is dropped.
async fn refresher(inner: Weak<Inner>, wanted: Arc<Notify>, mut stop: oneshot::Receiver<()>) {
    let period = match inner.upgrade() {
        Some(i) => i.config.ring_refresh,
        None => return,
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(period) => {}
            _ = wanted.notified() => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = inner.refresh_ring().await {
            tracing::debug!(error = %e, "ring refresh failed");
        }
        drop(inner);
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(MIN_REFRESH_GAP) => {}
        }
    }
}
