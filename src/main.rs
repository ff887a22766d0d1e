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
    // fleet holds sudo passwords, key passphrases and decrypted keys in memory: as ssh-agent
    // does, it never dumps core (which would write them to disk) and no other process of the
    // operator may attach to it or read its memory.
    let _ = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0);
    #[cfg(target_os = "linux")]
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
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
