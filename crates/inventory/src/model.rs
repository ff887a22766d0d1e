//! Validated inventory: hosts with every setting resolved, groups, membership.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::error::{InventoryError, printable, shown};
use crate::range::expand;
use crate::raw::{OneOrMany, RawDefaults, RawHost, RawInventory, Vars};
use crate::rollout::Rollout;

/// How a host's SSH key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The key must be in a known_hosts file.
    Strict,
    /// Unknown keys are recorded on first use; changed keys still fail.
    AcceptNew,
    /// The key's fingerprint must be this `SHA256:...` value.
    Pinned(String),
}

/// One hop of a `jump` chain: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHop {
    /// User on the jump host; the target's settings when `None`.
    pub user: Option<String>,
    /// Host name, address, or the name of an inventory host.
    pub host: String,
    /// Port; 22 (or the inventory host's port) when `None`.
    pub port: Option<u16>,
}

/// Which tool runs the CiviCRM database upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbUpgradeTool {
    /// `cv` when the host has it, else `drush`.
    Auto,
    /// `cv upgrade:db -n`.
    Cv,
    /// `drush civicrm-upgrade-db -y`.
    Drush,
}

/// A Drupal site with CiviCRM on a host. Sites sharing `root` share a codebase; sites whose
/// CiviCRM DSN names the same database share a database (discovered on the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Name, unique on its host.
    pub name: String,
    /// Drupal root on the host (absolute).
    pub root: String,
    /// Site URI, passed as `--url`/`-l` (never left to the tools' `default` fallback).
    pub uri: String,
    /// Web-server user; discovered from the owner of `templates_c` when `None`.
    pub web_user: Option<String>,
    /// Where this run's backups go on the host (absolute, outside the Drupal root).
    pub backup_dir: String,
    /// `drush` command on the host.
    pub drush: String,
    /// `cv` command on the host.
    pub cv: String,
    /// Tool for the database upgrade.
    pub db_upgrade: DbUpgradeTool,
    /// Integration modules to disable during the upgrade and enable again after.
    pub disable_modules: Vec<String>,
}

/// A host with every setting resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Inventory name.
    pub name: String,
    /// Address or DNS name to connect to.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// Private keys to offer; empty means the SSH defaults.
    pub identity_files: Vec<PathBuf>,
    /// known_hosts files to check.
    pub known_hosts_files: Vec<PathBuf>,
    /// Host-key trust policy.
    pub host_key_policy: HostKeyPolicy,
    /// Bound on connect and on authentication.
    pub connect_timeout: Duration,
    /// Default bound on each command.
    pub command_timeout: Duration,
    /// Jump hosts, outermost first.
    pub jump: Vec<JumpHop>,
    /// Every group containing the host (directly or through children), in declaration order.
    pub groups: Vec<String>,
    /// Merged variables: defaults < groups (parents before children) < host.
    pub vars: BTreeMap<String, toml::Value>,
    /// Drupal/CiviCRM sites on this host, in file order.
    pub sites: Vec<Site>,
}

