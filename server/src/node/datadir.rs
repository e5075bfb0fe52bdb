//! The node's data directory: its lock, and the engines opened inside it.
//!
//! ```text
//! <data-dir>/node.lock     flock held while the node runs (a second node fails at start)
//! <data-dir>/cluster       the name of the cluster this directory belongs to
//! <data-dir>/hlc.ceiling   the clock's persisted high-water mark
//! <data-dir>/members       the member table
//! <data-dir>/data/         the storage engine
//! <data-dir>/hints/        the hints engine
//! ```
//!
//! Which engine backs `data/` and `hints/` is decided in [`open_engine`], one place: the
//! durable `Log` with a data directory, `Memory` without one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage::io::FileSystem;
use crate::storage::{Engine, FsyncPolicy, Log, LogConfig, Memory, StorageError};

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

/// Binds the data directory to `cluster_name`: written the first time (atomically, durably),
/// checked every later start. A directory of another cluster is refused: serving its keys in
/// this cluster would mix two clusters' data.
pub fn bind_cluster(dir: &Path, cluster_name: &str) -> Result<()> {
    let path = dir.join("cluster");
    match std::fs::read_to_string(&path) {
        Ok(found) if found.trim() == cluster_name => Ok(()),
        Ok(found) => Err(Error::Config(format!(
            "data directory {} belongs to cluster {:?}, not {:?} (--cluster-name): start it \
             with its own cluster's name, or use an empty directory",
            dir.display(),
            found.trim(),
            cluster_name
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let io = |source| Error::Io {
                context: format!("cannot write {}", path.display()),
                source,
            };
            let tmp = dir.join("cluster.tmp");
            {
                use std::io::Write;
                let mut f = File::create(&tmp).map_err(io)?;
                f.write_all(format!("{cluster_name}\n").as_bytes())
                    .map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            std::fs::rename(&tmp, &path).map_err(io)?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)
        }
        Err(source) => Err(Error::Io {
            context: format!("cannot read {}", path.display()),
            source,
        }),
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

/// An opened engine, and the durable engine behind it when there is one (maintenance asks
/// it whether compaction is due).
pub struct Opened {
    /// The engine requests use.
    pub engine: Arc<dyn Engine>,
    /// The same engine as a [`Log`], when it is durable.
    pub log: Option<Arc<Log>>,
}

/// Opens the engine kept in `dir` on `fs` (`None`: in memory, nothing survives a restart) with fsync
/// policy `fsync` and the node's key and value limits (hint keys carry a 9-byte prefix, so the
/// key limit gets that much headroom).
pub fn open_engine(
    fs: Arc<dyn FileSystem>,
    dir: Option<&Path>,
    fsync: &str,
    max_key_bytes: usize,
    max_value_bytes: usize,
    tombstone_grace: std::time::Duration,
) -> Result<Opened> {
    let Some(dir) = dir else {
        return Ok(Opened {
            engine: Arc::new(Memory::new()),
            log: None,
        });
    };
    let mut cfg = LogConfig::new(dir);
    cfg.fsync = fsync
        .parse::<FsyncPolicy>()
        .map_err(|e| Error::Config(format!("--fsync: {e}")))?;
    cfg.max_key_bytes = max_key_bytes + 16;
    cfg.max_value_bytes = max_value_bytes;
    cfg.tombstone_grace = tombstone_grace;
    cfg.fs = fs;
    let log = Arc::new(Log::open(cfg).map_err(|e| match e {
        StorageError::Locked { path } => Error::Locked { path },
        other => Error::Storage(other),
    })?);
    Ok(Opened {
        engine: log.clone(),
        log: Some(log),
    })
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
