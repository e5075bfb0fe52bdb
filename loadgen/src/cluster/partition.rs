//! Network partitions between nodes: real packets dropped on real sockets.
//!
//! Each node listens on its own loopback address (`127.0.0.11`, `.12`, ...; the whole of
//! 127/8 is the loopback interface, nothing to configure) and, since the server talks to its
//! peers from its listen address, node-to-node traffic is told apart by source and destination
//! address. A cut link A->B is an iptables rule dropping every packet from A's address to B's;
//! over TCP that stalls A's connections to B and B's to A alike (their ACKs are dropped), which
//! is what a one-way partition does to a real TCP application. Clients reach every node from
//! `127.0.0.1`, which no rule names: partitions are between nodes only, unless the fault says
//! `clients = "follow"`.
//!
//! With `clients = "follow"` each client connects from its own loopback address
//! ([`client_ip`]: `127.0.1.1`, `.2`, ...) and has a home node, the node it first talked to
//! (its first seed). At the cut, every packet between a client and a node off its home's side
//! is dropped too ([`client_cuts`], [`Firewall::cut_with_clients`]), in the same chain, so the heal
//! ends both. A home's side is the nodes it reaches: itself and every node its link to is not
//! cut. For the symmetric shapes that is its part (isolate: the node alone or the others;
//! halves: its half; bridge: its half and the bridge, the bridge everyone; ring: itself and
//! its two neighbours); for one_way, a client homed on `node` loses `to`, and a client homed
//! on `to` keeps every node (its home's packets to `node` flow).
//!
//! The rules live in a chain of their own ([`CHAIN`]) inside a network namespace the run
//! creates for itself (`unshare --net`, root only), so they touch nothing outside the run and
//! vanish with it, even if the run dies; [`Firewall::heal`] flushes the chain. Chosen over a
//! TCP proxy per link: the store's own sockets see the loss (no proxy buffering that hides
//! it), and the server needs no notion of which address a peer sees it under.
//!
//! Lossy links (`kind = "link"`, action `loss`) are iptables rules too, in [`LINK_CHAIN`]:
//! `-m statistic --mode random --probability p` drops that share of a directed link's packets.
//!
//! [`cut_links`] (which directed links a shape cuts) and [`shape_of`] (the shape of a
//! `[[fault]] kind = "partition"`) are pure; [`Firewall`] runs `iptables`. A run whose scenario
//! has partitions enters its namespace through [`crate::netns`].

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::scenario::{FaultAction, FaultSpec};

/// The iptables chain holding the partition rules.
pub const CHAIN: &str = "KVSTORE-PARTITION";

/// The iptables chain holding the packet-loss rules of lossy links (`kind = "link"`), apart
/// from the partition's so that a loss and a partition each heal on their own.
pub const LINK_CHAIN: &str = "KVSTORE-LINK";

/// The nat chain that steers node-to-node connections through shaping proxies (slow links).
pub const STEER_CHAIN: &str = "KVSTORE-STEER";

/// Which links a partition cuts, over nodes `0..n` (0-based indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// One node from all the others, both ways.
    Isolate {
        /// The isolated node.
        node: usize,
    },
    /// A majority (the first `n / 2 + 1` nodes) and a minority (the rest), both ways.
    Halves,
    /// Two halves that do not reach each other, and one node (`bridge`) that reaches both.
    Bridge {
        /// The node in both halves.
        bridge: usize,
    },
    /// Packets from `from` to `to` are dropped; `to` to `from` are delivered.
    OneWay {
        /// Source of the dropped packets.
        from: usize,
        /// Destination of the dropped packets.
        to: usize,
    },
    /// Each node reaches only its two neighbours on a ring `0, 1, ..., n - 1, 0`.
    Ring,
}

