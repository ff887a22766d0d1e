//! Drupal 7 sites with CiviCRM on lab hosts, the fake `drush`/`cv` that manage them, and a
//! release tarball to upgrade them to (with its localization tarball).
//!
//! Per host `hNN` (in its own directory, `FLEET_ROOT`):
//!
//! ```text
//! www/drupal 7/                       Drupal root (a space on purpose: quoting is tested)
//!   index.php, includes/bootstrap.inc
//!   sites/all/modules/civicrm/        the shared CiviCRM codebase (xml/version.xml = VERSION)
//!   sites/siteK.hNN.test/             settings.php, civicrm.settings.php, files/civicrm/templates_c/
//! backups/o'brien/                    backup dir (a quote on purpose)
//! srv/siteK.hNN.test/current          the symlink the web server serves (to `www/drupal 7`)
//! srv/siteK.hNN.test/releases/        where `fleet migrate` builds new releases
//! fake-civi/db/<db>/                  the fakes' "databases" (civicrm_domain.version, ...)
//! ```
//!
//! Each site's Drupal database holds counts (`count.users`, `count.node`, ...) that a
//! migration carries over, and each site dir an `index.html`: the front page the web server
//! answers with (what PHP would render), naming the site and its Drupal version.
//!
//! On odd hosts every site shares one CiviCRM database (`civicrm_hNN`, one DB upgrade for all);
//! on even hosts each site has its own (`civicrm_hNN_K`), and on every host with
//! [`SitesOptions::own_civicrm`]. Every site has its own Drupal DB.
//! Site 1 starts with `maintenance_mode` 0 and has `civicrm_rules` to disable; the others
//! have never saved `maintenance_mode` (drush answers "No matching variable found").

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::io;
use crate::inventory::toml_str;
use crate::{Lab, LabError};

/// The fake `drush` and `cv` (one script, dispatching on the name it is called by).
const FAKE_CIVI: &str = include_str!("../fakes/fake-civi");
/// What the fakes share (sourced from the directory they are in).
const FAKE_LIB: &str = include_str!("../fakes/fake-lib.sh");
/// The fake Drush 12 of a Drupal 10 release (run by the release's `vendor/bin/drush`).
pub(crate) const FAKE_DRUSH12: &str = include_str!("../fakes/fake-drush12");

/// Sites to lay out on every host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitesOptions {
    /// Sites per host (they share the host's codebase).
    pub per_host: usize,
    /// CiviCRM version installed (code and databases).
    pub version: String,
    /// Version of the release tarball written to `DIR/civicrm-<release>-drupal.tar.gz` (and
    /// of its localization tarball, `DIR/civicrm-<release>-l10n.tar.gz`).
    pub release: String,
    /// Whether the sites of odd-numbered hosts share one CiviCRM database (the default; else
    /// every site has its own).
    pub shared_civicrm: bool,
    /// The user owning the sites' files (their code, `files/`, `templates_c`, the fakes'
    /// databases), as a web server's user does on a real host; root when `None`. See
    /// [`crate::users::WEB`].
    pub web_user: Option<String>,
}

impl SitesOptions {
    /// `per_host` sites at `version`, with a release one minor version newer.
    pub fn new(per_host: usize, version: &str) -> Self {
        Self {
            per_host,
            version: version.to_owned(),
            release: next_minor(version),
            shared_civicrm: true,
            web_user: None,
        }
    }

    /// The sites' files owned by `user` (which must exist), as on a real server.
    #[must_use]
    pub fn owned_by(mut self, user: &str) -> Self {
        self.web_user = Some(user.to_owned());
        self
    }

    /// Every site with its own CiviCRM database.
    #[must_use]
    pub fn own_civicrm(mut self) -> Self {
        self.shared_civicrm = false;
        self
    }
}

/// `5.69.0` -> `5.70.0`.
pub fn next_minor(version: &str) -> String {
    let mut parts: Vec<String> = version.split('.').map(str::to_owned).collect();
    if let Some(minor) = parts
        .get_mut(1)
        .and_then(|m| m.parse::<u64>().ok().map(|n| (n, m)))
    {
        *minor.1 = (minor.0 + 1).to_string();
        for p in parts.iter_mut().skip(2) {
            *p = "0".into();
        }
    }
    parts.join(".")
}

