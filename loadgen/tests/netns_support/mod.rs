//! What the tests that drop real packets share. Each needs root, unshare and iptables; where
//! they are missing it skips with the reason, and fails under `CI=true` (CI installs them). A
//! test that installs rules itself re-runs alone inside a private network namespace
//! (`unshare --net`), so its rules touch nothing outside and vanish with it.
#![allow(dead_code)]

use std::process::Command;

/// Set in the environment of a test re-run inside its namespace.
pub const INSIDE: &str = "KVSTORE_TEST_IN_NETNS";

/// Whether partitions can be made here; when not, prints why and returns false (asserting
/// first that this is not CI). `what` names the test in the message.
pub fn partitions_available(what: &str) -> bool {
    match loadgen::cluster::partition::available() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{what} cannot run in CI: {why}"
            );
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// True when the caller runs inside its private namespace and goes on with the test body.
/// Otherwise re-runs test `name` of this binary alone inside one (asserting it passed), or
/// skips it, and returns false.
pub fn in_private_netns(name: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    if !partitions_available(name) {
        return false;
    }
    let me = std::env::current_exe().expect("test binary path");
    let status = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&me)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .status()
        .expect("run unshare");
    assert!(
        status.success(),
        "{name}: the test inside the namespace failed"
    );
    false
}
