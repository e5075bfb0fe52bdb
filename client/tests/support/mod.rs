//! Real `kvstore-server` processes for the client's end-to-end tests.
//!
//! A client test cannot use `CARGO_BIN_EXE_kvstore-server` (another package's binary), so each
//! test binary doubles as the server: [`server_entry`] (wired to a `#[test]` in every test file)
//! runs `kvstore_server::cli::main` when the process was started with [`SERVER_ARGS_ENV`]. The
//! tests start their own executable that way: a separate process per node, with the real CLI,
//! real sockets on 127.0.0.1 and a real data directory, so SIGKILL, SIGSTOP and restarts are
//! exactly what an operator would do. Processes are signalled by their own PID and killed on
//! drop.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvstore_client::{Client, ClientConfig, pb};
pub use kvstore_harness::process::NodeProcess as Node;
use kvstore_harness::process::{Launcher, NodeCommand};

/// Set (to the server's arguments, separated by [`ARG_SEP`]) when this process is a server.
pub const SERVER_ARGS_ENV: &str = "KV_CLIENT_TEST_SERVER_ARGS";
const ARG_SEP: char = '\u{1f}';
/// Name of the `#[test]` that calls [`server_entry`] in every test file.
pub const ENTRY_TEST: &str = "server_process_entry";

/// Generous: other engineers compile on the same 2 cores.
pub const START_DEADLINE: Duration = Duration::from_secs(90);
/// Deadline for cluster conditions (membership, convergence).
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

/// Membership timings that react quickly yet tolerate a loaded machine.
const FAST: &str = "--gossip-interval-ms 300 --ping-interval-ms 250 --suspect-after-ms 1500 \
                    --down-after-ms 3000 --transition-grace-ms 500 --request-timeout-ms 3000 \
                    --fsync never";

/// Runs the node when this process was started as one; returns at once otherwise.
pub fn server_entry() {
    let Ok(args) = std::env::var(SERVER_ARGS_ENV) else {
        return;
    };
    let argv = std::iter::once(OsString::from("kvstore-server"))
        .chain(args.split(ARG_SEP).map(OsString::from));
    let code = kvstore_server::cli::main(argv);
    let ok = code == std::process::ExitCode::SUCCESS;
    std::process::exit(if ok { 0 } else { 1 });
}

/// This test executable re-run as the server (only [`ENTRY_TEST`] runs, and it becomes the
/// node because [`SERVER_ARGS_ENV`] carries the flags), with [`FAST`] timings, logging at
/// `TEST_RUST_LOG` (default warn).
fn launcher() -> Launcher {
    let as_server: NodeCommand = Arc::new(|flags| {
        let mut cmd = Command::new(std::env::current_exe().expect("test executable"));
        cmd.args(["--exact", ENTRY_TEST, "--nocapture", "--test-threads=1"])
            .env(SERVER_ARGS_ENV, flags.join(&ARG_SEP.to_string()));
        cmd
    });
    let log = std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into());
    Launcher::new(as_server)
        .with_flags(FAST.split_whitespace())
        .with_env("RUST_LOG", &log)
        .with_start_timeout(START_DEADLINE)
}

/// Starts `n` nodes: node 1 first, the others joining through it.
pub fn start_cluster(dir: &Path, n: u32, extra: &[&str]) -> Vec<Node> {
    let started = launcher().start_cluster(dir, n, extra);
    started.unwrap_or_else(|e| panic!("start a {n}-node cluster: {e}"))
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `within` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `seed` reports every node of `ids` up (and the others as it may).
pub async fn wait_members_up(seed: &str, secret: Option<&str>, ids: &[u32]) {
    let config = ClientConfig {
        cluster_secret: secret.map(str::to_string),
        ..ClientConfig::with_seeds([seed])
    };
    wait_for("members up", CONVERGE_DEADLINE, || {
        let config = config.clone();
        async move {
            let client = Client::connect(config).await.ok()?;
            let ring = client.ring().await.ok()?;
            let up = ids.iter().all(|id| {
                ring.members
                    .iter()
                    .any(|m| m.id == *id && m.state == pb::MemberState::Up as i32)
            });
            up.then_some(())
        }
    })
    .await;
}

/// A free 127.0.0.1 address nobody listens on (bound, then released).
pub fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}
