//! CiviCRM across the migration. CiviCRM keeps its own database, which the Migrate API does
//! not touch; the new site runs on a **copy** of the old site's CiviCRM database (never the
//! live one), upgraded by `cv upgrade:db` with the release's CiviCRM code. The import makes
//! the copy for QA; the release makes it again once the old site is in maintenance, so that
//! nothing written to the old CiviCRM since the import is lost.
//!
//! Per site (its old `civicrm.settings.php` says whether it has CiviCRM):
//! 1. `civicrm-check` (read-only): the old database (from `CIVICRM_DSN`), that no other site
//!    of the old root shares it (a shared CiviCRM database would need every sharing site
//!    moved at once: refused), the release's CiviCRM code version, the live database version;
//! 2. `civicrm-copy`: the copy's name recorded once fleet has seen it does not exist (or is
//!    the run's own), the old database dumped (checked complete, and holding no `USE` or
//!    `CREATE/DROP DATABASE` that could send the load elsewhere), loaded into the copy;
//! 3. `civicrm-settings`: the release's `sites/default/civicrm.settings.php`, made from the old
//!    one on the host (its DSN's password is never read by fleet): the database swapped for the
//!    copy, the Drupal one for the new site's, `CIVICRM_UF` `Drupal8`, the code and compiled
//!    templates in the release; every swap checked;
//! 4. `civicrm-upgrade`: `cv upgrade:db` in the release, then the copy's version must be the
//!    code's, and the live database's must be what it was.

use fleet_inventory::Site;
use fleet_remote_exec::quote;

use super::build::{failure, then_probe};
use super::manifest::{Manifest, database_name};
use super::settings::php_str;
use crate::discovery::{KV, kv_pairs};
use crate::engine::{HostRun, StepError};
use crate::procedure::civicrm::commands::{check_dump, fix_permissions};
use crate::vocab::{ArtifactKind, BuiltinStep, Unit};

type Step<T = ()> = Result<T, (BuiltinStep, StepError)>;

fn at(step: BuiltinStep) -> impl Fn(StepError) -> (BuiltinStep, StepError) {
    move |e| (step, e)
}

fn fail<T>(step: BuiltinStep, why: String) -> Step<T> {
    Err((step, StepError::Failed(why)))
}

/// One site's new CiviCRM: where the old one is and where the new one goes.
pub(crate) struct CiviTarget<'a> {
    pub(crate) site: &'a Site,
    /// `sites/<dir>` of the old site (under the inventory's root).
    pub(crate) old_site_dir: &'a str,
    /// The new release.
    pub(crate) release: &'a str,
    /// The new site's Drupal database.
    pub(crate) new_db: &'a str,
    /// The release's drush, relative to it.
    pub(crate) drush: &'a str,
}

/// What the check found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    has: bool,
    db: String,
    shared: Vec<String>,
    code: String,
    live: String,
}

fn check_script(t: &CiviTarget<'_>, root: &str) -> String {
    let mut s = format!("{KV}{}", super::DSNDB);
    s.push_str(
        r#"civicheck() {
  S=$1; R=$2; REL=$3; CODE=$4; W=$5; DRUSH=$6; U=$7
  F="$S/civicrm.settings.php"
  [ -f "$F" ] || return 0
  kv has 1
  DB=$(dsndb "$F"); kv db "$DB"
  for o in "$R"/sites/*/civicrm.settings.php; do
    [ -f "$o" ] && [ "$o" != "$F" ] && [ "$(dsndb "$o")" = "$DB" ] && kv shared "${o%/civicrm.settings.php}"
  done
  kv code "$(sed -n 's/.*<version_no>\([^<]*\)<\/version_no>.*/\1/p' "$REL/$CODE/xml/version.xml" 2>/dev/null | head -n1)"
  kv live "$(as_web "$W" "$DRUSH" -r "$R" -l "$U" civicrm-sql-query "SELECT version FROM civicrm_domain WHERE id = 1" 2>/dev/null | tail -n1)"
  return 0
}
"#,
    );
    s.push_str(&format!(
        "civicheck {} {} {} {} {} {} {}\n",
        quote(t.old_site_dir),
        quote(&t.site.root),
        quote(t.release),
        quote(root),
        quote(t.site.web_user.as_deref().unwrap_or("")),
        quote(&t.site.drush),
        quote(&t.site.uri),
    ));
    s
}

