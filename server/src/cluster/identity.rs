//! Cluster identity: what two nodes must agree on to be one cluster.
//!
//! A cluster has a name (`--cluster-name`, default `kvstore`), written into every node's data
//! directory the first time the node starts there; a node started later with another name on
//! that directory refuses to start. Every gossip exchange and join announcement carries the
//! sender's [`Identity`]: the name and the settings placement depends on (N, vnodes, the key and
//! value limits). A node of another cluster, or one whose settings differ, is refused with a
//! message naming the setting and both values, instead of being merged into the ring (two
//! clusters merged by a typo in `--join` would each route keys to the other's nodes; two nodes
//! with different vnodes would place keys differently).
//!
//! Pure: comparison and the wire form. The data-directory file lives in `node::datadir`.

use kvstore_proto::pb;

use crate::config::NodeConfig;

/// A node's cluster and its placement settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The cluster's name.
    pub cluster_name: String,
    /// Replication factor N.
    pub replication_factor: u32,
    /// Virtual nodes per member.
    pub vnodes: u32,
    /// Longest key accepted, in bytes.
    pub max_key_bytes: u64,
    /// Largest value accepted, in bytes.
    pub max_value_bytes: u64,
}

impl Identity {
    /// This node's identity.
    pub fn of(config: &NodeConfig) -> Self {
        Self {
            cluster_name: config.cluster_name.clone(),
            replication_factor: config.replication_factor as u32,
            vnodes: config.vnodes,
            max_key_bytes: config.max_key_bytes as u64,
            max_value_bytes: config.max_value_bytes as u64,
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::ClusterIdentity {
        pb::ClusterIdentity {
            cluster_name: self.cluster_name.clone(),
            replication_factor: self.replication_factor,
            vnodes: self.vnodes,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
        }
    }

    /// Checks a remote node's identity against ours. `None` (a sender that does not say: a
    /// tool, or an older node) is accepted. The error names the first difference.
    pub fn check(&self, remote: Option<&pb::ClusterIdentity>) -> Result<(), String> {
        let Some(r) = remote else { return Ok(()) };
        if r.cluster_name != self.cluster_name {
            return Err(format!(
                "the other node belongs to cluster {:?}, this node to cluster {:?} \
                 (--cluster-name); nodes of different clusters never merge",
                r.cluster_name, self.cluster_name
            ));
        }
        let settings = [
            (
                "--replication-factor",
                r.replication_factor as u64,
                self.replication_factor as u64,
            ),
            ("--vnodes", r.vnodes as u64, self.vnodes as u64),
            ("--max-key-bytes", r.max_key_bytes, self.max_key_bytes),
            ("--max-value-bytes", r.max_value_bytes, self.max_value_bytes),
        ];
        for (flag, theirs, ours) in settings {
            if theirs != ours {
                return Err(format!(
                    "the other node runs with {flag} {theirs}, this node with {ours}: every \
                     node of a cluster must place keys alike, so the settings must match"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_are_refused_naming_the_setting() {
        let ours = Identity::of(&NodeConfig::default());
        assert_eq!(ours.check(None), Ok(()));
        assert_eq!(ours.check(Some(&ours.to_wire())), Ok(()));
        type Change = fn(&mut pb::ClusterIdentity);
        let cases: [(Change, &str); 5] = [
            (|w| w.cluster_name = "other".into(), "cluster \"other\""),
            (|w| w.replication_factor = 5, "--replication-factor 5"),
            (|w| w.vnodes = 8, "--vnodes 8"),
            (|w| w.max_key_bytes = 10, "--max-key-bytes 10"),
            (|w| w.max_value_bytes = 10, "--max-value-bytes 10"),
        ];
        for (change, want) in cases {
            let mut w = ours.to_wire();
            change(&mut w);
            let err = ours.check(Some(&w)).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
