//! Properties of the ssh_config reader (`make test`): a config (and a file it includes) made
//! of arbitrary text or of valid lines recombined and corrupted is read without panic, the
//! same way twice, and a refusal names the file and line (or the file) it is about; what is
//! read can be used (tokens, jump hosts, the effective values) without panic either.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::{ConfigError, Context, resolve};

const LINES: &[&str] = &[
    "Host *",
    "Host web* !web2 \"quoted name\"",
    "Host",
    "Host=db?",
    "Match host web* user deploy",
    "Match all",
    "Match final",
    "Match canonical",
    "Match !originalhost x*",
    "Match exec \"true\"",
    "Match localuser",
    "  HostName %h.example.com",
    "  HostName 10.0.0.1",
    "  User deploy",
    "  User %u",
    "  Port 2222",
    "  Port 99999",
    "  Port=22",
    "  IdentityFile ~/.ssh/id_%r",
    "  IdentityFile \"~/.ssh/with space\"",
    "  IdentitiesOnly yes",
    "  IdentityAgent none",
    "  CertificateFile ~/.ssh/c.pub",
    "  ProxyJump deploy@bastion:2200,other",
    "  ProxyJump none",
    "  ProxyCommand ssh -W %h:%p bastion",
    "  StrictHostKeyChecking accept-new",
    "  StrictHostKeyChecking maybe",
    "  HashKnownHosts yes",
    "  UserKnownHostsFile ~/.ssh/kh1 ~/.ssh/kh2",
    "  ConnectTimeout 10",
    "  ConnectTimeout -1",
    "  ServerAliveInterval 5",
    "  ServerAliveCountMax 3",
    "  IgnoreUnknown Foo*",
    "  FooBar yes",
    "  HostKeyAlias x",
    "  CanonicalizeHostname yes",
    "  SendEnv LANG",
    "Include inc.conf",
    "Include inc*.conf missing.conf",
    "# comment",
    "",
];

const TOKENS: &[&str] = &[
    "\"",
    "=",
    " ",
    "\t",
    "\n",
    "%",
    "%%",
    "%h",
    "%z",
    "~",
    "!",
    "*",
    "?",
    ",",
    "@",
    ":",
    "#",
    "\\",
    "\0",
    "é",
    "\u{202e}",
    "99999999999999999999",
    "-",
    "[",
    "]",
];

fn near_valid() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(select(LINES), 0..16),
        proptest::collection::vec(
            (any::<Index>(), 0u8..4, select(TOKENS), any::<Index>()),
            0..4,
        ),
    )
        .prop_map(|(lines, edits)| {
            let mut text = lines.join("\n") + "\n";
            for (at, op, token, other) in &edits {
                let pos = boundary(&text, at.index(text.len() + 1));
                match op {
                    0 => text.insert_str(pos, token),
                    1 => {
                        let end = boundary(&text, pos + other.index(8));
                        text.replace_range(pos..end, "");
                    }
                    2 => text.truncate(pos),
                    _ => {
                        let end = boundary(&text, pos + 1);
                        text.replace_range(pos..end, token);
                    }
                }
            }
            text
        })
}

fn boundary(text: &str, mut pos: usize) -> usize {
    pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

/// Writes `config` and `included` (as `~/.ssh/inc.conf`) under a fresh home; `Include`
/// lines are relative, so they only ever reach this home.
fn home_with(config: &str, included: &str) -> (tempfile::TempDir, Context) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh = dir.path().join(".ssh");
    std::fs::create_dir(&ssh).expect("mkdir");
    std::fs::write(ssh.join("config"), config).expect("config");
    std::fs::write(ssh.join("inc.conf"), included).expect("inc.conf");
    let ctx = Context {
        home: dir.path().to_owned(),
        tilde_home: dir.path().to_owned(),
        local_user: "me".into(),
        local_host: "ctl.example.com".into(),
        uid: u32::MAX,
    };
    (dir, ctx)
}

/// Asserts that `e` names a file of `home` and, for a bad line, a line inside that file.
#[track_caller]
fn names_file_line(e: &ConfigError, home: &Path) {
    let msg = e.to_string();
    let (file, line) = match e {
        ConfigError::Bad { file, line, .. } => (file, Some(*line)),
        ConfigError::Io { file, .. } => (file, None),
    };
    assert!(
        file.starts_with(home),
        "names a file outside the home: {msg}"
    );
    assert!(msg.starts_with(&format!("{}:", file.display())), "{msg}");
    if let Some(line) = line {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            (1..=text.lines().count()).contains(&line),
            "line {line} is not in `{}`: {msg}",
            file.display()
        );
        assert!(
            msg.starts_with(&format!("{}:{line}: ", file.display())),
            "{msg}"
        );
    }
    assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 250, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn configs_read_without_panic_the_same_twice_and_name_file_and_line(
        config in prop_oneof![near_valid(), ".{0,200}"],
        included in prop_oneof![near_valid(), Just(String::new()), Just("Include inc.conf\n".to_owned())],
        host in select(&["web1", "web2", "db1", "x", "quoted name", "10.0.0.1", ""][..]),
    ) {
        let (dir, ctx) = home_with(&config, &included);
        let path = dir.path().join(".ssh/config");
        let first = resolve(&path, host, &ctx);
        prop_assert_eq!(&first, &resolve(&path, host, &ctx));
        match first {
            Ok(r) => {
                let _ = (r.effective_hostname(), r.effective_port(), r.effective_user(&ctx));
                let _ = r.tokens(&ctx);
                for v in &r.identity_files {
                    let _ = r.expand_path(&v.value, &ctx);
                }
                if let Err(e) = r.jump_hosts() {
                    names_file_line(&e, dir.path());
                }
            }
            Err(e) => names_file_line(&e, dir.path()),
        }
    }
}
