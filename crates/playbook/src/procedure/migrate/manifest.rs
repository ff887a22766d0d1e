//! The migration manifest: what `fleet migrate` builds each site's new release from, and the
//! checks a new site must pass before it is released.
//!
//! ```toml
//! [core]                       # the new major's core release (drupal.org layout)
//! version = "10.3.1"
//! tarball = "drupal-10.3.1.tar.gz"   # relative to this file, or absolute
//! sha256 = "..."               # optional; checked when given
//!
//! [[module]]                   # contrib modules, unpacked into modules/contrib/
//! name = "migrate_upgrade"
//! version = "4.0.2"
//! tarball = "migrate_upgrade-4.0.2.tar.gz"
//! sha256 = "..."
//!
//! [site]
//! profile = "minimal"          # drush site:install PROFILE
//! database = "{old_db}_d10"    # the new site's database; {old_db}, {site}, {host}
//! enable = ["migrate", "migrate_drupal", "migrate_plus", "migrate_upgrade"]
//! drush = "vendor/bin/drush"   # the release's own Drush, relative to the release
//!
//! [import]
//! legacy_key = "migrate"       # settings.php key of the old site's database
//! tag = "Drupal 7"             # optional: migrate:import --tag (else --all)
//!
//! [qa]
//! count_tolerance = 0          # users and nodes, old vs new: rows (0) or "2%"
//! probe = "http://{address}:8080/"   # fetched on the host with the site's host name
//! marker = "Drupal 10.3.1"     # what the page must contain
//!
//! [civicrm]                    # for sites with CiviCRM: the new site's copy of its database
//! database = "{old_db}_d10"    # the copy's name; {old_db} is the old CiviCRM database here
//! root = "vendor/civicrm/civicrm-core"   # CiviCRM's code in the release (the default)
//!
//! [[qa.check]]                 # the manifest's own checks, run in the new release
//! name = "no-php-errors"
//! run = "! grep -q 'PHP Fatal' /var/log/php.log"
//! ```
//!
//! Every tarball is read here, on the controller: its SHA-256 is computed (and compared with
//! the manifest's when given) so that the host can check the copy it received against it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{PlaybookError, located};
use check::{check_db_template, machine_name, tarball, text_value, tolerance};

/// A tarball the manifest names, read and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tarball {
    /// Its version.
    pub version: String,
    /// Where it is on the controller.
    pub path: PathBuf,
    /// Its SHA-256 (hex), as computed here.
    pub sha256: String,
}

/// A contrib module of the new release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its machine name (the tarball's top directory).
    pub name: String,
    /// Its tarball.
    pub tarball: Tarball,
}

/// How the new site is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSite {
    /// The install profile.
    pub profile: String,
    /// The new database's name, with `{old_db}`, `{site}`, `{host}` to fill in.
    pub database: String,
    /// Modules to enable after the install.
    pub enable: Vec<String>,
    /// The release's Drush, relative to the release.
    pub drush: String,
}

/// How the data is imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The settings.php connection key of the old site's database.
    pub legacy_key: String,
    /// `migrate:import --tag`, else `--all`.
    pub tag: Option<String>,
}

/// How far old and new counts may differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// At most this many rows.
    Rows(u64),
    /// At most this percentage of the old count.
    Percent(f64),
}

impl Tolerance {
    /// Whether `new` is close enough to `old`.
    pub fn accepts(self, old: u64, new: u64) -> bool {
        let diff = old.abs_diff(new);
        match self {
            Tolerance::Rows(n) => diff <= n,
            Tolerance::Percent(p) => (diff as f64) <= (old as f64) * p / 100.0,
        }
    }
}

/// One of the manifest's own checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its name (journal, messages).
    pub name: String,
    /// The shell command; it passes when it exits 0.
    pub run: String,
}

