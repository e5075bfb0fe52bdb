//! A TCP proxy for one directed link that adds latency (with jitter) and limits bandwidth.
//!
//! This kernel has no netem (`tc qdisc ... netem` is what one would use to delay packets), and
//! iptables can drop packets but not hold them, so delay and rate are done in user space: the
//! run steers connections from node A's address to node B's listen address to a proxy (an
//! iptables nat DNAT rule in the run's namespace), and the proxy connects on to B from a
//! loopback address of its own, which no rule names, so its own traffic is not steered back to
//! it. Each chunk read from one side is written to the other no earlier than `delay` (plus a
//! uniform jitter of up to `jitter`) after it was read, in order, and no faster than
//! `bytes_per_sec`. Both directions of a proxied connection are shaped (a link's replies travel
//! on A's connection too, as on a real slow link).
//!
//! [`LinkShape`] is the policy; [`LinkProxy`] the tokio task that applies it. The shape can be
//! changed while connections run ([`LinkProxy::set_shape`]): a run installs one proxy per
//! directed link at full speed before its nodes start (a connection is steered when it opens)
//! and a `slow` fault then shapes one of them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the proxy does to the bytes of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkShape {
    /// Added one-way delay of every chunk.
    pub delay: Duration,
    /// Up to this much more, uniformly drawn per chunk (order is kept).
    pub jitter: Duration,
    /// Bytes per second each direction may carry; `None`: unlimited.
    pub bytes_per_sec: Option<u64>,
}

impl LinkShape {
    /// No delay, no limit: the bytes pass as they come.
    pub const FULL_SPEED: Self = Self {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        bytes_per_sec: None,
    };
}

/// The shape every connection of a proxy reads, chunk by chunk.
type SharedShape = Arc<Mutex<LinkShape>>;

fn current(shape: &SharedShape) -> LinkShape {
    *shape.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running proxy: accepts on [`Self::addr`], forwards to its target. Stops on drop.
#[derive(Debug)]
pub struct LinkProxy {
    addr: SocketAddr,
    bytes: Arc<AtomicU64>,
    shape: SharedShape,
    task: JoinHandle<()>,
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Largest chunk read at once: also the granularity of the bandwidth limit.
const CHUNK: usize = 16 * 1024;

impl LinkProxy {
    /// Listens on `listen` (port 0: any) and forwards every connection to `target`,
    /// connecting from `source` (an address no steering rule names), shaped by `shape`.
    pub async fn start(
        listen: SocketAddr,
        source: std::net::IpAddr,
        target: SocketAddr,
        shape: LinkShape,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        Self::serve(listener, source, target, shape)
    }

    /// [`Self::start`] on a listener bound already (from synchronous code running inside a
    /// tokio runtime, as loadgen's launcher does).
    pub fn spawn(
        listener: std::net::TcpListener,
        source: std::net::IpAddr,
        target: SocketAddr,
        shape: LinkShape,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Self::serve(TcpListener::from_std(listener)?, source, target, shape)
    }

    fn serve(
        listener: TcpListener,
        source: std::net::IpAddr,
        target: SocketAddr,
        shape: LinkShape,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let bytes = Arc::new(AtomicU64::new(0));
        let shape = Arc::new(Mutex::new(shape));
        let (counted, shaped) = (bytes.clone(), shape.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let (counted, shape) = (counted.clone(), shaped.clone());
                conns.spawn(async move {
                    let socket = match TcpSocket::new_v4() {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                    if socket.bind(SocketAddr::new(source, 0)).is_err() {
                        return;
                    }
                    let Ok(outbound) = socket.connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    // Aborted with the JoinSet when the proxy stops.
                    let there = tokio::spawn(pump(ir, ow, shape.clone(), counted.clone()));
                    pump(or, iw, shape, counted).await;
                    there.abort();
                });
            }
        });
        Ok(Self {
            addr,
            bytes,
            shape,
            task,
        })
    }

    /// Shapes the link from now on (the chunks of open connections included).
    pub fn set_shape(&self, shape: LinkShape) {
        *self.shape.lock().unwrap_or_else(|p| p.into_inner()) = shape;
    }

    /// The shape in force.
    pub fn shape(&self) -> LinkShape {
        current(&self.shape)
    }

    /// Where it accepts.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bytes forwarded so far, both directions (a chunk counts once it is released).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Forwards `from` to `to`: each chunk released at its read time plus delay and jitter (never
/// before the previous one: order is kept), paced to the bandwidth.
async fn pump<R, W>(mut from: R, mut to: W, shape: SharedShape, counted: Arc<AtomicU64>)
where
    R: AsyncReadExt + Unpin + Send + 'static,
    W: AsyncWriteExt + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read_shape = shape.clone();
    let reader = tokio::spawn(async move {
        let mut last = Instant::now();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let shape = current(&read_shape);
            let jitter = if shape.jitter.is_zero() {
                Duration::ZERO
            } else {
                rand::rng().random_range(Duration::ZERO..=shape.jitter)
            };
            last = last.max(Instant::now() + shape.delay + jitter);
            if tx.send((last, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    // The bandwidth limit: the earliest instant the next byte may leave.
    let mut free_at = Instant::now();
    while let Some((release, chunk)) = rx.recv().await {
        tokio::time::sleep_until(release.max(free_at)).await;
        // Counted as it is released (before the write returns), so a reader that has seen the
        // bytes arrive also sees them counted.
        counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if to.write_all(&chunk).await.is_err() {
            break;
        }
        if let Some(rate) = current(&shape).bytes_per_sec {
            let cost = Duration::from_secs_f64(chunk.len() as f64 / rate.max(1) as f64);
            free_at = Instant::now().max(free_at) + cost;
        }
    }
    reader.abort();
    let _ = to.shutdown().await;
}
