//! A lab of real OpenSSH servers on loopback, for `fleet`'s tests and demos.
//!
//! # Overview
//!
//! [`Lab::up`] starts N `/usr/sbin/sshd` daemons, each with its own ed25519 host key and its
//! own address in 127.0.0.0/8 (a random block per lab, so parallel tests never collide), one
//! throwaway client key authorized on all of them, and writes client files into the lab
//! directory: `inventory.toml` (fleet's format, host keys pinned through `known_hosts`),
//! `known_hosts`, `ssh_config`, `client_key`. Sessions on host `hNN` see `FLEET_HOST=hNN` and
//! `FLEET_ROOT=DIR/hosts/hNN`, the host's own directory.
//!
//! [`Lab::down`] stops exactly the daemons the lab started, by pid, after checking each pid
//! still runs that host's own config. [`TestLab`] is the test kit: a lab in a temporary
//! directory, torn down on drop.
//!
//! This crate depends on no other fleet crate (it writes inventory TOML as text), so every
//! crate can use it as a dev-dependency.
//!
//! # Example
//!
//! ```no_run
//! let lab = fleet_lab::TestLab::start(3);
//! assert_eq!(lab.hosts().len(), 3);
//! println!("try: fleet -i {} exec -- hostname", lab.inventory_path().display());
//! ```
#![warn(missing_docs)]

mod addr;
mod agent;
mod error;
mod inventory;
mod keys;
mod sshd;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use agent::TestAgent;
pub use error::LabError;
pub use keys::generate_client_key;

use error::io;
use sshd::{SSHD, SshdFiles};

const MARKER: &str = ".fleet-lab";
const RECORD: &str = "lab.txt";

/// What lab to start.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Number of hosts.
    pub hosts: usize,
    /// Directory that receives keys, configs, host directories and the inventory.
    pub dir: PathBuf,
    /// TCP port every host listens on (each on its own address).
    pub port: u16,
    /// First address of the block (in 127.0.0.0/8); a random free block when `None`.
    pub first_address: Option<Ipv4Addr>,
}

impl LabOptions {
    /// Options for `hosts` hosts in `dir`, port 2222, a random address block.
    pub fn new(hosts: usize, dir: impl Into<PathBuf>) -> Self {
        Self {
            hosts,
            dir: dir.into(),
            port: 2222,
            first_address: None,
        }
    }
}

/// One lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    /// Inventory name (`h01`, ...).
    pub name: String,
    /// Its loopback address.
    pub address: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// The running sshd's pid; `None` when stopped.
    pub pid: Option<u32>,
    /// The host's own directory (`FLEET_ROOT` in its sessions).
    pub root: PathBuf,
    /// Its host key, `ssh-ed25519 AAAA...`.
    pub host_public_key: String,
}

/// A running (or stopped) lab. Dropping it leaves the daemons running; see [`TestLab`].
#[derive(Debug)]
pub struct Lab {
    dir: PathBuf,
    user: String,
    hosts: Vec<LabHost>,
}

