//! `fleet migrate release` and `fleet migrate rollback` against the lab.

use fleet_lab::DRUPAL_RELEASE;

use super::{Poller, build, import, migrate_lab, run_id, site_lines};
use crate::upgrade::Upgrade;
use crate::{both, fleet, stdout};

pub(crate) fn release(u: &Upgrade, run: &str, extra: &[&str]) -> std::process::Command {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["migrate", "release", run, "--json"])
        .args(extra);
    c
}

/// A lab with every site built and imported; the run id.
pub(crate) fn imported_lab(hosts: usize, per_host: usize) -> (Upgrade, String) {
    let (u, m) = migrate_lab(hosts, per_host);
    let b = build(&u, &m.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let run = run_id(&b);
    let i = import(&u, &run, &[]);
    assert_eq!(i.status.code(), Some(0), "{}", both(&i));
    (u, run)
}

/// `s` serves run `run`'s release, Drupal 10, out of maintenance.
fn assert_serves_the_release(u: &Upgrade, s: &fleet_lab::LabSite, run: &str) {
    let rel = s.current.parent().unwrap().join("releases").join(run);
    assert_eq!(s.served(), rel, "{}", s.uri_host());
    let a = u.lab.http_get(s, false).unwrap();
    assert!(
        a.body.contains(&format!("Drupal {DRUPAL_RELEASE}")),
        "{a:?}"
    );
    assert_eq!(
        new_maintenance(s),
        "0",
        "{}: the new site is in maintenance",
        s.uri_host()
    );
}

pub(crate) fn new_maintenance(s: &fleet_lab::LabSite) -> String {
    std::fs::read_to_string(
        s.db_dir(&format!("{}_d10", s.cms_db))
            .join("state.system.maintenance_mode"),
    )
    .unwrap_or_default()
    .trim()
    .to_owned()
}

#[test]
fn release_switches_every_site_in_batches_without_a_moment_of_no_docroot() {
    let (u, run) = imported_lab(6, 2);
    let poller = Poller::start(&u, None);
    let o = crate::run(&mut release(&u, &run, &["--batches", "1,100%"]));
    poller.check(u.sites.len(), "the release");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let lines = site_lines(&o);
    for s in &u.sites {
        assert_serves_the_release(&u, s, &run);
        assert_eq!(lines[&format!("{}/{}", s.host, s.name)].0, "upgraded");
        // The way back is kept: the old root and database are there.
        assert!(s.root.join("includes/bootstrap.inc").is_file());
        assert!(s.db_dir(&s.cms_db).join("count.node").is_file());
    }
    // The canary went first, alone.
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let batches: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "batch_started")
        .collect();
    assert_eq!(batches.len(), 2, "{events:?}");
    assert_eq!(batches[0]["hosts"], serde_json::json!(["h01"]));
    // The phase again: every site released already is left alone (not probed, not switched).
    let again = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    assert_eq!(again.status.code(), Some(0), "{}", both(&again));
    assert!(
        site_lines(&again).values().all(|(st, _)| st == "skipped"),
        "{}",
        stdout(&again)
    );
    // One site back to its old release, which serves again; the others stay.
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(u.state.path()).args([
        "migrate",
        "rollback",
        &run,
        "--site",
        "h04/site2",
    ]);
    let o = crate::run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        let a = u.lab.http_get(s, false).unwrap();
        let want = if s.host == "h04" && s.name == "site2" {
            "Drupal 7.101".to_owned()
        } else {
            format!("Drupal {DRUPAL_RELEASE}")
        };
        assert!(a.body.contains(&want), "{}: {a:?}", s.uri_host());
    }
}

#[test]
fn a_failed_probe_after_the_switch_switches_that_site_back_at_once() {
    let (u, run) = imported_lab(2, 1);
    let s = u.sites.iter().find(|s| s.host == "h02").unwrap();
    // From now on its new site renders no front page: the live probe after the switch
    // (which follows the last import) gets a 404.
    let fail = u.host_root("h02").join("fake-civi/fail");
    std::fs::create_dir_all(&fail).unwrap();
    std::fs::write(fail.join("front.missing"), "").unwrap();
    let o = crate::run(&mut release(
        &u,
        &run,
        &["--batches", "100%", "--max-fail", "1"],
    ));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = site_lines(&o);
    let (status, detail) = &lines["h02/site1"];
    assert_eq!(status, "rolled-back", "{detail}");
    assert!(detail.contains("failed at `qa-probe`"), "{detail}");
    assert!(detail.contains("switched back"), "{detail}");
    assert_eq!(s.served(), s.root, "current was not switched back");
    let a = u.lab.http_get(s, false).unwrap();
    assert!(a.body.contains("Drupal 7.101"), "{a:?}");
    assert_eq!(s.maintenance(), "0", "the old site is left in maintenance");
    assert_eq!(lines["h01/site1"].0, "upgraded");
}

#[test]
fn a_controller_killed_mid_release_is_resumed_to_one_release_per_site_out_of_maintenance() {
    let (u, run) = imported_lab(2, 2);
    // h02's fake tools take a second a call: the kill lands while its sites are mid-release.
    let fail = u.host_root("h02").join("fake-civi/fail");
    std::fs::create_dir_all(&fail).unwrap();
    std::fs::write(fail.join("slow"), "1000").unwrap();
    std::fs::write(fail.join("slow.value"), "1").unwrap();
    let mut child = release(&u, &run, &["--batches", "1,100%"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let h2: Vec<&fleet_lab::LabSite> = u.sites.iter().filter(|s| s.host == "h02").collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while h2[0].maintenance() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "h02's old site never went into maintenance"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the release ended before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(fail.join("slow")).unwrap();
    assert_eq!(
        h2[0].maintenance(),
        "1",
        "the kill left h02/site1 down (as it should to test this)"
    );

    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["resume", &run]);
    let o = crate::run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        let rel = s.current.parent().unwrap().join("releases").join(&run);
        assert_eq!(
            s.served(),
            rel,
            "{} is not on its new release",
            s.uri_host()
        );
        assert_eq!(
            new_maintenance(s),
            "0",
            "{} is left in maintenance",
            s.uri_host()
        );
        let a = u.lab.http_get(s, false).unwrap();
        assert!(
            a.body.contains(&format!("Drupal {DRUPAL_RELEASE}")),
            "{a:?}"
        );
    }
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["runs", "show", &run]);
    let shown = stdout(&crate::run(&mut c));
    assert!(
        shown.matches("upgraded").count() >= u.sites.len(),
        "{shown}"
    );
    assert!(shown.contains("finished"), "{shown}");
}

