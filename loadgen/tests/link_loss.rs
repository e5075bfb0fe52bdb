//! Link loss acts on real packets: with `loss` at probability 0.5 on the link from node 0's
//! address to node 1's, about half of 1000 UDP datagrams from one to the other arrive, every
//! one that does not is counted by the iptables rule (received + dropped = sent), the reverse
//! direction loses nothing, and after `restore` everything arrives. Runs inside a private
//! network namespace (`unshare --net`, the test re-runs itself there). Needs root, unshare and
//! iptables; elsewhere it skips with the reason (and fails under CI=true, which installs them).

mod netns_support;

use std::net::UdpSocket;
use std::time::Duration;

use loadgen::cluster::partition::{Firewall, node_ip};

const NAME: &str = "loss_drops_its_share_of_a_directed_link_and_restore_ends_it";

#[test]
fn loss_drops_its_share_of_a_directed_link_and_restore_ends_it() {
    if !netns_support::in_private_netns(NAME) {
        return;
    }
    let fw = Firewall::install().expect("install the chains");
    let a = UdpSocket::bind((node_ip(0), 0)).expect("bind node 0's address");
    let b = UdpSocket::bind((node_ip(1), 0)).expect("bind node 1's address");
    fw.lose(0, 1, 0.5).expect("loss on 0->1");

    let sent = 1000;
    let got = send_and_count(&a, &b, sent);
    let dropped = fw.lost_packets().expect("counters");
    println!("0->1 at p=0.5: {got} of {sent} arrived, {dropped} dropped by the rule");
    assert_eq!(
        got + dropped,
        sent,
        "every missing datagram was dropped by the rule"
    );
    assert!(
        (350..=650).contains(&dropped),
        "about half dropped (binomial sd 16), got {dropped}"
    );
    // The other direction is another link: nothing lost.
    assert_eq!(send_and_count(&b, &a, 200), 200, "1->0 delivers everything");

    fw.restore().expect("restore");
    assert_eq!(
        send_and_count(&a, &b, 200),
        200,
        "restored 0->1 delivers everything"
    );
    assert_eq!(fw.lost_packets().expect("counters"), 0, "no rule left");
}

/// Sends `n` datagrams from `from` to `to` in batches, draining `to` after each (so its
/// receive buffer never overflows), and returns how many arrived.
fn send_and_count(from: &UdpSocket, to: &UdpSocket, n: u64) -> u64 {
    to.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let dest = to.local_addr().expect("address");
    let mut got = 0;
    let mut buf = [0u8; 64];
    let mut left = n;
    while left > 0 {
        let batch = left.min(50);
        for _ in 0..batch {
            match from.send_to(b"kvstore-link-loss", dest) {
                Ok(_) => {}
                // A packet dropped in OUTPUT fails the local sender's send with EPERM (TCP
                // retransmits it instead); the rule's counter has it.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                Err(e) => panic!("send: {e}"),
            }
        }
        left -= batch;
        // Loopback delivers at once; a silence of 200 ms means the batch is all in.
        while to.recv_from(&mut buf).is_ok() {
            got += 1;
        }
    }
    got
}
