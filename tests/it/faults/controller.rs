//! The controller killed by SIGKILL after the N-th write of its journal, or inside it (the
//! statement ran, the commit did not), at seeded points spread over a whole run of a 10-host
//! `fleet upgrade` and of a 10-host `fleet migrate release`; then `fleet resume RUN` or
//! `fleet recover`. At every point the hosts are put back as they were before the first run, so
//! that each point is one crash of one run.
//!
//! What every point must end in: every site upgraded or restored (a migrated site on exactly
//! one release), out of maintenance (as it was before the run), its data what an uninterrupted
//! run leaves (or what it was, for a restored site), no database upgrade begun on a database
//! already past the start (the fakes log the version each call found), no lock left, no remote
//! step of the run still alive, a journal that opens whole, and nothing left to recover.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_lab::LabSite;

use super::{Figures, Rng, databases, seed};
use crate::resume::steps_running;
use crate::upgrade::{FROM, TO, Upgrade, argv, is_upgrade_call, prior_maintenance};
use crate::{fleet, stderr, stdout};

/// Kill points per procedure, over all its shards (each shard a test with a lab of its own).
const POINTS: u64 = 30;
const SHARDS: u64 = 3;

/// How a point is recovered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// `fleet resume RUN`: the run goes on where each site stopped.
    Resume,
    /// `fleet recover --yes`: every site the crash left mid-way to a safe end.
    Recover,
}

/// One kill point: the write number, whether inside it, and the recovery.
#[derive(Debug, Clone, Copy)]
struct Point {
    write: u64,
    inside: bool,
    after: After,
}

impl Point {
    fn label(&self) -> String {
        format!("{}{}", self.write, if self.inside { ":in" } else { "" })
    }
}

/// The points of `procedure`, the same in every shard: spread over the run's `writes`, one in
/// four inside its write, and (where `recover` applies) one in three recovered, not resumed.
fn points(procedure: &str, writes: u64, recover: bool) -> Vec<Point> {
    let mut rng = Rng::new(seed(), procedure);
    rng.spread(POINTS, 1, writes)
        .into_iter()
        .map(|write| Point {
            write,
            inside: rng.range(0, 3) == 0,
            after: if recover && rng.range(0, 2) == 0 {
                After::Recover
            } else {
                After::Resume
            },
        })
        .collect()
}

/// The lab's host trees as they were before the first run, put back before every point.
struct Snapshot {
    dir: tempfile::TempDir,
    roots: Vec<PathBuf>,
}

impl Snapshot {
    fn take(roots: Vec<PathBuf>) -> Snapshot {
        let dir = tempfile::tempdir().expect("snapshot dir");
        for (i, r) in roots.iter().enumerate() {
            cp(r, &dir.path().join(i.to_string()));
        }
        Snapshot { dir, roots }
    }

    fn restore(&self) {
        for (i, r) in self.roots.iter().enumerate() {
            std::fs::remove_dir_all(r).expect("remove host tree");
            cp(&self.dir.path().join(i.to_string()), r);
        }
    }
}

/// `cp -a`: owners, modes and links as they are.
fn cp(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// What happened to a run started with a kill point.
enum Ended {
    Killed,
    /// The point lay past the run's last write: it ended by itself, with this exit code.
    Exited(i32),
}

/// Runs `cmd` with the kill switch at `p` (its output in `out.*`), within `limit`.
fn run_killed(mut cmd: Command, p: &Point, out: &Path) -> Ended {
    let log = |ext: &str| std::fs::File::create(out.with_extension(ext)).expect("log file");
    cmd.env("FLEET_FAULT_KILL_AT", p.label())
        .stdin(Stdio::null())
        .stdout(log("out"))
        .stderr(log("err"));
    let mut child = cmd.spawn().expect("spawn fleet");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return match st.signal() {
                Some(9) => Ended::Killed,
                _ => Ended::Exited(st.code().unwrap_or(-1)),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kill point {}: the run neither died nor ended", p.label());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn at(u: &Upgrade, state: &Path) -> Command {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(state);
    c
}

fn output(mut c: Command) -> std::process::Output {
    c.stdin(Stdio::null()).output().expect("run fleet")
}

/// Whether the journal in `state` opens whole (SQLite's own checks), and its newest run.
fn journal_check(state: &Path, problems: &mut Vec<String>) -> Option<String> {
    let path = state.join("journal.sqlite");
    if !path.exists() {
        return None;
    }
    let c = match rusqlite::Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            problems.push(format!("the journal does not open: {e}"));
            return None;
        }
    };
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| e.to_string());
    if ok != "ok" {
        problems.push(format!("journal integrity: {ok}"));
    }
    let orphans: i64 = c
        .query_row(
            "SELECT count(*) FROM steps WHERE run NOT IN (SELECT id FROM runs)",
            [],
            |r| r.get(0),
        )
        .unwrap_or(-1);
    if orphans != 0 {
        problems.push(format!("{orphans} step row(s) of no run"));
    }
    c.query_row(
        "SELECT id FROM runs ORDER BY started DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .ok()
}

