//! Network partitions between nodes: real packets dropped on real sockets.
//!
//! Each node listens on its own loopback address (`127.0.0.11`, `.12`, ...; the whole of
//! 127/8 is the loopback interface, nothing to configure) and, since the server talks to its
//! peers from its listen address, node-to-node traffic is told apart by source and destination
//! address. A cut link A->B is an iptables rule dropping every packet from A's address to B's;
//! over TCP that stalls A's connections to B and B's to A alike (their ACKs are dropped), which
//! is what a one-way partition does to a real TCP application. Clients reach every node from
//! `127.0.0.1`, which no rule names: partitions are between nodes only.
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
        self.heal()?;
        for &(a, b) in links {
            let (src, dst) = (node_ip(a).to_string(), node_ip(b).to_string());
            run(&[
                "iptables", "-A", CHAIN, "-s", &src, "-d", &dst, "-j", "DROP",
            ])?;
        }
        Ok(())
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
    fn node_addresses_are_distinct_loopback_addresses() {
        assert_eq!(node_ip(0), Ipv4Addr::new(127, 0, 0, 11));
        assert!(node_ip(5).is_loopback());
    }
}
