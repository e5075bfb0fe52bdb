//! A simulated file system for crash tests: power loss and injected I/O errors.
//!
//! [`SimFs`] keeps every file in memory twice: the bytes a running process sees (the page cache)
//! and the bytes that are durable (made so by `sync_data`). Directory entries are kept twice in
//! the same way: creations, renames and removals become durable only with `sync_dir` on their
//! directory. [`SimFs::power_cycle`] throws away everything not durable, which is exactly what a
//! power cut does and what kill -9 cannot show.
//!
//! Faults: [`SimFs::crash_after_ops`] stops the machine before the Nth mutating operation
//! (every later operation fails with EIO until the power cycle), and [`SimFs::fail_nth`] makes
//! the Nth write or sync fail with a chosen errno (a failed write leaves half its bytes behind,
//! as a real short write does).
//!
//! It is a test tool shipped in the library (integration tests need it); it is deliberately
//! simple (whole-file copies on sync) and not meant for large data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::io::{DirLock, File, FileSystem};

/// Which operation an injected fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// A positional write.
    Write,
    /// A file `sync_data`.
    Sync,
}

#[derive(Debug)]
struct Fault {
    op: FaultOp,
    /// Counts down the matching operations; the fault fires when it reaches 1.
    remaining: u64,
    errno: i32,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// What a running process sees.
    names: BTreeMap<PathBuf, u64>,
    /// What survives a power cut.
    durable_names: BTreeMap<PathBuf, u64>,
    locks: HashSet<PathBuf>,
    /// Bumped at every power cycle; handles from before fail.
    generation: u64,
    /// Mutating operations performed so far.
    ops: u64,
    /// The machine stops before this mutating operation.
    crash_at: Option<u64>,
    down: bool,
    faults: Vec<Fault>,
}

impl State {
    /// Counts one mutating operation, or refuses it when the machine is (now) down.
    fn mutate(&mut self) -> io::Result<()> {
        if self.down {
            return Err(eio());
        }
        if self.crash_at.is_some_and(|at| self.ops >= at) {
            self.down = true;
            return Err(eio());
        }
        self.ops += 1;
        Ok(())
    }

    fn fault(&mut self, op: FaultOp) -> Option<io::Error> {
        let mut fired = None;
        self.faults.retain_mut(|f| {
            if f.op != op || fired.is_some() {
                return true;
            }
            if f.remaining <= 1 {
                fired = Some(io::Error::from_raw_os_error(f.errno));
                false
            } else {
                f.remaining -= 1;
                true
            }
        });
        fired
    }
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

/// A simulated file system; clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutating operations (writes, syncs, creations, renames, removals, truncations) so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Stops the machine before mutating operation number `n` (counted from the file system's
    /// creation): that operation and every later one fail with EIO, until [`Self::power_cycle`].
    pub fn crash_after_ops(&self, n: u64) {
        self.lock().crash_at = Some(n);
    }

    /// Whether the machine has stopped at its crash point.
    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// Makes the `nth` (1-based, counted from now) operation of kind `op` fail with `errno`
    /// (e.g. `libc::EIO`, `libc::ENOSPC`).
    pub fn fail_nth(&self, op: FaultOp, nth: u64, errno: i32) {
        self.lock().faults.push(Fault {
            op,
            remaining: nth.max(1),
            errno,
        });
    }

    /// A power cut and restart: every byte not synced and every directory change not made
    /// durable by a directory sync is lost; locks are released; handles opened before fail.
    pub fn power_cycle(&self) {
        let mut s = self.lock();
        s.names = s.durable_names.clone();
        let live: HashSet<u64> = s.names.values().copied().collect();
        s.inodes.retain(|ino, _| live.contains(ino));
        for inode in s.inodes.values_mut() {
            inode.data = inode.durable.clone();
        }
        s.locks.clear();
        s.generation += 1;
        s.down = false;
        s.crash_at = None;
        s.faults.clear();
    }

    /// A power cut where the disk had already written part of what was never synced: each
    /// file that only grew since its last sync keeps its synced bytes plus a prefix of the
    /// unsynced tail (its length chosen by `seed`), as a torn write leaves it. Everything else
    /// is as in [`Self::power_cycle`].
    pub fn power_cycle_torn(&self, seed: u64) {
        {
            let mut s = self.lock();
            let mut x = seed | 1;
            for inode in s.inodes.values_mut() {
                // xorshift: a cheap deterministic spread of tail lengths.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let grew = inode.data.len() > inode.durable.len()
                    && inode.data.starts_with(&inode.durable);
                if grew {
                    let extra = inode.data.len() - inode.durable.len();
                    let keep = inode.durable.len() + (x as usize % (extra + 1));
                    inode.durable = inode.data[..keep].to_vec();
                }
            }
        }
        self.power_cycle();
    }

    /// The current (page-cache) bytes of the file at `path`, for tests that corrupt files.
    pub fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.lock();
        let ino = s.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(s.inodes[ino].data.clone())
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.generation != self.generation || !s.inodes.contains_key(&self.inode) {
            return Err(eio());
        }
        f(&mut s, self.inode)
    }
}

