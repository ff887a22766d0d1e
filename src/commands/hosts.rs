//! `fleet hosts`: the resolved selection, one host a line.

use std::io::Write;

use crate::args::{Cli, HostsArgs};
use crate::exit::ExitStatus;

pub(crate) fn run(cli: &Cli, args: &HostsArgs) -> anyhow::Result<ExitStatus> {
    let inventory = super::load_inventory(cli)?;
    if let Some(name) = &args.explain {
        return explain(cli, &inventory, name, args.json);
    }
    let hosts = super::select(&inventory, &args.selection)?;
    let mut out = crate::render::stdout();
    if args.json {
        for h in &hosts {
            let vars: serde_json::Map<String, serde_json::Value> = h
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), crate::render::json::toml_to_json(v)))
                .collect();
            let line = serde_json::json!({
                "name": h.name,
                "address": h.address,
                "port": h.port,
                "user": h.user,
                "groups": h.groups,
                "vars": vars,
            });
            writeln!(out, "{line}")?;
        }
    } else {
        let rows: Vec<[String; 4]> = hosts
            .iter()
            .map(|h| {
                [
                    h.name.clone(),
                    endpoint(&h.address, h.port),
                    h.user.clone(),
                    h.groups.join(","),
                ]
            })
            .collect();
        write!(
            out,
            "{}",
            crate::render::table(&["NAME", "ADDRESS", "USER", "GROUPS"], &rows)
        )?;
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}

fn endpoint(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Where a password is read from (never the password).
fn secret_place(s: Option<&fleet_inventory::SecretSource>) -> String {
    match s {
        None => "none (`--ask-become-pass` / `--ask-pass` ask for one)".into(),
        Some(fleet_inventory::SecretSource::File(p)) => format!("file {}", p.display()),
        Some(fleet_inventory::SecretSource::Env(v)) => format!("environment variable {v}"),
    }
}

/// `fleet hosts --explain HOST`: each connection setting, its value and where it came from.
fn explain(
    cli: &Cli,
    inventory: &fleet_inventory::Inventory,
    name: &str,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    let h = inventory
        .host(name)
        .ok_or_else(|| anyhow::anyhow!("no host `{}` in the inventory", name.escape_debug()))?;
    let list = |v: &[std::path::PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: Vec<(&str, String)> = vec![
        ("address", h.address.clone()),
        ("port", h.port.to_string()),
        ("user", h.user.clone()),
        (
            "identity_file",
            if h.identity_files.is_empty() {
                "(the agent, then ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exist)".into()
            } else {
                list(&h.identity_files)
            },
        ),
        ("known_hosts_file", list(&h.known_hosts_files)),
        (
            "host_key_policy",
            match &h.host_key_policy {
                fleet_inventory::HostKeyPolicy::Strict => "strict".into(),
                fleet_inventory::HostKeyPolicy::AcceptNew => "accept-new".into(),
                fleet_inventory::HostKeyPolicy::Pinned(fp) => format!("pinned {fp}"),
            },
        ),
        (
            "connect_timeout",
            humantime::format_duration(h.connect_timeout).to_string(),
        ),
        (
            "jump",
            h.jump
                .iter()
                .map(|j| {
                    let mut s = String::new();
                    if let Some(u) = &j.user {
                        s.push_str(&format!("{u}@"));
                    }
                    s.push_str(&j.host);
                    if let Some(p) = j.port {
                        s.push_str(&format!(":{p}"));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("proxy_command", h.proxy_command.clone().unwrap_or_default()),
        (
            "become",
            match &h.escalation {
                None => "no".into(),
                Some(b) => format!("{} with {}", b.user, b.method.as_str()),
            },
        ),
        (
            "become_password",
            secret_place(h.escalation.as_ref().and_then(|b| b.password.as_ref())),
        ),
        ("password", secret_place(h.password.as_ref())),
        (
            "certificate_file",
            if h.ssh_options.certificate_files.is_empty() {
                "(FILE-cert.pub beside each identity file)".into()
            } else {
                list(&h.ssh_options.certificate_files)
            },
        ),
        (
            "identities_only",
            if h.ssh_options.identities_only {
                "yes"
            } else {
                "no"
            }
            .into(),
        ),
        (
            "identity_agent",
            h.ssh_options
                .identity_agent
                .clone()
                .unwrap_or_else(|| "SSH_AUTH_SOCK".into()),
        ),
        (
            "server_alive",
            match h.ssh_options.server_alive {
                Some((every, _)) if every.is_zero() => "off".into(),
                Some((every, max)) => format!(
                    "every {}, {max} unanswered drop it",
                    humantime::format_duration(every)
                ),
                None => "every 15s, 3 unanswered drop it".into(),
            },
        ),
        (
            "hash_known_hosts",
            if h.ssh_options.hash_known_hosts {
                "yes"
            } else {
                "no"
            }
            .into(),
        ),
    ];
    let ctx = fleet_ssh_config::Context::from_env();
    let config = crate::ssh_config::config_files(inventory, cli.ssh_config.as_deref(), &ctx);
    let mut out = crate::render::stdout();
    if json {
        for (k, v) in &rows {
            let line = serde_json::json!({"host": h.name, "setting": k, "value": v, "from": h.source(k).to_string()});
            writeln!(out, "{line}")?;
        }
    } else {
        writeln!(
            out,
            "host {} (ssh_config: {})\n",
            h.name,
            crate::ssh_config::describe(&config)
        )?;
        let cells: Vec<[String; 3]> = rows
            .iter()
            .map(|(k, v)| [(*k).to_owned(), v.clone(), h.source(k).to_string()])
            .collect();
        write!(
            out,
            "{}",
            crate::render::table(&["SETTING", "VALUE", "FROM"], &cells)
        )?;
    }
    out.flush()?;
    Ok(ExitStatus::Success)
}
