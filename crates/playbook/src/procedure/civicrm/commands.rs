//! The CiviCRM-on-Drupal-7 procedure's shell commands: what each step runs on the host, and the probes that
//! re-read state afterwards (an exit code alone is never trusted: `cv upgrade:db` exits 0
//! without upgrading when the DB is already newer, `drush cc civicrm` exits 0 on errors).
//!
//! Every path and URI from the inventory goes through [`quote`]; nothing is interpolated raw.

use std::cmp::Ordering;

use fleet_inventory::{DbUpgradeTool, Site};
use fleet_remote_exec::quote;

use crate::discovery::Facts;
use crate::error::PlaybookError;

/// Shell helpers prepended to every script: `as_web USER CMD...` runs CMD as the web-server
/// user (directly, with runuser as root, else with `sudo -n`), `vget` reads a Drupal variable
/// mapping "never set" to `unset`, `codever` reads `xml/version.xml`.
pub(crate) const PRELUDE: &str = r#"as_web() { w=$1; shift; if [ -z "$w" ] || [ "$(id -un)" = "$w" ]; then "$@"; elif [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then runuser -u "$w" -- "$@"; else sudo -n -u "$w" -H -- "$@"; fi; }
codever() { sed -n -E 's/.*<version_no>([^<]*)<\/version_no>.*/\1/p' "$1/xml/version.xml" 2>/dev/null | head -n1; }
"#;

/// Compares CiviCRM versions numerically part by part (`5.9.0 < 5.10.0`); `alpha`/`beta`
/// parts sort before numbers.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<(i64, i64)> {
        s.split('.')
            .map(|p| {
                if let Ok(n) = p.parse::<i64>() {
                    (1, n)
                } else if let Some(n) = p.strip_prefix("alpha") {
                    (-2, n.parse().unwrap_or(0))
                } else if let Some(n) = p.strip_prefix("beta") {
                    (-1, n.parse().unwrap_or(0))
                } else {
                    (0, 0)
                }
            })
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    for i in 0..pa.len().max(pb.len()) {
        let x = pa.get(i).copied().unwrap_or((1, 0));
        let y = pb.get(i).copied().unwrap_or((1, 0));
        match x.cmp(&y) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    Ordering::Equal
}

/// The commands of one site, with every value quoted.
pub(crate) struct SiteCmds {
    pub(crate) w: String,
    drush: String,
    cv: String,
    r: String,
    u: String,
    tool: DbUpgradeTool,
}

impl SiteCmds {
    pub(crate) fn new(site: &Site, facts: &Facts) -> Self {
        let tool = match site.db_upgrade {
            DbUpgradeTool::Auto if facts.has_cv => DbUpgradeTool::Cv,
            DbUpgradeTool::Auto => DbUpgradeTool::Drush,
            t => t,
        };
        Self {
            w: quote(&facts.web_user),
            drush: quote(&site.drush),
            cv: quote(&site.cv),
            r: quote(&site.root),
            u: quote(&site.uri),
            tool,
        }
    }

    fn drush(&self, args: &str) -> String {
        format!(
            "as_web {} {} -r {} -l {} {args}",
            self.w, self.drush, self.r, self.u
        )
    }

    fn cv(&self, args: &str) -> String {
        format!(
            "as_web {} {} --cwd={} --url={} {args}",
            self.w, self.cv, self.r, self.u
        )
    }

    /// Prints the site's maintenance flag (`0`, `1`, `unset`).
    pub(crate) fn read_maintenance(&self) -> String {
        format!(
            "if m=$({} 2>&1); then echo \"$m\"; elif printf '%s' \"$m\" | grep -q 'No matching variable'; then echo unset; else printf '%s\\n' \"$m\" >&2; exit 1; fi",
            self.drush("vget maintenance_mode --exact")
        )
    }

    /// Sets maintenance to `value` (`0`, `1`, or `unset` to delete the variable), then clears
    /// Drupal's caches so the page cache stops serving the old state.
    pub(crate) fn set_maintenance(&self, value: &str) -> String {
        let set = if value == "unset" {
            self.drush("vdel --exact --yes maintenance_mode")
        } else {
            self.drush(&format!(
                "vset --exact --yes maintenance_mode {}",
                quote(value)
            ))
        };
        format!("{set} && {}", self.drush("cc all"))
    }

    pub(crate) fn disable_modules(&self, modules: &[String]) -> String {
        self.drush(&format!("pm-disable -y {}", join_quoted(modules)))
    }

    pub(crate) fn enable_modules(&self, modules: &[String]) -> String {
        self.drush(&format!("pm-enable -y {}", join_quoted(modules)))
    }

    /// Lists enabled modules, one a line.
    pub(crate) fn enabled_modules(&self) -> String {
        self.drush("pm-list --status=enabled --type=module --pipe")
    }

    /// Dumps the CiviCRM DB (with routines) to `file`, then checks it is complete: the header
    /// names the database and the last line is mysqldump's `-- Dump completed` trailer.
    pub(crate) fn dump_civi(&self, file: &str, db: &str) -> String {
        // Dumps run as the SSH user, not the web user: the backup dir must not be web-writable.
        format!(
            "umask 077 && mkdir -p \"$(dirname {f})\" && {d} -r {r} -l {u} civicrm-sql-dump --result-file={f} && {check}",
            f = quote(file),
            d = self.drush,
            r = self.r,
            u = self.u,
            check = check_dump(file, db),
        )
    }

    /// Dumps the Drupal DB (with routines) to `file` and checks it.
    pub(crate) fn dump_cms(&self, file: &str, db: &str) -> String {
        format!(
            "umask 077 && mkdir -p \"$(dirname {f})\" && {d} -r {r} -l {u} sql-dump --result-file={f} --extra=--routines && {check}",
            f = quote(file),
            d = self.drush,
            r = self.r,
            u = self.u,
            check = check_dump(file, db),
        )
    }

