//! Turns inventory hosts into SSH targets (remote-exec knows nothing of inventories).

use std::time::Duration;

use fleet_inventory::{Host, HostKeyPolicy, Inventory, JumpHop};
use fleet_remote_exec::{AgentChoice, HostKeyPolicy as KeyPolicy, Target};

/// Overrides from the command line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TargetOverrides {
    pub(crate) connect_timeout: Option<Duration>,
}

/// The target of `host`, with its passwords read (see `access.rs`).
///
/// # Errors
///
/// A password the host needs cannot be had.
pub(crate) fn target_for(
    inv: &Inventory,
    host: &Host,
    over: TargetOverrides,
) -> anyhow::Result<Target> {
    let mut t = base_target(host, over);
    t.password = crate::access::login_password(host)?;
    t.escalation = crate::access::escalation(host)?;
    t.jump = host
        .jump
        .iter()
        .map(|hop| jump_target(inv, host, hop, over))
        .collect::<anyhow::Result<_>>()?;
    Ok(t)
}

fn base_target(host: &Host, over: TargetOverrides) -> Target {
    Target {
        name: host.name.clone(),
        address: host.address.clone(),
        port: host.port,
        user: host.user.clone(),
        identity_files: host.identity_files.clone(),
        known_hosts_files: host.known_hosts_files.clone(),
        host_key_policy: match &host.host_key_policy {
            HostKeyPolicy::Strict => KeyPolicy::Strict,
            HostKeyPolicy::AcceptNew => KeyPolicy::AcceptNew,
            HostKeyPolicy::Pinned(fp) => KeyPolicy::Pinned(fp.clone()),
        },
        connect_timeout: over.connect_timeout.unwrap_or(host.connect_timeout),
        jump: Vec::new(),
        proxy_command: host.proxy_command.clone(),
        password: None,
        escalation: None,
        certificate_files: host.ssh_options.certificate_files.clone(),
        identities_only: host.ssh_options.identities_only,
        identity_agent: agent(host.ssh_options.identity_agent.as_deref()),
        keepalive: host
            .ssh_options
            .server_alive
            .map(|(every, max)| (every, max as usize)),
        hash_known_hosts: host.ssh_options.hash_known_hosts,
    }
}

/// OpenSSH's `IdentityAgent` value as the agent to ask: `SSH_AUTH_SOCK` (the usual one),
/// `none`, `$VAR` (the socket that variable names; none when unset), or a socket path.
fn agent(value: Option<&str>) -> AgentChoice {
    match value {
        None | Some("SSH_AUTH_SOCK") => AgentChoice::ClientDefault,
        Some("none") => AgentChoice::Off,
        Some(v) if v.starts_with('$') => {
            let name = v
                .trim_start_matches('$')
                .trim_start_matches('{')
                .trim_end_matches('}');
            match std::env::var_os(name).filter(|s| !s.is_empty()) {
                Some(p) => AgentChoice::Socket(p.into()),
                None => AgentChoice::Off,
            }
        }
        Some(path) => AgentChoice::Socket(path.into()),
    }
}

/// A hop that names an inventory host uses that host's settings; any other hop inherits the
/// keys, known_hosts and policy of the host it leads to (a pinned key belongs to that host,
/// so the hop falls back to strict checking). A hop runs no command: it never becomes anyone.
fn jump_target(
    inv: &Inventory,
    host: &Host,
    hop: &JumpHop,
    over: TargetOverrides,
) -> anyhow::Result<Target> {
    let mut t = match inv.host(&hop.host) {
        Some(h) => {
            let mut t = base_target(h, over);
            t.password = crate::access::login_password(h)?;
            t
        }
        None => {
            let mut t = base_target(host, over);
            t.name = hop.host.clone();
            t.address = hop.host.clone();
            t.port = 22;
            if let KeyPolicy::Pinned(_) = t.host_key_policy {
                t.host_key_policy = KeyPolicy::Strict;
            }
            t
        }
    };
    if let Some(u) = &hop.user {
        t.user = u.clone();
    }
    if let Some(p) = hop.port {
        t.port = p;
    }
    if !hop.identity_files.is_empty() {
        t.identity_files = hop.identity_files.clone();
    }
    Ok(t)
}
