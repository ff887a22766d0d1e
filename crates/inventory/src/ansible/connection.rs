//! Ansible's variables at one level (a group, a host) as fleet's inventory keys: the
//! connection variables Ansible's `ssh` plugin reads become fleet settings, the ones fleet
//! cannot honour are refused, and the rest are plain variables.

use std::collections::BTreeMap;

use super::model::{Layer, Origin, Val, Var, python_float};
use super::shlex;
use crate::error::{InventoryError, printable};

/// A fleet setting an Ansible connection variable gives. The order is the order in which
/// they are written in the converted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Address,
    Port,
    User,
    IdentityFile,
    Jump,
    ConnectTimeout,
    Become,
    BecomeUser,
    BecomeMethod,
}

impl Key {
    /// The key's name in fleet's TOML.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Address => "address",
            Key::Port => "port",
            Key::User => "user",
            Key::IdentityFile => "identity_file",
            Key::Jump => "jump",
            Key::ConnectTimeout => "connect_timeout",
            Key::Become => "become",
            Key::BecomeUser => "become_user",
            Key::BecomeMethod => "become_method",
        }
    }
}

/// A converted value and the Ansible variable it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub(crate) value: toml::Value,
    pub(crate) at: Origin,
    pub(crate) from: String,
}

/// One level's variables in fleet's terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Translated {
    pub(crate) settings: BTreeMap<Key, Item>,
    pub(crate) vars: BTreeMap<String, Item>,
    /// What this level clears, which fleet's TOML cannot write: a variable set to null,
    /// ssh arguments without a jump host (by fleet key or variable name).
    pub(crate) cleared: BTreeMap<String, Origin>,
}

enum Class {
    Setting(Key),
    SshArgs,
    Password { for_become: bool },
    Connection,
    ShellType,
    ShellExecutable,
    Refused(&'static str),
    Drop,
    Unknown,
    Plain,
}

fn classify(key: &str) -> Class {
    match key {
        "ansible_host" | "ansible_ssh_host" => Class::Setting(Key::Address),
        "ansible_port" | "ansible_ssh_port" => Class::Setting(Key::Port),
        "ansible_user" | "ansible_ssh_user" => Class::Setting(Key::User),
        "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
            Class::Setting(Key::IdentityFile)
        }
        "ansible_timeout" | "ansible_ssh_timeout" => Class::Setting(Key::ConnectTimeout),
        "ansible_become" | "ansible_sudo" => Class::Setting(Key::Become),
        "ansible_become_user" | "ansible_sudo_user" => Class::Setting(Key::BecomeUser),
        "ansible_become_method" => Class::Setting(Key::BecomeMethod),
        "ansible_ssh_common_args" | "ansible_ssh_extra_args" => Class::SshArgs,
        "ansible_password" | "ansible_ssh_pass" | "ansible_ssh_password" => {
            Class::Password { for_become: false }
        }
        "ansible_become_pass"
        | "ansible_become_password"
        | "ansible_sudo_pass"
        | "ansible_sudo_password"
        | "ansible_su_pass"
        | "ansible_su_password" => Class::Password { for_become: true },
        "ansible_connection" => Class::Connection,
        "ansible_shell_type" => Class::ShellType,
        "ansible_shell_executable" => Class::ShellExecutable,
        // Read for the merge order from the inventory file (see `Parsed::set_group_var`);
        // in a vars file Ansible ignores it too.
        "ansible_group_priority" => Class::Drop,
        "ansible_private_key_passphrase" => Class::Refused(
            "it is a plaintext key passphrase, which fleet does not read from an inventory: load the key into `ssh-agent`",
        ),
        "ansible_ssh_executable" => {
            Class::Refused("fleet has its own SSH client and runs no `ssh` program")
        }
        "ansible_ssh_args" => Class::Refused(
            "it replaces the options Ansible gives `ssh`, and fleet runs no `ssh` program (a jump host goes in `ansible_ssh_common_args` as `-J HOST`)",
        ),
        "ansible_become_exe"
        | "ansible_become_flags"
        | "ansible_sudo_exe"
        | "ansible_sudo_flags" => Class::Refused("fleet runs `sudo`, `doas` or `su` its own way"),
        "ansible_host_key_checking" | "ansible_ssh_host_key_checking" => Class::Refused(
            "fleet always checks host keys (`host_key_policy = \"accept-new\"` in fleet's inventory accepts unknown ones)",
        ),
        // Read by Ansible's modules or its file transfers, never by fleet: kept as plain
        // variables, as harmless as any other.
        "ansible_python_interpreter"
        | "ansible_pipelining"
        | "ansible_ssh_pipelining"
        | "ansible_ssh_retries"
        | "ansible_scp_extra_args"
        | "ansible_sftp_extra_args"
        | "ansible_sftp_batch_mode"
        | "ansible_scp_if_ssh"
        | "ansible_ssh_transfer_method"
        | "ansible_control_path"
        | "ansible_control_path_dir"
        | "ansible_remote_tmp"
        | "ansible_async_dir" => Class::Plain,
        k if k.starts_with("ansible_") && k.ends_with("_interpreter") => Class::Plain,
        k if k.starts_with("ansible_") => Class::Unknown,
        _ => Class::Plain,
    }
}

