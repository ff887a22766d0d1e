//! Connection and site settings as they cascade from `[defaults]` to `[hosts.X]` (and on to
//! `[hosts.X.sites.Y]` for the site keys), with the check of every value on the way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::source::Ctx;
use super::{Become, BecomeMethod, DbUpgradeTool, HostKeyPolicy, JumpHop, SecretSource, Source};
use crate::error::{InventoryError, printable, shown};
use crate::raw::{OneOrMany, RawDefaults, RawHost};

/// The settings a host inherits and may override, before its address and sites are known.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) user: String,
    pub(super) port: u16,
    pub(super) identity_files: Vec<PathBuf>,
    pub(super) known_hosts_files: Vec<PathBuf>,
    pub(super) policy: HostKeyPolicy,
    pub(super) connect_timeout: Duration,
    pub(super) command_timeout: Duration,
    pub(super) jump: Vec<JumpHop>,
    pub(super) become_on: bool,
    pub(super) become_user: String,
    pub(super) become_method: BecomeMethod,
    pub(super) become_password: Option<SecretSource>,
    pub(super) password: Option<SecretSource>,
    pub(super) site: SiteSettings,
    /// Which keys `[defaults]`, a group or the host's table set.
    pub(super) sources: std::collections::BTreeMap<String, Source>,
}

impl Settings {
    /// The host's `become`, when it is on.
    pub(super) fn escalation(&self) -> Option<Become> {
        self.become_on.then(|| Become {
            user: self.become_user.clone(),
            method: self.become_method,
            password: self.become_password.clone(),
        })
    }
}

/// The connection keys shared by `[defaults]`, `[groups.X]` and `[hosts.X]`.
pub(super) struct RawConnKeys<'a> {
    pub(super) user: &'a Option<Spanned<String>>,
    pub(super) port: &'a Option<Spanned<i64>>,
    pub(super) identity_file: &'a Option<Spanned<OneOrMany>>,
    pub(super) known_hosts_file: &'a Option<Spanned<OneOrMany>>,
    pub(super) host_key_policy: &'a Option<Spanned<String>>,
    pub(super) connect_timeout: &'a Option<Spanned<String>>,
    pub(super) command_timeout: &'a Option<Spanned<String>>,
    pub(super) jump: &'a Option<Spanned<String>>,
    pub(super) become_: &'a Option<Spanned<toml::Value>>,
    pub(super) become_user: &'a Option<Spanned<String>>,
    pub(super) become_method: &'a Option<Spanned<String>>,
    pub(super) become_password_file: &'a Option<Spanned<String>>,
    pub(super) become_password_env: &'a Option<Spanned<String>>,
    pub(super) password_file: &'a Option<Spanned<String>>,
    pub(super) password_env: &'a Option<Spanned<String>>,
}

/// The connection keys of a raw `[defaults]`, `[groups.X]` or `[hosts.X]` table.
macro_rules! conn_keys {
    ($r:expr) => {
        $crate::model::settings::RawConnKeys {
            user: &$r.user,
            port: &$r.port,
            identity_file: &$r.identity_file,
            known_hosts_file: &$r.known_hosts_file,
            host_key_policy: &$r.host_key_policy,
            connect_timeout: &$r.connect_timeout,
            command_timeout: &$r.command_timeout,
            jump: &$r.jump,
            become_: &$r.become_,
            become_user: &$r.become_user,
            become_method: &$r.become_method,
            become_password_file: &$r.become_password_file,
            become_password_env: &$r.become_password_env,
            password_file: &$r.password_file,
            password_env: &$r.password_env,
        }
    };
}

pub(super) use conn_keys;

/// The site keys a site inherits from its host, which inherits them from `[defaults]`.
#[derive(Debug, Clone)]
pub(super) struct SiteSettings {
    pub(super) web_user: Option<String>,
    pub(super) backup_dir: String,
    pub(super) drush: String,
    pub(super) cv: String,
    pub(super) db_upgrade: DbUpgradeTool,
    pub(super) disable_modules: Vec<String>,
}

impl Default for SiteSettings {
    fn default() -> Self {
        Self {
            web_user: None,
            backup_dir: "/var/backups/fleet".into(),
            drush: "drush".into(),
            cv: "cv".into(),
            db_upgrade: DbUpgradeTool::Auto,
            disable_modules: Vec::new(),
        }
    }
}

