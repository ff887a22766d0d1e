//! Integration tests of fleet-lab: real sshd processes, started and stopped by pid.

use std::path::Path;
use std::process::Command;

use fleet_lab::{Lab, LabOptions, TestLab};

fn ssh(lab: &Lab, address: &str, cmd: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-F")
        .arg(lab.ssh_config())
        .arg(address)
        .arg(cmd)
        .output()
        .expect("run ssh")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, r)| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn hosts_answer_with_their_own_name_and_root() {
    let lab = TestLab::start(3);
    for h in lab.hosts() {
        let o = ssh(&lab, &h.address.to_string(), "echo $FLEET_HOST $FLEET_ROOT");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("{} {}\n", h.name, h.root.display())
        );
        assert!(h.root.is_dir());
        assert_eq!(h.address.octets()[0], 127);
    }
    let kh = std::fs::read_to_string(lab.known_hosts()).expect("known_hosts");
    assert_eq!(kh.lines().count(), 3);
    let inv = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    assert!(inv.contains("[hosts.h02]") && inv.contains("hosts = [\"h[01:03]\"]"), "{inv}");
}

#[test]
fn stopped_host_refuses_then_comes_back() {
    let mut lab = TestLab::start(2);
    let h = lab.hosts()[1].clone();
    let pid = h.pid.expect("running");
    lab.lab_mut().stop_host(&h.name).expect("stop");
    assert!(!alive(pid));
    assert!(std::net::TcpStream::connect((h.address, h.port)).is_err());
    lab.lab_mut().start_host(&h.name).expect("start");
    let o = ssh(&lab, &h.address.to_string(), "echo $FLEET_HOST");
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{}\n", h.name));
}

#[test]
fn drop_stops_every_daemon() {
    let pids: Vec<u32> = {
        let lab = TestLab::start(3);
        lab.hosts().iter().map(|h| h.pid.expect("pid")).collect()
    };
    for pid in pids {
        assert!(!alive(pid), "sshd {pid} survived the lab");
    }
}

/// `down` kills by recorded pid only after checking that the pid still runs that host's own
/// sshd config: a reused pid belonging to something else survives.
#[test]
fn down_never_kills_a_foreign_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lab = Lab::up(&LabOptions::new(2, dir.path())).expect("up");
    let real = lab.hosts()[0].pid.expect("pid");
    let record = dir.path().join("lab.txt");
    let me = std::process::id();
    let text = std::fs::read_to_string(&record).expect("record");
    std::fs::write(&record, text.replace(&format!(" {real}\n"), &format!(" {me}\n"))).expect("write");
    let mut reopened = Lab::open(dir.path()).expect("open");
    assert_eq!(reopened.down().expect("down"), 1);
    assert!(alive(me));
    // The real daemon of h01 is still ours to stop.
    assert!(alive(real));
    lab.down().expect("down");
    assert!(!alive(real));
}

#[test]
fn refuses_a_foreign_directory_and_a_running_lab() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("precious.txt"), "keep me").expect("write");
    let err = Lab::up(&LabOptions::new(1, dir.path())).expect_err("refused");
    assert!(err.to_string().contains("not a lab directory"), "{err}");
    assert!(Path::new(&dir.path().join("precious.txt")).exists());

    let lab_dir = tempfile::tempdir().expect("tempdir");
    let mut lab = Lab::up(&LabOptions::new(1, lab_dir.path())).expect("up");
    let err = Lab::up(&LabOptions::new(1, lab_dir.path())).expect_err("refused");
    assert!(err.to_string().contains("still running"), "{err}");
    lab.down().expect("down");
}

#[test]
fn fifty_hosts_start() {
    let lab = TestLab::start(50);
    assert_eq!(lab.hosts().len(), 50);
    assert_eq!(lab.hosts()[49].name, "h50");
    let last = &lab.hosts()[49];
    let o = ssh(&lab, &last.address.to_string(), "echo $FLEET_HOST");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "h50\n");
}
