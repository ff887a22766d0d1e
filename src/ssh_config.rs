//! Completes the inventory's hosts from the OpenSSH client config, the way ops teams already
//! reach them: what the inventory (or the command line) sets stands; what it leaves to
//! fleet's defaults comes from `Host NAME` in the config (read as `ssh NAME` would), each
//! value recording the file and line it came from for `fleet hosts --explain`.
//!
//! Which config: `-F FILE` (`-F none`: none), else `[defaults] ssh_config` (`false`: none),
//! else, as ssh reads them, `~/.ssh/config` then `/etc/ssh/ssh_config`, those that exist.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fleet_inventory::{HostKeyPolicy, Inventory, JumpHop, Source, SshConfigChoice};
use fleet_ssh_config::{ConfigFile, Context, Given, Origin, StrictHostKeyChecking, resolve_files};

/// The config files to read, in order; empty for none. A file named (`-F`, the
/// inventory's `ssh_config`) is read alone, as `ssh -F` reads it; else the user's own
/// `~/.ssh/config` (which, as ssh requires, must be the user's and not writable by
/// others), then the system's.
pub(crate) fn config_files(inv: &Inventory, cli: Option<&Path>, ctx: &Context) -> Vec<ConfigFile> {
    match cli {
        Some(p) if p.to_str().is_some_and(|s| s.eq_ignore_ascii_case("none")) => return Vec::new(),
        Some(p) => return vec![ConfigFile::named(p)],
        None => {}
    }
    match inv.ssh_config() {
        SshConfigChoice::Off => Vec::new(),
        SshConfigChoice::File(p) => vec![ConfigFile::named(p.clone())],
        SshConfigChoice::User => {
            let user = ConfigFile {
                path: ctx.home.join(".ssh/config"),
                check_owner: true,
                system: false,
            };
            let system = ConfigFile {
                path: PathBuf::from(fleet_ssh_config::SYSTEM_CONFIG),
                check_owner: false,
                system: true,
            };
            [user, system]
                .into_iter()
                .filter(|f| f.path.is_file())
                .collect()
        }
    }
}

