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
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kvstore_client::{Client, ClientConfig, pb};

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
const FAST: &[&str] = &[
    "--gossip-interval-ms",
    "300",
    "--ping-interval-ms",
    "250",
    "--suspect-after-ms",
    "1500",
    "--down-after-ms",
    "3000",
    "--transition-grace-ms",
    "500",
    "--request-timeout-ms",
    "3000",
    "--fsync",
    "never",
];

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

/// One server process.
pub struct Node {
    pub id: u32,
    pub addr: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// Starts node `id` on `listen` (port 0 for a free one) and waits until it is ready.
    pub fn start(id: u32, listen: &str, data_dir: PathBuf, extra: &[String]) -> Node {
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            id.to_string(),
            "--listen".into(),
            listen.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        args.extend(FAST.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        let (child, addr) = spawn(&args);
        Node {
            id,
            addr,
            data_dir,
            args,
            child: Some(child),
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the process stays, its sockets accept, nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let pid = self.pid().expect("node running");
        // SAFETY: signalling a child this test started, by its own PID.
        let rc = unsafe { libc::kill(pid as i32, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Restarts a killed node on the same address and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} still running", self.id);
        let mut args = self.args.clone();
        let i = args.iter().position(|a| a == "--listen").expect("listen");
        args[i + 1] = self.addr.clone();
        let (child, addr) = spawn(&args);
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    /// Waits (bounded) for the process to exit by itself; returns whether it did.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let Some(c) = self.child.as_mut() else {
            return true;
        };
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(_)) = c.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused process must be able to die.
            // SAFETY: our own child's PID.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
        }
        self.kill();
    }
}

fn spawn(args: &[String]) -> (Child, String) {
    let exe = std::env::current_exe().expect("test executable");
    let joined = args.join(&ARG_SEP.to_string());
    let mut cmd = Command::new(exe);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the server when
    // the thread that started it ends, so no server outlives a crashed or killed test.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .args(["--exact", ENTRY_TEST, "--nocapture", "--test-threads=1"])
        .env(SERVER_ARGS_ENV, joined)
        .env(
            "RUST_LOG",
            std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the server process");
    // Killed on drop until handed over: a panic below must not leak the process.
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().expect("just set");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // Keep draining after the receiver is gone so the child never blocks on a pipe.
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + START_DEADLINE;
    let mut addr = None;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // The test harness may print its own text before the server's on a line.
            Ok(line) if line.contains("listening on ") => {
                let at = line.find("listening on ").expect("found") + "listening on ".len();
                addr = Some(line[at..].trim().to_string());
            }
            Ok(line) if line.trim().ends_with("ready") && addr.is_some() => break,
            Ok(_) => {}
            Err(_) => panic!(
                "server {args:?} did not become ready: {:?}",
                child.try_wait()
            ),
        }
    }
    let child = guard.0.take().expect("still held");
    (child, addr.expect("a 'listening on' line before 'ready'"))
}

/// Kills and reaps a child that was not handed over.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `n` nodes: node 1 first, the others joining through it.
pub fn start_cluster(dir: &Path, n: u32, extra: &[&str]) -> Vec<Node> {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let first = Node::start(1, "127.0.0.1:0", dir.join("n1"), &extra);
    let seed = first.addr.clone();
    let mut nodes = vec![first];
    for id in 2..=n {
        let mut e = extra.clone();
        e.extend(["--join".to_string(), seed.clone()]);
        nodes.push(Node::start(
            id,
            "127.0.0.1:0",
            dir.join(format!("n{id}")),
            &e,
        ));
    }
    nodes
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
