//! Ansible inventories: an INI and a YAML inventory (groups, children, ranges, host and group
//! vars, become) resolve to the same hosts and settings as their TOML conversion, and reach
//! the lab's real hosts.

use std::path::{Path, PathBuf};

use fleet_lab::TestLab;

use crate::{both, fleet, run, stderr, stdout};

/// `fleet hosts --json` and `--explain` of every host: names, groups, vars and each
/// connection setting (without where it came from, which says "group" for both forms).
fn resolved(inv: &Path) -> Vec<String> {
    let o = run(fleet(inv).args(["-F", "none", "hosts", "--json"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let mut names = Vec::new();
    // Groups as a set: their order is the order the file declares them in.
    let mut out: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            names.push(v["name"].as_str().expect("name").to_owned());
            if let Some(g) = v["groups"].as_array_mut() {
                g.sort_by_key(|x| x.as_str().unwrap_or("").to_owned());
            }
            v.to_string()
        })
        .collect();
    for n in names {
        let o = run(fleet(inv).args(["-F", "none", "hosts", "--explain", &n, "--json"]));
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
        for l in stdout(&o).lines() {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            v.as_object_mut().expect("object").remove("from");
            out.push(v.to_string());
        }
    }
    out
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn ini_and_yaml_inventories_resolve_like_their_toml_and_reach_the_hosts() {
    let lab = TestLab::start(3);
    let dir = lab.temp_dir().join("ansible");
    let (key, kh) = (lab.client_key(), lab.known_hosts());
    let h = lab.hosts();
    let ini = write(
        &dir,
        "hosts.ini",
        &format!(
            "# the team's inventory\n\
             [web]\n\
             web[01:02] ansible_user={user}\n\
             \n\
             [db]\n\
             db1 ansible_host={a3} ansible_port={p3} rack=r9\n\
             \n\
             [prod:children]\n\
             web\n\
             db\n\
             \n\
             [all:vars]\n\
             ansible_ssh_private_key_file={key}\n\
             env=prod\n\
             \n\
             [web:vars]\n\
             tier=frontend\n\
             ansible_become=true\n\
             ansible_become_user=root\n",
            user = lab.user(),
            a3 = h[2].address,
            p3 = h[2].port,
            key = key.display(),
        ),
    );
    // Where web01 and web02 are: host_vars, as teams keep them.
    for (name, host) in [("web01", &h[0]), ("web02", &h[1])] {
        write(
            &dir,
            &format!("host_vars/{name}.yml"),
            &format!(
                "ansible_host: {}\nansible_port: {}\n",
                host.address, host.port
            ),
        );
    }
    write(
        &dir,
        "group_vars/all.yml",
        &format!("known_hosts_note: lab\nansible_user: {}\n", lab.user()),
    );
    let yaml = write(
        &dir,
        "hosts.yml",
        &format!(
            "all:\n\
             \x20 vars:\n\
             \x20   ansible_ssh_private_key_file: {key}\n\
             \x20   env: prod\n\
             \x20 children:\n\
             \x20   prod:\n\
             \x20     children:\n\
             \x20       web:\n\
             \x20         hosts:\n\
             \x20           web[01:02]:\n\
             \x20             ansible_user: {user}\n\
             \x20         vars:\n\
             \x20           tier: frontend\n\
             \x20           ansible_become: true\n\
             \x20           ansible_become_user: root\n\
             \x20       db:\n\
             \x20         hosts:\n\
             \x20           db1:\n\
             \x20             ansible_host: {a3}\n\
             \x20             ansible_port: {p3}\n\
             \x20             rack: r9\n",
            key = key.display(),
            user = lab.user(),
            a3 = h[2].address,
            p3 = h[2].port,
        ),
    );

    let o = run(fleet(&ini).args(["inventory", "convert"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let toml = write(&dir, "converted.toml", &stdout(&o));
    let from_ini = resolved(&ini);
    assert!(
        from_ini.iter().any(|l| l.contains("\"name\":\"db1\"")),
        "{from_ini:?}"
    );
    assert_eq!(from_ini, resolved(&toml), "INI and its TOML");
    assert_eq!(
        from_ini,
        resolved(&yaml),
        "INI and the same inventory in YAML"
    );

    // The converted inventory reaches the hosts: web as root through become (sudo as root
    // asks nothing), db1 with its own address and port.
    let text = std::fs::read_to_string(&toml).expect("toml");
    let text = text.replacen(
        "[defaults]\n",
        &format!(
            "[defaults]\nknown_hosts_file = {:?}\n",
            kh.display().to_string()
        ),
        1,
    );
    std::fs::write(&toml, text).expect("toml");
    let o = run(fleet(&toml).args(["-F", "none", "exec", "--json", "--", "echo \"$FLEET_HOST\""]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let got: Vec<(String, String)> = stdout(&o)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                v["host"].as_str().unwrap_or("").to_owned(),
                v["stdout"].as_str().unwrap_or("").trim().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [("web01", "h01"), ("web02", "h02"), ("db1", "h03")]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(got, want, "{}", both(&o));

    // A plaintext password in the Ansible inventory is refused at its line.
    let bad = write(
        &dir,
        "secret.ini",
        "[web]\nweb01 ansible_become_pass=hunter2\n",
    );
    let o = run(fleet(&bad).args(["hosts"]));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains(&format!("{}:2:", bad.display()))
            && stderr(&o).contains("become_password_file"),
        "{}",
        both(&o)
    );
    assert!(!stderr(&o).contains("hunter2"), "{}", both(&o));
}