/// `layer` in fleet's terms.
///
/// # Errors
///
/// A variable fleet refuses (plaintext passwords, non-SSH connections, ssh options other
/// than a jump host, unknown `ansible_*` variables), a value of the wrong type, two
/// spellings of one setting with different values, or a null inside a list.
pub(crate) fn translate(layer: &Layer) -> Result<Translated, InventoryError> {
    let mut out = Translated::default();
    let mut jump_args: Vec<(&str, &Var)> = Vec::new();
    for (k, var) in layer.iter() {
        let at = &var.at;
        match classify(k) {
            Class::Setting(key) => {
                let value = setting(key, k, &var.val, at)?;
                let item = Item {
                    value,
                    at: at.clone(),
                    from: k.to_owned(),
                };
                same_setting(&mut out, key, item)?;
            }
            Class::SshArgs => jump_args.push((k, var)),
            Class::Password { for_become } => {
                let (file, env) = if for_become {
                    ("become_password_file", "become_password_env")
                } else {
                    ("password_file", "password_env")
                };
                return Err(at.err(format!(
                    "`{k}` holds a plaintext password, which fleet refuses: fleet reads passwords only from a 0600 file or an environment variable (`{file}` or `{env}`)"
                )));
            }
            Class::Connection => {
                let v = text(k, &var.val, at)?;
                if !matches!(v.as_str(), "ssh" | "smart" | "paramiko") {
                    return Err(at.err(format!(
                        "`{k}` `{}` is not supported: fleet connects over SSH only (`ssh`, `smart` or `paramiko`)",
                        printable(&v)
                    )));
                }
            }
            Class::ShellType => {
                let v = text(k, &var.val, at)?;
                if v != "sh" {
                    return Err(at.err(format!(
                        "`{k}` `{}` is not supported: fleet's commands are POSIX `sh`",
                        printable(&v)
                    )));
                }
            }
            Class::ShellExecutable => {
                let v = text(k, &var.val, at)?;
                if v != "/bin/sh" && v != "sh" {
                    return Err(at.err(format!(
                        "`{k}` `{}` is not supported: fleet does not choose the remote shell, which runs POSIX `sh` commands",
                        printable(&v)
                    )));
                }
            }
            Class::Refused(why) => {
                return Err(at.err(format!("`{k}` cannot be honoured: {why}")));
            }
            Class::Drop => {}
            Class::Unknown => {
                return Err(at.err(format!(
                    "`{k}` is an Ansible variable fleet does not know, so it cannot tell whether it changes how Ansible connects: remove it (or rename it if it is your own variable)"
                )));
            }
            Class::Plain => match toml_value(&var.val, k, at)? {
                Some(value) => {
                    out.vars.insert(
                        k.to_owned(),
                        Item {
                            value,
                            at: at.clone(),
                            from: k.to_owned(),
                        },
                    );
                }
                None => {
                    out.cleared.insert(k.to_owned(), at.clone());
                }
            },
        }
    }
    for (k, var) in jump_args {
        match jump(k, &var.val, &var.at)? {
            Some(j) => same_setting(
                &mut out,
                Key::Jump,
                Item {
                    value: toml::Value::String(j),
                    at: var.at.clone(),
                    from: k.to_owned(),
                },
            )?,
            None => {
                out.cleared
                    .entry(Key::Jump.name().to_owned())
                    .or_insert_with(|| var.at.clone());
            }
        }
    }
    if out.settings.contains_key(&Key::Jump) {
        out.cleared.remove(Key::Jump.name());
    }
    Ok(out)
}

