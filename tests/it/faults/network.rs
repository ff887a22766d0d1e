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

/// A host whose sshd is dead before the run: reported unreachable in the summary and the
/// journal, none of its sites touched (not one call of the fake tools), the other hosts
/// upgraded, exit 1; nothing to recover; once it is back a new run upgrades it.
#[test]
fn upgrade_host_down_before_connect_is_unreachable_untouched_and_the_others_go_on() {
    let mut u = Upgrade::new(3, 2);
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = upgrade(&u, &["--batches", "1,100%", "--max-fail", "1"], secs(90));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for s in &u.sites {
        if s.host == "h02" {
            assert!(
                row(&o, "h02", &s.name).contains("unreachable"),
                "{}",
                both(&o)
            );
            assert_eq!(s.code_version(), FROM);
            assert_eq!(s.db_version(), FROM);
            assert_eq!(s.maintenance(), prior_maintenance(s));
        } else {
            assert_eq!(s.code_version(), TO, "{}/{}: {}", s.host, s.name, both(&o));
            assert_eq!(s.db_version(), TO);
            assert_eq!(s.maintenance(), prior_maintenance(s));
        }
    }
    assert!(u.calls("h02").is_empty(), "h02 was touched");
    assert!(!stderr(&o).contains("STILL IN MAINTENANCE"), "{}", both(&o));
    let run = run_id(&u);
    let rows = journal_rows(&u, &run, "h02");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.contains("unreachable")), "{rows:?}");
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    let down = left_down(&u.sites);

    u.lab.lab_mut().start_host("h02").expect("start h02");
    let o = upgrade(&u, &[], secs(90));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        assert_eq!(s.db_version(), TO, "{}/{}", s.host, s.name);
        assert!(safe(s), "{}/{}", s.host, s.name);
    }
    Figures {
        sites: u.sites.len() as u64,
        left_down: down + left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, host down before connect");
}

/// A host killed (sshd and every session) in the middle of its DB upgrade: the run says
/// loudly that its site is still in maintenance, the others finish; `recover` while the host
/// is down changes nothing and forgets nothing; once it is back, `recover` restores the site
/// (the DB upgrade died midway: code and database back to the old version, from this run's
/// dump), maintenance as before, and the DB upgrade was run once, never again.
#[test]
fn upgrade_host_killed_during_the_db_step_is_reported_down_then_recovered() {
    let mut u = Upgrade::new(3, 1);
    u.inject("h02", "upgrade.slow", Some("30"));
    let child = spawn_upgrade(&u, &["--batches", "1,100%", "--max-fail", "1"]);
    let s = u.sites_of("h02")[0].clone();
    wait_until("h02's DB upgrade under way", secs(60), || {
        s.db_version().ends_with(".upgrade")
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = finish_within(child, secs(60), "the upgrade whose host died");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h02/site1"),
        "{}",
        both(&o)
    );
    for h in ["h01", "h03"] {
        let t = u.sites_of(h)[0];
        assert_eq!(t.db_version(), TO, "{h}: {}", both(&o));
        assert!(safe(t), "{h}");
    }
    // What the crash left: the journal knows it, the host is as the kill left it.
    assert_eq!(s.maintenance(), "1");
    assert_eq!(s.db_version(), format!("{TO}.upgrade"));
    let run = run_id(&u);
    let o = cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains("unreachable"), "{}", both(&o));
    assert_eq!(s.maintenance(), "1");
    // Half back: its address answers TCP and no SSH. `recover` gives up within the connect
    // timeout, and forgets nothing.
    connect_timeout(&u, "2s");
    let m = mute(&u, "h02", None);
    let o = finish_within(spawn_cmd(&u, &["recover", "--yes"]), secs(30), "recover");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        row(&o, "h02", "site1").contains("timed out"),
        "{}",
        both(&o)
    );
    given_up_in_time(&m, "h02");
    drop(m);
    assert_eq!(s.maintenance(), "1");

    // Back, and killed again in the middle of the recovery (each tool call slow): the
    // recovery's own steps are journaled, the site is still named, nothing is lost.
    u.lab.lab_mut().start_host("h02").expect("start h02");
    clear(&u, "h02", "upgrade.slow");
    u.inject("h02", "slow", Some("1"));
    let before = u.calls("h02").len();
    let child = spawn_cmd(&u, &["recover", "--yes"]);
    wait_until("the recovery under way", secs(60), || {
        u.calls("h02").len() >= before + 2
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02 again");
    let o = finish_within(child, secs(60), "the recovery whose host died");
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stderr(&o).contains("h02/site1"), "{}", both(&o));
    let o = cmd(&u, &["hosts"]);
    assert!(
        stderr(&o).contains("left 1 site(s) in maintenance or mid-step"),
        "{}",
        both(&o)
    );
    assert_eq!(s.maintenance(), "1");

    u.lab.lab_mut().start_host("h02").expect("start h02");
    clear(&u, "h02", "slow");
    let o = cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.code_version(), FROM, "{}", both(&o));
    assert_eq!(s.db_version(), FROM, "{}", both(&o));
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    // The killed upgrade never logged its end (the fake logs a call when it ends): any
    // upgrade in the log ran during the recovery.
    assert_eq!(db_upgrades(&u, "h02"), 0, "the recovery ran a DB upgrade");
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, host killed in DB step");
}

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

