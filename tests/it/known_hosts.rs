//! Host keys decided exactly as OpenSSH decides them: for each form a known_hosts file can
//! take, `ssh` itself (strict checking, the same file) is the oracle, and fleet must accept
//! or refuse the host as it does.

use std::path::{Path, PathBuf};
use std::process::Command;

use fleet_lab::TestLab;
use serde_json::Value;

use crate::{both, fleet, run, stdout};

/// A fresh key pair of `kind` (`ed25519`, `ecdsa`) in `dir`; returns its public line's
/// `type base64` part.
fn other_key(dir: &Path, name: &str, kind: &str) -> String {
    let path = dir.join(name);
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with every host name hashed by `ssh-keygen -H`, as `HashKnownHosts` writes them.
fn hashed(dir: &Path, text: &str) -> String {
    let f = dir.join("to-hash");
    std::fs::write(&f, text).expect("write");
    let o = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&f)
        .output()
        .expect("ssh-keygen -H");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = std::fs::read_to_string(&f).expect("hashed");
    assert!(out.starts_with("|1|"), "{out}");
    out
}

/// Whether OpenSSH's client, checking strictly against `known_hosts` alone, logs in.
fn ssh_accepts(lab: &TestLab, known_hosts: &Path) -> bool {
    ssh_accepts_host(lab, 0, known_hosts)
}

/// [`ssh_accepts`] for the lab's host number `index`.
fn ssh_accepts_host(lab: &TestLab, index: usize, known_hosts: &Path) -> bool {
    let h = &lab.hosts()[index];
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
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "CheckHostIP=no",
            "-o",
            "UpdateHostKeys=no",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "ConnectTimeout=20",
        ])
        .arg("-i")
        .arg(lab.dir().join("client_key"))
        .arg("-p")
        .arg(h.port.to_string())
        .arg(format!("root@{}", h.address))
        .arg("true")
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .expect("ssh");
    match o.status.code() {
        Some(0) => true,
        Some(255) => {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("Host key verification failed"),
                "ssh failed otherwise: {err}"
            );
            false
        }
        other => panic!("ssh ended with {other:?}"),
    }
}

/// Whether fleet, with `host_key_policy = "strict"` and only `known_hosts`, runs the
/// command; a refusal must be a host-key refusal.
fn fleet_accepts(inventory: &Path) -> bool {
    let o = run(fleet(inventory).args(["exec", "--json", "--", "true"]));
    let v: Value =
        serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", both(&o)));
    match v["status"].as_str() {
        Some("ok") => true,
        _ => {
            assert_eq!(v["error_kind"], "host-key", "{v}");
            false
        }
    }
}

/// The lab's inventory with `known_hosts_file` pointing at `file`.
fn inventory_with(lab: &TestLab, file: &Path) -> PathBuf {
    let text = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    let old = format!(
        "known_hosts_file = \"{}\"",
        lab.lab().known_hosts().display()
    );
    assert!(text.contains(&old), "{text}");
    let text = text.replace(&old, &format!("known_hosts_file = \"{}\"", file.display()));
    let p = lab.temp_dir().join("inventory-kh.toml");
    std::fs::write(&p, text).expect("inventory");
    p
}