impl File for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|s, ino| {
            if s.down {
                return Err(eio());
            }
            let data = &s.inodes[&ino].data;
            let start = usize::try_from(offset).map_err(|_| eio())?;
            let end = start.checked_add(buf.len()).ok_or_else(eio)?;
            if end > data.len() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.copy_from_slice(&data[start..end]);
            Ok(())
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|s, ino| {
            s.mutate()?;
            let fault = s.fault(FaultOp::Write);
            let n = if fault.is_some() {
                buf.len() / 2
            } else {
                buf.len()
            };
            let data = &mut s.inodes.get_mut(&ino).expect("checked").data;
            let start = offset as usize;
            if data.len() < start + n {
                data.resize(start + n, 0);
            }
            data[start..start + n].copy_from_slice(&buf[..n]);
            fault.map_or(Ok(()), Err)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|s, ino| {
            s.mutate()?;
            if let Some(err) = s.fault(FaultOp::Sync) {
                return Err(err);
            }
            let inode = s.inodes.get_mut(&ino).expect("checked");
            inode.durable = inode.data.clone();
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|s, ino| {
            s.mutate()?;
            let inode = s.inodes.get_mut(&ino).expect("checked");
            inode.data.resize(len as usize, 0);
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|s, ino| Ok(s.inodes[&ino].data.len() as u64))
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    dir: PathBuf,
    generation: u64,
}

impl DirLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.generation == self.generation {
            s.locks.remove(&self.dir);
        }
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implicit: a path's parent is its directory.
        if self.lock().down {
            return Err(eio());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        if s.down {
            return Err(eio());
        }
        Ok(s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn File>> {
        let mut s = self.lock();
        if s.down {
            return Err(eio());
        }
        let inode = match s.names.get(path) {
            Some(&ino) => ino,
            None if create => {
                s.mutate()?;
                s.next_inode += 1;
                let ino = s.next_inode;
                s.inodes.insert(ino, Inode::default());
                s.names.insert(path.to_owned(), ino);
                ino
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
            generation: s.generation,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        let ino = s.names.remove(from).ok_or_else(|| not_found(from))?;
        s.names.insert(to.to_owned(), ino);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        s.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.mutate()?;
        s.durable_names.retain(|p, _| p.parent() != Some(dir));
        let entries: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable_names.extend(entries);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut s = self.lock();
        if s.down {
            return Err(eio());
        }
        if !s.locks.insert(dir.to_owned()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(SimLock {
            state: self.state.clone(),
            dir: dir.to_owned(),
            generation: s.generation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_cycle_keeps_only_synced_bytes_and_synced_names() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        let a = fs.open(&dir.join("a"), true).unwrap();
        a.write_all_at(b"durable", 0).unwrap();
        a.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        a.write_all_at(b"-lost", 7).unwrap();
        let b = fs.open(&dir.join("b"), true).unwrap();
        b.write_all_at(b"unnamed", 0).unwrap();
        b.sync_data().unwrap(); // data synced, but the name never was
        fs.power_cycle();
        assert_eq!(fs.read_all(&dir.join("a")).unwrap(), b"durable");
        assert!(fs.read_all(&dir.join("b")).is_err());
        assert!(
            a.len().is_err(),
            "handles from before the power cut are dead"
        );
    }

    #[test]
    fn rename_is_durable_only_after_directory_sync() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        let t = fs.open(&dir.join("t"), true).unwrap();
        t.write_all_at(b"x", 0).unwrap();
        t.sync_data().unwrap();
        fs.sync_dir(dir).unwrap();
        fs.rename(&dir.join("t"), &dir.join("f")).unwrap();
        fs.power_cycle();
        assert_eq!(fs.list(dir).unwrap(), vec!["t".to_owned()]);
        fs.rename(&dir.join("t"), &dir.join("f")).unwrap();
        fs.sync_dir(dir).unwrap();
        fs.power_cycle();
        assert_eq!(fs.list(dir).unwrap(), vec!["f".to_owned()]);
    }

    #[test]
    fn injected_faults_and_crash_points_fire_where_asked() {
        let fs = SimFs::new();
        let f = fs.open(Path::new("/d/f"), true).unwrap();
        fs.fail_nth(FaultOp::Write, 2, libc::ENOSPC);
        f.write_all_at(b"1111", 0).unwrap();
        let err = f.write_all_at(b"2222", 4).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(fs.read_all(Path::new("/d/f")).unwrap(), b"111122");
        let at = fs.ops() + 1;
        fs.crash_after_ops(at);
        f.sync_data().unwrap();
        assert!(f.write_all_at(b"3", 0).is_err());
        assert!(fs.is_down());
        assert!(f.sync_data().is_err());
    }

    #[test]
    fn a_directory_lock_is_exclusive_and_released_by_a_power_cut() {
        let fs = SimFs::new();
        let guard = fs.lock_dir(Path::new("/d")).unwrap();
        assert!(fs.lock_dir(Path::new("/d")).is_err());
        fs.power_cycle();
        let _again = fs.lock_dir(Path::new("/d")).unwrap();
        drop(guard); // a stale guard must not release the new holder's lock
        assert!(fs.lock_dir(Path::new("/d")).is_err());
    }
}
