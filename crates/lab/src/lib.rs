//! A lab of real OpenSSH servers on loopback, for `fleet`'s tests and demos.
//!
//! # Overview
//!
//! [`Lab::up`] starts N `/usr/sbin/sshd` daemons, each with its own ed25519 host key and its
//! own address in 127.0.0.0/8 (a random block per lab, so labs of tests running in parallel
//! never collide; a lab never listens outside 127.0.0.0/8), and one throwaway client key
//! authorized on all of them. It writes the client files into the lab directory:
//!
//! - `inventory.toml`: fleet's inventory, host keys pinned through `known_hosts`;
//! - `known_hosts`, `client_key`, and `ssh_config` for the OpenSSH client (`ssh -F`);
//! - `lab.toml`: the record of every host and daemon pid, read back by [`Lab::open`];
//! - `sshd/<name>/`: each daemon's config, host key, pid file and log;
//! - `proxy/`: the latency proxy's pid file and log, when the lab has a [`Latency`];
//! - `hosts/<name>/` and `home/<name>/`: each host's own directory and `HOME`. Sessions on
//!   host `hNN` see `FLEET_HOST=hNN` and `FLEET_ROOT=DIR/hosts/hNN`.
//!
//! The daemons outlive the process that started them (that is what the `fleet-lab` binary
//! relies on); [`Lab::down`] stops exactly the daemons the lab started, by pid, after checking
//! that each pid still runs that host's own config. [`TestLab`] is the test kit: a lab in a
//! temporary directory, torn down on drop. [`TestAgent`] and [`generate_client_key`] help
//! authentication tests.
//!
//! # Latency
//!
//! With [`LabOptions::latency`] set, one background `fleet-lab proxy` process
//! ([`LatencyProxy`]) listens on every host's address and port, the ones the client files
//! name, and forwards to its sshd on the next port ([`LabHost::sshd_port`]), delaying each
//! direction by half the round trip, in order (see [`Latency`] for jitter and loss). Clients
//! use the lab unchanged. Stopping a host stops its sshd: the proxy still accepts and closes
//! the connection a round trip later. [`Lab::proxy_cpu`] reads the proxy's CPU time.
//!
//! This crate depends on no other fleet crate (it writes inventory TOML as text), so every
//! crate can use it as a dev-dependency.
//!
//! # Example
//!
//! ```no_run
//! use std::process::Command;
//!
//! let mut lab = fleet_lab::TestLab::start(3);
//! let h02 = lab.host("h02").expect("three hosts");
//! let out = Command::new("ssh")
//!     .arg("-F")
//!     .arg(lab.ssh_config())
//!     .arg(h02.address.to_string())
//!     .arg("echo $FLEET_HOST")
//!     .output()?;
//! assert_eq!(out.stdout, b"h02\n");
//!
//! // An unreachable host, for failure tests.
//! lab.lab_mut().stop_host("h03")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! // Dropping `lab` stops every daemon and removes the directory.
//! ```
#![warn(missing_docs)]

mod addr;
mod agent;
mod drupal;
mod error;
mod inventory;
mod keys;
mod labdir;
mod latency;
mod lifecycle;
mod offline;
mod proxy;
mod realism;
mod record;
mod sites;
mod sshd;
mod test_lab;
pub mod users;
mod web;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use agent::TestAgent;
pub use drupal::{CONTRIB, DRUPAL_RELEASE, DRUPAL_RELEASE_CIVICRM, DrupalRelease};
pub use error::LabError;
pub use keys::generate_client_key;
pub use latency::Latency;
pub use proxy::LatencyProxy;
pub use sites::{
    L10N_LOCALES, LabSite, SitesOptions, front_page, l10n_mo_text, next_minor, site_counts,
};
pub use test_lab::TestLab;
pub use web::{Answer, NGINX, WEB_PORT};

use error::io;
use labdir::{check_dir_path, prepare_dir};
use sshd::{SSHD, SshdFiles};