/// Records `item` for `key`, refusing a second spelling (`ansible_user` and
/// `ansible_ssh_user`) with another value: Ansible's choice between them depends on its
/// version and plugin.
fn same_setting(out: &mut Translated, key: Key, item: Item) -> Result<(), InventoryError> {
    if let Some(old) = out.settings.get(&key) {
        if old.value != item.value {
            let (first, second) = if (old.at.line, old.at.column) <= (item.at.line, item.at.column)
            {
                (old, &item)
            } else {
                (&item, old)
            };
            return Err(second.at.err(format!(
                "`{}` and `{}` ({}) both set `{}`, to different values: keep one",
                second.from,
                first.from,
                first.at,
                key.name()
            )));
        }
        return Ok(());
    }
    out.settings.insert(key, item);
    Ok(())
}

/// How a value reads in an error.
fn show(v: &Val) -> String {
    match v {
        Val::Null => "null".into(),
        Val::List(_) => "a list".into(),
        Val::Map(_) => "a mapping".into(),
        other => format!("`{}`", printable(&other.key_text().unwrap_or_default())),
    }
}

/// A string setting's text: a string, or a number written without quotes.
fn text(k: &str, v: &Val, at: &Origin) -> Result<String, InventoryError> {
    let s = match v {
        Val::Str(s) => s.clone(),
        Val::Int(i) => i.to_string(),
        Val::Float(f) => python_float(*f),
        other => {
            return Err(at.err(format!("`{k}` must be a string, got {}", show(other))));
        }
    };
    if s.contains("{{") || s.contains("{%") {
        return Err(at.err(format!(
            "`{k}` `{}` is a Jinja template, which fleet does not evaluate: write the value itself",
            printable(&s)
        )));
    }
    Ok(s)
}

/// Ansible's `boolean()`: `yes`/`no`, `true`/`false`, `on`/`off`, `y`/`n`, `t`/`f`, `1`/`0`.
fn boolean(k: &str, v: &Val, at: &Origin) -> Result<bool, InventoryError> {
    let b = match v {
        Val::Bool(b) => Some(*b),
        Val::Int(1) => Some(true),
        Val::Int(0) => Some(false),
        Val::Float(f) if *f == 1.0 => Some(true),
        Val::Float(f) if *f == 0.0 => Some(false),
        Val::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    };
    b.ok_or_else(|| {
        at.err(format!(
            "`{k}` must be a boolean (`true`/`false`, `yes`/`no`), got {}",
            show(v)
        ))
    })
}

/// A whole number, or a string of digits (Ansible converts those).
fn number(v: &Val) -> Option<i64> {
    match v {
        Val::Int(i) => Some(*i),
        Val::Str(s) if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) => {
            s.trim().parse().ok()
        }
        _ => None,
    }
}

fn setting(key: Key, k: &str, v: &Val, at: &Origin) -> Result<toml::Value, InventoryError> {
    use toml::Value as T;
    Ok(match key {
        Key::Address | Key::User | Key::IdentityFile | Key::BecomeUser => {
            T::String(text(k, v, at)?)
        }
        Key::Port => {
            let p = number(v)
                .filter(|p| (1..=65535).contains(p))
                .ok_or_else(|| {
                    at.err(format!(
                        "invalid `{k}` {}: must be a port number from 1 to 65535",
                        show(v)
                    ))
                })?;
            T::Integer(p)
        }
        Key::ConnectTimeout => {
            let s = number(v).filter(|s| *s > 0).ok_or_else(|| {
                at.err(format!(
                    "invalid `{k}` {}: must be a whole number of seconds, at least 1",
                    show(v)
                ))
            })?;
            T::String(format!("{s}s"))
        }
        Key::Become => T::Boolean(boolean(k, v, at)?),
        Key::BecomeMethod => {
            let m = text(k, v, at)?;
            if !matches!(m.as_str(), "sudo" | "doas" | "su") {
                return Err(at.err(format!(
                    "`{k}` `{}` is not supported: fleet becomes another user with `sudo`, `doas` or `su`",
                    printable(&m)
                )));
            }
            T::String(m)
        }
        // `classify` gives no variable this key (jump hosts come from the ssh arguments);
        // the text is what it would be.
        Key::Jump => T::String(text(k, v, at)?),
    })
}

