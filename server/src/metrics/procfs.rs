//! Reading one process's CPU time and resident memory from Linux's `/proc`.
//!
//! CPU time is `utime + stime` of `/proc/PID/stat` (fields 14 and 15, in clock ticks, converted
//! with `sysconf(_SC_CLK_TCK)`); resident memory is `VmRSS` of `/proc/PID/status`. The parsers
//! are plain functions over the file text so they are tested without a process.
//!
//! The node reads itself with it for `process_cpu_seconds_total` and
//! `process_resident_memory_bytes`; loadgen reads the nodes it launched.

use std::path::Path;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcReading {
    /// User plus system CPU seconds the process has used since it started.
    pub cpu_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`. The command name (field 2)
/// is in parentheses and may itself contain spaces or `)`, so fields are counted from the last
/// `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: field 3 (state) is index 0, so utime (14) is index 11, stime (15) is 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in bytes from the text of `/proc/PID/status` (the kernel writes it in kB).
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = parts.next().unwrap_or("kB");
    Some(match unit {
        "kB" => value * 1024,
        "mB" | "MB" => value * 1024 * 1024,
        _ => value,
    })
}

/// Reads process `pid` from `root` (normally `/proc`); `None` once it has exited (or is a
/// zombie, which has no `VmRSS`).
pub fn read_process(root: &Path, pid: u32, ticks_per_s: f64) -> Option<ProcReading> {
    let dir = root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    Some(ProcReading {
        cpu_s: parse_stat_ticks(&stat)? as f64 / ticks_per_s,
        rss_bytes: parse_status_rss(&status)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A real line shape, with a name holding spaces and a ')'.
        let stat = "4242 (node) x) y) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 2500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("4242 (short) S 1 2"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn vmrss_is_read_in_bytes() {
        let status =
            "Name:\tkvstore-server\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss(status), Some(12345 * 1024));
        // A zombie has no VmRSS line.
        assert_eq!(parse_status_rss("Name:\tx\nState:\tZ (zombie)\n"), None);
    }

    #[test]
    fn this_process_reads_back_with_memory_and_cpu() {
        let me = std::process::id();
        // Burn a little CPU so utime is surely counted.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let r = read_process(Path::new("/proc"), me, clock_ticks()).expect("own /proc entry");
        assert!(r.rss_bytes > 1024 * 1024, "{r:?}");
        assert!(r.cpu_s >= 0.0, "{r:?}");
        assert!(read_process(Path::new("/proc"), u32::MAX - 1, 100.0).is_none());
    }
}
