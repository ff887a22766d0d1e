//! Data safety, found by trying to break fleet: a restore never drops anything it has not
//! verified, `fleet rollback` refuses what would lose newer data, values read from a host
//! stay data, a crashed run's remote step is waited for. Every test asserts what is on the
//! hosts (database content, versions, maintenance), not only exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::upgrade::{
    FROM, TO, Upgrade, dump_files, fleet_cmd, is_upgrade_call, prior_maintenance, run_id,
    spawn_upgrade, ts, wait_until,
};
use crate::{both, stderr, stdout};

/// Rows the sites hold, in the fakes' databases: what a restore must never lose unasked.
const DATA: &str = "data.contacts";

/// The run's dump of database `db` on the host of `backup_dir`.
fn dump_of(backup_dir: &Path, run: &str, db: &str) -> PathBuf {
    dump_files(backup_dir)
        .into_iter()
        .find(|p| {
            p.ends_with(format!("fleet-{run}/db/{db}.sql"))
                || p.to_string_lossy()
                    .ends_with(&format!("fleet-{run}/db/{db}.sql"))
        })
        .unwrap_or_else(|| panic!("no dump of {db} for run {run}"))
}

/// A release tarball at `version`, laid out as the lab's own.
fn release(dir: &Path, version: &str, with_drupal: bool) -> PathBuf {
    let stage = dir.join(format!("stage-{version}"));
    let code = stage.join("civicrm");
    let write = |rel: &str, text: &str| {
        let p = code.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "xml/version.xml",
        &format!(
            "<?xml version=\"1.0\" ?>\n<version>\n  <version_no>{version}</version_no>\n</version>\n"
        ),
    );
    write("CRM/Core/ClassLoader.php", "<?php\n");
    if with_drupal {
        write("drupal/civicrm.module", "<?php\n");
        write("drupal/drush/civicrm.drush.inc", "<?php\n");
    } else {
        write("wordpress/civicrm.php", "<?php\n");
    }
    let tarball = dir.join(format!("civicrm-{version}-test.tar.gz"));
    let ok = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .arg("civicrm")
        .status()
        .expect("tar");
    assert!(ok.success());
    tarball
}