/// The jump host in `ansible_ssh_common_args`/`ansible_ssh_extra_args` (`-J HOST`,
/// `-JHOST`, `-o ProxyJump=HOST`, `-oProxyJump HOST`); `None` when they name none (or
/// `none`).
fn jump(k: &str, v: &Val, at: &Origin) -> Result<Option<String>, InventoryError> {
    let args = text(k, v, at)?;
    let words = shlex::split(&args)
        .map_err(|why| at.err(format!("cannot split `{k}` `{}`: {why}", printable(&args))))?;
    let only = "fleet has its own SSH client and takes only a jump host (`-J HOST` or `-o ProxyJump=HOST`) from the ssh arguments";
    let mut found: Vec<String> = Vec::new();
    let mut words = words.into_iter().map(|w| w.text);
    while let Some(w) = words.next() {
        let (flag, rest) = if let Some(r) = w.strip_prefix("-J") {
            ("J", r.to_owned())
        } else if let Some(r) = w.strip_prefix("-o") {
            ("o", r.to_owned())
        } else {
            return Err(at.err(format!(
                "`{k}` holds `{}`, which fleet cannot honour: {only}",
                printable(&w)
            )));
        };
        let value = if rest.is_empty() {
            words
                .next()
                .ok_or_else(|| at.err(format!("`{k}`: `-{flag}` needs a value")))?
        } else {
            rest
        };
        let host = if flag == "J" {
            value
        } else {
            let (name, val) = value
                .split_once(|c: char| c == '=' || c.is_whitespace())
                .map(|(n, v)| (n.trim(), v.trim()))
                .unwrap_or((value.trim(), ""));
            if name.eq_ignore_ascii_case("ProxyJump") {
                val.to_owned()
            } else if name.eq_ignore_ascii_case("ProxyCommand") {
                return Err(at.err(format!(
                    "`{k}` holds `-o {}`, which fleet cannot honour: fleet runs no local command to reach a host; name the jump host with `-J HOST`",
                    printable(&value)
                )));
            } else {
                return Err(at.err(format!(
                    "`{k}` holds `-o {}`, which fleet cannot honour: {only}",
                    printable(&value)
                )));
            }
        };
        if host.is_empty() {
            return Err(at.err(format!("`{k}`: the jump host is empty")));
        }
        if !host.eq_ignore_ascii_case("none") {
            found.push(host);
        }
    }
    found.dedup();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        _ => Err(at.err(format!(
            "`{k}` names jump hosts more than once ({}): give them as one comma-separated `-J`",
            found.join(", ")
        ))),
    }
}

