//! One function per subcommand.

mod exec;
mod hosts;

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
