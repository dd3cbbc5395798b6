//! [`Process`]: one child process a test started by hand (a compute node joining a cluster,
//! a node on another "host"), its output appended to a log file, SIGKILLed on drop so a
//! failed test leaves nothing running.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Process {
    child: Child,
    label: String,
}

impl Process {
    /// Spawns `command` with stdin closed and stdout + stderr appended to `log`.
    pub fn spawn(mut command: Command, log: &Path) -> Result<Process> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone()?;
        let label = format!("{command:?}");
        let child = command
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning {label}"))?;
        Ok(Process { child, label })
    }

    pub fn pid(&self) -> i32 {
        // Linux pids fit in i32.
        self.child.id() as i32
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on the pid of our own child, which we have not reaped yet.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.label);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has exited (and how), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
