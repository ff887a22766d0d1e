use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_lab::{LabSite, SitesOptions, TestLab};
use serde_json::Value;

use crate::{both, fleet, run, stderr, stdout};

pub(crate) const FROM: &str = "5.69.0";
pub(crate) const TO: &str = "5.70.0";

pub(crate) struct Upgrade {
    pub(crate) lab: TestLab,
    pub(crate) state: tempfile::TempDir,
    pub(crate) sites: Vec<LabSite>,
}

impl Upgrade {
    pub(crate) fn new(hosts: usize, per_host: usize) -> Self {
        Self::with(hosts, SitesOptions::new(per_host, FROM))
    }

    pub(crate) fn with(hosts: usize, opts: SitesOptions) -> Self {
        let lab = TestLab::with_sites_opts(hosts, &opts);
        let sites = lab.sites(&opts);
        Self {
            lab,
            state: tempfile::tempdir().expect("state dir"),
            sites,
        }
    }

    pub(crate) fn fleet(&self, extra: &[&str]) -> std::process::Output {
        let mut c = fleet(&self.lab.inventory_path());
        c.arg("--state-dir")
            .arg(self.state.path())
            .arg("upgrade")
            .arg("--tarball")
            .arg(self.lab.release_tarball(TO));
        c.args(extra);
        run(&mut c)
    }

    pub(crate) fn host_root(&self, host: &str) -> PathBuf {
        self.lab.host(host).expect("host").root.clone()
    }

    /// Injects a failure at `point` on `host`: a file in the fakes' state dir (see fake-civi).
    pub(crate) fn inject(&self, host: &str, point: &str, value: Option<&str>) {
        let dir = self.host_root(host).join("fake-civi/fail");
        std::fs::create_dir_all(&dir).expect("fail dir");
        std::fs::write(dir.join(point), "").expect("inject");
        if let Some(v) = value {
            std::fs::write(dir.join(format!("{point}.value")), v).expect("inject value");
        }
    }

    pub(crate) fn calls(&self, host: &str) -> Vec<Value> {
        let p = self.host_root(host).join("fake-civi/calls.log");
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("calls.log line"))
            .collect()
    }

    pub(crate) fn sites_of(&self, host: &str) -> Vec<&LabSite> {
        self.sites.iter().filter(|s| s.host == host).collect()
    }
}

pub(crate) fn argv(call: &Value) -> Vec<String> {
    call["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|a| a.as_str().unwrap_or("").to_owned())
        .collect()
}

/// A database upgrade that changes the database (a `--dry-run` changes nothing).
pub(crate) fn is_upgrade_call(call: &Value) -> bool {
    let a = argv(call);
    a.iter()
        .any(|x| x == "upgrade:db" || x == "civicrm-upgrade-db")
        && !a.iter().any(|x| x == "--dry-run")
}

pub(crate) fn ts(call: &Value) -> f64 {
    call["ts"].as_str().expect("ts").parse().expect("ts number")
}

/// `maintenance_mode 1` being set.
pub(crate) fn is_maintenance_on(call: &Value) -> bool {
    let a = argv(call);
    a.iter().any(|x| x == "vset") && a.last().is_some_and(|x| x == "1")
}

pub(crate) fn prior_maintenance(site: &LabSite) -> &'static str {
    if site.name == "site1" { "0" } else { "unset" }
}

