//! CiviCRM across `fleet migrate`: the new site runs on a copy of the old CiviCRM database,
//! upgraded with the release's CiviCRM; the live database is never changed, and what was
//! written to it before the release is in the copy the new site goes live on.

use fleet_lab::{DRUPAL_RELEASE_CIVICRM, LabSite};

use super::rollout::release;
use super::{build, import, migrate_lab, run_id, site_lines};
use crate::both;
use crate::upgrade::{FROM, Upgrade};

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_owned()
}

fn copy_of(s: &LabSite) -> String {
    format!("{}_d10", s.civi_db)
}

#[test]
fn the_new_site_runs_on_an_upgraded_copy_of_civicrm_taken_again_at_the_release() {
    let (u, m) = migrate_lab(2, 1);
    for s in &u.sites {
        std::fs::write(
            s.db_dir(&s.civi_db).join("data.civicrm_contact"),
            format!("contacts of {} before the import\n", s.name),
        )
        .unwrap();
    }
    let b = build(&u, &m.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let run = run_id(&b);
    let o = import(&u, &run, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for (who, (status, detail)) in site_lines(&o) {
        assert_eq!(status, "done", "{who}: {detail}");
        assert!(
            detail.contains(&format!("CiviCRM {FROM} -> {DRUPAL_RELEASE_CIVICRM}")),
            "{who}: {detail}"
        );
    }
    for s in &u.sites {
        let copy = s.db_dir(&copy_of(s));
        assert_eq!(
            read(&copy.join("civicrm_domain.version")),
            DRUPAL_RELEASE_CIVICRM
        );
        assert_eq!(
            read(&copy.join("data.civicrm_contact")),
            read(&s.db_dir(&s.civi_db).join("data.civicrm_contact"))
        );
        // The live database: as it was, never upgraded.
        assert_eq!(s.db_version(), FROM, "{}: the live CiviCRM changed", s.name);
        assert!(
            !std::fs::read_to_string(s.db_dir(&s.civi_db).join("tables_added"))
                .unwrap_or_default()
                .contains(DRUPAL_RELEASE_CIVICRM),
            "the live CiviCRM was upgraded"
        );
        let rel = s.current.parent().unwrap().join("releases").join(&run);
        let settings = read(&rel.join("sites/default/civicrm.settings.php"));
        assert!(
            settings.contains(&format!("/{}?new_link=true", copy_of(s))),
            "{settings}"
        );
        assert!(
            settings.contains(&format!("/{}_d10?new_link=true", s.cms_db)),
            "{settings}"
        );
        assert!(
            settings.contains("define('CIVICRM_UF', 'Drupal8');"),
            "{settings}"
        );
        assert!(
            settings.contains("vendor/civicrm/civicrm-core/"),
            "{settings}"
        );
        assert!(
            settings.contains(&format!("fake-site-key-{}", s.civi_db)),
            "the site key changed: {settings}"
        );
        assert!(
            !settings.contains(&format!("/{}?", s.civi_db)),
            "{settings}"
        );
        // The copy's source dump does not stay behind.
        assert!(
            !s.backup_dir
                .join(format!("fleet-{run}/{}-civicrm.sql", s.name))
                .exists()
        );
    }

    // Written to the old CiviCRM after the import: the release takes the copy again.
    for s in &u.sites {
        std::fs::write(
            s.db_dir(&s.civi_db).join("data.civicrm_contact"),
            format!("contacts of {} written after the import\n", s.name),
        )
        .unwrap();
    }
    let o = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        let copy = s.db_dir(&copy_of(s));
        assert_eq!(
            read(&copy.join("data.civicrm_contact")),
            format!("contacts of {} written after the import", s.name),
            "the copy the new site went live on lacks what was written before the release"
        );
        assert_eq!(
            read(&copy.join("civicrm_domain.version")),
            DRUPAL_RELEASE_CIVICRM
        );
        assert_eq!(s.db_version(), FROM);
    }

    // The new site takes writes in its copy, is switched back, then released again: the copy
    // is made again from the old database, and what it held is kept first.
    let s = &u.sites[0];
    let copy = s.db_dir(&copy_of(s));
    std::fs::write(
        copy.join("data.civicrm_contribution"),
        "taken on the new site\n",
    )
    .unwrap();
    let mut c = crate::fleet(&u.lab.inventory_path());
    c.arg("--state-dir").arg(u.state.path()).args([
        "migrate",
        "rollback",
        &run,
        "--site",
        &format!("{}/{}", s.host, s.name),
    ]);
    let o = crate::run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let o = crate::run(&mut release(
        &u,
        &run,
        &["--batches", "100%", "-l", &s.host],
    ));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        !copy.join("data.civicrm_contribution").exists(),
        "the copy was not made again"
    );
    let kept: Vec<_> = std::fs::read_dir(s.backup_dir.join(format!("fleet-{run}/final")))
        .expect("a final dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&copy_of(s))
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        read(&kept[0]).contains("data.civicrm_contribution=taken on the new site"),
        "what the copy took while it was live is not kept"
    );
}

#[test]
fn a_shared_civicrm_database_or_a_manifest_without_civicrm_is_not_passed() {
    // h01's two sites share one CiviCRM database.
    let mut u = Upgrade::new(1, 2);
    let m = u
        .lab
        .write_drupal_release(fleet_lab::DRUPAL_RELEASE, fleet_lab::WEB_PORT)
        .unwrap();
    let sites = u.sites.clone();
    u.lab.start_web(&sites).unwrap();
    let b = build(&u, &m.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let run = run_id(&b);
    let o = import(&u, &run, &[]);
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    for (who, (status, detail)) in site_lines(&o) {
        assert_eq!(status, "failed", "{who}: {detail}");
        assert!(detail.contains("is shared with"), "{who}: {detail}");
    }
    let s = &u.sites[0];
    assert!(
        !s.db_dir(&copy_of(s)).exists(),
        "a copy of a shared database was made"
    );

    // A manifest without `[civicrm]` for a lab whose sites run CiviCRM.
    let (u, m) = migrate_lab(1, 1);
    let text = std::fs::read_to_string(&m.manifest).unwrap();
    let without: String = text
        .split("\n[")
        .filter(|part| !part.starts_with("civicrm]"))
        .collect::<Vec<_>>()
        .join("\n[");
    assert!(!without.contains("[civicrm]"), "{without}");
    std::fs::write(&m.manifest, without).unwrap();
    let b = build(&u, &m.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let o = import(&u, &run_id(&b), &[]);
    let (status, detail) = &site_lines(&o)["h01/site1"];
    assert_eq!(status, "failed", "{detail}");
    assert!(detail.contains("no `[civicrm]`"), "{detail}");
}