#[test]
fn every_known_hosts_form_is_decided_as_openssh_decides_it() {
    let lab = TestLab::start(1);
    let dir = lab.temp_dir().join("kh");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let h = &lab.hosts()[0];
    let key = h.host_public_key.clone();
    let addr = h.address.to_string();
    let port = h.port;
    assert_ne!(port, 22, "the forms below are about a host off port 22");
    let name = format!("[{addr}]:{port}");
    let octets: Vec<&str> = addr.split('.').collect();
    let wrong = other_key(&dir, "wrong", "ed25519");
    let ecdsa = other_key(&dir, "ecdsa", "ecdsa");
    let ca = other_key(&dir, "ca", "ed25519");
    // (what, the file's text, what OpenSSH decides)
    let cases: Vec<(&str, String, bool)> = vec![
        ("the name with its port", format!("{name} {key}\n"), true),
        // OpenSSH checks the bare name when nothing is recorded under `[name]:port`
        // ("checking without port identifier").
        (
            "the bare address, for a host off port 22",
            format!("{addr} {key}\n"),
            true,
        ),
        (
            "another key under the bare address",
            format!("{addr} {wrong}\n"),
            false,
        ),
        (
            "another key under the name with its port, the right one bare",
            format!("{name} {wrong}\n{addr} {key}\n"),
            false,
        ),
        (
            "another key for the name",
            format!("{name} {wrong}\n"),
            false,
        ),
        (
            "hashed name with its port",
            hashed(&dir, &format!("{name} {key}\n")),
            true,
        ),
        (
            "hashed bare address",
            hashed(&dir, &format!("{addr} {key}\n")),
            true,
        ),
        (
            "a wildcard inside the brackets",
            format!("[{}.*]:{port} {key}\n", octets[0]),
            true,
        ),
        ("`*` alone", format!("* {key}\n"), true),
        (
            "`?` for one character",
            format!(
                "[{}.{}.{}.?]:{port} {key}\n",
                octets[0], octets[1], octets[2]
            ),
            octets[3].len() == 1,
        ),
        ("any port", format!("[{addr}]:* {key}\n"), true),
        ("another port", format!("[{addr}]:2 {key}\n"), false),
        // Negated for `[name]:port`, and then `*` matches the bare name.
        (
            "negated, with a wildcard after",
            format!("!{name},* {key}\n"),
            true,
        ),
        (
            "negated bare and with the port",
            format!("!{name},!{addr},* {key}\n"),
            false,
        ),
        (
            "only negated patterns",
            format!("!other.example {key}\n"),
            false,
        ),
        (
            "a list with the name second",
            format!("other.example,{name} {key}\n"),
            true,
        ),
        (
            "a stale line before the right one",
            format!("{name} {wrong}\n{name} {key}\n"),
            true,
        ),
        (
            "the right line before a stale one",
            format!("{name} {key}\n{name} {wrong}\n"),
            true,
        ),
        (
            "comments, blank lines and a trailing comment",
            format!("# {name} {wrong}\n\n   \n{name} {key} root@somewhere\n"),
            true,
        ),
        (
            "a commented-out right line only",
            format!("# {name} {key}\n"),
            false,
        ),
        ("separated by tabs", format!("{name}\t{key}\n"), true),
        (
            "the key revoked for everyone",
            format!("@revoked * {key}\n{name} {key}\n"),
            false,
        ),
        (
            "another key revoked",
            format!("@revoked * {wrong}\n{name} {key}\n"),
            true,
        ),
        (
            "only a CA for the name (the host shows a plain key)",
            format!("@cert-authority * {ca}\n"),
            false,
        ),
        (
            "a CA line beside the right line",
            format!("@cert-authority {name} {ca}\n{name} {key}\n"),
            true,
        ),
        (
            "only a key of another type for the name",
            format!("{name} {ecdsa}\n"),
            false,
        ),
        (
            "a key of another type, then the right one",
            format!("{name} {ecdsa}\n{name} {key}\n"),
            true,
        ),
    ];
    let mut differ = Vec::new();
    for (i, (what, text, expected)) in cases.iter().enumerate() {
        let file = dir.join(format!("known_hosts.{i}"));
        std::fs::write(&file, text).expect("write");
        let openssh = ssh_accepts(&lab, &file);
        let inv = inventory_with(&lab, &file);
        let ours = fleet_accepts(&inv);
        if openssh != ours || openssh != *expected {
            differ.push(format!(
                "{what}: ssh {}, fleet {}, expected {}\n{text}",
                openssh, ours, expected
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} forms:\n{}",
        differ.len(),
        cases.len(),
        differ.join("\n")
    );
}

/// `accept-new` with 200 new hosts at once, from two fleet processes started together: one
/// consistent known_hosts (a whole line per host, none twice), which OpenSSH's client and a
/// strict fleet run then trust.
#[test]
fn two_runs_accepting_200_new_hosts_at_once_write_one_consistent_file() {
    let lab = TestLab::start(200);
    let file = lab.temp_dir().join("learned_known_hosts");
    let text = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    let old = format!(
        "known_hosts_file = \"{}\"",
        lab.lab().known_hosts().display()
    );
    let text = text
        .replace(&old, &format!("known_hosts_file = \"{}\"", file.display()))
        .replace(
            "host_key_policy = \"strict\"",
            "host_key_policy = \"accept-new\"",
        );
    let inv = lab.temp_dir().join("inventory-accept-new.toml");
    std::fs::write(&inv, text).expect("inventory");
    let spawn = || {
        fleet(&inv)
            .args(["exec", "--json", "--connect-timeout", "120s", "--", "true"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn fleet")
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().expect("fleet");
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    }
    let learned = std::fs::read_to_string(&file).expect("learned");
    let lines: Vec<&str> = learned.lines().collect();
    assert_eq!(lines.len(), 200, "one line per host:\n{learned}");
    for h in lab.hosts() {
        let want = format!("[{}]:{} {}", h.address, h.port, h.host_public_key);
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(&want)).count(),
            1,
            "{}: {want}",
            h.name
        );
    }
    for i in [0, 99, 199] {
        assert!(ssh_accepts_host(&lab, i, &file), "ssh refuses host {i}");
    }
    let strict = inventory_with(&lab, &file);
    let o = run(fleet(&strict).args(["exec", "--connect-timeout", "120s", "--", "true"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
}

/// `ssh-keygen -s ca -h` of `lab`'s first host key, for `principals` (none when empty) and
/// `validity` (`-V`, none when empty): the certificate's text.
fn host_certificate(
    lab: &TestLab,
    dir: &Path,
    ca: &str,
    principals: &str,
    validity: &str,
) -> String {
    let host_pub = dir.join("host.pub");
    let key = lab.lab().host_key("h01").expect("host key");
    std::fs::copy(key.with_extension("pub"), &host_pub).expect("copy host key");
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-s"])
        .arg(dir.join(ca))
        .args(["-h", "-I", "fleet-lab-h01"]);
    if !principals.is_empty() {
        c.args(["-n", principals]);
    }
    if !validity.is_empty() {
        c.args(["-V", validity]);
    }
    let o = c.arg(&host_pub).output().expect("ssh-keygen -s");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(dir.join("host-cert.pub")).expect("certificate")
}

/// Host certificates (`@cert-authority`), with `ssh` itself the oracle again: the lab's host
/// shows a certificate of its key, and fleet trusts it exactly when OpenSSH does: the right
/// authority for the name, a host certificate valid now, for this host; `@revoked` on the
/// authority refuses it; a certificate not trusted leaves the plain key to decide.
#[test]
fn host_certificates_are_decided_as_openssh_decides_them() {
    let mut lab = TestLab::start(1);
    let dir = lab.temp_dir().join("certs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let ca = other_key(&dir, "ca", "ed25519");
    let _rogue = other_key(&dir, "rogue", "ed25519");
    let h = lab.hosts()[0].clone();
    let (addr, key) = (h.address.to_string(), h.host_public_key.clone());
    let name = format!("[{addr}]:{}", h.port);
    let good = host_certificate(&lab, &dir, "ca", &addr, "");
    // (what, certificate, known_hosts, what OpenSSH decides)
    let cases: Vec<(&str, String, String, bool)> = vec![
        (
            "an authority for every name",
            good.clone(),
            format!("@cert-authority * {ca}\n"),
            true,
        ),
        (
            "an authority for the name with its port",
            good.clone(),
            format!("@cert-authority {name} {ca}\n"),
            true,
        ),
        (
            "an authority for another name",
            good.clone(),
            format!("@cert-authority other.example {ca}\n"),
            false,
        ),
        (
            "an authority negated for this address",
            good.clone(),
            format!("@cert-authority !{name},!{addr},* {ca}\n"),
            false,
        ),
        (
            "signed by another authority",
            host_certificate(&lab, &dir, "rogue", &addr, ""),
            format!("@cert-authority * {ca}\n"),
            false,
        ),
        (
            "expired",
            host_certificate(&lab, &dir, "ca", &addr, "-2d:-1d"),
            format!("@cert-authority * {ca}\n"),
            false,
        ),
        (
            "not valid yet",
            host_certificate(&lab, &dir, "ca", &addr, "+1d:+2d"),
            format!("@cert-authority * {ca}\n"),
            false,
        ),
        (
            "for another host",
            host_certificate(&lab, &dir, "ca", "db1.example", ""),
            format!("@cert-authority * {ca}\n"),
            false,
        ),
        // A principal is a name, not a pattern.
        (
            "for a pattern of hosts",
            host_certificate(&lab, &dir, "ca", "127.*", ""),
            format!("@cert-authority * {ca}\n"),
            false,
        ),
        (
            "naming no host",
            host_certificate(&lab, &dir, "ca", "", ""),
            format!("@cert-authority * {ca}\n"),
            true,
        ),
        (
            "the authority revoked",
            good.clone(),
            format!("@cert-authority * {ca}\n@revoked * {ca}\n"),
            false,
        ),
        (
            "the host's key revoked",
            good.clone(),
            format!("@cert-authority * {ca}\n@revoked * {key}\n"),
            false,
        ),
        (
            "another authority's, but the plain key known",
            host_certificate(&lab, &dir, "rogue", &addr, ""),
            format!("@cert-authority * {ca}\n{name} {key}\n"),
            true,
        ),
    ];
    let file = dir.join("known_hosts");
    let inv = inventory_with(&lab, &file);
    let mut differ = Vec::new();
    for (what, cert, text, want) in &cases {
        lab.lab_mut()
            .set_host_certificate("h01", Some(cert))
            .expect("host certificate");
        std::fs::write(&file, text).expect("known_hosts");
        let ssh = ssh_accepts(&lab, &file);
        assert_eq!(ssh, *want, "the oracle is not what this case says: {what}");
        let fleet = fleet_accepts(&inv);
        if fleet != ssh {
            differ.push(format!("{what}: ssh {ssh}, fleet {fleet}"));
        }
    }
    assert!(
        differ.is_empty(),
        "fleet and OpenSSH differ:\n{}",
        differ.join("\n")
    );
    // The refusal names the authority's line and what is wrong with the certificate.
    let expired = host_certificate(&lab, &dir, "ca", &addr, "-2d:-1d");
    lab.lab_mut()
        .set_host_certificate("h01", Some(&expired))
        .expect("host certificate");
    std::fs::write(&file, format!("@cert-authority * {ca}\n")).expect("known_hosts");
    let o = run(fleet(&inv).args(["exec", "--json", "--", "true"]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(e.contains("expired at") && e.contains(":1"), "{v}");
}