/// A missing or edited dump is refused on the host before anything is dropped; the data
/// written after the upgrade is still in the live database; so is a second attempt. A site
/// no longer at the run's target is refused too. The real rollback then keeps what it
/// replaced in a safety dump.
#[test]
fn rollback_never_drops_a_database_it_cannot_restore() {
    let u = Upgrade::new(1, 2);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let run = run_id(&u);
    let s = u.sites_of("h01")[0].clone();
    let live = s.db_dir(&s.civi_db);
    std::fs::write(live.join(DATA), "alice,bob\n").expect("data");
    let dump = dump_of(&s.backup_dir, &run, &s.civi_db);
    let original = std::fs::read_to_string(&dump).expect("dump");

    let still_there = |when: &str| {
        assert_eq!(
            std::fs::read_to_string(live.join(DATA)).unwrap_or_default(),
            "alice,bob\n",
            "{when}: the live data is gone"
        );
        for site in &u.sites {
            assert_eq!(site.db_version(), TO, "{when}: {}", site.name);
            assert_eq!(site.code_version(), TO, "{when}: {}", site.name);
            assert_eq!(site.maintenance(), prior_maintenance(site), "{when}");
        }
    };

    // 1. The dump is missing: refused, twice, the database untouched.
    std::fs::remove_file(&dump).expect("rm dump");
    for attempt in ["first", "second"] {
        let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
        assert_eq!(o.status.code(), Some(1), "{attempt}: {}", both(&o));
        let out = stdout(&o);
        assert!(out.contains("is missing"), "{attempt}: {}", both(&o));
        assert!(
            out.contains("nothing was changed"),
            "{attempt}: {}",
            both(&o)
        );
        assert!(!out.contains("rolled-back"), "{attempt}: {}", both(&o));
        still_there(attempt);
    }
    let o = fleet_cmd(&u, &["runs", "show", &run]);
    assert!(stdout(&o).contains("upgraded"), "{}", stdout(&o));

    // 2. The dump was edited since it was taken (complete, but not what was recorded).
    std::fs::write(
        &dump,
        original.replace(
            "civicrm_domain.version=5.69.0",
            "civicrm_domain.version=5.69.1",
        ),
    )
    .expect("edit dump");
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains("sha256"), "{}", both(&o));
    still_there("edited dump");
    std::fs::write(&dump, &original).expect("put the dump back");

    // 3. Someone changed the site since the run: its backups describe a site that is gone.
    let version = live.join("civicrm_domain.version");
    std::fs::write(&version, "5.70.1\n").expect("version");
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o).contains("no longer at this run's target"),
        "{}",
        both(&o)
    );
    assert!(stdout(&o).contains("--force"), "{}", both(&o));
    std::fs::write(&version, format!("{TO}\n")).expect("version");
    still_there("changed site");

    // 4. Everything verifies: rolled back, and what it replaced is kept.
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("rolled back to 5.69.0"), "{}", both(&o));
    assert!(!stdout(&o).contains("failed at"), "{}", both(&o));
    for site in &u.sites {
        assert_eq!(site.db_version(), FROM);
        assert_eq!(site.code_version(), FROM);
        assert_eq!(site.maintenance(), prior_maintenance(site));
    }
    assert!(!live.join(DATA).exists(), "the dump predates the data");
    let safety: Vec<PathBuf> = dump_files(&s.backup_dir)
        .into_iter()
        .filter(|p| {
            p.to_string_lossy()
                .contains(&format!("fleet-{run}/rollback-"))
        })
        .collect();
    assert_eq!(safety.len(), 1, "{safety:?}");
    let kept = std::fs::read_to_string(&safety[0]).expect("safety dump");
    assert!(kept.contains("data.contacts=alice,bob"), "{kept}");
    assert!(
        kept.trim_end()
            .lines()
            .last()
            .unwrap_or("")
            .starts_with("-- Dump completed")
    );
    let o = fleet_cmd(&u, &["runs", "show", &run]);
    assert!(stdout(&o).contains("safety-dump"), "{}", stdout(&o));
    // Nothing left to do, and nothing for recover.
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert!(stderr(&o).contains("no site to roll back"), "{}", both(&o));
}

