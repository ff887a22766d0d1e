//! The journal fails mid-run: every step it cannot record is refused before its side effect,
//! the operator is told which sites are down and why, and `fleet recover` finishes the job
//! once the journal is writable again.

use std::process::Command;

use crate::upgrade::{TO, Upgrade, argv, is_upgrade_call, prior_maintenance};
use crate::{fleet, stdout};

/// Runs `script` with `sh` in a private mount namespace, with the environment and leading
/// arguments (`-i INVENTORY`) of a lab `fleet` command: `"$@"` in the script is that command.
fn in_own_mount_namespace(
    u: &Upgrade,
    script: &str,
    env: &[(&str, String)],
) -> std::process::Output {
    let base = fleet(&u.lab.inventory_path());
    let mut c = Command::new("unshare");
    c.arg("-m")
        .arg("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(base.get_program())
        .args(base.get_args());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .expect("unshare -m (needs CAP_SYS_ADMIN, as the lab's private filesystems do)")
}

/// The state dir's file system fills up while the database upgrade runs: the steps after it
/// are refused (none reaches the host), the summary names the site left in maintenance and
/// the journal failure, fleet exits 3, and `fleet recover` finishes the site afterwards.
#[test]
fn a_full_state_dir_stops_the_next_step_before_it_runs_and_recover_finishes() {
    let u = Upgrade::new(1, 1);
    let s = u.sites_of("h01")[0].clone();
    u.inject("h01", "upgrade.slow", Some("3"));
    let out = tempfile::tempdir().expect("out dir");
    let script = r#"
set -u
mount -t tmpfs -o size=8m,mode=0700 tmpfs "$STATE" || exit 90
"$@" --state-dir "$STATE" upgrade --tarball "$TARBALL" >"$OUT/upgrade.stdout" 2>"$OUT/upgrade.stderr" &
pid=$!
# The DB upgrade has begun (the fake marks the database), and is sleeping: fill the disk.
until grep -q '\.upgrade$' "$DB_VERSION" 2>/dev/null; do
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
dd if=/dev/zero of="$STATE/fill" bs=4096 2>/dev/null
wait $pid; echo $? >"$OUT/upgrade.rc"
cp "$CALLS" "$OUT/calls-after-upgrade.log"
cp "$MAINTENANCE" "$OUT/maintenance-after-upgrade" 2>/dev/null || echo unset >"$OUT/maintenance-after-upgrade"
rm -f "$STATE/fill"
"$@" --state-dir "$STATE" recover --yes >"$OUT/recover.stdout" 2>"$OUT/recover.stderr"; echo $? >"$OUT/recover.rc"
run=$("$@" --state-dir "$STATE" runs | awk 'NR == 2 {print $1}')
"$@" --state-dir "$STATE" runs show "$run" >"$OUT/show.stdout" 2>&1
"#;
    let o = in_own_mount_namespace(
        &u,
        script,
        &[
            ("STATE", u.state.path().display().to_string()),
            ("TARBALL", u.lab.release_tarball(TO).display().to_string()),
            ("OUT", out.path().display().to_string()),
            (
                "DB_VERSION",
                s.db_dir(&s.civi_db)
                    .join("civicrm_domain.version")
                    .display()
                    .to_string(),
            ),
            (
                "MAINTENANCE",
                s.db_dir(&s.cms_db)
                    .join("variable.maintenance_mode")
                    .display()
                    .to_string(),
            ),
            (
                "CALLS",
                u.host_root("h01")
                    .join("fake-civi/calls.log")
                    .display()
                    .to_string(),
            ),
        ],
    );
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap_or_default();
    let context = format!(
        "script: {}\nupgrade stdout:\n{}\nupgrade stderr:\n{}\nrecover:\n{}{}\nshow:\n{}",
        String::from_utf8_lossy(&o.stderr),
        read("upgrade.stdout"),
        read("upgrade.stderr"),
        read("recover.stdout"),
        read("recover.stderr"),
        read("show.stdout")
    );
    assert_ne!(
        read("upgrade.rc").trim(),
        "90",
        "tmpfs mount failed: {context}"
    );
    // The upgrade: fleet itself failed (3), and says which site is down and why.
    assert_eq!(read("upgrade.rc").trim(), "3", "{context}");
    let err = read("upgrade.stderr");
    assert!(err.contains("THE JOURNAL FAILED"), "{context}");
    assert!(
        err.contains("SITE(S) STILL IN MAINTENANCE: h01/site1"),
        "{context}"
    );
    assert!(
        read("upgrade.stdout").contains("the journal could not record"),
        "{context}"
    );
    // Nothing reached the host after the DB upgrade but its own read-only probe: every later
    // step (and the undo chain) was refused before it ran, and the site honestly stayed down.
    let calls: Vec<serde_json::Value> = read("calls-after-upgrade.log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("calls.log line"))
        .collect();
    let at = calls
        .iter()
        .position(is_upgrade_call)
        .unwrap_or_else(|| panic!("no DB upgrade call: {context}"));
    let after: Vec<Vec<String>> = calls[at + 1..]
        .iter()
        .map(argv)
        .filter(|a| !a.last().is_some_and(|q| q.starts_with("SELECT ")))
        .collect();
    assert!(
        after.is_empty(),
        "calls after the journal filled: {after:?}\n{context}"
    );
    assert_eq!(read("maintenance-after-upgrade").trim(), "1", "{context}");
    // Once the disk has room again, recover finishes the site forward (its DB is upgraded).
    assert_eq!(read("recover.rc").trim(), "0", "{context}");
    assert_eq!(s.code_version(), TO, "{context}");
    assert_eq!(s.db_version(), TO, "{context}");
    assert_eq!(s.maintenance(), prior_maintenance(&s), "{context}");
    assert!(
        read("show.stdout").contains("upgraded"),
        "{context}\n{}",
        stdout(&o)
    );
    // The DB upgrade ran once in all.
    assert_eq!(
        u.calls("h01").iter().filter(|c| is_upgrade_call(c)).count(),
        1,
        "{context}"
    );
}
