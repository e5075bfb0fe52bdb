//! The simulated network: every call between simulated nodes (and from simulated clients) is
//! routed in memory to the target node's gRPC services, and every message on the way is judged
//! against the fault rules of the moment.
//!
//! Endpoints are numbered (nodes by their id, clients and the operator by ids of their own).
//! A call from `a` to the node at an address first crosses the link `a -> b` (its headers),
//! then its request messages cross `a -> b` one by one, then the response headers and messages
//! cross `b -> a`. Each crossing is judged ([`Fate`]) when it happens:
//!
//! - an endpoint that is down (crashed, not serving) refuses: a call fails at once as a refused
//!   connection, a message in flight as a reset one;
//! - a cut link or a paused endpoint holds the message; it goes on when the link heals, or the
//!   call fails once it has been held longer than a TCP connection would survive (a second for
//!   a call not yet sent, [`HELD_MESSAGE_LIMIT`] for a message of an open call, as the peers'
//!   HTTP/2 keep-alive would end it);
//! - a loss rate drops a message with that probability (the call or stream breaks, as a reset
//!   connection does), drawn from the network's seeded generator;
//! - a delay holds each message of the link that long: latency, counted from when the sender
//!   handed the message over, so messages sent back to back (a call's headers and its first
//!   message, batches pipelined on a stream) travel together instead of queueing one delay
//!   behind another.
//!
//! A request that crossed and whose answer is lost has been applied: that is the unknown
//! outcome a real network produces, and the reason the checker exists. The fault rules are
//! plain data ([`Rules`]) judged by a synchronous function; the body wrapper only waits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use kvstore_server::node::Mount;
use kvstore_server::replication::channel::{ChannelError, PeerChannel, PeerNetwork};
use rand::{Rng, SeedableRng};
use tokio::time::{Instant, Sleep};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::service::Routes;
use tower::ServiceExt;

/// An endpoint of the simulated network: a node id, or a client's or the operator's id.
pub type Endpoint = u32;

/// How long a call not yet sent waits on a cut link before it fails (a TCP connect timeout).
pub const HELD_CALL_LIMIT: Duration = Duration::from_secs(1);
/// How long a message of an open call is held on a cut link before the call fails (the peers'
/// HTTP/2 keep-alive: a ping every 10 s, 5 s to answer).
pub const HELD_MESSAGE_LIMIT: Duration = Duration::from_secs(15);
/// How often a held message looks at the link again.
const HOLD_POLL: Duration = Duration::from_millis(20);

/// The fault rules in force.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Directed links that carry nothing (a partition is both directions of each cut pair).
    pub cut: BTreeSet<(Endpoint, Endpoint)>,
    /// Extra latency per directed link.
    pub delay: BTreeMap<(Endpoint, Endpoint), Duration>,
    /// Probability that a message between nodes is lost (clients' links are spared).
    pub drop_rate: f64,
    /// Paused endpoints: everything to and from them is held.
    pub paused: BTreeSet<Endpoint>,
    /// Endpoints that are down: everything to and from them is refused.
    pub down: BTreeSet<Endpoint>,
}

/// What happens to one message on a link now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fate {
    /// It crosses, after this delay.
    Deliver(Duration),
    /// It waits: the link is cut or an end is paused.
    Held,
    /// It is lost: the call breaks.
    Lost,
    /// An end is down: the connection is refused or reset.
    Refused,
}

impl Rules {
    /// The fate of a message from `from` to `to`; `roll` is a uniform draw in [0, 1) used only
    /// for the loss rate, `between_nodes` whether both ends are nodes.
    pub fn judge(&self, from: Endpoint, to: Endpoint, roll: f64, between_nodes: bool) -> Fate {
        if self.down.contains(&from) || self.down.contains(&to) {
            return Fate::Refused;
        }
        if self.cut.contains(&(from, to))
            || self.paused.contains(&from)
            || self.paused.contains(&to)
        {
            return Fate::Held;
        }
        if between_nodes && self.drop_rate > 0.0 && roll < self.drop_rate {
            return Fate::Lost;
        }
        Fate::Deliver(self.delay.get(&(from, to)).copied().unwrap_or_default())
    }
}

/// Counts of what crossed each link, for tests that show a control acts.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Calls whose request reached the target, per directed link.
    pub calls: BTreeMap<(Endpoint, Endpoint), u64>,
    /// Messages delivered, per directed link.
    pub messages: BTreeMap<(Endpoint, Endpoint), u64>,
    /// Messages lost to the loss rate.
    pub lost: u64,
    /// Calls and messages that failed after being held too long.
    pub timed_out: u64,
}