    /// Restores database `db` from `file`, dropping it first so tables created by the newer
    /// version do not survive the restore, but only once the dump is verified on the host:
    /// it exists, names `db`, ends with the `Dump completed` trailer and has the SHA-256 the
    /// journal recorded when it was taken. A dump that fails any check changes nothing.
    pub(crate) fn restore_civi(&self, file: &str, db: &str, sha256: &str) -> String {
        let bt = format!("`{}`", db.replace('`', ""));
        format!(
            "{verify} >/dev/null && {{ printf '%s\\n' {drop} {create} {usedb}; cat {f}; }} | {d} -r {r} -l {u} civicrm-sql-cli",
            verify = verify_dump(file, db, sha256),
            drop = quote(&format!("DROP DATABASE IF EXISTS {bt};")),
            create = quote(&format!("CREATE DATABASE {bt};")),
            usedb = quote(&format!("USE {bt};")),
            f = quote(file),
            d = self.drush,
            r = self.r,
            u = self.u,
        )
    }

    /// Prints the DB version (read-only).
    pub(crate) fn db_version(&self) -> String {
        format!(
            "{} | tail -n1",
            self.drush("civicrm-sql-query \"SELECT version FROM civicrm_domain WHERE id = 1\"")
        )
    }

    /// Runs the DB upgrade non-interactively, as the web user.
    pub(crate) fn upgrade_db(&self) -> (String, &'static str) {
        match self.tool {
            DbUpgradeTool::Drush => (
                self.drush("civicrm-upgrade-db -y"),
                "drush civicrm-upgrade-db",
            ),
            _ => (self.cv("upgrade:db -n"), "cv upgrade:db"),
        }
    }

    /// `cv upgrade:db --dry-run` as the web user, with its output (stderr folded in), then
    /// `rc=<its exit status>` and `db=<the DB version re-read through drush>`, for
    /// [`parse_dry_run`]. `None` when the site's DB upgrade tool is drush, which has no dry
    /// run.
    pub(crate) fn dry_run_db(&self) -> Option<String> {
        match self.tool {
            DbUpgradeTool::Drush => None,
            _ => Some(format!(
                "out=$({} 2>&1); rc=$?; printf '%s\n' \"$out\"; echo \"rc=$rc\"; echo \"db=$({})\"",
                self.cv("upgrade:db --dry-run -n -v"),
                self.db_version()
            )),
        }
    }

    /// Flushes CiviCRM's caches (as the web user) and Drupal's.
    pub(crate) fn flush(&self) -> String {
        match self.tool {
            // `drush cc civicrm` exits 0 when it fails; its `[error]` line is the signal.
            DbUpgradeTool::Drush => format!(
                "out=$({} 2>&1); printf '%s\\n' \"$out\" >&2; ! printf '%s' \"$out\" | grep -q '\\[error\\]' && {}",
                self.drush("cc civicrm"),
                self.drush("cc all")
            ),
            _ => format!("{} && {}", self.cv("flush"), self.drush("cc all")),
        }
    }

    /// `cv status` (or the version probes without cv).
    pub(crate) fn status(&self) -> String {
        match self.tool {
            DbUpgradeTool::Drush => self.db_version(),
            _ => self.cv("status"),
        }
    }
}

fn join_quoted(items: &[String]) -> String {
    items.iter().map(|m| quote(m)).collect::<Vec<_>>().join(" ")
}

fn check_dump(file: &str, db: &str) -> String {
    format!(
        "f={f}; [ -s \"$f\" ] || {{ echo \"dump $f is empty\" >&2; exit 1; }}; \
         head -n 5 \"$f\" | grep -qE {named} || {{ echo \"dump $f does not name database {dbq}\" >&2; exit 1; }}; \
         tail -n 1 \"$f\" | grep -q '^-- Dump completed' || {{ echo \"dump $f is truncated (no 'Dump completed' trailer)\" >&2; exit 1; }}; \
         sha256sum \"$f\" | cut -d' ' -f1",
        f = quote(file),
        named = quote(&format!("(db=|Database: ){}( |$)", regex_escape(db))),
        dbq = quote(db).replace('\'', ""),
    )
}

