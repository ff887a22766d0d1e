//! Integration tests of fleet-lab against real `/usr/sbin/sshd` daemons. They fail (never
//! skip) when sshd is missing.

/// Authentication helpers: extra keys and the throwaway ssh-agent.
mod auth;
/// The `fleet-lab` binary: up, status, down, and its errors.
mod cli;
/// Hosts answer over SSH as themselves; the client files describe them.
mod hosts;
/// Labs behind the latency proxy: SSH through it, stopped hosts behind it, and `down`.
mod latency;
/// Stopping and starting hosts and labs: only the lab's own pids are ever signalled.
mod lifecycle;
/// The web server, the Drupal 10 release and the fake Drush 12 `fleet migrate` stands on.
mod migrate;
/// Labs of many hosts start within the deadline.
mod scale;

use std::process::{Command, Output};

use fleet_lab::{Lab, LabHost};

/// Runs `cmd` on `host` with the OpenSSH client and the lab's `ssh_config`.
pub(crate) fn ssh(lab: &Lab, host: &LabHost, cmd: &str) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(lab.ssh_config())
        .args(["-o", "BatchMode=yes"])
        .arg(host.address.to_string())
        .arg(cmd)
        .output()
        .expect("run ssh (the OpenSSH client)")
}

/// The stdout of a successful command, or a panic with its stderr.
#[track_caller]
pub(crate) fn stdout_ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Returns true when `pid` is a live (not zombie) process.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Returns true when something accepts TCP connections on the host's address and port.
pub(crate) fn accepts(host: &LabHost) -> bool {
    std::net::TcpStream::connect_timeout(
        &(host.address, host.port).into(),
        std::time::Duration::from_secs(2),
    )
    .is_ok()
}
