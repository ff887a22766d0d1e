//! `fleet-lab`: start and stop a lab of real sshd hosts on loopback.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleet_lab::{Lab, LabOptions};

/// Start and stop a lab of real OpenSSH sshd hosts on 127.0.0.0/8.
#[derive(Parser)]
#[command(name = "fleet-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start N hosts and write DIR/inventory.toml
    Up {
        /// Number of hosts
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=20000))]
        hosts: u32,
        /// Lab directory
        #[arg(long)]
        dir: PathBuf,
        /// Port every host listens on
        #[arg(long, default_value_t = 2222)]
        port: u16,
        /// First address (127.x.y.z); default: a random free block
        #[arg(long)]
        first_address: Option<Ipv4Addr>,
    },
    /// Stop every host of the lab in DIR
    Down {
        /// Lab directory
        #[arg(long)]
        dir: PathBuf,
    },
    /// List the hosts of the lab in DIR
    Status {
        /// Lab directory
        #[arg(long)]
        dir: PathBuf,
    },
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up {
            hosts,
            dir,
            port,
            first_address,
        } => Lab::up(&LabOptions {
            hosts: hosts as usize,
            dir,
            port,
            first_address,
        })
        .map(|lab| {
            let (first, last) = (&lab.hosts()[0], &lab.hosts()[lab.hosts().len() - 1]);
            println!(
                "lab up: {} hosts {}..{} ({}..{}) port {}, in {}",
                lab.hosts().len(),
                first.name,
                last.name,
                first.address,
                last.address,
                first.port,
                lab.dir().display()
            );
            println!(
                "try: fleet -i {} exec -- 'echo $FLEET_HOST'",
                lab.inventory_path().display()
            );
        }),
        Cmd::Down { dir } => Lab::open(&dir)
            .and_then(|mut lab| lab.down())
            .map(|n| println!("lab down: stopped {n} sshd in {}", dir.display())),
        Cmd::Status { dir } => Lab::open(&dir).map(|lab| {
            for h in lab.hosts() {
                let state = if h.pid.is_some() {
                    "running"
                } else {
                    "stopped"
                };
                println!("{}  {}:{}  {state}", h.name, h.address, h.port);
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
