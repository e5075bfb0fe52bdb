//! Errors of the storage engine.

use std::path::PathBuf;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk is full: the write was not made and is not acknowledged; reads go on.
    #[error("disk full writing {path}: the write was not applied")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// An fsync failed earlier: the engine refuses every further write (reads go on), since the
    /// kernel may have dropped dirty pages and pretending otherwise would lose acknowledged data.
    #[error("storage is read-only after an fsync failure on {path}: {reason}")]
    Poisoned {
        /// The file whose fsync failed.
        path: PathBuf,
        /// The original error.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {path} is locked by another running node")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A record on disk failed its checksum while being read for a request.
    #[error("corrupt record in {path} at offset {offset}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// The record's offset.
        offset: u64,
    },
    /// Any other I/O error, with the file it concerns.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The engine's configuration is invalid.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// An entry the engine refuses to store: an empty or oversized key, an oversized value.
    /// Nothing was written.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field (`key` or `value`).
        field: &'static str,
        /// What is wrong, with the limit.
        reason: String,
    },
}

impl StorageError {
    /// Maps an I/O error on `path`: ENOSPC becomes [`StorageError::DiskFull`], anything else
    /// [`StorageError::Io`].
    pub fn from_io(path: &std::path::Path, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Self::DiskFull {
                path: path.to_owned(),
            }
        } else {
            Self::Io {
                path: path.to_owned(),
                source,
            }
        }
    }
}
