//! The Redis driver: one multiplexed connection to the primary per loadgen client (the `redis`
//! crate on tokio), with `WAIT` for the write quorum when the scenario asks for W > 1.
//!
//! Versions. Redis has no per-write version, so every write runs a Lua script that draws the
//! next value of one store-wide counter (`INCR loadgen:clock`) and stores it beside the value
//! in a hash (`v` = version, `d` = data). Scripts run one at a time on the primary, so the
//! counter orders writes exactly as Redis applied them, the way etcd's revision does; the
//! checker's version order is that counter (node id 0). A delete keeps a tombstone (the hash
//! with `v` and no `d`), so a later read reports the delete's version as kvstore does. With a
//! TTL the whole hash expires, which the checker treats as an expired value.
//!
//! Durability and replication are the server's (`appendfsync`, asynchronous replicas); `WAIT
//! n` only says that n replicas received the write. A write the primary applied but fewer than
//! n replicas confirmed within the deadline is `unknown`, not `fail`: it may survive.
//! Reads go to the primary, which makes them linearizable while it lives.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kvstore_client::Version;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Script, ServerErrorKind};

use super::OpReport;
use super::outcome::{Failure, classify};
use super::store::Store;
use crate::scenario::ClusterSpec;

/// Shortest time between two connection attempts of one client after a failed one: while the
/// primary is down, each request still fails (as unavailable) instead of queueing, but the
/// clients do not spin on `connect` as fast as the kernel refuses them.
const RECONNECT_INTERVAL: Duration = Duration::from_millis(10);

/// The key holding the store-wide version counter.
pub const CLOCK_KEY: &str = "loadgen:clock";

const PUT: &str = r#"
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'v', v, 'd', ARGV[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('PERSIST', KEYS[1])
end
return v
"#;

const DELETE: &str = r#"
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'v', v)
redis.call('HDEL', KEYS[1], 'd')
redis.call('PERSIST', KEYS[1])
return v
"#;

/// How the driver writes.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Replicas `WAIT` must hear from before a write is acknowledged (W - 1; 0: no WAIT).
    pub wait_replicas: u32,
    /// Per-request deadline (the connection's response timeout, and WAIT's).
    pub timeout: Duration,
}

impl RedisOptions {
    /// The options a scenario's cluster asks for: W counts the primary, so `WAIT W-1`.
    pub fn for_spec(spec: &ClusterSpec, timeout: Duration) -> Self {
        Self {
            wait_replicas: spec
                .write_quorum
                .saturating_sub(1)
                .min(spec.node_count().saturating_sub(1)),
            timeout,
        }
    }
}

/// One client's connection to a Redis primary (`endpoints[0]`; the others are its replicas).
pub struct RedisDriver {
    primary: String,
    replicas: Vec<String>,
    client: redis::Client,
    config: AsyncConnectionConfig,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// When the last connection attempt failed.
    failed_at: Mutex<Option<Instant>>,
    /// Connections to single members for [`RedisDriver::get_at`], one per address, reused
    /// for every key (the final reads of a large key space would otherwise open one socket
    /// per key and member, and run out of ephemeral ports).
    members: Mutex<std::collections::HashMap<String, MultiplexedConnection>>,
    opts: RedisOptions,
    put: Script,
    delete: Script,
}

impl std::fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDriver")
            .field("primary", &self.primary)
            .field("replicas", &self.replicas)
            .field("opts", &self.opts)
            .finish()
    }
}

/// What a Redis error tells about the request's effect.
pub fn failure_of(e: &RedisError) -> Failure {
    if e.is_connection_refusal() {
        return Failure::NotSent;
    }
    match e.kind() {
        redis::ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown) => {
            Failure::Unavailable
        }
        redis::ErrorKind::Server(_) => match e.code() {
            // min-replicas-to-write refused the write before applying it.
            Some("NOREPLICAS") => Failure::Unavailable,
            _ => Failure::Refused,
        },
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => Failure::Refused,
        // I/O errors, timeouts, dropped connections: the command may have run.
        _ => Failure::Indeterminate,
    }
}