/// The directed links `(from, to)` whose packets `shape` drops, over `n` nodes.
pub fn cut_links(shape: &Shape, n: usize) -> BTreeSet<(usize, usize)> {
    let all = || (0..n).flat_map(move |a| (0..n).map(move |b| (a, b)));
    let both_ways = |cut: &dyn Fn(usize, usize) -> bool| {
        all()
            .filter(|&(a, b)| a != b && (cut(a, b) || cut(b, a)))
            .collect::<BTreeSet<_>>()
    };
    match *shape {
        Shape::Isolate { node } => both_ways(&|a, _| a == node),
        Shape::Halves => {
            let majority = n / 2 + 1;
            both_ways(&|a, b| (a < majority) != (b < majority))
        }
        Shape::Bridge { bridge } => {
            // The others split in two halves around the bridge.
            let others: Vec<usize> = (0..n).filter(|&i| i != bridge).collect();
            let first: BTreeSet<usize> = others[..others.len() / 2].iter().copied().collect();
            both_ways(&|a, b| {
                a != bridge && b != bridge && first.contains(&a) != first.contains(&b)
            })
        }
        Shape::OneWay { from, to } => {
            if from != to && from < n && to < n {
                BTreeSet::from([(from, to)])
            } else {
                BTreeSet::new()
            }
        }
        Shape::Ring => both_ways(&|a, b| {
            let d = a.abs_diff(b);
            d != 1 && d != n - 1
        }),
    }
}

/// The shape partition fault `f` cuts; `None` for a heal (and for any other fault). Expects
/// a validated fault (isolate and bridge name `node`, one_way names `node` and `to`).
pub fn shape_of(f: &FaultSpec) -> Option<Shape> {
    let node = f.node_index().unwrap_or(0) as usize;
    Some(match f.action {
        FaultAction::Isolate => Shape::Isolate { node },
        FaultAction::Halves => Shape::Halves,
        FaultAction::Bridge => Shape::Bridge { bridge: node },
        FaultAction::OneWay => Shape::OneWay {
            from: node,
            to: f.to.unwrap_or_default() as usize,
        },
        FaultAction::Ring => Shape::Ring,
        _ => return None,
    })
}

/// `links` for `faults.csv`: `cut 0->2 2->0 ...` (node indexes).
pub fn describe(links: &BTreeSet<(usize, usize)>) -> String {
    let list: Vec<String> = links.iter().map(|(a, b)| format!("{a}->{b}")).collect();
    format!("cut {}", list.join(" "))
}

/// The nodes node `home` reaches while `links` are cut, over `n` nodes: itself and every
/// node its directed link to is not cut.
pub fn side_of(home: usize, links: &BTreeSet<(usize, usize)>, n: usize) -> BTreeSet<usize> {
    (0..n)
        .filter(|&j| j == home || !links.contains(&(home, j)))
        .collect()
}

/// `(client, node)` pairs cut off by a partition with `clients = "follow"`: each client
/// (index into `homes`, which holds each client's home node) loses every node off its home's
/// side ([`side_of`]). A home beyond `n` (a node that has left) keeps its client whole.
pub fn client_cuts(
    links: &BTreeSet<(usize, usize)>,
    n: usize,
    homes: &[usize],
) -> BTreeSet<(usize, usize)> {
    let mut cuts = BTreeSet::new();
    for (client, &home) in homes.iter().enumerate() {
        if home >= n {
            continue;
        }
        let side = side_of(home, links, n);
        cuts.extend((0..n).filter(|j| !side.contains(j)).map(|j| (client, j)));
    }
    cuts
}

/// Client cuts for `faults.csv`: `c2-0 c2-1` (client 2 cut off from nodes 0 and 1, both
/// ways); `none` when the shape leaves every client its whole cluster.
pub fn describe_clients(cuts: &BTreeSet<(usize, usize)>) -> String {
    if cuts.is_empty() {
        return "none".into();
    }
    let list: Vec<String> = cuts.iter().map(|(c, j)| format!("c{c}-{j}")).collect();
    list.join(" ")
}

/// The loopback address client `c` (0-based) connects from in a run whose partitions cut
/// clients (`clients = "follow"`): `127.0.1.1` on, 250 a block (up to 1024 clients stay below
/// `127.0.6.0`), apart from the nodes' `127.0.0.x` and from `127.0.0.1`.
pub fn client_ip(c: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (c / 250) as u8, 1 + (c % 250) as u8)
}