impl Lab {
    /// Creates the lab directory and starts every host.
    ///
    /// # Errors
    ///
    /// When sshd is missing, `dir` holds a running lab or unrelated files, no free addresses
    /// are found, or a daemon does not come up (already started ones are stopped again).
    pub fn up(opts: &LabOptions) -> Result<Lab, LabError> {
        if !Path::new(SSHD).exists() {
            return Err(LabError::SshdMissing(SSHD.into()));
        }
        if opts.hosts == 0 {
            return Err(LabError::Dir {
                dir: opts.dir.clone(),
                reason: "a lab needs at least one host".into(),
            });
        }
        let dir = prepare_dir(&opts.dir)?;
        sshd::ensure_privsep_dir()?;
        let addresses = addr::allocate(opts.hosts, opts.port, opts.first_address)?;
        let user = current_user();
        for sub in ["sshd", "hosts", "home"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        let client_public = keys::write_key_pair(&dir.join("client_key"), "fleet-lab-client")?;
        let ak = dir.join("authorized_keys");
        std::fs::write(&ak, format!("{client_public}\n")).map_err(io("write", &ak))?;

        let width = opts.hosts.to_string().len().max(2);
        let mut hosts = Vec::with_capacity(opts.hosts);
        let mut penalties = None;
        for (i, address) in addresses.into_iter().enumerate() {
            let name = format!("h{:0width$}", i + 1);
            let files = SshdFiles::new(&dir, &name);
            for d in [
                &files.dir,
                &dir.join("hosts").join(&name),
                &dir.join("home").join(&name),
            ] {
                std::fs::create_dir_all(d).map_err(io("create", d))?;
            }
            let host_public_key = keys::write_key_pair(&files.host_key(), &name)?;
            let mut input = sshd::ConfigInput {
                name: &name,
                address,
                port: opts.port,
                lab_dir: &dir,
                per_source_penalties: penalties.unwrap_or(true),
            };
            let cfg = files.config();
            std::fs::write(&cfg, sshd::config_text(&input)).map_err(io("write", &cfg))?;
            if penalties.is_none() {
                // OpenSSH < 9.8 does not know PerSourcePenalties: try with it, then without.
                let supported = sshd::check_config(&cfg).is_ok();
                penalties = Some(supported);
                if !supported {
                    input.per_source_penalties = false;
                    std::fs::write(&cfg, sshd::config_text(&input)).map_err(io("write", &cfg))?;
                    sshd::check_config(&cfg).map_err(|reason| LabError::Sshd {
                        host: name.clone(),
                        reason,
                    })?;
                }
            }
            let key_only = host_public_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            hosts.push(LabHost {
                root: dir.join("hosts").join(&name),
                name,
                address,
                port: opts.port,
                pid: None,
                host_public_key: key_only,
            });
        }
        let mut lab = Lab { dir, user, hosts };
        if let Err(e) = lab.start_all() {
            let _ = lab.down();
            return Err(e);
        }
        lab.write_client_files()?;
        Ok(lab)
    }

    /// Reads the lab recorded in `dir` (as written by [`Lab::up`]).
    ///
    /// # Errors
    ///
    /// When `dir` is not a lab directory or its record is unreadable.
    pub fn open(dir: &Path) -> Result<Lab, LabError> {
        let path = dir.join(RECORD);
        let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
        let bad = |line| LabError::Record {
            path: path.clone(),
            line,
        };
        let mut user = None;
        let mut hosts = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                [] => {}
                [c, ..] if c.starts_with('#') => {}
                ["user", u] => user = Some((*u).to_owned()),
                [name, address, port, pid] => {
                    let files = SshdFiles::new(dir, name);
                    let public = std::fs::read_to_string(keys::pub_path(&files.host_key()))
                        .map_err(io("read", files.host_key()))?;
                    hosts.push(LabHost {
                        name: (*name).to_owned(),
                        address: address.parse().map_err(|_| bad(i + 1))?,
                        port: port.parse().map_err(|_| bad(i + 1))?,
                        pid: pid.parse::<u32>().ok().filter(|p| *p != 0),
                        root: dir.join("hosts").join(name),
                        host_public_key: public
                            .split_whitespace()
                            .take(2)
                            .collect::<Vec<_>>()
                            .join(" "),
                    });
                }
                _ => return Err(bad(i + 1)),
            }
        }
        Ok(Lab {
            dir: dir.to_owned(),
            user: user.unwrap_or_else(current_user),
            hosts,
        })
    }

    /// Stops every host this lab started; returns how many daemons were stopped.
    ///
    /// # Errors
    ///
    /// When the record cannot be rewritten.
    pub fn down(&mut self) -> Result<usize, LabError> {
        let mut stopped = 0;
        for h in &mut self.hosts {
            if let Some(pid) = h.pid.take() {
                let files = SshdFiles::new(&self.dir, &h.name);
                if sshd::stop(pid, &files.config()) {
                    stopped += 1;
                }
                let _ = std::fs::remove_file(files.pid_file());
            }
        }
        self.write_record()?;
        Ok(stopped)
    }

    /// Stops one host (its address then refuses connections).
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`], or when the record cannot be rewritten.
    pub fn stop_host(&mut self, name: &str) -> Result<(), LabError> {
        let dir = self.dir.clone();
        let h = self.host_mut(name)?;
        if let Some(pid) = h.pid.take() {
            let files = SshdFiles::new(&dir, name);
            sshd::stop(pid, &files.config());
            let _ = std::fs::remove_file(files.pid_file());
        }
        self.write_record()
    }

    /// Starts one stopped host again.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`], or when its sshd does not come up.
    pub fn start_host(&mut self, name: &str) -> Result<(), LabError> {
        let files = SshdFiles::new(&self.dir, name);
        let running = self
            .host_mut(name)?
            .pid
            .is_some_and(|p| sshd::is_our_sshd(p, &files.config()));
        if !running {
            sshd::spawn(name, &files)?;
            let pid = sshd::wait_pid(name, &files, Instant::now() + Duration::from_secs(20))?;
            self.host_mut(name)?.pid = Some(pid);
        }
        self.write_record()
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

    /// `DIR/inventory.toml`.
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("inventory.toml")
    }

    /// `DIR/client_key`, authorized on every host.
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

    /// The user sessions log in as (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    fn host_mut(&mut self, name: &str) -> Result<&mut LabHost, LabError> {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::UnknownHost(name.to_owned()))
    }

    /// Starts every daemon, a few at a time, then waits for each pid file (sshd writes it once
    /// its listening socket is bound).
    fn start_all(&mut self) -> Result<(), LabError> {
        let dir = self.dir.clone();
        let names: Vec<String> = self.hosts.iter().map(|h| h.name.clone()).collect();
        let threads = 8.min(names.len());
        let chunk = names.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| {
                    let dir = &dir;
                    s.spawn(move || {
                        part.iter()
                            .try_for_each(|n| sshd::spawn(n, &SshdFiles::new(dir, n)))
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LabError::Key("start thread panicked".into())))
            })
        })
        .inspect_err(|_| {
            // Record whatever did start so `down` can stop it.
            for h in &mut self.hosts {
                h.pid = std::fs::read_to_string(SshdFiles::new(&dir, &h.name).pid_file())
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
            }
        })?;
        let deadline = Instant::now()
            + Duration::from_secs(30)
            + Duration::from_millis(20 * names.len() as u64);
        for h in &mut self.hosts {
            let files = SshdFiles::new(&dir, &h.name);
            h.pid = Some(sshd::wait_pid(&h.name, &files, deadline)?);
        }
        self.write_record()
    }

    fn write_record(&self) -> Result<(), LabError> {
        let mut text = format!(
            "# fleet-lab record: name address port pid (0 = stopped)\nuser {}\n",
            self.user
        );
        for h in &self.hosts {
            text.push_str(&format!(
                "{} {} {} {}\n",
                h.name,
                h.address,
                h.port,
                h.pid.unwrap_or(0)
            ));
        }
        let p = self.dir.join(RECORD);
        std::fs::write(&p, text).map_err(io("write", &p))
    }

    fn write_client_files(&self) -> Result<(), LabError> {
        let write = |name: &str, text: String| {
            let p = self.dir.join(name);
            std::fs::write(&p, text).map_err(io("write", &p))
        };
        let known: String = self
            .hosts
            .iter()
            .map(|h| format!("[{}]:{} {}\n", h.address, h.port, h.host_public_key))
            .collect();
        write("known_hosts", known)?;
        write("inventory.toml", inventory::text(self))?;
        write("ssh_config", inventory::ssh_config(self))
    }
}