fn parse_found(out: &str) -> Found {
    let mut f = Found::default();
    for (k, v) in kv_pairs(out) {
        match k {
            "has" => f.has = true,
            "db" => f.db = v.trim().to_owned(),
            "shared" => f.shared.push(v),
            "code" => f.code = v.trim().to_owned(),
            "live" => f.live = v.trim().to_owned(),
            _ => {}
        }
    }
    f
}

fn sql_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A CiviCRM version as `cv` and `version.xml` write it.
fn version_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// The awk program that makes the new `civicrm.settings.php` from the old one (values from
/// the environment, so nothing in them is read as awk or shell): a swap counts only when it
/// changed its line (CiviCRM's template has a second `CIVICRM_DSN` define, for tests, whose
/// value is no literal), printed last as `swaps=DSN,UF_DSN,ROOT,TEMPLATES,UF` on stderr; a
/// missing `CIVICRM_UF` is put right after `<?php`.
const SETTINGS_AWK: &str = r#"
function value_at(line, name,    k, rest, s) {
  k = index(line, "'" name "'"); if (!k) return 0
  rest = substr(line, k + length(name) + 2); s = index(rest, "'"); if (!s) return 0
  return k + length(name) + 1 + s
}
function swap_db(line, name, db,    v, val, e, q, base, i) {
  v = value_at(line, name); if (!v) return line
  val = substr(line, v + 1); e = index(val, "'"); if (!e) return line
  val = substr(val, 1, e - 1)
  q = index(val, "?"); base = q ? substr(val, 1, q - 1) : val
  for (i = length(base); i > 0 && substr(base, i, 1) != "/"; i--) ;
  if (!i) return line
  return substr(line, 1, v) substr(base, 1, i) db (q ? substr(val, q) : "") substr(line, v + e)
}
{
  line = $0; out = line
  if (line ~ /^[ \t]*define[ \t]*\([ \t]*['"]CIVICRM_DSN['"]/) { out = swap_db(line, "CIVICRM_DSN", ENVIRON["CIVI_DB"]); if (out != line) dsn++ }
  else if (line ~ /^[ \t]*define[ \t]*\([ \t]*['"]CIVICRM_UF_DSN['"]/) { out = swap_db(line, "CIVICRM_UF_DSN", ENVIRON["CMS_DB"]); if (out != line) ufdsn++ }
  else if (line ~ /^[ \t]*\$civicrm_root[ \t]*=/) { out = ENVIRON["ROOT_LINE"]; root++ }
  else if (line ~ /^[ \t]*define[ \t]*\([ \t]*['"]CIVICRM_TEMPLATE_COMPILEDIR['"]/) { out = ENVIRON["TC_LINE"]; tc++ }
  else if (line ~ /^[ \t]*define[ \t]*\([ \t]*['"]CIVICRM_UF['"][ \t]*,/) { out = "define('CIVICRM_UF', 'Drupal8');"; uf++ }
  lines[++n] = out
}
END {
  for (i = 1; i <= n; i++) {
    print lines[i]
    if (i == 1 && !uf && lines[1] ~ /^<\?php[ \t]*$/) { print "define('CIVICRM_UF', 'Drupal8');"; uf = 1 }
  }
  printf "swaps=%d,%d,%d,%d,%d\n", dsn, ufdsn, root, tc, uf > "/dev/stderr"
}
"#;

impl HostRun<'_> {
    /// Makes (or makes again) the new site's CiviCRM from the old one's; `Ok(None)` when the
    /// old site has no CiviCRM, else what it found (`CiviCRM X -> Y on copy Z`).
    pub(crate) async fn civicrm_copy(
        &self,
        m: &Manifest,
        t: &CiviTarget<'_>,
    ) -> Step<Option<String>> {
        let unit = Unit::site(&t.site.name);
        let root = m
            .civicrm
            .as_ref()
            .map_or("vendor/civicrm/civicrm-core", |c| c.root.as_str());
        let found = self
            .exec_probed(
                &unit,
                BuiltinStep::CivicrmCheck,
                &check_script(t, root),
                "",
                |out| Ok(parse_found(out)),
            )
            .await
            .map_err(at(BuiltinStep::CivicrmCheck))?;
        if !found.has {
            if let Some(copy) = self.site_artifact(&t.site.name, ArtifactKind::NewCivicrmDatabase) {
                return fail(
                    BuiltinStep::CivicrmCheck,
                    format!(
                        "the old site's civicrm.settings.php is gone, but this run made its CiviCRM copy `{copy}`: the new site would go live on a stale copy"
                    ),
                );
            }
            return Ok(None);
        }
        let Some(c) = &m.civicrm else {
            return fail(
                BuiltinStep::CivicrmCheck,
                format!(
                    "the old site runs CiviCRM (database `{}`) and the manifest has no `[civicrm]`: its new site would have none",
                    found.db.escape_debug()
                ),
            );
        };
        if !sql_name(&found.db) {
            return fail(
                BuiltinStep::CivicrmCheck,
                format!(
                    "the old site's CIVICRM_DSN names database `{}`, not a plain MySQL name",
                    found.db.escape_debug()
                ),
            );
        }
        if !found.shared.is_empty() {
            return fail(
                BuiltinStep::CivicrmCheck,
                format!(
                    "CiviCRM database `{}` is shared with {}: the sites sharing it would have to move at once, which `fleet migrate` does not do; the site is not released",
                    found.db,
                    found
                        .shared
                        .iter()
                        .map(|s| format!("`{}`", s.escape_debug()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if !version_like(&found.code) {
            return fail(
                BuiltinStep::CivicrmCheck,
                format!("the release has no CiviCRM code at `{root}` (no xml/version.xml)"),
            );
        }
        if !version_like(&found.live) {
            return fail(
                BuiltinStep::CivicrmCheck,
                format!(
                    "the old site's CiviCRM database version cannot be read (`{}`)",
                    found.live.escape_debug()
                ),
            );
        }
        let Some(copy) = database_name(&c.database, &found.db, &t.site.name, self.host) else {
            return fail(
                BuiltinStep::CivicrmCheck,
                format!(
                    "`[civicrm] database` `{}` gives no usable database name for this site",
                    c.database
                ),
            );
        };
        if let Some(ours) = self.site_artifact(&t.site.name, ArtifactKind::NewCivicrmDatabase)
            && ours != copy
        {
            return fail(
                BuiltinStep::CivicrmCheck,
                format!(
                    "this run made the site's CiviCRM copy `{ours}`, but the manifest now names `{copy}`: not made twice"
                ),
            );
        }
        self.load_copy(t, &found.db, &copy).await?;
        self.civicrm_settings(t, root, &copy).await?;
        self.civicrm_upgrade(t, &found, &copy).await?;
        Ok(Some(format!(
            "CiviCRM {} -> {} on copy `{copy}`",
            found.live, found.code
        )))
    }

    /// The old CiviCRM database dumped and loaded into `copy` (made here, or the run's own).
    /// The old site's drush runs as the SSH user here, as the upgrade's dumps do (the
    /// backup dir is not the web user's to write).
    async fn load_copy(&self, t: &CiviTarget<'_>, old: &str, copy: &str) -> Step {
        let unit = Unit::site(&t.site.name);
        let drush = super::old_drush(t.site);
        let ours = self.site_artifact(&t.site.name, ArtifactKind::NewCivicrmDatabase);
        if ours.as_deref() != Some(copy) {
            // Asked over the CiviCRM connection (the copy is made on CiviCRM's own server);
            // the last line must come back, or the client failed and nothing is known.
            let probe = format!(
                "printf '%s\\n' \"SHOW DATABASES LIKE '{copy}';\" \"SELECT 'fleet-probe-ok';\" | {drush} civicrm-sql-cli"
            );
            let name = copy.to_owned();
            self.exec_probed(&unit, BuiltinStep::CivicrmCopy, &probe, copy, |out| {
                if !out.lines().any(|l| l.trim() == "fleet-probe-ok") {
                    return Err(format!(
                        "cannot ask the CiviCRM database server whether `{name}` exists"
                    ));
                }
                if out.lines().any(|l| l.trim().eq_ignore_ascii_case(&name)) {
                    Err(format!(
                        "database `{name}` exists already: fleet never loads a copy over a database it did not create"
                    ))
                } else {
                    Ok(())
                }
            })
            .await
            .map_err(at(BuiltinStep::CivicrmCopy))?;
            self.record(
                BuiltinStep::CivicrmCopy,
                &unit,
                ArtifactKind::OldCivicrmDatabase,
                old,
            )
            .map_err(|(_, e)| (BuiltinStep::CivicrmCopy, e))?;
            self.record(
                BuiltinStep::CivicrmCopy,
                &unit,
                ArtifactKind::NewCivicrmDatabase,
                copy,
            )
            .map_err(|(_, e)| (BuiltinStep::CivicrmCopy, e))?;
        } else if self.was_live(&t.site.name) {
            // The copy served the site before (released, then switched back): what it took
            // then is kept before it is replaced.
            self.keep_copy(t, copy).await?;
        }
        // The dump is the copy's source, not a backup (the live database is never changed):
        // each copy overwrites it, and it goes whatever happens (it holds the site's people).
        let file = format!(
            "{}/fleet-{}/{}-civicrm.sql",
            t.site.backup_dir, self.ctx.run, t.site.name
        );
        let script = format!(
            "set -e; F={f}; umask 077; mkdir -p \"$(dirname \"$F\")\"; trap 'rm -f \"$F\"' EXIT\n\
             {drush} civicrm-sql-dump --result-file=\"$F\"\n\
             {check} >/dev/null\n\
             if grep -qiE '^[[:space:]]*((USE|CONNECT)([[:space:]]|`|$)|(CREATE|DROP)[[:space:]]+(DATABASE|SCHEMA)|\\\\[urRC])' \"$F\"; then echo \"dump $F names a database of its own (USE, CREATE/DROP DATABASE, a client command): not loaded\" >&2; exit 1; fi\n\
             {{ printf '%s\\n' {drop} {create} {usedb}; cat \"$F\"; printf '\\n%s\\n' {loaded}; }} | {drush} civicrm-sql-cli",
            f = quote(&file),
            check = check_dump(&file, old),
            drop = quote(&format!("DROP DATABASE IF EXISTS `{copy}`;")),
            create = quote(&format!("CREATE DATABASE `{copy}`;")),
            usedb = quote(&format!("USE `{copy}`;")),
            loaded = quote("SELECT CONCAT('fleet-loaded:', DATABASE());"),
        );
        let want = format!("fleet-loaded:{copy}");
        self.exec_probed(
            &Unit::Database(copy.to_owned()),
            BuiltinStep::CivicrmCopy,
            &script,
            copy,
            |out| {
                // mysql stops at the first failed statement: the last one's answer proves
                // every one ran, in the copy.
                if out.lines().any(|l| l.trim() == want) {
                    Ok(())
                } else {
                    Err(format!("the load into `{copy}` did not run to its end"))
                }
            },
        )
        .await
        .map_err(at(BuiltinStep::CivicrmCopy))?;
        Ok(())
    }

    /// Whether the site was switched to its new release in this run at some point.
    fn was_live(&self, site: &str) -> bool {
        self.ctx
            .journal
            .step_done_at(
                &self.ctx.run,
                self.host,
                &Unit::site(site),
                &BuiltinStep::Switch.into(),
            )
            .ok()
            .flatten()
            .is_some()
    }

    /// `copy` dumped (checked) beside the run's other copies, through the release's CiviCRM
    /// connection, and recorded as its safety dump.
    async fn keep_copy(&self, t: &CiviTarget<'_>, copy: &str) -> Step {
        let dunit = Unit::Database(copy.to_owned());
        let file = format!(
            "{}/fleet-{}/final/{copy}-{}.sql",
            t.site.backup_dir,
            self.ctx.run,
            crate::journal::now_ms()
        );
        self.record(
            BuiltinStep::SafetyDump,
            &dunit,
            ArtifactKind::SafetyDump,
            &file,
        )
        .map_err(|(_, e)| (BuiltinStep::SafetyDump, e))?;
        let script = format!(
            "umask 077 && mkdir -p \"$(dirname {f})\" && cd {rel} && {drush} civicrm:sql-dump --result-file={f} && {check}",
            f = quote(&file),
            rel = quote(t.release),
            drush = quote(&format!("{}/{}", t.release, t.drush)),
            check = check_dump(&file, copy),
        );
        let out = self
            .exec(&dunit, BuiltinStep::SafetyDump, &script)
            .await
            .map_err(at(BuiltinStep::SafetyDump))?;
        let sha = out.trim().lines().last().unwrap_or("").trim().to_owned();
        self.record(
            BuiltinStep::SafetyDump,
            &dunit,
            ArtifactKind::SafetyDump,
            &format!("{file} sha256:{sha}"),
        )
        .map_err(|(_, e)| (BuiltinStep::SafetyDump, e))?;
        Ok(())
    }

    /// The release's `civicrm.settings.php`, from the old one, for the copy.
    async fn civicrm_settings(&self, t: &CiviTarget<'_>, root: &str, copy: &str) -> Step {
        let unit = Unit::site(&t.site.name);
        let dir = format!("{}/sites/default", t.release);
        let tc = format!("{dir}/files/civicrm/templates_c/");
        let root_line = format!(
            "$civicrm_root = {};",
            php_str(&format!("{}/{root}/", t.release))
        );
        let tc_line = format!("define('CIVICRM_TEMPLATE_COMPILEDIR', {});", php_str(&tc));
        let script = format!(
            "S={s}; OLD={old}; TC={tcq}; R={r}\n\
             [ -f \"$OLD\" ] || {{ echo \"$OLD is gone\" >&2; exit 1; }}\n\
             m=$(stat -c %a \"$S\"); chmod u+w \"$S\" || exit 1\n\
             ok=0; if sw=$(CIVI_DB={copy} CMS_DB={cms} ROOT_LINE={rl} TC_LINE={tl} awk {awk} \"$OLD\" 2>&1 >\"$S/civicrm.settings.php.tmp\"); then\n\
               if [ \"$sw\" != swaps=1,1,1,1,1 ] || ! grep -qF {copy_at} \"$S/civicrm.settings.php.tmp\"; then\n\
                 echo \"the old civicrm.settings.php is not as expected (one CIVICRM_DSN and CIVICRM_UF_DSN with a quoted value, one \\$civicrm_root, CIVICRM_TEMPLATE_COMPILEDIR and CIVICRM_UF each; found $sw)\" >&2\n\
               elif grep -qF -- \"$R\" \"$S/civicrm.settings.php.tmp\"; then\n\
                 echo \"the old civicrm.settings.php names the old root ($R) beyond \\$civicrm_root and the compiled templates (extensions, custom templates or paths): fleet does not rewrite those; not copied\" >&2\n\
               elif grep -qE 'CIVICRM_LOGGING_DSN' \"$S/civicrm.settings.php.tmp\"; then\n\
                 echo 'the old civicrm.settings.php has a separate logging database (CIVICRM_LOGGING_DSN): the copy would log into the live one; not copied' >&2\n\
               else\n\
                 chmod --reference=\"$OLD\" \"$S/civicrm.settings.php.tmp\" && mv \"$S/civicrm.settings.php.tmp\" \"$S/civicrm.settings.php\" && ok=1\n\
               fi\n\
             fi\n\
             rm -f \"$S/civicrm.settings.php.tmp\"; chmod \"$m\" \"$S\"\n\
             [ \"$ok\" = 1 ] || exit 1\n\
             umask 027; mkdir -p \"$TC\"{perms}",
            perms = match t.site.web_user.as_deref().filter(|w| !w.is_empty()) {
                // cv runs as the web user: the compiled templates must be its to write.
                Some(w) => format!(
                    "\n{} >/dev/null",
                    fix_permissions(&format!("{dir}/files/civicrm"), w)
                ),
                None => String::new(),
            },
            s = quote(&dir),
            old = quote(&format!("{}/civicrm.settings.php", t.old_site_dir)),
            tcq = quote(&tc),
            r = quote(t.site.root.trim_end_matches('/')),
            copy = quote(copy),
            cms = quote(t.new_db),
            rl = quote(&root_line),
            tl = quote(&tc_line),
            awk = quote(SETTINGS_AWK),
            copy_at = quote(&format!("/{copy}")),
        );
        self.exec(&unit, BuiltinStep::CivicrmSettings, &script)
            .await
            .map_err(at(BuiltinStep::CivicrmSettings))?;
        Ok(())
    }

    /// `cv upgrade:db` in the release (as the web user), then the copy at the code's version
    /// and the live database as it was.
    async fn civicrm_upgrade(&self, t: &CiviTarget<'_>, found: &Found, copy: &str) -> Step {
        let unit = Unit::site(&t.site.name);
        let w = quote(t.site.web_user.as_deref().unwrap_or(""));
        let cv = |args: &str| {
            format!(
                "as_web {w} {} --cwd={} --url={} {args}",
                quote(&t.site.cv),
                quote(t.release),
                quote(&t.site.uri)
            )
        };
        let script = then_probe(
            &cv("upgrade:db -n"),
            &format!(
                "printf 'db=%s\\n' \"$({})\"; printf 'code=%s\\n' \"$({})\"; printf 'live=%s\\n' \"$(as_web {w} {} -r {} -l {} civicrm-sql-query 'SELECT version FROM civicrm_domain WHERE id = 1' | tail -n1)\"",
                cv("ev 'echo CRM_Core_BAO_Domain::version();'"),
                cv("ev 'echo CRM_Utils_System::version();'"),
                quote(&t.site.drush),
                quote(&t.site.root),
                quote(&t.site.uri),
            ),
        );
        let (want, live) = (found.code.clone(), found.live.clone());
        self.exec_probed(&unit, BuiltinStep::CivicrmUpgrade, &script, copy, |out| {
            if let Some(why) = failure(out) {
                return Err(format!("cv upgrade:db failed on the copy: {why}"));
            }
            let get = |k: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            let (db, code, now) = (get("db"), get("code"), get("live"));
            if code != want || db != want {
                return Err(format!(
                    "after cv upgrade:db the copy is at `{}` with code `{}`, not `{want}`",
                    db.escape_debug(),
                    code.escape_debug()
                ));
            }
            if now != live {
                return Err(format!(
                    "the live CiviCRM database reads `{}`, not `{live}` as before: it must never change",
                    now.escape_debug()
                ));
            }
            Ok(())
        })
        .await
        .map_err(at(BuiltinStep::CivicrmUpgrade))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn awk(input: &str, env: &[(&str, &str)]) -> (String, String) {
        let mut c = std::process::Command::new("awk");
        c.arg(SETTINGS_AWK);
        for (k, v) in env {
            c.env(k, v);
        }
        let dir = std::env::temp_dir().join(format!("fleet-civi-awk-{}", std::process::id()));
        std::fs::write(&dir, input).unwrap();
        let o = c.arg(&dir).output().unwrap();
        let _ = std::fs::remove_file(&dir);
        assert!(o.status.success());
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    #[test]
    fn the_new_civicrm_settings_swap_databases_paths_and_the_uf_and_nothing_else() {
        let old = "<?php\nglobal $civicrm_root;\n$civicrm_root = '/w/d7/sites/all/modules/civicrm/';\n\
                   define( 'CIVICRM_DSN', 'mysql://civi:p%40ss%2Fw%3Frd@db1:3306/civicrm_a?new_link=true' );\n\
                   define('CIVICRM_UF_DSN', 'mysql://cms:x@db1/drupal_a?new_link=true');\n\
                   define( 'CIVICRM_TEMPLATE_COMPILEDIR', '/w/d7/sites/a/files/civicrm/templates_c/' );\n\
                   define( 'CIVICRM_UF', 'Drupal' );\ndefine('CIVICRM_SITE_KEY', 'k&\\\\1');\n";
        let (out, err) = awk(
            old,
            &[
                ("CIVI_DB", "civicrm_a_d10"),
                ("CMS_DB", "drupal_a_d10"),
                (
                    "ROOT_LINE",
                    "$civicrm_root = '/srv/r/1/vendor/civicrm/civicrm-core/';",
                ),
                (
                    "TC_LINE",
                    "define('CIVICRM_TEMPLATE_COMPILEDIR', '/srv/r/1/sites/default/files/civicrm/templates_c/');",
                ),
            ],
        );
        assert_eq!(err.trim(), "swaps=1,1,1,1,1");
        assert!(out.contains("define( 'CIVICRM_DSN', 'mysql://civi:p%40ss%2Fw%3Frd@db1:3306/civicrm_a_d10?new_link=true' );"), "{out}");
        assert!(
            out.contains("'mysql://cms:x@db1/drupal_a_d10?new_link=true'"),
            "{out}"
        );
        assert!(
            out.contains("$civicrm_root = '/srv/r/1/vendor/civicrm/civicrm-core/';"),
            "{out}"
        );
        assert!(
            out.contains("/srv/r/1/sites/default/files/civicrm/templates_c/"),
            "{out}"
        );
        assert!(out.contains("define('CIVICRM_UF', 'Drupal8');"), "{out}");
        assert!(
            out.contains("define('CIVICRM_SITE_KEY', 'k&\\\\1');"),
            "the site key changed: {out}"
        );
        assert!(!out.contains("civicrm_a?"), "{out}");
        // No CIVICRM_UF line at all: one is added, right after `<?php`.
        let (out, err) = awk("<?php\n$x = 1;\n?>\n", &[]);
        assert!(
            out.starts_with("<?php\ndefine('CIVICRM_UF', 'Drupal8');\n$x = 1;"),
            "{out}"
        );
        assert_eq!(err.trim(), "swaps=0,0,0,0,1");
        // CiviCRM 5's template: a test DSN define first (no literal, not a swap), then the
        // real one; a double-quoted DSN is no swap either (the check then refuses the file).
        let template = "<?php\nif (!empty($GLOBALS['_CV']['TEST_DB_DSN'])) {\n  define('CIVICRM_DSN', $GLOBALS['_CV']['TEST_DB_DSN']);\n}\nelseif (!defined('CIVICRM_DSN')) {\n  define( 'CIVICRM_DSN', 'mysql://u:p@localhost/civi_a?new_link=true');\n}\ndefine(\"CIVICRM_UF_DSN\", \"mysql://u:p@localhost/drupal_a\");\n";
        let (out, err) = awk(
            template,
            &[("CIVI_DB", "civi_a_d10"), ("CMS_DB", "drupal_a_d10")],
        );
        assert_eq!(err.trim(), "swaps=1,0,0,0,1", "{out}");
        assert!(
            out.contains("define('CIVICRM_DSN', $GLOBALS['_CV']['TEST_DB_DSN']);"),
            "{out}"
        );
        assert!(out.contains("/civi_a_d10?new_link=true"), "{out}");
        assert!(out.contains("\"mysql://u:p@localhost/drupal_a\""), "{out}");
    }
}