fn config(timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout.min(Duration::from_secs(2))))
        .set_response_timeout(Some(timeout))
}

fn url(addr: &str) -> String {
    format!("redis://{addr}/")
}

impl RedisDriver {
    /// Connects to the primary `endpoints[0]`; fails when it cannot.
    pub async fn connect(endpoints: &[String], opts: RedisOptions) -> Result<Self, String> {
        let primary = endpoints
            .first()
            .ok_or("no Redis endpoint given")?
            .to_string();
        let client = redis::Client::open(url(&primary)).map_err(|e| format!("{primary}: {e}"))?;
        let config = config(opts.timeout);
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| format!("{primary}: {e}"))?;
        Ok(Self {
            primary,
            replicas: endpoints[1..].to_vec(),
            client,
            config,
            conn: Mutex::new(Some(conn)),
            failed_at: Mutex::new(None),
            members: Mutex::new(Default::default()),
            opts,
            put: Script::new(PUT),
            delete: Script::new(DELETE),
        })
    }

    /// The primary's address.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    /// The replicas' addresses.
    pub fn replicas(&self) -> &[String] {
        &self.replicas
    }

    /// The open connection, or a new one (after the primary restarted).
    async fn connection(&self) -> Result<MultiplexedConnection, Failure> {
        if let Some(c) = self.conn.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(c.clone());
        }
        let last = *self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = last {
            tokio::time::sleep_until((t + RECONNECT_INTERVAL).into()).await;
        }
        match self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
        {
            Ok(c) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
                Ok(c)
            }
            Err(_) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Err(Failure::NotSent)
            }
        }
    }

    /// Classifies `e`, dropping the connection when it may be broken so the next request
    /// reconnects.
    fn fail(&self, e: &RedisError) -> Failure {
        let f = failure_of(e);
        if f == Failure::Indeterminate || f == Failure::NotSent {
            *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        f
    }

    async fn write(&self, script: &Script, key: &str, value: Option<&[u8]>, ttl: u64) -> OpReport {
        let mut conn = match self.connection().await {
            Ok(c) => c,
            Err(f) => return OpReport::failed(classify(f)),
        };
        let mut inv = script.key(key);
        inv.key(CLOCK_KEY);
        if let Some(v) = value {
            inv.arg(v).arg(ttl);
        }
        let version: u64 = match inv.invoke_async(&mut conn).await {
            Ok(v) => v,
            Err(e) => return OpReport::failed(classify(self.fail(&e))),
        };
        if self.opts.wait_replicas > 0 {
            let acked: Result<u64, _> = redis::cmd("WAIT")
                .arg(self.opts.wait_replicas)
                .arg(self.opts.timeout.as_millis() as u64)
                .query_async(&mut conn)
                .await;
            match acked {
                Ok(n) if n >= self.opts.wait_replicas as u64 => {}
                // Applied on the primary, not confirmed by enough replicas: it may survive.
                Ok(_) => return OpReport::failed(classify(Failure::Indeterminate)),
                Err(e) => {
                    self.fail(&e);
                    return OpReport::failed(classify(Failure::Indeterminate));
                }
            }
        }
        OpReport::written(version_of(version), self.primary.clone())
    }

    /// Reads `key` from the server at `addr` (a replica, for the history's final reads),
    /// over a connection of its own to that server.
    pub async fn get_at(&self, addr: &str, key: &str) -> OpReport {
        let cached = self
            .members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            .cloned();
        let mut conn = match cached {
            Some(c) => c,
            None => {
                let client = match redis::Client::open(url(addr)) {
                    Ok(c) => c,
                    Err(e) => return OpReport::failed(classify(failure_of(&e))),
                };
                match client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
                {
                    Ok(c) => {
                        self.members
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(addr.to_string(), c.clone());
                        c
                    }
                    Err(e) => return OpReport::failed(classify(failure_of(&e))),
                }
            }
        };
        match read(&mut conn, key, addr).await {
            Ok(r) => r,
            Err(r) => {
                // Reconnect next time.
                self.members
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(addr);
                r
            }
        }
    }

    /// Waits until every replica has received every write the primary applied (`WAIT` for
    /// all of them), up to `timeout`.
    pub async fn wait_replicated(&self, timeout: Duration) -> Result<(), String> {
        let want = self.replicas.len() as u64;
        if want == 0 {
            return Ok(());
        }
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(
                &config(self.opts.timeout).set_response_timeout(Some(timeout * 2)),
            )
            .await
            .map_err(|e| format!("{}: {e}", self.primary))?;
        let n: u64 = redis::cmd("WAIT")
            .arg(want)
            .arg(timeout.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("{}: WAIT: {e}", self.primary))?;
        if n < want {
            return Err(format!(
                "only {n} of {want} replicas caught up with {} within {timeout:?}",
                self.primary
            ));
        }
        Ok(())
    }
}