pub(crate) fn dump_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(dump_files(&p));
            } else if p.extension().is_some_and(|x| x == "sql") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn ten_hosts_two_sites_upgrade_end_to_end() {
    let u = Upgrade::new(10, 2);
    let o = u.fleet(&["--batches", "1,30%,100%"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        assert_eq!(s.code_version(), TO, "{}/{}", s.host, s.name);
        assert_eq!(s.db_version(), TO, "{}/{}", s.host, s.name);
        assert_eq!(
            s.maintenance(),
            prior_maintenance(s),
            "{}/{} maintenance",
            s.host,
            s.name
        );
        let mods =
            std::fs::read_to_string(s.db_dir(&s.cms_db).join("modules_enabled")).expect("modules");
        assert!(
            mods.lines().any(|m| m == "civicrm_rules"),
            "civicrm_rules re-enabled on {}/{}",
            s.host,
            s.name
        );
    }
    // Each CiviCRM database upgraded exactly once, shared or not.
    for h in u.lab.hosts() {
        let mut per_db: BTreeMap<String, usize> = BTreeMap::new();
        for c in u.calls(&h.name).iter().filter(|c| is_upgrade_call(c)) {
            let site = c["site"].as_str().expect("site").to_owned();
            let db = u
                .sites
                .iter()
                .find(|s| s.site_dir.display().to_string() == site)
                .expect("site of call")
                .civi_db
                .clone();
            *per_db.entry(db).or_default() += 1;
        }
        let dbs: std::collections::BTreeSet<&String> =
            u.sites_of(&h.name).iter().map(|s| &s.civi_db).collect();
        assert_eq!(per_db.len(), dbs.len(), "{}: {per_db:?}", h.name);
        assert!(per_db.values().all(|&n| n == 1), "{}: {per_db:?}", h.name);
        // Backups: complete dumps and the old code, under the backup dir (outside the root).
        let backups = u.sites_of(&h.name)[0].backup_dir.clone();
        let dumps = dump_files(&backups);
        assert_eq!(dumps.len(), dbs.len() + 2, "{}: {dumps:?}", h.name);
        for d in &dumps {
            let text = std::fs::read_to_string(d).expect("dump");
            assert!(
                text.lines()
                    .last()
                    .is_some_and(|l| l.starts_with("-- Dump completed")),
                "{}",
                d.display()
            );
        }
    }
    // Maintenance gating: no host of a later batch went into maintenance before the earlier
    // batch had finished (its last call).
    let batches: [&[&str]; 3] = [
        &["h01"],
        &["h02", "h03", "h04"],
        &["h05", "h06", "h07", "h08", "h09", "h10"],
    ];
    for w in batches.windows(2) {
        let earlier_end = w[0]
            .iter()
            .flat_map(|h| u.calls(h))
            .map(|c| ts(&c))
            .fold(0.0, f64::max);
        let later_start = w[1]
            .iter()
            .flat_map(|h| u.calls(h))
            .filter(is_maintenance_on)
            .map(|c| ts(&c))
            .fold(f64::MAX, f64::min);
        assert!(
            later_start > earlier_end,
            "maintenance on {later_start} before the earlier batch ended {earlier_end}"
        );
    }
    // The journal has it all.
    let mut c = fleet(&u.lab.inventory_path());
    let o = run(c.arg("--state-dir").arg(u.state.path()).args(["runs"]));
    assert!(
        stdout(&o).contains("finished") && stdout(&o).contains("20/20"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn plan_changes_nothing() {
    let u = Upgrade::new(2, 2);
    let snapshot = || {
        let mut files = BTreeMap::new();
        for h in u.lab.hosts() {
            collect(&h.root, &mut files);
        }
        files
    };
    fn collect(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n == "calls.log" || n == "calls.lock")
            {
                continue;
            }
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                collect(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    let before = snapshot();
    let o = u.fleet(&["--plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("4 site(s) to upgrade") && text.contains("nothing was changed"),
        "{text}"
    );
    assert!(
        text.contains("civicrm_h01") && text.contains("unset"),
        "{text}"
    );
    let after = snapshot();
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(
        changed.is_empty(),
        "--plan changed files on the hosts: {changed:?}"
    );
    assert!(
        !u.state.path().join("journal.sqlite").exists(),
        "--plan wrote a journal"
    );
}

#[test]
fn midway_failure_rolls_back_that_host_and_others_go_on() {
    let u = Upgrade::new(4, 2);
    u.inject("h03", "upgrade.midway", None);
    let o = u.fleet(&["--batches", "1,100%", "--max-fail", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    for s in &u.sites {
        if s.host == "h03" {
            assert_eq!(s.code_version(), FROM, "code restored on {}", s.name);
            assert_eq!(s.db_version(), FROM, "db restored on {}", s.name);
            assert_eq!(
                s.maintenance(),
                prior_maintenance(s),
                "maintenance back on {}",
                s.name
            );
            let templates = std::fs::read_dir(s.site_dir.join("files/civicrm/templates_c"))
                .expect("templates_c")
                .count();
            assert_eq!(templates, 0, "templates_c emptied on {}", s.name);
        } else {
            assert_eq!(s.db_version(), TO, "{}/{}", s.host, s.name);
            assert_eq!(s.maintenance(), prior_maintenance(s));
        }
    }
    assert!(out.contains("rolled-back"), "{out}");
    assert!(
        !stderr(&o).contains("STILL IN MAINTENANCE"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn failed_canary_stops_later_batches() {
    let u = Upgrade::new(3, 1);
    u.inject("h01", "upgrade.midway", None);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("STOPPED"), "{}", stderr(&o));
    for h in ["h02", "h03"] {
        assert!(
            !u.calls(h).iter().any(is_maintenance_on),
            "{h} went into maintenance after a failed canary"
        );
    }
    assert!(stdout(&o).contains("not-started"), "{}", stdout(&o));
    assert_eq!(u.sites_of("h01")[0].db_version(), FROM);
    assert_eq!(u.sites_of("h01")[0].maintenance(), "0");
}

#[test]
fn budget_exceeded_stops_the_run_and_leaves_nothing_in_maintenance() {
    let u = Upgrade::new(5, 1);
    u.inject("h02", "upgrade.midway", None);
    u.inject("h03", "upgrade.midway", None);
    let o = u.fleet(&["--batches", "1,4", "--max-fail", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("more than its budget"),
        "{}",
        stderr(&o)
    );
    for s in &u.sites {
        assert_eq!(
            s.maintenance(),
            prior_maintenance(s),
            "{} left in maintenance",
            s.host
        );
        assert!(s.db_version() == FROM || s.db_version() == TO);
        assert_eq!(
            s.db_version(),
            s.code_version(),
            "{}: code and db disagree",
            s.host
        );
    }
}

#[test]
fn truncated_dump_is_caught_before_code_is_touched() {
    let u = Upgrade::new(2, 1);
    u.inject("h02", "dump.truncate", None);
    let o = u.fleet(&["--max-fail", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("backup-db") && out.contains("truncated"),
        "{out}"
    );
    let s = u.sites_of("h02")[0];
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.maintenance(), "0");
    // The code was never moved: no code backup exists for this run.
    let code_backups: Vec<_> = walk(&s.backup_dir)
        .into_iter()
        .filter(|p| p.ends_with("code/civicrm"))
        .collect();
    assert!(code_backups.is_empty(), "{code_backups:?}");
    assert!(!u.calls("h02").iter().any(is_upgrade_call));
}

/// Core reaches the target, then an extension upgrade fails (exit 1 with code = DB): that is
/// a failure, and the site goes back to the old code and the old database together.
#[test]
fn extension_failure_after_core_upgrade_rolls_back() {
    let u = Upgrade::new(1, 1);
    u.inject("h01", "upgrade.ext", None);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let s = u.sites_of("h01")[0];
    assert_eq!(s.db_version(), FROM, "{}", stdout(&o));
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.maintenance(), "0");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.clone());
            if p.is_dir() {
                out.extend(walk(&p));
            }
        }
    }
    out
}

pub(crate) fn wait_until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub(crate) fn spawn_upgrade(u: &Upgrade, extra: &[&str]) -> std::process::Child {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .arg("upgrade")
        .arg("--tarball")
        .arg(u.lab.release_tarball(TO));
    c.args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c.spawn().expect("spawn fleet upgrade")
}

pub(crate) fn fleet_cmd(u: &Upgrade, args: &[&str]) -> std::process::Output {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(u.state.path()).args(args);
    run(&mut c)
}

pub(crate) fn run_id(u: &Upgrade) -> String {
    let o = fleet_cmd(u, &["runs"]);
    stdout(&o)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a run")
        .to_owned()
}

/// A host dies (sshd and its sessions killed) while its sites are in maintenance: the run
/// reports them loudly as still down, and `fleet recover` brings them back once it is up.
#[test]
fn host_killed_mid_run_is_reported_and_recovered() {
    let mut u = Upgrade::new(2, 1);
    u.inject("h02", "slow", Some("1"));
    let child = spawn_upgrade(&u, &["--batches", "2", "--max-fail", "1"]);
    let site = u.sites_of("h02")[0].clone();
    wait_until(
        "h02 in maintenance",
        std::time::Duration::from_secs(60),
        || site.maintenance() == "1",
    );
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = child.wait_with_output().expect("fleet");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h02/site1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(u.sites_of("h01")[0].db_version(), TO);

    // Any later fleet command says so.
    let o = fleet_cmd(&u, &["hosts"]);
    assert!(
        stderr(&o).contains("left 1 site(s) in maintenance or mid-step"),
        "{}",
        stderr(&o)
    );
    // While the host is still down, recover can do nothing, and must not forget the site.
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("unreachable"), "{}", stdout(&o));
    u.lab.lab_mut().start_host("h02").expect("restart h02");
    std::fs::remove_file(u.host_root("h02").join("fake-civi/fail/slow")).expect("clear injection");
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(site.maintenance(), "0");
    assert_eq!(site.code_version(), site.db_version());
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", stderr(&o));
}

/// The controller is SIGKILLed mid-batch; `fleet resume` finishes the run, and no database is
/// upgraded twice.
#[test]
fn controller_killed_then_resumed() {
    let u = Upgrade::new(3, 2);
    for h in ["h02", "h03"] {
        u.inject(h, "slow", Some("1"));
    }
    let mut child = spawn_upgrade(&u, &["--batches", "1,100%"]);
    let s = u.sites_of("h02")[0].clone();
    wait_until(
        "h02 in maintenance",
        std::time::Duration::from_secs(60),
        || s.maintenance() == "1",
    );
    child.kill().expect("SIGKILL fleet");
    let _ = child.wait();
    for h in ["h02", "h03"] {
        std::fs::remove_file(u.host_root(h).join("fake-civi/fail/slow")).expect("clear injection");
    }
    // Let the command the dead controller left running on the host finish.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let run = run_id(&u);
    let o = fleet_cmd(&u, &["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for site in &u.sites {
        assert_eq!(site.db_version(), TO, "{}/{}", site.host, site.name);
        assert_eq!(site.code_version(), TO);
        assert_eq!(
            site.maintenance(),
            prior_maintenance(site),
            "{}/{}",
            site.host,
            site.name
        );
    }
    for h in u.lab.hosts() {
        let n = u
            .calls(&h.name)
            .iter()
            .filter(|c| is_upgrade_call(c))
            .count();
        let dbs: std::collections::BTreeSet<&String> =
            u.sites_of(&h.name).iter().map(|s| &s.civi_db).collect();
        assert_eq!(
            n,
            dbs.len(),
            "{}: DB upgrades run {n} times for {} databases",
            h.name,
            dbs.len()
        );
    }
    let o = fleet_cmd(&u, &["runs"]);
    assert!(stdout(&o).contains("finished"), "{}", stdout(&o));
}

#[test]
fn on_failure_hold_keeps_the_site_down_and_says_so() {
    let u = Upgrade::new(1, 1);
    u.inject("h01", "upgrade.midway", None);
    let o = u.fleet(&["--on-failure", "hold"]);
    assert_eq!(o.status.code(), Some(1));
    let s = u.sites_of("h01")[0];
    assert_eq!(s.maintenance(), "1");
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.code_version(), FROM);
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h01/site1"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("held"), "{}", stdout(&o));
    // `fleet recover` takes it out again.
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(s.maintenance(), "0");
}

#[test]
fn rollback_restores_an_upgraded_run() {
    let u = Upgrade::new(2, 2);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run = run_id(&u);
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        assert_eq!(s.code_version(), FROM, "{}/{}", s.host, s.name);
        assert_eq!(s.db_version(), FROM, "{}/{}", s.host, s.name);
        assert_eq!(s.maintenance(), prior_maintenance(s));
    }
}

#[test]
fn locked_site_is_refused_untouched() {
    let u = Upgrade::new(1, 1);
    let s = u.sites_of("h01")[0];
    let locks = s.backup_dir.join(".fleet-locks");
    let key: String = format!("{}{}", s.site_dir.display(), s.uri)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    std::fs::create_dir_all(locks.join(&key)).expect("lock dir");
    std::fs::write(
        locks.join(&key).join("owner"),
        "run=other-run controller=elsewhere pid=1 time=now\n",
    )
    .expect("owner");
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("locked by another run: run=other-run"),
        "{}",
        stdout(&o)
    );
    assert_eq!(s.maintenance(), "0");
    assert!(!u.calls("h01").iter().any(is_maintenance_on));
    // The operator knows that run is dead: `--break-lock` takes the lock over.
    let o = u.fleet(&["--break-lock", "other-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(s.db_version(), TO);
}

/// A lock left by a run the journal knows is over is stale and taken over without asking.
#[test]
fn stale_lock_of_a_finished_run_is_taken_over() {
    let u = Upgrade::new(1, 1);
    let pb = write_playbook(
        u.state.path(),
        "[[steps]]\nname = \"noop\"\nkind = \"shell\"\nrun = \"true\"\n",
    );
    let pb = pb.display().to_string();
    assert_eq!(
        fleet_cmd(&u, &["upgrade", "--playbook", &pb]).status.code(),
        Some(0)
    );
    let finished = run_id(&u);
    let s = u.sites_of("h01")[0];
    let key: String = format!("{}{}", s.site_dir.display(), s.uri)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let lock = s.backup_dir.join(".fleet-locks").join(&key);
    std::fs::create_dir_all(&lock).expect("lock dir");
    std::fs::write(
        lock.join("owner"),
        format!("run={finished} controller=x pid=1 time=t\n"),
    )
    .expect("owner");
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.db_version(), TO);
    assert!(!lock.exists(), "the lock is released at the end");
}

#[test]
fn first_interrupt_brings_sites_back_up() {
    interrupt_once_brings_sites_back_up("-INT");
}

/// SIGTERM (a service manager stopping fleet) behaves as the first Ctrl-C.
#[test]
fn sigterm_brings_sites_back_up() {
    interrupt_once_brings_sites_back_up("-TERM");
}

/// SIGHUP (the operator's terminal or SSH session closed) behaves as the first Ctrl-C.
#[test]
fn sighup_brings_sites_back_up() {
    interrupt_once_brings_sites_back_up("-HUP");
}

/// First Ctrl-C during a batch: nothing new is admitted and sites not yet at the database
/// upgrade are brought back; none is left in maintenance; exit 130.
fn interrupt_once_brings_sites_back_up(signal: &str) {
    let u = Upgrade::new(3, 1);
    for h in ["h01", "h02", "h03"] {
        u.inject(h, "slow", Some("1"));
    }
    let child = spawn_upgrade(&u, &["--batches", "2,1", "-f", "2"]);
    let s = u.sites_of("h01")[0].clone();
    wait_until(
        "h01 in maintenance",
        std::time::Duration::from_secs(60),
        || s.maintenance() == "1",
    );
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let o = child.wait_with_output().expect("fleet");
    assert_eq!(o.status.code(), Some(130), "{}", both(&o));
    for site in &u.sites {
        assert_eq!(
            site.maintenance(),
            prior_maintenance(site),
            "{} left in maintenance",
            site.host
        );
        assert_eq!(site.code_version(), site.db_version(), "{}", site.host);
    }
    // The third host was never admitted.
    assert!(!u.calls("h03").iter().any(is_maintenance_on));
    assert!(stdout(&o).contains("not-started"), "{}", stdout(&o));
}

/// `db_upgrade = "drush"`: the DB step is `drush civicrm-upgrade-db` and caches go through
/// `drush cc civicrm`; the result is verified the same way.
#[test]
fn drush_variant_upgrades_too() {
    let u = Upgrade::new(1, 2);
    let inv = u.lab.inventory_path();
    let text = std::fs::read_to_string(&inv).expect("inventory");
    std::fs::write(
        &inv,
        text.replacen("[defaults]\n", "[defaults]\ndb_upgrade = \"drush\"\n", 1),
    )
    .expect("write");
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let calls = u.calls("h01");
    assert!(
        calls
            .iter()
            .any(|c| argv(c).iter().any(|a| a == "civicrm-upgrade-db"))
    );
    assert!(
        !calls
            .iter()
            .any(|c| argv(c).iter().any(|a| a == "upgrade:db"))
    );
    for s in &u.sites {
        assert_eq!(s.db_version(), TO);
        assert_eq!(s.maintenance(), prior_maintenance(s));
    }
}

/// `--max-per db_server=1`: hosts sharing a var value never run at the same time.
#[test]
fn max_per_keeps_hosts_sharing_a_var_apart() {
    let u = Upgrade::new(4, 1);
    let inv = u.lab.inventory_path();
    let mut text = std::fs::read_to_string(&inv).expect("inventory");
    for h in ["h01", "h02", "h03", "h04"] {
        let db = if h == "h01" || h == "h02" {
            "db-a"
        } else {
            "db-b"
        };
        text = text.replacen(
            &format!("[hosts.{h}]\n"),
            &format!("[hosts.{h}]\nvars = {{ db_server = \"{db}\" }}\n"),
            1,
        );
    }
    std::fs::write(&inv, text).expect("write");
    for h in ["h01", "h02", "h03", "h04"] {
        u.inject(h, "slow", Some("0.2"));
    }
    let o = u.fleet(&["--batches", "4", "--max-per", "db_server=1"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let span = |h: &str| {
        let ts: Vec<f64> = u.calls(h).iter().map(ts).collect();
        (
            ts.iter().cloned().fold(f64::MAX, f64::min),
            ts.iter().cloned().fold(0.0, f64::max),
        )
    };
    let overlap = |a: (f64, f64), b: (f64, f64)| a.0 < b.1 && b.0 < a.1;
    assert!(
        !overlap(span("h01"), span("h02")),
        "h01 and h02 share db-a but ran together"
    );
    assert!(
        !overlap(span("h03"), span("h04")),
        "h03 and h04 share db-b but ran together"
    );
    assert!(
        overlap(span("h01"), span("h03")) || overlap(span("h01"), span("h04")),
        "different db servers should run in parallel"
    );
}

/// Second Ctrl-C: running steps are aborted (remote commands killed) and the summary names
/// every site still in maintenance; `fleet recover` then brings them back.
#[test]
fn second_interrupt_aborts_and_names_sites_still_down() {
    let u = Upgrade::new(1, 2);
    u.inject("h01", "slow", Some("1"));
    let child = spawn_upgrade(&u, &[]);
    let s = u.sites_of("h01")[0].clone();
    wait_until(
        "h01 in maintenance",
        std::time::Duration::from_secs(60),
        || s.maintenance() == "1",
    );
    for _ in 0..2 {
        let st = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let o = child.wait_with_output().expect("fleet");
    assert_eq!(o.status.code(), Some(130), "{}", both(&o));
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("interrupted"), "{}", stdout(&o));
    std::fs::remove_file(u.host_root("h01").join("fake-civi/fail/slow")).expect("clear");
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for site in &u.sites {
        assert_eq!(site.maintenance(), prior_maintenance(site));
        assert_eq!(site.code_version(), site.db_version());
    }
}

fn write_playbook(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("playbook.toml");
    std::fs::write(&p, text).expect("playbook");
    p
}

/// A user's playbook: maintenance window, backup, a shell step per site with its probe; all
/// journaled, maintenance back to its prior state at the end.
#[test]
fn custom_playbook_runs_shell_steps_in_a_maintenance_window() {
    let u = Upgrade::new(2, 2);
    let pb = write_playbook(
        u.state.path(),
        r#"
name = "touch marker"
[[steps]]
kind = "maintenance"
[[steps]]
kind = "backup"
[[steps]]
name = "mark"
kind = "shell"
run = "echo {site} > {root}/sites/marker-{site}; test \"$({drush} -r {root} -l {uri} vget maintenance_mode --exact)\" = 1"
verify = "test -s {root}/sites/marker-{site}"
"#,
    );
    let pb = pb.display().to_string();
    let o = fleet_cmd(&u, &["upgrade", "--playbook", &pb]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stdout(&o).contains("playbook `touch marker` done"),
        "{}",
        stdout(&o)
    );
    for s in &u.sites {
        assert_eq!(
            std::fs::read_to_string(s.root.join(format!("sites/marker-{}", s.name)))
                .expect("marker")
                .trim(),
            s.name
        );
        assert_eq!(s.maintenance(), prior_maintenance(s));
        assert_eq!(s.code_version(), FROM);
    }
    let o = fleet_cmd(&u, &["runs"]);
    assert!(stdout(&o).contains("finished"), "{}", stdout(&o));
}

/// A failing playbook step: the `undo` of earlier steps runs, a database touched by a
/// `touches_db` step is restored from the run's backup, maintenance goes back.
#[test]
fn custom_playbook_failure_undoes_and_restores() {
    let u = Upgrade::new(1, 1);
    let pb = write_playbook(
        u.state.path(),
        r#"
[[steps]]
kind = "maintenance"
[[steps]]
kind = "backup"
[[steps]]
name = "change-db"
kind = "shell"
run = "echo 9.9.9 > \"$FLEET_ROOT/fake-civi/db/\"{civi_db}/civicrm_domain.version"
undo = "touch {backup_dir}/undo-ran"
touches_db = true
[[steps]]
name = "boom"
kind = "shell"
run = "echo failing on purpose >&2; exit 3"
"#,
    );
    let pb = pb.display().to_string();
    let o = fleet_cmd(&u, &["upgrade", "--playbook", &pb]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = u.sites_of("h01")[0];
    assert!(
        stdout(&o).contains("failed at `boom`") && stdout(&o).contains("failing on purpose"),
        "{}",
        stdout(&o)
    );
    assert_eq!(s.db_version(), FROM, "database restored from the backup");
    assert_eq!(s.maintenance(), "0");
    assert!(
        s.backup_dir.join("undo-ran").exists(),
        "undo of the earlier step ran"
    );
}

/// `--bake`: after the wait the canary's sites are checked again; one that went back into
/// maintenance fails the batch and no later batch starts.
#[test]
fn bake_re_verifies_before_the_next_batch() {
    let u = Upgrade::new(3, 1);
    let child = spawn_upgrade(&u, &["--batches", "1,100%", "--bake", "3s"]);
    let canary = u.sites_of("h01")[0].clone();
    // Done with the canary only once its lock is released (after its last step): tampering
    // earlier would fail that step instead of the bake's check.
    let locks = canary.backup_dir.join(".fleet-locks");
    wait_until(
        "canary upgraded and unlocked",
        std::time::Duration::from_secs(60),
        || {
            canary.db_version() == TO
                && canary.maintenance() == "0"
                && canary.code_version() == TO
                && locks.is_dir()
                && std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_none())
        },
    );
    std::fs::write(
        canary
            .db_dir(&canary.cms_db)
            .join("variable.maintenance_mode"),
        "1\n",
    )
    .expect("tamper");
    let o = child.wait_with_output().expect("fleet");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("re-verify after the bake FAILED"),
        "{}",
        stderr(&o)
    );
    assert!(!u.calls("h02").iter().any(is_maintenance_on));
}

/// `--json`: one event per line on stdout, machine-readable to the end.
#[test]
fn json_events_describe_the_run() {
    let u = Upgrade::new(2, 1);
    let o = u.fleet(&["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(kinds[0], "run_started");
    assert_eq!(events[0]["batches"], serde_json::json!([1, 1]));
    assert!(
        kinds.contains(&"batch_started")
            && kinds.contains(&"step_finished")
            && kinds.contains(&"site_finished")
    );
    let sites: Vec<&Value> = events.iter().filter(|e| e["event"] == "site").collect();
    assert_eq!(sites.len(), 2);
    assert!(sites.iter().all(|s| s["status"] == "upgraded"));
}

/// `rollback --site`: the named site goes back, with every site sharing its codebase on that
/// host; other hosts stay upgraded.
#[test]
fn rollback_of_one_site_takes_its_codebase_group_only() {
    let u = Upgrade::new(2, 2);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let run = run_id(&u);
    let o = fleet_cmd(&u, &["rollback", &run, "--site", "h01/site1", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        let want = if s.host == "h01" { FROM } else { TO };
        assert_eq!(s.code_version(), want, "{}/{}", s.host, s.name);
        assert_eq!(s.db_version(), want, "{}/{}", s.host, s.name);
        assert_eq!(s.maintenance(), prior_maintenance(s));
    }
    assert!(!stdout(&o).contains("h02"), "{}", stdout(&o));
}

/// A `--playbook` run killed mid-way is resumed with the same playbook, from the journal's
/// copy (the file was deleted meanwhile), never with the built-in CiviCRM procedure.
#[test]
fn resume_of_a_playbook_run_runs_that_playbook() {
    let u = Upgrade::new(2, 1);
    let pb = write_playbook(
        u.state.path(),
        "name = \"slow marker\"\n[[steps]]\nname = \"mark\"\nkind = \"shell\"\nrun = \"sleep 2; echo {site} > {backup_dir}/done-{site}\"\n",
    );
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["upgrade", "--playbook"])
        .arg(&pb)
        .args(["--batches", "1,100%"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().expect("spawn");
    let first = u.sites_of("h01")[0].backup_dir.join("done-site1");
    wait_until(
        "the canary's step",
        std::time::Duration::from_secs(60),
        || first.exists(),
    );
    child.kill().expect("SIGKILL fleet");
    let _ = child.wait();
    std::fs::remove_file(&pb).expect("rm playbook");
    let run = run_id(&u);
    let o = fleet_cmd(&u, &["resume", &run, "--step-timeout", "60s"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        assert!(
            s.backup_dir.join(format!("done-{}", s.name)).exists(),
            "{}/{} not done",
            s.host,
            s.name
        );
        assert_eq!(s.code_version(), FROM, "the built-in procedure ran");
    }
    for h in ["h01", "h02"] {
        assert!(!u.calls(h).iter().any(is_upgrade_call));
    }
}

/// `--show-steps` with a playbook lists that playbook's steps, between the lock and the
/// unlock, not the built-in procedure's.
#[test]
fn show_steps_of_a_playbook_are_its_own() {
    let dir = tempfile::tempdir().expect("dir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/playbook.example.toml");
    let o = run(fleet(&dir.path().join("x.toml"))
        .args(["upgrade", "--show-steps", "--playbook"])
        .arg(&example));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let out = stdout(&o);
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names.first(), Some(&"preflight"), "{out}");
    assert_eq!(names.last(), Some(&"unlock"), "{out}");
    assert!(
        names.contains(&"updb") && names.contains(&"disk-report"),
        "{out}"
    );
    assert!(!names.contains(&"upgrade-db"), "{out}");
    assert!(out.contains("disk-report          per host"), "{out}");
}
