//! `fleet resume` goes on with what the run started with, and a Ctrl-C during it ends in a
//! state the journal describes, with nothing of the run left running on the hosts.

use std::process::Stdio;
use std::time::Duration;

use crate::interrupt::signal;
use crate::upgrade::{
    FROM, TO, Upgrade, fleet_cmd, prior_maintenance, run_id, spawn_upgrade, wait_until,
};
use crate::{both, fleet, stdout};

/// The processes on this machine (the lab's hosts are on it) that carry a step of `run`.
pub(crate) fn steps_running(run: &str) -> Vec<String> {
    let tag = format!("FLEET_RUN_STEP={run}/");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if env
            .split(|b| *b == 0)
            .any(|v| v.starts_with(tag.as_bytes()))
        {
            found.push(pid);
        }
    }
    found
}

/// Kills the controller of an upgrade of two hosts (`--batches 1,100%`) while its canary h01
/// is in maintenance, and waits for the step it left running there.
fn killed_during_the_canary(u: &Upgrade, extra: &[&str]) -> String {
    u.inject("h01", "slow", Some("1"));
    let mut args = vec!["--batches", "1,100%"];
    args.extend_from_slice(extra);
    let mut child = spawn_upgrade(u, &args);
    let s = u.sites_of("h01")[0].clone();
    wait_until("h01 in maintenance", Duration::from_secs(60), || {
        s.maintenance() == "1"
    });
    child.kill().expect("SIGKILL fleet");
    let _ = child.wait();
    std::fs::remove_file(u.host_root("h01").join("fake-civi/fail/slow")).expect("clear");
    let run = run_id(u);
    wait_until(
        "the dead run's step to end",
        Duration::from_secs(30),
        || steps_running(&run).is_empty(),
    );
    run
}

/// The run started with `--on-failure hold`: a site that fails during `fleet resume` is held
/// in maintenance, as that run asked, not rolled back by a default.
#[test]
fn resume_replays_the_runs_failure_policy() {
    let u = Upgrade::new(2, 1);
    let run = killed_during_the_canary(&u, &["--on-failure", "hold", "--forks", "3"]);
    u.inject("h02", "upgrade.midway", None);
    let o = fleet_cmd(&u, &["resume", &run]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let h01 = u.sites_of("h01")[0];
    assert_eq!(h01.code_version(), TO, "{}", both(&o));
    assert_eq!(h01.maintenance(), prior_maintenance(h01), "{}", both(&o));
    let h02 = u.sites_of("h02")[0];
    assert_eq!(
        h02.maintenance(),
        "1",
        "held, as the run asked: {}",
        both(&o)
    );
    assert!(stdout(&o).contains("held"), "{}", both(&o));
    // What the run recorded is in its journal, for people too.
    let show = fleet_cmd(&u, &["runs", "show", &run]);
    assert!(
        stdout(&show).contains("on_failure = \"hold\""),
        "{}",
        both(&show)
    );
    assert!(stdout(&show).contains("forks = 3"), "{}", both(&show));
}

/// Ctrl-C while `fleet resume` has a site in maintenance before its database upgrade: the
/// site is brought back to its old code and database, maintenance as before, nothing of the
/// run is left running on the host, fleet exits 130 and the run is recorded interrupted.
#[test]
fn ctrl_c_during_resume_brings_the_site_back_and_leaves_nothing_running() {
    let u = Upgrade::new(2, 1);
    let run = killed_during_the_canary(&u, &[]);
    u.inject("h02", "slow", Some("1"));
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["resume", &run])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("spawn fleet resume");
    let h02 = u.sites_of("h02")[0].clone();
    wait_until("h02 in maintenance", Duration::from_secs(60), || {
        h02.maintenance() == "1"
    });
    signal(&child, "INT");
    let o = child.wait_with_output().expect("fleet resume");
    assert_eq!(o.status.code(), Some(130), "{}", both(&o));
    assert_eq!(h02.maintenance(), prior_maintenance(&h02), "{}", both(&o));
    assert_eq!(h02.code_version(), FROM, "{}", both(&o));
    assert_eq!(h02.db_version(), FROM, "{}", both(&o));
    assert!(
        steps_running(&run).is_empty(),
        "steps of {run} still running"
    );
    let runs = fleet_cmd(&u, &["runs"]);
    assert!(stdout(&runs).contains("interrupted"), "{}", both(&runs));
    // And the run can still be finished.
    std::fs::remove_file(u.host_root("h02").join("fake-civi/fail/slow")).expect("clear");
    let o = fleet_cmd(&u, &["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(h02.code_version(), TO, "{}", both(&o));
}