fn prepare_dir(dir: &Path) -> Result<PathBuf, LabError> {
    if dir.exists() {
        let record = dir.join(RECORD);
        if record.exists()
            && let Ok(lab) = Lab::open(dir)
        {
            let running = lab.hosts.iter().any(|h| {
                h.pid
                    .is_some_and(|p| sshd::is_our_sshd(p, &SshdFiles::new(dir, &h.name).config()))
            });
            if running {
                return Err(LabError::Dir {
                    dir: dir.to_owned(),
                    reason: "a lab is still running there; run `fleet-lab down` first".into(),
                });
            }
        }
        let empty = std::fs::read_dir(dir)
            .map_err(io("read", dir))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(LabError::Dir {
                dir: dir.to_owned(),
                reason: "not empty and not a lab directory; refusing to touch it".into(),
            });
        }
        for sub in ["sshd", "hosts", "home"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(io("remove", &p))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    std::fs::write(dir.join(MARKER), "").map_err(io("write", dir.join(MARKER)))?;
    dir.canonicalize().map_err(io("resolve", dir))
}

fn current_user() -> String {
    if rustix::process::getuid().is_root() {
        return "root".into();
    }
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty()
        {
            return u;
        }
    }
    std::process::Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// A lab in a fresh temporary directory, with every daemon stopped on drop: the test kit.
pub struct TestLab {
    lab: Lab,
    // Dropped after `lab` is stopped (field order matters only for clarity; Drop stops first).
    _dir: tempfile::TempDir,
}

impl TestLab {
    /// Starts `hosts` hosts.
    ///
    /// # Panics
    ///
    /// When the lab cannot start, with the reason (e.g. how to install sshd): a test needing
    /// the lab must fail, not silently skip.
    pub fn start(hosts: usize) -> TestLab {
        let dir = tempfile::Builder::new()
            .prefix("fleet-lab-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary lab directory: {e}"));
        let lab = Lab::up(&LabOptions::new(hosts, dir.path()))
            .unwrap_or_else(|e| panic!("fleet-lab: {e}"));
        TestLab { lab, _dir: dir }
    }

    /// The lab.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The lab, to stop or start hosts.
    pub fn lab_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

impl std::ops::Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let _ = self.lab.down();
    }
}
