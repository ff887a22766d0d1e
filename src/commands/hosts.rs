//! `fleet hosts`: the resolved selection, one host a line.

use std::io::Write;

use crate::args::{Cli, HostsArgs};
use crate::exit::ExitStatus;

pub(crate) fn run(cli: &Cli, args: &HostsArgs) -> anyhow::Result<ExitStatus> {
    let inventory = super::load_inventory(cli)?;
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