/// The QA gates besides Drush's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Qa {
    /// Users and nodes, old vs new.
    pub count_tolerance: Tolerance,
    /// The URL fetched on the host (with `{address}`, the host's inventory address).
    pub probe: Option<String>,
    /// What the fetched page must contain.
    pub marker: Option<String>,
    /// The manifest's own checks.
    pub checks: Vec<Check>,
}

/// CiviCRM in the new sites: each gets a copy of its old CiviCRM database (never the live
/// one), upgraded by `cv upgrade:db` with the release's CiviCRM code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCivicrm {
    /// The copy's name, `{old_db}` (the old CiviCRM database), `{site}`, `{host}` filled in.
    pub database: String,
    /// CiviCRM's code in the release, relative to it.
    pub root: String,
}

/// A migration manifest, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The file it was read from.
    pub source: PathBuf,
    /// Its text, recorded in the run's journal (a resume goes on with what the run began).
    pub text: String,
    /// The new major's core release.
    pub core: Tarball,
    /// Contrib modules.
    pub modules: Vec<Module>,
    /// The new site.
    pub site: NewSite,
    /// The import.
    pub import: Import,
    /// The QA gates.
    pub qa: Qa,
    /// CiviCRM, for the sites that have it (none: a site with CiviCRM is not passed).
    pub civicrm: Option<NewCivicrm>,
}

