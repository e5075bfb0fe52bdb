//! kvstore programs run as child processes: a node (or loadgen's echo server) started as its
//! own OS process, so SIGKILL, SIGSTOP and restarts are exactly what an operator would do, and
//! signalled only through the PID it was given (never by name). loadgen's local launcher, the
//! benchmarks and the integration tests of every crate start their nodes through here.
//!
//! A [`ChildProcess`] is killed (SIGKILL, then reaped) when dropped, so an error or a panic
//! leaves nothing running; on Linux the child also gets `PR_SET_PDEATHSIG`, so even a
//! SIGKILLed parent leaks no node. [`NodeProcess`] adds what a node is: an id, and an address
//! and data directory that a restart comes back to.
//!
//! A node announces itself on stdout: `listening on ADDR` once bound (see `kvstore_server::cli`), then
//! `ready` once it serves. The match is on the line's content rather than its whole text
//! because a test harness re-executed as a server may print its own text before them.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

const LISTENING: &str = "listening on ";
const READY: &str = "ready";

/// How often a bounded wait checks whether the process exited.
const EXIT_POLL: Duration = Duration::from_millis(50);

/// Which announcement on stdout means the process has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// `listening on ADDR`: the socket is bound.
    Listening,
    /// `listening on ADDR`, then `ready`: a node that serves (joined, ranges streamed).
    Ready,
}

/// A running child process, killed on drop.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    name: String,
}

impl ChildProcess {
    /// Spawns `cmd` as it is configured.
    pub fn spawn(name: &str, mut cmd: Command) -> std::io::Result<Self> {
        // SAFETY: prctl is async-signal-safe; this runs in the forked child before exec and only
        // asks the kernel to SIGKILL the child when the thread that started it exits.
        #[cfg(target_os = "linux")]
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(Self {
            child: cmd.spawn()?,
            name: name.to_string(),
        })
    }

