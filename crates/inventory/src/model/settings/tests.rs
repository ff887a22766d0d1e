//! The checks of each setting's value, and how settings cascade.

use std::path::PathBuf;
use std::time::Duration;

use super::is_within;
use crate::model::testkit::{error_at, load};
use crate::{Become, BecomeMethod, HostKeyPolicy, JumpHop, SecretSource, Source};

const PIN: &str = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8";

/// `drush` and `cv` are one command word each, quoted into shell commands: no control
/// character (the rule of remote paths), no leading `-`; a space is part of a path.
#[test]
fn commands_are_one_word_without_control_characters() {
    let expected = "expected a command name or path on the host";
    error_at(
        "[defaults]\ndrush = \"dr\\tush\"\n",
        2,
        9,
        &format!("invalid `drush` `dr\\tush`: holds a control character (`\\t` found); {expected}"),
    );
    error_at("[hosts.a]\ncv = \"cv\\r\"\n", 2, 6, "(`\\r` found)");
    error_at("[hosts.a]\ncv = \"cv\\n\"\n", 2, 6, "(`\\n` found)");
    error_at("[hosts.a]\ncv = \"c\\nv\"\n", 2, 6, "invalid `cv` `c\\nv`");
    error_at("[hosts.a]\ncv = \"c\\u0000v\"\n", 2, 6, "(`\\u{0}` found)");
    error_at("[hosts.a]\ncv = \"c\\u007fv\"\n", 2, 6, "control character");
    error_at(
        "[hosts.a.sites.s]\nroot = \"/r\"\nuri = \"https://a.org\"\ndrush = \"-rf\"\n",
        4,
        9,
        "invalid `drush` `-rf`: starts with `-`",
    );
    error_at(
        "[hosts.a]\ndrush = \" \"\n",
        2,
        9,
        "invalid `drush` ` `: is empty",
    );
    let inv = load(
        "[hosts.a]\ndrush = \" /opt/drush 8/drush \"\ncv = \"/usr/local/bin/cv.phar\"\n[hosts.a.sites.s]\nroot = \"/r\"\nuri = \"https://a.org\"\n",
    )
    .unwrap();
    let s = &inv.host("a").unwrap().sites[0];
    assert_eq!(s.drush, "/opt/drush 8/drush");
    assert_eq!(s.cv, "/usr/local/bin/cv.phar");
}

/// `user`, `web_user` and a jump hop's user are names `useradd` would create: each error
/// names its own key.
#[test]
fn user_names_are_posix_portable() {
    let rule = "a user name has at most 32 ASCII letters, digits, `.`, `_` and `-`, does not start with `-`, and may end in `$`";
    error_at(
        "[defaults]\nuser = \"a/b\"\n",
        2,
        8,
        &format!("invalid `user` `a/b`: `/` is not allowed; {rule}"),
    );
    error_at(
        "[hosts.a]\nweb_user = \"-rf\"\n",
        2,
        12,
        "invalid `web_user` `-rf`: it starts with `-`",
    );
    error_at(
        "[hosts.a.sites.s]\nroot = \"/r\"\nuri = \"https://a.org\"\nweb_user = \"www data\"\n",
        4,
        12,
        "invalid `web_user` `www data`: a space is not allowed",
    );
    error_at("[hosts.a]\nuser = \"$(id)\"\n", 2, 8, "`$` is not allowed");
    error_at("[hosts.a]\nuser = \"a$b\"\n", 2, 8, "`$` is not allowed");
    error_at("[hosts.a]\nuser = \"$\"\n", 2, 8, "it is only `$`");
    error_at(
        "[hosts.a]\nuser = \"\"\n",
        2,
        8,
        "invalid `user` ``: it is empty",
    );
    error_at(
        "[hosts.a]\nuser = \"r\\u00f6ot\"\n",
        2,
        8,
        "`ö` is not allowed",
    );
    error_at(
        "[hosts.a]\nuser = \"root\\n\"\n",
        2,
        8,
        "`\\n` is not allowed",
    );
    error_at(
        "[hosts.a]\nuser = \"ro\\tot\"\n",
        2,
        8,
        "invalid `user` `ro\\tot`: `\\t` is not allowed",
    );
    error_at(
        &format!("[hosts.a]\nuser = \"{}\"\n", "u".repeat(33)),
        2,
        8,
        "it has 33 characters",
    );
    error_at(
        "[hosts.a]\njump = \"ops;id@bastion\"\n",
        2,
        8,
        "invalid `jump` `ops;id@bastion`: bad user `ops;id`: `;` is not allowed",
    );
    error_at(
        "[hosts.a]\njump = \"ops\\n@b\"\n",
        2,
        8,
        "invalid `jump` `ops\\n@b`: bad user `ops\\n`: `\\n` is not allowed",
    );
    error_at(
        "[hosts.a]\njump = \"-oProxyCommand=x@b\"\n",
        2,
        8,
        "it starts with `-`",
    );

    let long = "u".repeat(32);
    let inv = load(&format!(
        "[hosts.a]\nuser = \" {long} \"\nweb_user = \"www-data\"\njump = \"first.last@bastion\"\n[hosts.b]\nuser = \"HOST01$\"\nweb_user = \"_apache.2\"\n[hosts.b.sites.s]\nroot = \"/r\"\nuri = \"https://a.org\"\n"
    ))
    .unwrap();
    let (a, b) = (inv.host("a").unwrap(), inv.host("b").unwrap());
    assert_eq!(a.user, long);
    assert_eq!(a.jump[0].user.as_deref(), Some("first.last"));
    assert_eq!(b.user, "HOST01$");
    assert_eq!(b.sites[0].web_user.as_deref(), Some("_apache.2"));
}