impl Manifest {
    /// The new release's major version (`10` of `10.3.1`).
    pub fn major(&self) -> u32 {
        major(&self.core.version).unwrap_or(0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    core: Spanned<RawTarball>,
    #[serde(default)]
    module: Vec<Spanned<RawModule>>,
    site: Spanned<RawSite>,
    #[serde(default)]
    import: RawImport,
    qa: Option<Spanned<RawQa>>,
    civicrm: Option<Spanned<RawCivicrm>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCivicrm {
    database: Spanned<String>,
    root: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarball {
    version: Spanned<String>,
    tarball: Spanned<String>,
    sha256: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    name: Spanned<String>,
    version: Spanned<String>,
    tarball: Spanned<String>,
    sha256: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    profile: Spanned<String>,
    database: Spanned<String>,
    #[serde(default)]
    enable: Vec<Spanned<String>>,
    drush: Option<Spanned<String>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImport {
    legacy_key: Option<Spanned<String>>,
    tag: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQa {
    count_tolerance: Option<Spanned<toml::Value>>,
    probe: Option<Spanned<String>>,
    marker: Option<Spanned<String>>,
    #[serde(default)]
    check: Vec<Spanned<RawCheck>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Spanned<String>,
    run: Spanned<String>,
}

/// The placeholders of `[site] database`.
const DB_PLACEHOLDERS: &[&str] = &["old_db", "site", "host"];

impl Manifest {
    /// Reads and checks a manifest and the tarballs it names.
    ///
    /// # Errors
    ///
    /// [`PlaybookError::Plan`] naming the file, line and column of what is wrong (a tarball
    /// that cannot be read, or whose SHA-256 differs, at its `tarball` or `sha256` key).
    pub fn load(path: &Path) -> Result<Manifest, PlaybookError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PlaybookError::Plan(format!("cannot read manifest `{}`: {e}", path.display()))
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses manifest `text` read from `origin` (relative tarball paths are relative to
    /// its directory).
    ///
    /// # Errors
    ///
    /// As [`Manifest::load`].
    pub fn parse(text: &str, origin: &Path) -> Result<Manifest, PlaybookError> {
        Manifest::parse_with(text, origin, true)
    }

    /// The manifest a run recorded (its journal's copy), for the run's later phases: read
    /// and checked as [`Manifest::parse`] does, but its tarballs are not read again (they
    /// were, when the run started, and a later phase does not use them).
    ///
    /// # Errors
    ///
    /// As [`Manifest::load`].
    pub fn parse_recorded(text: &str, origin: &Path) -> Result<Manifest, PlaybookError> {
        Manifest::parse_with(text, origin, false)
    }

    fn parse_with(text: &str, origin: &Path, read: bool) -> Result<Manifest, PlaybookError> {
        let at =
            |offset: usize, msg: String| PlaybookError::Plan(located(origin, text, offset, &msg));
        let raw: Raw = toml::from_str(text).map_err(|e| {
            at(
                e.span().map_or(0, |s| s.start),
                e.message()
                    .replace("unknown field", "unknown key")
                    .replace('\n', " "),
            )
        })?;
        let dir = origin.parent().unwrap_or(Path::new("."));
        let rc = raw.core.into_inner();
        let core = tarball(&at, dir, &rc.version, &rc.tarball, rc.sha256.as_ref(), read)?;
        match major(&core.version) {
            Some(m) if m >= 8 => {}
            _ => {
                return Err(at(
                    rc.version.span().start,
                    format!(
                        "`version` `{}` of `[core]` is not a Drupal 8 or later release (`MAJOR.MINOR[.PATCH]`, MAJOR >= 8): `fleet migrate` builds sites on Drupal's Migrate API",
                        rc.version.get_ref()
                    ),
                ));
            }
        }

        let mut modules: Vec<Module> = Vec::new();
        for m in raw.module {
            let m = m.into_inner();
            machine_name(&at, "module `name`", &m.name)?;
            if modules.iter().any(|o| o.name == *m.name.get_ref()) {
                return Err(at(
                    m.name.span().start,
                    format!("module `{}` is listed twice", m.name.get_ref()),
                ));
            }
            let t = tarball(&at, dir, &m.version, &m.tarball, m.sha256.as_ref(), read)?;
            modules.push(Module {
                name: m.name.into_inner(),
                tarball: t,
            });
        }

        let rs = raw.site.into_inner();
        machine_name(&at, "`profile`", &rs.profile)?;
        check_db_template(&at, &rs.database)?;
        let mut enable = Vec::new();
        for e in &rs.enable {
            machine_name(&at, "module in `enable`", e)?;
            enable.push(e.get_ref().clone());
        }
        let drush = match &rs.drush {
            Some(d) => release_path(&at, "drush", d, "vendor/bin/drush")?,
            None => "vendor/bin/drush".to_owned(),
        };
        let civicrm = match raw.civicrm {
            None => None,
            Some(c) => {
                let c = c.into_inner();
                check_db_template(&at, &c.database)?;
                let root = match &c.root {
                    Some(r) => release_path(&at, "root", r, "vendor/civicrm/civicrm-core")?,
                    None => "vendor/civicrm/civicrm-core".to_owned(),
                };
                Some(NewCivicrm {
                    database: c.database.into_inner(),
                    root,
                })
            }
        };

        let legacy_key = match &raw.import.legacy_key {
            Some(k) => {
                if k.get_ref().is_empty()
                    || !k
                        .get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(at(
                        k.span().start,
                        format!(
                            "`legacy_key` `{}` must be a settings.php connection key (`A-Za-z0-9_`)",
                            k.get_ref().escape_debug()
                        ),
                    ));
                }
                k.get_ref().clone()
            }
            None => "migrate".to_owned(),
        };
        if legacy_key == "default" {
            return Err(at(
                raw.import.legacy_key.as_ref().map_or(0, |k| k.span().start),
                "`legacy_key` cannot be `default`: that is the new site's own database".into(),
            ));
        }
        let tag = match &raw.import.tag {
            Some(t) => Some(text_value(&at, "`tag`", t)?),
            None => None,
        };

        let qa = match raw.qa {
            None => Qa {
                count_tolerance: Tolerance::Rows(0),
                probe: None,
                marker: None,
                checks: Vec::new(),
            },
            Some(q) => {
                let q = q.into_inner();
                let count_tolerance = match &q.count_tolerance {
                    None => Tolerance::Rows(0),
                    Some(v) => tolerance(v.get_ref()).ok_or_else(|| {
                        at(
                            v.span().start,
                            "`count_tolerance` must be a number of rows (`0`, `5`) or a percentage (`\"2%\"`)".into(),
                        )
                    })?,
                };
                let probe = match &q.probe {
                    Some(p) => {
                        let v = p.get_ref();
                        let rest = v
                            .strip_prefix("http://")
                            .or_else(|| v.strip_prefix("https://"));
                        let ok = rest.is_some_and(|r| {
                            !r.is_empty()
                                && r.replace("{address}", "a")
                                    .chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "-._~/:%[]".contains(c))
                        });
                        if !ok {
                            return Err(at(
                                p.span().start,
                                format!(
                                    "`probe` `{}` must be an `http://` or `https://` URL (`{{address}}` is the host's address), with only `A-Za-z0-9-._~/:%[]`",
                                    v.escape_debug()
                                ),
                            ));
                        }
                        Some(v.clone())
                    }
                    None => None,
                };
                let marker = match &q.marker {
                    Some(m) => Some(text_value(&at, "`marker`", m)?),
                    None => None,
                };
                if marker.is_some() && probe.is_none() {
                    return Err(at(
                        q.marker.as_ref().map_or(0, |m| m.span().start),
                        "`marker` needs a `probe` URL to look for it in".into(),
                    ));
                }
                let mut checks: Vec<Check> = Vec::new();
                for c in q.check {
                    let c = c.into_inner();
                    machine_name(&at, "check `name`", &c.name)?;
                    if checks.iter().any(|o| o.name == *c.name.get_ref()) {
                        return Err(at(
                            c.name.span().start,
                            format!("check `{}` is listed twice", c.name.get_ref()),
                        ));
                    }
                    if c.run.get_ref().trim().is_empty() {
                        return Err(at(
                            c.run.span().start,
                            "a check needs a `run` command".into(),
                        ));
                    }
                    checks.push(Check {
                        name: c.name.into_inner(),
                        run: c.run.into_inner(),
                    });
                }
                Qa {
                    count_tolerance,
                    probe,
                    marker,
                    checks,
                }
            }
        };

        Ok(Manifest {
            source: origin.to_owned(),
            text: text.to_owned(),
            core,
            modules,
            site: NewSite {
                profile: rs.profile.into_inner(),
                database: rs.database.into_inner(),
                enable,
                drush,
            },
            import: Import { legacy_key, tag },
            qa,
            civicrm,
        })
    }
}

/// A path inside the release: relative, without `.`, `..`, empty parts, quotes or control
/// characters.
fn release_path(
    at: &impl Fn(usize, String) -> PlaybookError,
    key: &str,
    d: &Spanned<String>,
    example: &str,
) -> Result<String, PlaybookError> {
    let v = d.get_ref();
    if v.is_empty()
        || v.starts_with('/')
        || v.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        || v.chars().any(|c| c.is_control() || c == '\'')
    {
        return Err(at(
            d.span().start,
            format!(
                "`{key}` `{}` must be a path inside the release (relative, without `.`, `..`, empty parts or quotes), like `{example}`",
                v.escape_debug()
            ),
        ));
    }
    Ok(v.clone())
}

/// `10` of `10.3.1`; `None` unless the version is `MAJOR.MINOR[.PATCH]` in digits.
pub(crate) fn major(version: &str) -> Option<u32> {
    let parts: Vec<&str> = version.split('.').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    parts[0].parse().ok()
}

/// The new database's name for a site: `template` filled in. `None` when the result is not
/// a plain MySQL name (`A-Za-z0-9_`, at most 64) or is the old database itself.
pub fn database_name(template: &str, old_db: &str, site: &str, host: &str) -> Option<String> {
    let name = template
        .replace("{old_db}", old_db)
        .replace("{site}", site)
        .replace("{host}", host);
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        // MySQL on a case-insensitive filesystem (or `lower_case_table_names`) takes
        // `Drupal` for `drupal`.
        && !name.eq_ignore_ascii_case(old_db);
    ok.then_some(name)
}

mod check;
#[cfg(test)]
mod tests;
