use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fleet_lab::Lab;

use crate::alive;

fn fleet_lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleet-lab"))
        .args(args)
        .output()
        .expect("run fleet-lab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stops whatever the CLI started in `dir`, even when an assertion failed.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(mut lab) = Lab::open(&self.0) {
            let _ = lab.down();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn up_status_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let _cleanup = Cleanup(dir.clone());

    let o = fleet_lab(&["up", "--hosts", "2", "--dir", path(&dir), "--port", "2223"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let canonical = dir.canonicalize().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("lab up: 2 hosts h01..h02 on 127."),
        "{out}"
    );
    assert!(
        lines[0].ends_with(&format!(" port 2223, dir {}", canonical.display())),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!(
            "try: fleet -i {}/inventory.toml exec -- 'echo $FLEET_HOST'",
            canonical.display()
        )
    );

    // The daemons outlive the command that started them.
    let lab = Lab::open(&dir).unwrap();
    let pids: Vec<u32> = lab.hosts().iter().map(|h| h.pid.unwrap()).collect();
    assert!(pids.iter().all(|p| alive(*p)));

    let o = fleet_lab(&["status", "--dir", path(&dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let status = text(&o.stdout);
    for (h, pid) in lab.hosts().iter().zip(&pids) {
        assert!(
            status.contains(&format!(
                "{}  {}:2223  running  pid {pid}\n",
                h.name, h.address
            )),
            "{status}"
        );
    }

    let o = fleet_lab(&["down", "--dir", path(&dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        format!("lab down: stopped 2 sshd in {}\n", canonical.display())
    );
    assert!(pids.iter().all(|p| !alive(*p)));

    let o = fleet_lab(&["status", "--dir", path(&dir)]);
    assert_eq!(
        text(&o.stdout).matches("  stopped\n").count(),
        2,
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn failures_exit_1_with_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = fleet_lab(&["down", "--dir", path(&tmp.path().join("missing"))]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.starts_with("error: cannot open `"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let o = fleet_lab(&["status", "--dir", path(tmp.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("not a lab directory"),
        "{}",
        text(&o.stderr)
    );

    let o = fleet_lab(&[
        "up",
        "--hosts",
        "1",
        "--dir",
        path(&tmp.path().join("lab")),
        "--first-address",
        "10.0.0.1",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        text(&o.stderr),
        "error: address `10.0.0.1` is outside 127.0.0.0/8\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["up", "--dir", "/tmp/x"][..],
        &["up", "--hosts", "0", "--dir", "/tmp/x"],
        &[
            "up",
            "--hosts",
            "2",
            "--dir",
            "/tmp/x",
            "--first-address",
            "not-an-ip",
        ],
        &["frobnicate"],
        &["up", "--hosts", "2", "--dir", "/tmp/x", "--jitter", "5ms"],
        &[
            "up", "--hosts", "2", "--dir", "/tmp/x", "--rtt", "5ms", "--loss", "0.1",
        ],
        &["up", "--hosts", "2", "--dir", "/tmp/x", "--rtt", "fast"],
        &["proxy"],
    ] {
        let o = fleet_lab(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
    }
}

#[test]
fn up_with_rtt_status_proxy_restart_down() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let _cleanup = Cleanup(dir.clone());
    let o = fleet_lab(&[
        "up",
        "--hosts",
        "2",
        "--dir",
        path(&dir),
        "--port",
        "2224",
        "--rtt",
        "50ms",
        "--jitter",
        "5ms",
        "--loss",
        "0.1%",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("lab up: 2 hosts h01..h02 on 127."),
        "{out}"
    );
    let prefix =
        "proxy: rtt 50ms, jitter 5ms, loss 0.1% in front of every host (sshd on port 2225), pid ";
    assert!(lines[1].starts_with(prefix), "{out}");
    let pid: u32 = lines[1][prefix.len()..].parse().unwrap();
    assert!(lines[2].starts_with("try: fleet -i "), "{out}");

    // The proxy outlives the command that started it.
    let lab = Lab::open(&dir).unwrap();
    assert_eq!(lab.proxy_pid(), Some(pid));
    assert!(alive(pid));
    let o = fleet_lab(&["status", "--dir", path(&dir)]);
    let status = text(&o.stdout);
    for h in lab.hosts() {
        let line = format!(
            "{}  {}:2224  running  pid {}  (sshd on port 2225)\n",
            h.name,
            h.address,
            h.pid.unwrap()
        );
        assert!(status.contains(&line), "{status}");
    }
    assert!(
        status.contains(&format!(
            "proxy  rtt 50ms, jitter 5ms, loss 0.1%  running  pid {pid}  cpu "
        )),
        "{status}"
    );

    // A proxy that died is started again by `fleet-lab proxy`; a running one is left alone.
    Lab::open(&dir).unwrap().stop_proxy().unwrap();
    assert!(!alive(pid));
    let o = fleet_lab(&["status", "--dir", path(&dir)]);
    assert!(
        text(&o.stdout).ends_with("proxy  rtt 50ms, jitter 5ms, loss 0.1%  stopped\n"),
        "{}",
        text(&o.stdout)
    );
    let o = fleet_lab(&["proxy", "--dir", path(&dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let again: u32 = out
        .strip_prefix("proxy started: pid ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(alive(again));
    let o = fleet_lab(&["proxy", "--dir", path(&dir)]);
    assert_eq!(
        text(&o.stdout),
        format!("proxy already running: pid {again}\n")
    );
    let h = &Lab::open(&dir).unwrap().hosts()[0].clone();
    assert_eq!(
        crate::stdout_ok(&crate::ssh(
            &Lab::open(&dir).unwrap(),
            h,
            "echo $FLEET_HOST"
        )),
        "h01\n"
    );

    let o = fleet_lab(&["down", "--dir", path(&dir)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        format!(
            "lab down: stopped 2 sshd and the proxy in {}\n",
            dir.canonicalize().unwrap().display()
        )
    );
    assert!(!alive(again));
}