/// Groups set connection keys as `[defaults]` does: defaults < groups (parents before
/// children) < host, each setting recorded with the table it came from.
#[test]
fn groups_set_connection_keys_between_defaults_and_host() {
    let inv = load(
        r#"
[defaults]
user = "deploy"
port = 2200
[groups.web]
hosts = ["w1", "w2"]
children = ["canary"]
user = "web"
become = true
become_password_file = "secrets/web.pass"
[groups.canary]
hosts = ["w1"]
port = 2222
become_user = "www-data"
become_method = "doas"
[hosts.w2]
user = "ops"
become = "admin"
become_password_env = "W2_PASS"
password_env = "W2_LOGIN"
[hosts.w3]
"#,
    )
    .unwrap();
    let (w1, w2, w3) = (
        inv.host("w1").unwrap(),
        inv.host("w2").unwrap(),
        inv.host("w3").unwrap(),
    );
    assert_eq!((w1.user.as_str(), w1.port), ("web", 2222));
    assert_eq!(w1.source("user"), Source::Group("web".into()));
    assert_eq!(w1.source("port"), Source::Group("canary".into()));
    assert_eq!(
        w1.escalation,
        Some(Become {
            user: "www-data".into(),
            method: BecomeMethod::Doas,
            password: Some(SecretSource::File(PathBuf::from(
                "/etc/fleet/secrets/web.pass"
            ))),
        })
    );
    assert_eq!((w2.user.as_str(), w2.port), ("ops", 2200));
    assert_eq!(
        w2.escalation,
        Some(Become {
            user: "admin".into(),
            method: BecomeMethod::Sudo,
            password: Some(SecretSource::Env("W2_PASS".into())),
        })
    );
    assert_eq!(w2.password, Some(SecretSource::Env("W2_LOGIN".into())));
    assert_eq!(w2.source("become_user"), Source::Host);
    assert_eq!((w3.user.as_str(), w3.escalation.clone()), ("deploy", None));
    assert_eq!(w3.source("user"), Source::Defaults);
    assert_eq!(w3.password, None);
    // A host turns off the become its group gives.
    let inv =
        load("[groups.g]\nhosts = [\"a\"]\nbecome = true\n[hosts.a]\nbecome = false\n").unwrap();
    assert_eq!(inv.host("a").unwrap().escalation, None);
}

#[test]
fn become_and_password_errors_name_the_key() {
    error_at(
        "[groups.g]\nhosts = [\"a\"]\nbecome = 1\n",
        3,
        10,
        "`become` must be `true`, `false` or the user to become",
    );
    error_at(
        "[hosts.a]\nbecome = \"-u\"\n",
        2,
        10,
        "invalid `become` `-u`: it starts with `-`",
    );
    error_at(
        "[defaults]\nbecome_method = \"pbrun\"\n",
        2,
        17,
        "invalid `become_method` `pbrun`, expected `sudo`, `doas` or `su`",
    );
    error_at(
        "[hosts.a]\nbecome_password_file = \"f\"\nbecome_password_env = \"E\"\n",
        3,
        23,
        "`become_password_file` and `become_password_env` in one table: keep one",
    );
    error_at(
        "[hosts.a]\npassword_env = \"A-B\"\n",
        2,
        16,
        "invalid `password_env` `A-B`: expected an environment variable name",
    );
    error_at(
        "[groups.g]\npassword_file = \" \"\n",
        2,
        17,
        "`password_file` is empty",
    );
    error_at(
        "[groups.g]\npassword = \"x\"\n",
        2,
        1,
        "unknown key `password`",
    );
}

