//! The node's data directory: its lock, and the engines opened inside it.
//!
//! ```text
//! <data-dir>/node.lock     flock held while the node runs (a second node fails at start)
//! <data-dir>/hlc.ceiling   the clock's persisted high-water mark
//! <data-dir>/members       the member table
//! <data-dir>/data/         the storage engine
//! <data-dir>/hints/        the hints engine
//! ```
//!
//! Which engine backs `data/` and `hints/` is decided in [`open_engine`], one place.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage::{Engine, Memory};

/// Holds the data directory's lock until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// The locked directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` if needed and takes its exclusive lock, or fails with [`Error::Locked`].
pub fn lock(dir: &Path) -> Result<DirLock> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        context: format!("cannot create data directory {}", dir.display()),
        source,
    })?;
    let path = dir.join("node.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            context: format!("cannot open {}", path.display()),
            source,
        })?;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the kernel.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
            });
        }
        return Err(Error::Io {
            context: format!("cannot lock {}", path.display()),
            source: err,
        });
    }
    Ok(DirLock {
        _file: file,
        path: dir.to_path_buf(),
    })
}

/// Opens the engine kept in `dir` (`None`: memory only) with fsync policy `fsync`.
///
/// The durable `Log` engine replaces `Memory` here when it lands; nothing else changes.
pub fn open_engine(dir: Option<&Path>, fsync: &str) -> Result<Arc<dyn Engine>> {
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: format!("cannot create {}", dir.display()),
            source,
        })?;
    }
    let _ = fsync;
    Ok(Arc::new(Memory::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_directory_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        let err = lock(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(err.to_string().contains("locked by another running node"));
        drop(first);
        lock(dir.path()).unwrap();
    }
}