/// One lab site, as laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSite {
    /// Host name.
    pub host: String,
    /// Site name (`siteK`).
    pub name: String,
    /// Drupal root.
    pub root: PathBuf,
    /// URI (`https://siteK.hNN.test`).
    pub uri: String,
    /// `sites/<dir>` of the site.
    pub site_dir: PathBuf,
    /// The symlink the web server serves (`srv/<uri host>/current`).
    pub current: PathBuf,
    /// Backup dir.
    pub backup_dir: PathBuf,
    /// CiviCRM database name.
    pub civi_db: String,
    /// Drupal database name.
    pub cms_db: String,
    /// The fakes' state dir on that host.
    pub state: PathBuf,
}

impl LabSite {
    /// The fake database directory of `db` on this site's host.
    pub fn db_dir(&self, db: &str) -> PathBuf {
        self.state.join("db").join(db)
    }

    /// `civicrm_domain.version` of the site's CiviCRM database.
    pub fn db_version(&self) -> String {
        read_trim(&self.db_dir(&self.civi_db).join("civicrm_domain.version"))
    }

    /// The code version in the site's codebase (`xml/version.xml`).
    pub fn code_version(&self) -> String {
        let text =
            std::fs::read_to_string(self.code_dir().join("xml/version.xml")).unwrap_or_default();
        text.split("<version_no>")
            .nth(1)
            .and_then(|r| r.split("</version_no>").next())
            .unwrap_or("")
            .to_owned()
    }

    /// The site's CiviCRM codebase (shared by the host's sites).
    pub fn code_dir(&self) -> PathBuf {
        self.root.join("sites/all/modules/civicrm")
    }

    /// Installs translations of release `version` for `locales` in the site's codebase
    /// (`l10n/<locale>/LC_MESSAGES/civicrm.mo` holding [`l10n_mo_text`]), as an earlier
    /// upgrade with `--l10n` leaves them; every site sharing the codebase has them.
    ///
    /// # Errors
    ///
    /// When the files cannot be written.
    pub fn install_translations(&self, version: &str, locales: &[&str]) -> Result<(), LabError> {
        for locale in locales {
            write(
                &self
                    .code_dir()
                    .join(format!("l10n/{locale}/LC_MESSAGES/civicrm.mo")),
                &l10n_mo_text(locale, version),
            )?;
        }
        Ok(())
    }