/// The files, for messages.
pub(crate) fn describe(files: &[ConfigFile]) -> String {
    if files.is_empty() {
        return "none".into();
    }
    files
        .iter()
        .map(|f| f.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
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
    config: &[ConfigFile],
    ctx: &Context,
) -> anyhow::Result<Vec<String>> {
    for f in config {
        if !f.path.is_file() {
            bail!("ssh_config `{}`: no such file", f.path.display());
        }
    }
    let inventory_hosts: Vec<String> = inv.hosts().iter().map(|h| h.name.clone()).collect();
    let mut warnings = Vec::new();
    for host in inv.hosts_mut() {
        // What the inventory sets is given first, as `ssh -l -p -o HostName=` would: it
        // stands, and `Match user` and the tokens see it.
        let given = Given {
            user: host.set_by_inventory("user").then(|| host.user.clone()),
            port: host.set_by_inventory("port").then_some(host.port),
            hostname: host
                .set_by_inventory("address")
                .then(|| host.address.clone()),
        };
        let r = resolve_files(config, &host.name, ctx, &given).with_context(|| {
            format!(
                "host `{}` (to read no OpenSSH config: `fleet -F none`, or `ssh_config = false` in the inventory's [defaults])",
                host.name
            )
        })?;
        if let Some(a) = &r.host_key_alias {
            bail!(
                "{}: host `{}` has a HostKeyAlias, which fleet does not honour (it checks keys under the host's own address)",
                a.origin,
                host.name
            );
        }
        // Only a name fleet would look up matters: an inventory address is used as it is.
        if let Some(c) = &r.canonicalize
            && !host.set_by_inventory("address")
        {
            bail!(
                "{}: CanonicalizeHostname {} applies to host `{}`: fleet does not resolve names the way ssh would; give the host an `address`, or read no config (`fleet -F none`)",
                c.origin,
                c.value,
                host.name
            );
        }
        let free = |key: &str, host: &fleet_inventory::Host| !host.set_by_inventory(key);
        if let Some(h) = &r.hostname
            && free("address", host)
            && h.origin.line > 0
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
                .filter(|f| !f.eq_ignore_ascii_case("none"))
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
        if let Some(first) = r.certificate_files.first() {
            host.ssh_options.certificate_files = r
                .certificate_files
                .iter()
                .map(|f| {
                    r.expand_path(&f.value, ctx)
                        .map(PathBuf::from)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", f.origin))
                })
                .collect::<anyhow::Result<_>>()?;
            host.sources
                .insert("certificate_file".into(), at(&first.origin));
        }
        if let Some(v) = &r.identities_only {
            host.ssh_options.identities_only = v.value;
            host.sources.insert("identities_only".into(), at(&v.origin));
        }
        if let Some(v) = &r.identity_agent {
            // `none`, `SSH_AUTH_SOCK`, `$NAME` (a variable naming the socket), else a path in
            // which `~`, `%` tokens and `${NAME}` are expanded.
            let value = match v.value.as_str() {
                "none" | "SSH_AUTH_SOCK" => v.value.clone(),
                s if s.starts_with('$') && !s.starts_with("${") => s.to_owned(),
                s => {
                    let s = env_vars(s).map_err(|e| anyhow::anyhow!("{}: {e}", v.origin))?;
                    r.expand_path(&s, ctx)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", v.origin))?
                }
            };
            host.ssh_options.identity_agent = Some(value);
            host.sources.insert("identity_agent".into(), at(&v.origin));
        }
        if let Some(v) = &r.server_alive_interval {
            // 0 turns the probes off, as in ssh.
            let max = r
                .server_alive_count_max
                .as_ref()
                .map_or(3, |m| u32::try_from(m.value).unwrap_or(u32::MAX).max(1));
            host.ssh_options.server_alive = Some((Duration::from_secs(v.value), max));
            host.sources.insert("server_alive".into(), at(&v.origin));
        }
        if let Some(v) = &r.hash_known_hosts {
            host.ssh_options.hash_known_hosts = v.value;
            host.sources
                .insert("hash_known_hosts".into(), at(&v.origin));
        }
        if free("jump", host) {
            if let Some(j) = &r.proxy_jump
                && !j.value.eq_ignore_ascii_case("none")
            {
                let mut hops = Vec::new();
                for (i, h) in r.jump_hosts()?.into_iter().enumerate() {
                    if inventory_hosts.contains(&h.host) {
                        // An inventory host: its own settings (see targets.rs).
                        hops.push(JumpHop {
                            user: h.user,
                            host: h.host,
                            port: h.port,
                            identity_files: Vec::new(),
                        });
                    } else {
                        let mut seen = vec![host.name.clone()];
                        hops.extend(hop(config, ctx, &host.name, h, i == 0, &mut seen)?);
                    }
                }
                host.jump = hops;
                host.sources.insert("jump".into(), at(&j.origin));
            } else if let Some(c) = &r.proxy_command
                && !c.value.eq_ignore_ascii_case("none")
            {
                host.proxy_command = Some(proxy_command(&c.value, host).map_err(|why| {
                    anyhow::anyhow!(
                        "{}: host `{}`: ProxyCommand {why} (`-F none` or `ssh_config = false` reads no config)",
                        c.origin,
                        host.name
                    )
                })?);
                host.sources.insert("proxy_command".into(), at(&c.origin));
            }
        }
    }
    Ok(warnings)
}

/// A `ProxyCommand` with its tokens expanded as ssh expands them (`%h`, `%p`, `%r`, `%n`,
/// `%%`). The command is the operator's own; what the tokens bring in is not shell text, so a
/// value with anything a shell treats specially is refused, as OpenSSH refuses such host
/// names.
fn proxy_command(value: &str, host: &fleet_inventory::Host) -> Result<String, String> {
    let mut tokens = std::collections::BTreeMap::new();
    for (k, v) in [
        ('h', host.address.clone()),
        ('p', host.port.to_string()),
        ('r', host.user.clone()),
        ('n', host.name.clone()),
    ] {
        if value.contains(&format!("%{k}")) && fleet_remote_exec::quote(&v) != v {
            return Err(format!(
                "`%{k}` would bring `{}` into the command, which holds characters a shell treats specially",
                v.escape_debug()
            ));
        }
        tokens.insert(k, v);
    }
    fleet_ssh_config::percent(value, &tokens).map_err(|e| format!("`{value}`: {e}"))
}

/// `${NAME}` in `s` replaced by the variable's value, as ssh expands paths.
fn env_vars(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{s}`: unclosed `${{`"))?;
        let name = &after[..end];
        let value = std::env::var(name)
            .map_err(|_| format!("`{s}`: environment variable `{name}` is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Most hops one chain may take, through the hops' own `ProxyJump`s.
const MAX_HOPS: usize = 8;

/// A `ProxyJump` hop that is no inventory host, read from the config as ssh reads it (its
/// own `Host` block: HostName, User, Port), with the hops before it. As ssh does (it turns
/// `ProxyJump a,b` into `ssh -J a -W … b`), only the first hop's own `ProxyJump` is followed,
/// and then recursively that hop's first: the others are reached through the hops before
/// them. A first hop behind a `ProxyCommand` is refused.
fn hop(
    config: &[ConfigFile],
    ctx: &Context,
    target: &str,
    h: fleet_ssh_config::JumpHost,
    first: bool,
    seen: &mut Vec<String>,
) -> anyhow::Result<Vec<JumpHop>> {
    if seen.contains(&h.host) || seen.len() > MAX_HOPS {
        bail!(
            "the jump hosts of host `{target}` lead back to `{}` or run past {MAX_HOPS} hops: {}",
            h.host,
            seen.join(" -> ")
        );
    }
    seen.push(h.host.clone());
    let given = Given {
        user: h.user.clone(),
        port: h.port,
        hostname: None,
    };
    let r = resolve_files(config, &h.host, ctx, &given)
        .with_context(|| format!("jump host `{}` of host `{target}`", h.host))?;
    let mut chain = Vec::new();
    if first {
        if let Some(j) = r
            .proxy_jump
            .as_ref()
            .filter(|j| !j.value.eq_ignore_ascii_case("none"))
        {
            let before = r
                .jump_hosts()
                .with_context(|| format!("jump host `{}` of host `{target}`", h.host))?;
            for (i, b) in before.into_iter().enumerate() {
                chain.extend(
                    hop(config, ctx, target, b, i == 0, seen)
                        .with_context(|| format!("{}: the jump before `{}`", j.origin, h.host))?,
                );
            }
        } else if let Some(c) = r
            .proxy_command
            .as_ref()
            .filter(|c| !c.value.eq_ignore_ascii_case("none"))
        {
            bail!(
                "{}: jump host `{}` of host `{target}` is reached through a ProxyCommand, which fleet does not run for a jump host: give it a ProxyJump, or list the hops in the host's `jump`",
                c.origin,
                h.host
            );
        }
    }
    let identity_files = r
        .identity_files
        .iter()
        .map(|f| r.expand_path(&f.value, ctx).map(PathBuf::from))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("jump host `{}` of host `{target}`: {e}", h.host))?;
    chain.push(JumpHop {
        user: h.user.or_else(|| r.user.as_ref().map(|u| u.value.clone())),
        host: if r.hostname.is_some() {
            r.effective_hostname()
        } else {
            h.host
        },
        port: h.port.or_else(|| r.port.as_ref().map(|p| p.value)),
        identity_files,
    });
    Ok(chain)
}
