//! Where and how to connect: a plain description of one SSH endpoint.

use std::path::PathBuf;
use std::time::Duration;

use crate::escalate::{Become, Secret};

/// How a host's key is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// The key must already be in one of the known_hosts files.
    #[default]
    Strict,
    /// Unknown hosts are trusted on first use and recorded; a changed key still fails.
    AcceptNew,
    /// The key's SHA-256 fingerprint must equal this value (`SHA256:...`); known_hosts is not
    /// consulted.
    Pinned(String),
}

/// Which ssh-agent a target's keys may come from (OpenSSH's `IdentityAgent`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AgentChoice {
    /// The client's ([`crate::ClientOptions::agent_socket`]).
    #[default]
    ClientDefault,
    /// No agent.
    Off,
    /// The agent listening on this socket.
    Socket(PathBuf),
}

/// One SSH endpoint and everything needed to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Name used in reports (an inventory host name).
    pub name: String,
    /// Address or DNS name to connect to.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Remote user name.
    pub user: String,
    /// Private key files to try after the agent; empty means `~/.ssh/id_{ed25519,ecdsa,rsa}`
    /// that exist.
    pub identity_files: Vec<PathBuf>,
    /// OpenSSH known_hosts files to check (the first one receives accepted new keys).
    pub known_hosts_files: Vec<PathBuf>,
    /// Host-key trust policy.
    pub host_key_policy: HostKeyPolicy,
    /// Bound on TCP connect + handshake, and separately on authentication.
    pub connect_timeout: Duration,
    /// Hosts to hop through, outermost first (`ProxyJump`).
    pub jump: Vec<Target>,
    /// A local command (run with `/bin/sh -c`) whose stdin and stdout carry the connection,
    /// as OpenSSH's `ProxyCommand`; the jump hosts are not used then.
    pub proxy_command: Option<String>,
    /// Login password, tried (as `password`, then `keyboard-interactive`) after the keys.
    pub password: Option<Secret>,
    /// Run every command as another user.
    pub escalation: Option<Become>,
    /// OpenSSH user certificates to offer with the identity file whose key they certify
    /// (`CertificateFile`); `FILE-cert.pub` beside an identity file is offered too, as ssh
    /// does.
    pub certificate_files: Vec<PathBuf>,
    /// Offer only the agent keys whose public half sits beside an identity file
    /// (`FILE.pub`), as OpenSSH's `IdentitiesOnly yes`: a server that counts failed keys
    /// sees no others.
    pub identities_only: bool,
    /// Which agent to ask.
    pub identity_agent: AgentChoice,
    /// Keepalive probes on an idle connection: every interval, dropped after this many
    /// unanswered (`ServerAliveInterval` / `ServerAliveCountMax`; a zero interval: none); the
    /// client's when `None`.
    pub keepalive: Option<(Duration, usize)>,
    /// Keys accepted under `accept-new` are written hashed (`|1|salt|hash`), as OpenSSH's
    /// `HashKnownHosts yes`.
    pub hash_known_hosts: bool,
}

impl Target {
    /// Creates a target with defaults: port 22, no explicit keys, `~/.ssh/known_hosts`,
    /// strict host keys, 10 s connect timeout, no jump host, no password, no become.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        user: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            identity_files: Vec::new(),
            known_hosts_files: home_dir()
                .map(|h| vec![h.join(".ssh/known_hosts")])
                .unwrap_or_default(),
            host_key_policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            jump: Vec::new(),
            proxy_command: None,
            password: None,
            escalation: None,
            certificate_files: Vec::new(),
            identities_only: false,
            identity_agent: AgentChoice::ClientDefault,
            keepalive: None,
            hash_known_hosts: false,
        }
    }

    /// Returns `address:port` for messages (`[addr]:port` for IPv6).
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}
