//! Helpers shared by the storage integration tests: engines under test and small builders.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use kvstore_server::storage::{Engine, Entry, FsyncPolicy, Log, LogConfig, Memory, Version};

/// Milliseconds "now" for tests: a fixed point well after the epoch so TTLs are meaningful.
pub const NOW: u64 = 1_800_000_000_000;

/// A version at physical time `ms` with logical counter `logical` from `node`.
pub fn ver(ms: u64, logical: u16, node: u32) -> Version {
    Version::new((ms << 16) | u64::from(logical), node)
}

/// A value entry at `NOW + step` ms.
pub fn val(v: &str, step: u64, node: u32) -> Entry {
    Entry::value(v.as_bytes().to_vec(), ver(NOW + step, 0, node))
}

/// The configuration tests use: a small segment size so rotation and compaction happen.
pub fn config(dir: &Path, fsync: FsyncPolicy) -> LogConfig {
    let mut c = LogConfig::new(dir);
    c.fsync = fsync;
    c.segment_bytes = 4096;
    c
}

/// An engine under test, which may be reopened (a `Memory` forgets nothing on "reopen"
/// because it has nothing to reopen from; tests of durability only use `Log`).
pub enum Subject {
    Memory(Memory),
    Log {
        cfg: LogConfig,
        log: Option<Log>,
        _dir: Option<tempfile::TempDir>,
    },
}

impl Subject {
    pub fn memory() -> Self {
        Subject::Memory(Memory::new())
    }

    pub fn log() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), FsyncPolicy::Never);
        Subject::Log {
            log: Some(Log::open(cfg.clone()).unwrap()),
            cfg,
            _dir: Some(dir),
        }
    }

    pub fn log_with(cfg: LogConfig) -> Self {
        Subject::Log {
            log: Some(Log::open(cfg.clone()).unwrap()),
            cfg,
            _dir: None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Subject::Memory(_) => "memory",
            Subject::Log { .. } => "log",
        }
    }

    pub fn engine(&self) -> &dyn Engine {
        match self {
            Subject::Memory(m) => m,
            Subject::Log { log, .. } => log.as_ref().unwrap(),
        }
    }

    pub fn is_durable(&self) -> bool {
        matches!(self, Subject::Log { .. })
    }

    /// Closes and reopens a `Log`; a no-op for `Memory`.
    pub fn reopen(&mut self) {
        if let Subject::Log { cfg, log, .. } = self {
            drop(log.take());
            *log = Some(Log::open(cfg.clone()).unwrap());
        }
    }

    pub fn as_log(&self) -> Option<&Log> {
        match self {
            Subject::Log { log, .. } => log.as_ref(),
            Subject::Memory(_) => None,
        }
    }
}

/// The live value of `key` as a string, for compact assertions.
pub fn read(e: &dyn Engine, key: &str) -> Option<String> {
    e.get(key, NOW)
        .unwrap()
        .map(|e| String::from_utf8(e.value.to_vec()).unwrap())
}

/// Both engines, fresh.
pub fn subjects() -> Vec<Subject> {
    vec![Subject::memory(), Subject::log()]
}

pub fn arc_log(cfg: LogConfig) -> Arc<Log> {
    Arc::new(Log::open(cfg).unwrap())
}