/// Two hosts answer TCP and never finish an SSH handshake (one is silent, one sends its
/// banner and stops): each is refused within the connect timeout (the connection given up,
/// not held), reported unreachable, its site untouched; the third host is upgraded and the
/// run does not hang.
#[test]
fn upgrade_host_that_never_speaks_ssh_is_refused_within_the_connect_timeout() {
    let mut u = Upgrade::new(3, 1);
    connect_timeout(&u, "2s");
    let mut mutes = Vec::new();
    for (h, banner) in [
        ("h02", None),
        (
            "h03",
            Some(&b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"[..]),
        ),
    ] {
        u.lab.lab_mut().stop_host(h).expect("stop");
        mutes.push((h, mute(&u, h, banner)));
    }
    let t = Instant::now();
    let o = upgrade(&u, &["--batches", "100%", "--max-fail", "2"], secs(60));
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert_eq!(u.sites_of("h01")[0].db_version(), TO, "{}", both(&o));
    for (h, m) in &mutes {
        let r = row(&o, h, "site1");
        assert!(r.contains("unreachable"), "{r}");
        assert!(r.contains("timed out"), "{r}");
        let s = u.sites_of(h)[0];
        assert!(safe(s) && s.code_version() == FROM, "{h}");
        given_up_in_time(m, h);
    }
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    let _ = writeln!(
        std::io::stderr(),
        "two mute hosts and one upgraded in {took:?}"
    );
    Figures {
        sites: u.sites.len() as u64,
        left_down: left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, host never speaks SSH");
}

/// Commands that hang past `--step-timeout`: h02's DB upgrade (it ignores SIGPIPE, as PHP
/// does) and every tool call of h03. Each is killed on the host (no process of the run left),
/// h02's site is rolled back (old code, old database from the dump, maintenance as before),
/// h03's was never touched; h01 is upgraded. With `--on-failure hold`, the site is restored
/// and kept in maintenance, said so, and `recover` brings it back up.
#[test]
fn upgrade_step_hanging_past_the_step_timeout_is_killed_and_the_site_restored_or_held() {
    let u = Upgrade::new(3, 1);
    u.inject("h02", "upgrade.slow", Some("600"));
    u.inject("h03", "hang", None);
    let o = upgrade(
        &u,
        &[
            "--batches",
            "1,100%",
            "--max-fail",
            "2",
            "--step-timeout",
            "5s",
        ],
        secs(120),
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    assert_eq!(u.sites_of("h01")[0].db_version(), TO, "{}", both(&o));
    let r = row(&o, "h02", "site1");
    assert!(r.contains("rolled-back") && r.contains("timed out"), "{r}");
    let h02 = u.sites_of("h02")[0];
    assert_eq!(h02.code_version(), FROM);
    assert_eq!(h02.db_version(), FROM);
    assert_eq!(h02.maintenance(), prior_maintenance(h02));
    let r = row(&o, "h03", "site1");
    assert!(r.contains("timed out"), "{r}");
    let h03 = u.sites_of("h03")[0];
    assert!(safe(h03) && h03.code_version() == FROM);
    assert!(!u.calls("h03").iter().any(is_maintenance_on));
    assert!(!stderr(&o).contains("STILL IN MAINTENANCE"), "{}", both(&o));
    nothing_to_recover(&u);
    let mut figures = Figures {
        sites: u.sites.len() as u64,
        left_down: left_down(&u.sites),
        ..Figures::default()
    };
    drop(u);

    let u = Upgrade::new(1, 1);
    u.inject("h01", "upgrade.slow", Some("600"));
    let o = upgrade(
        &u,
        &["--on-failure", "hold", "--step-timeout", "5s"],
        secs(90),
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    let s = u.sites_of("h01")[0];
    assert!(row(&o, "h01", "site1").contains("held"), "{}", both(&o));
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h01/site1"),
        "{}",
        both(&o)
    );
    assert_eq!(s.maintenance(), "1");
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.db_version(), FROM);
    clear(&u, "h01", "upgrade.slow");
    let before = u.calls("h01").len();
    let o = cmd(&u, &["recover", "--yes"]);
    // The hold restored code and database already: the recovery restores nothing again
    // (what the operator changed while the site was held stays), it brings the site up.
    let restores: Vec<Vec<String>> = u.calls("h01")[before..]
        .iter()
        .map(crate::upgrade::argv)
        .filter(|a| a.iter().any(|x| x == "sql-cli" || x == "sqlc"))
        .collect();
    assert!(restores.is_empty(), "restored again: {restores:?}");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(safe(s), "{}", both(&o));
    // The killed upgrade never logged its end: any in the log ran during the recovery.
    assert_eq!(db_upgrades(&u, "h01"), 0, "the recovery ran a DB upgrade");
    nothing_to_recover(&u);
    figures.sites += 1;
    figures.recovered += 1;
    figures.left_down += left_down(&u.sites);
    figures.save("network: upgrade, step hung past timeout");
}

/// Every file under `dir` with its SHA-256, computed on the host.
fn tree_sha256(dir: &Path) -> String {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -type f -print0 | sort -z | xargs -0 sha256sum")
        .arg("sh")
        .arg(dir)
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sha256(file: &Path) -> String {
    let o = std::process::Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Rewrites the release tarball at `path` with `bytes` of random data added under
/// `civicrm/`, so that its upload outlasts what the pipes and sshd's buffers on the way hold:
/// a connection cut mid-way then leaves the host a partial file.
fn pad_tarball(path: &Path, bytes: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let sh = |script: &str| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(dir.path())
            .arg(path)
            .arg(bytes.to_string())
            .output()
            .expect("sh");
        assert!(o.status.success(), "{script}: {o:?}");
    };
    sh(
        "cd \"$1\" && tar -xzf \"$2\" && head -c \"$3\" /dev/urandom > civicrm/fleet-test-padding.bin \
        && tar -czf \"$2\" civicrm",
    );
}

/// The connection to h02 drops (its sshd's connection processes killed, the host up) while
/// the release tarball is being written there: the run says the upload failed and why, the
/// partial file never takes the tarball's name and is removed, nothing of it reaches the code
/// (every file of the site's code has the SHA-256 it had), the site never went into
/// maintenance; h01 is upgraded. Once the network is back, a new run upgrades h02.
#[test]
fn upgrade_connection_dropped_mid_upload_leaves_the_site_untouched_and_says_why() {
    let mut u = Upgrade::new(2, 1);
    let tarball = u.lab.release_tarball(TO);
    pad_tarball(&tarball, 4 << 20);
    let want = sha256(&tarball);
    let size = std::fs::metadata(&tarball).expect("tarball").len();
    // Where the cut falls: after a seeded number of bytes (`FLEET_FAULT_SEED`), within the
    // first three quarters of the tarball.
    let at = Rng::new(seed(), "network: upload cut").range(1, (size * 3 / 4).max(1));
    // A slow disk, while `$FLEET_ROOT/slow-disk` exists: a bare `cat` (stdin to stdout, as the
    // upload uses it) copies a 64th of the tarball every 50 ms (3 s for all of it), to the end
    // of its input, so that the cut comes well before the end.
    let slow = u.lab.temp_dir().join("slow-disk");
    std::fs::create_dir_all(&slow).expect("mkdir");
    std::fs::write(
        slow.join("cat"),
        format!(
            "#!/bin/sh\n[ $# -eq 0 ] && [ -e \"$FLEET_ROOT/slow-disk\" ] || exec /bin/cat \"$@\"\n\
             exec perl -e 'while (sysread(STDIN, my $b, {})) {{ syswrite(STDOUT, $b); select(undef, undef, undef, 0.05) }}'\n",
            (size / 64).max(1)
        ),
    )
    .expect("write");
    std::fs::set_permissions(
        slow.join("cat"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    u.lab
        .lab_mut()
        .put_first_on_path("h02", &slow)
        .expect("slow PATH");
    std::fs::write(u.host_root("h02").join("slow-disk"), "").expect("slow disk");
    let s = u.sites_of("h02")[0].clone();
    let code_before = tree_sha256(&s.code_dir());

    let child = spawn_upgrade(&u, &["--batches", "100%", "--max-fail", "1"]);
    let partial = || {
        files_under(&s.backup_dir).into_iter().find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".fleet-upload."))
                && std::fs::metadata(p).is_ok_and(|m| m.len() >= at)
        })
    };
    wait_until(&format!("{at} of {size} bytes on h02"), secs(60), || {
        partial().is_some()
    });
    let cut = u
        .lab
        .drop_connections("h02")
        .expect("drop h02's connections");
    assert!(cut > 0, "no connection of h02 to drop");
    let _ = writeln!(std::io::stderr(), "cut after {at} of {size} bytes");
    let o = finish_within(child, secs(60), "the upgrade whose connection dropped");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let r = row(&o, "h02", "site1");
    assert!(r.contains("upload"), "the run does not say which step: {r}");
    assert!(r.contains("nothing was changed"), "{r}");
    let run = run_id(&u);
    // The upload's shell on the host (a process of the run, tagged as every step is) reads
    // what reached it, finds it short, removes it and ends.
    nothing_running(&run, secs(20));
    let left = files_under(&s.backup_dir);
    assert!(
        !left.iter().any(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".fleet-upload."))),
        "a partial upload was left: {left:?}"
    );
    // What reached the host was short: nothing took the tarball's name (a complete copy
    // would have, once its SHA-256 was checked).
    let named: Vec<&PathBuf> = left
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".tar.gz"))
        })
        .collect();
    assert!(
        named.iter().all(|p| sha256(p) == want),
        "a partial tarball under its name: {named:?}"
    );
    assert!(named.is_empty(), "the cut upload completed: {named:?}");
    let rows = journal_rows(&u, &run, "h02");
    assert!(rows.iter().all(|r| r.contains("failed")), "{rows:?}");
    assert_eq!(
        tree_sha256(&s.code_dir()),
        code_before,
        "h02's code changed"
    );
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    assert!(!u.calls("h02").iter().any(is_maintenance_on));
    assert_eq!(u.sites_of("h01")[0].db_version(), TO, "{}", both(&o));
    // The cut came before the run could release h02/site1's lock on the host: the journal
    // knows, and `recover` releases it (and touches nothing else), then has nothing left.
    let locks = s.backup_dir.join(".fleet-locks");
    let held = || std::fs::read_dir(&locks).map_or(0, Iterator::count);
    assert_eq!(held(), 1, "the lock the cut left");
    let o = cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("released the lock") && stderr(&o).contains("`site1`"),
        "{}",
        both(&o)
    );
    assert_eq!(held(), 0, "the lock is still there: {}", both(&o));
    assert!(safe(&s) && s.code_version() == FROM);
    nothing_to_recover(&u);
    let down = left_down(&u.sites);

    std::fs::remove_file(u.host_root("h02").join("slow-disk")).expect("fast disk");
    let o = upgrade(&u, &[], secs(90));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.code_version(), TO);
    assert!(safe(&s));
    Figures {
        sites: u.sites.len() as u64,
        left_down: down + left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, cut mid-upload");
}