/// Marks a directory as a lab directory, which [`Lab::up`] may clear and reuse.
const MARKER: &str = ".fleet-lab";

/// How many random address blocks [`Lab::up`] tries when another lab takes an address
/// between the check and sshd's bind.
const ADDRESS_ATTEMPTS: usize = 3;

/// How many daemons are started at once.
const START_THREADS: usize = 16;

/// How long a lab may take to come up: a base plus a little per host.
pub(crate) fn start_deadline(hosts: usize) -> Instant {
    let per_host =
        Duration::from_millis(20).saturating_mul(u32::try_from(hosts).unwrap_or(u32::MAX));
    Instant::now() + Duration::from_secs(30) + per_host
}

/// What lab to start.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Number of hosts (at least 1).
    pub hosts: usize,
    /// Directory that receives keys, configs, host directories and the inventory. It must be
    /// missing, empty, or a stopped lab's directory.
    pub dir: PathBuf,
    /// TCP port clients reach every host on (each on its own address). With `latency`, the
    /// proxy listens there and each sshd on the next port.
    pub port: u16,
    /// First address of the block (in 127.0.0.0/8, ending in 1..=250); a random free block
    /// when `None`.
    pub first_address: Option<Ipv4Addr>,
    /// Latency to simulate with a delaying proxy in front of every sshd; `None` (the
    /// default) lets clients reach the sshds directly.
    pub latency: Option<Latency>,
}

impl LabOptions {
    /// Options for `hosts` hosts in `dir`, port 2222, a random address block.
    pub fn new(hosts: usize, dir: impl Into<PathBuf>) -> Self {
        Self {
            hosts,
            dir: dir.into(),
            port: 2222,
            first_address: None,
            latency: None,
        }
    }
}

/// The domain of the names a bastion lab's hosts have behind the bastion.
pub const INTERNAL_DOMAIN: &str = "fleet-lab.internal";

impl LabHost {
    /// `h02.fleet-lab.internal`: the name only a bastion lab's bastion resolves.
    pub fn internal_name(&self) -> String {
        format!("{}.{INTERNAL_DOMAIN}", self.name)
    }
}

/// One lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    /// Inventory name: `h01`.., zero-padded to the width of the host count (at least 2).
    pub name: String,
    /// Its loopback address.
    pub address: Ipv4Addr,
    /// Its port, the one clients use: the proxy's when the lab has latency.
    pub port: u16,
    /// The port its sshd listens on: `port` without latency, else the next port (the one
    /// before for 65535), on the same address.
    pub sshd_port: u16,
    /// The pid of its sshd as recorded; `None` when stopped.
    pub pid: Option<u32>,
    /// The host's own directory, `DIR/hosts/<name>` (`FLEET_ROOT` in its sessions).
    pub root: PathBuf,
    /// Its host key, `ssh-ed25519 AAAA...` (no comment).
    pub host_public_key: String,
}

/// A lab: its directory and hosts, running or stopped.
///
/// Dropping a `Lab` leaves its daemons running (so `fleet-lab up` can exit); stop them with
/// [`Lab::down`], or use [`TestLab`], which does that on drop.
#[derive(Debug)]
pub struct Lab {
    dir: PathBuf,
    user: String,
    hosts: Vec<LabHost>,
    latency: Option<Latency>,
    proxy_pid: Option<u32>,
    /// The proxy when this process started it, to collect its exit status once stopped.
    proxy_child: Option<std::process::Child>,
    /// The web server's master process, while it runs.
    web_pid: Option<u32>,
    /// The port it serves on, while it runs.
    web_port: Option<u16>,
    /// The host every other one is reached through, when the lab has one (see
    /// [`Lab::make_bastion`]).
    bastion: Option<String>,
    /// Whether each host shows its own directory at [`Lab::private_dir`] (see
    /// [`Lab::give_private_dirs`]).
    private_dirs: bool,
}