/// The files of databases `dbs` in `all`, for one site's comparison.
fn of_dbs<'a>(
    all: &'a BTreeMap<PathBuf, String>,
    s: &LabSite,
    dbs: &[&str],
) -> BTreeMap<&'a PathBuf, &'a String> {
    let dirs: Vec<PathBuf> = dbs.iter().map(|d| s.db_dir(d)).collect();
    all.iter()
        .filter(|(p, _)| dirs.iter().any(|d| p.starts_with(d)))
        .collect()
}

/// How site `s`'s databases `dbs` in `is` differ from `was` (the first few files), if they do.
fn db_diff(
    is: &BTreeMap<PathBuf, String>,
    was: &BTreeMap<PathBuf, String>,
    s: &LabSite,
    dbs: &[&str],
) -> Option<String> {
    let (is, was) = (of_dbs(is, s, dbs), of_dbs(was, s, dbs));
    if is == was {
        return None;
    }
    let diff: Vec<String> = is
        .iter()
        .filter(|(k, v)| was.get(*k) != Some(*v))
        .map(|(k, v)| format!("{} = {v:?} (was {:?})", k.display(), was.get(*k)))
        .chain(
            was.keys()
                .filter(|k| !is.contains_key(*k))
                .map(|k| format!("{} gone", k.display())),
        )
        .take(4)
        .collect();
    Some(diff.join("; "))
}

/// Database upgrades begun on a database that was not at the start version: a step that
/// must run once per database ran again (after a restore the database is at the start again,
/// so an upgrade then is a new attempt, not a repeat).
fn repeated_upgrades(u: &Upgrade, problems: &mut Vec<String>) -> u64 {
    let mut n = 0;
    for h in u.lab.hosts() {
        for call in u.calls(&h.name) {
            if is_upgrade_call(&call) && call["db_before"].as_str() != Some(FROM) {
                n += 1;
                problems.push(format!(
                    "{}: {:?} begun on a database at {}",
                    h.name,
                    argv(&call),
                    call["db_before"]
                ));
            }
        }
    }
    n
}

/// What every point must end in, whatever the procedure: nothing of the run alive on the
/// hosts, no lock left, nothing left to recover.
fn common_end(u: &Upgrade, state: &Path, run: Option<&str>, problems: &mut Vec<String>) {
    if let Some(run) = run {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !steps_running(run).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let alive = steps_running(run);
        if !alive.is_empty() {
            problems.push(format!(
                "remote processes of the run still alive: {alive:?}"
            ));
        }
    }
    for s in &u.sites {
        let locks = s.backup_dir.join(".fleet-locks");
        if let Ok(entries) = std::fs::read_dir(&locks) {
            let left: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            if !left.is_empty() {
                problems.push(format!("{}/{}: locks left {left:?}", s.host, s.name));
            }
        }
    }
    let o = output({
        let mut c = at(u, state);
        c.args(["recover", "--yes"]);
        c
    });
    if !stderr(&o).contains("nothing to recover") || o.status.code() != Some(0) {
        problems.push(format!(
            "a second recover found work: {}{}",
            stdout(&o),
            stderr(&o)
        ));
    }
}