/// Run A (5.69 -> 5.70), then run B (5.70 -> 5.71): rolling back A would throw away B and
/// everything written since, so it is refused (exit 1, nothing changed) until `--force`.
/// Without a terminal it needs `--yes`; `--plan` says what would be lost; an unknown
/// `--site` is an error naming the run's sites.
#[test]
fn rollback_refuses_when_a_later_run_changed_the_site() {
    let u = Upgrade::new(1, 1);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let a = run_id(&u);
    std::thread::sleep(Duration::from_millis(1100)); // run ids and start times are per second
    let next = release(u.state.path(), "5.71.0", true);
    let o = fleet_cmd(&u, &["upgrade", "--tarball", &next.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let b = run_id(&u);
    assert_ne!(a, b);
    let s = u.sites_of("h01")[0].clone();
    let live = s.db_dir(&s.civi_db);
    std::fs::write(live.join(DATA), "carol\n").expect("data");
    let unchanged = |when: &str| {
        assert_eq!(s.code_version(), "5.71.0", "{when}");
        assert_eq!(s.db_version(), "5.71.0", "{when}");
        assert_eq!(s.maintenance(), prior_maintenance(&s), "{when}");
        assert!(live.join(DATA).exists(), "{when}: data lost");
    };

    let o = fleet_cmd(&u, &["rollback", &a, "--site", "nosuch", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains("has no site `nosuch`; its sites: h01/site1"),
        "{}",
        both(&o)
    );
    let o = fleet_cmd(&u, &["rollback", &a]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(stderr(&o).contains("--yes"), "{}", both(&o));
    assert!(stderr(&o).contains("will be lost"), "{}", both(&o));
    unchanged("no --yes");

    let o = fleet_cmd(&u, &["rollback", &a, "--plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("ago: newer data lost"), "{}", both(&o));
    assert!(
        stdout(&o).contains(&format!(
            "REFUSED: site `site1` was changed by a later run ({b})"
        )),
        "{}",
        both(&o)
    );
    unchanged("--plan");

    let o = fleet_cmd(&u, &["rollback", &a, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains(&b), "{}", both(&o));
    assert!(stdout(&o).contains("--force"), "{}", both(&o));
    unchanged("refused");

    let o = fleet_cmd(&u, &["rollback", &a, "--yes", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    let kept: Vec<String> = dump_files(&s.backup_dir)
        .iter()
        .filter(|p| {
            p.to_string_lossy()
                .contains(&format!("fleet-{a}/rollback-"))
        })
        .map(|p| std::fs::read_to_string(p).expect("safety dump"))
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].contains("data.contacts=carol"), "{}", kept[0]);
    assert!(
        kept[0].contains("civicrm_domain.version=5.71.0"),
        "{}",
        kept[0]
    );
    // The later run no longer claims the site.
    let o = fleet_cmd(&u, &["runs", "show", &b]);
    assert!(
        stdout(&o).contains(&format!("undone by `fleet rollback {a} --force`")),
        "{}",
        both(&o)
    );
}

/// A run held a site in maintenance (`--on-failure hold`); a later plain run upgrades it and
/// brings it back to what it was before the first run, not to the held `1`, and the first
/// run no longer offers to recover it.
#[test]
fn rerun_after_a_held_run_restores_the_true_prior_maintenance() {
    let u = Upgrade::new(1, 2);
    u.inject("h01", "upgrade.midway", None);
    let o = u.fleet(&["--on-failure", "hold"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("bring them to a safe end: fleet recover"),
        "{}",
        both(&o)
    );
    for s in &u.sites {
        assert_eq!(s.maintenance(), "1");
    }
    std::fs::remove_file(u.host_root("h01").join("fake-civi/fail/upgrade.midway"))
        .expect("clear injection");
    std::thread::sleep(Duration::from_millis(1100));
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        assert_eq!(s.code_version(), TO);
        assert_eq!(s.db_version(), TO);
        assert_eq!(s.maintenance(), prior_maintenance(s), "{}", s.name);
    }
    assert!(
        !stdout(&o).contains("as it was before the run"),
        "{}",
        both(&o)
    );
    assert!(!stderr(&o).contains("STILL IN MAINTENANCE"), "{}", both(&o));
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
    assert_eq!(o.status.code(), Some(0));
}

/// The controller is SIGKILLed while its sites are in maintenance; a plain re-run (not
/// `fleet resume`) takes over the dead run's locks once its step on the host has ended,
/// upgrades the sites and brings them back to what they were before the first run.
#[test]
fn rerun_after_a_killed_controller_brings_sites_back_up() {
    let u = Upgrade::new(1, 2);
    u.inject("h01", "slow", Some("1"));
    let mut child = spawn_upgrade(&u, &[]);
    let s = u.sites_of("h01")[0].clone();
    wait_until("h01 in maintenance", Duration::from_secs(60), || {
        s.maintenance() == "1"
    });
    child.kill().expect("SIGKILL fleet");
    let _ = child.wait();
    let crashed = run_id(&u);
    std::fs::remove_file(u.host_root("h01").join("fake-civi/fail/slow")).expect("clear");
    // A try while the host is down changes nothing and must not hide the crashed run.
    std::thread::sleep(Duration::from_secs(2));
    let mut u = u;
    u.lab.lab_mut().kill_host("h01").expect("kill h01");
    std::thread::sleep(Duration::from_millis(1100));
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    u.lab.lab_mut().start_host("h01").expect("start h01");
    std::thread::sleep(Duration::from_millis(1100));
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for site in &u.sites {
        assert_eq!(site.code_version(), TO);
        assert_eq!(site.db_version(), TO);
        assert_eq!(site.maintenance(), prior_maintenance(site), "{}", site.name);
    }
    let o = fleet_cmd(&u, &["runs", "show", &crashed]);
    assert!(stdout(&o).contains("superseded"), "{}", both(&o));
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
}

/// A Drupal variable holding a newline and a fake discovery key (a site admin can set one)
/// must not redirect fleet to another directory: the site is refused before anything runs.
#[test]
fn a_hostile_drupal_variable_cannot_forge_discovery_facts() {
    let u = Upgrade::new(1, 2);
    let s = u.sites_of("h01")[0].clone();
    let elsewhere = u.state.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("xml")).expect("dir");
    std::fs::write(elsewhere.join("keep"), "mine\n").expect("file");
    std::fs::write(
        s.db_dir(&s.cms_db).join("variable.maintenance_mode"),
        format!("0\ncivicrm_root={}\n", elsewhere.display()),
    )
    .expect("variable");
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains("maintenance_mode"), "{}", both(&o));
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("keep")).unwrap_or_default(),
        "mine\n"
    );
    let set_calls = u
        .calls("h01")
        .iter()
        .filter(|c| c["argv"].to_string().contains("vset"))
        .count();
    assert_eq!(set_calls, 0, "maintenance was touched");
    for site in &u.sites {
        assert_eq!(site.code_version(), FROM);
        assert_eq!(site.db_version(), FROM);
    }
}

/// Values with spaces reach a playbook step as one word wherever the author put them, also
/// in a script for another shell; a value with quotes in it is refused inside quotes before
/// the step runs; a path read from the host that holds `$(...)` and backquotes is refused
/// before any step runs.
#[test]
fn playbook_placeholders_are_data_in_any_quoting_context() {
    let u = Upgrade::new(1, 1);
    let s = u.sites_of("h01")[0].clone();
    let pb = u.state.path().join("pb.toml");
    std::fs::write(
        &pb,
        r#"name = "show the paths"
[[steps]]
name = "show"
kind = "shell"
run = """
printf '%s\\n' {backup_dir} > {backup_dir}/seen.txt
sh -c "printf '%s\\n' '{root}'" >> {backup_dir}/seen.txt
sh <<EOF >> {backup_dir}/seen.txt
printf '%s\\n' "{root}"
EOF
test -d "{root}/sites" && printf '%s\\n' "{root}" >> {backup_dir}/seen.txt
"""
"#,
    )
    .expect("playbook");
    let pb = pb.display().to_string();
    let o = fleet_cmd(&u, &["upgrade", "--playbook", &pb]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let seen = std::fs::read_to_string(s.backup_dir.join("seen.txt")).expect("seen");
    let (b, r) = (s.backup_dir.display(), s.root.display());
    assert_eq!(seen, format!("{b}\n{r}\n{r}\n{r}\n"));

    // The lab's backup dir has a quote in its name (`o'brien`): inside quotes, where
    // another shell may read it again, it is refused and the step never runs.
    let quoted = u.state.path().join("quoted.toml");
    std::fs::write(
        &quoted,
        "[[steps]]\nname = \"q\"\nkind = \"shell\"\nrun = \"sh -c 'touch {backup_dir}/ran'\"\n",
    )
    .expect("playbook");
    let o = fleet_cmd(
        &u,
        &["upgrade", "--playbook", &quoted.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o).contains("`{backup_dir}` stands inside quotes"),
        "{}",
        both(&o)
    );
    assert!(!s.backup_dir.join("ran").exists());

    // A codebase path with shell syntax in it (a site admin edited civicrm.settings.php).
    let pwned = u.state.path().join("PWNED");
    let settings = s.site_dir.join("civicrm.settings.php");
    let text = std::fs::read_to_string(&settings).expect("settings");
    let code = format!("{}/sites/all/modules/civicrm", s.root.display());
    let evil = format!("{code}$(touch {p}1)`touch {p}2`", p = pwned.display());
    std::fs::write(
        &settings,
        text.replace(
            &format!("$civicrm_root = '{code}/';"),
            &format!("$civicrm_root = '{evil}';"),
        ),
    )
    .expect("settings");
    let o = fleet_cmd(&u, &["upgrade", "--playbook", &pb]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o).contains("which a shell reads as syntax"),
        "{}",
        both(&o)
    );
    for n in ["1", "2"] {
        assert!(
            !PathBuf::from(format!("{}{n}", pwned.display())).exists(),
            "a value from the host ran as shell text"
        );
    }
}

/// The controller dies (SIGKILL) while `cv upgrade:db` runs; the remote upgrade goes on.
/// `fleet runs` says the run was interrupted; `fleet recover` waits for the upgrade to end
/// (and says so) before it decides anything, so the site ends consistent: code and
/// database at the same version, out of maintenance.
#[test]
fn recover_waits_for_the_crashed_runs_step_still_running() {
    let u = Upgrade::new(1, 1);
    u.inject("h01", "upgrade.slow", Some("6"));
    let mut child = spawn_upgrade(&u, &[]);
    let s = u.sites_of("h01")[0].clone();
    wait_until("the DB upgrade to start", Duration::from_secs(60), || {
        s.db_version().ends_with(".upgrade")
    });
    child.kill().expect("SIGKILL fleet");
    let _ = child.wait();
    let pid = child.id();
    let o = fleet_cmd(&u, &["runs"]);
    assert!(
        stdout(&o).contains(&format!("interrupted (controller pid {pid} gone)")),
        "{}",
        both(&o)
    );
    let o = fleet_cmd(&u, &["recover", "--yes", "--step-timeout", "60s"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("still running on the host"),
        "{}",
        both(&o)
    );
    assert_eq!(
        s.code_version(),
        s.db_version(),
        "code and database disagree"
    );
    assert!(!s.db_version().ends_with(".upgrade"));
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    // Nothing of the recovery ran before the upgrade had ended.
    let calls = u.calls("h01");
    let upgrade_end = calls
        .iter()
        .filter(|c| is_upgrade_call(c))
        .map(ts)
        .fold(0.0, f64::max);
    assert!(upgrade_end > 0.0, "the upgrade call never finished");
    let before: Vec<_> = calls
        .iter()
        .filter(|c| ts(c) > upgrade_end - 5.5 && ts(c) < upgrade_end && !is_upgrade_call(c))
        .collect();
    assert!(before.is_empty(), "calls while the upgrade ran: {before:?}");
}

/// A foreign or broken tarball is refused before any host is contacted.
#[test]
fn a_foreign_tarball_is_refused_before_any_site_is_touched() {
    let u = Upgrade::new(1, 1);
    let wordpress = release(u.state.path(), "5.70.0", false);
    let broken = u.state.path().join("broken.tar.gz");
    std::fs::write(&broken, b"\x1f\x8b not really gzip").expect("write");
    for (tarball, says) in [
        (&wordpress, "not a CiviCRM release for Drupal"),
        (&broken, "not a readable .tar.gz"),
    ] {
        let o = fleet_cmd(
            &u,
            &["upgrade", "--tarball", &tarball.display().to_string()],
        );
        assert_eq!(o.status.code(), Some(2), "{}", both(&o));
        assert!(stderr(&o).contains(says), "{}", both(&o));
        assert!(
            stderr(&o).contains(&tarball.display().to_string()),
            "{}",
            both(&o)
        );
    }
    assert!(u.calls("h01").is_empty(), "a host was contacted");
}

/// SIGHUP (the operator's SSH session to the controller dropped) in the middle of a
/// rollback: the group being restored is finished, not abandoned in maintenance; exit 130;
/// the journal says where each site ended.
#[test]
fn sighup_during_a_rollback_finishes_the_group_it_started() {
    let u = Upgrade::new(1, 1);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let run = run_id(&u);
    u.inject("h01", "slow", Some("1"));
    let mut c = crate::fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["rollback", &run, "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().expect("spawn rollback");
    let s = u.sites_of("h01")[0].clone();
    wait_until(
        "the rollback to take the site down",
        Duration::from_secs(60),
        || s.maintenance() == "1",
    );
    // A second rollback of the same run meanwhile is refused, not run alongside.
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(stderr(&o).contains("still in progress"), "{}", both(&o));
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let o = child.wait_with_output().expect("rollback");
    assert_eq!(o.status.code(), Some(130), "{}", both(&o));
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    let o = fleet_cmd(&u, &["runs", "show", &run]);
    assert!(stdout(&o).contains("rolled-back"), "{}", both(&o));
    assert!(!stdout(&o).contains("IN MAINTENANCE"), "{}", both(&o));
}

/// The load of a dump dies after the drop (connection lost): the rollback says the site is
/// down, and `fleet recover` then loads the verified dump; it never calls an empty database
/// "rolled back".
#[test]
fn a_restore_that_died_after_the_drop_is_finished_by_recover() {
    let u = Upgrade::new(1, 1);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let run = run_id(&u);
    let s = u.sites_of("h01")[0].clone();
    std::fs::write(s.db_dir(&s.civi_db).join(DATA), "dave\n").expect("data");
    u.inject("h01", "restore.fail", None);
    // Only the first load fails (a count in the injection file).
    std::fs::write(u.host_root("h01").join("fake-civi/fail/restore.fail"), "1").expect("once");
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stderr(&o).contains("STILL IN MAINTENANCE"), "{}", both(&o));
    assert_eq!(s.db_version(), "", "the failed load left an empty database");
    assert_eq!(s.maintenance(), "1");
    let o = fleet_cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    // What the failed rollback replaced is in its safety dump.
    let kept: Vec<String> = dump_files(&s.backup_dir)
        .iter()
        .filter(|p| p.to_string_lossy().contains("/rollback-"))
        .map(|p| std::fs::read_to_string(p).expect("dump"))
        .collect();
    assert!(
        kept.iter().any(|k| k.contains("data.contacts=dave")),
        "{kept:?}"
    );
}

/// Run A, run B, then `fleet rollback B` and `fleet rollback A`, in the order the refusal
/// advises: both go through without `--force`.
#[test]
fn rolling_back_the_later_run_first_unblocks_the_earlier_one() {
    let u = Upgrade::new(1, 1);
    assert_eq!(u.fleet(&[]).status.code(), Some(0));
    let a = run_id(&u);
    std::thread::sleep(Duration::from_millis(1100));
    let next = release(u.state.path(), "5.71.0", true);
    let o = fleet_cmd(&u, &["upgrade", "--tarball", &next.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let b = run_id(&u);
    let s = u.sites_of("h01")[0].clone();
    let o = fleet_cmd(&u, &["rollback", &b, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.db_version(), TO);
    let o = fleet_cmd(&u, &["rollback", &a, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.code_version(), FROM);
}

/// A rollback refused late (its safety dump failed) gives back the site locks it took and
/// leaves the run as it was: the sites can be rolled back once the cause is fixed.
#[test]
fn a_rollback_refused_late_leaves_no_lock_and_can_be_retried() {
    let u = Upgrade::new(1, 1);
    assert_eq!(u.fleet(&[]).status.code(), Some(0));
    let run = run_id(&u);
    let s = u.sites_of("h01")[0].clone();
    u.inject("h01", "drush.civicrm-sql-dump", None);
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains("safety dump"), "{}", both(&o));
    assert_eq!(s.db_version(), TO);
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    let locks: Vec<_> = std::fs::read_dir(s.backup_dir.join(".fleet-locks"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(locks.is_empty(), "locks left: {locks:?}");
    let o = fleet_cmd(&u, &["runs"]);
    assert!(stdout(&o).contains("finished"), "{}", both(&o));
    std::fs::remove_file(
        u.host_root("h01")
            .join("fake-civi/fail/drush.civicrm-sql-dump"),
    )
    .expect("clear");
    let o = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.db_version(), FROM);
}
