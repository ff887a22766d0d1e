use std::path::Path;
use std::process::{Command, Output};

use fleet_lab::{LabHost, TestAgent, TestLab, generate_client_key};

/// ssh with everything given on the command line, so the identity is exactly `key`.
fn ssh_with_key(lab: &TestLab, h: &LabHost, key: &Path) -> Output {
    Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args([
            "-o",
            "IdentityAgent=none",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.known_hosts().display()
        ))
        .arg("-i")
        .arg(key)
        .arg("-p")
        .arg(h.port.to_string())
        .arg(format!("{}@{}", lab.user(), h.address))
        .arg("echo $FLEET_HOST")
        .output()
        .expect("run ssh")
}

#[test]
fn a_wrong_key_is_refused_and_the_right_one_still_works() {
    let lab = TestLab::start(1);
    let h = &lab.hosts()[0];
    let dir = tempfile::tempdir().unwrap();
    let wrong = generate_client_key(&dir.path().join("wrong")).expect("key");
    assert_eq!(wrong, dir.path().join("wrong"));
    assert!(dir.path().join("wrong.pub").exists());
    // Several failures in a row: with OpenSSH >= 9.8 this is what PerSourcePenalties
    // would punish.
    for _ in 0..3 {
        let o = ssh_with_key(&lab, h, &wrong);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = ssh_with_key(&lab, h, &lab.client_key());
    assert_eq!(crate::stdout_ok(&o), "h01\n");
}

#[test]
fn test_agent_holds_the_given_keys() {
    let lab = TestLab::start(1);
    let dir = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(dir.path(), &[&lab.client_key()]).expect("agent");
    let socket = agent.socket().to_owned();
    assert!(socket.exists());
    let listed = Command::new("ssh-add")
        .arg("-L")
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .unwrap();
    let public = std::fs::read_to_string(lab.dir().join("client_key.pub")).unwrap();
    let key = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(crate::stdout_ok(&listed).contains(&key));

    // Log in through the agent alone.
    let h = &lab.hosts()[0];
    let o = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.known_hosts().display()
        ))
        .arg("-o")
        .arg(format!("IdentityAgent={}", socket.display()))
        .args(["-o", "IdentityFile=none", "-p"])
        .arg(h.port.to_string())
        .arg(format!("{}@{}", lab.user(), h.address))
        .arg("echo $FLEET_HOST")
        .output()
        .unwrap();
    assert_eq!(crate::stdout_ok(&o), "h01\n");

    drop(agent);
    assert!(!socket.exists() || std::os::unix::net::UnixStream::connect(&socket).is_err());
}
