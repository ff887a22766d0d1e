//! A lab host's life after `up`: stopped, killed with its sessions, its connections cut, frozen
//! and thawed, started again, given a host certificate. What the fault tests do to hosts.

use std::path::PathBuf;

use crate::sshd::{self, SshdFiles};
use crate::{Lab, LabError, io, record, start_deadline};

impl Lab {
    /// Stops one host's sshd: its address then refuses connections (with latency, the proxy
    /// accepts and closes them a round trip later). Stopping a stopped host does nothing.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`], or when the record cannot be rewritten.
    pub fn stop_host(&mut self, name: &str) -> Result<(), LabError> {
        let i = self.index(name)?;
        self.stop_hosts(&[i]);
        record::write(self)
    }

    /// Crashes one host: its sshd and every session under it are killed at once (SIGKILL),
    /// so open connections drop mid-command, as when a machine dies.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`], or when the record cannot be rewritten.
    pub fn kill_host(&mut self, name: &str) -> Result<(), LabError> {
        let i = self.index(name)?;
        if let Some(pid) = self.hosts[i].pid {
            let config = SshdFiles::new(&self.dir, name).config();
            if sshd::is_our_sshd(pid, &config) {
                for p in descendants(pid) {
                    sshd::kill9(p);
                }
            }
        }
        self.stop_hosts(&[i]);
        record::write(self)
    }

    /// Drops every open connection of one host, as a cut network would, and leaves the host
    /// up: the sshd processes serving its connections are killed (SIGKILL), while its listener
    /// (new connections are accepted) and the commands those sessions ran are left alone (they
    /// see their stdin end and their output go nowhere, as after a dropped connection).
    /// Returns how many connection processes were killed.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`].
    pub fn drop_connections(&self, name: &str) -> Result<usize, LabError> {
        let connections = self.connection_processes(name)?;
        for &p in &connections {
            sshd::kill9(p);
        }
        Ok(connections.len())
    }

    /// Freezes one host's SSH service, as a network that silently drops every packet (or a
    /// machine that hangs) would: its sshd and the processes serving its connections are
    /// stopped (SIGSTOP). The kernel still accepts TCP connections and the commands the
    /// sessions ran go on, but nothing more is heard over SSH until [`Lab::thaw_host`].
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`].
    pub fn freeze_host(&self, name: &str) -> Result<(), LabError> {
        self.signal_service(name, rustix::process::Signal::STOP)
    }

    /// Lets a host frozen by [`Lab::freeze_host`] go on (SIGCONT).
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`].
    pub fn thaw_host(&self, name: &str) -> Result<(), LabError> {
        self.signal_service(name, rustix::process::Signal::CONT)
    }

    fn signal_service(&self, name: &str, signal: rustix::process::Signal) -> Result<(), LabError> {
        let mut pids = self.connection_processes(name)?;
        pids.extend(self.host(name).and_then(|h| h.pid));
        for p in pids {
            if let Some(p) = i32::try_from(p)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(p, signal);
            }
        }
        Ok(())
    }

    /// The sshd processes serving host `name`'s connections (not its listener, not the
    /// commands its sessions ran).
    fn connection_processes(&self, name: &str) -> Result<Vec<u32>, LabError> {
        let i = self.index(name)?;
        let Some(pid) = self.hosts[i].pid else {
            return Ok(Vec::new());
        };
        if !sshd::is_our_sshd(pid, &SshdFiles::new(&self.dir, name).config()) {
            return Ok(Vec::new());
        }
        // OpenSSH 9.2 forks `sshd` per connection (the privileged monitor and the session);
        // 9.8 and later run `sshd-session`. Neither is a command a session ran.
        Ok(descendants(pid)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim_end().starts_with("sshd"))
            })
            .collect())
    }

    /// Starts one host again (same address, port and keys); returns once it answers.
    /// Starting a running host does nothing.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`], or when its daemon does not come up.
    pub fn start_host(&mut self, name: &str) -> Result<(), LabError> {
        let i = self.index(name)?;
        if self.is_running(name) {
            return Ok(());
        }
        self.start_hosts(&[i], start_deadline(1))
    }

    /// Returns true when host `name` has a recorded daemon that is alive and runs that host's
    /// config.
    pub fn is_running(&self, name: &str) -> bool {
        self.host(name).is_some_and(|h| {
            h.pid
                .is_some_and(|p| sshd::is_our_sshd(p, &SshdFiles::new(&self.dir, name).config()))
        })
    }

    /// Host `name`'s ed25519 host key (private; the public one beside it, `.pub`), for a test
    /// to sign with its own certificate authority.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`].
    pub fn host_key(&self, name: &str) -> Result<PathBuf, LabError> {
        self.index(name)?;
        Ok(SshdFiles::new(&self.dir, name).host_key())
    }

    /// Gives host `name` an OpenSSH host certificate (`ssh-keygen -s CA -h` of its host key),
    /// or takes it away (`None`), and restarts its sshd with it.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`], or when the files cannot be written or the daemon does not
    /// come up again.
    pub fn set_host_certificate(
        &mut self,
        name: &str,
        certificate: Option<&str>,
    ) -> Result<(), LabError> {
        let i = self.index(name)?;
        let files = SshdFiles::new(&self.dir, name);
        let path = files.host_certificate();
        match certificate {
            Some(text) => std::fs::write(&path, text).map_err(io("write", &path))?,
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("remove", &path)(e));
                }
                _ => {}
            },
        }
        let h = &self.hosts[i];
        let input = sshd::ConfigInput {
            name: &h.name,
            address: h.address,
            port: h.sshd_port,
            lab_dir: &self.dir,
        };
        sshd::write_config(&input, true)?;
        self.kill_host(name)?;
        self.start_host(name)
    }
}

/// Every process below `root` in the process tree (children first found, then theirs).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if let Some(ppid) = ppid {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}
