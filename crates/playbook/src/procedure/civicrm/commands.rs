//! The CiviCRM-on-Drupal-7 procedure's shell commands: what each step runs on the host, and the probes that
//! re-read state afterwards (an exit code alone is never trusted: `cv upgrade:db` exits 0
//! without upgrading when the DB is already newer, `drush cc civicrm` exits 0 on errors).
//!
//! Every path and URI from the inventory goes through [`quote`]; nothing is interpolated raw.

use std::cmp::Ordering;

use fleet_inventory::{DbUpgradeTool, Site};
use fleet_remote_exec::quote;

use crate::discovery::Facts;

/// Shell helpers the procedure's scripts use (put before each by the engine, after its own
/// `as_web`): `codever DIR` reads the CiviCRM version of the code in DIR from
/// `xml/version.xml`.
pub(crate) const PRELUDE: &str = r#"codever() { sed -n -E 's/.*<version_no>([^<]*)<\/version_no>.*/\1/p' "$1/xml/version.xml" 2>/dev/null | head -n1; }
"#;

/// `script` with every shell helper it may use, for a script run outside the engine's
/// journaled steps (discovery and the dry runs of `--plan`).
pub(crate) fn standalone(script: &str) -> String {
    format!("{}{PRELUDE}{script}", crate::engine::AS_WEB)
}

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

/// Checks the dump `file` of `db` is complete (the header names the database, the last line is
/// mysqldump's `-- Dump completed` trailer), then prints its SHA-256. One brace group, so that
/// `dump && check` runs none of it when the dump failed (the dump tool's own error is then the
/// step's, not "dump is empty"). Not a subshell: `$(( ...` would read as arithmetic.
pub(crate) fn check_dump(file: &str, db: &str) -> String {
    format!(
        "{{ f={f}; [ -s \"$f\" ] || {{ echo \"dump $f is empty\" >&2; exit 1; }}; \
         head -n 5 \"$f\" | grep -qE {named} || {{ echo \"dump $f does not name database {dbq}\" >&2; exit 1; }}; \
         tail -n 1 \"$f\" | grep -q '^-- Dump completed' || {{ echo \"dump $f is truncated (no 'Dump completed' trailer)\" >&2; exit 1; }}; \
         sha256sum \"$f\" | cut -d' ' -f1; }}",
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

pub(crate) fn last_stderr_line(b: &[u8]) -> String {
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
    use super::super::tarball::tests::{DATA, MO, SETS_5_70, tarball};
    use super::*;

    #[test]
    fn a_failed_dump_is_not_checked_so_its_own_error_stands() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("o'brien.sql").display().to_string();
        let sh = |script: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .unwrap()
        };
        let failed = sh(&format!(
            "echo 'mysqldump: Got errno 28 on write' >&2; false && {}",
            check_dump(&file, "civi")
        ));
        assert!(!failed.status.success());
        assert_eq!(
            String::from_utf8_lossy(&failed.stderr),
            "mysqldump: Got errno 28 on write\n"
        );
        std::fs::write(&file, "-- MySQL dump db=civi\n-- Dump completed on x\n").unwrap();
        let ok = sh(&format!("true && {}", check_dump(&file, "civi")));
        assert!(ok.status.success(), "{ok:?}");
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim().len(), 64);
        std::fs::write(&file, "-- MySQL dump db=civi\n").unwrap();
        let cut = sh(&format!("true && {}", check_dump(&file, "civi")));
        assert!(!cut.status.success());
        assert!(String::from_utf8_lossy(&cut.stderr).contains("o'brien.sql is truncated"));
    }

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
                .arg(standalone(&script))
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