/// A pin replaces the known_hosts check a policy chooses: inherited from `[defaults]`,
/// the policy gives way to a host's pin; in the same host table, the two are refused.
#[test]
fn host_key_and_host_key_policy() {
    for policy in ["accept-new", "strict"] {
        error_at(
            &format!("[hosts.\"w[1:2]\"]\nhost_key_policy = \"{policy}\"\nhost_key = \"{PIN}\"\n"),
            2,
            19,
            "host `w[1:2]` sets both `host_key_policy` and `host_key`: a pinned `host_key` is checked instead of known_hosts, so `host_key_policy` would be ignored; keep one",
        );
    }
    // The order in the table does not matter, nor whether the pin itself is valid.
    error_at(
        "[hosts.a]\nhost_key = \"x\"\nhost_key_policy = \"strict\"\n",
        3,
        19,
        "sets both",
    );
    let inv = load(&format!(
        "[defaults]\nhost_key_policy = \"accept-new\"\n[hosts.a]\nhost_key = \"  {PIN} \"\n[hosts.b]\n[hosts.c]\nhost_key_policy = \" strict \"\n"
    ))
    .unwrap();
    assert_eq!(
        inv.host("a").unwrap().host_key_policy,
        HostKeyPolicy::Pinned(PIN.into())
    );
    assert_eq!(
        inv.host("b").unwrap().host_key_policy,
        HostKeyPolicy::AcceptNew
    );
    // `host_key_policy` is trimmed like `host_key`, of spaces only.
    assert_eq!(
        inv.host("c").unwrap().host_key_policy,
        HostKeyPolicy::Strict
    );
    // Errors quote the value on one line.
    error_at(
        "[defaults]\nhost_key_policy = \"strict\\nx\"\n",
        2,
        19,
        "invalid `host_key_policy` `strict\\nx`",
    );
    error_at(
        "[hosts.a]\nhost_key = \"SHA256:a\\nb\"\n",
        2,
        12,
        "invalid `host_key` `SHA256:a\\nb`",
    );
}

#[test]
fn is_within_compares_components() {
    #[track_caller]
    fn case(path: &str, dir: &str, expected: bool) {
        assert_eq!(is_within(path, dir), expected, "{path} in {dir}");
    }
    case("/var/www/d7", "/var/www/d7", true);
    case("/var/www/d7/sites", "/var/www/d7", true);
    case("/var/www//d7/sites", "/var/www/d7/", true);
    case("/anything", "/", true);
    case("/", "/", true);
    case("/var/www/d7x", "/var/www/d7", false);
    case("/var/www", "/var/www/d7", false);
    case("/", "/var", false);
}

#[test]
fn paths_jump_and_pins_resolve() {
    let inv = load(
        r#"
[defaults]
identity_file = ["keys/id", "/abs/id"]
jump = "ops@bastion:2222,inner"
[hosts.a]
host_key = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"
"#,
    )
    .unwrap();
    let a = inv.host("a").unwrap();
    assert_eq!(
        a.identity_files,
        [
            PathBuf::from("/etc/fleet/keys/id"),
            PathBuf::from("/abs/id")
        ]
    );
    assert_eq!(
        a.jump,
        [
            JumpHop {
                user: Some("ops".into()),
                host: "bastion".into(),
                port: Some(2222),
                identity_files: Vec::new(),
            },
            JumpHop {
                user: None,
                host: "inner".into(),
                port: None,
                identity_files: Vec::new(),
            },
        ]
    );
    assert!(matches!(a.host_key_policy, HostKeyPolicy::Pinned(ref f) if f.starts_with("SHA256:")));
    assert_eq!(a.connect_timeout, Duration::from_secs(10));
    assert_eq!(a.command_timeout, Duration::from_secs(600));
}