/// The bastion dies (sshd and sessions killed) while the hosts behind it are mid-upgrade:
/// h02 in its DB upgrade (which outlives its connection, as PHP does, and ends on its own),
/// h03 in maintenance. Both are reported still in maintenance; `recover` while the bastion
/// is down says why and changes nothing; once it is back, `recover` brings both to a safe
/// end (code and database the same version, maintenance as before) without running a DB
/// upgrade again.
#[test]
fn upgrade_bastion_dying_mid_run_reports_the_hosts_behind_and_recover_ends_them_safely() {
    let mut u = bastion_upgrade(3);
    u.inject("h02", "upgrade.slow", Some("8"));
    u.inject("h03", "slow", Some("1"));
    let child = spawn_upgrade(
        &u,
        &[
            "-F",
            "none",
            "-l",
            "lab,!h01",
            "--batches",
            "100%",
            "--max-fail",
            "2",
        ],
    );
    let (h02, h03) = (u.sites_of("h02")[0].clone(), u.sites_of("h03")[0].clone());
    wait_until(
        "h02 in its DB upgrade, h03 in maintenance",
        secs(60),
        || h02.db_version().ends_with(".upgrade") && h03.maintenance() == "1",
    );
    u.lab.lab_mut().kill_host("h01").expect("kill the bastion");
    let o = finish_within(child, secs(60), "the upgrade whose bastion died");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for h in ["h02", "h03"] {
        assert!(
            stderr(&o).contains("STILL IN MAINTENANCE")
                && stderr(&o).contains(&format!("{h}/site1")),
            "{h}: {}",
            both(&o)
        );
    }
    let run = run_id(&u);
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains("unreachable"), "{}", both(&o));
    assert!(
        stdout(&o).contains("h01"),
        "the bastion is not named: {}",
        both(&o)
    );
    // Half back: the bastion's address answers TCP and no SSH. `recover` gives up on it
    // within the connect timeout, for both hosts behind it, and forgets nothing.
    connect_timeout(&u, "2s");
    let m = mute(&u, "h01", None);
    let o = finish_within(
        spawn_cmd(&u, &["-F", "none", "recover", "--yes"]),
        secs(30),
        "recover through a mute bastion",
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for h in ["h02", "h03"] {
        let r = row(&o, h, "site1");
        assert!(
            r.contains("through jump host `h01`") && r.contains("timed out"),
            "{r}"
        );
    }
    given_up_in_time(&m, "h01");
    drop(m);
    for s in [&h02, &h03] {
        assert_eq!(s.maintenance(), "1", "{}", s.host);
    }

    u.lab
        .lab_mut()
        .start_host("h01")
        .expect("start the bastion");
    clear(&u, "h03", "slow");
    // h02's DB upgrade, cut off from fleet, goes on to its end on the host.
    nothing_running(&run, secs(20));
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in [&h02, &h03] {
        assert!(
            safe(s),
            "{}: code {} db {} maintenance {}: {}",
            s.host,
            s.code_version(),
            s.db_version(),
            s.maintenance(),
            both(&o)
        );
    }
    assert_eq!(db_upgrades(&u, "h02"), 1, "h02's DB upgrade ran again");
    assert!(db_upgrades(&u, "h03") <= 1);
    nothing_running(&run, secs(5));
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
    Figures {
        sites: 2,
        recovered: 2,
        left_down: left_down(&[h02, h03]),
        ..Figures::default()
    }
    .save("network: upgrade, bastion dying mid-run");
}

