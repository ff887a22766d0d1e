use std::os::unix::fs::PermissionsExt;

use fleet_lab::TestLab;

use crate::{ssh, stdout_ok};

#[test]
fn hosts_answer_with_their_own_name_root_and_home() {
    let lab = TestLab::start(3);
    assert_eq!(lab.hosts().len(), 3);
    for h in lab.hosts() {
        assert_eq!(h.address.octets()[0], 127, "{h:?}");
        assert!(h.root.is_dir(), "{}", h.root.display());
        assert_eq!(h.root, lab.dir().join("hosts").join(&h.name));
        let out = stdout_ok(&ssh(&lab, h, "echo $FLEET_HOST $FLEET_ROOT $HOME; id -un"));
        assert_eq!(
            out,
            format!(
                "{} {} {}\n{}\n",
                h.name,
                h.root.display(),
                lab.dir().join("home").join(&h.name).display(),
                lab.user()
            )
        );
    }
    let names: Vec<&str> = lab.hosts().iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["h01", "h02", "h03"]);
    // Consecutive addresses of one block.
    let last: Vec<u8> = lab.hosts().iter().map(|h| h.address.octets()[3]).collect();
    assert_eq!(last, [last[0], last[0] + 1, last[0] + 2]);
}

#[test]
fn client_files_describe_every_host() {
    let lab = TestLab::start(3);
    let dir = lab.dir();
    assert!(dir.is_absolute());

    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    let want: String = lab
        .hosts()
        .iter()
        .map(|h| format!("[{}]:{} {}\n", h.address, h.port, h.host_public_key))
        .collect();
    assert_eq!(known, want);
    for h in lab.hosts() {
        assert!(h.host_public_key.starts_with("ssh-ed25519 AAAA"), "{h:?}");
        assert_eq!(h.host_public_key.split(' ').count(), 2);
    }
    // Every host has its own key.
    assert_ne!(
        lab.hosts()[0].host_public_key,
        lab.hosts()[1].host_public_key
    );

    let inv = std::fs::read_to_string(lab.inventory_path()).unwrap();
    let v: toml::Table = toml::from_str(&inv).unwrap();
    assert_eq!(v["defaults"]["user"].as_str(), Some(lab.user()));
    assert_eq!(
        v["defaults"]["identity_file"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(lab.client_key())
    );
    assert_eq!(v["defaults"]["host_key_policy"].as_str(), Some("strict"));
    for h in lab.hosts() {
        let t = &v["hosts"][&h.name];
        assert_eq!(t["address"].as_str(), Some(h.address.to_string().as_str()));
        assert_eq!(t["port"].as_integer(), Some(2222));
    }
    assert!(
        inv.contains("[groups.lab]\nhosts = [\"h[01:03]\"]"),
        "{inv}"
    );
    assert!(
        inv.contains("[groups.odd]\nhosts = [\"h01\", \"h03\"]"),
        "{inv}"
    );

    let mode = std::fs::metadata(lab.client_key())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let authorized = std::fs::read_to_string(dir.join("authorized_keys")).unwrap();
    let public = std::fs::read_to_string(dir.join("client_key.pub")).unwrap();
    assert_eq!(authorized, public);

    for h in lab.hosts() {
        let d = dir.join("sshd").join(&h.name);
        for f in [
            "sshd_config",
            "ssh_host_ed25519_key",
            "sshd.pid",
            "sshd.log",
        ] {
            assert!(d.join(f).exists(), "{}/{f}", d.display());
        }
        let pid: u32 = std::fs::read_to_string(d.join("sshd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(Some(pid), h.pid);
    }

    let record: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("lab.toml")).unwrap()).unwrap();
    let hosts = record["host"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    assert_eq!(
        hosts[1]["sshd_config"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(dir.join("sshd/h02/sshd_config"))
    );
    assert_eq!(
        hosts[1]["pid"].as_integer(),
        lab.hosts()[1].pid.map(i64::from)
    );
}
