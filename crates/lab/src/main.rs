//! `fleet-lab`: start and stop a lab of real sshd hosts on loopback.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fleet_lab::{Lab, LabError, LabOptions, Latency, LatencyProxy};

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
        /// Port clients reach every host on (with --rtt the proxy's; each sshd takes the next)
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
        /// With sites: serve them with the lab's nginx (port 8080 of each host's address),
        /// and write a Drupal 10 release and its manifest (`DIR/migrate.toml`) for `fleet migrate`
        #[arg(long)]
        web: bool,
        /// Put a delaying TCP proxy with this round-trip time in front of every host (`100ms`)
        ///
        /// The proxy (one background `fleet-lab proxy` process) listens on each host's
        /// address and port, the ones the inventory, known_hosts and ssh_config name; each
        /// sshd moves to the next port of its address. Each direction of every connection is
        /// delayed by half the round trip, in order. The client's TCP connect completes at
        /// once; the proxy connects to the sshd half a round trip later, so the server's
        /// first bytes arrive one round trip after connect, as on a network. A stopped host's
        /// address still accepts; the proxy closes the connection a round trip later.
        #[arg(long, value_parser = humantime::parse_duration)]
        rtt: Option<Duration>,
        /// With --rtt: up to this much extra delay, at random, per chunk and direction (`10ms`)
        ///
        /// Drawn uniformly from 0 to the jitter for every chunk (what one read returned). A
        /// chunk is never delivered before the one ahead of it, so jitter never reorders.
        #[arg(long, requires = "rtt", value_parser = humantime::parse_duration)]
        jitter: Option<Duration>,
        /// With --rtt: this share of chunks arrives a retransmission timeout late (`0.1%`)
        ///
        /// A TCP proxy cannot drop bytes (the stream would just be corrupt), so a "lost"
        /// chunk is delivered max(200ms, rtt) late, and the chunks behind it wait for it,
        /// as TCP's retransmission and head-of-line blocking would make them.
        #[arg(long, requires = "rtt", value_parser = parse_percent)]
        loss: Option<f64>,
        /// Make h01 the bastion: every other host is reached only through it, by a name
        /// (`h02.fleet-lab.internal`) only h01's sshd resolves (its own mount namespace)
        #[arg(long, conflicts_with = "rtt")]
        bastion: bool,
        /// Give each host its own directory at DIR/private (its sshd in a mount namespace of
        /// its own shows DIR/hosts/<name>/private there), so files copied to one path land
        /// on each host separately; needs root
        #[arg(long)]
        private_dirs: bool,
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
    /// Create this machine's lab login users (`fleet-op`: password and sudo with it;
    /// `fleet-np`: key and sudo without a password) if missing, as root; they stay for later
    /// labs until `--remove`
    Users {
        /// Delete them, their homes and their sudoers drop-in instead
        #[arg(long)]
        remove: bool,
    },
    /// Start the latency proxy of the lab in DIR if it is not running (`up --rtt` starts it)
    Proxy {
        /// Lab directory (of a lab started with --rtt)
        #[arg(long)]
        dir: PathBuf,
        /// Serve in the foreground until killed (what the background proxy runs)
        #[arg(long)]
        foreground: bool,
    },
}

