//! `fleet-lab`: start and stop a lab of real sshd hosts on loopback.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleet_lab::{Lab, LabError, LabOptions};

/// Start and stop a lab of real OpenSSH sshd hosts on 127.0.0.0/8
#[derive(Parser)]
#[command(name = "fleet-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start N hosts and write DIR/inventory.toml; they keep running until `down`
    Up {
        /// Number of hosts
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20000))]
        hosts: u32,
        /// Lab directory (missing, empty, or a stopped lab's)
        #[arg(long)]
        dir: PathBuf,
        /// Port every host listens on
        #[arg(long, default_value_t = 2222)]
        port: u16,
        /// First address (127.x.y.z); default: a random free block
        #[arg(long)]
        first_address: Option<Ipv4Addr>,
        /// Also lay out this many Drupal 7 + CiviCRM sites per host, with fake drush and cv
        #[arg(long, default_value_t = 0)]
        sites_per_host: usize,
        /// CiviCRM version of the sites (the release tarball is one minor version newer)
        #[arg(long, default_value = "5.69.0")]
        civicrm: String,
    },
    /// Stop every host of the lab in DIR
    Down {
        /// Lab directory
        #[arg(long)]
        dir: PathBuf,
    },
    /// List the hosts of the lab in DIR, running or stopped
    Status {
        /// Lab directory
        #[arg(long)]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match run(cli.command, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {}", e.chain());
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd, out: &mut impl Write) -> Result<(), LabError> {
    match cmd {
        Cmd::Up {
            hosts,
            dir,
            port,
            first_address,
            sites_per_host,
            civicrm,
        } => {
            let lab = Lab::up(&LabOptions {
                hosts: hosts as usize,
                dir,
                port,
                first_address,
            })?;
            if sites_per_host > 0 {
                let opts = fleet_lab::SitesOptions::new(sites_per_host, &civicrm);
                if let Err(e) = lab.add_sites(&opts) {
                    let mut lab = lab;
                    let _ = lab.down();
                    return Err(e);
                }
                let _ = writeln!(
                    out,
                    "sites: {sites_per_host} per host at CiviCRM {civicrm}; release tarball {} (localization {})",
                    lab.release_tarball(&opts.release).display(),
                    lab.l10n_tarball(&opts.release).display()
                );
            }
            let h = lab.hosts();
            let (first, last) = (&h[0], &h[h.len() - 1]);
            let _ = writeln!(
                out,
                "lab up: {} hosts {}..{} on {}..{} port {}, dir {}",
                h.len(),
                first.name,
                last.name,
                first.address,
                last.address,
                first.port,
                lab.dir().display()
            );
            let _ = writeln!(
                out,
                "try: fleet -i {} exec -- 'echo $FLEET_HOST'",
                lab.inventory_path().display()
            );
        }
        Cmd::Down { dir } => {
            let mut lab = Lab::open(&dir)?;
            let n = lab.down()?;
            let _ = writeln!(out, "lab down: stopped {n} sshd in {}", lab.dir().display());
        }
        Cmd::Status { dir } => {
            let lab = Lab::open(&dir)?;
            for h in lab.hosts() {
                let state = match h.pid {
                    Some(pid) if lab.is_running(&h.name) => format!("running  pid {pid}"),
                    _ => "stopped".to_owned(),
                };
                let _ = writeln!(out, "{}  {}:{}  {state}", h.name, h.address, h.port);
            }
        }
    }
    Ok(())
}
