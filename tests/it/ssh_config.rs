//! Hosts completed from the OpenSSH client config, against real sshd: the config's
//! `HostName`, `Port`, `User` and `IdentityFile` reach the host; what the inventory sets
//! wins; `--explain` says where each setting came from; `-F none` and `ssh_config = false`
//! read none; a `ProxyCommand` carries the connection.

use std::path::Path;

use fleet_lab::TestLab;

use crate::{both, fleet, run, stderr, stdout};

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// The inventory: `web` and `pinned` with nothing but what the config gives them (`pinned`
/// sets its own user), the lab's known_hosts in `[defaults]`.
fn inventory(lab: &TestLab, extra_defaults: &str) -> std::path::PathBuf {
    let inv = lab.dir().join("ssh-config-inventory.toml");
    write(
        &inv,
        &format!(
            "[defaults]\nknown_hosts_file = {}\nhost_key_policy = \"strict\"\n{extra_defaults}\n[hosts.web]\n\n[hosts.pinned]\nuser = \"nobody-here\"\n",
            toml_path(&lab.known_hosts())
        ),
    );
    inv
}

fn config(lab: &TestLab, name: &str, extra: &str) -> std::path::PathBuf {
    let h = &lab.hosts()[0];
    let cfg = lab.dir().join(name);
    write(
        &cfg,
        &format!(
            "# the team's config\nHost web pinned\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n{extra}",
            h.address,
            h.port,
            lab.user(),
            lab.client_key().display()
        ),
    );
    cfg
}

fn explain(inv: &Path, extra: &[&str], host: &str) -> String {
    let mut c = fleet(inv);
    c.args(extra).args(["hosts", "--explain", host]);
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    stdout(&o)
}

fn from(text: &str, setting: &str) -> String {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(setting))
        .unwrap_or_else(|| panic!("no `{setting}` in {text}"))
        .to_owned()
}

