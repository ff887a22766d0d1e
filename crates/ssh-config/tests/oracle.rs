//! The resolver against OpenSSH's own: for each config of the corpus, `ssh -F cfg -G host`
//! (with `HOME` a temporary directory) and [`fleet_ssh_config::resolve`] must agree on the
//! host name, port, user, identity files, known-hosts files, jump chain and host-key
//! checking.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use fleet_ssh_config::{Context, Resolved, StrictHostKeyChecking, resolve};

/// One case: the config, files it includes (relative to `HOME`), the host asked for.
struct Case {
    name: &'static str,
    config: &'static str,
    files: &'static [(&'static str, &'static str)],
    hosts: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "plain",
        config: "Host web01\n  HostName 192.0.2.10\n  User deploy\n  Port 2222\n",
        files: &[],
        hosts: &["web01", "other"],
    },
    Case {
        name: "first value wins, in a block and across blocks",
        config: "Host web*\n  User first\n  User second\n  Port 2200\nHost *\n  User global\n  Port 22\n  HostName fallback.example\n",
        files: &[],
        hosts: &["web01", "db01"],
    },
    Case {
        name: "negation",
        config: "Host *.example !bastion.example\n  User inner\nHost *\n  User outer\n",
        files: &[],
        hosts: &["web.example", "bastion.example"],
    },
    Case {
        name: "a line of negations alone never matches",
        config: "Host !db*\n  User never\n",
        files: &[],
        hosts: &["web", "db1"],
    },
    Case {
        name: "several patterns, ? and *",
        config: "Host web? db*.internal\n  Port 2022\n",
        files: &[],
        hosts: &["web1", "web12", "db3.internal", "DB3.internal"],
    },
    Case {
        name: "Key=Value, case-insensitive keywords, quotes",
        config: "HOST=alpha\n  hostname = alpha.example\n  USER=\"ops user\"\n  PORT 2022\n",
        files: &[],
        hosts: &["alpha"],
    },
    Case {
        name: "global options before any Host",
        config: "User early\nPort 2201\nHost x\n  User late\n",
        files: &[],
        hosts: &["x", "y"],
    },
    Case {
        name: "HostName with %h",
        config: "Host *\n  HostName %h.prod.example\n",
        files: &[],
        hosts: &["web01", "Api"],
    },
    Case {
        name: "Include relative to ~/.ssh, with a glob, in order",
        config: "Include conf.d/*.conf\nHost *\n  User fallback\n",
        files: &[
            (
                ".ssh/conf.d/10-web.conf",
                "Host web*\n  User webops\n  Port 2210\n",
            ),
            (
                ".ssh/conf.d/20-all.conf",
                "Host *\n  Port 2299\n  User all\n",
            ),
        ],
        hosts: &["web01", "db01"],
    },
    Case {
        name: "Include inside a block applies only with it",
        config: "Host web*\n  Include web.conf\nHost *\n  User outer\n",
        files: &[(".ssh/web.conf", "User inner\nHost *\n  Port 2277\n")],
        hosts: &["web01", "db01"],
    },
    Case {
        name: "Include of a missing file is no error",
        config: "Include nothing-here.conf\nHost *\n  User u\n",
        files: &[],
        hosts: &["h"],
    },
    Case {
        name: "Match host tests HostName",
        config: "Host alias\n  HostName real.example\nMatch host real.example\n  User matched\n",
        files: &[],
        hosts: &["alias", "real.example", "other"],
    },
    Case {
        name: "Match originalhost",
        config: "Host alias\n  HostName real.example\nMatch originalhost alias\n  Port 2300\n",
        files: &[],
        hosts: &["alias", "real.example"],
    },
    Case {
        name: "Match user and negation",
        config: "Host a\n  User admin\nMatch user admin\n  Port 2400\nMatch !user admin\n  Port 2401\n",
        files: &[],
        hosts: &["a", "b"],
    },
    Case {
        name: "Match host list with negation",
        config: "Match host *.example,!secret.example\n  User listed\n",
        files: &[],
        hosts: &["web.example", "secret.example"],
    },
    Case {
        name: "Match all",
        config: "Host a\n  Port 2500\nMatch all\n  Port 2501\n  User everyone\n",
        files: &[],
        hosts: &["a", "b"],
    },
    Case {
        name: "Match final: a second pass on the resolved name",
        config: "Host alias\n  HostName real.example\nHost real.example\n  User realuser\nMatch final\n  Port 2600\n",
        files: &[],
        hosts: &["alias"],
    },
    Case {
        name: "IdentityFile accumulates, duplicates dropped, tokens kept raw",
        config: "Host *.example\n  IdentityFile ~/.ssh/%h.key\n  IdentityFile ~/.ssh/%r-%u\nHost *\n  IdentityFile ~/.ssh/%h.key\n  IdentityFile /etc/keys/shared\n",
        files: &[],
        hosts: &["web.example", "other"],
    },
    Case {
        name: "UserKnownHostsFile: the first line, all its files, expanded",
        config: "Host *.example\n  UserKnownHostsFile ~/.ssh/kh_%h /etc/ssh/kh_%r\nHost *\n  UserKnownHostsFile ~/.ssh/ignored\n",
        files: &[],
        hosts: &["web.example", "other"],
    },
    Case {
        name: "ProxyJump chains",
        config: "Host inner*\n  ProxyJump ops@bastion1:2222,bastion2\nHost *\n  ProxyJump never\n",
        files: &[],
        hosts: &["inner1", "outer"],
    },
    Case {
        name: "ProxyJump none, then a value elsewhere",
        config: "Host direct\n  ProxyJump none\nHost *\n  ProxyJump bastion\n",
        files: &[],
        hosts: &["direct", "other"],
    },
    Case {
        name: "ProxyCommand first blocks a later ProxyJump",
        config: "Host viacmd\n  ProxyCommand nc %h %p\nHost *\n  ProxyJump bastion\n",
        files: &[],
        hosts: &["viacmd", "other"],
    },
    Case {
        name: "StrictHostKeyChecking values",
        config: "Host a\n  StrictHostKeyChecking accept-new\nHost b\n  StrictHostKeyChecking no\nHost c\n  StrictHostKeyChecking yes\n",
        files: &[],
        hosts: &["a", "b", "c", "d"],
    },
    Case {
        name: "Host patterns are case-sensitive against the name given",
        config: "Host web01\n  User lower\nHost WEB01\n  User upper\n",
        files: &[],
        hosts: &["web01", "WEB01"],
    },
    Case {
        name: "nested Include with its own Host blocks",
        config: "Include a.conf\n",
        files: &[
            (".ssh/a.conf", "Host x*\n  Include b.conf\n"),
            (".ssh/b.conf", "User from-b\nHost *\n  Port 2700\n"),
        ],
        hosts: &["x1", "y1"],
    },
    Case {
        name: "an Include in a block that does not apply: its Host lines never apply",
        config: "Host nomatch\n  Include never.conf\nHost *\n  User after\n",
        files: &[(".ssh/never.conf", "Host *\n  User never\n  Port 2800\n")],
        hosts: &["x", "nomatch"],
    },
    Case {
        name: "ProxyJump none does not block a later ProxyCommand",
        config: "Host a\n  ProxyJump none\nHost *\n  ProxyCommand nc %h %p\n",
        files: &[],
        hosts: &["a", "b"],
    },
    Case {
        name: "Match localuser and a quoted identity file with a space",
        config: "Match localuser *\n  IdentityFile \"~/.ssh/my key\"\nMatch !localuser *\n  Port 1\n",
        files: &[],
        hosts: &["a"],
    },
    Case {
        name: "Include by absolute path and by ~",
        config: "Include ~/.ssh/t.conf\n",
        files: &[(
            ".ssh/t.conf",
            "Host t*\n  HostName tilde.example\n  Port 2900\n",
        )],
        hosts: &["t1", "u1"],
    },
    Case {
        name: "Match final all, none in any case, a service port, times with units",
        config: "Host a\n  ProxyJump NONE\n  Port ssh\n  ConnectTimeout 1m\nHost *\n  ProxyJump bastion\nMatch final all\n  User finalall\n",
        files: &[],
        hosts: &["a", "b"],
    },
    Case {
        name: "IgnoreUnknown lets an unknown keyword through",
        config: "IgnoreUnknown Frob*\nHost *\n  Frobnicate yes\n  User u\n",
        files: &[],
        hosts: &["x"],
    },
];

