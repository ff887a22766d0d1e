//! A throwaway ssh-agent for authentication tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::LabError;

/// A throwaway `ssh-agent -D -a SOCK` holding the given keys, killed on drop.
pub struct TestAgent {
    child: Child,
    socket: PathBuf,
}

impl TestAgent {
    /// Starts an agent with its socket at `dir/agent.sock` and adds `keys` (private key
    /// files) to it.
    ///
    /// Keep `dir` short: a Unix socket path is limited to about 100 bytes.
    ///
    /// # Errors
    ///
    /// When `ssh-agent` or `ssh-add` cannot run, the socket does not appear, or a key is
    /// refused.
    pub fn start(dir: &Path, keys: &[&Path]) -> Result<TestAgent, LabError> {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Run {
                program: "ssh-agent".into(),
                source,
            })?;
        // From here on, dropping `agent` kills the child, also on the error paths.
        let mut agent = TestAgent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(LabError::Agent(format!(
                    "exited with {status} before creating `{}`",
                    agent.socket.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(LabError::Agent(format!(
                    "did not create `{}` within 10 s",
                    agent.socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for key in keys {
            let out = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .output()
                .map_err(|source| LabError::Run {
                    program: "ssh-add".into(),
                    source,
                })?;
            if !out.status.success() {
                return Err(LabError::Agent(format!(
                    "`ssh-add {}` failed: {}",
                    key.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        Ok(agent)
    }

    /// The agent's socket (what `SSH_AUTH_SOCK` would hold).
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