/// The loopback address node `i` (0-based) listens on in a partitionable run.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 11 + i as u8)
}

/// Whether this process can cut links: root, `unshare` and `iptables` present. `Err` says why
/// not (a test prints it when it skips).
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("partitions need root (a private network namespace and iptables)".into());
    }
    for tool in ["unshare", "iptables", "ip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "`{tool}` not found (apt-get install {}; .ci/run does)",
                if tool == "iptables" {
                    "iptables"
                } else {
                    "util-linux iproute2"
                }
            ));
        }
    }
    Ok(())
}

/// The partition rules of this network namespace.
#[derive(Debug)]
pub struct Firewall {
    _private: (),
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Firewall {
    /// Sets up the (empty) partition chain in the current network namespace, bringing the
    /// loopback interface up (a new namespace starts with it down). Call only inside a private
    /// namespace: the rules would otherwise apply to the whole machine.
    pub fn install() -> Result<Self, String> {
        run(&["ip", "link", "set", "lo", "up"])?;
        for chain in [CHAIN, LINK_CHAIN] {
            // Idempotent: an existing chain is flushed and reused.
            if run(&["iptables", "-N", chain]).is_err() {
                run(&["iptables", "-F", chain])?;
            }
            if run(&["iptables", "-C", "OUTPUT", "-j", chain]).is_err() {
                run(&["iptables", "-I", "OUTPUT", "-j", chain])?;
            }
        }
        Ok(Self { _private: () })
    }

    /// Cuts `links` (pairs of node indexes), replacing whatever was cut before.
    pub fn cut(&self, links: &BTreeSet<(usize, usize)>) -> Result<(), String> {
        self.cut_with_clients(links, &BTreeSet::new(), &[])
    }

    /// Cuts `links` and, for each `(c, j)` of `client_cuts`, the packets between client `c`
    /// (at address `clients[c]`) and node `j`, both ways; replaces whatever was cut before.
    /// One `iptables-restore` transaction: the whole partition lands at once, so no request
    /// slips through a half-installed cut (one `iptables` call per rule takes milliseconds
    /// each). Heal removes it all.
    pub fn cut_with_clients(
        &self,
        links: &BTreeSet<(usize, usize)>,
        client_cuts: &BTreeSet<(usize, usize)>,
        clients: &[Ipv4Addr],
    ) -> Result<(), String> {
        let mut rules = format!("*filter\n-F {CHAIN}\n");
        let mut drop = |src: Ipv4Addr, dst: Ipv4Addr| {
            rules.push_str(&format!("-A {CHAIN} -s {src} -d {dst} -j DROP\n"));
        };
        for &(a, b) in links {
            drop(node_ip(a), node_ip(b));
        }
        for &(c, j) in client_cuts {
            let client = *clients
                .get(c)
                .ok_or_else(|| format!("client {c} has no address"))?;
            drop(client, node_ip(j));
            drop(node_ip(j), client);
        }
        rules.push_str("COMMIT\n");
        restore(&rules)
    }

    /// Packets the rules in force dropped between a client (an address `is_client` accepts)
    /// and a node, summed (iptables counters).
    pub fn client_dropped_packets(
        &self,
        is_client: impl Fn(Ipv4Addr) -> bool,
    ) -> Result<u64, String> {
        let out = Command::new("iptables")
            .args(["-L", CHAIN, "-n", "-v", "-x"])
            .output()
            .map_err(|e| format!("cannot run iptables: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter_map(|l| {
                // pkts bytes target prot opt in out source destination
                let cols: Vec<&str> = l.split_whitespace().collect();
                let (pkts, target) = (cols.first()?, cols.get(2)?);
                let src: Ipv4Addr = cols.get(7)?.parse().ok()?;
                let dst: Ipv4Addr = cols.get(8)?.parse().ok()?;
                (*target == "DROP" && (is_client(src) || is_client(dst)))
                    .then(|| pkts.parse::<u64>().ok())?
            })
            .sum())
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<(), String> {
        run(&["iptables", "-F", CHAIN])
    }

    /// Drops each packet from node `from` to node `to` with `probability` (iptables
    /// `statistic --mode random`), replacing any loss in force.
    pub fn lose(&self, from: usize, to: usize, probability: f64) -> Result<(), String> {
        self.restore()?;
        let (src, dst) = (node_ip(from).to_string(), node_ip(to).to_string());
        let p = format!("{probability}");
        run(&[
            "iptables",
            "-A",
            LINK_CHAIN,
            "-s",
            &src,
            "-d",
            &dst,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ])
    }

    /// Steers every TCP connection node `from` opens to `target` (a node's listen address) to
    /// `proxy` instead (iptables nat `DNAT` in chain `KVSTORE-STEER`). Only connections opened
    /// after the rule are steered: install it before the nodes start.
    pub fn steer(
        &self,
        from: usize,
        target: std::net::SocketAddr,
        proxy: std::net::SocketAddr,
    ) -> Result<(), String> {
        if run(&["iptables", "-t", "nat", "-L", STEER_CHAIN, "-n"]).is_err() {
            run(&["iptables", "-t", "nat", "-N", STEER_CHAIN])?;
            run(&["iptables", "-t", "nat", "-I", "OUTPUT", "-j", STEER_CHAIN])?;
        }
        let (src, dst, port) = (
            node_ip(from).to_string(),
            target.ip().to_string(),
            target.port().to_string(),
        );
        let to = proxy.to_string();
        run(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            STEER_CHAIN,
            "-p",
            "tcp",
            "-s",
            &src,
            "-d",
            &dst,
            "--dport",
            &port,
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ])
    }