fn ssh_g(config: &Path, host: &str, home: &Path) -> BTreeMap<String, Vec<String>> {
    let o = Command::new("ssh")
        .args(["-F"])
        .arg(config)
        .args(["-G", host])
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("ssh -G");
    assert!(
        o.status.success(),
        "ssh -G {host}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some((k, v)) = line.split_once(' ') {
            m.entry(k.to_owned()).or_default().push(v.to_owned());
        }
    }
    m
}

fn passwd_home() -> String {
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    let o = Command::new("getent")
        .args(["passwd", &user])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .split(':')
        .nth(5)
        .unwrap_or("/")
        .to_owned()
}

fn compare(
    case: &Case,
    host: &str,
    r: &Resolved,
    ctx: &Context,
    g: &BTreeMap<String, Vec<String>>,
    defaults: &[String],
) {
    let what = format!("case `{}`, host `{host}`", case.name);
    let one = |k: &str| {
        g.get(k)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(r.effective_hostname(), one("hostname"), "{what}: hostname");
    assert_eq!(r.effective_port().to_string(), one("port"), "{what}: port");
    assert_eq!(r.effective_user(ctx), one("user"), "{what}: user");
    let ids: Vec<String> = r.identity_files.iter().map(|v| v.value.clone()).collect();
    let want_ids = g.get("identityfile").cloned().unwrap_or_default();
    if ids.is_empty() {
        assert_eq!(
            want_ids, defaults,
            "{what}: identity files (ssh's defaults)"
        );
    } else {
        assert_eq!(ids, want_ids, "{what}: identity files");
    }
    let kh: Vec<String> = match &r.user_known_hosts_files {
        Some(v) => v
            .value
            .iter()
            .map(|f| r.expand_path(f, ctx).unwrap())
            .collect(),
        None => vec![
            format!("{}/.ssh/known_hosts", ctx.tilde_home.display()),
            format!("{}/.ssh/known_hosts2", ctx.tilde_home.display()),
        ],
    };
    assert_eq!(
        kh.join(" "),
        one("userknownhostsfile"),
        "{what}: known hosts files"
    );
    let jump = r
        .proxy_jump
        .as_ref()
        .filter(|j| !j.value.eq_ignore_ascii_case("none"))
        .map(|j| j.value.clone())
        .unwrap_or_default();
    assert_eq!(jump, one("proxyjump"), "{what}: proxy jump");
    let cmd = r
        .proxy_command
        .as_ref()
        .filter(|c| !c.value.eq_ignore_ascii_case("none"))
        .map(|c| c.value.clone())
        .unwrap_or_default();
    assert_eq!(cmd, one("proxycommand"), "{what}: proxy command");
    let strict = match r.strict_host_key_checking.as_ref().map(|s| s.value) {
        Some(StrictHostKeyChecking::Yes) => "true",
        Some(StrictHostKeyChecking::No) => "false",
        Some(StrictHostKeyChecking::AcceptNew) => "accept-new",
        Some(StrictHostKeyChecking::Ask) | None => "ask",
    };
    assert_eq!(
        strict,
        one("stricthostkeychecking"),
        "{what}: strict host key checking"
    );
}

#[test]
fn every_config_of_the_corpus_resolves_as_ssh_g_says() {
    if Command::new("ssh").arg("-V").output().is_err() {
        panic!("the OpenSSH client (`ssh`) is needed: `make deps` installs it");
    }
    let mut checked = 0;
    for case in CASES {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join(".ssh")).unwrap();
        for (rel, text) in case.files {
            let p = home.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        let cfg = home.path().join("config-under-test");
        std::fs::write(&cfg, case.config).unwrap();
        let empty = home.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let defaults = ssh_g(&empty, "x", home.path())
            .remove("identityfile")
            .unwrap_or_default();
        let ctx = Context {
            home: home.path().to_owned(),
            tilde_home: passwd_home().into(),
            local_user: String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_owned(),
            local_host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
                .to_owned(),
            uid: Context::from_env().uid,
        };
        for host in case.hosts {
            let g = ssh_g(&cfg, host, home.path());
            let r = resolve(&cfg, host, &ctx)
                .unwrap_or_else(|e| panic!("case `{}`, host `{host}`: {e}", case.name));
            compare(case, host, &r, &ctx, &g, &defaults);
            checked += 1;
        }
    }
    assert!(
        CASES.len() >= 20 && checked >= 40,
        "{} cases, {checked} hosts",
        CASES.len()
    );
}

#[test]
fn values_say_where_they_were_read_and_bad_lines_are_named() {
    let home = tempfile::tempdir().unwrap();
    let cfg = home.path().join("config");
    std::fs::write(&cfg, "Host a\n  User u\n  Port notaport\n").unwrap();
    let ctx = Context {
        home: home.path().to_owned(),
        tilde_home: home.path().to_owned(),
        local_user: "me".into(),
        local_host: "here".into(),
        uid: Context::from_env().uid,
    };
    let e = resolve(&cfg, "a", &ctx).unwrap_err().to_string();
    assert!(e.ends_with(":3: Port: `notaport` is not a port"), "{e}");
    std::fs::write(
        &cfg,
        "Host a\n  User u\n  Port 22\nMatch exec \"true\"\n  Port 1\n",
    )
    .unwrap();
    let e = resolve(&cfg, "a", &ctx).unwrap_err().to_string();
    assert!(e.contains(":4: Match exec is not supported"), "{e}");
    // An unknown keyword is refused, as ssh refuses it (a typo must not go unnoticed).
    std::fs::write(&cfg, "Host a\n  Hostnmae 10.9.9.9\n").unwrap();
    let e = resolve(&cfg, "a", &ctx).unwrap_err().to_string();
    assert!(e.ends_with(":2: Bad configuration option: hostnmae"), "{e}");
    std::fs::write(
        &cfg,
        "IgnoreUnknown frob*\nHost a\n  User u\n  Frobnicate yes\n",
    )
    .unwrap();
    let r = resolve(&cfg, "a", &ctx).unwrap();
    let u = r.user.unwrap();
    assert_eq!((u.value.as_str(), u.origin.line), ("u", 3));
    assert_eq!(r.ignored.len(), 1);
    assert_eq!(r.ignored[0].1, "frobnicate");
    assert_eq!(r.ignored[0].0.line, 4);
    // What is given first stands, and the tokens and `Match user` see it.
    std::fs::write(
        &cfg,
        "Match user deploy\n  Port 2222\nHost *\n  User other\n  UserKnownHostsFile /kh/%r_%p_%h\n",
    )
    .unwrap();
    let given = fleet_ssh_config::Given {
        user: Some("deploy".into()),
        port: None,
        hostname: Some("10.0.0.5".into()),
    };
    let r = fleet_ssh_config::resolve_given(&cfg, "web", &ctx, &given, false).unwrap();
    assert_eq!(r.effective_user(&ctx), "deploy");
    assert_eq!(r.effective_port(), 2222);
    let kh = &r.user_known_hosts_files.as_ref().unwrap().value[0];
    assert_eq!(r.expand_path(kh, &ctx).unwrap(), "/kh/deploy_2222_10.0.0.5");
    // An included file others may write is refused, as ssh refuses it.
    use std::os::unix::fs::PermissionsExt;
    let inc = home.path().join(".ssh/open.conf");
    std::fs::create_dir_all(inc.parent().unwrap()).unwrap();
    std::fs::write(&inc, "User sneaky\n").unwrap();
    std::fs::set_permissions(&inc, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::write(&cfg, "Include open.conf\n").unwrap();
    let e = resolve(&cfg, "a", &ctx).unwrap_err().to_string();
    assert!(e.contains("open.conf: bad owner or permissions"), "{e}");
    std::fs::write(&cfg, "Host a\n  User u\n").unwrap();
    let r = resolve(&cfg, "b", &ctx).unwrap();
    assert_eq!(r.effective_user(&ctx), "me");
    std::fs::write(&cfg, "Host *\n  ProxyJump ops@b1:2222,b2\n").unwrap();
    let hops = resolve(&cfg, "t", &ctx).unwrap().jump_hosts().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(
        (hops[0].user.as_deref(), hops[0].host.as_str(), hops[0].port),
        (Some("ops"), "b1", Some(2222))
    );
    assert_eq!(
        (hops[1].user.as_deref(), hops[1].host.as_str(), hops[1].port),
        (None, "b2", None)
    );
}
