//! Network and host faults during `fleet upgrade` and `fleet migrate release`: a host down
//! before connect, a host killed mid-step (in the DB upgrade, after the release's switch, in
//! the middle of the recovery), a host that accepts TCP and never speaks SSH, a host that goes
//! silent mid-step (its sshd frozen: nothing closes, nothing answers), a command hanging past
//! its step timeout, a connection dropped mid-upload, the bastion dying, going silent, or
//! coming back between batches. Each ends with what is true on the hosts (versions,
//! maintenance, served release, the fakes' call logs), nothing of the run still running
//! there, and `fleet recover` with nothing left to recover, or recovering exactly the sites
//! the run named.
//!
//! (The host killed while its site is in maintenance before the DB step is
//! `upgrade::host_killed_mid_run_is_reported_and_recovered`; an upload cut off by its own
//! timeout is `copy::copy_cut_off_leaves_the_old_file_and_no_partial_one`; a bastion down
//! before the run is `bastion::a_dead_bastion_is_one_error_for_every_host_behind_it`.)

mod bastion; // the bastion dying, going silent, coming back between batches
mod hosts; // a host down, killed, mute, silent, or its step hung
mod release; // fleet migrate release with its hosts failing
mod upload; // the release tarball's upload cut mid-way

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_lab::{LabSite, SitesOptions, TestLab};

use super::{Figures, Rng, seed};
use crate::migrate::rollout::{imported_lab, new_maintenance, release};
use crate::migrate::site_lines;
use crate::resume::steps_running;
use crate::upgrade::{
    FROM, TO, Upgrade, fleet_cmd, is_maintenance_on, is_upgrade_call, prior_maintenance, run_id,
    spawn_upgrade, wait_until,
};
use crate::{both, stderr, stdout};

/// Waits for a spawned fleet, reading its output meanwhile; panics (after killing it) when it
/// is still running after `limit`: a fault must never make fleet hang.
fn finish_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: fleet still running after {limit:?}\nstderr:\n{}",
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    };
    trace(what, &o);
    o
}

/// Shows what fleet said (nextest prints a test's stderr when it fails).
fn trace(label: &str, o: &Output) {
    let _ = writeln!(
        std::io::stderr(),
        "---- {label}: {:?}\n{}",
        o.status.code(),
        both(o)
    );
}

/// `fleet upgrade` with `extra`, bounded.
fn upgrade(u: &Upgrade, extra: &[&str], limit: Duration) -> Output {
    finish_within(spawn_upgrade(u, extra), limit, "fleet upgrade")
}

/// A fleet command on `u`'s lab and state dir, traced.
fn cmd(u: &Upgrade, args: &[&str]) -> Output {
    let o = fleet_cmd(u, args);
    trace(&args.join(" "), &o);
    o
}

/// A fleet command on `u`'s lab and state dir, spawned with its output piped.
fn spawn_cmd(u: &Upgrade, args: &[&str]) -> Child {
    let mut c = crate::fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(u.state.path()).args(args);
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fleet")
}

/// The summary row of `host`/`site` (`HOST SITE BATCH STATUS DETAIL`).
fn row(o: &Output, host: &str, site: &str) -> String {
    stdout(o)
        .lines()
        .find(|l| {
            let mut f = l.split_whitespace();
            f.next() == Some(host) && f.next() == Some(site)
        })
        .unwrap_or_else(|| panic!("no row for {host}/{site}:\n{}", both(o)))
        .to_owned()
}

/// The rows `fleet runs show RUN` prints for `host`.
fn journal_rows(u: &Upgrade, run: &str, host: &str) -> Vec<String> {
    let o = fleet_cmd(u, &["runs", "show", run]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    stdout(&o)
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(host))
        .map(str::to_owned)
        .collect()
}

/// Waits until no process on the hosts carries a step of `run` (a command that outlived its
/// connection is given `limit` to end), then asserts so.
fn nothing_running(run: &str, limit: Duration) {
    let start = Instant::now();
    while !steps_running(run).is_empty() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = steps_running(run);
    assert!(
        left.is_empty(),
        "processes of {run} still running: {left:?}"
    );
}