impl Lab {
    /// Creates the lab directory and starts every host; returns once each host answers
    /// with an SSH banner.
    ///
    /// # Errors
    ///
    /// - [`LabError::SshdMissing`] when `/usr/sbin/sshd` is not installed;
    /// - [`LabError::Dir`] when `dir` holds a running lab or files that are not a lab's, or
    ///   its path has characters an sshd_config cannot hold (whitespace, quotes, `#`, `%`,
    ///   `\`);
    /// - address errors when `first_address` is outside 127.0.0.0/8 or busy, or no random
    ///   block is free;
    /// - [`LabError::SshdConfig`], [`LabError::SshdFailed`], [`LabError::SshdNotReady`] when a
    ///   daemon does not come up. Daemons already started are stopped again;
    /// - with latency, [`LabError::BadLoss`], and the errors of [`Lab::start_proxy`].
    pub fn up(opts: &LabOptions) -> Result<Lab, LabError> {
        if !Path::new(SSHD).exists() {
            return Err(LabError::SshdMissing(SSHD.into()));
        }
        if opts.hosts == 0 {
            return Err(LabError::NoHosts);
        }
        if let Some(l) = &opts.latency {
            l.check()?;
        }
        if let Some(first) = opts.first_address {
            // Refuse a bad address before touching the directory.
            addr::nth(first, 0)?;
        }
        let absolute = std::path::absolute(&opts.dir).map_err(io("resolve", &opts.dir))?;
        check_dir_path(&absolute)?;
        let dir = prepare_dir(&absolute)?;
        check_dir_path(&dir)?;
        sshd::prepare_process()?;
        for sub in ["sshd", "hosts", "home"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        let client_public = keys::write_key_pair(&dir.join("client_key"), "fleet-lab-client")?;
        let ak = dir.join("authorized_keys");
        std::fs::write(&ak, format!("{client_public}\n")).map_err(io("write", &ak))?;

        let sshd_port = match opts.latency {
            None => opts.port,
            Some(_) => opts.port.checked_add(1).unwrap_or(opts.port - 1),
        };
        let mut hosts = Vec::with_capacity(opts.hosts);
        for name in host_names(opts.hosts) {
            let files = SshdFiles::new(&dir, &name);
            let root = record::host_root(&dir, &name);
            for d in [&files.dir, &root, &dir.join("home").join(&name)] {
                std::fs::create_dir_all(d).map_err(io("create", d))?;
            }
            let public = keys::write_key_pair(&files.host_key(), &name)?;
            hosts.push(LabHost {
                name,
                address: Ipv4Addr::UNSPECIFIED, // assigned below
                port: opts.port,
                sshd_port,
                pid: None,
                root,
                host_public_key: key_without_comment(&public),
            });
        }
        let mut lab = Lab {
            dir,
            user: current_user(),
            hosts,
            latency: opts.latency,
            proxy_pid: None,
            proxy_child: None,
            web_pid: None,
            web_port: None,
            bastion: None,
            private_dirs: false,
        };
        let all: Vec<usize> = (0..lab.hosts.len()).collect();
        let ports: &[u16] = if sshd_port == opts.port {
            &[opts.port]
        } else {
            &[opts.port, sshd_port]
        };
        let mut attempt = 1;
        loop {
            let addresses = addr::allocate(opts.hosts, ports, opts.first_address)?;
            lab.assign_addresses(&addresses)?;
            let deadline = start_deadline(all.len());
            let started = lab
                .start_hosts(&all, deadline)
                .and_then(|()| lab.start_front(deadline));
            match started {
                // Another lab took an address between our check and sshd's bind: the
                // daemons started were stopped again, so try another random block.
                Err(LabError::AddressInUse { .. })
                    if opts.first_address.is_none() && attempt < ADDRESS_ATTEMPTS =>
                {
                    attempt += 1;
                }
                result => return result.map(|()| lab),
            }
        }
    }

    /// Reads the lab recorded in `dir` (by [`Lab::up`]), running or not.
    ///
    /// # Errors
    ///
    /// [`LabError::Dir`] when `dir` holds no lab record, [`LabError::Record`] when the record
    /// is unreadable.
    pub fn open(dir: &Path) -> Result<Lab, LabError> {
        // Absolute, as recorded in the daemons' command lines, which `down` checks.
        let dir = dir.canonicalize().map_err(io("open", dir))?;
        let Some(rec) = record::read(&dir)? else {
            return Err(LabError::Dir {
                dir,
                reason: "no `lab.toml` record here: not a lab directory",
            });
        };
        let hosts = rec
            .hosts
            .into_iter()
            .map(|h| LabHost {
                root: record::host_root(&dir, &h.name),
                name: h.name,
                address: h.address,
                port: h.port,
                sshd_port: h.sshd_port.unwrap_or(h.port),
                pid: h.pid,
                host_public_key: h.host_public_key,
            })
            .collect();
        Ok(Lab {
            dir,
            user: rec.user,
            hosts,
            latency: rec.proxy.as_ref().map(record::RecordProxy::latency),
            proxy_pid: rec.proxy.and_then(|p| p.pid),
            proxy_child: None,
            web_pid: rec.web.as_ref().and_then(|w| w.pid),
            web_port: rec.web.map(|w| w.http),
            bastion: rec.bastion,
            private_dirs: rec.private_dirs,
        })
    }

    /// Stops every daemon of this lab, the latency proxy first; returns how many sshds were
    /// running and were stopped.
    ///
    /// Only pids (recorded, or in a host's pid file) whose command line still names that
    /// host's own `sshd_config` (or, for the proxy, this lab's directory) are signalled:
    /// SIGTERM, then SIGKILL after 3 s. Sessions already open on an sshd are left alone;
    /// those through the proxy are cut.
    ///
    /// # Errors
    ///
    /// When the record cannot be rewritten.
    pub fn down(&mut self) -> Result<usize, LabError> {
        self.stop_proxy_process();
        self.stop_web();
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        let stopped = self.stop_hosts(&all);
        record::write(self)?;
        Ok(stopped)
    }

    /// The lab directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every host, in name order.
    pub fn hosts(&self) -> &[LabHost] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&LabHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// `DIR/inventory.toml`, fleet's inventory of the lab.
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }

