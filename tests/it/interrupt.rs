use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fleet_lab::TestLab;
use serde_json::Value;

use crate::{fleet, stdout};

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
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
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
