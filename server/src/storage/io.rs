//! The file-system seam: every byte the durable engine reads or writes goes through
//! [`FileSystem`] and [`File`].
//!
//! [`StdFs`] is the real thing (positional `pread`/`pwrite` so concurrent readers never share
//! a seek position, `fdatasync`, directory fsync, `flock`). The seam exists so tests can swap in
//! [`super::SimFs`], which simulates power loss (dropping bytes and directory entries that were
//! never made durable) and injects EIO/ENOSPC; kill -9 cannot show those failures because the
//! page cache survives a killed process.
//!
//! Deliberately small: only the operations the engine needs, with `std::io::Error` as the error
//! type so the engine maps errors (ENOSPC, EIO) the same way whatever is underneath.

use std::fmt::Debug;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Name of the lock file in the data directory ([`FileSystem::lock_dir`] takes it).
pub const LOCK_FILE: &str = "LOCK";

/// Suffix of a file written under a temporary name and renamed into place once complete
/// (compacted segments, snapshots); recovery removes leftovers of a crash.
pub const TMP_SUFFIX: &str = ".tmp";

/// An open file: positional reads and writes, so no seek lock is shared between threads.
// `len` is fallible I/O here, so an `is_empty` twin would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait File: Send + Sync + Debug {
    /// Fills `buf` from `offset`; an `UnexpectedEof` error when the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`. On error, part of `buf` may have been written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
}

/// A held directory lock; dropping it releases the lock.
pub trait DirLock: Send + Sync + Debug {}

/// The directory and file operations the engine uses.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the regular files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing; creates it (empty) when `create` is set and it is
    /// missing. A created file's directory entry is durable only after [`Self::sync_dir`].
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `dir` for this process' lifetime of the guard.
    /// `Err(WouldBlock)` when another holder has it.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(std::fs::File);

impl File for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// An `flock(LOCK_EX)` held on the open `LOCK` file; closing the descriptor releases it, and
/// so does the kernel when the process dies.
#[derive(Debug)]
struct FlockGuard {
    _file: std::fs::File,
}

impl DirLock for FlockGuard {}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        // SAFETY: flock on a descriptor we own; no memory is shared with the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(FlockGuard { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = StdFs.lock_dir(dir.path()).unwrap();
        let err = StdFs.lock_dir(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(first);
        StdFs.lock_dir(dir.path()).unwrap();
    }

    #[test]
    fn positional_io_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let f = StdFs.open(&dir.path().join("f"), true).unwrap();
        f.write_all_at(b"hello world", 0).unwrap();
        f.write_all_at(b"W", 6).unwrap();
        let mut buf = [0u8; 5];
        f.read_exact_at(&mut buf, 6).unwrap();
        assert_eq!(&buf, b"World");
        assert_eq!(f.len().unwrap(), 11);
        f.set_len(5).unwrap();
        assert!(f.read_exact_at(&mut buf, 6).is_err());
        assert_eq!(StdFs.list(dir.path()).unwrap(), vec!["f".to_owned()]);
    }
}
