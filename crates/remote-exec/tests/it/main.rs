//! Integration tests of fleet-remote-exec against real OpenSSH sshd hosts started by fleet-lab.

mod auth; // agent, key files, wrong keys, encrypted keys, passwords
mod exec; // commands, output, exit status, timeouts and remote kill, concurrency, jump hosts
mod known_hosts; // strict, hashed, changed, unknown, accept-new, pinned
mod upload; // atomic file upload

use std::path::PathBuf;
use std::time::Duration;

use fleet_lab::{Lab, LabHost};
use fleet_remote_exec::{Client, ClientOptions, HostKeyPolicy, Session, Target};
use tokio_util::sync::CancellationToken;

/// A target for `host` of `lab`, authenticating with the lab's client key only.
pub(crate) fn target(lab: &Lab, host: &LabHost) -> Target {
    Target {
        name: host.name.clone(),
        address: host.address.to_string(),
        port: host.port,
        user: lab.user().to_owned(),
        identity_files: vec![lab.client_key()],
        known_hosts_files: vec![lab.known_hosts()],
        host_key_policy: HostKeyPolicy::Strict,
        connect_timeout: Duration::from_secs(10),
        jump: Vec::new(),
        proxy_command: None,
        password: None,
        escalation: None,
        certificate_files: Vec::new(),
        identities_only: false,
        identity_agent: fleet_remote_exec::AgentChoice::ClientDefault,
        keepalive: None,
        hash_known_hosts: false,
    }
}

/// A client that ignores any ssh-agent of the developer's session.
pub(crate) fn client() -> Client {
    Client::new(ClientOptions {
        agent_socket: None,
        ..ClientOptions::default()
    })
}

pub(crate) async fn connect(lab: &Lab, host: &LabHost) -> Session {
    client()
        .connect(&target(lab, host), &CancellationToken::new())
        .await
        .expect("connect to lab host")
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}