/// Sites the crash left down or half-way (in maintenance, or code and database apart).
fn left_mid_way(u: &Upgrade, maintenance: impl Fn(&LabSite) -> String) -> u64 {
    u.sites
        .iter()
        .filter(|s| maintenance(s) == "1" || s.code_version() != s.db_version())
        .count() as u64
}

/// A run makes about as many writes each time (hosts interleave differently), so a point well
/// inside the uninterrupted run's count must have killed it.
fn never_fired(p: &Point, writes: u64, problems: &mut Vec<String>) {
    if p.write < writes * 9 / 10 {
        problems.push(format!(
            "the kill switch never fired (the uninterrupted run made {writes} writes)"
        ));
    }
}

/// Checks the figures' zeros and fails with every problem of every point at once.
fn finish(name: &str, fig: &Figures, problems: Vec<(String, Vec<String>)>) {
    fig.save(name);
    let text: Vec<String> = problems
        .into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(point, p)| {
            let shown: Vec<&str> = p.iter().take(12).map(String::as_str).collect();
            format!(
                "kill point {point} (FLEET_FAULT_SEED={}):\n  {}{}",
                seed(),
                shown.join("\n  "),
                if p.len() > shown.len() {
                    format!("\n  ... {} more", p.len() - shown.len())
                } else {
                    String::new()
                }
            )
        })
        .collect();
    assert!(text.is_empty(), "{name}:\n{}", text.join("\n"));
    assert!(fig.kill_points > 0, "{name}: no point killed the run");
}

// ---- fleet upgrade ------------------------------------------------------------------------

fn upgrade(u: &Upgrade, state: &Path) -> Command {
    let mut c = at(u, state);
    c.arg("upgrade")
        .arg("--tarball")
        .arg(u.lab.release_tarball(TO))
        .args(["--batches", "1,30%,100%"]);
    c
}

fn upgrade_sweep(shard: u64) {
    // 10 hosts of 2 sites: the odd hosts' sites share one CiviCRM database (upgraded once
    // for both), the even hosts' have one each, and each host's sites share one codebase.
    let u = Upgrade::new(10, 2);
    let snap = Snapshot::take(u.lab.hosts().iter().map(|h| h.root.clone()).collect());
    let before = databases(&u);
    let work = tempfile::tempdir().expect("work dir");

    // The run uninterrupted: how many writes it makes, and what it ends in.
    let trace = work.path().join("trace");
    let mut c = upgrade(&u, &work.path().join("state-full"));
    c.env("FLEET_FAULT_TRACE", &trace);
    let o = output(c);
    assert_eq!(o.status.code(), Some(0), "{}", crate::both(&o));
    let writes = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .count() as u64;
    let full = databases(&u);
    assert!(writes > 100, "only {writes} journal writes in a whole run");

    let mut fig = Figures::default();
    let mut problems = Vec::new();
    let points = points("controller: upgrade", writes, true);
    for p in points.iter().skip(shard as usize).step_by(SHARDS as usize) {
        snap.restore();
        let state = work.path().join(format!("state-{}", p.label()));
        let mut pr = Vec::new();
        let ended = run_killed(upgrade(&u, &state), p, &work.path().join(p.label()));
        let run = journal_check(&state, &mut pr);
        match ended {
            Ended::Killed => fig.kill_points += 1,
            Ended::Exited(0) => never_fired(p, writes, &mut pr),
            Ended::Exited(c) => pr.push(format!("the run ended by itself with {c}")),
        }
        let mid = left_mid_way(&u, |s| s.maintenance());
        let mut c = at(&u, &state);
        match (p.after, &run) {
            (After::Resume, Some(run)) => c.args(["resume", run]),
            _ => c.args(["recover", "--yes"]),
        };
        let o = output(c);
        if o.status.code() != Some(0) {
            pr.push(format!(
                "{:?} exited {:?}: {}{}",
                p.after,
                o.status.code(),
                stdout(&o),
                stderr(&o)
            ));
        }
        let now = databases(&u);
        let mut down = 0;
        for s in &u.sites {
            let who = format!("{}/{}", s.host, s.name);
            let (code, db) = (s.code_version(), s.db_version());
            if s.maintenance() != prior_maintenance(s) {
                down += u64::from(s.maintenance() == "1");
                pr.push(format!("{who}: maintenance {}", s.maintenance()));
            }
            let want = if code == TO && db == TO {
                &full
            } else if code == FROM && db == FROM {
                &before
            } else {
                pr.push(format!("{who}: code {code}, database {db}"));
                continue;
            };
            if run.is_some() && p.after == After::Resume && code != TO {
                pr.push(format!("{who}: resumed, yet at {code}"));
            }
            // An upgraded site keeps its way back: the run's complete dump of its database.
            if let (Some(run), true) = (&run, code == TO) {
                let dump = s
                    .backup_dir
                    .join(format!("fleet-{run}/db/{}.sql", s.civi_db));
                let whole = std::fs::read_to_string(&dump).is_ok_and(|t| {
                    t.lines()
                        .last()
                        .is_some_and(|l| l.starts_with("-- Dump completed"))
                });
                if !whole {
                    pr.push(format!("{who}: no complete dump at {}", dump.display()));
                }
            }
            let dbs = [s.civi_db.as_str(), s.cms_db.as_str()];
            if let Some(diff) = db_diff(&now, want, s, &dbs) {
                pr.push(format!(
                    "{who}: its databases differ from {}: {diff}",
                    if code == TO {
                        "an uninterrupted run's"
                    } else {
                        "before the run"
                    },
                ));
            }
        }
        fig.repeated += repeated_upgrades(&u, &mut pr);
        common_end(&u, &state, run.as_deref(), &mut pr);
        fig.sites += u.sites.len() as u64;
        fig.recovered += mid;
        fig.left_down += down;
        problems.push((p.label(), pr));
    }
    finish(
        &format!("controller kill: upgrade {}/{SHARDS}", shard + 1),
        &fig,
        problems,
    );
}