/// The bastion dies and comes back between two batches (during the canary's bake): the next
/// connections through it are made over a new connection to the bastion, not over the dead
/// one fleet had kept for the hosts behind it, so the canary's re-verify and the second
/// batch reach their hosts and the run finishes.
#[test]
fn upgrade_bastion_back_between_batches_is_reconnected_for_the_next_batch() {
    let u = bastion_upgrade(3);
    let child = spawn_upgrade(
        &u,
        &[
            "-F",
            "none",
            "-l",
            "lab,!h01",
            "--batches",
            "1,100%",
            "--bake",
            "3s",
        ],
    );
    let canary = u.sites_of("h02")[0].clone();
    let locks = canary.backup_dir.join(".fleet-locks");
    wait_until("the canary upgraded and unlocked", secs(60), || {
        safe(&canary)
            && canary.db_version() == TO
            && std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_none())
    });
    let mut u = u;
    u.lab.lab_mut().kill_host("h01").expect("kill the bastion");
    u.lab
        .lab_mut()
        .start_host("h01")
        .expect("start the bastion");
    let o = finish_within(child, secs(60), "the upgrade whose bastion came back");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for h in ["h02", "h03"] {
        let s = u.sites_of(h)[0];
        assert_eq!(s.db_version(), TO, "{h}: {}", both(&o));
        assert!(safe(s), "{h}");
    }
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
    Figures {
        sites: 2,
        left_down: left_down(&u.sites[1..]),
        ..Figures::default()
    }
    .save("network: upgrade, bastion back for batch 2");
}

