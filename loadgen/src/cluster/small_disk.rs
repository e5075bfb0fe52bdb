//! The `disk_full` fault's filesystem: a node's data directory on a small tmpfs of its own, so
//! that filling it fills exactly that node's disk and nothing else on the machine.
//!
//! [`SmallDisk::mount`] mounts the tmpfs (root only: CI runs as root; elsewhere the run stops
//! with a message saying so), [`SmallDisk::fill`] writes a filler file until the filesystem
//! answers ENOSPC, [`SmallDisk::free`] removes it, and dropping the guard unmounts (lazily,
//! so a node process that is still exiting cannot keep it mounted). The guard lives in the
//! launcher's node after the node's process, so the process is gone before the unmount.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of each node's small disk: room for every scenario's data before the fault, small
/// enough that filling it takes a moment.
pub const SMALL_DISK_MIB: u64 = 256;
/// Name of the filler file in the node's data directory (the server ignores unknown files).
const FILL_FILE: &str = "loadgen.fill";

/// A tmpfs mounted on a node's data directory; unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB on `dir` (created if missing).
    pub fn mount(dir: &Path, mib: u64) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(format!(
                "disk_full puts the node's data directory on a {mib} MiB tmpfs, which needs \
                 root (mount); run as root or leave the fault out"
            ));
        }
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m,mode=0700"))
            .arg("kvstore-loadgen")
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount of a tmpfs on {} failed ({}): {}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills the filesystem: appends to the filler file until the write fails with ENOSPC.
    /// Returns what was done.
    pub fn fill(&self) -> Result<String, String> {
        let path = self.dir.join(FILL_FILE);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let chunk = vec![0u8; 1 << 20];
        let mut written: u64 = 0;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(format!("cannot fill {}: {e}", path.display())),
            }
        }
        Ok(format!("file={FILL_FILE};filled_bytes={written}"))
    }

    /// Frees what [`Self::fill`] took. Returns what was done.
    pub fn free(&self) -> Result<String, String> {
        let path = self.dir.join(FILL_FILE);
        let len = std::fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| format!("nothing to free: {}: {e}", path.display()))?;
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot delete {}: {e}", path.display()))?;
        Ok(format!("file={FILL_FILE};freed_bytes={len}"))
    }

    /// Whether the filler is in place.
    pub fn is_full(&self) -> bool {
        self.dir.join(FILL_FILE).exists()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            tracing::warn!("cannot unmount the tmpfs on {}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounted(dir: &Path) -> bool {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let canonical = dir.canonicalize().unwrap_or(dir.to_path_buf());
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(&canonical.display().to_string()))
    }

    #[test]
    fn a_full_small_disk_refuses_writes_until_freed_and_unmounts_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("node-0");
        let disk = match SmallDisk::mount(&dir, 8) {
            Ok(d) => d,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: {e}");
                return;
            }
            Err(e) => panic!("CI runs as root: {e}"),
        };
        assert!(mounted(&dir));
        std::fs::write(dir.join("before"), b"fits").unwrap();
        let done = disk.fill().unwrap();
        assert!(disk.is_full());
        let filled: u64 = done.rsplit('=').next().unwrap().parse().unwrap();
        assert!(filled > 4 << 20, "{done}");
        let err = std::fs::write(dir.join("after"), vec![1u8; 64 << 10]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        disk.free().unwrap();
        assert!(!disk.is_full());
        std::fs::write(dir.join("after"), vec![1u8; 64 << 10]).unwrap();
        assert!(disk.free().unwrap_err().contains("nothing to free"));
        drop(disk);
        assert!(!mounted(&dir), "unmounted on drop");
    }
}