#[test]
fn upgrade_killed_at_seeded_journal_writes_1() {
    upgrade_sweep(0);
}

#[test]
fn upgrade_killed_at_seeded_journal_writes_2() {
    upgrade_sweep(1);
}

#[test]
fn upgrade_killed_at_seeded_journal_writes_3() {
    upgrade_sweep(2);
}

// ---- fleet migrate release ----------------------------------------------------------------

/// Where a migrated site stands: the docroot it serves, its new site's maintenance, its old
/// site's maintenance.
fn release_state(s: &LabSite) -> (PathBuf, String, String) {
    (
        s.served(),
        crate::migrate::new_maintenance(s),
        s.maintenance(),
    )
}

fn release_sweep(shard: u64) {
    // 10 hosts, each site with a release built and its content imported: what the release
    // switches to.
    let (u, run) = crate::migrate::imported_lab(10, 1);
    let work = tempfile::tempdir().expect("work dir");
    let state0 = work.path().join("state-imported");
    cp(u.state.path(), &state0);
    let snap = Snapshot::take(u.lab.hosts().iter().map(|h| h.root.clone()).collect());
    // The build's and the import's calls, in the logs already.
    let before: BTreeMap<String, usize> = u
        .lab
        .hosts()
        .iter()
        .map(|h| (h.name.clone(), u.calls(&h.name).len()))
        .collect();
    let fresh_state = |name: &str| {
        let s = work.path().join(name);
        cp(&state0, &s);
        s
    };
    let release = |state: &Path| {
        let mut c = at(&u, state);
        c.args(["migrate", "release", &run, "--batches", "1,30%,100%"]);
        c
    };

    let trace = work.path().join("trace");
    let mut c = release(&fresh_state("state-full"));
    c.env("FLEET_FAULT_TRACE", &trace);
    let o = output(c);
    assert_eq!(o.status.code(), Some(0), "{}", crate::both(&o));
    let writes = std::fs::read_to_string(&trace)
        .expect("trace")
        .lines()
        .count() as u64;
    assert!(
        writes > 50,
        "only {writes} journal writes in a whole release"
    );
    let full = databases(&u);
    let want: Vec<_> = u.sites.iter().map(release_state).collect();
    let new_release = fleet_lab::DRUPAL_RELEASE;

    let mut fig = Figures::default();
    let mut problems = Vec::new();
    let points = points("controller: migrate release", writes, true);
    for p in points.iter().skip(shard as usize).step_by(SHARDS as usize) {
        snap.restore();
        let state = fresh_state(&format!("state-{}", p.label()));
        let mut pr = Vec::new();
        let ended = run_killed(release(&state), p, &work.path().join(p.label()));
        journal_check(&state, &mut pr);
        match ended {
            Ended::Killed => fig.kill_points += 1,
            Ended::Exited(0) => never_fired(p, writes, &mut pr),
            Ended::Exited(c) => pr.push(format!("the release ended by itself with {c}")),
        }
        let mid = u
            .sites
            .iter()
            .zip(&want)
            .filter(|(s, w)| release_state(s) != **w)
            .count() as u64;
        // `fleet resume RUN` goes on with the sites caught mid-release (and says so when
        // none was); the release run again, as the operator is told to, does the rest.
        if p.after == After::Resume {
            let mut c = at(&u, &state);
            c.args(["resume", &run]);
            let o = output(c);
            let none_midway =
                o.status.code() == Some(2) && stderr(&o).contains("was not caught mid-release");
            if o.status.code() != Some(0) && !none_midway {
                pr.push(format!(
                    "resume exited {:?}: {}{}",
                    o.status.code(),
                    stdout(&o),
                    stderr(&o)
                ));
            }
        }
        let o = output(release(&state));
        if o.status.code() != Some(0) {
            pr.push(format!(
                "the release again exited {:?}: {}{}",
                o.status.code(),
                stdout(&o),
                stderr(&o)
            ));
        }
        let now = databases(&u);
        let mut down = 0;
        for (s, w) in u.sites.iter().zip(&want) {
            let who = format!("{}/{}", s.host, s.name);
            let is = release_state(s);
            if is != *w {
                pr.push(format!(
                    "{who}: serves {is:?}, an uninterrupted release {w:?}"
                ));
            }
            match u.lab.http_get(s, false) {
                Ok(a) if a.status == 200 && a.body.contains(&format!("Drupal {new_release}")) => {}
                other => {
                    down += 1;
                    pr.push(format!("{who}: answers {other:?}"));
                }
            }
            let dbs = [
                s.civi_db.clone(),
                s.cms_db.clone(),
                format!("{}_d10", s.cms_db),
            ];
            let dbs: Vec<&str> = dbs.iter().map(String::as_str).collect();
            if let Some(diff) = db_diff(&now, &full, s, &dbs) {
                pr.push(format!(
                    "{who}: its databases differ from an uninterrupted release's: {diff}"
                ));
            }
        }
        // The first import is the one step of a migration that must not run again (without
        // `--update` it would import the content a second time); the release only updates.
        for h in u.lab.hosts() {
            for call in u.calls(&h.name).into_iter().skip(before[&h.name]) {
                let a = argv(&call);
                if a.iter().any(|x| x == "migrate:import") && !a.iter().any(|x| x == "--update") {
                    fig.repeated += 1;
                    pr.push(format!("{}: {a:?} during the release", h.name));
                }
            }
        }
        common_end(&u, &state, Some(&run), &mut pr);
        fig.sites += u.sites.len() as u64;
        fig.recovered += mid;
        fig.left_down += down;
        problems.push((p.label(), pr));
    }
    finish(
        &format!("controller kill: migrate release {}/{SHARDS}", shard + 1),
        &fig,
        problems,
    );
}

#[test]
fn release_killed_at_seeded_journal_writes_1() {
    release_sweep(0);
}

#[test]
fn release_killed_at_seeded_journal_writes_2() {
    release_sweep(1);
}

#[test]
fn release_killed_at_seeded_journal_writes_3() {
    release_sweep(2);
}