/// The bastion goes silent (its sshd frozen: the connections stay open and nothing more
/// comes back) while h02 behind it is in its DB upgrade: fleet gives up the connections
/// through it once their keepalives go unanswered, says h02/site1 is still in maintenance,
/// and does not hang; once the bastion is heard again, `recover` ends the site safely.
#[test]
fn upgrade_bastion_gone_silent_mid_run_is_given_up_by_keepalive_then_recovered() {
    let u = bastion_upgrade(2);
    let cfg = quick_keepalive(&u);
    u.inject("h02", "upgrade.slow", Some("4"));
    let child = spawn_upgrade(&u, &["-F", &cfg, "-l", "h02", "--batches", "100%"]);
    let s = u.sites_of("h02")[0].clone();
    wait_until("h02's DB upgrade under way", secs(60), || {
        s.db_version().ends_with(".upgrade")
    });
    u.lab.freeze_host("h01").expect("freeze the bastion");
    let frozen = Instant::now();
    let o = finish_within(child, secs(40), "the upgrade whose bastion went silent");
    let took = frozen.elapsed();
    u.lab.thaw_host("h01").expect("thaw the bastion");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        took < secs(20),
        "given up {took:?} after the bastion went silent: {}",
        both(&o)
    );
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h02/site1"),
        "{}",
        both(&o)
    );
    let run = run_id(&u);
    nothing_running(&run, secs(15));
    clear(&u, "h02", "upgrade.slow");
    let o = cmd(&u, &["-F", &cfg, "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(safe(&s), "{}", both(&o));
    assert_eq!(db_upgrades(&u, "h02"), 1, "the DB upgrade ran again");
    let o = cmd(&u, &["-F", &cfg, "recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
    Figures {
        sites: 1,
        recovered: 1,
        left_down: left_down(&[s]),
        ..Figures::default()
    }
    .save("network: upgrade, silent bastion");
}

/// A lab of `hosts` hosts, one CiviCRM site each, the first the bastion of the others.
fn bastion_upgrade(hosts: usize) -> Upgrade {
    let lab = TestLab::with_bastion(hosts);
    let opts = SitesOptions::new(1, FROM);
    lab.add_sites(&opts).expect("sites");
    let sites = lab.sites(&opts);
    Upgrade {
        lab,
        state: tempfile::tempdir().expect("state dir"),
        sites,
    }
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

/// h02 goes silent in the middle of its DB upgrade (its sshd frozen: no RST, no FIN, nothing
/// more heard, as when the network drops every packet), while the upgrade goes on on the
/// host. fleet gives the connection up after its keepalives go unanswered (not after the
/// 30 min step timeout), says the site is still in maintenance, and h01 finishes. Once h02
/// is heard again, `recover` finds the DB upgrade done on the host and takes the site
/// forward, maintenance as before, without running the DB upgrade again.
#[test]
fn upgrade_host_gone_silent_mid_db_step_is_given_up_by_keepalive_then_recovered() {
    let u = Upgrade::new(2, 1);
    let cfg = quick_keepalive(&u);
    u.inject("h02", "upgrade.slow", Some("4"));
    let child = spawn_upgrade(&u, &["-F", &cfg, "--batches", "100%", "--max-fail", "1"]);
    let s = u.sites_of("h02")[0].clone();
    wait_until("h02's DB upgrade under way", secs(60), || {
        s.db_version().ends_with(".upgrade")
    });
    u.lab.freeze_host("h02").expect("freeze h02");
    let frozen = Instant::now();
    let o = finish_within(child, secs(40), "the upgrade whose host went silent");
    let took = frozen.elapsed();
    u.lab.thaw_host("h02").expect("thaw h02");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        took < secs(20),
        "h02 given up {took:?} after it went silent: {}",
        both(&o)
    );
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h02/site1"),
        "{}",
        both(&o)
    );
    let h01 = u.sites_of("h01")[0];
    assert_eq!(h01.db_version(), TO);
    assert!(safe(h01));
    let run = run_id(&u);
    // The upgrade on the host ends on its own; the sessions of the dead connection go.
    nothing_running(&run, secs(15));
    clear(&u, "h02", "upgrade.slow");
    let o = cmd(&u, &["-F", &cfg, "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(safe(&s), "{}", both(&o));
    assert_eq!(s.db_version(), TO, "{}", both(&o));
    assert_eq!(db_upgrades(&u, "h02"), 1, "the DB upgrade ran again");
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, silent host in DB step");
}

// ---- migrate release --------------------------------------------------------------------

/// `migrate release` with h03 down before connect and h02 killed once its old site is in
/// maintenance: h01 is released, h02 is reported still in maintenance, h03 unreachable and
/// untouched (still serving its old site, no tool called). Once both are back, `fleet resume`
/// ends every site on its new release, out of maintenance, and nothing is left to recover.
#[test]
fn release_with_a_host_down_and_a_host_killed_mid_release_ends_on_one_release_per_site() {
    let (mut u, run) = imported_lab(3, 1);
    u.lab.lab_mut().kill_host("h03").expect("kill h03");
    let h03_calls = u.calls("h03").len();
    u.inject("h02", "slow", Some("1"));
    let child = release(&u, &run, &["--batches", "100%", "--max-fail", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fleet migrate release");
    let h02 = u.sites_of("h02")[0].clone();
    wait_until("h02's old site in maintenance", secs(60), || {
        h02.maintenance() == "1"
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = finish_within(child, secs(60), "the release whose host died");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = site_lines(&o);
    assert_eq!(lines["h01/site1"].0, "upgraded", "{}", both(&o));
    let (status, detail) = &lines["h02/site1"];
    assert!(
        detail.contains("STILL IN MAINTENANCE"),
        "h02/site1 {status}: {detail}"
    );
    let (status, detail) = &lines["h03/site1"];
    assert_eq!(status, "unreachable", "{detail}");
    let h03 = u.sites_of("h03")[0].clone();
    assert_eq!(h03.served(), h03.root, "h03 was switched");
    assert_eq!(h03.maintenance(), prior_maintenance(&h03));
    assert_eq!(u.calls("h03").len(), h03_calls, "h03 was touched");
    assert_eq!(h02.maintenance(), "1");

    for h in ["h02", "h03"] {
        u.lab.lab_mut().start_host(h).expect("start");
    }
    clear(&u, "h02", "slow");
    nothing_running(&run, secs(5));
    // The resume finishes what the release left mid-way (h02); a site it never reached
    // (h03) is the phase's to run again, which leaves the released ones alone.
    let o = cmd(&u, &["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let h02_rel = h02
        .current
        .parent()
        .expect("base")
        .join("releases")
        .join(&run);
    assert_eq!(h02.served(), h02_rel, "{}", both(&o));
    assert_eq!(
        h03.served(),
        h03.root,
        "the resume released h03: {}",
        both(&o)
    );
    let o = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    trace("the release again", &o);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let lines = site_lines(&o);
    assert_eq!(lines["h03/site1"].0, "upgraded", "{}", both(&o));
    for h in ["h01/site1", "h02/site1"] {
        assert_eq!(lines[h].0, "skipped", "{h}: {}", both(&o));
    }
    for s in &u.sites {
        let rel = s
            .current
            .parent()
            .expect("base")
            .join("releases")
            .join(&run);
        assert_eq!(s.served(), rel, "{}: {}", s.uri_host(), both(&o));
        assert_eq!(new_maintenance(s), "0", "{}", s.uri_host());
        let a = u.lab.http_get(s, false).expect("http");
        assert!(
            a.body
                .contains(&format!("Drupal {}", fleet_lab::DRUPAL_RELEASE)),
            "{}: {a:?}",
            s.uri_host()
        );
    }
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    let down = u.sites.iter().filter(|s| new_maintenance(s) != "0").count() as u64;
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: down,
        ..Figures::default()
    }
    .save("network: release, host down + host killed");
}

/// h02 is killed right after its `current` was switched to the new release, before the new
/// site is made sure to be out of maintenance and probed: the run reports it still in
/// maintenance (its old site is, and the new one serves unprobed), h01 is released; once h02
/// is back, `fleet resume` goes on from the switch: the new site out of maintenance, probed,
/// answering.
#[test]
fn release_host_killed_right_after_the_switch_is_resumed_from_there() {
    let (mut u, run) = imported_lab(2, 1);
    u.inject("h02", "slow", Some("1"));
    let child = release(&u, &run, &["--batches", "100%", "--max-fail", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fleet migrate release");
    let h02 = u.sites_of("h02")[0].clone();
    let rel = h02
        .current
        .parent()
        .expect("base")
        .join("releases")
        .join(&run);
    wait_until("h02 switched to its release", secs(60), || {
        h02.served() == rel
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = finish_within(
        child,
        secs(60),
        "the release whose host died after the switch",
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = site_lines(&o);
    assert_eq!(lines["h01/site1"].0, "upgraded", "{}", both(&o));
    let (status, detail) = &lines["h02/site1"];
    assert!(
        detail.contains("STILL IN MAINTENANCE"),
        "h02/site1 {status}: {detail}"
    );
    assert_eq!(h02.served(), rel, "the kill came before the switch");
    assert_eq!(
        h02.maintenance(),
        "1",
        "the old site is not down: {}",
        both(&o)
    );

    u.lab.lab_mut().start_host("h02").expect("start h02");
    clear(&u, "h02", "slow");
    nothing_running(&run, secs(5));
    let o = cmd(&u, &["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        let rel = s
            .current
            .parent()
            .expect("base")
            .join("releases")
            .join(&run);
        assert_eq!(s.served(), rel, "{}: {}", s.uri_host(), both(&o));
        assert_eq!(new_maintenance(s), "0", "{}", s.uri_host());
        let a = u.lab.http_get(s, false).expect("http");
        assert!(
            a.status == 200
                && a.body
                    .contains(&format!("Drupal {}", fleet_lab::DRUPAL_RELEASE)),
            "{}: {a:?}",
            s.uri_host()
        );
    }
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: u.sites.iter().filter(|s| new_maintenance(s) != "0").count() as u64,
        ..Figures::default()
    }
    .save("network: release, killed after the switch");
}

/// h02's last `migrate:import --update` (its old site already in maintenance) hangs past
/// `--step-timeout`: it is killed on the host, the old site is taken out of maintenance again
/// and still served, the run says it timed out; h01 is released; nothing to recover.
#[test]
fn release_import_hanging_past_the_step_timeout_is_killed_and_the_old_site_is_back_up() {
    let (u, run) = imported_lab(2, 1);
    u.inject("h02", "migrate.hang", None);
    let child = release(
        &u,
        &run,
        &[
            "--batches",
            "100%",
            "--max-fail",
            "1",
            "--step-timeout",
            "5s",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn fleet migrate release");
    let o = finish_within(child, secs(90), "the release whose import hung");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    nothing_running(&run, secs(5));
    let lines = site_lines(&o);
    assert_eq!(lines["h01/site1"].0, "upgraded", "{}", both(&o));
    let (status, detail) = &lines["h02/site1"];
    assert!(detail.contains("timed out"), "{status}: {detail}");
    assert!(
        !detail.contains("STILL IN MAINTENANCE"),
        "{status}: {detail}"
    );
    let h02 = u.sites_of("h02")[0];
    assert_eq!(h02.served(), h02.root, "h02 was switched");
    assert_eq!(h02.maintenance(), prior_maintenance(h02));
    let a = u.lab.http_get(h02, false).expect("http");
    assert!(a.body.contains("Drupal 7.101"), "{a:?}");
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        left_down: u64::from(h02.maintenance() != prior_maintenance(h02)),
        ..Figures::default()
    }
    .save("network: release, import hung past timeout");
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