#[test]
fn rollback_brings_one_released_site_back_to_its_old_release_and_leaves_the_others() {
    let (u, run) = imported_lab(2, 1);
    let o = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let back = u.sites.iter().find(|s| s.host == "h01").unwrap();
    let stays = u.sites.iter().find(|s| s.host == "h02").unwrap();
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(u.state.path()).args([
        "migrate",
        "rollback",
        &run,
        "--site",
        "h01/site1",
        "--json",
    ]);
    let o = crate::run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let lines = site_lines(&o);
    let (status, detail) = &lines["h01/site1"];
    assert_eq!(status, "rolled-back", "{detail}");
    assert!(detail.contains("switched back"), "{detail}");
    assert_eq!(back.served(), back.root);
    let a = u.lab.http_get(back, false).unwrap();
    assert!(a.body.contains("Drupal 7.101"), "{a:?}");
    assert_eq!(
        back.maintenance(),
        "0",
        "the old site is not as it was before the release"
    );
    assert_eq!(
        new_maintenance(back),
        "1",
        "the new site takes writes after the rollback"
    );
    assert!(
        back.db_dir(&format!("{}_d10", back.cms_db))
            .join("installed")
            .is_file(),
        "the new database is kept"
    );
    // The other site stays on its new release.
    let rel = stays.current.parent().unwrap().join("releases").join(&run);
    assert_eq!(stays.served(), rel);
    assert!(!lines.contains_key("h02/site1"), "{lines:?}");
    // Again: nothing to do, still a success.
    let o = crate::run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(site_lines(&o)["h01/site1"].0, "rolled-back");
}

#[test]
fn release_and_import_plans_say_which_sites_go_in_which_batch_and_change_nothing() {
    let (u, run) = imported_lab(3, 1);
    let plan = |phase: &str, extra: &[&str]| {
        let mut c = fleet(&u.lab.inventory_path());
        c.arg("--state-dir")
            .arg(u.state.path())
            .args(["migrate", phase, &run, "--plan"])
            .args(extra);
        let o = crate::run(&mut c);
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
        o
    };
    let rows = |o: &std::process::Output| -> Vec<serde_json::Value> {
        stdout(o)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    let before = super::hosts_tree(&u);
    let r = rows(&plan("release", &["--batches", "1,100%", "--json"]));
    assert_eq!(r.len(), 3, "{r:?}");
    for (i, row) in r.iter().enumerate() {
        assert_eq!(row["action"], "release", "{row}");
        assert_eq!(row["batch"], if i == 0 { 1 } else { 2 }, "{row}");
    }
    let text = stdout(&plan("release", &["--batches", "1,100%"]));
    assert!(text.contains("in 2 batch(es) of 1, 2"), "{text}");
    assert!(text.contains("3 of 3 site(s) would be taken"), "{text}");
    for row in rows(&plan("import", &["--json"])) {
        assert_eq!(row["action"], "import", "{row}");
        assert_eq!(row["reason"], "again, with --update", "{row}");
    }
    assert_eq!(super::hosts_tree(&u), before, "a plan changed the hosts");
    assert!(
        u.sites.iter().all(|s| s.served() == s.root),
        "a plan released a site"
    );

    let o = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for row in rows(&plan("release", &["--json"])) {
        assert_eq!(row["action"], "skip", "{row}");
        assert_eq!(row["reason"], "released already", "{row}");
    }
    for row in rows(&plan("import", &["--json"])) {
        assert_eq!(row["action"], "not-started", "{row}");
    }
}

/// The whole migration (build, import, release) logged in as a person who becomes root with
/// sudo and a password from a file, as on a real server.
#[test]
fn a_migration_by_an_operator_who_sudoes_with_a_password() {
    let password = fleet_lab::users::ensure()
        .expect("the lab's login users (tests run as root)")
        .operator_password;
    let (u, m) = migrate_lab(1, 2);
    let pass = u.lab.temp_dir().join("op.pass");
    std::fs::write(&pass, format!("{password}\n")).expect("password file");
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let inv = u.lab.inventory_path();
    let text = std::fs::read_to_string(&inv).expect("inventory");
    assert!(text.contains("user = \"root\"\n"), "{text}");
    let text = text.replacen(
        "user = \"root\"\n",
        &format!(
            "user = \"{}\"\nbecome = true\nbecome_password_file = {:?}\n",
            fleet_lab::users::OPERATOR,
            pass.display().to_string()
        ),
        1,
    );
    std::fs::write(&inv, text).expect("inventory");
    let b = build(&u, &m.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let run = run_id(&b);
    let i = import(&u, &run, &[]);
    assert_eq!(i.status.code(), Some(0), "{}", both(&i));
    let o = crate::run(&mut release(&u, &run, &[]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        assert_serves_the_release(&u, s, &run);
    }
    for out in [&b, &i, &o] {
        assert!(!both(out).contains(&password), "the password in the output");
    }
}
