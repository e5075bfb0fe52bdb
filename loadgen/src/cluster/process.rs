//! Child processes loadgen starts (nodes, the echo server): each is its own OS process, so
//! SIGKILL and SIGSTOP are real. A [`ChildProcess`] is killed (SIGKILL, then reaped) when
//! dropped, so an error or Ctrl-C anywhere leaves nothing running; on Linux the child also gets
//! `PR_SET_PDEATHSIG`, so even a SIGKILLed loadgen does not leak nodes. Signals go to the PID
//! loadgen spawned and to nothing else.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running child process, killed on drop.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    name: String,
}

impl ChildProcess {
    /// Spawns `program args...` with stdout and stderr appended to `log` (when given).
    pub fn spawn(
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
        Self::start(name, cmd)
    }

    /// Spawns `program args...` and waits (up to `timeout`) for a stdout line
    /// `listening on ADDR`; returns the process and ADDR. Later output is discarded.
    pub fn spawn_listening(
        name: &str,
        program: &Path,
        args: &[String],
        timeout: Duration,
    ) -> std::io::Result<(Self, String)> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut me = Self::start(name, cmd)?;
        let stdout = me
            .child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(addr) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                    sent = true;
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(addr) => Ok((me, addr)),
            Err(_) => {
                me.kill();
                Err(std::io::Error::other(format!(
                    "{name} did not print `listening on ADDR` within {timeout:?}"
                )))
            }
        }
    }

    fn start(name: &str, mut cmd: Command) -> std::io::Result<Self> {
        // SAFETY: prctl is async-signal-safe; this runs in the forked child before exec and only
        // asks the kernel to SIGKILL the child when its parent thread exits.
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
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

    /// SIGSTOP.
    pub fn pause(&self) -> std::io::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// SIGCONT.
    pub fn resume(&self) -> std::io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL and reap. Idempotent.
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
