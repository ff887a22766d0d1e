//! Values that a shell would read as syntax, wherever the operator or a host can put them:
//! a Drupal root, a backup dir and a site URI in the inventory holding `$(...)`, backquotes
//! and `;`. They reach the hosts as data: the upgrade works on the directories so named and
//! nothing they spell runs; what cannot be passed safely is refused before any host is
//! contacted.

use std::path::{Path, PathBuf};

use super::Figures;
use crate::upgrade::{FROM, TO, Upgrade, fleet_cmd, prior_maintenance};
use crate::{both, stderr};

/// Every file named `PWNED*` under `dir`.
fn planted(dir: &Path, found: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with("PWNED") {
            found.push(p.clone());
        }
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            planted(&p, found);
        }
    }
}

/// Replaces `from` by `to` in every text file under `dir` (the sites' settings name their
/// paths).
fn rewrite(dir: &Path, from: &str, to: &str) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            rewrite(&p, from, to);
        } else if meta.is_file()
            && let Ok(text) = std::fs::read_to_string(&p)
            && text.contains(from)
        {
            std::fs::write(&p, text.replace(from, to)).expect("rewrite");
        }
    }
}

#[test]
fn shell_syntax_in_paths_reaches_the_hosts_as_data() {
    let u = Upgrade::new(1, 1);
    let s = u.sites_of("h01")[0].clone();
    let host = u.host_root("h01");
    // The Drupal root and the backup dir renamed to names full of shell syntax.
    let evil = "d7 $(touch PWNED1) `touch PWNED2`; touch PWNED3";
    let (old_root, new_root) = (s.root.clone(), host.join("www").join(evil));
    std::fs::rename(&old_root, &new_root).expect("rename root");
    let (old_b, new_b) = (
        s.backup_dir.clone(),
        host.join("backups").join("b $(touch PWNED4)"),
    );
    std::fs::rename(&old_b, &new_b).expect("rename backups");
    let (o, n) = (
        old_root.display().to_string(),
        new_root.display().to_string(),
    );
    rewrite(&host.join("www"), &o, &n);
    std::fs::remove_file(&s.current).expect("current");
    std::os::unix::fs::symlink(&new_root, &s.current).expect("current");
    let inv = u.lab.inventory_path();
    let text = std::fs::read_to_string(&inv).expect("inventory");
    let text = text
        .replace(&o, &n)
        .replace(&old_b.display().to_string(), &new_b.display().to_string());
    std::fs::write(&inv, &text).expect("inventory");

    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let civicrm = new_root.join("sites/all/modules/civicrm/xml/version.xml");
    let version = std::fs::read_to_string(&civicrm).expect("version.xml");
    assert!(
        version.contains(TO),
        "the code under the evil root is at {TO}: {version}"
    );
    assert_eq!(s.db_version(), TO);
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    assert!(
        std::fs::read_dir(&new_b)
            .expect("backups")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("fleet-")),
        "the run's backups are in the dir so named"
    );
    // And the way back works on them too.
    let run = crate::upgrade::run_id(&u);
    let r = fleet_cmd(&u, &["rollback", &run, "--yes"]);
    assert_eq!(r.status.code(), Some(0), "{}", both(&r));
    assert_eq!(s.db_version(), FROM, "{}", both(&r));

    // A URI with shell syntax is refused with the inventory's own error, before any host.
    let calls = u.calls("h01").len();
    std::fs::write(
        &inv,
        text.replace(
            "uri = \"https://site1.h01.test\"",
            "uri = \"https://site1.h01.test/$(touch PWNED5)\"",
        ),
    )
    .expect("inventory");
    let bad = u.fleet(&[]);
    assert_eq!(bad.status.code(), Some(2), "{}", both(&bad));
    assert!(stderr(&bad).contains("inventory.toml:"), "{}", both(&bad));
    assert_eq!(u.calls("h01").len(), calls, "a host was contacted");

    let mut found = Vec::new();
    for d in [
        u.lab.dir(),
        u.state.path(),
        Path::new("/root"),
        Path::new("/tmp"),
    ] {
        if d == Path::new("/tmp") {
            // Only its top level: other tests' labs live below.
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with("PWNED") {
                    found.push(e.path());
                }
            }
        } else {
            planted(d, &mut found);
        }
    }
    assert!(found.is_empty(), "shell text ran: {found:?}");
    Figures {
        sites: 1,
        inputs: 5,
        ..Figures::default()
    }
    .save("bad input: shell syntax in paths and URIs");
}
