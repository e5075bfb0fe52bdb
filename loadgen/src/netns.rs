//! The private network namespace of a run whose scenario cuts links between nodes.
//!
//! Partition and link faults are iptables rules, and iptables rules are per network namespace: a run
//! that needs them re-executes `loadgen run` under `unshare --net` (with `lo` brought up, as a
//! new namespace starts with it down), so its rules touch nothing outside the run and vanish
//! with it, even when the run dies. Needs root, `unshare`, `ip` and `iptables`
//! ([`crate::cluster::partition::available`]); without them the run stops with the reason.

use std::process::Command;

use crate::cluster::partition;
use crate::scenario::Scenario;

/// Set in the environment of the re-executed run: it is inside its namespace.
pub const INSIDE_ENV: &str = "KVSTORE_LOADGEN_IN_NETNS";

/// Whether `s` has faults that need the run's own network namespace.
pub fn needs_namespace(s: &Scenario) -> bool {
    s.acts_on_links()
}

/// Whether this process is a run re-executed inside its namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE_ENV).is_some()
}

/// Runs this very command line again inside a new network namespace and returns its exit
/// status (the caller exits with it). `Err` says why it cannot (not root, a tool missing).
pub fn reexec() -> Result<u8, String> {
    partition::available()
        .map_err(|why| format!("this scenario cuts links between nodes: {why}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find loadgen itself: {e}"))?;
    let status = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            r#"ip link set lo up && exec "$0" "$@""#,
        ])
        .arg(&exe)
        .args(std::env::args_os().skip(1))
        .env(INSIDE_ENV, "1")
        .status()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    // A signal's death is reported like a shell does (128 + signal), within a u8.
    Ok(match status.code() {
        Some(c) => c.clamp(0, 255) as u8,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(1) as u8,
    })
}
