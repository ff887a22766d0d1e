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
    /// Starts an agent with its socket in `dir` and adds `keys` to it.
    ///
    /// # Errors
    ///
    /// When `ssh-agent` or `ssh-add` cannot run or a key is refused.
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
            .map_err(crate::error::io("run ssh-agent for", &socket))?;
        let agent = TestAgent { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            if Instant::now() > deadline {
                return Err(LabError::Key("ssh-agent did not create its socket".into()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for key in keys {
            let out = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .output()
                .map_err(crate::error::io("run ssh-add for", *key))?;
            if !out.status.success() {
                return Err(LabError::Key(format!(
                    "ssh-add `{}`: {}",
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
