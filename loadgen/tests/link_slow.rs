//! A slow link acts on real connections: with the link's proxy steered in (an iptables nat rule
//! by node address, as a run installs it), a connection node 0's address opens to node 1's
//! listener goes through the proxy (its bytes are counted there), a round trip takes at least
//! twice the added delay once the link is slowed, a connection from another node's address is
//! not steered, and at full speed again the steered connection still carries everything.
//! Runs inside a private network namespace (`unshare --net`, the test re-runs itself there).
//! Needs root, unshare and iptables; elsewhere it skips with the reason (and fails under
//! CI=true, which installs them).

mod netns_support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use loadgen::cluster::link_proxy::{LinkProxy, LinkShape};
use loadgen::cluster::partition::{Firewall, node_ip};

const NAME: &str = "a_slowed_link_delays_its_steered_connections_only";

/// An echo server on `ip`, one thread per connection.
fn echo_on(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind the echo server");
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Opens a connection from `from` to `to` (inside the runtime `rt`; returned blocking).
fn connect(rt: &tokio::runtime::Runtime, from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
            socket.connect(to).await
        })
        .expect("connect");
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

fn round_trip(s: &mut TcpStream, tag: u8) -> Duration {
    let started = Instant::now();
    s.write_all(&[b'k', b'v', tag]).unwrap();
    let mut back = [0u8; 3];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, [b'k', b'v', tag], "bytes unchanged");
    started.elapsed()
}

#[test]
fn a_slowed_link_delays_its_steered_connections_only() {
    if !netns_support::in_private_netns(NAME) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = rt.enter();
    let fw = Firewall::install().expect("install the chains");
    let node1 = echo_on(node_ip(1));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let proxy = LinkProxy::spawn(
        listener,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        node1,
        LinkShape::FULL_SPEED,
    )
    .expect("start the proxy");
    fw.steer(0, node1, proxy.addr()).expect("steer 0->1");

    let mut steered = connect(&rt, node_ip(0), node1);
    round_trip(&mut steered, 0);
    let carried = proxy.bytes();
    assert_eq!(
        carried, 6,
        "the connection from node 0 ran through the proxy"
    );

    let delay = Duration::from_millis(150);
    proxy.set_shape(LinkShape {
        delay,
        jitter: Duration::ZERO,
        bytes_per_sec: None,
    });
    for tag in 1..=3 {
        let rtt = round_trip(&mut steered, tag);
        assert!(
            rtt >= 2 * delay,
            "round trip {rtt:?} under twice the added {delay:?}"
        );
    }

    // Node 2's connection to the same listener is another link: not steered.
    let before = proxy.bytes();
    let mut other = connect(&rt, node_ip(2), node1);
    round_trip(&mut other, 9);
    assert_eq!(
        proxy.bytes(),
        before,
        "node 2's connection bypasses 0->1's proxy"
    );

    proxy.set_shape(LinkShape::FULL_SPEED);
    round_trip(&mut steered, 4);
    assert_eq!(proxy.bytes(), before + 6, "full speed again, still steered");
}
