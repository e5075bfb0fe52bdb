//! The version of a write: a Hybrid Logical Clock timestamp plus the coordinating node's id.
//!
//! Versions are totally ordered by `hlc`, then `node`, so every replica settles concurrent writes
//! the same way (last-write-wins) without talking to the others.

use crate::pb;

/// A write's version. The derived `Ord` compares `hlc` first, then `node`: field order matters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// HLC timestamp: high 48 bits physical milliseconds since the Unix epoch, low 16 bits a
    /// logical counter.
    pub hlc: u64,
    /// Id of the node that stamped the write; breaks ties between equal `hlc`.
    pub node: u32,
}

impl Version {
    /// Bits of the HLC used by the logical counter.
    pub const LOGICAL_BITS: u32 = 16;

    /// A version from its parts.
    pub const fn new(hlc: u64, node: u32) -> Self {
        Self { hlc, node }
    }

    /// The physical-time part of the HLC, in milliseconds since the Unix epoch.
    pub const fn physical_ms(&self) -> u64 {
        self.hlc >> Self::LOGICAL_BITS
    }

    /// The logical-counter part of the HLC.
    pub const fn logical(&self) -> u16 {
        (self.hlc & 0xFFFF) as u16
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}@{}", self.physical_ms(), self.logical(), self.node)
    }
}

impl From<pb::Version> for Version {
    fn from(v: pb::Version) -> Self {
        Self::new(v.hlc, v.node)
    }
}

impl From<Version> for pb::Version {
    fn from(v: Version) -> Self {
        pb::Version {
            hlc: v.hlc,
            node: v.node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_hlc_then_node() {
        let cases = [
            (Version::new(1, 9), Version::new(2, 0)),
            (Version::new(5, 1), Version::new(5, 2)),
            (Version::new(0, 0), Version::new(0, 1)),
        ];
        for (older, newer) in cases {
            assert!(older < newer, "{older:?} < {newer:?}");
        }
        assert_eq!(
            Version::new(7, 3).max(Version::new(7, 2)),
            Version::new(7, 3)
        );
    }

    #[test]
    fn splits_physical_and_logical() {
        let v = Version::new((1_700_000_000_000 << 16) | 42, 1);
        assert_eq!(v.physical_ms(), 1_700_000_000_000);
        assert_eq!(v.logical(), 42);
        assert_eq!(v.to_string(), "1700000000000.42@1");
    }

    #[test]
    fn round_trips_through_protobuf() {
        let v = Version::new(123_456, 7);
        assert_eq!(Version::from(pb::Version::from(v)), v);
    }
}