/// `v` as a TOML value; `None` for null (which TOML cannot hold: the variable is left out,
/// and a null in a mapping drops that key).
fn toml_value(v: &Val, what: &str, at: &Origin) -> Result<Option<toml::Value>, InventoryError> {
    use toml::Value as T;
    Ok(Some(match v {
        Val::Null => return Ok(None),
        Val::Bool(b) => T::Boolean(*b),
        Val::Int(i) => T::Integer(*i),
        Val::Float(f) => T::Float(*f),
        Val::Str(s) => T::String(s.clone()),
        Val::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let inner = format!("{what}[{i}]");
                match toml_value(item, &inner, at)? {
                    Some(x) => out.push(x),
                    None => {
                        return Err(at.err(format!(
                            "`{inner}` is null, which fleet's TOML cannot hold in a list"
                        )));
                    }
                }
            }
            T::Array(out)
        }
        Val::Map(entries) => {
            let mut t = toml::Table::new();
            for (k, x) in entries {
                if let Some(x) = toml_value(x, &format!("{what}.{k}"), at)? {
                    t.insert(k.clone(), x);
                }
            }
            T::Table(t)
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn layer(vars: &[(&str, Val)]) -> Layer {
        let file: Arc<Path> = Arc::from(Path::new("/inv/hosts"));
        let mut l = Layer::default();
        for (i, (k, v)) in vars.iter().enumerate() {
            l.set(
                k,
                Var {
                    val: v.clone(),
                    at: Origin::new(&file, i + 1, 1),
                },
            );
        }
        l
    }

    fn s(v: &str) -> Val {
        Val::Str(v.into())
    }

    #[track_caller]
    fn refused(vars: &[(&str, Val)], line: usize, message: &str) {
        let e = translate(&layer(vars)).expect_err("must fail");
        assert_eq!(e.to_string(), format!("/inv/hosts:{line}:1: {message}"));
    }

    #[track_caller]
    fn setting_of(vars: &[(&str, Val)], key: Key) -> toml::Value {
        translate(&layer(vars)).unwrap().settings[&key]
            .value
            .clone()
    }

    #[test]
    fn connection_variables_become_settings() {
        use toml::Value as T;
        let t = translate(&layer(&[
            ("ansible_host", s("10.0.0.1")),
            ("ansible_port", s("2222")),
            ("ansible_user", s("deploy")),
            ("ansible_ssh_private_key_file", s("~/.ssh/id")),
            ("ansible_become", s("yes")),
            ("ansible_become_user", s("root")),
            ("ansible_become_method", s("doas")),
            ("ansible_timeout", Val::Int(30)),
            (
                "ansible_ssh_common_args",
                s("-o ProxyJump=ops@bastion:2222"),
            ),
            ("ansible_connection", s("ssh")),
            ("ansible_shell_type", s("sh")),
            ("ansible_python_interpreter", s("/usr/bin/python3")),
            ("ntp", s("pool.ntp.org")),
        ]))
        .unwrap();
        let got: Vec<(&str, T)> = t
            .settings
            .iter()
            .map(|(k, i)| (k.name(), i.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("address", T::String("10.0.0.1".into())),
                ("port", T::Integer(2222)),
                ("user", T::String("deploy".into())),
                ("identity_file", T::String("~/.ssh/id".into())),
                ("jump", T::String("ops@bastion:2222".into())),
                ("connect_timeout", T::String("30s".into())),
                ("become", T::Boolean(true)),
                ("become_user", T::String("root".into())),
                ("become_method", T::String("doas".into())),
            ]
        );
        let vars: Vec<&str> = t.vars.keys().map(String::as_str).collect();
        assert_eq!(vars, ["ansible_python_interpreter", "ntp"]);
    }

    #[test]
    fn jump_hosts_from_ssh_arguments() {
        for args in [
            "-J bastion",
            "-Jbastion",
            "-o ProxyJump=bastion",
            "-oProxyJump=bastion",
            "-o 'ProxyJump bastion'",
            "-o proxyjump=bastion",
        ] {
            assert_eq!(
                setting_of(&[("ansible_ssh_common_args", s(args))], Key::Jump),
                toml::Value::String("bastion".into()),
                "{args}"
            );
        }
        let both = translate(&layer(&[
            ("ansible_ssh_common_args", s("-J a")),
            ("ansible_ssh_extra_args", s("")),
        ]))
        .unwrap();
        assert_eq!(both.settings[&Key::Jump].value.as_str(), Some("a"));
        assert!(both.cleared.is_empty());
        let none = translate(&layer(&[(
            "ansible_ssh_extra_args",
            s("-o ProxyJump=none"),
        )]))
        .unwrap();
        assert!(none.settings.is_empty());
        assert!(none.cleared.contains_key("jump"));
    }

    #[test]
    fn booleans_as_ansible_reads_them() {
        for (v, b) in [
            (s("yes"), true),
            (s("True"), true),
            (s("on"), true),
            (Val::Int(1), true),
            (Val::Bool(true), true),
            (s("no"), false),
            (s("false"), false),
            (Val::Bool(false), false),
        ] {
            assert_eq!(
                setting_of(&[("ansible_become", v.clone())], Key::Become),
                toml::Value::Boolean(b),
                "{v:?}"
            );
        }
    }

    #[test]
    fn refusals() {
        let secret = "fleet reads passwords only from a 0600 file or an environment variable";
        for k in [
            "ansible_password",
            "ansible_ssh_pass",
            "ansible_ssh_password",
        ] {
            refused(
                &[("x", s("1")), (k, s("hunter2"))],
                2,
                &format!(
                    "`{k}` holds a plaintext password, which fleet refuses: {secret} (`password_file` or `password_env`)"
                ),
            );
        }
        for k in [
            "ansible_become_pass",
            "ansible_become_password",
            "ansible_sudo_pass",
        ] {
            refused(
                &[(k, s("hunter2"))],
                1,
                &format!(
                    "`{k}` holds a plaintext password, which fleet refuses: {secret} (`become_password_file` or `become_password_env`)"
                ),
            );
        }
        refused(
            &[("ansible_become_method", s("pbrun"))],
            1,
            "`ansible_become_method` `pbrun` is not supported: fleet becomes another user with `sudo`, `doas` or `su`",
        );
        refused(
            &[("ansible_connection", s("local"))],
            1,
            "`ansible_connection` `local` is not supported: fleet connects over SSH only (`ssh`, `smart` or `paramiko`)",
        );
        refused(
            &[("ansible_connection", s("winrm"))],
            1,
            "`ansible_connection` `winrm` is not supported: fleet connects over SSH only (`ssh`, `smart` or `paramiko`)",
        );
        refused(
            &[("ansible_ssh_common_args", s("-o StrictHostKeyChecking=no"))],
            1,
            "`ansible_ssh_common_args` holds `-o StrictHostKeyChecking=no`, which fleet cannot honour: fleet has its own SSH client and takes only a jump host (`-J HOST` or `-o ProxyJump=HOST`) from the ssh arguments",
        );
        refused(
            &[("ansible_ssh_extra_args", s("-J b -v"))],
            1,
            "`ansible_ssh_extra_args` holds `-v`, which fleet cannot honour: fleet has its own SSH client and takes only a jump host (`-J HOST` or `-o ProxyJump=HOST`) from the ssh arguments",
        );
        refused(
            &[(
                "ansible_ssh_common_args",
                s("-o ProxyCommand=\"ssh -W %h:%p bastion\""),
            )],
            1,
            "`ansible_ssh_common_args` holds `-o ProxyCommand=ssh -W %h:%p bastion`, which fleet cannot honour: fleet runs no local command to reach a host; name the jump host with `-J HOST`",
        );
        refused(
            &[("ansible_ssh_executable", s("/opt/ssh"))],
            1,
            "`ansible_ssh_executable` cannot be honoured: fleet has its own SSH client and runs no `ssh` program",
        );
        refused(
            &[("ansible_shell_type", s("csh"))],
            1,
            "`ansible_shell_type` `csh` is not supported: fleet's commands are POSIX `sh`",
        );
        refused(
            &[("ansible_shell_executable", s("/bin/bash"))],
            1,
            "`ansible_shell_executable` `/bin/bash` is not supported: fleet does not choose the remote shell, which runs POSIX `sh` commands",
        );
        refused(
            &[("ansible_winrm_transport", s("ntlm"))],
            1,
            "`ansible_winrm_transport` is an Ansible variable fleet does not know, so it cannot tell whether it changes how Ansible connects: remove it (or rename it if it is your own variable)",
        );
        refused(
            &[("ansible_port", s("ssh"))],
            1,
            "invalid `ansible_port` `ssh`: must be a port number from 1 to 65535",
        );
        refused(
            &[("ansible_port", Val::Int(0))],
            1,
            "invalid `ansible_port` `0`: must be a port number from 1 to 65535",
        );
        refused(
            &[("ansible_become", s("maybe"))],
            1,
            "`ansible_become` must be a boolean (`true`/`false`, `yes`/`no`), got `maybe`",
        );
        refused(
            &[("ansible_user", s("{{ lookup('env', 'USER') }}"))],
            1,
            "`ansible_user` `{{ lookup('env', 'USER') }}` is a Jinja template, which fleet does not evaluate: write the value itself",
        );
        refused(
            &[("ansible_user", Val::List(vec![]))],
            1,
            "`ansible_user` must be a string, got a list",
        );
        refused(
            &[("ansible_user", s("a")), ("ansible_ssh_user", s("b"))],
            2,
            "`ansible_ssh_user` and `ansible_user` (/inv/hosts:1:1) both set `user`, to different values: keep one",
        );
        refused(
            &[("servers", Val::List(vec![Val::Int(1), Val::Null]))],
            1,
            "`servers[1]` is null, which fleet's TOML cannot hold in a list",
        );
    }

    #[test]
    fn plain_values_and_nulls() {
        let t = translate(&layer(&[
            ("n", Val::Null),
            (
                "m",
                Val::Map(vec![("a".into(), Val::Null), ("b".into(), Val::Float(1.5))]),
            ),
        ]))
        .unwrap();
        assert!(t.cleared.contains_key("n"));
        assert_eq!(t.vars["m"].value.to_string(), "{ b = 1.5 }");
    }
}