    /// Ends every link loss.
    pub fn restore(&self) -> Result<(), String> {
        run(&["iptables", "-F", LINK_CHAIN])
    }

    /// Packets dropped by the current link-loss rules, summed (iptables counters).
    pub fn lost_packets(&self) -> Result<u64, String> {
        dropped_in(LINK_CHAIN)
    }

    /// Packets dropped by the current rules, summed (iptables counters).
    pub fn dropped_packets(&self) -> Result<u64, String> {
        dropped_in(CHAIN)
    }
}

/// Applies `rules` (iptables-restore format) in one transaction, leaving other chains alone.
fn restore(rules: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run iptables-restore: {e}"))?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(rules.as_bytes()))
        .unwrap_or(Ok(()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("iptables-restore: {e}"))?;
    written.map_err(|e| format!("cannot feed iptables-restore: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables-restore failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn dropped_in(chain: &str) -> Result<u64, String> {
    let out = Command::new("iptables")
        .args(["-L", chain, "-n", "-v", "-x"])
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| l.contains("DROP"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(v: &[(usize, usize)]) -> BTreeSet<(usize, usize)> {
        v.iter().copied().collect()
    }

    #[test]
    fn isolate_cuts_one_node_both_ways() {
        assert_eq!(
            cut_links(&Shape::Isolate { node: 2 }, 3),
            links(&[(0, 2), (1, 2), (2, 0), (2, 1)])
        );
    }

    #[test]
    fn halves_cut_majority_from_minority() {
        // 5 nodes: {0,1,2} and {3,4}.
        let cut = cut_links(&Shape::Halves, 5);
        assert_eq!(cut.len(), 2 * 3 * 2);
        assert!(cut.contains(&(0, 3)) && cut.contains(&(4, 2)));
        assert!(!cut.contains(&(0, 1)) && !cut.contains(&(3, 4)));
    }

    #[test]
    fn a_bridge_reaches_both_halves_which_do_not_reach_each_other() {
        // 5 nodes, bridge 2: halves {0,1} and {3,4}.
        let cut = cut_links(&Shape::Bridge { bridge: 2 }, 5);
        for other in [0, 1, 3, 4] {
            assert!(!cut.contains(&(2, other)) && !cut.contains(&(other, 2)));
        }
        assert!(cut.contains(&(0, 3)) && cut.contains(&(4, 1)));
        assert!(!cut.contains(&(0, 1)) && !cut.contains(&(3, 4)));
        assert_eq!(cut.len(), 8);
    }

    #[test]
    fn one_way_cuts_a_single_direction() {
        assert_eq!(
            cut_links(&Shape::OneWay { from: 0, to: 1 }, 3),
            links(&[(0, 1)])
        );
        assert!(cut_links(&Shape::OneWay { from: 1, to: 1 }, 3).is_empty());
        assert!(cut_links(&Shape::OneWay { from: 0, to: 7 }, 3).is_empty());
    }

    #[test]
    fn a_ring_keeps_only_neighbours() {
        // 5 nodes: 0 reaches 1 and 4, not 2 or 3.
        let cut = cut_links(&Shape::Ring, 5);
        assert!(!cut.contains(&(0, 1)) && !cut.contains(&(0, 4)));
        assert!(cut.contains(&(0, 2)) && cut.contains(&(0, 3)));
        assert_eq!(cut.len(), 5 * 2);
        // 3 nodes: everyone is a neighbour, nothing is cut.
        assert!(cut_links(&Shape::Ring, 3).is_empty());
    }

    #[test]
    fn a_client_follows_the_side_its_home_reaches() {
        // 3 nodes, node 2 isolated; clients homed on 0, 1, 2, 2.
        let cut = cut_links(&Shape::Isolate { node: 2 }, 3);
        assert_eq!(
            client_cuts(&cut, 3, &[0, 1, 2, 2]),
            links(&[(0, 2), (1, 2), (2, 0), (2, 1), (3, 0), (3, 1)])
        );
        // Halves of 5: {0,1,2} / {3,4}.
        let cut = cut_links(&Shape::Halves, 5);
        assert_eq!(side_of(1, &cut, 5), BTreeSet::from([0, 1, 2]));
        assert_eq!(side_of(4, &cut, 5), BTreeSet::from([3, 4]));
        // Bridge 2 of 5: the bridge reaches everyone, a half its half and the bridge.
        let cut = cut_links(&Shape::Bridge { bridge: 2 }, 5);
        assert_eq!(side_of(2, &cut, 5).len(), 5);
        assert_eq!(side_of(0, &cut, 5), BTreeSet::from([0, 1, 2]));
        // one_way 0 -> 1: a client homed on 0 loses 1, one homed on 1 keeps everything.
        let cut = cut_links(&Shape::OneWay { from: 0, to: 1 }, 3);
        assert_eq!(client_cuts(&cut, 3, &[0, 1]), links(&[(0, 1)]));
        // Ring of 5: a node's neighbours.
        let cut = cut_links(&Shape::Ring, 5);
        assert_eq!(side_of(0, &cut, 5), BTreeSet::from([0, 1, 4]));
        // A home that has left the cluster cuts nothing.
        assert!(client_cuts(&cut, 5, &[7]).is_empty());
        assert_eq!(describe_clients(&links(&[(2, 0), (2, 1)])), "c2-0 c2-1");
        assert_eq!(describe_clients(&BTreeSet::new()), "none");
    }

    #[test]
    fn client_addresses_are_loopback_and_apart_from_the_nodes() {
        assert_eq!(client_ip(0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(client_ip(249), Ipv4Addr::new(127, 0, 1, 250));
        assert_eq!(client_ip(250), Ipv4Addr::new(127, 0, 2, 1));
        let all: BTreeSet<Ipv4Addr> = (0..1024).map(client_ip).collect();
        assert_eq!(all.len(), 1024);
        assert!(all.iter().all(|a| a.is_loopback() && a.octets()[2] != 0));
    }

    #[test]
    fn node_addresses_are_distinct_loopback_addresses() {
        assert_eq!(node_ip(0), Ipv4Addr::new(127, 0, 0, 11));
        assert!(node_ip(5).is_loopback());
    }
}