    /// Spawns `program args...` with stdout and stderr appended to `log` (discarded without one).
    pub fn spawn_logged(
        name: &str,
        program: &Path,
        args: &[String],
        log: Option<&Path>,
    ) -> std::io::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        match log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                cmd.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        Self::spawn(name, cmd)
    }

    /// Spawns `cmd` with stdout piped and waits up to `timeout` for `until`; returns the process
    /// and the address it announced. stderr stays as `cmd` has it (inherited by default). Later
    /// stdout is drained and discarded, so the child never blocks on a full pipe.
    pub fn spawn_announced(
        name: &str,
        mut cmd: Command,
        until: Announcement,
        timeout: Duration,
    ) -> std::io::Result<(Self, String)> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut me = Self::spawn(name, cmd)?;
        let stdout = me
            .child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // Keep reading after the receiver is gone.
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + timeout;
        let mut addr = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find(LISTENING) {
                        addr = Some(line[at + LISTENING.len()..].trim().to_string());
                    } else if addr.is_some() && line.trim().ends_with(READY) {
                        break;
                    }
                    if until == Announcement::Listening && addr.is_some() {
                        break;
                    }
                }
                Err(_) => {
                    let status = me.child.try_wait();
                    me.kill();
                    let wanted = match until {
                        Announcement::Listening => "`listening on ADDR`",
                        Announcement::Ready => "`listening on ADDR` and `ready`",
                    };
                    return Err(std::io::Error::other(format!(
                        "{name} did not print {wanted} within {timeout:?} (exit status: {status:?})"
                    )));
                }
            }
        }
        let addr = addr.expect("the loop ends only once an address was seen");
        Ok((me, addr))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to this process only.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        // SAFETY: kill(2) with our own child's PID; no memory is shared.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// SIGSTOP: the process stays and its sockets accept, but nothing answers. Returns once
    /// the kernel reports every thread stopped (on Linux), so nothing the caller sends after
    /// this is handled before [`ChildProcess::resume`]: the signal alone is delivered
    /// asynchronously, and a busy thread may run on for a moment.
    pub fn pause(&self) -> std::io::Result<()> {
        self.signal(libc::SIGSTOP)?;
        #[cfg(target_os = "linux")]
        {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.all_threads_stopped()? {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::other(format!(
                        "{} did not stop within 30 s of SIGSTOP",
                        self.name
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Whether /proc shows every thread of the process in the stopped state (`T`).
    #[cfg(target_os = "linux")]
    fn all_threads_stopped(&self) -> std::io::Result<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()))?;
        for task in tasks {
            let stat = std::fs::read_to_string(task?.path().join("stat"))?;
            // `pid (comm) S ...`: the state follows the last ')', as comm may contain one.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            if state != Some('T') {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// SIGCONT after [`ChildProcess::pause`].
    pub fn resume(&self) -> std::io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `within` for the process to exit by itself; its status if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// SIGTERM (a clean shutdown), then waits up to `within`; SIGKILL if it has not exited by
    /// then. The exit status of a process that exited by itself, `None` if it had to be killed.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.signal(libc::SIGTERM).is_err() {
            // Already gone: report how it ended.
            return self.child.try_wait().ok().flatten();
        }
        let status = self.wait_exit(within);
        if status.is_none() {
            self.kill();
        }
        status
    }

    /// SIGKILL and reap. Idempotent; a paused process dies too.
    pub fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds the command that runs a node with the given `kvstore-server` flags: the binary
/// itself, or a program that re-executes as the server (loadgen, a test harness).
pub type NodeCommand = Arc<dyn Fn(&[String]) -> Command + Send + Sync>;

/// A [`NodeCommand`] that runs the `kvstore-server` binary at `program`.
pub fn server_binary(program: impl Into<PathBuf>) -> NodeCommand {
    let program = program.into();
    Arc::new(move |flags| {
        let mut cmd = Command::new(&program);
        cmd.args(flags);
        cmd
    })
}

/// How to start nodes: the command, flags every node gets, and how long a start may take.
#[derive(Clone)]
pub struct Launcher {
    command: NodeCommand,
    flags: Vec<String>,
    env: Vec<(String, String)>,
    start_timeout: Duration,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("flags", &self.flags)
            .field("env", &self.env)
            .field("start_timeout", &self.start_timeout)
            .finish_non_exhaustive()
    }
}

impl Launcher {
    /// Nodes run by `command`, with no extra flags, given 60 s to become ready.
    pub fn new(command: NodeCommand) -> Self {
        Self {
            command,
            flags: Vec::new(),
            env: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }

    /// Adds flags every node gets (before each node's own).
    pub fn with_flags<S: AsRef<str>>(mut self, flags: impl IntoIterator<Item = S>) -> Self {
        self.flags
            .extend(flags.into_iter().map(|f| f.as_ref().to_string()));
        self
    }

    /// Sets an environment variable for every node (`RUST_LOG`, say).
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// How long a node may take to announce `ready`.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts node `id` on `listen` (port 0 for a free one) with `data_dir` and `extra` flags,
    /// and waits for it to be ready.
    pub fn start<S: AsRef<str>>(
        &self,
        id: u32,
        listen: &str,
        data_dir: PathBuf,
        extra: &[S],
    ) -> std::io::Result<NodeProcess> {
        let mut flags: Vec<String> = vec![
            "--node-id".into(),
            id.to_string(),
            "--listen".into(),
            listen.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        flags.extend(self.flags.iter().cloned());
        flags.extend(extra.iter().map(|f| f.as_ref().to_string()));
        let mut node = NodeProcess {
            id,
            addr: String::new(),
            data_dir,
            flags,
            launcher: self.clone(),
            process: None,
        };
        node.spawn()?;
        Ok(node)
    }

    /// Starts `n` nodes under `dir` (`dir/n1`, `dir/n2`, ...) on free ports: node 1 founds the
    /// cluster, the others join through it, each started once the previous one is ready.
    pub fn start_cluster<S: AsRef<str>>(
        &self,
        dir: &Path,
        n: u32,
        extra: &[S],
    ) -> std::io::Result<Vec<NodeProcess>> {
        let mut nodes: Vec<NodeProcess> = Vec::new();
        for id in 1..=n {
            let mut flags: Vec<String> = extra.iter().map(|f| f.as_ref().to_string()).collect();
            if let Some(seed) = nodes.first() {
                flags.extend(["--join".to_string(), seed.addr.clone()]);
            }
            nodes.push(self.start(id, "127.0.0.1:0", dir.join(format!("n{id}")), &flags)?);
        }
        Ok(nodes)
    }
}

/// One node process that keeps its identity across restarts: id, address, data directory and
/// flags. Started and restarted only once it announced `ready`.
pub struct NodeProcess {
    /// The node id (`--node-id`).
    pub id: u32,
    /// The address it listens on; a restart binds the same one.
    pub addr: String,
    /// Its data directory (`--data-dir`).
    pub data_dir: PathBuf,
    flags: Vec<String>,
    launcher: Launcher,
    process: Option<ChildProcess>,
}

impl std::fmt::Debug for NodeProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProcess")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .field("pid", &self.pid())
            .finish()
    }
}

impl NodeProcess {
    fn spawn(&mut self) -> std::io::Result<()> {
        let mut cmd = (self.launcher.command)(&self.flags);
        cmd.envs(self.launcher.env.iter().map(|(k, v)| (k, v)));
        let name = format!("node {}", self.id);
        let timeout = self.launcher.start_timeout;
        let (process, addr) =
            ChildProcess::spawn_announced(&name, cmd, Announcement::Ready, timeout)?;
        if !self.addr.is_empty() && addr != self.addr {
            return Err(std::io::Error::other(format!(
                "{name} came back on {addr}, not {}",
                self.addr
            )));
        }
        self.addr = addr;
        self.process = Some(process);
        Ok(())
    }

    /// Restarts a stopped node on the same address, data directory and flags; waits for ready.
    pub fn restart(&mut self) -> std::io::Result<()> {
        if self.process.is_some() {
            return Err(std::io::Error::other(format!(
                "node {} is still running",
                self.id
            )));
        }
        let i = self
            .flags
            .iter()
            .position(|a| a == "--listen")
            .expect("start always passes --listen");
        self.flags[i + 1] = self.addr.clone();
        self.spawn()
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// SIGSTOP.
    pub fn pause(&self) -> std::io::Result<()> {
        self.running()?.pause()
    }

    /// SIGCONT.
    pub fn resume(&self) -> std::io::Result<()> {
        self.running()?.resume()
    }

    fn running(&self) -> std::io::Result<&ChildProcess> {
        self.process
            .as_ref()
            .ok_or_else(|| std::io::Error::other(format!("node {} is not running", self.id)))
    }

    /// SIGTERM, then waits up to `within` (SIGKILL after); whether it exited cleanly (0).
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut p) = self.process.take() else {
            return false;
        };
        p.terminate(within).is_some_and(|s| s.success())
    }

    /// Waits up to `within` for the node to exit by itself. `Some(success)` if it did (the
    /// node is then stopped), `None` if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<bool> {
        let status = self.process.as_mut()?.wait_exit(within)?;
        self.process = None;
        Some(status.success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn waits_for_ready_after_listening() {
        let (mut p, addr) = ChildProcess::spawn_announced(
            "t",
            sh("echo 'harness noise listening on 127.0.0.1:9'; echo ready; exec sleep 30"),
            Announcement::Ready,
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(addr, "127.0.0.1:9");
        assert!(!p.has_exited());
        assert!(p.terminate(Duration::from_secs(30)).is_some());
    }

    #[test]
    fn ready_before_an_address_does_not_count() {
        let err = ChildProcess::spawn_announced(
            "early",
            sh("echo ready; exit 3"),
            Announcement::Ready,
            Duration::from_millis(500),
        )
        .unwrap_err();
        assert!(err.to_string().contains("early did not print"), "{err}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pause_returns_once_every_thread_is_stopped() {
        let p = ChildProcess::spawn("sleeper", sh("exec sleep 30")).unwrap();
        p.pause().unwrap();
        assert!(p.all_threads_stopped().unwrap());
        p.resume().unwrap();
        // SIGCONT is delivered asynchronously too; it takes effect within the deadline.
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.all_threads_stopped().unwrap() {
            assert!(Instant::now() < deadline, "still stopped after SIGCONT");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_paused_process_can_be_killed_and_resumed() {
        let mut p = ChildProcess::spawn("sleeper", sh("exec sleep 30")).unwrap();
        p.pause().unwrap();
        p.resume().unwrap();
        p.pause().unwrap();
        p.kill();
        assert!(p.has_exited());
    }

    #[test]
    fn wait_exit_reports_the_status() {
        let mut p = ChildProcess::spawn("quick", sh("exit 0")).unwrap();
        let status = p.wait_exit(Duration::from_secs(30)).expect("exits");
        assert!(status.success());
    }
}