#[test]
fn a_host_is_reached_with_what_ssh_config_says_and_the_inventory_wins_over_it() {
    let lab = TestLab::start(1);
    let inv = inventory(&lab, "");
    let cfg = config(&lab, "team-ssh-config", "");
    let f = cfg.display().to_string();
    let o = run(fleet(&inv).args(["-F", &f, "exec", "-l", "web", "--", "echo reached"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("reached"), "{}", stdout(&o));

    let text = explain(&inv, &["-F", &f], "web");
    let h = &lab.hosts()[0];
    assert!(text.contains(&format!("(ssh_config: {f})")), "{text}");
    assert!(
        from(&text, "address").contains(&h.address.to_string()),
        "{text}"
    );
    assert!(
        from(&text, "address").contains(&format!("ssh_config {f}:3")),
        "{text}"
    );
    assert!(
        from(&text, "port").contains(&format!("ssh_config {f}:4")),
        "{text}"
    );
    assert!(
        from(&text, "user").contains(&format!("ssh_config {f}:5")),
        "{text}"
    );
    assert!(
        from(&text, "identity_file").contains(&format!("ssh_config {f}:6")),
        "{text}"
    );
    assert!(
        from(&text, "known_hosts_file").contains("inventory [defaults]"),
        "{text}"
    );
    assert!(
        from(&text, "connect_timeout").contains("fleet's default"),
        "{text}"
    );

    // The inventory's own user stands over the config's.
    let text = explain(&inv, &["-F", &f], "pinned");
    assert!(from(&text, "user").contains("nobody-here"), "{text}");
    assert!(from(&text, "user").contains("inventory host"), "{text}");
    assert!(
        from(&text, "port").contains(&format!("ssh_config {f}:4")),
        "{text}"
    );

    // `-F none`: no config, the name is the address.
    let text = explain(&inv, &["-F", "none"], "web");
    assert!(from(&text, "address").contains("web"), "{text}");
    assert!(from(&text, "address").contains("fleet's default"), "{text}");

    // The user's own ~/.ssh/config (HOME is pinned beside the inventory) is read by default,
    // and `ssh_config = false` in the inventory turns it off.
    let home = inv.parent().unwrap().join("controller-home");
    std::fs::copy(&cfg, home.join(".ssh/config"))
        .or_else(|_| {
            std::fs::create_dir_all(home.join(".ssh"))?;
            std::fs::copy(&cfg, home.join(".ssh/config"))
        })
        .unwrap();
    let text = explain(&inv, &[], "web");
    assert!(from(&text, "port").contains(".ssh/config:4"), "{text}");
    let inv_off = inventory(&lab, "ssh_config = false\n");
    let text = explain(&inv_off, &[], "web");
    assert!(from(&text, "port").contains("fleet's default"), "{text}");
}

#[test]
fn a_jump_host_is_read_from_its_own_block_with_the_jumps_before_it() {
    let lab = TestLab::start(1);
    let inv = inventory(&lab, "");
    let cfg = config(
        &lab,
        "jump-config",
        "  ProxyJump bastion\nHost bastion\n  HostName 192.0.2.7\n  User jumper\n  Port 2022\n",
    );
    let f = cfg.display().to_string();
    let text = explain(&inv, &["-F", &f], "web");
    assert!(
        from(&text, "jump").contains("jumper@192.0.2.7:2022"),
        "{text}"
    );
    assert!(
        from(&text, "jump").contains(&format!("ssh_config {f}:7")),
        "{text}"
    );

    // The first hop's own ProxyJump is followed, as ssh follows it.
    let cfg = config(
        &lab,
        "chained-config",
        "  ProxyJump bastion\nHost bastion\n  HostName 192.0.2.7\n  User jumper\n  ProxyJump outer\nHost outer\n  HostName 192.0.2.9\n  Port 2200\n",
    );
    let f = cfg.display().to_string();
    let text = explain(&inv, &["-F", &f], "web");
    assert!(
        from(&text, "jump").contains("192.0.2.9:2200,jumper@192.0.2.7 "),
        "{text}"
    );
    // A loop is refused.
    let cfg = config(
        &lab,
        "loop-config",
        "  ProxyJump bastion\nHost bastion\n  ProxyJump bastion\n",
    );
    let f = cfg.display().to_string();
    let o = run(fleet(&inv).args(["-F", &f, "hosts"]));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains("the jump hosts of host `web` lead back to `bastion`"),
        "{}",
        both(&o)
    );
}

/// A chain the config builds hop by hop (the target's ProxyJump, that hop's own) is
/// connected through, hop after hop, against real sshd.
#[test]
fn a_chain_of_jumps_from_the_config_reaches_the_target() {
    let lab = TestLab::start(3);
    let h = lab.hosts();
    let inv = inventory(&lab, "");
    let cfg = lab.dir().join("chain-config");
    let block = |name: &str, host: &fleet_lab::LabHost, jump: &str| {
        format!(
            "Host {name}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n{jump}",
            host.address,
            host.port,
            lab.user(),
            lab.client_key().display()
        )
    };
    write(
        &cfg,
        &[
            block("web", &h[2], "  ProxyJump j2\n"),
            block("j2", &h[1], "  ProxyJump j1\n"),
            block("j1", &h[0], ""),
        ]
        .concat(),
    );
    let f = cfg.display().to_string();
    let text = explain(&inv, &["-F", &f], "web");
    let want = format!(
        "{u}@{a0}:{p},{u}@{a1}:{p} ",
        u = lab.user(),
        a0 = h[0].address,
        a1 = h[1].address,
        p = h[0].port
    );
    assert!(from(&text, "jump").contains(&want), "{text}");
    let o = run(fleet(&inv).args(["-F", &f, "exec", "-l", "web", "--", "echo $FLEET_HOST"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("h03"), "{}", both(&o));

    // Each hop logs in with its own block's IdentityFile: j1's missing key is what fails.
    let missing = lab.dir().join("missing_hop_key");
    let j1 = block("j1", &h[0], "").replace(
        &lab.client_key().display().to_string(),
        &missing.display().to_string(),
    );
    write(
        &cfg,
        &[
            block("web", &h[2], "  ProxyJump j2\n"),
            block("j2", &h[1], "  ProxyJump j1\n"),
            j1,
        ]
        .concat(),
    );
    let o = run(fleet(&inv).args(["-F", &f, "exec", "--json", "-l", "web", "--", "true"]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let e = stdout(&o);
    assert!(
        e.contains("through jump host")
            && e.contains(&format!("{}` (not found)", missing.display())),
        "{}",
        both(&o)
    );
}

#[test]
fn a_proxy_command_carries_the_connection_and_says_why_it_failed() {
    let lab = TestLab::start(2);
    let inv = inventory(&lab, "");
    let (bastion, target) = (&lab.hosts()[0], &lab.hosts()[1]);
    let used = lab.dir().join("proxy-used.log");
    // The operator's usual way through a bastion: OpenSSH's own `ssh -W`, here to h02
    // through h01.
    let proxy = format!(
        "sh -c 'echo %n >> {log}; exec ssh -F none -o BatchMode=yes -i {key} -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes -p {port} {user}@{addr} -W %h:%p'",
        log = used.display(),
        key = lab.client_key().display(),
        kh = lab.known_hosts().display(),
        port = bastion.port,
        user = lab.user(),
        addr = bastion.address,
    );
    let cfg = lab.dir().join("proxied-config");
    write(
        &cfg,
        &format!(
            "Host web\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  ProxyCommand {proxy}\n",
            target.address,
            target.port,
            lab.user(),
            lab.client_key().display()
        ),
    );
    let f = cfg.display().to_string();
    let o = run(fleet(&inv).args(["-F", &f, "exec", "-l", "web", "--", "echo $FLEET_HOST"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).contains("h02"), "{}", both(&o));
    assert_eq!(
        std::fs::read_to_string(&used).expect("the proxy ran"),
        "web\n"
    );
    let explained = explain(&inv, &["-F", &f], "web");
    assert!(
        from(&explained, "proxy_command").contains(&format!("{f}:6")),
        "{explained}"
    );

    // A proxy that fails: its own words, once, as the host's error.
    write(
        &cfg,
        "Host web\n  ProxyCommand sh -c 'echo no route to the bastion >&2; exit 3'\n",
    );
    let o = run(fleet(&inv).args(["-F", &f, "exec", "--json", "-l", "web", "--", "true"]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(line["error_kind"], "proxy", "{}", both(&o));
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("through ProxyCommand `sh -c")
                && e.ends_with(": no route to the bastion")),
        "{}",
        both(&o)
    );

    // A token never brings shell text into the command (here a config's own HostName).
    write(
        &cfg,
        "Host web\n  HostName a$(touch x)\n  ProxyCommand nc %h %p\n",
    );
    let o = run(fleet(&inv).args(["-F", &f, "hosts"]));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{f}:3: host `web`: ProxyCommand `%h` would bring `a$(touch` into the command"
        )),
        "{}",
        both(&o)
    );
}

#[test]
fn a_bad_line_is_refused_naming_the_file_and_line() {
    let lab = TestLab::start(1);
    let inv = inventory(&lab, "");
    // CanonicalizeHostname matters only for a name fleet would look up: a host with its own
    // address in the inventory is fine.
    let cfg = config(&lab, "canon-config", "Host *\n  CanonicalizeHostname yes\n");
    let f = cfg.display().to_string();
    let o = run(fleet(&inv).args(["-F", &f, "hosts"]));
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{f}:8: CanonicalizeHostname yes")),
        "{e}"
    );
    assert!(e.contains("fleet -F none"), "{e}");
    let addressed = lab.dir().join("addressed-inventory.toml");
    write(
        &addressed,
        &format!(
            "[defaults]\nknown_hosts_file = {}\n[hosts.web]\naddress = \"{}\"\n",
            toml_path(&lab.known_hosts()),
            lab.hosts()[0].address
        ),
    );
    let o = run(fleet(&addressed).args(["-F", &f, "hosts"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));

    let cfg = config(&lab, "bad-config", "Host web\n  Port eighty\n");
    let f = cfg.display().to_string();
    let o = run(fleet(&inv).args(["-F", &f, "hosts"]));
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{f}:8: Port: `eighty` is not a port")),
        "{e}"
    );
}

/// `IdentitiesOnly`, `IdentityAgent`, `ServerAliveInterval`/`CountMax` and `HashKnownHosts`
/// act as they do for ssh: the agent's key is offered unless IdentitiesOnly keeps to the
/// identity files or IdentityAgent is `none`, and a key learned under accept-new is written
/// hashed.
#[test]
fn identities_only_identity_agent_keepalive_and_hashed_known_hosts_apply() {
    let lab = TestLab::start(1);
    let h = &lab.hosts()[0];
    let agent = fleet_lab::TestAgent::start(lab.dir(), &[&lab.client_key()]).expect("agent");
    // A key sshd does not know, with its .pub beside it: the only identity file.
    let other = fleet_lab::generate_client_key(&lab.dir().join("other_key")).expect("key");
    let learned = lab.dir().join("learned_known_hosts");
    let inv = lab.dir().join("agent-inventory.toml");
    write(
        &inv,
        &format!(
            "[defaults]\nknown_hosts_file = {}\nhost_key_policy = \"accept-new\"\n[hosts.web]\n",
            toml_path(&learned)
        ),
    );
    let cfg = lab.dir().join("agent-config");
    let config = |extra: &str| {
        write(
            &cfg,
            &format!(
                "Host web\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  HashKnownHosts yes\n  ServerAliveInterval 5\n  ServerAliveCountMax 2\n{extra}",
                h.address,
                h.port,
                lab.user(),
                other.display()
            ),
        );
    };
    let f = cfg.display().to_string();
    let exec = || {
        run(fleet(&inv)
            .env("SSH_AUTH_SOCK", agent.socket())
            .args(["-F", &f, "exec", "--json", "--", "echo ok"]))
    };

    config("");
    let o = exec();
    assert_eq!(o.status.code(), Some(0), "the agent's key: {}", both(&o));
    let kh = std::fs::read_to_string(&learned).expect("learned key");
    assert!(
        kh.starts_with("|1|") && !kh.contains(&h.address.to_string()),
        "{kh}"
    );
    let explained = explain(&inv, &["-F", &f], "web");
    assert!(
        from(&explained, "server_alive").contains("every 5s, 2 unanswered")
            && from(&explained, "hash_known_hosts").contains("yes"),
        "{explained}"
    );

    for (extra, agent_said) in [
        (
            "  IdentitiesOnly yes\n",
            Some("ssh-agent (0 keys rejected, 1 left out by IdentitiesOnly)"),
        ),
        ("  IdentityAgent none\n", None),
    ] {
        config(extra);
        let o = exec();
        assert_eq!(o.status.code(), Some(1), "{extra}: {}", both(&o));
        let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
        assert_eq!(line["error_kind"], "auth", "{extra}: {}", both(&o));
        let e = line["error"].as_str().unwrap_or("");
        match agent_said {
            Some(said) => assert!(e.contains(said), "{extra}: {e}"),
            None => assert!(
                !e.contains("ssh-agent"),
                "{extra}: the agent was asked: {e}"
            ),
        }
    }
}

/// A user certificate logs in where its key alone is unknown to the host: `FILE-cert.pub`
/// beside the identity file is offered, as ssh offers it, and so is a `CertificateFile`.
#[test]
fn a_user_certificate_logs_in_where_its_key_alone_is_unknown() {
    let mut lab = TestLab::start(1);
    let dir = lab.dir().to_owned();
    let keygen = |args: &[&str]| {
        let o = std::process::Command::new("ssh-keygen")
            .args(args)
            .output()
            .expect("ssh-keygen (openssh-client)");
        assert!(o.status.success(), "ssh-keygen {args:?}: {o:?}");
    };
    let (ca, key) = (dir.join("user_ca"), dir.join("cert_user_key"));
    for k in [&ca, &key] {
        keygen(&[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            &k.display().to_string(),
        ]);
    }
    keygen(&[
        "-q",
        "-s",
        &ca.display().to_string(),
        "-I",
        "fleet-test",
        "-n",
        lab.user(),
        &format!("{}.pub", key.display()),
    ]);
    lab.lab_mut()
        .trust_user_ca("h01", &dir.join("user_ca.pub"))
        .expect("trust the CA");
    let h = lab.hosts()[0].clone();
    let inv = inventory(&lab, "");
    let cfg = dir.join("cert-config");
    let f = cfg.display().to_string();
    let config = |extra: &str| {
        write(
            &cfg,
            &format!(
                "Host web\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n{extra}",
                h.address,
                h.port,
                lab.user(),
                key.display()
            ),
        );
    };
    let exec = || run(fleet(&inv).args(["-F", &f, "exec", "--json", "-l", "web", "--", "echo in"]));

    config("");
    let o = exec();
    assert_eq!(
        o.status.code(),
        Some(0),
        "the certificate beside the key: {}",
        both(&o)
    );

    // The agent holds the key and its certificate (ssh-add takes the cert beside the key):
    // the certificate is what it offers for it.
    let agent = fleet_lab::TestAgent::start(&dir, &[&key]).expect("agent");
    write(
        &cfg,
        &format!(
            "Host web\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n",
            h.address,
            h.port,
            lab.user(),
            dir.join("no_such_key").display()
        ),
    );
    let o = run(fleet(&inv)
        .env("SSH_AUTH_SOCK", agent.socket())
        .args(["-F", &f, "exec", "--json", "-l", "web", "--", "echo in"]));
    assert_eq!(
        o.status.code(),
        Some(0),
        "the agent's certificate: {}",
        both(&o)
    );
    drop(agent);

    let moved = dir.join("elsewhere-cert.pub");
    std::fs::rename(format!("{}-cert.pub", key.display()), &moved).expect("move the cert");
    let o = exec();
    assert_eq!(o.status.code(), Some(1), "the key alone: {}", both(&o));
    config(&format!("  CertificateFile {}\n", moved.display()));
    let o = exec();
    assert_eq!(o.status.code(), Some(0), "CertificateFile: {}", both(&o));
}
