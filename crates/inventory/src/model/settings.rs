//! Connection and site settings as they cascade from `[defaults]` to `[hosts.X]` (and on to
//! `[hosts.X.sites.Y]` for the site keys), with the check of every value on the way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::source::Ctx;
use super::{DbUpgradeTool, HostKeyPolicy, JumpHop};
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
    pub(super) site: SiteSettings,
}

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
        let d = humantime::parse_duration(v.get_ref())
            .map_err(|e| self.err(v.span(), format!("invalid `{key}` `{}`: {e}", v.get_ref())))?;
        if d.is_zero() {
            return Err(self.err(v.span(), format!("`{key}` must be greater than zero")));
        }
        Ok(d)
    }

    fn policy(&self, v: &Spanned<String>) -> Result<HostKeyPolicy, InventoryError> {
        match v.get_ref().as_str() {
            "strict" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            other => Err(self.err(
                v.span(),
                format!("invalid `host_key_policy` `{other}`, expected `strict` or `accept-new` (pin a key with `host_key`)"),
            )),
        }
    }

    fn pin(&self, v: &Spanned<String>) -> Result<HostKeyPolicy, InventoryError> {
        let fp = v.get_ref().trim();
        let ok = fp.strip_prefix("SHA256:").is_some_and(|b| {
            (40..=44).contains(&b.len())
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        });
        if !ok {
            return Err(self.err(
                v.span(),
                format!("invalid `host_key` `{fp}`: expected a fingerprint like `SHA256:...` (see `ssh-keygen -lf`)"),
            ));
        }
        Ok(HostKeyPolicy::Pinned(fp.to_owned()))
    }

    fn jump(&self, v: &Spanned<String>) -> Result<Vec<JumpHop>, InventoryError> {
        v.get_ref()
            .split(',')
            .map(|hop| {
                parse_hop(hop.trim()).map_err(|why| {
                    self.err(v.span(), format!("invalid `jump` `{}`: {why}", v.get_ref()))
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
            site: SiteSettings::default(),
        };
        s.site = self.site_overlay(&s.site, site_keys!(d))?;
        if let Some(u) = &d.user {
            s.user = self.user(u)?;
        }
        if let Some(p) = &d.port {
            s.port = self.port(p)?;
        }
        if let Some(v) = &d.identity_file {
            s.identity_files = self.path_list(v)?;
        }
        if let Some(v) = &d.known_hosts_file {
            s.known_hosts_files = self.path_list(v)?;
        }
        if let Some(v) = &d.host_key_policy {
            s.policy = self.policy(v)?;
        }
        if let Some(v) = &d.connect_timeout {
            s.connect_timeout = self.duration("connect_timeout", v)?;
        }
        if let Some(v) = &d.command_timeout {
            s.command_timeout = self.duration("command_timeout", v)?;
        }
        if let Some(v) = &d.jump {
            s.jump = self.jump(v)?;
        }
        Ok(s)
    }

    pub(super) fn overlay(&self, base: &Settings, h: &RawHost) -> Result<Settings, InventoryError> {
        let mut s = base.clone();
        s.site = self.site_overlay(&s.site, site_keys!(h))?;
        if let Some(u) = &h.user {
            s.user = self.user(u)?;
        }
        if let Some(p) = &h.port {
            s.port = self.port(p)?;
        }
        if let Some(v) = &h.identity_file {
            s.identity_files = self.path_list(v)?;
        }
        if let Some(v) = &h.known_hosts_file {
            s.known_hosts_files = self.path_list(v)?;
        }
        if let Some(v) = &h.host_key_policy {
            s.policy = self.policy(v)?;
        }
        if let Some(v) = &h.host_key {
            s.policy = self.pin(v)?;
        }
        if let Some(v) = &h.connect_timeout {
            s.connect_timeout = self.duration("connect_timeout", v)?;
        }
        if let Some(v) = &h.command_timeout {
            s.command_timeout = self.duration("command_timeout", v)?;
        }
        if let Some(v) = &h.jump {
            s.jump = self.jump(v)?;
        }
        Ok(s)
    }

    pub(super) fn site_overlay(
        &self,
        base: &SiteSettings,
        k: RawSiteKeys<'_>,
    ) -> Result<SiteSettings, InventoryError> {
        let mut s = base.clone();
        if let Some(u) = k.web_user {
            s.web_user = Some(self.user(u)?);
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
                        format!("invalid `db_upgrade` `{other}`, expected `auto`, `cv` or `drush`"),
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

    /// An absolute path on the host. Control characters (a newline, NUL) would end or split
    /// the shell commands the path is quoted into, and a `.` or `..` component would slip
    /// a backup directory past the "outside the Drupal root" check, which compares text.
    pub(super) fn remote_path(
        &self,
        key: &str,
        v: &Spanned<String>,
    ) -> Result<String, InventoryError> {
        let raw = v.get_ref();
        let p = raw.trim_end_matches('/');
        let why = if !raw.starts_with('/') {
            Some("must be an absolute path on the host".to_owned())
        } else if let Some(c) = raw.chars().find(|c| c.is_control()) {
            Some(format!(
                "must be a path on the host without control characters ({} found)",
                shown(c)
            ))
        } else if p.split('/').any(|c| c == "." || c == "..") {
            Some("must be a path on the host without `.` or `..` components".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(self.err(v.span(), format!("`{key}` `{}` {why}", printable(raw))));
        }
        Ok(if p.is_empty() {
            "/".into()
        } else {
            p.to_owned()
        })
    }

    fn word(&self, key: &str, v: &Spanned<String>) -> Result<String, InventoryError> {
        let w = v.get_ref().trim();
        if w.is_empty() || w.contains('\n') {
            return Err(self.err(v.span(), format!("invalid `{key}` `{}`", v.get_ref())));
        }
        Ok(w.to_owned())
    }

    fn user(&self, u: &Spanned<String>) -> Result<String, InventoryError> {
        let name = u.get_ref().trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(self.err(u.span(), format!("invalid `user` `{}`", u.get_ref())));
        }
        Ok(name.to_owned())
    }
}

fn parse_hop(s: &str) -> Result<JumpHop, String> {
    if s.is_empty() {
        return Err("empty hop".into());
    }
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
        Some(_) => return Err("empty user before `@`".into()),
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
    })
}

fn resolve_path(p: &str, base: &Path) -> PathBuf {
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
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::model::testkit::load;
    use crate::{HostKeyPolicy, JumpHop};

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
                    port: Some(2222)
                },
                JumpHop {
                    user: None,
                    host: "inner".into(),
                    port: None
                },
            ]
        );
        assert!(
            matches!(a.host_key_policy, HostKeyPolicy::Pinned(ref f) if f.starts_with("SHA256:"))
        );
        assert_eq!(a.connect_timeout, Duration::from_secs(10));
        assert_eq!(a.command_timeout, Duration::from_secs(600));
    }
}