/// Site keys shared by `[defaults]`, `[hosts.X]` and `[hosts.X.sites.Y]`.
pub(super) struct RawSiteKeys<'a> {
    pub(super) web_user: &'a Option<Spanned<String>>,
    pub(super) backup_dir: &'a Option<Spanned<String>>,
    pub(super) drush: &'a Option<Spanned<String>>,
    pub(super) cv: &'a Option<Spanned<String>>,
    pub(super) db_upgrade: &'a Option<Spanned<String>>,
    pub(super) disable_modules: &'a Option<Spanned<Vec<String>>>,
}

/// The site keys of a raw `[defaults]`, `[hosts.X]` or `[hosts.X.sites.Y]` table, which
/// share their names but not a type.
macro_rules! site_keys {
    ($r:expr) => {
        $crate::model::settings::RawSiteKeys {
            web_user: &$r.web_user,
            backup_dir: &$r.backup_dir,
            drush: &$r.drush,
            cv: &$r.cv,
            db_upgrade: &$r.db_upgrade,
            disable_modules: &$r.disable_modules,
        }
    };
}

pub(super) use site_keys;

impl Ctx<'_> {
    fn path_list(&self, v: &Spanned<OneOrMany>) -> Result<Vec<PathBuf>, InventoryError> {
        v.get_ref()
            .to_vec()
            .iter()
            .map(|p| {
                if p.trim().is_empty() {
                    return Err(self.err(v.span(), "empty path"));
                }
                Ok(resolve_path(p, &self.base))
            })
            .collect()
    }

    fn port(&self, v: &Spanned<i64>) -> Result<u16, InventoryError> {
        u16::try_from(*v.get_ref())
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                self.err(
                    v.span(),
                    format!("invalid port `{}`: must be 1 to 65535", v.get_ref()),
                )
            })
    }

    fn duration(&self, key: &str, v: &Spanned<String>) -> Result<Duration, InventoryError> {
        let d = humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.err(
                v.span(),
                format!("invalid `{key}` `{}`: {e}", printable(v.get_ref())),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(v.span(), format!("`{key}` must be greater than zero")));
        }
        Ok(d)
    }

    fn policy(&self, v: &Spanned<String>) -> Result<HostKeyPolicy, InventoryError> {
        match trim_spaces(v.get_ref()) {
            "strict" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            _ => Err(self.err(
                v.span(),
                format!(
                    "invalid `host_key_policy` `{}`, expected `strict` or `accept-new` (pin a key with `host_key`)",
                    printable(v.get_ref())
                ),
            )),
        }
    }

    fn pin(&self, v: &Spanned<String>) -> Result<HostKeyPolicy, InventoryError> {
        let fp = trim_spaces(v.get_ref());
        let ok = fp.strip_prefix("SHA256:").is_some_and(|b| {
            (40..=44).contains(&b.len())
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        });
        if !ok {
            return Err(self.err(
                v.span(),
                format!(
                    "invalid `host_key` `{}`: expected a fingerprint like `SHA256:...` (see `ssh-keygen -lf`)",
                    printable(fp)
                ),
            ));
        }
        Ok(HostKeyPolicy::Pinned(fp.to_owned()))
    }

    fn jump(&self, v: &Spanned<String>) -> Result<Vec<JumpHop>, InventoryError> {
        v.get_ref()
            .split(',')
            .map(|hop| {
                parse_hop(hop.trim()).map_err(|why| {
                    self.err(
                        v.span(),
                        format!("invalid `jump` `{}`: {why}", printable(v.get_ref())),
                    )
                })
            })
            .collect()
    }

    pub(super) fn defaults(&self, d: &RawDefaults) -> Result<Settings, InventoryError> {
        let mut s = Settings {
            user: default_user(),
            port: 22,
            identity_files: Vec::new(),
            known_hosts_files: vec![resolve_path("~/.ssh/known_hosts", &self.base)],
            policy: HostKeyPolicy::Strict,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(600),
            jump: Vec::new(),
            become_on: false,
            become_user: "root".into(),
            become_method: BecomeMethod::Sudo,
            become_password: None,
            password: None,
            site: SiteSettings::default(),
            sources: std::collections::BTreeMap::new(),
        };
        s.site = self.site_overlay(&s.site, site_keys!(d))?;
        self.conn_overlay(&mut s, conn_keys!(d), &Source::Defaults)?;
        Ok(s)
    }

    /// `s` overlaid with the connection keys of one `[defaults]`, `[groups.X]` or `[hosts.X]`
    /// table, each recorded as coming from `from`.
    pub(super) fn conn_overlay(
        &self,
        s: &mut Settings,
        k: RawConnKeys<'_>,
        from: &Source,
    ) -> Result<(), InventoryError> {
        let mut set = |key: &str| {
            s.sources.insert(key.into(), from.clone());
        };
        if let Some(u) = k.user {
            s.user = self.user("user", u)?;
            set("user");
        }
        if let Some(p) = k.port {
            s.port = self.port(p)?;
            set("port");
        }
        if let Some(v) = k.identity_file {
            s.identity_files = self.path_list(v)?;
            set("identity_file");
        }
        if let Some(v) = k.known_hosts_file {
            s.known_hosts_files = self.path_list(v)?;
            set("known_hosts_file");
        }
        if let Some(v) = k.host_key_policy {
            s.policy = self.policy(v)?;
            set("host_key_policy");
        }
        if let Some(v) = k.connect_timeout {
            s.connect_timeout = self.duration("connect_timeout", v)?;
            set("connect_timeout");
        }
        if let Some(v) = k.command_timeout {
            s.command_timeout = self.duration("command_timeout", v)?;
        }
        if let Some(v) = k.jump {
            s.jump = self.jump(v)?;
            set("jump");
        }
        if let Some(v) = k.become_ {
            match v.get_ref() {
                toml::Value::Boolean(on) => s.become_on = *on,
                toml::Value::String(u) => {
                    s.become_on = true;
                    s.become_user = self.user("become", &Spanned::new(v.span(), u.clone()))?;
                    set("become_user");
                }
                _ => {
                    return Err(self.err(
                        v.span(),
                        "`become` must be `true`, `false` or the user to become (`\"root\"`)",
                    ));
                }
            }
            set("become");
        }
        if let Some(u) = k.become_user {
            s.become_user = self.user("become_user", u)?;
            set("become_user");
        }
        if let Some(v) = k.become_method {
            s.become_method = match trim_spaces(v.get_ref()) {
                "sudo" => BecomeMethod::Sudo,
                "doas" => BecomeMethod::Doas,
                "su" => BecomeMethod::Su,
                other => {
                    return Err(self.err(
                        v.span(),
                        format!(
                            "invalid `become_method` `{}`, expected `sudo`, `doas` or `su`",
                            printable(other)
                        ),
                    ));
                }
            };
            set("become_method");
        }
        if let Some(p) = self.secret(
            "become_password",
            k.become_password_file,
            k.become_password_env,
        )? {
            s.become_password = Some(p);
            set("become_password");
        }
        if let Some(p) = self.secret("password", k.password_file, k.password_env)? {
            s.password = Some(p);
            set("password");
        }
        Ok(())
    }

    /// `<what>_file` or `<what>_env` of one table: where a password is, never the password.
    fn secret(
        &self,
        what: &str,
        file: &Option<Spanned<String>>,
        env: &Option<Spanned<String>>,
    ) -> Result<Option<SecretSource>, InventoryError> {
        match (file, env) {
            (Some(_), Some(e)) => Err(self.err(
                e.span(),
                format!("`{what}_file` and `{what}_env` in one table: keep one"),
            )),
            (Some(f), None) => {
                if f.get_ref().trim().is_empty() {
                    return Err(self.err(f.span(), format!("`{what}_file` is empty")));
                }
                Ok(Some(SecretSource::File(resolve_path(
                    f.get_ref(),
                    &self.base,
                ))))
            }
            (None, Some(e)) => {
                let name = trim_spaces(e.get_ref());
                let ok = name
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !ok {
                    return Err(self.err(
                        e.span(),
                        format!(
                            "invalid `{what}_env` `{}`: expected an environment variable name (letters, digits, `_`)",
                            printable(e.get_ref())
                        ),
                    ));
                }
                Ok(Some(SecretSource::Env(name.to_owned())))
            }
            (None, None) => Ok(None),
        }
    }

    /// `s` overlaid with host table `h`, written as `[hosts.<key>]`.
    ///
    /// A `host_key` pin replaces the known_hosts check that `host_key_policy` chooses, so a
    /// host's pin wins over the policy it inherits; the two in one host table would leave
    /// one of them ignored, and are refused.
    pub(super) fn host_overlay(
        &self,
        s: &mut Settings,
        key: &str,
        h: &RawHost,
    ) -> Result<(), InventoryError> {
        if let (Some(_), Some(policy)) = (&h.host_key, &h.host_key_policy) {
            return Err(self.err(
                policy.span(),
                format!(
                    "host `{}` sets both `host_key_policy` and `host_key`: a pinned `host_key` is checked instead of known_hosts, so `host_key_policy` would be ignored; keep one",
                    printable(key)
                ),
            ));
        }
        self.conn_overlay(s, conn_keys!(h), &Source::Host)?;
        if let Some(v) = &h.host_key {
            s.policy = self.pin(v)?;
            s.sources.insert("host_key_policy".into(), Source::Host);
        }
        Ok(())
    }

    pub(super) fn site_overlay(
        &self,
        base: &SiteSettings,
        k: RawSiteKeys<'_>,
    ) -> Result<SiteSettings, InventoryError> {
        let mut s = base.clone();
        if let Some(u) = k.web_user {
            s.web_user = Some(self.user("web_user", u)?);
        }
        if let Some(b) = k.backup_dir {
            s.backup_dir = self.remote_path("backup_dir", b)?;
        }
        if let Some(v) = k.drush {
            s.drush = self.word("drush", v)?;
        }
        if let Some(v) = k.cv {
            s.cv = self.word("cv", v)?;
        }
        if let Some(v) = k.db_upgrade {
            s.db_upgrade = match v.get_ref().as_str() {
                "auto" => DbUpgradeTool::Auto,
                "cv" => DbUpgradeTool::Cv,
                "drush" => DbUpgradeTool::Drush,
                other => {
                    return Err(self.err(
                        v.span(),
                        format!(
                            "invalid `db_upgrade` `{}`, expected `auto`, `cv` or `drush`",
                            printable(other)
                        ),
                    ));
                }
            };
        }
        if let Some(v) = k.disable_modules {
            if let Some(bad) = v.get_ref().iter().find(|m| {
                m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }) {
                return Err(self.err(
                    v.span(),
                    format!("invalid module name `{bad}` in `disable_modules`"),
                ));
            }
            s.disable_modules = v.get_ref().clone();
        }
        Ok(s)
    }

    /// An absolute path on the host, normalized: repeated and trailing `/` collapsed, so that
    /// two spellings of one directory compare equal (sites sharing a `root` share a codebase)
    /// and [`is_within`] sees the directory the host would. Control characters (a newline,
    /// NUL) would end or split the shell commands the path is quoted into. `.` and `..`
    /// components are refused rather than resolved: only the host knows where `..` leads
    /// (through a symlink, `/a/b/..` need not be `/a`), and nothing here reads the local
    /// filesystem, which is not the host's.
    pub(super) fn remote_path(
        &self,
        key: &str,
        v: &Spanned<String>,
    ) -> Result<String, InventoryError> {
        let raw = v.get_ref();
        let why = if !raw.starts_with('/') {
            Some("must be an absolute path on the host".to_owned())
        } else if let Some(c) = raw.chars().find(|c| c.is_control()) {
            Some(format!(
                "must be a path on the host without control characters ({} found)",
                shown(c)
            ))
        } else if raw.split('/').any(|c| c == "." || c == "..") {
            Some("must be a path on the host without `.` or `..` components".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(self.err(v.span(), format!("`{key}` `{}` {why}", printable(raw))));
        }
        let parts: Vec<&str> = raw.split('/').filter(|c| !c.is_empty()).collect();
        Ok(format!("/{}", parts.join("/")))
    }

    /// A command on the host (`drush`, `cv`): a name looked up in `PATH` or a path, quoted
    /// as one word, so a space is part of the name and never separates arguments. Control
    /// characters are refused as in [`Ctx::remote_path`] (a tab or `\r` in a command is a
    /// paste accident, never a name), and so is a leading `-`, which `command -v` and
    /// `sudo` would read as an option.
    fn word(&self, key: &str, v: &Spanned<String>) -> Result<String, InventoryError> {
        let w = trim_spaces(v.get_ref());
        let why = if w.is_empty() {
            Some("is empty".to_owned())
        } else if let Some(c) = w.chars().find(|c| c.is_control()) {
            Some(format!("holds a control character ({} found)", shown(c)))
        } else if w.starts_with('-') {
            Some("starts with `-`".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(self.err(
                v.span(),
                format!(
                    "invalid `{key}` `{}`: {why}; expected a command name or path on the host",
                    printable(v.get_ref())
                ),
            ));
        }
        Ok(w.to_owned())
    }

    /// A user name on the host (`user`, `web_user`), checked by [`user_problem`].
    fn user(&self, key: &str, u: &Spanned<String>) -> Result<String, InventoryError> {
        let name = trim_spaces(u.get_ref());
        if let Some(why) = user_problem(name) {
            return Err(self.err(
                u.span(),
                format!(
                    "invalid `{key}` `{}`: {why}; {USER_RULE}",
                    printable(u.get_ref())
                ),
            ));
        }
        Ok(name.to_owned())
    }
}

/// `s` without the spaces around it. Values that are a name, a word or a keyword (`user`,
/// `drush`, `address`, `host_key_policy`, `host_key`, ...) forgive stray spaces, but only
/// spaces: a tab, `\r` or newline is refused wherever it is, as in paths, since it is a
/// paste accident, never part of a name.
pub(super) fn trim_spaces(s: &str) -> &str {
    s.trim_matches(' ')
}

/// How [`user_problem`]'s rule reads in an error.
const USER_RULE: &str = "a user name has at most 32 ASCII letters, digits, `.`, `_` and `-`, does not start with `-`, and may end in `$`";

/// Why `name` is not a user name `useradd` would create, if it is not: the POSIX portable
/// set (letters, digits, `.`, `_`, `-`), no leading `-` (`sudo -u`, `runuser -u` and `ssh -l`
/// would read an option), an optional trailing `$` (Samba machine accounts), at most 32
/// characters (the `utmp` limit).
fn user_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    if body.is_empty() {
        return Some("it is only `$`".into());
    }
    if name.chars().count() > 32 {
        return Some(format!("it has {} characters", name.chars().count()));
    }
    if body.starts_with('-') {
        return Some("it starts with `-`".into());
    }
    body.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| format!("{} is not allowed", shown(c)))
}

