//! OpenSSH client configuration (`~/.ssh/config`, `ssh -F FILE`) read for one host the way
//! `ssh` reads it: `Host` patterns (globs, negation), `Match` (`host`, `originalhost`, `user`,
//! `localuser`, `all`, `final`, `canonical`, negated), `Include` (globs, relative to
//! `~/.ssh`, conditional inside a block), the first value obtained for each option kept
//! (identity and certificate files accumulate), a second pass for `Match final`, and the `%`
//! tokens and `~` of the values fleet uses. `ssh -G` is the oracle its tests compare with.
//!
//! Only the options fleet acts on are kept (with the file and line each came from); every
//! other keyword OpenSSH knows is accepted and left alone, and an unknown one is listed in
//! [`Resolved::ignored`] rather than refused. `Match exec` (and the criteria that need
//! ssh's own state) is an error naming the line: fleet does not run commands from a config.
//!
//! ```no_run
//! use fleet_ssh_config::{Context, resolve};
//! let ctx = Context::from_env();
//! let r = resolve(&ctx.home.join(".ssh/config"), "web01", &ctx).unwrap();
//! println!("{}@{}:{}", r.effective_user(&ctx), r.effective_hostname(), r.effective_port());
//! ```

mod expand;
mod keywords;
mod lex;
mod pattern;
#[cfg(test)]
mod props;
mod read;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use expand::{connection_hash, percent, tilde};

/// Where a value was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The config file.
    pub file: PathBuf,
    /// Its line (1-based).
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A value and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<T> {
    /// The value, as written (tokens not expanded).
    pub value: T,
    /// Where.
    pub origin: Origin,
}

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// `yes`: unknown keys refused.
    Yes,
    /// `no` (`off`): any key accepted.
    No,
    /// `ask`: ssh asks (fleet has no one to ask: refused as `yes`).
    Ask,
    /// `accept-new`: unknown keys recorded, changed ones refused.
    AcceptNew,
}

/// What the local side contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// `$HOME`: where `Include` finds relative paths (`~/.ssh/...`).
    pub home: PathBuf,
    /// The login's home from the password database: what `~` means in file values (as
    /// ssh's `tilde_expand_filename`); usually the same as `home`.
    pub tilde_home: PathBuf,
    /// The local user (`%u`, `%l`... `Match localuser`, the default `User`).
    pub local_user: String,
    /// The local host name (`%l`, `%L` its first label).
    pub local_host: String,
    /// The local user's uid: the config files must be its (or root's).
    pub uid: u32,
}

impl Context {
    /// From the environment: `$HOME` (both homes), `$USER`/`$LOGNAME` (else `id -un`), the
    /// kernel's host name.
    pub fn from_env() -> Context {
        let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into()));
        let local_user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| {
                std::process::Command::new("id")
                    .arg("-un")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default()
            });
        let local_host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Context {
            tilde_home: home.clone(),
            home,
            local_user,
            local_host,
            uid: uid().parse().unwrap_or(u32::MAX),
        }
    }
}

/// The options fleet uses, as the config gives them for one host (`None`: not set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The host name asked for (`ssh HOST`).
    pub host: String,
    /// `HostName` (with `%h` as written).
    pub hostname: Option<Value<String>>,
    /// `User`.
    pub user: Option<Value<String>>,
    /// `Port`.
    pub port: Option<Value<u16>>,
    /// `IdentityFile`s, in order (duplicates dropped); none: ssh's defaults.
    pub identity_files: Vec<Value<String>>,
    /// `IdentitiesOnly`.
    pub identities_only: Option<Value<bool>>,
    /// `IdentityAgent`.
    pub identity_agent: Option<Value<String>>,
    /// `CertificateFile`s.
    pub certificate_files: Vec<Value<String>>,
    /// `UserKnownHostsFile` (the first line obtained, all its files).
    pub user_known_hosts_files: Option<Value<Vec<String>>>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: Option<Value<StrictHostKeyChecking>>,
    /// `HashKnownHosts`.
    pub hash_known_hosts: Option<Value<bool>>,
    /// `ProxyJump` (`none` as written; see [`Resolved::jump_hosts`]).
    pub proxy_jump: Option<Value<String>>,
    /// `ProxyCommand` (the rest of its line; `none` as written, also set by a `ProxyJump`).
    pub proxy_command: Option<Value<String>>,
    /// `ConnectTimeout` in seconds (`none`: 0).
    pub connect_timeout: Option<Value<u64>>,
    /// `ServerAliveInterval` in seconds.
    pub server_alive_interval: Option<Value<u64>>,
    /// `ServerAliveCountMax`.
    pub server_alive_count_max: Option<Value<u64>>,
    /// Keywords `IgnoreUnknown` let through, where they were.
    pub ignored: Vec<(Origin, String)>,
    /// `HostKeyAlias` (fleet refuses it: it checks keys under the host's own name).
    pub host_key_alias: Option<Value<String>>,
    /// `CanonicalizeHostname` other than `no` (fleet refuses it: it would resolve names).
    pub canonicalize: Option<Value<String>>,
}