/// Parses a percentage (`0.1%`) into a fraction.
fn parse_percent(s: &str) -> Result<f64, String> {
    let bad = || format!("`{s}` is not a percentage from 0% to 100%, like `0.1%`");
    let n: f64 = s
        .strip_suffix('%')
        .ok_or_else(bad)?
        .trim()
        .parse()
        .map_err(|_| bad())?;
    if (0.0..=100.0).contains(&n) {
        Ok(n / 100.0)
    } else {
        Err(bad())
    }
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
            web,
            rtt,
            jitter,
            loss,
            bastion,
            private_dirs,
        } => {
            if web && sites_per_host == 0 {
                return Err(LabError::Web(
                    "`--web` serves the lab's sites: give `--sites-per-host N` too".into(),
                ));
            }
            let latency = rtt.map(|rtt| Latency {
                rtt,
                jitter: jitter.unwrap_or_default(),
                loss: loss.unwrap_or_default(),
            });
            let mut lab = Lab::up(&LabOptions {
                hosts: hosts as usize,
                dir,
                port,
                first_address,
                latency,
            })?;
            if bastion {
                let first = lab.hosts()[0].name.clone();
                if let Err(e) = lab.make_bastion(&first) {
                    let _ = lab.down();
                    return Err(e);
                }
                let _ = writeln!(
                    out,
                    "bastion: {first}; the other hosts are reached only through it, as h02.{}...",
                    fleet_lab::INTERNAL_DOMAIN
                );
            }
            if private_dirs {
                if let Err(e) = lab.give_private_dirs() {
                    let _ = lab.down();
                    return Err(e);
                }
                let _ = writeln!(
                    out,
                    "private dirs: {} shows each host its own DIR/hosts/<name>/private",
                    lab.private_dir().display()
                );
            }
            if sites_per_host > 0 {
                let opts = fleet_lab::SitesOptions::new(sites_per_host, &civicrm);
                if let Err(e) = lab.add_sites(&opts) {
                    let _ = lab.down();
                    return Err(e);
                }
                let _ = writeln!(
                    out,
                    "sites: {sites_per_host} per host at CiviCRM {civicrm}; release tarball {} (localization {})",
                    lab.release_tarball(&opts.release).display(),
                    lab.l10n_tarball(&opts.release).display()
                );
                if web {
                    let sites = lab.sites(&opts);
                    let served = lab
                        .write_drupal_release(fleet_lab::DRUPAL_RELEASE, fleet_lab::WEB_PORT)
                        .and_then(|r| lab.start_web(&sites).map(|()| r));
                    match served {
                        Ok(r) => {
                            let _ = writeln!(
                                out,
                                "web: nginx on port {} of every host's address; Drupal {} release {}, manifest {}",
                                fleet_lab::WEB_PORT,
                                fleet_lab::DRUPAL_RELEASE,
                                r.core.display(),
                                r.manifest.display()
                            );
                        }
                        Err(e) => {
                            let _ = lab.down();
                            return Err(e);
                        }
                    }
                }
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
            if let Some(latency) = lab.latency() {
                let _ = writeln!(
                    out,
                    "proxy: {latency} in front of every host (sshd on port {}), pid {}",
                    first.sshd_port,
                    lab.proxy_pid().unwrap_or_default()
                );
            }
            let _ = writeln!(
                out,
                "try: fleet -i {} exec -- 'echo $FLEET_HOST'",
                lab.inventory_path().display()
            );
        }
        Cmd::Users { remove: true } => {
            fleet_lab::users::remove()?;
            let _ = writeln!(
                out,
                "removed the lab users `{}` and `{}` and `{}`",
                fleet_lab::users::OPERATOR,
                fleet_lab::users::NOPASSWD,
                fleet_lab::users::SUDOERS
            );
        }
        Cmd::Users { remove: false } => {
            fleet_lab::users::ensure()?;
            let _ = writeln!(
                out,
                "lab users ready: `{}` (password in `{}`, sudo with it), `{}` (sudo without a password); sudoers in `{}`",
                fleet_lab::users::OPERATOR,
                fleet_lab::users::STATE,
                fleet_lab::users::NOPASSWD,
                fleet_lab::users::SUDOERS
            );
        }
        Cmd::Down { dir } => {
            let mut lab = Lab::open(&dir)?;
            let proxy = if lab.proxy_running() {
                " and the proxy"
            } else {
                ""
            };
            let n = lab.down()?;
            let _ = writeln!(
                out,
                "lab down: stopped {n} sshd{proxy} in {}",
                lab.dir().display()
            );
        }
        Cmd::Status { dir } => {
            let lab = Lab::open(&dir)?;
            for h in lab.hosts() {
                let state = match h.pid {
                    Some(pid) if lab.is_running(&h.name) => format!("running  pid {pid}"),
                    _ => "stopped".to_owned(),
                };
                let sshd = if h.sshd_port == h.port {
                    String::new()
                } else {
                    format!("  (sshd on port {})", h.sshd_port)
                };
                let _ = writeln!(out, "{}  {}:{}  {state}{sshd}", h.name, h.address, h.port);
            }
            if let Some(latency) = lab.latency() {
                let state = match (lab.proxy_pid(), lab.proxy_cpu()) {
                    (Some(pid), Some(cpu)) => {
                        format!("running  pid {pid}  cpu {:.2} s", cpu.as_secs_f64())
                    }
                    _ => "stopped".to_owned(),
                };
                let _ = writeln!(out, "proxy  {latency}  {state}");
            }
        }
        Cmd::Proxy {
            dir,
            foreground: true,
        } => {
            let lab = Lab::open(&dir)?;
            let proxy = LatencyProxy::bind(&lab, out)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| LabError::ProxyFailed {
                    message: format!("cannot build its runtime: {e}"),
                })?;
            runtime.block_on(proxy.run())?;
        }
        Cmd::Proxy {
            dir,
            foreground: false,
        } => {
            let mut lab = Lab::open(&dir)?;
            let started = lab.start_proxy()?;
            let _ = writeln!(
                out,
                "proxy {}: pid {}",
                if started {
                    "started"
                } else {
                    "already running"
                },
                lab.proxy_pid().unwrap_or_default()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_become_fractions() {
        for (s, want) in [
            ("0.1%", 0.001),
            ("0%", 0.0),
            ("100%", 1.0),
            ("2.5 %", 0.025),
        ] {
            let got = parse_percent(s).unwrap();
            assert!((got - want).abs() < 1e-12, "{s}: {got}");
        }
        for bad in ["0.1", "-1%", "101%", "x%", "%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }
}
