//! loadgen's error type: one enum for the library, so the binary can say precisely what failed
//! (a scenario field, a node that would not start, a results file) and callers can match on it.

use std::path::PathBuf;

/// Why a loadgen operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The scenario file is unreadable, malformed or asks for something impossible.
    #[error("{}: {field}: {why}", file.display())]
    Scenario {
        /// The scenario file.
        file: PathBuf,
        /// Dotted path of the offending field (`workload.zipfian_theta`, `fault[2].node`).
        field: String,
        /// What is wrong and what is allowed.
        why: String,
    },
    /// A node process could not be started, or the cluster did not form in time.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The load phase failed (too many errors to leave a meaningful key space).
    #[error("load phase: {0}")]
    Load(String),
    /// The echo ceiling could not be measured.
    #[error("echo ceiling: {0}")]
    Echo(String),
    /// A results file could not be read or written.
    #[error("{}: {why}", path.display())]
    Results {
        /// The file.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// Two runs could not be compared (missing file, missing column, mismatched rows).
    #[error("compare: {0}")]
    Compare(String),
    /// Recording or finishing the history failed.
    #[error("history: {0}")]
    History(String),
    /// Ctrl-C: the run was stopped and every launched process ended.
    #[error("interrupted")]
    Interrupted,
}

impl LoadgenError {
    /// A results error for `path` from anything displayable.
    pub fn results(path: impl Into<PathBuf>, why: impl std::fmt::Display) -> Self {
        Self::Results {
            path: path.into(),
            why: why.to_string(),
        }
    }
}