impl Host {
    /// Returns a variable rendered as text (strings without quotes), if set.
    pub fn var(&self, key: &str) -> Option<String> {
        self.vars.get(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// A group of hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Direct members (ranges expanded).
    pub hosts: Vec<String>,
    /// Nested groups.
    pub children: Vec<String>,
    /// The group's own variables.
    pub vars: BTreeMap<String, toml::Value>,
}

/// A loaded, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    path: PathBuf,
    hosts: Vec<Host>,
    groups: Vec<Group>,
    host_index: HashMap<String, usize>,
    group_index: HashMap<String, usize>,
    /// Every group's hosts (transitively), as sorted host indices.
    members: Vec<Vec<usize>>,
    rollout: Rollout,
}

#[derive(Debug, Clone)]
struct Settings {
    user: String,
    port: u16,
    identity_files: Vec<PathBuf>,
    known_hosts_files: Vec<PathBuf>,
    policy: HostKeyPolicy,
    connect_timeout: Duration,
    command_timeout: Duration,
    jump: Vec<JumpHop>,
    site: SiteSettings,
}

#[derive(Debug, Clone)]
struct SiteSettings {
    web_user: Option<String>,
    backup_dir: String,
    drush: String,
    cv: String,
    db_upgrade: DbUpgradeTool,
    disable_modules: Vec<String>,
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
struct RawSiteKeys<'a> {
    web_user: &'a Option<Spanned<String>>,
    backup_dir: &'a Option<Spanned<String>>,
    drush: &'a Option<Spanned<String>>,
    cv: &'a Option<Spanned<String>>,
    db_upgrade: &'a Option<Spanned<String>>,
    disable_modules: &'a Option<Spanned<Vec<String>>>,
}

macro_rules! site_keys {
    ($r:expr) => {
        RawSiteKeys {
            web_user: &$r.web_user,
            backup_dir: &$r.backup_dir,
            drush: &$r.drush,
            cv: &$r.cv,
            db_upgrade: &$r.db_upgrade,
            disable_modules: &$r.disable_modules,
        }
    };
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    base: PathBuf,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> InventoryError {
        let (line, column) = line_col(self.text, span.start);
        InventoryError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `file:line:column` of `span`, for an error that names a second place.
    fn at(&self, span: Range<usize>) -> String {
        let (line, column) = line_col(self.text, span.start);
        format!("{}:{line}:{column}", self.path.display())
    }

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

    fn defaults(&self, d: &RawDefaults) -> Result<Settings, InventoryError> {
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

    fn overlay(&self, base: &Settings, h: &RawHost) -> Result<Settings, InventoryError> {
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

    fn site_overlay(
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
    fn remote_path(&self, key: &str, v: &Spanned<String>) -> Result<String, InventoryError> {
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

    fn sites(
        &self,
        host: &str,
        base: &SiteSettings,
        raw: &BTreeMap<Spanned<String>, crate::raw::RawSite>,
    ) -> Result<Vec<Site>, InventoryError> {
        let mut entries: Vec<_> = raw.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut out = Vec::with_capacity(entries.len());
        for (key, r) in entries {
            let name = key.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(self.err(
                    key.span(),
                    format!("invalid site name `{name}` on host `{host}`"),
                ));
            }
            let Some(root) = &r.root else {
                return Err(self.err(
                    key.span(),
                    format!("site `{name}` on host `{host}` has no `root` (the Drupal root)"),
                ));
            };
            let root = self.remote_path("root", root)?;
            let uri = match &r.uri {
                Some(u) => {
                    crate::uri::check(u.get_ref()).map_err(|why| {
                        self.err(
                            u.span(),
                            format!(
                                "invalid `uri` `{}` of site `{name}` on host `{host}`: {why}; expected `http(s)://host[:port][/path]` with only `A-Za-z0-9-._~/` and `%XX` in the path",
                                printable(u.get_ref())
                            ),
                        )
                    })?;
                    u.get_ref().clone()
                }
                None => {
                    return Err(self.err(
                        key.span(),
                        format!("site `{name}` on host `{host}` has no `uri` (passed as `--url`)"),
                    ));
                }
            };
            let s = self.site_overlay(base, site_keys!(r))?;
            if s.backup_dir == root || s.backup_dir.starts_with(&format!("{root}/")) {
                let at = r.backup_dir.as_ref().map_or(key.span(), Spanned::span);
                return Err(self.err(
                    at,
                    format!(
                        "`backup_dir` `{}` of site `{name}` is inside its Drupal root `{root}`; keep backups outside it (Drupal runs `.module` files it finds under `sites/all/modules`)",
                        s.backup_dir
                    ),
                ));
            }
            out.push(Site {
                name: name.clone(),
                root,
                uri,
                web_user: s.web_user,
                backup_dir: s.backup_dir,
                drush: s.drush,
                cv: s.cv,
                db_upgrade: s.db_upgrade,
                disable_modules: s.disable_modules,
            });
        }
        Ok(out)
    }

    fn rollout(&self, r: Option<&crate::raw::RawRollout>) -> Result<Rollout, InventoryError> {
        let Some(r) = r else {
            return Ok(Rollout::default());
        };
        let mut out = Rollout::default();
        if let Some(b) = &r.batches {
            out.batches = Some(
                b.get_ref()
                    .parse()
                    .map_err(|e: String| self.err(b.span(), format!("invalid `batches`: {e}")))?,
            );
        }
        if let Some(m) = &r.max_fail {
            out.max_fail = Some(
                m.get_ref()
                    .parse()
                    .map_err(|e: String| self.err(m.span(), format!("invalid `max_fail`: {e}")))?,
            );
        }
        for (k, v) in &r.max_per {
            let n = usize::try_from(*v.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| self.err(v.span(), format!("`max_per.{k}` must be at least 1")))?;
            out.max_per.insert(k.clone(), n);
        }
        Ok(out)
    }

    /// Refuses a host or group name that is not a plain word. Names become file names
    /// (`--out-dir DIR/<host>.stdout`), selector terms and journal keys, so a `/` or a leading
    /// `.` would let an inventory write outside the out-dir (`../../x`), and selector
    /// punctuation (`,:!&@*?[]`) would make the host impossible to select on its own.
    /// `written` is the key or list entry as written: a range there names many hosts, and
    /// the error shows both the bad name and the pattern it came from.
    fn check_name(
        &self,
        kind: &str,
        name: &str,
        written: &Spanned<String>,
    ) -> Result<(), InventoryError> {
        let Some(why) = name_problem(name) else {
            return Ok(());
        };
        let from = if written.get_ref() == name {
            String::new()
        } else {
            format!(" (from `{}`)", printable(written.get_ref()))
        };
        Err(self.err(
            written.span(),
            format!(
                "invalid {kind} name `{}`{from}: {why}; use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`",
                printable(name)
            ),
        ))
    }

    fn user(&self, u: &Spanned<String>) -> Result<String, InventoryError> {
        let name = u.get_ref().trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(self.err(u.span(), format!("invalid `user` `{}`", u.get_ref())));
        }
        Ok(name.to_owned())
    }
}

/// A host as first seen, before groups are known.
struct Def {
    name: String,
    /// Byte offset of the first mention (inventory order), then position inside a range.
    order: (usize, usize),
    span: Range<usize>,
    settings: Settings,
    address: Option<Spanned<String>>,
    vars: Vars,
    sites: Vec<Site>,
}

impl Inventory {
    /// Reads and validates the inventory at `path`.
    ///
    /// # Errors
    ///
    /// [`InventoryError::Read`] when the file cannot be read, [`InventoryError::Invalid`]
    /// (with line and column) when its content is not a valid inventory.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates inventory `text`; `origin` names it in errors and anchors
    /// relative paths.
    ///
    /// # Errors
    ///
    /// [`InventoryError::Invalid`], naming the line and column of the offending key.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Inventory, InventoryError> {
        let base = origin
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let cx = Ctx {
            path: origin,
            text,
            base,
        };
        let raw: RawInventory = toml::from_str(text).map_err(|e| {
            let message = e
                .message()
                .trim()
                .replace("unknown field", "unknown key")
                .replace('\n', " ");
            cx.err(e.span().unwrap_or(0..0), message)
        })?;
        let defaults = cx.defaults(&raw.defaults)?;
        let rollout = cx.rollout(raw.rollout.as_ref())?;

        let mut defs: Vec<Def> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut host_tables: Vec<_> = raw.hosts.iter().collect();
        host_tables.sort_by_key(|(k, _)| k.span().start);
        for (key, h) in host_tables {
            let names = expand(key.get_ref())
                .map_err(|why| cx.err(key.span(), format!("bad host range: {why}")))?;
            let settings = cx.overlay(&defaults, h)?;
            for (i, name) in names.into_iter().enumerate() {
                cx.check_name("host", &name, key)?;
                let sites = cx.sites(&name, &settings.site, &h.sites)?;
                if by_name.contains_key(&name) {
                    return Err(cx.err(key.span(), format!("host `{name}` is defined twice")));
                }
                by_name.insert(name.clone(), defs.len());
                defs.push(Def {
                    name,
                    order: (key.span().start, i),
                    span: key.span(),
                    settings: settings.clone(),
                    address: h.address.clone(),
                    vars: h.vars.clone(),
                    sites,
                });
            }
        }

        let mut group_tables: Vec<_> = raw.groups.iter().collect();
        group_tables.sort_by_key(|(k, _)| k.span().start);
        let mut groups = Vec::with_capacity(group_tables.len());
        let mut group_index = HashMap::new();
        for (key, g) in &group_tables {
            let name = key.get_ref();
            if name == "all" {
                return Err(cx.err(
                    key.span(),
                    "`all` is a built-in group (every host) and cannot be declared",
                ));
            }
            cx.check_name("group", name, key)?;
            let mut hosts = Vec::new();
            for entry in &g.hosts {
                let names = expand(entry.get_ref())
                    .map_err(|why| cx.err(entry.span(), format!("bad host range: {why}")))?;
                for (i, n) in names.into_iter().enumerate() {
                    cx.check_name("host", &n, entry)?;
                    let order = (entry.span().start, i);
                    if let Some(&d) = by_name.get(&n) {
                        defs[d].order = defs[d].order.min(order);
                    } else {
                        by_name.insert(n.clone(), defs.len());
                        defs.push(Def {
                            name: n.clone(),
                            order,
                            span: entry.span(),
                            settings: defaults.clone(),
                            address: None,
                            vars: Vars::new(),
                            sites: Vec::new(),
                        });
                    }
                    if !hosts.contains(&n) {
                        hosts.push(n);
                    }
                }
            }
            group_index.insert(name.clone(), groups.len());
            groups.push(Group {
                name: name.clone(),
                hosts,
                children: g.children.iter().map(|c| c.get_ref().clone()).collect(),
                vars: g.vars.clone(),
            });
        }
        // `-l NAME` looks up groups before hosts, so a host sharing a group's name could never
        // be selected on its own and would silently turn into the whole group.
        if let Some(&d) = by_name.get("all") {
            return Err(cx.err(
                defs[d].span.clone(),
                "`all` is the built-in group (every host) and cannot name a host",
            ));
        }
        for (key, _) in &group_tables {
            if let Some(&d) = by_name.get(key.get_ref()) {
                return Err(cx.err(
                    key.span(),
                    format!(
                        "group `{0}` and host `{0}` ({1}) have the same name, so `-l {0}` cannot tell them apart: rename one",
                        key.get_ref(),
                        cx.at(defs[d].span.clone()),
                    ),
                ));
            }
        }
        for (key, g) in &group_tables {
            for child in &g.children {
                if !group_index.contains_key(child.get_ref()) {
                    return Err(cx.err(
                        child.span(),
                        format!(
                            "unknown child group `{}` in group `{}`",
                            child.get_ref(),
                            key.get_ref()
                        ),
                    ));
                }
            }
        }
        check_cycles(&cx, &group_tables, &group_index)?;

        defs.sort_by_key(|d| d.order);
        let host_index: HashMap<String, usize> = defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        let members = transitive_members(&groups, &group_index, &host_index);
        let vars_order = parents_first(&groups, &group_index);

        let mut hosts = Vec::with_capacity(defs.len());
        for (hi, d) in defs.into_iter().enumerate() {
            let address = match &d.address {
                Some(a) => {
                    let v = a.get_ref().trim();
                    if v.is_empty() || v.contains(char::is_whitespace) {
                        return Err(cx.err(
                            a.span(),
                            format!("invalid `address` `{}` for host `{}`", a.get_ref(), d.name),
                        ));
                    }
                    v.to_owned()
                }
                None if is_host_name(&d.name) => d.name.clone(),
                None => {
                    return Err(cx.err(
                        d.span,
                        format!("host `{}` has no `address` and its name is not a valid host name or IP address", d.name),
                    ));
                }
            };
            let mut vars = raw.defaults.vars.clone();
            for &gi in &vars_order {
                if members[gi].binary_search(&hi).is_ok() {
                    vars.extend(groups[gi].vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            vars.extend(d.vars);
            let s = d.settings;
            hosts.push(Host {
                groups: (0..groups.len())
                    .filter(|&gi| members[gi].binary_search(&hi).is_ok())
                    .map(|gi| groups[gi].name.clone())
                    .collect(),
                name: d.name,
                address,
                port: s.port,
                user: s.user,
                identity_files: s.identity_files,
                known_hosts_files: s.known_hosts_files,
                host_key_policy: s.policy,
                connect_timeout: s.connect_timeout,
                command_timeout: s.command_timeout,
                jump: s.jump,
                vars,
                sites: d.sites,
            });
        }
        Ok(Inventory {
            path: origin.to_owned(),
            hosts,
            groups,
            host_index,
            group_index,
            members,
            rollout,
        })
    }

    /// The `[rollout]` table (empty when absent).
    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// The file this inventory came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every host, in inventory order (order of first mention in the file).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.host_index.get(name).map(|&i| &self.hosts[i])
    }

    /// Every group, in declaration order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub(crate) fn host_position(&self, name: &str) -> Option<usize> {
        self.host_index.get(name).copied()
    }

    /// Host indices of group `name` (transitively), sorted.
    pub(crate) fn group_members(&self, name: &str) -> Option<&[usize]> {
        self.group_index
            .get(name)
            .map(|&i| self.members[i].as_slice())
    }
}

fn check_cycles(
    cx: &Ctx<'_>,
    tables: &[(&Spanned<String>, &crate::raw::RawGroup)],
    index: &HashMap<String, usize>,
) -> Result<(), InventoryError> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit(
        g: usize,
        tables: &[(&Spanned<String>, &crate::raw::RawGroup)],
        index: &HashMap<String, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<(Vec<usize>, usize)> {
        state[g] = 1;
        path.push(g);
        for child in &tables[g].1.children {
            let c = index[child.get_ref()];
            if state[c] == 1 {
                let start = path.iter().position(|&p| p == c).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(c);
                return Some((cycle, g));
            }
            if state[c] == 0
                && let Some(found) = visit(c, tables, index, state, path)
            {
                return Some(found);
            }
        }
        path.pop();
        state[g] = 2;
        None
    }
    let mut state = vec![0u8; tables.len()];
    for g in 0..tables.len() {
        if state[g] == 0
            && let Some((cycle, at)) = visit(g, tables, index, &mut state, &mut Vec::new())
        {
            let names: Vec<String> = cycle
                .iter()
                .map(|&i| format!("`{}`", tables[i].0.get_ref()))
                .collect();
            return Err(cx.err(
                tables[at].0.span(),
                format!("group cycle: {}", names.join(" -> ")),
            ));
        }
    }
    Ok(())
}

fn transitive_members(
    groups: &[Group],
    gindex: &HashMap<String, usize>,
    hindex: &HashMap<String, usize>,
) -> Vec<Vec<usize>> {
    fn collect(
        g: usize,
        groups: &[Group],
        gindex: &HashMap<String, usize>,
        hindex: &HashMap<String, usize>,
        memo: &mut Vec<Option<Vec<usize>>>,
    ) -> Vec<usize> {
        if let Some(done) = &memo[g] {
            return done.clone();
        }
        let mut out: Vec<usize> = groups[g]
            .hosts
            .iter()
            .filter_map(|h| hindex.get(h).copied())
            .collect();
        for c in &groups[g].children {
            if let Some(&ci) = gindex.get(c) {
                out.extend(collect(ci, groups, gindex, hindex, memo));
            }
        }
        out.sort_unstable();
        out.dedup();
        memo[g] = Some(out.clone());
        out
    }
    let mut memo = vec![None; groups.len()];
    (0..groups.len())
        .map(|g| collect(g, groups, gindex, hindex, &mut memo))
        .collect()
}

/// Group indices ordered so that a group comes after every group that lists it as a child
/// (its parents), and otherwise in declaration order.
fn parents_first(groups: &[Group], gindex: &HashMap<String, usize>) -> Vec<usize> {
    let mut depth = vec![0usize; groups.len()];
    // Longest path from a root; the graph is acyclic, so |groups| passes suffice.
    for _ in 0..groups.len() {
        let mut changed = false;
        for (p, g) in groups.iter().enumerate() {
            for c in &g.children {
                if let Some(&ci) = gindex.get(c)
                    && depth[ci] < depth[p] + 1
                {
                    depth[ci] = depth[p] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| (depth[g], g));
    order
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

/// Why `name` is not a valid host or group name, if it is not (see [`Ctx::check_name`]).
fn name_problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("it is empty".into());
    };
    if matches!(first, '.' | '-') {
        return Some(format!("it starts with `{first}`"));
    }
    name.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .map(|c| format!("{} is not allowed", shown(c)))
}

/// A DNS host name (RFC 1123 labels) or an IP address.
fn is_host_name(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::from_toml_str(text, Path::new("/etc/fleet/inv.toml"))
    }

    #[track_caller]
    fn error_at(text: &str, line: usize, column: usize, needle: &str) {
        let e = load(text).expect_err("must fail");
        let msg = e.to_string();
        assert_eq!(e.location(), Some((line, column)), "{msg}");
        assert!(
            msg.starts_with(&format!("/etc/fleet/inv.toml:{line}:{column}: ")),
            "{msg}"
        );
        assert!(msg.contains(needle), "{msg} lacks {needle}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn error_table() {
        error_at(
            "[hosts.web01]\nadress = \"x\"\n",
            2,
            1,
            "unknown key `adress`",
        );
        error_at("[defaults]\nport = 70000\n", 2, 8, "invalid port `70000`");
        error_at("[defaults]\nport = \"22\"\n", 2, 8, "invalid type");
        error_at(
            "[defaults]\nconnect_timeout = \"soon\"\n",
            2,
            19,
            "invalid `connect_timeout` `soon`",
        );
        error_at(
            "[defaults]\ncommand_timeout = \"0s\"\n",
            2,
            19,
            "greater than zero",
        );
        error_at(
            "[defaults]\nhost_key_policy = \"yolo\"\n",
            2,
            19,
            "invalid `host_key_policy` `yolo`",
        );
        error_at(
            "[hosts.a]\nhost_key = \"MD5:aa\"\n",
            2,
            12,
            "invalid `host_key`",
        );
        error_at("[hosts.a]\njump = \"u@:22\"\n", 2, 8, "invalid `jump`");
        error_at(
            "[groups.web]\nhosts = [\"web[20:02]\"]\n",
            2,
            10,
            "goes backwards",
        );
        error_at(
            "[groups.a]\nchildren = [\"b\"]\n[groups.b]\nchildren = [\"a\"]\n",
            3,
            9,
            "group cycle: `a` -> `b` -> `a`",
        );
        error_at(
            "[groups.a]\nchildren = [\"nope\"]\n",
            2,
            13,
            "unknown child group `nope`",
        );
        error_at(
            "[hosts.\"web[01:03]\"]\n[hosts.web02]\n",
            2,
            8,
            "host `web02` is defined twice",
        );
        error_at("[hosts.\"web-\"]\n", 1, 8, "has no `address`");
        error_at("[hosts.a]\naddress = \"\"\n", 2, 11, "invalid `address`");
        error_at("[groups.all]\n", 1, 9, "built-in group");
        error_at("[defaults\n", 1, 10, "");
        error_at(
            "[hosts.a.sites.s]\nroot = \"/var/www/d7\"\nuri = \"https://a.org\"\nbackup_dir = \"/var/www/d7/sites/all/modules/bak\"\n",
            4,
            14,
            "inside its Drupal root",
        );
        error_at(
            "[hosts.a.sites.s]\nuri = \"https://a.org\"\n",
            1,
            16,
            "has no `root`",
        );
        error_at(
            "[hosts.a.sites.s]\nroot = \"relative\"\nuri = \"x\"\n",
            2,
            8,
            "absolute path",
        );
        error_at("[hosts.a.sites.s]\nroot = \"/r\"\n", 1, 16, "has no `uri`");
        error_at(
            "[defaults]\ndb_upgrade = \"php\"\n",
            2,
            14,
            "invalid `db_upgrade`",
        );
        error_at("[rollout]\nbatches = \"1,0\"\n", 2, 11, "invalid `batches`");
    }

    /// Names become `--out-dir` file names and selector terms: nothing that could leave the
    /// directory (`/`, a leading `.`) or split a selector.
    #[test]
    fn host_and_group_names_are_plain_words() {
        let rule = "use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`";
        error_at(
            "[hosts.\"../../X\"]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "invalid host name `../../X`: it starts with `.`",
        );
        error_at(
            "[hosts.\"/tmp/X\"]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "invalid host name `/tmp/X`: `/` is not allowed",
        );
        error_at("[hosts.\"a/b\"]\naddress = \"10.0.0.1\"\n", 1, 8, rule);
        error_at(
            "[hosts.\"..\"]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "starts with `.`",
        );
        error_at("[hosts.\".hidden\"]\n", 1, 8, "starts with `.`");
        error_at("[hosts.\"-l\"]\n", 1, 8, "starts with `-`");
        error_at("[hosts.\"\"]\n", 1, 8, "invalid host name ``: it is empty");
        error_at("[hosts.\"web 01\"]\n", 1, 8, "a space is not allowed");
        error_at("[hosts.\"web\\n01\"]\n", 1, 8, "`\\n` is not allowed");
        error_at("[hosts.\"wéb\"]\n", 1, 8, "`é` is not allowed");
        error_at("[hosts.\"a$(id)\"]\n", 1, 8, "`$` is not allowed");
        // A range in a `[hosts]` key: every name it makes is checked, and the error shows
        // the pattern.
        error_at(
            "[hosts.\"web[01:02]/x\"]\n",
            1,
            8,
            "invalid host name `web01/x` (from `web[01:02]/x`): `/` is not allowed",
        );
        // Hosts named only in a group's list, plain and from ranges.
        error_at(
            "[groups.web]\nhosts = [\"ok\", \"../../X\"]\n",
            2,
            16,
            "invalid host name `../../X`",
        );
        error_at(
            "[groups.web]\nhosts = [\"../w[1:2]\"]\n",
            2,
            10,
            "invalid host name `../w1` (from `../w[1:2]`): it starts with `.`",
        );
        error_at(
            "[groups.web]\nhosts = [\"a,b\"]\n",
            2,
            10,
            "`,` is not allowed",
        );
        // Group names.
        error_at("[groups.\"../g\"]\n", 1, 9, "invalid group name `../g`");
        error_at("[groups.\"a:b\"]\n", 1, 9, "`:` is not allowed");
        error_at("[groups.\"-g\"]\n", 1, 9, "starts with `-`");
        error_at(
            "[groups.\"\"]\n",
            1,
            9,
            "invalid group name ``: it is empty",
        );

        // What stays valid: dots, dashes, underscores and digits inside names.
        let inv = load(
            "[hosts.\"web01.example.com\"]\n[hosts.db_2-a]\n[groups.\"eu-west_1.prod\"]\nhosts = [\"n[1:2].x\", \"9lives\"]\n",
        )
        .unwrap();
        let names: Vec<&str> = inv.hosts().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["web01.example.com", "db_2-a", "n1.x", "n2.x", "9lives"]
        );
    }

    /// `-l web` must not have to guess between a host and a group: both places are named.
    #[test]
    fn host_and_group_may_not_share_a_name() {
        error_at(
            "[hosts.web]\naddress = \"10.0.0.1\"\n\n[groups.web]\nhosts = [\"a\"]\n",
            4,
            9,
            "group `web` and host `web` (/etc/fleet/inv.toml:1:8) have the same name, so `-l web` cannot tell them apart: rename one",
        );
        // The host may come from a range in `[hosts]`, or only from a group's list (its own
        // or another group's).
        error_at(
            "[hosts.\"db[1:3]\"]\n[groups.db2]\n",
            2,
            9,
            "group `db2` and host `db2` (/etc/fleet/inv.toml:1:8)",
        );
        error_at(
            "[groups.web]\nhosts = [\"web\"]\n",
            1,
            9,
            "group `web` and host `web` (/etc/fleet/inv.toml:2:10)",
        );
        error_at(
            "[groups.a]\nhosts = [\"x\", \"b\"]\n[groups.b]\nhosts = [\"y\"]\n",
            3,
            9,
            "group `b` and host `b` (/etc/fleet/inv.toml:2:15)",
        );
        // `all` is the built-in group, so it cannot name a host either.
        error_at(
            "[hosts.all]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "cannot name a host",
        );
        error_at(
            "[groups.g]\nhosts = [\"all\"]\n",
            2,
            10,
            "cannot name a host",
        );
    }

    /// Site values end up in shell commands on the hosts: the URI is strict, paths are
    /// absolute and free of control characters and `..`.
    #[test]
    fn site_uri_and_paths_are_strict() {
        let site =
            |uri: &str| format!("[hosts.web01.sites.main]\nroot = \"/var/www/d7\"\nuri = {uri}\n");
        let expected = "expected `http(s)://host[:port][/path]` with only `A-Za-z0-9-._~/` and `%XX` in the path";
        error_at(
            &site("\"https://x.org/$(touch${IFS}/tmp/p)\""),
            3,
            7,
            &format!(
                "invalid `uri` `https://x.org/$(touch${{IFS}}/tmp/p)` of site `main` on host `web01`: `$` is not allowed in the path; {expected}"
            ),
        );
        error_at(
            &site("\"https://x.org/`id`\""),
            3,
            7,
            "a backtick is not allowed",
        );
        error_at(&site("\"https://x.org/a;id\""), 3, 7, "`;` is not allowed");
        error_at(&site("\"https://x.org/'\""), 3, 7, "`'` is not allowed");
        error_at(&site("'https://x.org/\"'"), 3, 7, "`\"` is not allowed");
        error_at(
            &site("\"https://x.org/a\\nb\""),
            3,
            7,
            "`https://x.org/a\\nb`",
        );
        error_at(
            &site("\"https://x.org/a\\nb\""),
            3,
            7,
            "`\\n` is not allowed",
        );
        error_at(
            &site("\"https://x.org/a b\""),
            3,
            7,
            "a space is not allowed",
        );
        error_at(
            &site("\" https://x.org\""),
            3,
            7,
            "must start with `http://`",
        );
        error_at(&site("\"\""), 3, 7, "must start with `http://`");
        error_at(
            &site("\"www.example.org\""),
            3,
            7,
            "must start with `http://`",
        );
        error_at(&site("\"https://x.org:99999\""), 3, 7, "port `99999`");
        // A range host names each of its hosts.
        error_at(
            "[hosts.\"w[1:2]\".sites.s]\nroot = \"/r\"\nuri = \"https://a|b\"\n",
            3,
            7,
            "of site `s` on host `w1`: `|` is not allowed in the host",
        );

        let paths = |root: &str, backup: &str| {
            format!(
                "[hosts.a.sites.s]\nroot = {root}\nuri = \"https://a.org\"\nbackup_dir = {backup}\n"
            )
        };
        error_at(
            &paths("\"/var/www\\u0000x\"", "\"/b\""),
            2,
            8,
            "without control characters (`\\u{0}` found)",
        );
        error_at(
            &paths("\"/var/www\\nrm\"", "\"/b\""),
            2,
            8,
            "`root` `/var/www\\nrm` must be a path on the host without control characters (`\\n` found)",
        );
        error_at(
            &paths("\"/r\"", "\"/b\\n\""),
            4,
            14,
            "`backup_dir` `/b\\n` must be a path",
        );
        error_at(
            &paths("\"/r\"", "\"/b\\u0000\""),
            4,
            14,
            "control characters",
        );
        error_at(
            &paths("\"/r\"", "\"b\""),
            4,
            14,
            "`backup_dir` `b` must be an absolute path",
        );
        error_at(
            &paths("\"r\"", "\"/b\""),
            2,
            8,
            "`root` `r` must be an absolute path",
        );
        error_at(&paths("\"\"", "\"/b\""), 2, 8, "must be an absolute path");
        // `..` would slip a backup directory into the root past the text comparison.
        error_at(
            &paths(
                "\"/var/www/d7\"",
                "\"/var/www/x/../d7/sites/all/modules/bak\"",
            ),
            4,
            14,
            "without `.` or `..` components",
        );
        error_at(
            &paths("\"/var/www/./d7\"", "\"/b\""),
            2,
            8,
            "without `.` or `..`",
        );
        error_at(
            "[defaults]\nbackup_dir = \"/b\\nx\"\n",
            2,
            14,
            "control characters",
        );
        error_at("[hosts.a]\nbackup_dir = \"/b/..\"\n", 2, 14, "`..`");

        // What stays valid.
        let inv = load(
            "[hosts.a.sites.s]\nroot = \"/var/www/d7/\"\nuri = \"https://[2001:db8::1]:8443/civi/caf%C3%A9\"\nbackup_dir = \"/srv/fleet-backups/..x\"\n",
        )
        .unwrap();
        let s = &inv.host("a").unwrap().sites[0];
        assert_eq!(s.uri, "https://[2001:db8::1]:8443/civi/caf%C3%A9");
        assert_eq!(s.root, "/var/www/d7");
        assert_eq!(s.backup_dir, "/srv/fleet-backups/..x");
    }

    #[test]
    fn inventory_order_is_first_mention() {
        let inv = load("[groups.g]\nhosts = [\"b[1:2]\", \"a\"]\n[hosts.z]\n[hosts.b2]\n").unwrap();
        let names: Vec<&str> = inv.hosts().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["b1", "b2", "a", "z"]);
    }

    #[test]
    fn settings_and_vars_merge_in_order() {
        let inv = load(
            r#"
[defaults]
user = "deploy"
port = 2200
vars = { a = "defaults", b = "defaults", c = "defaults", d = "defaults" }
[groups.child]
hosts = ["h1"]
vars = { b = "child", c = "child" }
[groups.parent]
children = ["child"]
vars = { a = "parent", b = "parent" }
[hosts.h1]
port = 22
vars = { c = "host" }
[hosts.h2]
"#,
        )
        .unwrap();
        let h1 = inv.host("h1").unwrap();
        assert_eq!(h1.user, "deploy");
        assert_eq!(h1.port, 22);
        assert_eq!(h1.var("a").as_deref(), Some("parent"));
        assert_eq!(h1.var("b").as_deref(), Some("child"));
        assert_eq!(h1.var("c").as_deref(), Some("host"));
        assert_eq!(h1.var("d").as_deref(), Some("defaults"));
        assert_eq!(h1.groups, ["child", "parent"]);
        let h2 = inv.host("h2").unwrap();
        assert_eq!(h2.port, 2200);
        assert!(h2.groups.is_empty());
        assert_eq!(h2.var("b").as_deref(), Some("defaults"));
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

    #[test]
    fn sites_inherit_site_keys() {
        let inv = load(
            r#"
[defaults]
backup_dir = "/srv/backups"
cv = "/usr/local/bin/cv"
[hosts."web[1:2]"]
web_user = "apache"
[hosts."web[1:2]".sites.main]
root = "/var/www/d7"
uri = "https://main.example.org"
[hosts."web[1:2]".sites.shop]
root = "/var/www/d7"
uri = "https://shop.example.org"
db_upgrade = "drush"
disable_modules = ["civicrm_rules"]
[rollout]
batches = "1,50%"
max_fail = "10%"
max_per = { db_server = 2 }
"#,
        )
        .unwrap();
        let web2 = inv.host("web2").unwrap();
        assert_eq!(web2.sites.len(), 2);
        let (main, shop) = (&web2.sites[0], &web2.sites[1]);
        assert_eq!(
            (main.name.as_str(), main.root.as_str()),
            ("main", "/var/www/d7")
        );
        assert_eq!(main.web_user.as_deref(), Some("apache"));
        assert_eq!(main.backup_dir, "/srv/backups");
        assert_eq!(main.cv, "/usr/local/bin/cv");
        assert_eq!(main.drush, "drush");
        assert_eq!(main.db_upgrade, DbUpgradeTool::Auto);
        assert_eq!(shop.db_upgrade, DbUpgradeTool::Drush);
        assert_eq!(shop.disable_modules, ["civicrm_rules"]);
        let r = inv.rollout();
        assert_eq!(r.batches.as_ref().unwrap().sizes(10), [1, 5, 4]);
        assert_eq!(r.max_fail, Some(crate::Amount::Percent(10)));
        assert_eq!(r.max_per["db_server"], 2);
    }

    #[test]
    fn example_file_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../inventory.example.toml"
        ));
        let inv = Inventory::load(path).unwrap();
        assert_eq!(inv.hosts().len(), 1 + 20 + 2);
        let web01 = inv.host("web01").unwrap();
        assert_eq!(web01.port, 2222);
        assert_eq!(web01.jump[0].host, "bastion");
        assert_eq!(web01.var("tier").as_deref(), Some("canary"));
        assert_eq!(web01.groups, ["web", "canary"]);
        let web07 = inv.host("web07").unwrap();
        assert_eq!(web07.address, "web07");
        assert_eq!(web07.var("tier").as_deref(), Some("frontend"));
        assert_eq!(
            inv.host("db2").unwrap().host_key_policy,
            HostKeyPolicy::AcceptNew
        );
        assert!(matches!(
            inv.host("bastion").unwrap().host_key_policy,
            HostKeyPolicy::Pinned(_)
        ));
    }
}