fn version_of(counter: u64) -> Version {
    Version {
        hlc: counter,
        node: 0,
    }
}

async fn read(
    conn: &mut MultiplexedConnection,
    key: &str,
    addr: &str,
) -> Result<OpReport, OpReport> {
    let (v, d): (Option<u64>, Option<Bytes>) = redis::cmd("HMGET")
        .arg(key)
        .arg("v")
        .arg("d")
        .query_async(conn)
        .await
        .map_err(|e| OpReport::failed(classify(failure_of(&e))))?;
    Ok(OpReport {
        outcome: Ok(()),
        read_value: Some(d),
        version: v.map(version_of),
        coordinator: addr.to_string(),
        expires_at_ms: 0,
        read_version: None,
    })
}

impl Store for RedisDriver {
    async fn get(&self, key: &str) -> OpReport {
        let mut conn = match self.connection().await {
            Ok(c) => c,
            Err(f) => return OpReport::failed(classify(f)),
        };
        match read(&mut conn, key, &self.primary).await {
            Ok(r) => r,
            Err(r) => {
                if r.outcome == Err(kvstore_client::ErrorKind::UnknownOutcome) {
                    *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                r
            }
        }
    }

    async fn put(&self, key: &str, value: Bytes, ttl_ms: Option<u64>) -> OpReport {
        let put = &self.put;
        self.write(put, key, Some(&value), ttl_ms.unwrap_or(0))
            .await
    }

    async fn delete(&self, key: &str) -> OpReport {
        let delete = &self.delete;
        self.write(delete, key, None, 0).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_refusals_are_definite_and_io_errors_unknown() {
        let loading = RedisError::from((
            redis::ErrorKind::Server(ServerErrorKind::BusyLoading),
            "loading",
        ));
        assert_eq!(failure_of(&loading), Failure::Unavailable);
        let readonly = RedisError::from((
            redis::ErrorKind::Server(ServerErrorKind::ReadOnly),
            "read only",
        ));
        assert_eq!(failure_of(&readonly), Failure::Refused);
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(failure_of(&reset), Failure::Indeterminate);
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(failure_of(&refused), Failure::NotSent);
    }

    #[test]
    fn wait_counts_replicas_besides_the_primary() {
        let spec = ClusterSpec {
            write_quorum: 2,
            ..ClusterSpec::default()
        };
        assert_eq!(
            RedisOptions::for_spec(&spec, Duration::from_secs(1)).wait_replicas,
            1
        );
        let one = ClusterSpec {
            nodes: 1,
            replication: 1,
            read_quorum: 1,
            write_quorum: 1,
            ..ClusterSpec::default()
        };
        assert_eq!(
            RedisOptions::for_spec(&one, Duration::from_secs(1)).wait_replicas,
            0
        );
    }
}
