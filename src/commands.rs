//! One function per subcommand.

mod copy;
mod exec;
mod fetch;
mod hosts;
mod migrate;
mod recover;
mod rollback;
mod runs;
mod transfer;
mod upgrade;

use std::io::Write as _;

use anyhow::Context;
use fleet_inventory::{Inventory, Selector};

use crate::args::{Cli, Command, InventoryCommand, Selection};
use crate::exit::ExitStatus;

/// Runs the parsed command line and returns how the process should exit. Errors are printed
/// here, once.
#[allow(clippy::print_stderr)]
pub(crate) async fn run(cli: Cli) -> ExitStatus {
    crate::access::init(crate::access::Asks {
        login: cli.ask_pass,
        become_: cli.ask_become_pass,
    });
    if matches!(
        cli.command,
        Command::Exec(_)
            | Command::Copy(_)
            | Command::Fetch(_)
            | Command::Upgrade(_)
            | Command::Hosts(_)
    ) {
        warn_unfinished(&cli);
    }
    let result = match &cli.command {
        Command::Hosts(args) => hosts::run(&cli, args),
        Command::Exec(args) => exec::run(&cli, args).await,
        Command::Copy(args) => copy::run(&cli, args).await,
        Command::Fetch(args) => fetch::run(&cli, args).await,
        Command::Upgrade(args) => upgrade::run(&cli, args).await,
        Command::Runs(args) => runs::run(&cli, args),
        Command::Resume(args) => recover::resume(&cli, args).await,
        Command::Rollback(args) => rollback::run(&cli, args).await,
        Command::Recover(args) => recover::recover(&cli, args).await,
        Command::Migrate(args) => migrate::run(&cli, args).await,
        Command::Inventory(InventoryCommand::Convert { file }) => {
            convert(file.as_deref().unwrap_or(&cli.inventory))
        }
        Command::Completions { shell } => completions(*shell),
        Command::Man { dir } => man(dir.as_deref()),
    };
    match result {
        Ok(status) => status,
        Err(err) => {
            // Not `eprintln!`: it panics when stderr is a terminal that hung up.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitStatus::of_error(&err)
        }
    }
}

/// `fleet completions SHELL`: clap's own script for the shell, from the same definitions as
/// the parser, so it never drifts from the flags.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitStatus> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = crate::render::stdout();
    clap_complete::generate(shell, &mut cmd, "fleet", &mut out);
    out.flush()?;
    Ok(ExitStatus::Success)
}

/// `fleet man [--dir DIR]`: the roff man page of fleet on stdout, or a page per command
/// (`fleet.1`, `fleet-exec.1`, `fleet-migrate-release.1`, ...) written into DIR.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<ExitStatus> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create `{}`", d.display()))?;
            clap_mangen::generate_to(cmd, d)
                .with_context(|| format!("cannot write the man pages into `{}`", d.display()))?;
        }
        None => {
            let mut out = crate::render::stdout();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitStatus::Success)
}

/// `fleet inventory convert FILE`: the TOML of an Ansible inventory, checked by loading it.
fn convert(file: &std::path::Path) -> anyhow::Result<ExitStatus> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read inventory `{}`", file.display()))?;
    let format = fleet_inventory::detect_format(file, &text);
    if format == fleet_inventory::Format::Toml {
        anyhow::bail!(
            "`{}` is already a fleet TOML inventory (convert reads Ansible INI or YAML)",
            file.display()
        );
    }
    let toml = fleet_inventory::ansible_to_toml(file, &text, format)?;
    // What is printed must load as it is: the same checks as `fleet -i FILE`.
    Inventory::load(file)?;
    let mut out = crate::render::stdout();
    out.write_all(toml.as_bytes())?;
    Ok(ExitStatus::Success)
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

/// The inventory, its hosts completed from the OpenSSH client config (see `ssh_config.rs`).
fn load_inventory(cli: &Cli) -> anyhow::Result<Inventory> {
    let mut inv = Inventory::load(&cli.inventory)?;
    let ctx = fleet_ssh_config::Context::from_env();
    let files = crate::ssh_config::config_files(&inv, cli.ssh_config.as_deref(), &ctx);
    if !files.is_empty() {
        for w in crate::ssh_config::apply(&mut inv, &files, &ctx)? {
            tracing::warn!("{w}");
        }
    }
    Ok(inv)
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

/// On any start, says loudly when an earlier run left sites in maintenance or mid-step and
/// nobody is driving it any more (a crash, SIGKILL, power loss).
#[allow(clippy::print_stderr)]
fn warn_unfinished(cli: &Cli) {
    let Ok(dir) = state_dir(cli) else { return };
    if !dir.join("journal.sqlite").exists() {
        return;
    }
    let Ok(journal) = fleet_playbook::Journal::open(&dir) else {
        return;
    };
    for run in journal.runs().unwrap_or_default() {
        if run.state == fleet_playbook::RunState::Finished || recover::controller_alive(&run) {
            continue;
        }
        let n = journal
            .sites(&run.id)
            .unwrap_or_default()
            .iter()
            .filter(|s| fleet_playbook::needs_restore(s, fleet_playbook::RestoreMode::Recover))
            .count();
        if n > 0 {
            eprintln!(
                "warning: run `{}` ({}) left {n} site(s) in maintenance or mid-step; `fleet recover` brings them to a safe end, `fleet resume {}` finishes the run",
                run.id, run.state, run.id
            );
        }
    }
}

/// The run whose id starts with `prefix` (a unique prefix is enough).
fn find_run(
    journal: &fleet_playbook::Journal,
    prefix: &str,
) -> anyhow::Result<fleet_playbook::RunRow> {
    let mut matching = journal
        .runs()?
        .into_iter()
        .filter(|r| r.id.starts_with(prefix));
    match (matching.next(), matching.next()) {
        (Some(run), None) => Ok(run),
        (None, _) => anyhow::bail!("no run `{prefix}` in `{}`", journal.path().display()),
        (Some(_), Some(_)) => anyhow::bail!("`{prefix}` matches several runs; give more of the id"),
    }
}

/// Whether `name` is a single plain file name, so `DIR/<name>...` stays inside `DIR`. The
/// inventory already refuses such host names at load; this is the last line of defence
/// before a host's name is joined onto a local path.
pub(crate) fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && std::path::Path::new(name).components().count() == 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn out_dir_names_stay_inside_the_dir() {
        for ok in ["h01", "web01.example.com", "db_2-a"] {
            assert!(super::is_file_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "../../X", "/tmp/X", "a/b", ".hidden", "a\\b", "a\0b",
        ] {
            assert!(!super::is_file_name(bad), "{bad:?}");
        }
    }
}
