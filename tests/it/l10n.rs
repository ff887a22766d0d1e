//! `fleet upgrade --l10n` (localization files unpacked with the new code, gone with it on a
//! rollback, refused when of another version; a site with translations refused without
//! it) and the dry runs of the database upgrade
//! (`--plan`, before maintenance, after the unpack).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_lab::{L10N_LOCALES, LabSite, l10n_mo_text};
use serde_json::Value;

use crate::upgrade::{FROM, TO, Upgrade, argv, is_maintenance_on, prior_maintenance, run_id, ts};
use crate::{both, fleet, run, stderr, stdout};

fn code_dir(s: &LabSite) -> PathBuf {
    s.root.join("sites/all/modules/civicrm")
}

fn is_dry_run(call: &Value) -> bool {
    let a = argv(call);
    a.iter().any(|x| x == "upgrade:db") && a.iter().any(|x| x == "--dry-run")
}

/// A database upgrade that changes something (the dry runs are not).
fn is_real_upgrade(call: &Value) -> bool {
    let a = argv(call);
    (a.iter().any(|x| x == "upgrade:db") && !a.iter().any(|x| x == "--dry-run"))
        || a.iter().any(|x| x == "civicrm-upgrade-db")
}

/// The CiviCRM database a fake call worked on (from the site dir it resolved).
fn db_of<'a>(u: &'a Upgrade, call: &Value) -> &'a str {
    let site = call["site"].as_str().expect("site");
    &u.sites
        .iter()
        .find(|s| s.site_dir.display().to_string() == site)
        .expect("site of call")
        .civi_db
}

/// Every file under `dir`, with its bytes (the fakes' own call log left out).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n == "calls.log" || n == "calls.lock")
            {
                continue;
            }
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

