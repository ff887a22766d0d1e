//! Completes the inventory's hosts from the OpenSSH client config, the way ops teams already
//! reach them: what the inventory (or the command line) sets stands; what it leaves to
//! fleet's defaults comes from `Host NAME` in the config (read as `ssh NAME` would), each
//! value recording the file and line it came from for `fleet hosts --explain`.
//!
//! Which config: `-F FILE` (`-F none`: none), else `[defaults] ssh_config` (`false`: none),
//! else `~/.ssh/config` when it exists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fleet_inventory::{HostKeyPolicy, Inventory, JumpHop, Source, SshConfigChoice};
use fleet_ssh_config::{Context, Origin, StrictHostKeyChecking, resolve};

/// The config to read, if any.
pub(crate) fn config_path(inv: &Inventory, cli: Option<&Path>, ctx: &Context) -> Option<PathBuf> {
    match cli {
        Some(p) if p == Path::new("none") => return None,
        Some(p) => return Some(p.to_owned()),
        None => {}
    }
    match inv.ssh_config() {
        SshConfigChoice::Off => None,
        SshConfigChoice::File(p) => Some(p.clone()),
        SshConfigChoice::User => Some(ctx.home.join(".ssh/config")).filter(|p| p.is_file()),
    }
}

fn at(o: &Origin) -> Source {
    Source::SshConfig(o.to_string())
}

/// Applies `config` to every host of `inv`; returns the warnings to say (a weaker host-key
/// check asked for than fleet does).
///
/// # Errors
///
/// The config cannot be read or has a bad line (named), or asks for what fleet cannot do
/// yet (`ProxyCommand`) for a host.
pub(crate) fn apply(
    inv: &mut Inventory,
    config: &Path,
    ctx: &Context,
) -> anyhow::Result<Vec<String>> {
    if !config.is_file() {
        bail!("ssh_config `{}`: no such file", config.display());
    }
    let mut warnings = Vec::new();
    for host in inv.hosts_mut() {
        let r =
            resolve(config, &host.name, ctx).with_context(|| format!("host `{}`", host.name))?;
        let free = |key: &str, host: &fleet_inventory::Host| !host.set_by_inventory(key);
        if let Some(h) = &r.hostname
            && free("address", host)
        {
            host.address = r.effective_hostname();
            host.sources.insert("address".into(), at(&h.origin));
        }
        if let Some(u) = &r.user
            && free("user", host)
        {
            host.user = u.value.clone();
            host.sources.insert("user".into(), at(&u.origin));
        }
        if let Some(p) = &r.port
            && free("port", host)
        {
            host.port = p.value;
            host.sources.insert("port".into(), at(&p.origin));
        }
        if let Some(first) = r.identity_files.first()
            && free("identity_file", host)
        {
            host.identity_files = r
                .identity_files
                .iter()
                .map(|f| r.expand_path(&f.value, ctx).map(PathBuf::from))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{}: {e}", first.origin))?;
            host.sources
                .insert("identity_file".into(), at(&first.origin));
        }
        if let Some(k) = &r.user_known_hosts_files
            && free("known_hosts_file", host)
        {
            host.known_hosts_files = k
                .value
                .iter()
                .filter(|f| *f != "none")
                .map(|f| r.expand_path(f, ctx).map(PathBuf::from))
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{}: {e}", k.origin))?;
            host.sources
                .insert("known_hosts_file".into(), at(&k.origin));
        }
        if let Some(s) = &r.strict_host_key_checking
            && free("host_key_policy", host)
        {
            host.host_key_policy = match s.value {
                StrictHostKeyChecking::Yes | StrictHostKeyChecking::Ask => HostKeyPolicy::Strict,
                StrictHostKeyChecking::AcceptNew => HostKeyPolicy::AcceptNew,
                StrictHostKeyChecking::No => {
                    warnings.push(format!(
                        "{}: StrictHostKeyChecking no for host `{}`: fleet records unknown keys but never accepts a changed one (as accept-new)",
                        s.origin, host.name
                    ));
                    HostKeyPolicy::AcceptNew
                }
            };
            host.sources.insert("host_key_policy".into(), at(&s.origin));
        }
        if let Some(t) = &r.connect_timeout
            && t.value > 0
            && free("connect_timeout", host)
        {
            host.connect_timeout = Duration::from_secs(t.value);
            host.sources.insert("connect_timeout".into(), at(&t.origin));
        }
        if free("jump", host) {
            if let Some(j) = &r.proxy_jump
                && j.value != "none"
            {
                host.jump = r
                    .jump_hosts()?
                    .into_iter()
                    .map(|h| JumpHop {
                        user: h.user,
                        host: h.host,
                        port: h.port,
                    })
                    .collect();
                host.sources.insert("jump".into(), at(&j.origin));
            } else if let Some(c) = &r.proxy_command
                && c.value != "none"
            {
                bail!(
                    "{}: host `{}` is reached through a ProxyCommand, which fleet does not run yet: give it a `jump` in the inventory, or `-F none` / `ssh_config = false`",
                    c.origin,
                    host.name
                );
            }
        }
    }
    Ok(warnings)
}
