//! `fleet`: run commands and staged upgrades across many servers over SSH.

mod access;
mod args;
mod commands;
mod exit;
mod fanout;
mod logging;
mod prompt;
mod render;
mod settings;
mod signal;
mod ssh_config;
mod targets;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    logging::init(cli.verbose, cli.quiet);
    // Hundreds of hosts means hundreds of sockets: lift the soft descriptor limit.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit::report(&anyhow::Error::new(e).context("cannot start the runtime")),
    };
    let status = runtime.block_on(commands::run(cli));
    // Do not wait for stray blocking tasks (a passphrase prompt nobody answers).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    status.into()
}
