//! One function per subcommand.

mod exec;
mod hosts;
mod recover;
mod runs;
mod upgrade;

use anyhow::Context;
use fleet_inventory::{Inventory, Selector};

use crate::args::{Cli, Command, Selection};
use crate::exit::ExitStatus;

/// Runs the parsed command line and returns how the process should exit. Errors are printed
/// here, once.
#[allow(clippy::print_stderr)]
pub(crate) async fn run(cli: Cli) -> ExitStatus {
    let result = match &cli.command {
        Command::Hosts(args) => hosts::run(&cli, args),
        Command::Exec(args) => exec::run(&cli, args).await,
        Command::Upgrade(args) => upgrade::run(&cli, args).await,
        Command::Runs(args) => runs::run(&cli, args),
        Command::Resume(args) => recover::resume(&cli, args).await,
        Command::Rollback(args) => recover::rollback(&cli, args).await,
        Command::Recover(args) => recover::recover(&cli, args).await,
    };
    match result {
        Ok(status) => status,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitStatus::Usage
        }
    }
}

/// Loads the inventory and resolves the selection, in inventory order.
fn select<'a>(
    inventory: &'a Inventory,
    selection: &Selection,
) -> anyhow::Result<Vec<&'a fleet_inventory::Host>> {
    let selectors = selection
        .limit
        .iter()
        .map(|s| Selector::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .context("bad `--limit`")?;
    Ok(inventory.select(&selectors)?)
}

fn load_inventory(cli: &Cli) -> anyhow::Result<Inventory> {
    Ok(Inventory::load(&cli.inventory)?)
}

/// The journal directory: `--state-dir`, else `$XDG_STATE_HOME/fleet`, else
/// `~/.local/state/fleet`.
fn state_dir(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    if let Some(d) = &cli.state_dir {
        return Ok(d.clone());
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(std::path::PathBuf::from(x).join("fleet"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither `--state-dir`, `XDG_STATE_HOME` nor `HOME` is set")?;
    Ok(std::path::PathBuf::from(home).join(".local/state/fleet"))
}