/// A hop of `ProxyJump`: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    /// User, when given.
    pub user: Option<String>,
    /// Host.
    pub host: String,
    /// Port, when given.
    pub port: Option<u16>,
}

/// Why a config cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A line is wrong.
    #[error("{}:{line}: {msg}", file.display())]
    Bad {
        /// The file.
        file: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A file cannot be read.
    #[error("{}: {msg}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// Why.
        msg: String,
    },
}

/// What is known before the config is read (as `ssh -l USER -p PORT -o HostName=...`): it
/// stands over the config, and `Match user` and the tokens see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given {
    /// The user.
    pub user: Option<String>,
    /// The port.
    pub port: Option<u16>,
    /// The address (`HostName`).
    pub hostname: Option<String>,
}

/// Reads `config` (and what it includes) for `host`.
///
/// # Errors
///
/// [`ConfigError`] naming the file and line of what is wrong, or the file that cannot be read.
pub fn resolve(config: &Path, host: &str, ctx: &Context) -> Result<Resolved, ConfigError> {
    resolve_given(config, host, ctx, &Given::default(), false)
}

/// The system-wide client config, read after the user's when no file is named (`ssh -F`
/// reads only the file named).
pub const SYSTEM_CONFIG: &str = "/etc/ssh/ssh_config";

/// One file of the client config, in the order ssh reads them (the first value obtained
/// wins across them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file.
    pub path: PathBuf,
    /// It must be the user's (or root's) and not writable by others, as ssh requires of
    /// `~/.ssh/config` (included files are always checked).
    pub check_owner: bool,
    /// It is the system-wide file: relative `Include`s are under `/etc/ssh`, and keywords
    /// this crate does not know are let through (a distribution's own).
    pub system: bool,
}

impl ConfigFile {
    /// A file named by the user (`-F FILE`).
    pub fn named(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            check_owner: false,
            system: false,
        }
    }
}

/// [`resolve`] with what is `given` first; `check_owner`: the file must be the user's (or
/// root's) and not writable by others, as ssh requires of `~/.ssh/config` (included files
/// are always checked).
///
/// # Errors
///
/// As [`resolve`].
pub fn resolve_given(
    config: &Path,
    host: &str,
    ctx: &Context,
    given: &Given,
    check_owner: bool,
) -> Result<Resolved, ConfigError> {
    let file = ConfigFile {
        path: config.to_owned(),
        check_owner,
        system: false,
    };
    resolve_files(std::slice::from_ref(&file), host, ctx, given)
}

/// [`resolve_given`] over several files read in turn, as ssh reads `~/.ssh/config` then
/// [`SYSTEM_CONFIG`]: what one obtains stands for the next.
///
/// # Errors
///
/// As [`resolve`].
pub fn resolve_files(
    files: &[ConfigFile],
    host: &str,
    ctx: &Context,
    given: &Given,
) -> Result<Resolved, ConfigError> {
    let given_at = Origin {
        file: PathBuf::from("(given)"),
        line: 0,
    };
    let seed = |v: Option<&String>| {
        v.map(|v| Value {
            value: v.clone(),
            origin: given_at.clone(),
        })
    };
    let mut r = read::Reader {
        ctx,
        host_arg: host.to_owned(),
        out: Resolved {
            host: host.to_owned(),
            user: seed(given.user.as_ref()),
            hostname: seed(given.hostname.as_ref()),
            port: given.port.map(|p| Value {
                value: p,
                origin: given_at.clone(),
            }),
            ..Resolved::default()
        },
        final_pass: false,
        want_final: false,
        ignore_unknown: Vec::new(),
        system: false,
    };
    for f in files {
        r.system = f.system;
        r.read_file(&f.path, false, true, 0, f.check_owner)?;
    }
    if r.want_final {
        // The second pass reads everything again into the same options (what the first
        // obtained stands), `Host` now matching the resolved name.
        r.final_pass = true;
        for f in files {
            r.system = f.system;
            r.read_file(&f.path, false, true, 0, f.check_owner)?;
        }
    }
    Ok(r.out)
}

impl Resolved {
    /// The name connected to: `HostName` with `%h` filled in, else the host asked for;
    /// lowercased unless an IP address (as ssh does once the config is read).
    pub fn effective_hostname(&self) -> String {
        let v = match &self.hostname {
            Some(h) => h
                .value
                .replace("%%", "\u{0}")
                .replace("%h", &self.host)
                .replace('\u{0}', "%"),
            None => self.host.clone(),
        };
        if v.parse::<std::net::IpAddr>().is_ok() {
            v
        } else {
            v.to_ascii_lowercase()
        }
    }

    /// `Port`, else 22.
    pub fn effective_port(&self) -> u16 {
        self.port.as_ref().map_or(22, |p| p.value)
    }

    /// `User`, else the local user.
    pub fn effective_user(&self, ctx: &Context) -> String {
        self.user
            .as_ref()
            .map_or_else(|| ctx.local_user.clone(), |u| u.value.clone())
    }