    /// `DIR/client_key`, the private key authorized on every host.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// `DIR/known_hosts`, holding every host's key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// `DIR/ssh_config`, for the OpenSSH client (`ssh -F`).
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// The user sessions log in as: the current user (sshd run by anyone but root can only
    /// log in its own user).
    pub fn user(&self) -> &str {
        &self.user
    }

    fn index(&self, name: &str) -> Result<usize, LabError> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| LabError::UnknownHost(name.to_owned()))
    }

    /// Gives the hosts their addresses and writes their sshd configs (checking the first
    /// with `sshd -t`) and the client files.
    fn assign_addresses(&mut self, addresses: &[Ipv4Addr]) -> Result<(), LabError> {
        for (i, (h, address)) in self.hosts.iter_mut().zip(addresses).enumerate() {
            h.address = *address;
            let input = sshd::ConfigInput {
                name: &h.name,
                address: h.address,
                port: h.sshd_port,
                lab_dir: &self.dir,
            };
            sshd::write_config(&input, i == 0)?;
        }
        self.write_files()
    }

    /// The client files and the record (before the daemons start, so a failed start still
    /// leaves a record for `down`).
    fn write_files(&self) -> Result<(), LabError> {
        let write = |name: &str, text: String| {
            let p = self.dir.join(name);
            std::fs::write(&p, text).map_err(io("write", &p))
        };
        write("known_hosts", inventory::known_hosts(self))?;
        write("inventory.toml", inventory::text(self))?;
        write("ssh_config", inventory::ssh_config(self))?;
        record::write(self)
    }

    /// Stops the daemons of the hosts at `which`: the recorded pid, and the one in the host's
    /// pid file should the record be stale, each only if it still runs that host's config.
    /// Returns how many hosts had a daemon stopped.
    fn stop_hosts(&mut self, which: &[usize]) -> usize {
        let mut daemons = Vec::new();
        for &i in which {
            let h = &mut self.hosts[i];
            let files = SshdFiles::new(&self.dir, &h.name);
            let recorded = h.pid.take();
            let from_file = sshd::read_pid(&files.pid_file()).filter(|p| Some(*p) != recorded);
            for pid in recorded.into_iter().chain(from_file) {
                daemons.push((i, pid, files.config()));
            }
        }
        let signalled: Vec<(u32, PathBuf)> = daemons
            .iter()
            .map(|(_, pid, cfg)| (*pid, cfg.clone()))
            .collect();
        let ours = sshd::stop_all(&signalled);
        let mut hosts: Vec<usize> = daemons
            .iter()
            .zip(ours)
            .filter_map(|((i, _, _), ours)| ours.then_some(*i))
            .collect();
        hosts.dedup();
        for &i in which {
            let _ = std::fs::remove_file(SshdFiles::new(&self.dir, &self.hosts[i].name).pid_file());
        }
        hosts.len()
    }

    /// Starts the daemons of the hosts at `which`, several at a time, and waits until each
    /// has written its pid file and answers with an SSH banner. On failure the ones started
    /// are stopped again and the first error (in host order) is returned.
    fn start_hosts(&mut self, which: &[usize], deadline: Instant) -> Result<(), LabError> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let (dir, hosts, bastion) = (&self.dir, &self.hosts, &self.bastion);
        let private = self.private_dirs.then(|| self.private_dir());
        let work = || {
            let mut done = Vec::new();
            // After one failure the lab is doomed: start nothing more.
            while !failed.load(Ordering::Relaxed) {
                let Some(&i) = which.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let h = &hosts[i];
                let files = SshdFiles::new(dir, &h.name);
                let ns = sshd::Namespace {
                    etc_hosts: (bastion.as_deref() == Some(h.name.as_str()))
                        .then(|| files.hosts_file()),
                    private_dir: private
                        .as_ref()
                        .map(|shared| (h.root.join("private"), shared.clone())),
                };
                let result = sshd::start(&h.name, h.address, h.sshd_port, &files, &ns, deadline);
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                done.push((i, result));
            }
            done
        };
        let mut results: Vec<(usize, Result<u32, LabError>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..which.len().clamp(1, START_THREADS))
                .map(|_| s.spawn(work))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.sort_by_key(|(i, _)| *i);
        let mut first_error = None;
        for (i, result) in results {
            match result {
                Ok(pid) => self.hosts[i].pid = Some(pid),
                Err(e) => {
                    // It may have started without answering: its pid file says.
                    let files = SshdFiles::new(&self.dir, &self.hosts[i].name);
                    self.hosts[i].pid = sshd::read_pid(&files.pid_file());
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            self.stop_hosts(which);
            let _ = record::write(self);
            return Err(e);
        }
        record::write(self)
    }
}