/// `fleet recover --yes` finds nothing to do.
fn nothing_to_recover(u: &Upgrade) {
    let o = fleet_cmd(u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
}

/// A site at a safe end of an upgrade: code and database the same version (no upgrade left
/// half done), maintenance as before the run.
fn safe(s: &LabSite) -> bool {
    let db = s.db_version();
    s.code_version() == db && !db.ends_with(".upgrade") && s.maintenance() == prior_maintenance(s)
}

fn left_down(sites: &[LabSite]) -> u64 {
    sites.iter().filter(|s| !safe(s)).count() as u64
}

fn db_upgrades(u: &Upgrade, host: &str) -> usize {
    u.calls(host).iter().filter(|c| is_upgrade_call(c)).count()
}

fn clear(u: &Upgrade, host: &str, point: &str) {
    let _ = std::fs::remove_file(u.host_root(host).join("fake-civi/fail").join(point));
}

/// Sets the lab inventory's connect timeout (the lab writes 10 s).
fn connect_timeout(u: &Upgrade, t: &str) {
    let inv = u.lab.inventory_path();
    let text = std::fs::read_to_string(&inv).expect("inventory");
    assert_eq!(
        text.matches("connect_timeout = \"10s\"").count(),
        1,
        "{text}"
    );
    let text = text.replace(
        "connect_timeout = \"10s\"",
        &format!("connect_timeout = \"{t}\""),
    );
    std::fs::write(&inv, text).expect("write inventory");
}

// ---- upgrade ----------------------------------------------------------------------------

/// A listener on a host's address that accepts TCP and never speaks SSH (with a banner, it
/// sends an SSH banner and then nothing, so the key exchange never ends). It records how long
/// each client kept its connection before giving up; dropping it frees the address.
struct Mute {
    held: Arc<Mutex<Vec<Duration>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mute {
    fn on(addr: SocketAddrV4, banner: Option<&'static [u8]>) -> Mute {
        let listener = TcpListener::bind(addr).expect("bind the mute host's address");
        listener.set_nonblocking(true).expect("nonblocking");
        let held = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, halt) = (held.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let h = h.clone();
                // Each connection's thread ends when its client gives up.
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let _ = c.set_nonblocking(false);
                    if let Some(b) = banner {
                        let _ = c.write_all(b);
                    }
                    let mut buf = [0u8; 4096];
                    while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
                    h.lock().expect("held").push(t.elapsed());
                });
            }
        });
        Mute {
            held,
            stop,
            thread: Some(thread),
        }
    }

    fn held(&self) -> Vec<Duration> {
        self.held.lock().expect("held").clone()
    }
}

impl Drop for Mute {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A mute host in place of lab host `name`, whose sshd must be down.
fn mute(u: &Upgrade, name: &str, banner: Option<&'static [u8]>) -> Mute {
    let h = u.lab.host(name).expect("host");
    Mute::on(SocketAddrV4::new(h.address, h.port), banner)
}

/// Every connection `m` got was given up within a 2 s connect timeout (with room for a
/// loaded machine), and there was at least one.
fn given_up_in_time(m: &Mute, who: &str) {
    let held = m.held();
    assert!(!held.is_empty(), "{who}: fleet never connected");
    assert!(
        held.iter().all(|d| *d < secs(5)),
        "{who}: connections held for {held:?}"
    );
}

/// An OpenSSH client config that gives up a connection after two unanswered keepalives,
/// one a second (fleet reads `ServerAliveInterval` and `ServerAliveCountMax`).
fn quick_keepalive(u: &Upgrade) -> String {
    let p = u.state.path().join("ssh_config");
    std::fs::write(
        &p,
        "Host *\n    ServerAliveInterval 1\n    ServerAliveCountMax 2\n",
    )
    .expect("ssh_config");
    p.display().to_string()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
