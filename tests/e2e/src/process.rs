//! A child process whose stdout and stderr go to one log file, killed when
//! dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running child process and its log.
pub struct Proc {
    /// Short label used in failure output (`envoy`, `emu a`, `syncd`).
    pub label: String,
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with both output streams in `log`.
    pub fn spawn(label: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Proc> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {label} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc {
            label: label.to_string(),
            log: log.to_path_buf(),
            child,
        })
    }

    /// The log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `find` returns something for the log, or fails after
    /// `timeout` (or as soon as the process exits).
    pub async fn wait_for_log<T>(
        &mut self,
        timeout: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let start = Instant::now();
        loop {
            if let Some(found) = find(&self.output()) {
                return Ok(found);
            }
            if let Some(status) = self.exited() {
                anyhow::bail!("{} exited with {status}:\n{}", self.label, self.output());
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "{} not ready after {timeout:?}:\n{}",
                    self.label,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Process id, for signals sent by tests.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
