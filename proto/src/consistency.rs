//! Consistency levels and how many replica answers each one needs.

use crate::pb;

/// How many of a key's N replicas must answer: ONE, QUORUM (a majority), or ALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsistencyLevel {
    /// One replica.
    One,
    /// floor(N/2) + 1 replicas.
    Quorum,
    /// All N replicas.
    All,
}

impl ConsistencyLevel {
    /// Replica answers needed out of `n`.
    pub fn required(self, n: usize) -> usize {
        match self {
            Self::One => 1.min(n),
            Self::Quorum => n / 2 + 1,
            Self::All => n,
        }
    }

    /// The level that needs exactly `count` of `n` replicas, if there is one (ALL first: with
    /// N=1 every level needs one answer).
    pub fn for_count(count: usize, n: usize) -> Option<Self> {
        [Self::All, Self::Quorum, Self::One]
            .into_iter()
            .find(|l| l.required(n) == count && count > 0)
    }

    /// Decodes the wire value. `Ok(None)` means "use the node's default"; `Err` carries the
    /// unknown number so the server can name it.
    pub fn from_wire(raw: i32) -> Result<Option<Self>, i32> {
        match pb::Consistency::try_from(raw) {
            Ok(pb::Consistency::Default) => Ok(None),
            Ok(pb::Consistency::One) => Ok(Some(Self::One)),
            Ok(pb::Consistency::Quorum) => Ok(Some(Self::Quorum)),
            Ok(pb::Consistency::All) => Ok(Some(Self::All)),
            Err(_) => Err(raw),
        }
    }

    /// The wire value.
    pub fn to_wire(self) -> pb::Consistency {
        match self {
            Self::One => pb::Consistency::One,
            Self::Quorum => pb::Consistency::Quorum,
            Self::All => pb::Consistency::All,
        }
    }
}

impl std::str::FromStr for ConsistencyLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "one" => Ok(Self::One),
            "quorum" => Ok(Self::Quorum),
            "all" => Ok(Self::All),
            other => Err(format!(
                "unknown consistency level {other:?}: expected one, quorum or all"
            )),
        }
    }
}

impl std::fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::One => "ONE",
            Self::Quorum => "QUORUM",
            Self::All => "ALL",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_of_a_replica_count() {
        use ConsistencyLevel::*;
        assert_eq!(ConsistencyLevel::for_count(2, 3), Some(Quorum));
        assert_eq!(ConsistencyLevel::for_count(1, 3), Some(One));
        assert_eq!(ConsistencyLevel::for_count(3, 3), Some(All));
        assert_eq!(ConsistencyLevel::for_count(1, 1), Some(All));
        assert_eq!(ConsistencyLevel::for_count(2, 5), None);
        assert_eq!(ConsistencyLevel::for_count(0, 3), None);
    }

    #[test]
    fn required_answers() {
        let cases = [
            (ConsistencyLevel::One, 3, 1),
            (ConsistencyLevel::Quorum, 3, 2),
            (ConsistencyLevel::All, 3, 3),
            (ConsistencyLevel::Quorum, 1, 1),
            (ConsistencyLevel::Quorum, 4, 3),
            (ConsistencyLevel::Quorum, 5, 3),
        ];
        for (level, n, want) in cases {
            assert_eq!(level.required(n), want, "{level} of {n}");
        }
    }

    #[test]
    fn decodes_wire_values() {
        assert_eq!(ConsistencyLevel::from_wire(0), Ok(None));
        assert_eq!(
            ConsistencyLevel::from_wire(2),
            Ok(Some(ConsistencyLevel::Quorum))
        );
        assert_eq!(ConsistencyLevel::from_wire(17), Err(17));
        assert_eq!("ALL".parse(), Ok(ConsistencyLevel::All));
        assert!("most".parse::<ConsistencyLevel>().is_err());
    }
}