impl Traffic {
    /// Calls plus messages that reached `to` from anyone.
    pub fn received_by(&self, to: Endpoint) -> u64 {
        let calls: u64 = self
            .calls
            .iter()
            .filter(|((_, t), _)| *t == to)
            .map(|(_, n)| n)
            .sum();
        let messages: u64 = self
            .messages
            .iter()
            .filter(|((_, t), _)| *t == to)
            .map(|(_, n)| n)
            .sum();
        calls + messages
    }
}

struct State {
    rules: Rules,
    /// Address -> (node, its services), for nodes that serve.
    serving: BTreeMap<String, (Endpoint, Routes)>,
    /// Address -> node, for every node ever mounted (a down node's address is still its).
    addresses: BTreeMap<String, Endpoint>,
    nodes: BTreeSet<Endpoint>,
    rng: rand::rngs::StdRng,
    traffic: Traffic,
}

/// The network all simulated endpoints share.
pub struct SimNetwork {
    state: Mutex<State>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNetwork")
            .field("rules", &self.lock().rules)
            .finish_non_exhaustive()
    }
}

impl SimNetwork {
    /// An empty network whose losses are drawn from `seed`.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                rules: Rules::default(),
                serving: BTreeMap::new(),
                addresses: BTreeMap::new(),
                nodes: BTreeSet::new(),
                rng: rand::rngs::StdRng::seed_from_u64(seed),
                traffic: Traffic::default(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the rules.
    pub fn update(&self, f: impl FnOnce(&mut Rules)) {
        f(&mut self.lock().rules);
    }

    /// The rules in force.
    pub fn rules(&self) -> Rules {
        self.lock().rules.clone()
    }

    /// What has crossed so far.
    pub fn traffic(&self) -> Traffic {
        self.lock().traffic.clone()
    }

    /// The node's end of the network, for its peer connections.
    pub fn endpoint(self: &Arc<Self>, from: Endpoint) -> Arc<dyn PeerNetwork> {
        Arc::new(NodeLink {
            net: self.clone(),
            from,
        })
    }

    /// A channel from `from` to the node at `address` (for simulated clients).
    pub fn channel(self: &Arc<Self>, from: Endpoint, address: &str) -> PeerChannel {
        channel(self.clone(), from, address.to_owned())
    }

    /// Where `node` hands its services when it starts serving at `address`.
    pub fn mount_point(self: &Arc<Self>, node: Endpoint, address: &str) -> Box<dyn Mount> {
        {
            let mut s = self.lock();
            s.addresses.insert(address.to_owned(), node);
            s.nodes.insert(node);
        }
        Box::new(SimMount {
            net: self.clone(),
            node,
            address: address.to_owned(),
        })
    }

    /// Judges one crossing now, counting it when delivered.
    fn judge(&self, from: Endpoint, to: Endpoint, message: bool) -> Fate {
        let mut s = self.lock();
        let between_nodes = s.nodes.contains(&from) && s.nodes.contains(&to);
        let roll = if between_nodes && message && s.rules.drop_rate > 0.0 {
            s.rng.random::<f64>()
        } else {
            1.0
        };
        let fate = s.rules.judge(from, to, roll, between_nodes && message);
        match fate {
            Fate::Deliver(_) if message => *s.traffic.messages.entry((from, to)).or_default() += 1,
            Fate::Lost => s.traffic.lost += 1,
            _ => {}
        }
        fate
    }

    fn count_call(&self, from: Endpoint, to: Endpoint) {
        *self.lock().traffic.calls.entry((from, to)).or_default() += 1;
    }

    fn count_timeout(&self) {
        self.lock().traffic.timed_out += 1;
    }

    /// Waits until a call's headers may cross `from -> to` (held at most `limit`), then for the
    /// link's delay. `Err` says why it cannot.
    async fn cross(&self, from: Endpoint, to: Endpoint, limit: Duration) -> Result<(), Status> {
        let since = Instant::now();
        loop {
            match self.judge(from, to, false) {
                Fate::Deliver(d) => {
                    if !d.is_zero() {
                        tokio::time::sleep(d).await;
                    }
                    return Ok(());
                }
                Fate::Refused => return Err(refused(from, to)),
                Fate::Lost => return Err(lost(from, to)),
                Fate::Held if since.elapsed() >= limit => {
                    self.count_timeout();
                    return Err(timed_out(from, to));
                }
                Fate::Held => tokio::time::sleep(HOLD_POLL).await,
            }
        }
    }

    fn serving(&self, address: &str) -> Option<(Endpoint, Routes)> {
        self.lock().serving.get(address).cloned()
    }

    fn node_at(&self, address: &str) -> Option<Endpoint> {
        self.lock().addresses.get(address).copied()
    }
}

fn refused(from: Endpoint, to: Endpoint) -> Status {
    // Nothing was sent: the code a refused connection gets.
    Status::unavailable(format!(
        "simulated network: {to} refused a connection from {from}"
    ))
}

fn lost(from: Endpoint, to: Endpoint) -> Status {
    // The call may have been applied: not a code that says it was not.
    Status::unknown(format!(
        "simulated network: a message from {from} to {to} was lost (connection reset)"
    ))
}

fn timed_out(from: Endpoint, to: Endpoint) -> Status {
    Status::unknown(format!(
        "simulated network: the link from {from} to {to} carried nothing for too long"
    ))
}

/// A node's end of the network ([`PeerNetwork`] for its peer connections).
#[derive(Debug)]
struct NodeLink {
    net: Arc<SimNetwork>,
    from: Endpoint,
}

impl PeerNetwork for NodeLink {
    fn channel(&self, address: &str) -> Result<PeerChannel, String> {
        Ok(channel(self.net.clone(), self.from, address.to_owned()))
    }
}

fn channel(net: Arc<SimNetwork>, from: Endpoint, address: String) -> PeerChannel {
    PeerChannel::new(tower::service_fn(move |req: http::Request<Body>| {
        let (net, address) = (net.clone(), address.clone());
        async move { call(net, from, &address, req).await }
    }))
}

async fn call(
    net: Arc<SimNetwork>,
    from: Endpoint,
    address: &str,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, ChannelError> {
    let fail = |s: Status| ChannelError(Box::new(s));
    let Some(to) = net.node_at(address) else {
        return Err(fail(Status::unavailable(format!(
            "simulated network: no node at {address}"
        ))));
    };
    let (parts, body) = req.into_parts();
    // The messages the caller has ready leave with the headers (HTTP/2 sends them back to
    // back), so they are stamped now and arrive with them, not a delay after them.
    let mut body = LinkBody::new(body, net.clone(), from, to);
    body.read_ahead_now();
    net.cross(from, to, HELD_CALL_LIMIT).await.map_err(fail)?;
    let Some((_, routes)) = net.serving(address) else {
        return Err(fail(refused(from, to)));
    };
    net.count_call(from, to);
    let response = match routes
        .oneshot(http::Request::from_parts(parts, Body::new(body)))
        .await
    {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let mut body = LinkBody::new(body, net.clone(), to, from);
    body.read_ahead_now();
    // The answer crosses back; a call whose answer cannot may have been applied.
    if let Err(s) = net.cross(to, from, HELD_MESSAGE_LIMIT).await {
        return Err(fail(if s.code() == tonic::Code::Unavailable {
            Status::unknown(s.message().to_owned())
        } else {
            s
        }));
    }
    Ok(http::Response::from_parts(parts, Body::new(body)))
}

/// Frames a body reads ahead of the one crossing (a sender's window: beyond it, the sender
/// waits for the receiver, as HTTP/2 flow control would make it).
const READ_AHEAD: usize = 64;

/// A request or response body whose every data frame crosses a simulated link.
///
/// Frames are read from the sender as soon as it has them (up to [`READ_AHEAD`]) and stamped
/// with that moment: a link's delay is latency, so a frame sent while an earlier one is still
/// on its way arrives its delay after it was sent, not its delay after the earlier one
/// arrived. Each frame's fate is judged when it is next to cross, in order.
struct LinkBody {
    inner: Body,
    net: Arc<SimNetwork>,
    from: Endpoint,
    to: Endpoint,
    /// Frames read from `inner`, not yet delivered, in order.
    queue: VecDeque<Queued>,
    /// `inner` ended (after the queued frames).
    inner_done: bool,
    /// `inner` failed (after the queued frames).
    inner_error: Option<Status>,
    /// The link broke: nothing more crosses.
    broken: bool,
    /// A delay or a wait in progress for the frame at the head of the queue.
    sleep: Option<Pin<Box<Sleep>>>,
}

struct Queued {
    frame: Frame<Bytes>,
    /// When the sender handed it over.
    since: Instant,
    /// When it arrives, once judged deliverable.
    due: Option<Instant>,
    /// Whether it was held (a cut link or a pause): then its delay runs from its release.
    held: bool,
}

impl LinkBody {
    fn new(inner: Body, net: Arc<SimNetwork>, from: Endpoint, to: Endpoint) -> Self {
        Self {
            inner,
            net,
            from,
            to,
            queue: VecDeque::new(),
            inner_done: false,
            inner_error: None,
            broken: false,
            sleep: None,
        }
    }

    /// Reads what the sender already has, without a task to wake (the body's first real poll
    /// polls `inner` again, so no wake-up is lost).
    fn read_ahead_now(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.read_ahead(&mut cx);
    }

    fn read_ahead(&mut self, cx: &mut Context<'_>) {
        while !self.inner_done && self.inner_error.is_none() && self.queue.len() < READ_AHEAD {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => self.inner_done = true,
                Poll::Ready(Some(Err(e))) => self.inner_error = Some(e),
                Poll::Ready(Some(Ok(frame))) => self.queue.push_back(Queued {
                    frame,
                    since: Instant::now(),
                    due: None,
                    held: false,
                }),
            }
        }
    }

    fn deliver_head(&mut self) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.sleep = None;
        let q = self.queue.pop_front().expect("a queued frame");
        Poll::Ready(Some(Ok(q.frame)))
    }

    fn break_link(&mut self, s: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.broken = true;
        self.queue.clear();
        self.sleep = None;
        Poll::Ready(Some(Err(s)))
    }
}

impl HttpBody for LinkBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        if this.broken {
            return Poll::Ready(None);
        }
        this.read_ahead(cx);
        loop {
            let Some(head) = this.queue.front_mut() else {
                if let Some(e) = this.inner_error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                if this.inner_done {
                    return Poll::Ready(None);
                }
                // `inner` is pending: it wakes this task.
                return Poll::Pending;
            };
            if !head.frame.is_data() {
                // Trailers: they follow the data before them.
                return this.deliver_head();
            }
            if let Some(sleep) = &mut this.sleep {
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            let now = Instant::now();
            if let Some(due) = head.due {
                if now >= due {
                    return this.deliver_head();
                }
                this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
                continue;
            }
            match this.net.judge(this.from, this.to, true) {
                Fate::Deliver(d) => {
                    let due = if head.held { now + d } else { head.since + d };
                    if due <= now {
                        return this.deliver_head();
                    }
                    head.due = Some(due);
                    this.sleep = Some(Box::pin(tokio::time::sleep_until(due)));
                }
                Fate::Held if now.duration_since(head.since) >= HELD_MESSAGE_LIMIT => {
                    this.net.count_timeout();
                    return this.break_link(timed_out(this.from, this.to));
                }
                Fate::Held => {
                    head.held = true;
                    this.sleep = Some(Box::pin(tokio::time::sleep(HOLD_POLL)));
                }
                Fate::Lost => return this.break_link(lost(this.from, this.to)),
                Fate::Refused => {
                    let s = Status::unknown(format!(
                        "simulated network: connection between {} and {} reset (an end is down)",
                        this.from, this.to
                    ));
                    return this.break_link(s);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.queue.is_empty()
            && self.inner_error.is_none()
            && (self.inner_done || self.inner.is_end_stream())
    }
}

/// Hands a node's services to the network ([`Mount`]).
struct SimMount {
    net: Arc<SimNetwork>,
    node: Endpoint,
    address: String,
}

impl Mount for SimMount {
    fn mount(&mut self, routes: Routes) {
        let mut s = self.net.lock();
        s.serving.insert(self.address.clone(), (self.node, routes));
        s.rules.down.remove(&self.node);
    }

    fn unmount(&mut self) {
        self.net.lock().serving.remove(&self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_judge_each_fault() {
        let mut r = Rules::default();
        assert_eq!(r.judge(1, 2, 0.0, true), Fate::Deliver(Duration::ZERO));
        r.cut.insert((1, 2));
        assert_eq!(r.judge(1, 2, 0.9, true), Fate::Held);
        assert_eq!(r.judge(2, 1, 0.9, true), Fate::Deliver(Duration::ZERO));
        r.delay.insert((2, 1), Duration::from_millis(30));
        assert_eq!(
            r.judge(2, 1, 0.9, true),
            Fate::Deliver(Duration::from_millis(30))
        );
        r.drop_rate = 0.5;
        assert_eq!(r.judge(2, 1, 0.4, true), Fate::Lost);
        assert_eq!(
            r.judge(2, 1, 0.4, false),
            Fate::Deliver(Duration::from_millis(30))
        );
        r.paused.insert(3);
        assert_eq!(r.judge(3, 2, 0.9, true), Fate::Held);
        r.down.insert(3);
        assert_eq!(r.judge(2, 3, 0.9, true), Fate::Refused);
    }
}