fn changed(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<PathBuf> {
    before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// With `--l10n` the translations of the new release are in the new code dir, the version
/// check holds and the DB is upgraded once; on a host whose DB upgrade fails later, the
/// rollback takes the new code dir away and no translation of the new version is left.
#[test]
fn l10n_files_arrive_with_the_new_code_and_leave_with_it_on_rollback() {
    let u = Upgrade::new(2, 2);
    u.inject("h02", "upgrade.midway", None);
    let l10n = u.lab.l10n_tarball(TO).display().to_string();
    let o = u.fleet(&["--l10n", &l10n, "--batches", "2", "--max-fail", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let run = run_id(&u);
    for s in u.sites_of("h01") {
        assert_eq!(s.code_version(), TO, "{}", both(&o));
        assert_eq!(s.db_version(), TO);
        assert_eq!(s.maintenance(), prior_maintenance(s));
        for locale in L10N_LOCALES {
            let mo = code_dir(s).join(format!("l10n/{locale}/LC_MESSAGES/civicrm.mo"));
            assert_eq!(
                std::fs::read_to_string(&mo).unwrap_or_default(),
                l10n_mo_text(locale, TO),
                "{}",
                mo.display()
            );
            assert!(
                code_dir(s)
                    .join(format!("sql/civicrm_data.{locale}.mysql"))
                    .is_file()
            );
        }
        // Uploaded once, next to the release tarball.
        let up = s.backup_dir.join(format!("fleet-{run}"));
        assert!(up.join(format!("civicrm-{TO}-drupal.tar.gz")).is_file());
        assert!(up.join(format!("civicrm-{TO}-l10n.tar.gz")).is_file());
    }
    // h01 shares one CiviCRM DB between its sites: one real upgrade for it.
    let real: Vec<Value> = u.calls("h01").into_iter().filter(is_real_upgrade).collect();
    assert_eq!(real.len(), 1, "{real:?}");
    for s in u.sites_of("h02") {
        assert_eq!(s.code_version(), FROM, "{}", both(&o));
        assert_eq!(s.db_version(), FROM);
        assert_eq!(s.maintenance(), prior_maintenance(s));
        assert!(
            !code_dir(s).join("l10n").exists(),
            "translations left behind"
        );
    }
    assert!(
        stdout(&o).contains("failed at `upgrade-db`") && stdout(&o).contains("rolled back"),
        "{}",
        both(&o)
    );
    // Nowhere on h02 (its Drupal root, the temp dirs next to the code) is a translation of
    // the new version left; only the uploaded tarball in the run's backup dir has one.
    let www = u.host_root("h02").join("www");
    let leftovers: Vec<PathBuf> = files(&www)
        .into_iter()
        .filter(|(p, bytes)| {
            p.to_string_lossy().contains(".fleet-")
                || L10N_LOCALES
                    .iter()
                    .any(|l| *bytes == l10n_mo_text(l, TO).into_bytes())
        })
        .map(|(p, _)| p)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A site whose code has translations (left by an earlier upgrade with `--l10n`) is refused
/// by a run that brings none, before anything touches it: `--plan` and the run say so in one
/// line naming the locales and the fix, its code, database, maintenance mode and catalogues
/// stay as they were, and the other host upgrades. `--plan --drop-translations` counts it
/// as one to upgrade. With `--l10n` it upgrades and has the new release's catalogues, the
/// old ones kept with the old code in the backup.
#[test]
fn a_site_with_translations_is_refused_without_l10n_and_keeps_them_with_it() {
    let u = Upgrade::new(2, 2);
    u.sites_of("h01")[0]
        .install_translations(FROM, L10N_LOCALES)
        .expect("install translations");
    let old: BTreeMap<String, String> = L10N_LOCALES
        .iter()
        .map(|l| ((*l).to_owned(), l10n_mo_text(l, FROM)))
        .collect();
    let reason = format!(
        "site has translations (de_DE, fr_FR) and no --l10n was given: they would be lost with the old code; pass --l10n civicrm-{TO}-l10n.tar.gz, or --drop-translations to upgrade without them"
    );
    let before = files(&u.host_root("h01"));

    let o = u.fleet(&["--plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = stdout(&o);
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("refuse: {reason}")))
        .collect();
    assert_eq!(refused.len(), 2, "{text}");
    assert!(refused.iter().all(|l| l.contains(" h01 ")), "{text}");
    assert!(text.contains("2 site(s) to upgrade"), "{text}");
    let o = u.fleet(&["--plan", "--drop-translations"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stdout(&o).contains("4 site(s) to upgrade")
            && stdout(&o)
                .contains("dropping site translations it does not bring (--drop-translations)"),
        "{}",
        both(&o)
    );

    let o = u.fleet(&["--batches", "2", "--max-fail", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let out = stdout(&o);
    for s in u.sites_of("h01") {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("h01   {} ", s.name)))
            .unwrap_or_default();
        assert!(
            line.contains(&format!(
                "failed at `preflight`: {reason} (nothing was changed)"
            )),
            "{out}"
        );
        assert_eq!(s.code_version(), FROM);
        assert_eq!(s.db_version(), FROM);
        assert_eq!(s.maintenance(), prior_maintenance(s));
        assert_eq!(s.translations(), old, "{}", s.name);
    }
    let calls = u.calls("h01");
    assert!(!calls.iter().any(is_maintenance_on));
    assert!(!calls.iter().any(is_real_upgrade));
    let diff: Vec<PathBuf> = changed(&before, &files(&u.host_root("h01")))
        .into_iter()
        .filter(|p| !p.ends_with(".fleet-locks"))
        .collect();
    assert!(diff.is_empty(), "the refused sites' host changed: {diff:?}");
    for s in u.sites_of("h02") {
        assert_eq!(s.code_version(), TO, "{}", both(&o));
        assert_eq!(s.db_version(), TO);
        assert_eq!(s.maintenance(), prior_maintenance(s));
        assert!(s.translations().is_empty());
    }

    let l10n = u.lab.l10n_tarball(TO).display().to_string();
    let o = u.fleet(&["--l10n", &l10n]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let run = run_id(&u);
    let new: BTreeMap<String, String> = L10N_LOCALES
        .iter()
        .map(|l| ((*l).to_owned(), l10n_mo_text(l, TO)))
        .collect();
    for s in u.sites_of("h01") {
        assert_eq!(s.code_version(), TO, "{}", both(&o));
        assert_eq!(s.db_version(), TO);
        assert_eq!(s.maintenance(), prior_maintenance(s));
        assert_eq!(s.translations(), new, "{}", s.name);
    }
    let backup = u.sites_of("h01")[0]
        .backup_dir
        .join(format!("fleet-{run}/code/civicrm/l10n"));
    for (locale, text) in &old {
        let mo = backup.join(format!("{locale}/LC_MESSAGES/civicrm.mo"));
        assert_eq!(
            std::fs::read_to_string(&mo).unwrap_or_default(),
            *text,
            "{}",
            mo.display()
        );
    }
}

/// A localization tarball of another version, or one that is not a localization tarball,
/// is refused with one line naming the file and both versions, and nothing on the host is
/// changed: no upload, no maintenance, no cv, the code and databases as they were.
#[test]
fn a_wrong_l10n_tarball_is_refused_before_anything_is_touched() {
    let u = Upgrade::new(1, 2);
    let old = u.lab.write_l10n(FROM).expect("l10n of the old version");
    let release = u.lab.release_tarball(TO);
    let before = files(&u.host_root("h01"));
    for (l10n, says) in [
        (
            &old,
            format!(
                "localization tarball `{}` is for CiviCRM {FROM}, but the release tarball is {TO}",
                old.display()
            ),
        ),
        (
            &release,
            format!(
                "localization tarball `{}`: entry `civicrm/",
                release.display()
            ),
        ),
    ] {
        let l = l10n.display().to_string();
        let o = u.fleet(&["--l10n", &l]);
        assert_ne!(o.status.code(), Some(0), "{}", both(&o));
        assert!(both(&o).contains(&says), "{says}\n{}", both(&o));
        let o = u.fleet(&["--l10n", &l, "--plan"]);
        assert_eq!(o.status.code(), Some(2), "{}", both(&o));
        assert!(stderr(&o).contains(&says), "{}", both(&o));
        assert_eq!(
            stderr(&o)
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1
        );
    }
    let after = files(&u.host_root("h01"));
    // The per-site locks were taken and given back: their (now empty) parent may stay.
    let diff: Vec<PathBuf> = changed(&before, &after)
        .into_iter()
        .filter(|p| !p.ends_with(".fleet-locks"))
        .collect();
    assert!(
        diff.is_empty(),
        "the refused runs changed files on the host: {diff:?}"
    );
    for s in u.sites_of("h01") {
        assert_eq!(s.code_version(), FROM);
        assert_eq!(s.db_version(), FROM);
        assert_eq!(s.maintenance(), prior_maintenance(s));
    }
    let calls = u.calls("h01");
    assert!(!calls.iter().any(is_maintenance_on));
    assert!(
        !calls.iter().any(|c| c["tool"] == "cv"),
        "cv ran although the run was refused"
    );
}

/// `--plan` shows what the dry run of each database's upgrade lists against the code on
/// disk: nothing for a site ready to upgrade (code = database), the pending tasks for one
/// whose code is ahead of its database, and a failing dry run as such. It changes nothing.
#[test]
fn plan_shows_the_dry_runs_pending_tasks() {
    let u = Upgrade::new(2, 1);
    // h02's code was swapped by hand and its database never upgraded.
    let h02 = u.sites_of("h02")[0];
    let xml = code_dir(h02).join("xml/version.xml");
    let text = std::fs::read_to_string(&xml).expect("version.xml");
    std::fs::write(&xml, text.replace(FROM, TO)).expect("write version.xml");
    let snapshot = || {
        u.lab
            .hosts()
            .iter()
            .flat_map(|h| files(&h.root))
            .collect::<BTreeMap<_, _>>()
    };
    let before = snapshot();
    let o = u.fleet(&["--plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = stdout(&o);
    assert!(
        text.contains(&format!(
            "h01 civicrm_h01 (site1): ok, nothing pending (code {FROM}, database {FROM})"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "h02 civicrm_h02_1 (site1): 11 task(s) pending from database {FROM} to code {TO}:"
        )),
        "{text}"
    );
    for task in [
        "Cleanup old files".to_owned(),
        format!("Begin Upgrade to {TO}"),
        format!("Upgrade DB to {TO}"),
        "Generate final messages".to_owned(),
    ] {
        assert!(text.contains(&format!("      {task}\n")), "{task}: {text}");
    }
    assert!(text.contains("1 site(s) to upgrade"), "{text}");
    // They ran, once per database, and changed nothing.
    for h in ["h01", "h02"] {
        assert_eq!(
            u.calls(h).iter().filter(|c| is_dry_run(c)).count(),
            1,
            "{h}"
        );
    }
    assert_eq!(h02.db_version(), FROM);
    let diff = changed(&before, &snapshot());
    assert!(
        diff.is_empty(),
        "--plan changed files on the hosts: {diff:?}"
    );

    // A dry run that fails: shown, and the site is not counted as one to upgrade.
    u.inject("h01", "dryrun.fail", None);
    let o = u.fleet(&["--plan"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = stdout(&o);
    assert!(
        text.contains(
            "h01 civicrm_h01 (site1): FAILED: cv upgrade:db --dry-run exited 1: DB Error: no such table: civicrm_queue_item"
        ),
        "{text}"
    );
    assert!(
        text.contains("refuse: the dry run of its database upgrade fails")
            && text.contains("0 site(s) to upgrade"),
        "{text}"
    );
}

/// A dry run that fails before maintenance stops its sites (all those sharing the
/// codebase and database) there: nothing uploaded, maintenance never set, code and
/// databases untouched, no real upgrade; another host goes on, and its dry runs come before maintenance and again
/// after the unpack, before its one real upgrade per database.
#[test]
fn a_failing_dry_run_stops_the_sites_before_maintenance() {
    let u = Upgrade::new(2, 2);
    u.inject("h01", "dryrun.fail", None);
    let o = u.fleet(&["--batches", "2", "--max-fail", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let out = stdout(&o);
    for s in u.sites_of("h01") {
        assert_eq!(s.maintenance(), prior_maintenance(s), "{}", s.name);
        assert_eq!(s.code_version(), FROM);
        assert_eq!(s.db_version(), FROM);
        assert!(
            !s.backup_dir
                .join(format!("fleet-{}/code", run_id(&u)))
                .exists(),
            "the code was moved"
        );
        // The dry run comes before the upload: a stopped host costs no transfer.
        let tarball = s
            .backup_dir
            .join(format!("fleet-{}/civicrm-{TO}-drupal.tar.gz", run_id(&u)));
        assert!(!tarball.exists(), "{} was uploaded", tarball.display());
    }
    let line = |site: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("h01   {site} ")))
            .unwrap_or_default()
            .to_owned()
    };
    for site in ["site1", "site2"] {
        assert!(
            line(site).contains("failed at `preflight-dry-run`: cv upgrade:db --dry-run exited 1")
                && line(site).contains("(nothing was changed)"),
            "{out}"
        );
    }
    let calls = u.calls("h01");
    assert!(!calls.iter().any(is_maintenance_on));
    assert!(!calls.iter().any(is_real_upgrade));
    assert!(
        calls
            .iter()
            .any(|c| is_dry_run(c) && c["injected"] == "dryrun.fail")
    );

    // h02 (one database per site): each dry-run twice, before maintenance and between the
    // dump and the real upgrade, which runs once.
    for s in u.sites_of("h02") {
        assert_eq!(s.code_version(), TO);
        assert_eq!(s.db_version(), TO);
    }
    let calls = u.calls("h02");
    let first_maintenance = calls
        .iter()
        .filter(|c| is_maintenance_on(c))
        .map(ts)
        .fold(f64::MAX, f64::min);
    for s in u.sites_of("h02") {
        let mine = |f: fn(&Value) -> bool| -> Vec<f64> {
            calls
                .iter()
                .filter(|c| f(c) && db_of(&u, c) == s.civi_db)
                .map(ts)
                .collect()
        };
        let dry = mine(is_dry_run);
        let real = mine(is_real_upgrade);
        let dump = mine(|c| argv(c).iter().any(|a| a == "civicrm-sql-dump"));
        assert_eq!(
            (dry.len(), real.len(), dump.len()),
            (2, 1, 1),
            "{}",
            s.civi_db
        );
        assert!(
            dry[0] < first_maintenance,
            "preflight dry run after maintenance"
        );
        assert!(
            dump[0] < dry[1] && dry[1] < real[0],
            "the second dry run is not between the dump and the upgrade"
        );
    }
}

/// A pre-upgrade blocker that only the new code knows: the dry run before maintenance
/// (old code, nothing due) passes, the one after the unpack fails, and the site goes back
/// to its old code with its database never touched (no upgrade, no restore).
#[test]
fn the_dry_run_after_the_unpack_catches_a_blocker_before_the_database_is_touched() {
    let u = Upgrade::new(1, 1);
    u.inject("h01", "upgrade.blocker", None);
    let l10n = u.lab.l10n_tarball(TO).display().to_string();
    let o = u.fleet(&["--l10n", &l10n]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o).contains("failed at `upgrade-db-dry-run`")
            && stdout(&o).contains("requires MySQL trigger privileges")
            && stdout(&o).contains("rolled back"),
        "{}",
        both(&o)
    );
    let s = u.sites_of("h01")[0];
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.maintenance(), prior_maintenance(s));
    assert!(!code_dir(s).join("l10n").exists());
    let calls = u.calls("h01");
    assert_eq!(calls.iter().filter(|c| is_dry_run(c)).count(), 2);
    assert!(!calls.iter().any(is_real_upgrade));
    assert!(
        !calls
            .iter()
            .any(|c| argv(c).iter().any(|a| a == "civicrm-sql-cli")),
        "a database was restored although none was touched"
    );
}

/// `--show-steps` lists both dry runs and the localization files.
#[test]
fn show_steps_lists_the_dry_runs_and_the_l10n_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(fleet(&dir.path().join("x.toml")).args(["upgrade", "--show-steps"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = stdout(&o);
    for want in [
        "preflight-dry-run",
        "upgrade-db-dry-run",
        "--l10n",
        "cv upgrade:db --dry-run",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // `--l10n` goes with a release tarball.
    let o = run(fleet(&dir.path().join("x.toml")).args(["upgrade", "--l10n", "x.tar.gz"]));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(stderr(&o).contains("--tarball"), "{}", both(&o));
}