    /// The `ProxyJump` hops, outermost first (`none` or unset: none).
    ///
    /// # Errors
    ///
    /// A hop that is not `[user@]host[:port]`.
    pub fn jump_hosts(&self) -> Result<Vec<JumpHost>, ConfigError> {
        let Some(j) = &self.proxy_jump else {
            return Ok(Vec::new());
        };
        if j.value.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
        j.value
            .split(',')
            .map(|hop| {
                let bad = || ConfigError::Bad {
                    file: j.origin.file.clone(),
                    line: j.origin.line,
                    msg: format!("ProxyJump: `{hop}` is not [user@]host[:port]"),
                };
                let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
                let (user, rest) = match hop.rsplit_once('@') {
                    Some((u, r)) => (Some(u.to_owned()), r),
                    None => (None, hop),
                };
                let (host, port) = match rest.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                        (h, Some(p.parse::<u16>().map_err(|_| bad())?))
                    }
                    _ => (rest, None),
                };
                let host = host.trim_start_matches('[').trim_end_matches(']');
                if host.is_empty() || user.as_deref() == Some("") {
                    return Err(bad());
                }
                Ok(JumpHost {
                    user,
                    host: host.to_owned(),
                    port,
                })
            })
            .collect()
    }

    /// The tokens of a file value (`IdentityFile`, `UserKnownHostsFile`, `IdentityAgent`,
    /// `CertificateFile`) for this host.
    pub fn tokens(&self, ctx: &Context) -> BTreeMap<char, String> {
        let host = self.effective_hostname();
        let port = self.effective_port();
        let user = self.effective_user(ctx);
        let jump = self
            .proxy_jump
            .as_ref()
            .filter(|j| !j.value.eq_ignore_ascii_case("none"))
            // The last hop's host, as OpenSSH's `%j`.
            .and_then(|j| j.value.rsplit(',').next().map(str::to_owned))
            .map(|hop| {
                let hop = hop
                    .rsplit_once('@')
                    .map_or(hop.as_str(), |(_, h)| h)
                    .to_owned();
                match hop.rsplit_once(':') {
                    Some((h, p)) if p.parse::<u16>().is_ok() => h.to_owned(),
                    _ => hop,
                }
            })
            .unwrap_or_default();
        [
            ('h', host.clone()),
            ('n', self.host.clone()),
            ('p', port.to_string()),
            ('r', user.clone()),
            ('u', ctx.local_user.clone()),
            ('l', ctx.local_host.clone()),
            (
                'L',
                ctx.local_host.split('.').next().unwrap_or("").to_owned(),
            ),
            ('d', ctx.tilde_home.display().to_string()),
            ('i', ctx.uid.to_string()),
            ('k', self.host.clone()),
            ('j', jump.clone()),
            (
                'C',
                connection_hash(&ctx.local_host, &host, port, &user, &jump),
            ),
        ]
        .into_iter()
        .collect()
    }

    /// A file value with its `~` and `%` tokens expanded, as ssh uses it.
    ///
    /// # Errors
    ///
    /// An unknown token.
    pub fn expand_path(&self, v: &str, ctx: &Context) -> Result<String, String> {
        let t = tilde(v, &ctx.tilde_home.display().to_string());
        percent(&t, &self.tokens(ctx))
    }
}

fn uid() -> String {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(home: &Path) -> Context {
        Context {
            home: home.to_owned(),
            tilde_home: home.to_owned(),
            local_user: "me".into(),
            local_host: "here".into(),
            uid: 0,
        }
    }

    /// The user's file, then the system's: what the first obtains stands; the system file
    /// may hold a distribution's own keywords.
    #[test]
    fn files_are_read_in_turn_first_value_wins() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("config");
        let system = dir.path().join("ssh_config");
        std::fs::write(&user, "Host web\n  Port 2222\n").unwrap();
        std::fs::write(
            &system,
            "Host *\n  Port 22\n  User ops\n  FleetTestDistroOption yes\n  HashKnownHosts yes\n",
        )
        .unwrap();
        let files = [
            ConfigFile::named(&user),
            ConfigFile {
                path: system.clone(),
                check_owner: false,
                system: true,
            },
        ];
        let r = resolve_files(&files, "web", &ctx(dir.path()), &Given::default()).unwrap();
        assert_eq!(r.port.as_ref().map(|p| p.value), Some(2222));
        assert_eq!(r.user.as_ref().map(|u| u.value.as_str()), Some("ops"));
        assert_eq!(
            r.user.as_ref().map(|u| u.origin.file.clone()),
            Some(system.clone())
        );
        assert_eq!(r.hash_known_hosts.as_ref().map(|v| v.value), Some(true));
        // The same unknown keyword in the user's own file is an error, as ssh says.
        std::fs::write(&user, "FleetTestDistroOption yes\n").unwrap();
        let e = resolve_files(&files, "web", &ctx(dir.path()), &Given::default()).unwrap_err();
        assert!(e.to_string().contains("Bad configuration option"), "{e}");
    }
}
