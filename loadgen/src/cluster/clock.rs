//! Clock faults on loadgen's own nodes: libfaketime is preloaded under a node's process and
//! told, through a timestamp file it re-reads on every clock read, how far its wall clock is
//! off. Loadgen rewrites that file as a fault's program says (a bump once, a strobe on every
//! flip, a drift on every tick), so nothing in the server knows or can be told over the network.
//!
//! The environment (see [`faketime_env`]): `LD_PRELOAD` of the multi-threaded library (tokio
//! reads the clock from several threads), `FAKETIME_TIMESTAMP_FILE`, `FAKETIME_NO_CACHE=1` (read
//! the file on every call, so a change acts at once) and `FAKETIME_DONT_FAKE_MONOTONIC=1`
//! (timers, timeouts and the failure detector keep real monotonic time: only the wall clock,
//! which stamps versions and expiry, is wrong, as with a bad NTP server). Only nodes a scenario
//! faults get it, because re-reading the file costs a few microseconds per clock read.
//!
//! [`ClockProgram`] is the plain, clock-free logic: the offset a fault program gives at an
//! instant. Not here: when faults happen (the timeline) or what they do to the data.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kvstore_checker::{ClockAction, ClockFault};

use crate::scenario::{FaultAction, FaultSpec};

/// The multi-threaded libfaketime (Debian package `libfaketime`, pulled in by `faketime`).
pub const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The environment that puts a node's wall clock under `file`. Fails, naming the package,
/// when libfaketime is not installed.
pub fn faketime_env(file: &Path) -> Result<Vec<(String, String)>, String> {
    if !Path::new(FAKETIME_LIB).exists() {
        return Err(format!(
            "clock faults need libfaketime: {FAKETIME_LIB} is missing (apt-get install faketime)"
        ));
    }
    Ok(vec![
        ("LD_PRELOAD".into(), FAKETIME_LIB.into()),
        ("FAKETIME_TIMESTAMP_FILE".into(), file.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ])
}

/// The timestamp file's text for an offset: libfaketime's relative form, seconds with a sign
/// (`+3600.000`, `-0.250`).
pub fn file_text(offset_ms: f64) -> String {
    format!("{:+.3}\n", offset_ms / 1000.0)
}

/// Replaces `path` atomically (write, then rename): a node reading its clock file mid-write
/// must never see it empty.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// What a node's clock does: an offset from real time, possibly changing with time.
#[derive(Debug, Clone, PartialEq)]
pub enum ClockProgram {
    /// A fixed offset, ms (0 = true time).
    Fixed(f64),
    /// `base_ms + delta_ms` and `base_ms` alternately, each for `period_ms`, from `start` until
    /// `until`; `base_ms` after.
    Strobe {
        /// The offset before the strobe, held between flips and after it.
        base_ms: f64,
        /// The strobe's excursion.
        delta_ms: f64,
        /// Each position's length.
        period_ms: f64,
        /// First flip (to `base + delta`).
        start: Instant,
        /// The strobe stops.
        until: Instant,
    },
    /// `base_ms + (rate - 1) * elapsed`, from `start` until `until` (or forever); the offset
    /// reached is kept after.
    Drift {
        /// The offset when the drift began.
        base_ms: f64,
        /// Clock speed over real speed.
        rate: f64,
        /// When it began.
        start: Instant,
        /// When it stops (`None` = until the next clock fault or the heal).
        until: Option<Instant>,
    },
}

impl Default for ClockProgram {
    fn default() -> Self {
        Self::Fixed(0.0)
    }
}

impl ClockProgram {
    /// The offset from real time at `now`, ms.
    pub fn offset_ms(&self, now: Instant) -> f64 {
        match *self {
            Self::Fixed(o) => o,
            Self::Strobe {
                base_ms,
                delta_ms,
                period_ms,
                start,
                until,
            } => {
                if now >= until || now < start {
                    return base_ms;
                }
                let flips = (now.duration_since(start).as_secs_f64() * 1000.0 / period_ms) as u64;
                if flips % 2 == 0 {
                    base_ms + delta_ms
                } else {
                    base_ms
                }
            }
            Self::Drift {
                base_ms,
                rate,
                start,
                until,
            } => {
                let end = until.map_or(now, |u| u.min(now));
                let elapsed = end.saturating_duration_since(start).as_secs_f64() * 1000.0;
                base_ms + (rate - 1.0) * elapsed
            }
        }
    }

    /// The program after clock fault `f` applied at `now`; `until` is the fault's `until_s` as
    /// an instant. Process faults leave it unchanged.
    pub fn after(&self, f: &FaultSpec, now: Instant, until: Option<Instant>) -> Self {
        let current = self.offset_ms(now);
        match f.action {
            FaultAction::Bump => Self::Fixed(current + f.delta_ms.unwrap_or_default() as f64),
            FaultAction::Strobe => Self::Strobe {
                base_ms: current,
                delta_ms: f.delta_ms.unwrap_or_default() as f64,
                period_ms: f.period_ms.unwrap_or(1000).max(1) as f64,
                start: now,
                until: until.unwrap_or(now),
            },
            FaultAction::Drift => Self::Drift {
                base_ms: current,
                rate: f.rate.unwrap_or(1.0),
                start: now,
                until,
            },
            FaultAction::Reset => Self::Fixed(0.0),
            // Not a clock fault: the clock's program stays as it is.
            _ => self.clone(),
        }
    }
}

/// One node's faked clock: its timestamp file, its program and what the file holds.
#[derive(Debug)]
pub struct NodeClock {
    /// The timestamp file libfaketime reads.
    pub file: PathBuf,
    /// What the clock does.
    pub program: ClockProgram,
    written: String,
}

impl NodeClock {
    /// A clock at true time, its file created.
    pub fn create(file: PathBuf) -> std::io::Result<Self> {
        let written = file_text(0.0);
        write_atomic(&file, &written)?;
        Ok(Self {
            file,
            program: ClockProgram::default(),
            written,
        })
    }

    /// Rewrites the file if the program's offset at `now` changed what it should say.
    pub fn tick(&mut self, now: Instant) -> std::io::Result<()> {
        let text = file_text(self.program.offset_ms(now));
        if text != self.written {
            write_atomic(&self.file, &text)?;
            self.written = text;
        }
        Ok(())
    }

    /// Switches to `program` and writes the file at once.
    pub fn set(&mut self, program: ClockProgram, now: Instant) -> std::io::Result<()> {
        self.program = program;
        self.tick(now)
    }
}

/// The `faults.csv` detail of a clock fault: its parameters.
pub fn detail(f: &FaultSpec) -> String {
    let mut parts = Vec::new();
    if let Some(d) = f.delta_ms {
        parts.push(format!("delta_ms={d}"));
    }
    if let Some(p) = f.period_ms {
        parts.push(format!("period_ms={p}"));
    }
    if let Some(r) = f.rate {
        parts.push(format!("rate={r}"));
    }
    parts.join(";")
}

/// The clock action of the history's clock record for `a` (`None` for process faults).
pub fn record_action(a: FaultAction) -> Option<ClockAction> {
    match a {
        FaultAction::Bump => Some(ClockAction::Bump),
        FaultAction::Strobe => Some(ClockAction::Strobe),
        FaultAction::Drift => Some(ClockAction::Drift),
        FaultAction::Reset => Some(ClockAction::Reset),
        _ => None,
    }
}

/// The clock record's entry for clock fault `f` applied to node index `node` (node id
/// `node + 1`) at history time `from_ns`; a strobe ends at `strobe_until_ns`.
pub fn record_fault(
    f: &FaultSpec,
    node: u32,
    addr: &str,
    from_ns: u64,
    strobe_until_ns: Option<u64>,
) -> Option<ClockFault> {
    let action = record_action(f.action)?;
    Some(ClockFault {
        node: node + 1,
        addr: addr.to_string(),
        action,
        from_ns,
        until_ns: if action == ClockAction::Strobe {
            strobe_until_ns
        } else {
            None
        },
        delta_ms: f.delta_ms.unwrap_or_default(),
        period_ms: f.period_ms,
        rate: f.rate,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::scenario::{FaultKind, NodeSelector};

    fn fault(action: FaultAction) -> FaultSpec {
        FaultSpec {
            at_s: 0.0,
            action,
            node: NodeSelector::Index(0),
            kind: Some(FaultKind::Clock),
            delta_ms: None,
            period_ms: None,
            rate: None,
            until_s: None,
            to: None,
            probability: None,
            delay_ms: None,
            jitter_ms: None,
            bytes_per_sec: None,
            clients: None,
        }
    }

    #[test]
    fn programs_give_the_offsets_their_faults_describe() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let bump = ClockProgram::default().after(
            &FaultSpec {
                delta_ms: Some(3_600_000),
                ..fault(FaultAction::Bump)
            },
            t0,
            None,
        );
        assert_eq!(bump.offset_ms(at(10_000)), 3_600_000.0);
        // A second bump adds to the first.
        let back = bump.after(
            &FaultSpec {
                delta_ms: Some(-600_000),
                ..fault(FaultAction::Bump)
            },
            at(1),
            None,
        );
        assert_eq!(back.offset_ms(at(2)), 3_000_000.0);
        let strobe = ClockProgram::default().after(
            &FaultSpec {
                delta_ms: Some(2000),
                period_ms: Some(100),
                ..fault(FaultAction::Strobe)
            },
            t0,
            Some(at(1000)),
        );
        let seen: Vec<f64> = [0, 50, 150, 250, 350, 999, 1000, 5000]
            .iter()
            .map(|&ms| strobe.offset_ms(at(ms)))
            .collect();
        assert_eq!(
            seen,
            vec![2000.0, 2000.0, 0.0, 2000.0, 0.0, 0.0, 0.0, 0.0],
            "flips every period, true time after"
        );
        let drift = ClockProgram::default().after(
            &FaultSpec {
                rate: Some(1.5),
                ..fault(FaultAction::Drift)
            },
            t0,
            Some(at(2000)),
        );
        assert!((drift.offset_ms(at(1000)) - 500.0).abs() < 1e-6);
        assert!(
            (drift.offset_ms(at(9000)) - 1000.0).abs() < 1e-6,
            "kept after"
        );
        let reset = drift.after(&fault(FaultAction::Reset), at(3000), None);
        assert_eq!(reset.offset_ms(at(3001)), 0.0);
    }

    #[test]
    fn the_file_is_rewritten_only_when_the_offset_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n0.faketime");
        let mut c = NodeClock::create(path.clone()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "+0.000\n");
        let now = Instant::now();
        c.set(ClockProgram::Fixed(-250.0), now).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "-0.250\n");
        std::fs::remove_file(&path).unwrap();
        c.tick(now).unwrap();
        assert!(!path.exists(), "unchanged offset, no write");
        assert_eq!(file_text(3_600_000.0), "+3600.000\n");
    }
}