/// Host names `h01`..: zero-padded to the width of `n`, at least 2 digits.
pub(crate) fn host_names(n: usize) -> Vec<String> {
    let width = n.to_string().len().max(2);
    (1..=n).map(|i| format!("h{i:0width$}")).collect()
}

/// `ssh-ed25519 AAAA... comment` without the comment.
fn key_without_comment(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The current user's name, which sshd sessions log in as.
fn current_user() -> String {
    if rustix::process::getuid().is_root() {
        return "root".into();
    }
    // `id -un` asks the user database for our uid; $USER may be stale after `su`.
    let from_id = std::process::Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty());
    from_id
        .or_else(|| {
            ["USER", "LOGNAME"]
                .into_iter()
                .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        })
        .unwrap_or_else(|| "root".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn names(n: usize, first: &str, last: &str) {
        let got = host_names(n);
        assert_eq!(got.len(), n);
        assert_eq!((got[0].as_str(), got[n - 1].as_str()), (first, last));
    }

    #[test]
    fn host_names_are_zero_padded_to_the_count() {
        names(1, "h01", "h01");
        names(5, "h01", "h05");
        names(99, "h01", "h99");
        names(100, "h001", "h100");
        names(200, "h001", "h200");
        names(1000, "h0001", "h1000");
    }

    #[test]
    fn up_rejects_zero_hosts_and_non_loopback_first_address() {
        let dir = tempfile::tempdir().unwrap();
        let err = Lab::up(&LabOptions::new(0, dir.path())).unwrap_err();
        assert!(
            matches!(err, LabError::NoHosts | LabError::SshdMissing(_)),
            "{err}"
        );
        let mut opts = LabOptions::new(1, dir.path().join("lab"));
        opts.first_address = Some(Ipv4Addr::new(10, 1, 2, 3));
        let err = Lab::up(&opts).unwrap_err();
        assert!(
            matches!(err, LabError::NotLoopback(_) | LabError::SshdMissing(_)),
            "{err}"
        );
    }

    #[test]
    fn record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        let lab = Lab {
            dir: dir.clone(),
            user: "root".into(),
            latency: Some(Latency {
                rtt: Duration::from_millis(100),
                jitter: Duration::from_millis(10),
                loss: 0.001,
            }),
            proxy_pid: Some(4343),
            proxy_child: None,
            web_pid: None,
            web_port: None,
            bastion: Some("h1".into()),
            private_dirs: true,
            hosts: vec![
                LabHost {
                    name: "h01".into(),
                    address: Ipv4Addr::new(127, 200, 1, 1),
                    port: 2222,
                    sshd_port: 2223,
                    pid: Some(4242),
                    root: dir.join("hosts/h01"),
                    host_public_key: "ssh-ed25519 AAAAone".into(),
                },
                LabHost {
                    name: "h02".into(),
                    address: Ipv4Addr::new(127, 200, 1, 2),
                    port: 2222,
                    sshd_port: 2222,
                    pid: None,
                    root: dir.join("hosts/h02"),
                    host_public_key: "ssh-ed25519 AAAAtwo".into(),
                },
            ],
        };
        record::write(&lab).unwrap();
        let text = std::fs::read_to_string(dir.join("lab.toml")).unwrap();
        assert!(
            text.contains(&format!(
                "sshd_config = \"{}/sshd/h01/sshd_config\"",
                dir.display()
            )),
            "{text}"
        );
        // Scripts (bench.py) take the first `port = ` of the file for the hosts' port.
        let first_port = text.find("port = ").unwrap();
        assert!(text[first_port..].starts_with("port = 2222\n"), "{text}");
        assert!(
            text.contains(
                "\n[proxy]\nrtt = \"100ms\"\njitter = \"10ms\"\nloss = 0.001\npid = 4343\n"
            ),
            "{text}"
        );
        let back = Lab::open(&dir).unwrap();
        assert_eq!(back.hosts, lab.hosts);
        assert_eq!(back.user, "root");
        assert_eq!(back.dir, dir);
        assert_eq!(back.latency, lab.latency);
        assert_eq!(back.proxy_pid, Some(4343));
        assert_eq!(back.bastion(), Some("h1"));
        assert!(back.has_private_dirs());
    }

    #[test]
    fn missing_sshd_says_how_to_install_it() {
        assert_eq!(
            LabError::SshdMissing(SSHD.into()).to_string(),
            "sshd not found at `/usr/sbin/sshd`: install it with `apt-get install -y openssh-server`"
        );
    }

    #[test]
    fn open_refuses_a_directory_without_record() {
        let dir = tempfile::tempdir().unwrap();
        let err = Lab::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a lab directory"), "{err}");
    }
}
