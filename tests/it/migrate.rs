use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_lab::{DRUPAL_RELEASE, WEB_PORT};

use crate::upgrade::Upgrade;
use crate::{both, fleet, redact, run, stderr, stdout};

/// Every file, directory and link under `dir` (links as their targets, never followed),
/// the fakes' call logs aside.
fn tree(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.file_name()
            .is_some_and(|n| n == "calls.log" || n == "calls.lock")
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        if meta.is_symlink() {
            let to = std::fs::read_link(&p).expect("readlink");
            out.insert(p, format!("-> {}", to.display()));
        } else if meta.is_dir() {
            out.insert(p.clone(), "dir".into());
            tree(&p, out);
        } else {
            let bytes = std::fs::read(&p).expect("read");
            out.insert(p, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

fn hosts_tree(u: &Upgrade) -> BTreeMap<PathBuf, String> {
    let mut t = BTreeMap::new();
    for h in u.lab.hosts() {
        tree(&h.root, &mut t);
    }
    t
}

fn plan(u: &Upgrade, manifest: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["migrate", "plan", "--manifest"])
        .arg(manifest)
        .args(extra);
    run(&mut c)
}

#[test]
fn plan_names_each_sites_release_and_database_refuses_what_cannot_move_and_changes_nothing() {
    let u = Upgrade::new(2, 2);
    let release = u
        .lab
        .write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .expect("drupal release");
    // h02/site2: its docroot is a directory, not a link a release could replace.
    let h2s2 = u
        .sites
        .iter()
        .find(|s| s.host == "h02" && s.name == "site2")
        .unwrap();
    std::fs::remove_file(&h2s2.current).unwrap();
    std::fs::create_dir(&h2s2.current).unwrap();
    // h01/site2: `current` points somewhere else than the site's Drupal root.
    let h1s2 = u
        .sites
        .iter()
        .find(|s| s.host == "h01" && s.name == "site2")
        .unwrap();
    let elsewhere = h1s2.current.parent().unwrap().join("releases/old");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::remove_file(&h1s2.current).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &h1s2.current).unwrap();

    let before = hosts_tree(&u);
    let o = plan(&u, &release.manifest, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = redact(&stdout(&o), u.lab.dir());
    insta::assert_snapshot!(text);
    assert_eq!(
        hosts_tree(&u),
        before,
        "the plan changed files on the hosts"
    );
    // Only read-only commands ran: drush status, nothing else.
    for h in ["h01", "h02"] {
        for call in u.calls(h) {
            let argv = crate::upgrade::argv(&call);
            assert!(argv.iter().any(|a| a == "status"), "{h}: {argv:?}");
        }
    }

    let o = plan(&u, &release.manifest, &["--json", "-l", "h01"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&o));
    assert_eq!(rows[0]["action"], "build");
    assert_eq!(rows[0]["old_db"], "drupal_h01_1");
    assert_eq!(rows[0]["new_db"], "drupal_h01_1_d10");
    assert_eq!(rows[1]["action"], "refuse");
}

#[test]
fn a_manifest_whose_tarball_changed_is_refused_before_any_host_is_read() {
    let u = Upgrade::new(1, 1);
    let release = u
        .lab
        .write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .unwrap();
    std::fs::write(&release.contrib[0], b"not the tarball the manifest hashed").unwrap();
    let o = plan(&u, &release.manifest, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let e = stderr(&o);
    assert!(e.contains("migrate.toml:"), "{e}");
    assert!(e.contains("a different or damaged file"), "{e}");
    assert!(u.calls("h01").is_empty(), "a host was contacted");
}

#[test]
fn upgrade_refuses_a_drupal_core_tarball_and_names_migrate() {
    let u = Upgrade::new(1, 1);
    let release = u
        .lab
        .write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .unwrap();
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .arg("upgrade")
        .arg("--tarball")
        .arg(&release.core);
    let o = run(&mut c);
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("it is a Drupal {DRUPAL_RELEASE} core release")),
        "{e}"
    );
    assert!(e.contains("fleet migrate --manifest FILE"), "{e}");
    let s = &u.sites[0];
    assert_eq!(s.code_version(), crate::upgrade::FROM);
    assert_eq!(s.maintenance(), "0");
    assert!(u.calls("h01").is_empty(), "a host was contacted");
}
