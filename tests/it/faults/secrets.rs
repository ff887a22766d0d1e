//! Secrets stay in fleet's memory: a login password and a sudo password given to a run are
//! nowhere else afterwards (no file fleet wrote: journal, per-host logs, its HOME; not its
//! output, even at `-vvv`; not any process's arguments on the hosts while it ran), fleet can
//! dump no core (which would write them to disk); and backups go only where no other user can
//! plant or swap a file.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fleet_lab::TestLab;
use fleet_lab::users::OPERATOR;

use super::Figures;
use crate::access::{inventory, operator_password, secret_file, watch_ps, without_keys};
use crate::upgrade::{FROM, Upgrade, prior_maintenance};
use crate::{both, fleet, stderr, stdout};

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8], found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            files_holding(&p, needle, found);
        } else if meta.is_file()
            && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        {
            found.push(p.display().to_string());
        }
    }
}

#[test]
fn passwords_given_to_a_run_are_nowhere_after_it() {
    let password = operator_password();
    let lab = TestLab::start(2);
    let dir = lab.temp_dir();
    // The secret files themselves live apart from everything fleet writes.
    let secrets = tempfile::tempdir().expect("secrets dir");
    secret_file(secrets.path(), "op.pass", &password);
    let inv = inventory(
        &lab.inventory_path(),
        "secrets.toml",
        &format!(
            "user = \"{OPERATOR}\"\npassword_file = \"{p}\"\nbecome = true\nbecome_password_file = \"{p}\"",
            p = secrets.path().join("op.pass").display()
        ),
        &[],
    );
    without_keys(&inv);
    let state = dir.join("state");
    let logs = dir.join("logs");
    let stop = Arc::new(AtomicBool::new(false));
    let ps = watch_ps(stop.clone());
    let mut c = fleet(&inv);
    c.arg("--state-dir")
        .arg(&state)
        .args(["-vvv", "exec", "--json", "--out-dir"])
        .arg(&logs)
        .args(["--", "id -un; sleep 1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("spawn fleet");
    // While it runs (once it is past its first lines: the limit it inherits is the test's):
    // the kernel will write no core of it, and it cannot raise the limit again.
    let limits = format!("/proc/{}/limits", child.id());
    let mut core_line = String::new();
    for _ in 0..100 {
        if let Some(l) = std::fs::read_to_string(&limits).ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max core file size"))
                .map(str::to_owned)
        }) {
            core_line = l;
            if core_line.split_whitespace().nth(5) == Some("0") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = child.wait_with_output().expect("fleet");
    stop.store(true, Ordering::SeqCst);
    let ps = ps.join().expect("ps watcher");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for l in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json");
        assert_eq!(
            v["stdout"], "root\n",
            "logged in by password, became root by sudo: {v}"
        );
    }
    let fields: Vec<&str> = core_line.split_whitespace().collect();
    assert_eq!(
        fields.get(4..6),
        Some(&["0", "0"][..]),
        "fleet may dump core: {core_line:?}"
    );
    let needle = password.as_bytes();
    let mut found = Vec::new();
    for d in [&state, &logs, &dir.join("controller-home")] {
        files_holding(d, needle, &mut found);
    }
    assert!(found.is_empty(), "the password is in {found:?}");
    assert!(
        std::fs::read_dir(&logs).is_ok_and(|mut d| d.next().is_some()),
        "no logs written"
    );
    for (place, text) in [
        ("the hosts' process arguments", ps.join("\n")),
        ("stdout", stdout(&o)),
        ("-vvv stderr", stderr(&o)),
    ] {
        assert!(!text.contains(&password), "the password in {place}");
    }
    assert!(ps.iter().any(|l| l.contains("sudo -S")), "ps saw sudo run");
    Figures {
        sites: 2,
        inputs: 2,
        ..Figures::default()
    }
    .save("secrets: passwords, core dumps");
}

/// A backup dir (or the directory it would be made in) that other users may write to is
/// refused before the site is touched: they could plant the run's directory first, or swap a
/// dump before it is restored.
#[test]
fn a_backup_dir_others_may_write_is_refused() {
    let u = Upgrade::new(2, 1);
    let open = &u.sites_of("h02")[0].backup_dir;
    std::fs::set_permissions(open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let o = u.fleet(&["--batches", "100%", "--max-fail", "100%"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let text = both(&o);
    assert!(
        text.contains(&format!("backups would go under `{}`", open.display()))
            && text.contains("which others may write to (mode 1777)"),
        "{text}"
    );
    let (h01, h02) = (u.sites_of("h01")[0], u.sites_of("h02")[0]);
    assert_eq!(h01.db_version(), crate::upgrade::TO);
    assert_eq!(
        (h02.code_version(), h02.db_version()),
        (FROM.into(), FROM.into())
    );
    assert_eq!(h02.maintenance(), prior_maintenance(h02));
    assert!(
        u.calls("h02")
            .iter()
            .all(|c| !crate::upgrade::is_upgrade_call(c)),
        "nothing was upgraded on h02"
    );
    Figures {
        sites: 2,
        inputs: 1,
        ..Figures::default()
    }
    .save("secrets: an open backup dir");
}