/// Whether remote path `path` is `dir` or inside it, compared by components, so `//` and a
/// trailing `/` do not matter and `/` holds everything. Neither may have `.` or `..`
/// components ([`Ctx::remote_path`] refuses them), which this does not resolve.
pub(super) fn is_within(path: &str, dir: &str) -> bool {
    fn parts(p: &str) -> Vec<&str> {
        p.split('/').filter(|c| !c.is_empty()).collect()
    }
    parts(path).starts_with(&parts(dir))
}

fn parse_hop(s: &str) -> Result<JumpHop, String> {
    if s.is_empty() {
        return Err("empty hop".into());
    }
    let (user, rest) = match s.rsplit_once('@') {
        Some(("", _)) => return Err("empty user before `@`".into()),
        Some((u, r)) => match user_problem(u) {
            Some(why) => return Err(format!("bad user `{}`: {why}", printable(u))),
            None => (Some(u.to_owned()), r),
        },
        None => (None, s),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed `[`")?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("bad host `{host}`"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port `{p}`"))
        })
        .transpose()?;
    Ok(JumpHop {
        user,
        host: host.to_owned(),
        port,
        identity_files: Vec::new(),
    })
}

pub(super) fn resolve_path(p: &str, base: &Path) -> PathBuf {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    if p == "~" {
        if let Some(h) = home {
            return h;
        }
    } else if let Some(rest) = p.strip_prefix("~/")
        && let Some(h) = home
    {
        return h.join(rest);
    }
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn default_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "root".into())
}

#[cfg(test)]
mod tests;
