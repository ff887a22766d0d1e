//! `fleet migrate cleanup` against the lab: what goes, what is archived first, and that what
//! `current` serves (and the way back of a young release) is never touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fleet_lab::{DRUPAL_RELEASE, LabSite};

use super::rollout::{imported_lab, release};
use super::{hosts_tree, site_lines};
use crate::upgrade::Upgrade;
use crate::{both, fleet, stdout};

fn cleanup(u: &Upgrade, run: &str, extra: &[&str]) -> Command {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["migrate", "cleanup", run, "--json"])
        .args(extra);
    c
}

fn site<'a>(u: &'a Upgrade, host: &str, name: &str) -> &'a LabSite {
    u.sites
        .iter()
        .find(|s| s.host == host && s.name == name)
        .unwrap()
}

/// Where the cleanup leaves a site's dumps and archives.
fn kept(s: &LabSite, run: &str) -> PathBuf {
    s.backup_dir.join(format!("fleet-{run}/final"))
}

fn tar_list(archive: &Path) -> String {
    let o = Command::new("tar")
        .arg("-tzf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}: not a readable archive",
        archive.display()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn serves_version(u: &Upgrade, s: &LabSite, version: &str) {
    let page = u.lab.http_get(s, false).unwrap();
    assert_eq!(page.status, 200, "{}: {page:?}", s.uri_host());
    assert!(
        page.body.contains(&format!("Drupal {version}")),
        "{} does not serve Drupal {version}: {page:?}",
        s.uri_host()
    );
}

#[test]
fn cleanup_removes_what_each_site_no_longer_needs_archived_first_and_never_what_is_served() {
    let (u, run) = imported_lab(2, 2);
    let o = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    // h01/site2 goes back to its old site: its new side is what it no longer needs, and the
    // old root it is served from stays.
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(u.state.path()).args([
        "migrate",
        "rollback",
        &run,
        "--site",
        "h01/site2",
    ]);
    let o = crate::run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));

    // Too young: nothing read, nothing changed.
    let before = hosts_tree(&u);
    let o = crate::run(&mut cleanup(&u, &run, &["--older-than", "1h"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for (who, (status, detail)) in site_lines(&o) {
        assert_eq!(status, "skipped", "{who}: {detail}");
        assert!(detail.contains("not older than 1 h"), "{who}: {detail}");
    }
    assert_eq!(
        hosts_tree(&u),
        before,
        "a cleanup of young sites changed the hosts"
    );

    // The plan: what would go and stay, read-only (neither the hosts nor the journal change).
    let shown = || {
        let mut c = fleet(&u.lab.inventory_path());
        c.arg("--state-dir")
            .arg(u.state.path())
            .args(["runs", "show", &run]);
        stdout(&crate::run(&mut c))
    };
    let journal_before = shown();
    let o = crate::run(&mut cleanup(&u, &run, &["--older-than", "0s", "--plan"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let rows: BTreeMap<String, serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .map(|v| {
            (
                format!(
                    "{}/{}",
                    v["host"].as_str().unwrap(),
                    v["site"].as_str().unwrap()
                ),
                v,
            )
        })
        .collect();
    assert_eq!(rows.len(), 4, "{}", stdout(&o));
    let removes = |who: &str| -> Vec<String> {
        rows[who]["remove"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    for who in ["h01/site1", "h02/site1", "h02/site2"] {
        assert_eq!(rows[who]["action"], "remove", "{who}: {}", rows[who]);
        assert_eq!(rows[who]["side"], "old", "{who}: {}", rows[who]);
    }
    assert_eq!(rows["h01/site2"]["side"], "new");
    let h1s1 = site(&u, "h01", "site1");
    assert!(removes("h01/site1").contains(&format!("database `{}`", h1s1.cms_db)));
    assert!(removes("h01/site1").contains(&h1s1.site_dir.display().to_string()));
    assert!(
        rows["h01/site1"]["kept"]
            .to_string()
            .contains("another site is served from it"),
        "{}",
        rows["h01/site1"]
    );
    let h1s2 = site(&u, "h01", "site2");
    assert!(
        removes("h01/site2").contains(
            &h1s2
                .current
                .parent()
                .unwrap()
                .join("releases")
                .join(&run)
                .display()
                .to_string()
        ),
        "{:?}",
        removes("h01/site2")
    );
    assert_eq!(hosts_tree(&u), before, "the plan changed the hosts");
    assert_eq!(shown(), journal_before, "the plan wrote the journal");
    let o = crate::run(&mut {
        let mut c = fleet(&u.lab.inventory_path());
        c.arg("--state-dir").arg(u.state.path()).args([
            "migrate",
            "cleanup",
            &run,
            "--older-than",
            "0s",
            "--plan",
        ]);
        c
    });
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stdout(&o).contains("4 of 4 site(s) would be cleaned up"),
        "{}",
        stdout(&o)
    );

    let o = crate::run(&mut cleanup(&u, &run, &["--older-than", "0s"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let lines = site_lines(&o);
    assert_eq!(lines.len(), 4, "{}", stdout(&o));
    for (who, (status, detail)) in &lines {
        assert_eq!(status, "done", "{who}: {detail}");
        assert!(detail.starts_with("cleaned up"), "{who}: {detail}");
    }

    // Released sites: their old database is gone, its final dump kept (complete, with the
    // site's data), and they serve the new release.
    for (h, n) in [("h01", "site1"), ("h02", "site1"), ("h02", "site2")] {
        let s = site(&u, h, n);
        assert!(!s.db_dir(&s.cms_db).exists(), "{h}/{n}: old database kept");
        let dump = std::fs::read_to_string(kept(s, &run).join(format!("{}.sql", s.cms_db)))
            .unwrap_or_else(|e| panic!("{h}/{n}: no final dump: {e}"));
        assert!(dump.contains(&format!("db={}", s.cms_db)), "{dump}");
        assert!(
            dump.contains("count.node="),
            "{h}/{n}: the dump lacks the data: {dump}"
        );
        assert!(
            dump.trim_end()
                .lines()
                .last()
                .unwrap()
                .starts_with("-- Dump completed")
        );
        assert!(
            s.db_dir(&format!("{}_d10", s.cms_db))
                .join("installed")
                .is_file()
        );
        assert_eq!(
            s.served(),
            s.current.parent().unwrap().join("releases").join(&run)
        );
        serves_version(&u, s, DRUPAL_RELEASE);
        // Its old CiviCRM database too (dumped first); the copy the new site runs on stays.
        assert!(
            !s.db_dir(&s.civi_db).exists(),
            "{h}/{n}: old CiviCRM database kept"
        );
        let dump = std::fs::read_to_string(kept(s, &run).join(format!("{}.sql", s.civi_db)))
            .unwrap_or_else(|e| panic!("{h}/{n}: no final CiviCRM dump: {e}"));
        assert!(dump.contains(&format!("db={}", s.civi_db)), "{dump}");
        assert!(
            s.db_dir(&format!("{}_d10", s.civi_db))
                .join("civicrm_domain.version")
                .is_file(),
            "{h}/{n}: the live CiviCRM copy went"
        );
        // The new site reads the old connection from its own copy of the old settings now.
        let rel = s.current.parent().unwrap().join("releases").join(&run);
        let settings = std::fs::read_to_string(rel.join("sites/default/settings.php")).unwrap();
        assert!(settings.contains("legacy.settings.php"), "{settings}");
        assert!(!settings.contains("drupal 7/sites"), "{settings}");
        assert!(rel.join("sites/default/legacy.settings.php").is_file());
    }
    // h01: site2 is still served from the old root, so only site1's own dir went (archived).
    let h1s1 = site(&u, "h01", "site1");
    let h1s2 = site(&u, "h01", "site2");
    assert!(
        !h1s1.site_dir.exists(),
        "h01/site1's dir in the old root kept"
    );
    assert!(
        h1s2.site_dir.join("settings.php").is_file(),
        "h01/site2's old site touched"
    );
    assert!(
        h1s1.root.join("includes/bootstrap.inc").is_file(),
        "the old root went"
    );
    let listed = tar_list(&kept(h1s1, &run).join("site1-site-dir.tar.gz"));
    assert!(
        listed.contains("site1.h01.test/settings.php"),
        "the archive lacks the site's settings: {listed}"
    );
    // h01/site2 (switched back): its new side is gone, dumped and archived first; it still
    // serves its old site, on its old database.
    let rel = h1s2.current.parent().unwrap().join("releases").join(&run);
    assert!(!rel.exists(), "the rolled-back site's release kept");
    let new_db = format!("{}_d10", h1s2.cms_db);
    assert!(!h1s2.db_dir(&new_db).exists(), "its new database kept");
    assert!(kept(h1s2, &run).join(format!("{new_db}.sql")).is_file());
    assert!(tar_list(&kept(h1s2, &run).join("site2-release-site.tar.gz")).contains("settings.php"));
    assert!(
        std::fs::symlink_metadata(h1s2.current.parent().unwrap().join("preview")).is_err(),
        "the preview of a removed release is left"
    );
    assert!(h1s2.db_dir(&h1s2.cms_db).join("count.node").is_file());
    let copy = format!("{}_d10", h1s2.civi_db);
    assert!(!h1s2.db_dir(&copy).exists(), "its CiviCRM copy kept");
    assert!(kept(h1s2, &run).join(format!("{copy}.sql")).is_file());
    assert_eq!(
        h1s2.db_version(),
        crate::upgrade::FROM,
        "its live CiviCRM changed"
    );
    assert_eq!(h1s2.served(), h1s2.root);
    serves_version(&u, h1s2, "7.101");
    // h02: both sites released, nothing else in the old root: it went whole, archived.
    let h2 = site(&u, "h02", "site2");
    assert!(!h2.root.exists(), "h02's old root kept");
    let listed = tar_list(&kept(h2, &run).join("site2-old-root.tar.gz"));
    assert!(
        listed.contains("drupal 7/includes/bootstrap.inc"),
        "{listed}"
    );
    assert!(
        listed.contains("drupal 7/sites/site2.h02.test/settings.php"),
        "{listed}"
    );
    // The tarballs the build uploaded are gone once every site of the host is cleaned up.
    for s in [h1s1, h2] {
        let up = s.backup_dir.join(format!("fleet-{run}"));
        let left: Vec<_> = std::fs::read_dir(&up)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "final")
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", s.host);
    }

    // Again: nothing left to do.
    let o = crate::run(&mut cleanup(&u, &run, &["--older-than", "0s"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for (who, (status, detail)) in site_lines(&o) {
        assert_eq!(status, "skipped", "{who}: {detail}");
        assert!(detail.contains("cleaned up already"), "{who}: {detail}");
    }
    // The way back is gone, and the rollback says so rather than trying.
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(u.state.path()).args([
        "migrate",
        "rollback",
        &run,
        "--site",
        "h02/site1",
        "--json",
    ]);
    let o = crate::run(&mut c);
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    let (status, detail) = &site_lines(&o)["h02/site1"];
    assert_eq!(status, "refused", "{detail}");
    assert!(detail.contains("fleet migrate cleanup"), "{detail}");
    serves_version(&u, site(&u, "h02", "site1"), DRUPAL_RELEASE);
    // The journal still says where each site stands.
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["runs", "show", &run]);
    let shown = stdout(&crate::run(&mut c));
    assert!(shown.matches("upgraded").count() >= 3, "{shown}");
}

#[test]
fn a_site_whose_current_was_moved_by_someone_else_is_left_alone() {
    let (u, run) = imported_lab(1, 1);
    let o = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let s = site(&u, "h01", "site1");
    // An operator points the site at a copy by hand.
    let elsewhere = s.current.parent().unwrap().join("releases/hand-made");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::remove_file(&s.current).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &s.current).unwrap();
    let before = hosts_tree(&u);
    let o = crate::run(&mut cleanup(&u, &run, &["--older-than", "0s"]));
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    let (status, detail) = &site_lines(&o)["h01/site1"];
    assert_eq!(status, "failed", "{detail}");
    assert!(detail.contains("something else moved it"), "{detail}");
    assert_eq!(
        hosts_tree(&u),
        before,
        "a cleanup of a moved site changed the host"
    );
}