/// Read-only: the checks of [`check_dump`], then the SHA-256 against `sha256` (what the
/// journal recorded). Exits non-zero, saying which check failed and that nothing was changed.
pub(crate) fn verify_dump(file: &str, db: &str, sha256: &str) -> String {
    format!(
        "( f={f}; [ -e \"$f\" ] || {{ echo \"dump $f is missing\" >&2; exit 1; }}; \
         got=$({check}) || exit 1; \
         [ \"$got\" = {want} ] || {{ echo \"dump $f has sha256 $got, the journal recorded {wantq}: it was changed since\" >&2; exit 1; }}; echo ok )",
        f = quote(file),
        check = check_dump(file, db),
        want = quote(sha256),
        wantq = sha256.replace(|c: char| !c.is_ascii_hexdigit(), ""),
    )
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// Commands on a codebase (the `$civicrm_root` directory shared by sites).
pub(crate) struct CodeCmds {
    root: String,
    backup: String,
}

impl CodeCmds {
    /// `root` is the live code dir, `backup` where the old code is moved to.
    pub(crate) fn new(root: &str, backup: &str) -> Self {
        Self {
            root: quote(root),
            backup: quote(backup),
        }
    }

    /// Moves the old code out (not a copy: atomic on one filesystem, and no old `.module`
    /// files stay where Drupal would load them).
    pub(crate) fn move_out(&self) -> String {
        format!(
            "[ -d {root} ] || {{ echo 'code dir missing' >&2; exit 1; }}; [ ! -e {bak} ] || {{ echo 'backup path already exists' >&2; exit 1; }}; \
             mkdir -p \"$(dirname {bak})\" && mv {root} {bak} && [ ! -e {root} ] && codever {bak}",
            root = self.root,
            bak = self.backup
        )
    }

    /// Unpacks `tarball` into a temporary dir next to the code dir, then, when given, the
    /// localization tarball `l10n` over it, and renames the result into place; ownership
    /// follows the old code's owner when run as root. The translations are part of the new
    /// code dir from the start, so they go wherever it goes (a rollback moves the whole dir
    /// away). Prints `l10n=<civicrm.mo files in the new code>` with `l10n`, then the new code
    /// version.
    pub(crate) fn unpack(&self, tarball: &str, l10n: Option<&str>, run: &str) -> String {
        let l10n = l10n.map_or_else(String::new, |l| {
            format!(
                "l={l}; tar --no-same-owner -xzf \"$l\" -C \"$t\" || {{ echo \"cannot unpack the localization tarball $l\" >&2; rm -rf \"$t\"; exit 1; }}; \
                 want=$(tar -tzf \"$l\" | grep -cE '^(\\./)?civicrm/l10n/[^/]+/LC_MESSAGES/civicrm\\.mo$'); \
                 got=$(find \"$t/civicrm/l10n\" -path '*/LC_MESSAGES/civicrm.mo' -type f 2>/dev/null | wc -l); \
                 [ \"$want\" -gt 0 ] && [ \"$got\" -ge \"$want\" ] || {{ echo \"the localization tarball gave $got of its $want civicrm.mo files\" >&2; rm -rf \"$t\"; exit 1; }}; ",
                l = quote(l),
            )
        });
        let count = if l10n.is_empty() {
            ""
        } else {
            "echo \"l10n=$(find \"$r/l10n\" -path '*/LC_MESSAGES/civicrm.mo' -type f | wc -l)\" && "
        };
        format!(
            "t=\"$(dirname {root})/.fleet-unpack-{run}\"; r={root}; rm -rf \"$t\" && mkdir \"$t\" && \
             tar --no-same-owner -xzf {tb} -C \"$t\" && [ -d \"$t/civicrm\" ] || {{ echo 'tarball has no civicrm/ directory' >&2; rm -rf \"$t\"; exit 1; }}; \
             {l10n}[ \"$(id -u)\" != 0 ] || chown -R --reference={bak} \"$t/civicrm\"; \
             mv \"$t/civicrm\" {root} && rmdir \"$t\" && {count}codever {root}",
            root = self.root,
            bak = self.backup,
            tb = quote(tarball),
            run = run,
        )
    }

    /// Puts the old code back: the new tree (if any) is removed, the backup renamed back.
    pub(crate) fn restore(&self, run: &str) -> String {
        format!(
            "if [ -d {bak} ]; then if [ -e {root} ]; then rm -rf {root}.fleet-failed-{run} && mv {root} {root}.fleet-failed-{run} && rm -rf {root}.fleet-failed-{run}; fi; mv {bak} {root}; fi; codever {root}",
            root = self.root,
            bak = self.backup,
        )
    }

    /// Prints the live code version.
    pub(crate) fn version(&self) -> String {
        format!("codever {}", self.root)
    }
}

/// Ownership and modes of a site's files dir for the web user (the upstream recipe), only
/// where this account may change them.
pub(crate) fn fix_permissions(files_dir: &str, web_user: &str) -> String {
    format!(
        "d={d}; w={w}; [ -d \"$d\" ] || {{ echo \"no files dir $d\" >&2; exit 1; }}; \
         if [ \"$(id -u)\" = 0 ]; then chown -R \"$w\": \"$d\"; elif [ \"$(id -un)\" != \"$w\" ]; then sudo -n chown -R \"$w\": \"$d\" || exit 1; fi; \
         find \"$d\" -type d -exec chmod 0755 {{}} + && find \"$d\" -type f -exec chmod 0644 {{}} + && chmod -R u+rw \"$d\" && stat -c %U \"$d\"",
        d = quote(files_dir),
        w = quote(web_user),
    )
}

/// Empties a templates_c directory (part of every rollback), once it is sure, on the host,
/// that the directory really is one: a symlink on the way must not lead the delete
/// elsewhere.
pub(crate) fn empty_dir(dir: &str) -> String {
    format!(
        "d={d}; [ -d \"$d\" ] || exit 0; r=$(cd \"$d\" && pwd -P) || exit 1; \
         case $r in */templates_c) ;; *) echo \"refusing to empty $d: it is $r, not a templates_c directory\" >&2; exit 1 ;; esac; \
         find \"$r\" -mindepth 1 -delete",
        d = quote(dir)
    )
}

/// Files a CiviCRM release for Drupal has: without them the tarball is another package (the
/// WordPress or Backdrop build, a source archive) and would break the sites it is unpacked on.
const TARBALL_MUST_HAVE: &[&str] = &[
    "civicrm/xml/version.xml",
    "civicrm/drupal/civicrm.module",
    "civicrm/CRM/Core/ClassLoader.php",
];

/// Checks a release tarball on the controller, before any site is touched, and returns its
/// version (`civicrm/xml/version.xml`): it must be a readable gzip tar whose every entry is
/// under `civicrm/` (no absolute path, no `..`), holding the files of a CiviCRM release for
/// Drupal.
///
/// # Errors
///
/// [`PlaybookError::Tarball`] saying what is wrong.
pub fn tarball_version(path: &std::path::Path) -> Result<String, PlaybookError> {
    let err = |reason: String| PlaybookError::Tarball {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(err("not a file".into()));
    }
    let list = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(path)
        .output()
        .map_err(|e| err(format!("cannot run tar: {e}")))?;
    if !list.status.success() {
        return Err(err(format!(
            "not a readable .tar.gz: {}",
            last_stderr_line(&list.stderr)
        )));
    }
    let names = String::from_utf8_lossy(&list.stdout);
    let mut seen = std::collections::BTreeSet::new();
    for name in names.lines() {
        let clean = name.trim_start_matches("./");
        if clean.starts_with('/') || clean.split('/').any(|c| c == "..") {
            return Err(err(format!(
                "entry `{}` would land outside the code dir",
                name.escape_debug()
            )));
        }
        if clean != "civicrm" && !clean.starts_with("civicrm/") {
            return Err(err(format!(
                "entry `{}` is not under `civicrm/`: not a CiviCRM release",
                name.escape_debug()
            )));
        }
        seen.insert(clean.trim_end_matches('/').to_owned());
    }
    if let Some(missing) = TARBALL_MUST_HAVE.iter().find(|f| !seen.contains(**f)) {
        return Err(err(format!(
            "no `{missing}` in it: not a CiviCRM release for Drupal"
        )));
    }
    let out = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(path)
        .arg("civicrm/xml/version.xml")
        .output()
        .map_err(|e| err(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "cannot read `civicrm/xml/version.xml`: {}",
            last_stderr_line(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split("<version_no>")
        .nth(1)
        .and_then(|r| r.split("</version_no>").next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err("`civicrm/xml/version.xml` has no <version_no>".into()))?;
    if !version.starts_with(|c: char| c.is_ascii_digit())
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
    {
        return Err(err(format!(
            "`civicrm/xml/version.xml` says `{}`, not a version",
            version.escape_debug()
        )));
    }
    Ok(version)
}

/// Checks a localization tarball (`--l10n`, `civicrm-X.Y.Z-l10n.tar.gz`) on the controller
/// and returns its version. It is unpacked over the new code, so it must hold translations
/// and nothing else, laid out as CiviCRM builds it: a readable gzip tar whose entries are
/// only directories and regular files (no links) under `civicrm/l10n/`, and per-locale
/// `civicrm/sql/civicrm_<name>.<locale>.mysql` (never the release's own SQL; no absolute
/// path, no `..`), with at least one `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo`. Its version is the one its
/// `civicrm/sql/civicrm_data.<locale>.mysql` files set (`UPDATE civicrm_domain SET version
/// = 'X.Y.Z'`, the one place CiviCRM writes it into this tarball): there must be at least one
/// and they must agree. A file named `civicrm-<version>-l10n.tar.gz` must also say the same.
///
/// # Errors
///
/// [`PlaybookError::Plan`] naming the file and what is wrong.
pub(crate) fn l10n_version(path: &std::path::Path) -> Result<String, PlaybookError> {
    let err = |reason: String| {
        PlaybookError::Plan(format!(
            "localization tarball `{}`: {reason}",
            path.display()
        ))
    };
    if !path.is_file() {
        return Err(err("not a file".into()));
    }
    let tar = |args: &[&str]| {
        std::process::Command::new("tar")
            .env("LC_ALL", "C")
            .args(args)
            .arg(path)
            .output()
            .map_err(|e| err(format!("cannot run tar: {e}")))
            .and_then(|o| {
                if o.status.success() {
                    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
                } else {
                    Err(err(format!(
                        "not a readable .tar.gz: {}",
                        last_stderr_line(&o.stderr)
                    )))
                }
            })
    };
    let names = tar(&["-tzf"])?;
    // The long listing, in the same order, for each entry's type (its first character).
    let long = tar(&["-tvzf"])?;
    let names: Vec<&str> = names.lines().collect();
    let kinds: Vec<char> = long
        .lines()
        .map(|l| l.chars().next().unwrap_or('?'))
        .collect();
    if names.len() != kinds.len() {
        return Err(err("cannot list its entries".into()));
    }
    let mut catalogues = 0usize;
    let mut data_files = Vec::new();
    for (name, kind) in names.iter().zip(&kinds) {
        let clean = name.trim_start_matches("./").trim_end_matches('/');
        if clean.is_empty() || clean == "." {
            continue;
        }
        if clean.starts_with('/') || clean.split('/').any(|c| c == "..") {
            return Err(err(format!(
                "entry `{}` would land outside the code dir",
                name.escape_debug()
            )));
        }
        let inside = |dir: &str| clean == dir || clean.starts_with(&format!("{dir}/"));
        if !(clean == "civicrm" || inside("civicrm/l10n") || inside("civicrm/sql")) {
            return Err(err(format!(
                "entry `{}` is not under `civicrm/l10n/` or `civicrm/sql/`: not a CiviCRM localization tarball",
                name.escape_debug()
            )));
        }
        if !matches!(kind, '-' | 'd') {
            return Err(err(format!(
                "entry `{}` is not a plain file or directory",
                name.escape_debug()
            )));
        }
        let parts: Vec<&str> = clean.split('/').collect();
        // Only per-locale data next to the release's own SQL: `civicrm_data.mysql` and the
        // like are the release's, and must not be replaced.
        if let ["civicrm", "sql", f, ..] = parts.as_slice()
            && !(parts.len() == 3 && is_locale_sql(f))
        {
            return Err(err(format!(
                "entry `{}` is not a per-locale `civicrm/sql/civicrm_<name>.<locale>.mysql`",
                name.escape_debug()
            )));
        }
        match parts.as_slice() {
            ["civicrm", "l10n", _, "LC_MESSAGES", "civicrm.mo"] if *kind == '-' => catalogues += 1,
            ["civicrm", "sql", f]
                if *kind == '-' && f.starts_with("civicrm_data.") && f.ends_with(".mysql") =>
            {
                data_files.push(name.to_string());
            }
            _ => {}
        }
    }
    if catalogues == 0 {
        return Err(err(
            "no `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo` in it: not a CiviCRM localization tarball"
                .into(),
        ));
    }
    if data_files.is_empty() {
        return Err(err(
            "no `civicrm/sql/civicrm_data.<locale>.mysql` in it, so its version cannot be told"
                .into(),
        ));
    }
    let versions = l10n_data_versions(path, &data_files).map_err(err)?;
    if versions.len() != data_files.len() {
        return Err(err(format!(
            "{} of its {} `civicrm_data.<locale>.mysql` files set no version",
            data_files.len() - versions.len().min(data_files.len()),
            data_files.len()
        )));
    }
    let version = versions[0].clone();
    if let Some(other) = versions.iter().find(|v| **v != version) {
        return Err(err(format!(
            "its `civicrm_data.<locale>.mysql` files disagree on the version (`{version}`, `{other}`)"
        )));
    }
    if !version.starts_with(|c: char| c.is_ascii_digit())
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
    {
        return Err(err(format!(
            "`civicrm_data.<locale>.mysql` sets version `{}`, not a version",
            version.escape_debug()
        )));
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some(named) = file_name
        .as_deref()
        .and_then(|n| n.strip_prefix("civicrm-"))
        .and_then(|n| n.strip_suffix("-l10n.tar.gz"))
        && named != version
    {
        return Err(err(format!(
            "its name says {named} but its `civicrm_data.<locale>.mysql` files say {version}"
        )));
    }
    Ok(version)
}

/// `civicrm_<name>.<locale>.mysql` (what a localization tarball has in `civicrm/sql/`).
fn is_locale_sql(f: &str) -> bool {
    let parts: Vec<&str> = f.split('.').collect();
    matches!(parts.as_slice(), [name, locale, "mysql"]
        if name.len() > "civicrm_".len()
            && name.starts_with("civicrm_")
            && !locale.is_empty()
            && locale.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@'))
}

/// The versions set by `UPDATE civicrm_domain SET version = '...'` lines in `files` of the
/// tarball at `path`, read as a stream (the files are megabytes each).
fn l10n_data_versions(path: &std::path::Path, files: &[String]) -> Result<Vec<String>, String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new("tar")
        .env("LC_ALL", "C")
        .arg("-xzOf")
        .arg(path)
        .arg("--")
        .args(files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let mut versions = Vec::new();
    if let Some(out) = child.stdout.take() {
        let prefix = b"UPDATE civicrm_domain SET version = '";
        for line in std::io::BufReader::new(out).split(b'\n') {
            let line = line.map_err(|e| format!("cannot read it: {e}"))?;
            if let Some(rest) = line.trim_ascii().strip_prefix(&prefix[..])
                && let Some(end) = rest.iter().position(|&b| b == b'\'')
            {
                versions.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            }
        }
    }
    let done = child
        .wait_with_output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !done.status.success() {
        return Err(format!(
            "cannot read its `civicrm_data` files: {}",
            last_stderr_line(&done.stderr)
        ));
    }
    Ok(versions)
}

/// Refuses a localization tarball that is not one (see [`l10n_version`]) or is not of the
/// release's version `target`, in one line naming the file and both versions.
///
/// # Errors
///
/// [`PlaybookError::Plan`] saying why.
pub(crate) fn check_l10n(path: &std::path::Path, target: &str) -> Result<(), PlaybookError> {
    let version = l10n_version(path)?;
    if version == target {
        Ok(())
    } else {
        Err(PlaybookError::Plan(format!(
            "localization tarball `{}` is for CiviCRM {version}, but the release tarball is {target}: use civicrm-{target}-l10n.tar.gz",
            path.display()
        )))
    }
}

/// [`check_l10n`], done once per file (as it is now) and version in this process: every host
/// of a run uploads the same file, and reading a real one takes seconds.
///
/// # Errors
///
/// The reason, as [`check_l10n`] gives it.
pub(crate) fn check_l10n_once(path: &std::path::Path, target: &str) -> Result<(), String> {
    type Key = (
        std::path::PathBuf,
        u64,
        Option<std::time::SystemTime>,
        String,
    );
    static CHECKED: std::sync::Mutex<Vec<(Key, Result<(), String>)>> =
        std::sync::Mutex::new(Vec::new());
    let meta = std::fs::metadata(path).ok();
    let key: Key = (
        path.to_owned(),
        meta.as_ref().map_or(0, std::fs::Metadata::len),
        meta.and_then(|m| m.modified().ok()),
        target.to_owned(),
    );
    // A panic elsewhere while holding the lock leaves the list as valid as it was.
    let mut checked = CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, r)) = checked.iter().find(|(k, _)| *k == key) {
        return r.clone();
    }
    let r = check_l10n(path, target).map_err(|e| e.to_string());
    checked.push((key, r.clone()));
    r
}

/// What `cv upgrade:db --dry-run` said, as [`SiteCmds::dry_run_db`] prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DryRun {
    /// cv's exit status (empty when the script did not get that far).
    pub(crate) rc: String,
    /// `Found CiviCRM database version X.`
    pub(crate) db: String,
    /// `Found CiviCRM code version X.`
    pub(crate) code: String,
    /// cv planned a core upgrade (`Executing upgrade...`), not only extension upgrades.
    pub(crate) core: bool,
    /// The tasks it walked, in order (titles, as `-v` prints them).
    pub(crate) tasks: Vec<String>,
    /// The DB version re-read after it.
    pub(crate) db_after: String,
    /// cv's last line (its error, when it failed).
    pub(crate) last: String,
}

/// Parses what [`SiteCmds::dry_run_db`] printed. Anything shown to the operator later has its
/// control characters replaced: it is the host's text.
pub(crate) fn parse_dry_run(out: &str) -> DryRun {
    let clean = |s: &str| -> String {
        s.trim()
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    };
    let mut d = DryRun::default();
    let lines: Vec<&str> = out.lines().collect();
    // Our own two lines come last; cv's output is everything before them.
    let mut end = lines.len();
    for key in ["db=", "rc="] {
        if let Some(i) = lines[..end].iter().rposition(|l| l.starts_with(key)) {
            let v = clean(&lines[i][key.len()..]);
            if key == "db=" {
                d.db_after = v;
            } else {
                d.rc = v;
            }
            end = i;
        }
    }
    let mut in_tasks = false;
    for line in &lines[..end] {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Found CiviCRM database version ") {
            d.db = clean(v.trim_end_matches('.'));
        } else if let Some(v) = l.strip_prefix("Found CiviCRM code version ") {
            d.code = clean(v.trim_end_matches('.'));
        } else if l == "Executing upgrade..." {
            d.core = true;
            in_tasks = true;
        } else if l == "Preparing extension upgrade..." {
            in_tasks = true;
        } else if l == "Finishing upgrade..." || l == "Have a nice day." {
            in_tasks = false;
        } else if in_tasks && !l.is_empty() && !l.chars().all(|c| c == '.') {
            d.tasks.push(clean(l));
        }
        if !l.is_empty() {
            d.last = clean(l);
        }
    }
    d
}

impl DryRun {
    /// The tasks, if the dry run holds for a database at `db` under code at `code`: it
    /// exited 0, cv saw the same two versions (not another site's: cv falls back to
    /// `sites/default` without a word), the database is unchanged after it, and, with
    /// `need_core`, cv planned a core upgrade (in extension mode it would "upgrade"
    /// without changing the schema, and exit 0).
    ///
    /// # Errors
    ///
    /// Why it does not hold, in one line.
    pub(crate) fn judge(
        &self,
        db: &str,
        code: &str,
        need_core: bool,
    ) -> Result<Vec<String>, String> {
        if !self.db_after.is_empty() && self.db_after != db {
            return Err(format!(
                "the database is at `{}` after the dry run, it was at `{db}`: the dry run changed it",
                self.db_after
            ));
        }
        if self.rc != "0" {
            return Err(format!(
                "cv upgrade:db --dry-run exited {}: {}",
                if self.rc.is_empty() { "?" } else { &self.rc },
                self.last
            ));
        }
        if self.db_after.is_empty() {
            return Err("the database version cannot be re-read after the dry run".into());
        }
        if self.db != db || self.code != code {
            return Err(format!(
                "cv sees database `{}` and code `{}`, not `{db}` and `{code}`: it is not looking at this site",
                self.db, self.code
            ));
        }
        if need_core && !self.core {
            return Err(format!(
                "cv plans no core upgrade from `{db}` to `{code}` (extension mode): the upgrade would change nothing"
            ));
        }
        Ok(self.tasks.clone())
    }
}

fn last_stderr_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(version_cmp("5.9.0", "5.10.0"), Ordering::Less);
        assert_eq!(version_cmp("5.70.0", "5.70"), Ordering::Equal);
        assert_eq!(version_cmp("5.70.alpha1", "5.70.0"), Ordering::Less);
        assert_eq!(version_cmp("5.70.beta1", "5.70.alpha2"), Ordering::Greater);
        assert_eq!(version_cmp("6.0.0", "5.99.9"), Ordering::Greater);
    }

    /// Run for real: a templates_c that is a symlink elsewhere is not emptied; a real one is.
    #[test]
    fn empty_dir_empties_only_a_real_templates_c() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("precious"), "x").unwrap();
        let link = dir.path().join("files/templates_c");
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let sh = |d: &std::path::Path| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(empty_dir(&d.display().to_string()))
                .output()
                .unwrap()
        };
        let o = sh(&link);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("not a templates_c directory"));
        assert!(victim.join("precious").exists());
        let real = dir.path().join("site/templates_c");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        std::fs::write(real.join("sub/compiled.php"), "x").unwrap();
        assert!(sh(&real).status.success());
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    /// A gzip tar of `files` (`path`, content; a content of `-> target` makes a symlink),
    /// named `name` in `dir`.
    fn tarball(dir: &std::path::Path, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let stage = dir.join(format!("stage-{name}"));
        for (path, text) in files {
            let p = stage.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            match text.strip_prefix("-> ") {
                Some(to) => std::os::unix::fs::symlink(to, &p).unwrap(),
                None => std::fs::write(&p, text).unwrap(),
            }
        }
        let out = dir.join(name);
        let ok = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(&stage)
            .args(files.iter().map(|(p, _)| *p))
            .status()
            .unwrap();
        assert!(ok.success());
        out
    }

    const MO: &str = "civicrm/l10n/fr_FR/LC_MESSAGES/civicrm.mo";
    const DATA: &str = "civicrm/sql/civicrm_data.fr_FR.mysql";
    const SETS_5_70: &str = "INSERT INTO civicrm_domain (name, version) VALUES ('x', '2.2');\nUPDATE civicrm_domain SET version = '5.70.0';\n";

    #[test]
    fn l10n_tarballs_are_checked_for_layout_and_version() {
        let dir = tempfile::tempdir().unwrap();
        #[track_caller]
        fn case(
            dir: &std::path::Path,
            name: &str,
            files: &[(&str, &str)],
            want: Result<&str, &str>,
        ) {
            let got = l10n_version(&tarball(dir, name, files)).map_err(|e| e.to_string());
            match (&got, want) {
                (Ok(v), Ok(w)) => assert_eq!(v, w, "{name}"),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w), "{name}: `{e}` does not say `{w}`");
                    assert!(e.contains(name), "{name}: `{e}` does not name the file");
                }
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        let good: &[(&str, &str)] = &[
            (MO, "fr"),
            ("civicrm/l10n/de_DE/LC_MESSAGES/civicrm.mo", "de"),
            (DATA, SETS_5_70),
            ("civicrm/sql/civicrm_data.de_DE.mysql", SETS_5_70),
            ("civicrm/sql/civicrm_acl.fr_FR.mysql", "-- acl\n"),
        ];
        case(dir.path(), "civicrm-5.70.0-l10n.tar.gz", good, Ok("5.70.0"));
        // Renamed: the contents decide, a name of the usual form must agree.
        case(dir.path(), "translations.tar.gz", good, Ok("5.70.0"));
        case(
            dir.path(),
            "civicrm-5.71.0-l10n.tar.gz",
            good,
            Err("its name says 5.71.0 but its `civicrm_data.<locale>.mysql` files say 5.70.0"),
        );
        // The release tarball (or anything with code in it) is not translations.
        case(
            dir.path(),
            "release.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                ("civicrm/xml/version.xml", "<version_no>5.70.0</version_no>"),
            ],
            Err("entry `civicrm/xml/version.xml` is not under `civicrm/l10n/` or `civicrm/sql/`"),
        );
        // Never the release's own SQL.
        case(
            dir.path(),
            "schema.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                ("civicrm/sql/civicrm.mysql", "DROP TABLE x;"),
            ],
            Err("entry `civicrm/sql/civicrm.mysql` is not a per-locale"),
        );
        case(
            dir.path(),
            "no-mo.tar.gz",
            &[("civicrm/l10n/fr_FR/README", "x"), (DATA, SETS_5_70)],
            Err("no `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo` in it"),
        );
        case(
            dir.path(),
            "no-data.tar.gz",
            &[(MO, "fr"), ("civicrm/sql/civicrm_acl.fr_FR.mysql", "x")],
            Err("its version cannot be told"),
        );
        case(
            dir.path(),
            "no-version.tar.gz",
            &[(MO, "fr"), (DATA, "-- nothing\n")],
            Err("1 of its 1 `civicrm_data.<locale>.mysql` files set no version"),
        );
        case(
            dir.path(),
            "mixed.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                (
                    "civicrm/sql/civicrm_data.de_DE.mysql",
                    "UPDATE civicrm_domain SET version = '5.69.0';\n",
                ),
            ],
            Err("disagree on the version"),
        );
        case(
            dir.path(),
            "link.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                ("civicrm/l10n/de_DE", "-> /etc"),
            ],
            Err("entry `civicrm/l10n/de_DE` is not a plain file or directory"),
        );
        case(
            dir.path(),
            "bad-version.tar.gz",
            &[
                (MO, "fr"),
                (DATA, "UPDATE civicrm_domain SET version = '5.70; DROP';\n"),
            ],
            Err("not a version"),
        );
        let broken = dir.path().join("broken.tar.gz");
        std::fs::write(&broken, b"\x1f\x8b not gzip").unwrap();
        let e = l10n_version(&broken).unwrap_err().to_string();
        assert!(
            e.contains("not a readable .tar.gz") && e.contains("broken.tar.gz"),
            "{e}"
        );
        // An absolute entry would be unpacked outside the code dir.
        let abs = dir.path().join("abs-file");
        std::fs::write(&abs, "x").unwrap();
        let abs_tar = dir.path().join("abs.tar.gz");
        assert!(
            std::process::Command::new("tar")
                .arg("-czPf")
                .arg(&abs_tar)
                .arg(&abs)
                .status()
                .unwrap()
                .success()
        );
        let e = l10n_version(&abs_tar).unwrap_err().to_string();
        assert!(e.contains("would land outside the code dir"), "{e}");
    }

    #[test]
    fn an_l10n_tarball_of_another_version_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let t = tarball(
            dir.path(),
            "civicrm-5.70.0-l10n.tar.gz",
            &[(MO, "fr"), (DATA, SETS_5_70)],
        );
        assert!(check_l10n(&t, "5.70.0").is_ok());
        let e = check_l10n(&t, "5.71.0").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "localization tarball `{}` is for CiviCRM 5.70.0, but the release tarball is 5.71.0: use civicrm-5.71.0-l10n.tar.gz",
                t.display()
            )
        );
        assert!(!e.contains('\n'));
        // Remembered per file as it is: the same answer, and a replaced file is read again.
        assert_eq!(check_l10n_once(&t, "5.71.0").unwrap_err(), e);
        assert_eq!(check_l10n_once(&t, "5.71.0").unwrap_err(), e);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = tarball(
            dir.path(),
            "civicrm-5.70.0-l10n.tar.gz",
            &[
                (MO, "fr"),
                (DATA, "UPDATE civicrm_domain SET version = '5.71.0';\n"),
            ],
        );
        assert_eq!(again, t);
        // (its name now disagrees with its contents)
        assert!(
            check_l10n_once(&t, "5.71.0")
                .unwrap_err()
                .contains("its name says 5.70.0")
        );
    }

    /// Run for real: the localization files land in the new code dir, with the version check
    /// still holding; an l10n tarball that brings no catalogue stops the unpack and leaves
    /// no temp dir.
    #[test]
    fn unpack_puts_the_translations_into_the_new_code_dir() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let version_xml = |v: &str| format!("<version><version_no>{v}</version_no></version>\n");
        let release = tarball(
            d,
            "release.tar.gz",
            &[("civicrm/xml/version.xml", &version_xml("5.70.0"))],
        );
        let l10n = tarball(
            d,
            "l10n.tar.gz",
            &[(MO, "bonjour 5.70.0"), (DATA, SETS_5_70)],
        );
        let empty = tarball(d, "empty.tar.gz", &[(DATA, SETS_5_70)]);
        let sh = |script: String| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{PRELUDE}{script}"))
                .output()
                .unwrap()
        };
        for (l, ok) in [(&l10n, true), (&empty, false)] {
            let root = d.join(format!("site-{ok}/modules/civicrm"));
            std::fs::create_dir_all(root.join("xml")).unwrap();
            std::fs::write(root.join("xml/version.xml"), version_xml("5.69.0")).unwrap();
            let code = CodeCmds::new(
                &root.display().to_string(),
                &d.join(format!("bak-{ok}")).display().to_string(),
            );
            assert!(sh(code.move_out()).status.success());
            let o = sh(code.unpack(
                &release.display().to_string(),
                Some(&l.display().to_string()),
                "r1",
            ));
            let out = String::from_utf8_lossy(&o.stdout);
            assert_eq!(
                o.status.success(),
                ok,
                "{out} {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                !d.join(format!("site-{ok}/modules/.fleet-unpack-r1"))
                    .exists()
            );
            if ok {
                assert_eq!(out.lines().collect::<Vec<_>>(), ["l10n=1", "5.70.0"]);
                assert_eq!(
                    std::fs::read_to_string(root.join(MO.trim_start_matches("civicrm/"))).unwrap(),
                    "bonjour 5.70.0"
                );
            } else {
                assert!(String::from_utf8_lossy(&o.stderr).contains("gave 0 of its 0 civicrm.mo"));
                assert!(!root.exists());
            }
        }
    }

    #[test]
    fn dry_runs_are_read_and_judged() {
        let full = "Found CiviCRM database version 5.69.0.\nFound CiviCRM code version 5.70.0.\nChecking pre-upgrade messages...\n(No messages)\nDropping SQL triggers...\nPreparing upgrade...\nExecuting upgrade...\nCleanup old files\nUpgrade DB to 5.70.0\nFinishing upgrade...\nUpgrade to 5.70.0 completed.\nChecking post-upgrade messages...\n(No messages)\nHave a nice day.\nrc=0\ndb=5.69.0\n";
        let d = parse_dry_run(full);
        assert_eq!(
            (d.db.as_str(), d.code.as_str(), d.core),
            ("5.69.0", "5.70.0", true)
        );
        assert_eq!(d.tasks, ["Cleanup old files", "Upgrade DB to 5.70.0"]);
        assert_eq!(d.judge("5.69.0", "5.70.0", true).unwrap(), d.tasks);
        // Dots (normal verbosity) are no tasks.
        let dots = full.replace("Cleanup old files\nUpgrade DB to 5.70.0\n", "..\n");
        assert!(parse_dry_run(&dots).tasks.is_empty());
        let ext = "Found CiviCRM database version 5.69.0.\nFound CiviCRM code version 5.69.0.\nPreparing extension upgrade...\n\nHave a nice day.\nrc=0\ndb=5.69.0\n";
        let e = parse_dry_run(ext);
        assert!(!e.core && e.tasks.is_empty());
        assert_eq!(
            e.judge("5.69.0", "5.69.0", false).unwrap(),
            Vec::<String>::new()
        );
        #[track_caller]
        fn refused(out: &str, db: &str, code: &str, core: bool, says: &str) {
            let why = parse_dry_run(out).judge(db, code, core).unwrap_err();
            assert!(why.contains(says), "`{why}` does not say `{says}`");
        }
        // Extension mode where a core upgrade is due: the real upgrade would do nothing.
        let ext_new = ext.replace("code version 5.69.0", "code version 5.70.0");
        refused(
            &ext_new,
            "5.69.0",
            "5.70.0",
            true,
            "plans no core upgrade from `5.69.0` to `5.70.0`",
        );
        refused(
            full,
            "5.68.0",
            "5.70.0",
            true,
            "the database is at `5.69.0` after the dry run, it was at `5.68.0`",
        );
        refused(
            full,
            "5.69.0",
            "5.71.0",
            true,
            "cv sees database `5.69.0` and code `5.70.0`, not `5.69.0` and `5.71.0`",
        );
        let failed = "Found CiviCRM database version 5.69.0.\nFound CiviCRM code version 5.69.0.\n\n  [Exception]\n  DB Error: connect \x1b[31mfailed\n\nrc=1\ndb=5.69.0\n";
        refused(
            failed,
            "5.69.0",
            "5.69.0",
            false,
            "cv upgrade:db --dry-run exited 1: DB Error: connect ?[31mfailed",
        );
        refused(
            "rc=0\ndb=\n",
            "5.69.0",
            "5.69.0",
            false,
            "cannot be re-read",
        );
        refused("", "5.69.0", "5.69.0", false, "exited ?");
    }

    #[test]
    fn scripts_quote_paths_with_spaces_and_quotes() {
        let code = CodeCmds::new(
            "/var/www/o'brien site/sites/all/modules/civicrm",
            "/b/o'b/code",
        );
        let s = code.move_out();
        assert!(
            s.contains("'/var/www/o'\\''brien site/sites/all/modules/civicrm'"),
            "{s}"
        );
        assert!(!s.contains("o'brien site/"), "{s}");
    }
}
