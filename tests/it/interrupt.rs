use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fleet_lab::TestLab;
use serde_json::Value;

use crate::{fleet, stderr, stdout};

fn wait_for(path: &Path, limit: Duration) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < limit,
            "`{}` never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigint(child: &Child) {
    signal(child, "INT");
}

pub(crate) fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits until `/proc/PID` is gone (the kill is TERM, then KILL, a moment apart).
fn assert_gone(pid: &str, what: &str) {
    let proc = format!("/proc/{}", pid.trim());
    let start = Instant::now();
    while Path::new(&proc).exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what} (pid {pid}) survived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn statuses(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["status"]
                .as_str()
                .expect("status")
                .to_owned()
        })
        .collect()
}

/// First Ctrl-C: the running host finishes, the others never start, exit 130.
#[test]
fn first_interrupt_drains() {
    let lab = TestLab::start(3);
    let child = fleet(&lab.inventory_path())
        .args([
            "exec",
            "--json",
            "-f",
            "1",
            "--",
            r#"touch "$FLEET_ROOT/started"; sleep 1; echo done"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_for(
        &lab.hosts()[0].root.join("started"),
        Duration::from_secs(20),
    );
    sigint(&child);
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(130));
    assert_eq!(statuses(&stdout(&o)), ["ok", "skipped", "skipped"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("press Ctrl-C again"));
    assert!(!lab.hosts()[1].root.join("started").exists());
}

/// Second Ctrl-C: the running command is killed on the host.
#[test]
fn second_interrupt_aborts_and_kills() {
    let lab = TestLab::start(2);
    let child = fleet(&lab.inventory_path())
        .args(["exec", "--json", "-f", "1", "--", r#"echo $$ > "$FLEET_ROOT/pid.tmp"; mv "$FLEET_ROOT/pid.tmp" "$FLEET_ROOT/pid"; sleep 300"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid_file = lab.hosts()[0].root.join("pid");
    wait_for(&pid_file, Duration::from_secs(20));
    sigint(&child);
    std::thread::sleep(Duration::from_millis(300));
    sigint(&child);
    let started = Instant::now();
    let o = child.wait_with_output().expect("wait");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(o.status.code(), Some(130));
    assert_eq!(statuses(&stdout(&o)), ["cancelled", "skipped"]);
    let pid = std::fs::read_to_string(&pid_file).expect("pid");
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "remote shell survived"
    );
}

/// A closed terminal or SSH session sends SIGHUP, which ended fleet at once (exit 129) and
/// left the remote commands running. Now it counts as Ctrl-C: the first drains, the second
/// kills the remote commands, and fleet exits 130 like any interrupt.
#[test]
fn sighup_twice_aborts_and_kills_on_every_host() {
    let lab = TestLab::start(2);
    let home = tempfile::tempdir().expect("tempdir");
    let mut child = crate::exec::pinned(fleet(&lab.inventory_path()), home.path())
        .args([
            "exec",
            "--json",
            "--",
            r#"sleep 300 & echo "$$ $!" > "$FLEET_ROOT/pids.tmp"; mv "$FLEET_ROOT/pids.tmp" "$FLEET_ROOT/pids"; wait"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid_files: Vec<_> = lab.hosts().iter().map(|h| h.root.join("pids")).collect();
    for f in &pid_files {
        wait_for(f, Duration::from_secs(20));
    }
    signal(&child, "HUP");
    // The first hangup drains: fleet keeps running, waiting for the commands.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the first SIGHUP ended fleet"
    );
    signal(&child, "HUP");
    let started = Instant::now();
    let o = child.wait_with_output().expect("wait");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert_eq!(statuses(&stdout(&o)), ["cancelled", "cancelled"]);
    assert!(
        stderr(&o).contains("interrupted: starting no new hosts"),
        "{}",
        stderr(&o)
    );
    for (f, h) in pid_files.iter().zip(lab.hosts()) {
        let pids = std::fs::read_to_string(f).expect("pids");
        let (shell, sleep) = pids.trim().split_once(' ').expect("two pids");
        assert_gone(shell, &format!("the remote shell on {}", h.name));
        assert_gone(sleep, &format!("the remote sleep on {}", h.name));
    }
}
