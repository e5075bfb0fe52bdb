//! The link proxy acts: a round trip through a link with 100 ms of added delay takes at least
//! 200 ms (the delay is added each way) and carries the bytes unchanged; a link limited to
//! 256 KiB/s carries 1 MiB at no more than that rate (plus one chunk of burst). Behaviour, not
//! timing benchmarks: the bounds are what the proxy guarantees, whatever the machine's load.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use loadgen::cluster::link_proxy::{LinkProxy, LinkShape};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn proxy_to(target: SocketAddr, shape: LinkShape) -> LinkProxy {
    LinkProxy::start(SocketAddr::new(LOCAL, 0), LOCAL, target, shape)
        .await
        .expect("start the proxy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_trip_through_a_delayed_link_takes_at_least_twice_the_delay() {
    // An echo server behind the proxy.
    let server = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let target = server.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let delay = Duration::from_millis(100);
    let proxy = proxy_to(
        target,
        LinkShape {
            delay,
            jitter: Duration::from_millis(20),
            bytes_per_sec: None,
        },
    )
    .await;
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.set_nodelay(true).unwrap();
    for round in 0..3u8 {
        let msg = [b'k', b'v', round];
        let started = Instant::now();
        c.write_all(&msg).await.unwrap();
        let mut back = [0u8; 3];
        c.read_exact(&mut back).await.unwrap();
        let rtt = started.elapsed();
        assert_eq!(back, msg, "bytes unchanged");
        assert!(
            rtt >= 2 * delay,
            "round trip {rtt:?} under twice the added {delay:?}"
        );
    }
    assert_eq!(proxy.bytes(), 18, "3 rounds of 3 bytes, each way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_limited_link_carries_no_more_than_its_rate() {
    let server = TcpListener::bind((LOCAL, 0)).await.unwrap();
    let target = server.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut s, _) = server.accept().await.unwrap();
        let mut got = Vec::new();
        let mut first: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return (got, first.map(|f| f.elapsed()));
            }
            first.get_or_insert_with(Instant::now);
            got.extend_from_slice(&buf[..n]);
        }
    });
    let rate = 256 * 1024;
    let proxy = proxy_to(
        target,
        LinkShape {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            bytes_per_sec: Some(rate),
        },
    )
    .await;
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(&data).await.unwrap();
    c.shutdown().await.unwrap();
    let (got, span) = tokio::time::timeout(Duration::from_secs(60), sink)
        .await
        .expect("the sink finished")
        .unwrap();
    assert!(
        got == data,
        "bytes unchanged ({} of {})",
        got.len(),
        data.len()
    );
    // From the first byte's arrival, the rest (all but one 16 KiB chunk) is paced.
    let span = span.expect("bytes arrived").as_secs_f64();
    let paced = (data.len() - 16 * 1024) as f64;
    let observed = paced / span;
    println!("1 MiB through a {rate} B/s link: {observed:.0} B/s over {span:.2} s");
    assert!(
        observed <= rate as f64 * 1.05,
        "{observed:.0} B/s through a link limited to {rate} B/s"
    );
}