    /// The translations in the site's codebase: each locale with a
    /// `l10n/<locale>/LC_MESSAGES/civicrm.mo`, and what that file holds.
    pub fn translations(&self) -> std::collections::BTreeMap<String, String> {
        let l10n = self.code_dir().join("l10n");
        std::fs::read_dir(&l10n)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let locale = e.file_name().to_string_lossy().into_owned();
                let mo = std::fs::read_to_string(e.path().join("LC_MESSAGES/civicrm.mo")).ok()?;
                Some((locale, mo))
            })
            .collect()
    }

    /// Where [`LabSite::current`] points now (as the web server follows it).
    pub fn served(&self) -> PathBuf {
        std::fs::read_link(&self.current).unwrap_or_default()
    }

    /// The site's host name in its URI (`siteK.hNN.test`).
    pub fn uri_host(&self) -> &str {
        self.uri.split("://").nth(1).unwrap_or(&self.uri)
    }

    /// Drupal's `maintenance_mode` (`0`, `1`, or `unset`).
    pub fn maintenance(&self) -> String {
        let p = self.db_dir(&self.cms_db).join("variable.maintenance_mode");
        if p.exists() {
            read_trim(&p)
        } else {
            "unset".into()
        }
    }
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Lab {
    /// Lays out sites on every host, installs the fake tools in `DIR/bin`, writes the release
    /// tarball and its localization tarball and adds the sites (and a `[rollout]`) to the
    /// inventory.
    ///
    /// # Errors
    ///
    /// When files cannot be written or `tar` fails.
    pub fn add_sites(&self, opts: &SitesOptions) -> Result<(), LabError> {
        let bin = self.dir().join("bin");
        std::fs::create_dir_all(&bin).map_err(io("create", &bin))?;
        write(&bin.join("fake-lib.sh"), FAKE_LIB)?;
        for (name, text) in [("fake-civi", FAKE_CIVI), ("fake-drush12", FAKE_DRUSH12)] {
            let fake = bin.join(name);
            write(&fake, text)?;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))
                .map_err(io("chmod", &fake))?;
        }
        for tool in ["drush", "cv"] {
            let link = bin.join(tool);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("fake-civi", &link).map_err(io("link", &link))?;
        }
        let mut inv = String::new();
        for site in self.sites(opts) {
            lay_out(&site, &opts.version, site.name == "site1")?;
            let _ = writeln!(inv, "\n[hosts.{}.sites.{}]", site.host, site.name);
            let _ = writeln!(inv, "root = {}", toml_str(&site.root.display().to_string()));
            let _ = writeln!(inv, "uri = {}", toml_str(&site.uri));
            let _ = writeln!(
                inv,
                "current = {}",
                toml_str(&site.current.display().to_string())
            );
            let _ = writeln!(
                inv,
                "backup_dir = {}",
                toml_str(&site.backup_dir.display().to_string())
            );
            let _ = writeln!(
                inv,
                "drush = {}",
                toml_str(&bin.join("drush").display().to_string())
            );
            let _ = writeln!(
                inv,
                "cv = {}",
                toml_str(&bin.join("cv").display().to_string())
            );
            if site.name == "site1" {
                let _ = writeln!(inv, "disable_modules = [\"civicrm_rules\"]");
            }
        }
        if let Some(user) = &opts.web_user {
            self.give_sites_to(user, opts)?;
        }
        let _ = writeln!(inv, "\n[rollout]\nbatches = \"1,100%\"\nmax_fail = \"0\"");
        let path = self.inventory_path();
        let mut text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
        text.push_str(&inv);
        write(&path, &text)?;
        self.write_release(&opts.release)
    }

    /// Makes `user` the owner of every site's files, and the lab directory traversable by it
    /// (a temporary directory is private to its creator), so the web user can run the
    /// sites' tools. Backups stay root's: they are made as the login user.
    fn give_sites_to(&self, user: &str, opts: &SitesOptions) -> Result<(), LabError> {
        let dir = self.dir();
        let mode = std::fs::metadata(dir)
            .map_err(io("stat", dir))?
            .permissions()
            .mode();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o111))
            .map_err(io("chmod", dir))?;
        let mut paths: Vec<PathBuf> = Vec::new();
        for s in self.sites(opts) {
            for p in [
                s.root.clone(),
                s.state.clone(),
                s.current.parent().map(Path::to_owned).unwrap_or_default(),
            ] {
                if !p.as_os_str().is_empty() && !paths.contains(&p) {
                    paths.push(p);
                }
            }
        }
        let out = Command::new("chown")
            .arg("-R")
            .arg(format!("{user}:"))
            .args(&paths)
            .output()
            .map_err(|source| LabError::Run {
                program: "chown".into(),
                source,
            })?;
        if !out.status.success() {
            return Err(LabError::Users(format!(
                "cannot give the sites to `{user}`: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// The sites [`Lab::add_sites`] lays out for `opts`, host by host.
    pub fn sites(&self, opts: &SitesOptions) -> Vec<LabSite> {
        let mut out = Vec::new();
        for (i, h) in self.hosts().iter().enumerate() {
            let root = h.root.join("www/drupal 7");
            let shared_db = opts.shared_civicrm && i % 2 == 0;
            for k in 1..=opts.per_host {
                let name = format!("site{k}");
                let uri_host = format!("{name}.{}.test", h.name);
                out.push(LabSite {
                    host: h.name.clone(),
                    uri: format!("https://{uri_host}"),
                    site_dir: root.join("sites").join(&uri_host),
                    current: h.root.join("srv").join(&uri_host).join("current"),
                    root: root.clone(),
                    backup_dir: h.root.join("backups/o'brien"),
                    civi_db: if shared_db {
                        format!("civicrm_{}", h.name)
                    } else {
                        format!("civicrm_{}_{k}", h.name)
                    },
                    cms_db: format!("drupal_{}_{k}", h.name),
                    state: h.root.join("fake-civi"),
                    name,
                });
            }
        }
        out
    }

    /// `DIR/civicrm-<version>-drupal.tar.gz`.
    pub fn release_tarball(&self, version: &str) -> PathBuf {
        self.dir().join(format!("civicrm-{version}-drupal.tar.gz"))
    }

    /// `DIR/civicrm-<version>-l10n.tar.gz`.
    pub fn l10n_tarball(&self, version: &str) -> PathBuf {
        self.dir().join(format!("civicrm-{version}-l10n.tar.gz"))
    }

    fn write_release(&self, version: &str) -> Result<(), LabError> {
        let stage = self.dir().join("release-stage");
        let _ = std::fs::remove_dir_all(&stage);
        write_code(&stage.join("civicrm"), version)?;
        tar(&self.release_tarball(version), &stage, &["civicrm"])?;
        std::fs::remove_dir_all(&stage).map_err(io("remove", &stage))?;
        self.write_l10n(version).map(|_| ())
    }

    /// Writes `DIR/civicrm-<version>-l10n.tar.gz`, laid out as CiviCRM's own: only
    /// `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo` and `civicrm/sql/civicrm_data.<locale>.mysql`
    /// (which sets the domain version, the one place the release's version is written), for
    /// `fr_FR` and `de_DE`. Each `.mo` holds [`l10n_mo_text`]`(locale, version)`, so a test can
    /// tell which release's translations a code dir has. Returns its path.
    ///
    /// # Errors
    ///
    /// When files cannot be written or `tar` fails.
    pub fn write_l10n(&self, version: &str) -> Result<PathBuf, LabError> {
        let stage = self.dir().join(format!("l10n-stage-{version}"));
        let _ = std::fs::remove_dir_all(&stage);
        for locale in L10N_LOCALES {
            write(
                &stage.join(format!("civicrm/l10n/{locale}/LC_MESSAGES/civicrm.mo")),
                &l10n_mo_text(locale, version),
            )?;
            write(
                &stage.join(format!("civicrm/sql/civicrm_data.{locale}.mysql")),
                &format!(
                    "-- CiviCRM {locale} base data\nINSERT INTO civicrm_domain (name, version, contact_id) VALUES (@domainName, '2.2', @contactID);\nUPDATE civicrm_domain SET version = '{version}';\n"
                ),
            )?;
        }
        let tarball = self.l10n_tarball(version);
        tar(&tarball, &stage, &["civicrm/l10n", "civicrm/sql"])?;
        std::fs::remove_dir_all(&stage).map_err(io("remove", &stage))?;
        Ok(tarball)
    }
}

/// The locales of the lab's localization tarballs.
pub const L10N_LOCALES: &[&str] = &["fr_FR", "de_DE"];

/// What the lab's `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo` of release `version` holds
/// (a stand-in for a compiled catalogue, naming its release).
pub fn l10n_mo_text(locale: &str, version: &str) -> String {
    format!("fake gettext catalogue: CiviCRM {version} translated to {locale}\n")
}

/// `tar -czf TARBALL -C DIR PATHS...`.
pub(crate) fn tar(tarball: &Path, dir: &Path, paths: &[&str]) -> Result<(), LabError> {
    let out = Command::new("tar")
        .arg("-czf")
        .arg(tarball)
        .arg("-C")
        .arg(dir)
        .args(paths)
        .output()
        .map_err(io("run tar for", tarball))?;
    if !out.status.success() {
        return Err(LabError::Io {
            action: "create",
            path: tarball.to_owned(),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        });
    }
    Ok(())
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), LabError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    std::fs::write(path, text).map_err(io("write", path))
}

/// A CiviCRM code dir at `version` with the markers the fakes and fleet look at.
/// A CiviCRM codebase of `version` in `dir` (what `cv` and the CiviCRM drush commands read).
pub(crate) fn write_code(dir: &Path, version: &str) -> Result<(), LabError> {
    write(
        &dir.join("xml/version.xml"),
        &format!(
            "<?xml version=\"1.0\" encoding=\"iso-8859-1\" ?>\n<version>\n  <version_no>{version}</version_no>\n</version>\n"
        ),
    )?;
    write(
        &dir.join("drupal/drush/civicrm.drush.inc"),
        "<?php\n// fake civicrm drush commands\n",
    )?;
    write(
        &dir.join("drupal/civicrm.module"),
        "<?php\n// fake civicrm module\n",
    )?;
    write(
        &dir.join("CRM/Core/ClassLoader.php"),
        &format!("<?php\n// CiviCRM {version}\n"),
    )
}

fn lay_out(site: &LabSite, version: &str, first: bool) -> Result<(), LabError> {
    let root = &site.root;
    let code = root.join("sites/all/modules/civicrm");
    if !code.exists() {
        write(&root.join("index.php"), "<?php\n// Drupal 7\n")?;
        write(
            &root.join("includes/bootstrap.inc"),
            "<?php\ndefine('VERSION', '7.101');\n",
        )?;
        write_code(&code, version)?;
    }
    let templates_c = site.site_dir.join("files/civicrm/templates_c");
    write(
        &templates_c.join("%%compiled-page.tpl.php"),
        "<?php // compiled\n",
    )?;
    write(
        &site.site_dir.join("settings.php"),
        &format!(
            "<?php\n$databases['default']['default']['database'] = '{}';\n",
            site.cms_db
        ),
    )?;
    write(
        &site.site_dir.join("civicrm.settings.php"),
        &format!(
            "<?php\n$civicrm_root = '{code}/';\ndefine('CIVICRM_DSN', 'mysql://civi:secret@localhost/{civi}?new_link=true');\n\
             define('CIVICRM_UF_DSN', 'mysql://cms:secret@localhost/{cms}?new_link=true');\n\
             define('CIVICRM_TEMPLATE_COMPILEDIR', '{tc}/');\ndefine('CIVICRM_UF_BASEURL', '{uri}/');\ndefine('CIVICRM_DOMAIN_ID', 1);\n\
             define( 'CIVICRM_UF', 'Drupal' );\ndefine('CIVICRM_SITE_KEY', 'fake-site-key-{civi}');\n",
            code = code.display(),
            civi = site.civi_db,
            cms = site.cms_db,
            tc = templates_c.display(),
            uri = site.uri,
        ),
    )?;
    std::fs::create_dir_all(&site.backup_dir).map_err(io("create", &site.backup_dir))?;
    let civi = site.db_dir(&site.civi_db);
    write(
        &civi.join("civicrm_domain.version"),
        &format!("{version}\n"),
    )?;
    write(&civi.join("triggers"), "present\n")?;
    write(&civi.join("routines"), "present\n")?;
    let cms = site.db_dir(&site.cms_db);
    write(
        &cms.join("modules_enabled"),
        "civicrm\ncivicrm_rules\nviews\n",
    )?;
    for (table, n) in site_counts(site) {
        write(&cms.join(format!("count.{table}")), &format!("{n}\n"))?;
    }
    write(
        &site.site_dir.join("index.html"),
        &front_page(site.uri_host(), "7.101"),
    )?;
    let base = site.current.parent().unwrap_or(&site.current);
    std::fs::create_dir_all(base.join("releases")).map_err(io("create", base))?;
    let _ = std::fs::remove_file(&site.current);
    std::os::unix::fs::symlink(root, &site.current).map_err(io("link", &site.current))?;
    if first {
        write(&cms.join("variable.maintenance_mode"), "0\n")?;
    }
    Ok(())
}

/// What a lab site's Drupal 7 database holds, per table: users (uid > 0), nodes, terms and
/// roles, different per site so that a migration that mixes two sites up shows.
pub fn site_counts(site: &LabSite) -> [(&'static str, u32); 4] {
    let k: u32 = site.name.trim_start_matches("site").parse().unwrap_or(1);
    let h: u32 = site.host.trim_start_matches('h').parse().unwrap_or(1);
    [
        ("users", 3 + k),
        ("node", 10 * h + k),
        ("taxonomy_term", 4),
        ("role", 3),
    ]
}

/// The front page a lab site answers with: its name and Drupal version (a stand-in for what
/// PHP would render; the fake Drush 12 writes the same shape for a Drupal 10 site).
pub fn front_page(name: &str, drupal: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>{name}</title></head><body><h1>{name}</h1><p>Drupal {drupal}</p></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_bump() {
        assert_eq!(next_minor("5.69.0"), "5.70.0");
        assert_eq!(next_minor("5.69.3"), "5.70.0");
        assert_eq!(next_minor("6.1"), "6.2");
    }
}
