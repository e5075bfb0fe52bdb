//! Configuration of the durable engine: [`LogConfig`] and the [`FsyncPolicy`].
//!
//! Plain data with defaults and `validate()`; reading flags or files is the binary's job.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use super::StorageError;
use super::io::{FileSystem, StdFs};

/// When appended records are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every write is acknowledged only after an fdatasync covering it; concurrent writers
    /// share one fdatasync (group commit).
    Always,
    /// A background thread fdatasyncs this often; a crash may lose that window of writes.
    Interval(Duration),
    /// Never fsync (the OS writes back when it likes); a power cut may lose recent writes,
    /// a killed process does not.
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Interval(d) => write!(f, "interval={}", d.as_millis()),
            Self::Never => f.write_str("never"),
        }
    }
}

/// A policy string that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fsync policy {0:?}: expected \"always\", \"interval=<ms>\" (ms >= 1) or \"never\""
)]
pub struct ParseFsyncPolicyError(String);

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match t {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => t
                .strip_prefix("interval=")
                .and_then(|ms| ms.trim().parse::<u64>().ok())
                .filter(|&ms| ms >= 1)
                .map(|ms| Self::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| ParseFsyncPolicyError(s.to_owned())),
        }
    }
}

/// How to open a [`super::Log`]. Build with [`LogConfig::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The data directory (created if missing), holding segments, the snapshot and `LOCK`.
    pub dir: PathBuf,
    /// When writes become durable. Default [`FsyncPolicy::Always`].
    pub fsync: FsyncPolicy,
    /// A segment is sealed and a new one started once it reaches this many bytes (a single
    /// record larger than this gets a segment to itself). Default 64 MiB.
    pub segment_bytes: u64,
    /// How long a tombstone (and an expired value) is kept before compaction may drop it, so a
    /// late replica of an older write cannot resurrect a deleted key. Default 1 hour.
    pub tombstone_grace: Duration,
    /// Longest key accepted by `apply`, in bytes. Default 64 KiB.
    pub max_key_bytes: usize,
    /// Largest value accepted by `apply`, in bytes. Default 8 MiB.
    pub max_value_bytes: usize,
    /// Compaction is worth running once dead bytes exceed this share of all segment bytes
    /// (see [`super::Log::compaction_due`]). Default 0.5.
    pub compaction_dead_ratio: f64,
    /// Compaction is not worth running below this many dead bytes. Default 16 MiB.
    pub compaction_min_dead_bytes: u64,
    /// Values up to this many bytes may be kept in memory next to their index entry, so reading
    /// them costs no system call. 0 disables the cache. Default 256.
    pub cache_value_max_bytes: usize,
    /// Memory for cached small values, in bytes, across the whole index. Default 64 MiB.
    pub cache_bytes: u64,
    /// The file system; tests substitute [`super::SimFs`]. Default the real one.
    pub fs: Arc<dyn FileSystem>,
}

/// How long a tombstone (or an expired value) outlives its delete before compaction may drop it.
pub const DEFAULT_TOMBSTONE_GRACE: Duration = Duration::from_secs(3600);

impl LogConfig {
    /// Defaults for a data directory: fsync always, 64 MiB segments, 1 h tombstone grace.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 * 1024 * 1024,
            tombstone_grace: DEFAULT_TOMBSTONE_GRACE,
            max_key_bytes: kvstore_proto::limits::DEFAULT_MAX_KEY_BYTES,
            max_value_bytes: kvstore_proto::limits::DEFAULT_MAX_VALUE_BYTES,
            compaction_dead_ratio: 0.5,
            compaction_min_dead_bytes: 16 * 1024 * 1024,
            cache_value_max_bytes: 256,
            cache_bytes: 64 * 1024 * 1024,
            fs: Arc::new(StdFs),
        }
    }

    /// Checks every field, naming the one that is wrong and its bound.
    pub fn validate(&self) -> Result<(), StorageError> {
        let bad = |msg: String| Err(StorageError::Config(msg));
        if self.dir.as_os_str().is_empty() {
            return bad("dir must not be empty".into());
        }
        if self.segment_bytes < 4096 {
            return bad(format!(
                "segment_bytes = {} is below the minimum of 4096",
                self.segment_bytes
            ));
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > super::record::MAX_KEY_LEN {
            return bad(format!(
                "max_key_bytes = {} must be in 1..={}",
                self.max_key_bytes,
                super::record::MAX_KEY_LEN
            ));
        }
        if self.max_value_bytes > super::record::MAX_VALUE_LEN {
            return bad(format!(
                "max_value_bytes = {} exceeds the format limit of {}",
                self.max_value_bytes,
                super::record::MAX_VALUE_LEN
            ));
        }
        if !(self.compaction_dead_ratio > 0.0 && self.compaction_dead_ratio <= 1.0) {
            return bad(format!(
                "compaction_dead_ratio = {} must be in (0, 1]",
                self.compaction_dead_ratio
            ));
        }
        if let FsyncPolicy::Interval(d) = self.fsync {
            if d.is_zero() {
                return bad("fsync interval must be at least 1 ms".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_and_displays_its_forms() {
        let cases = [
            ("always", FsyncPolicy::Always),
            ("never", FsyncPolicy::Never),
            (
                "interval=250",
                FsyncPolicy::Interval(Duration::from_millis(250)),
            ),
        ];
        for (text, policy) in cases {
            assert_eq!(text.parse::<FsyncPolicy>().unwrap(), policy);
            assert_eq!(policy.to_string(), text);
        }
        for bad in ["", "sometimes", "interval=", "interval=0", "interval=-3"] {
            let err = bad.parse::<FsyncPolicy>().unwrap_err().to_string();
            assert!(err.contains("interval=<ms>"), "{bad}: {err}");
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        let mut c = LogConfig::new("/tmp/x");
        c.validate().unwrap();
        c.segment_bytes = 10;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("segment_bytes"), "{err}");
    }
}
