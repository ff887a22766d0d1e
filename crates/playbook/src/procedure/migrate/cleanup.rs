//! `fleet migrate cleanup RUN --older-than AGE` on one host: what each site of the run no
//! longer needs goes, once the site's last change in the run is older than AGE.
//! - A released site (`current` serves the run's release) no longer needs its old side: the
//!   old Drupal database, the site's own directory in the old Drupal root, and the old root
//!   itself once no other site is in it or served from it.
//! - A site that is not released (QA failed, never released, switched back) no longer needs
//!   its new side: the `preview` link (when it shows the release), the new database (a
//!   switched-back site may have taken writes in it) and the release.
//!
//! Nothing is removed before its copy is checked: a database is dumped and the dump checked
//! (named, complete, its SHA-256 recorded) before it is dropped; a directory is archived and
//! the archive read back before it is removed; each copy stays in the site's backup dir.
//! What `current` serves is read on the host and never removed, whatever the journal says.
//! Each removal is journaled before it happens and skips what is gone already, so a cleanup
//! run again (after a crash or a failure) finishes the job.

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_inventory::Site;
use fleet_remote_exec::quote;

use super::build::{preview_unlink_script, release_remove_script, release_tmp};
use super::manifest::Manifest;
use super::settings::php_str;
use crate::discovery::{Facts, KV, safe_path, unhex};
use crate::engine::{HostRun, StepError, failed, step_error_text};
use crate::outcome::{After, SiteOutcome};
use crate::procedure::civicrm::commands::{check_dump, verify_dump};
use crate::vocab::{ArtifactKind, BuiltinStep, StepName, Unit};
use crate::work::Work;

/// What a cleanup is told beyond the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cleanup {
    /// Only sites whose last change in the run is older than this.
    pub(crate) older_than: Duration,
    /// Every inventory site's `current` on each host (not only the run's): an old root any
    /// of them serves is never removed.
    pub(crate) served: BTreeMap<String, Vec<String>>,
}

/// The steps after which a site is what the run made of it: its age is the last of these.
const CHANGES: [BuiltinStep; 8] = [
    BuiltinStep::SiteInstall,
    BuiltinStep::PreviewLink,
    BuiltinStep::MigrateImport,
    BuiltinStep::QaProbe,
    BuiltinStep::Switch,
    BuiltinStep::SwitchBack,
    BuiltinStep::MaintenanceRestore,
    BuiltinStep::QaCheck,
];

/// What the cleanup's read-only check found of one site.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Found {
    /// `current`, resolved.
    serves: String,
    /// The release, resolved (empty: it is gone).
    release_real: String,
    /// The release's marker file (naming run and site).
    marker: String,
    /// The old root, when it still stands.
    old_exists: bool,
    /// Its `includes/bootstrap.inc` version.
    old_version: String,
    /// `sites/<dir>` of the site in the old root, by the discovery's rule.
    site_dir: String,
    /// The same under the inventory's root: what every run's lock of the site is keyed by.
    lock_dir: String,
    /// Every `sites/<dir>` of the old root with a `settings.php`.
    settings: Vec<String>,
    /// Those of them whose settings name the old database.
    db_users: Vec<String>,
    /// Every inventory site's `current` on the host, resolved.
    served_any: Vec<String>,
}

fn check_script(
    site: &Site,
    release: &str,
    old_root: &str,
    old_db: &str,
    served: &[String],
) -> String {
    let mut s = String::from(KV);
    s.push_str(
        r#"cleancheck() {
  C=$1; REL=$2; OLD=$3; H=$4; DB=$5; R=$6
  kv serves "$(readlink -f "$C")"
  if [ -e "$REL" ]; then kv release_real "$(readlink -f "$REL")"; kv marker "$(cat "$REL/.fleet-release" 2>/dev/null)"; fi
  if [ -d "$R/sites/$H" ]; then kv lock_dir "$R/sites/$H"; else kv lock_dir "$R/sites/default"; fi
  [ -n "$OLD" ] && [ -d "$OLD" ] || return 0
  kv old_exists 1
  kv old_version "$(sed -n "s/^define('VERSION', '\([^']*\)');.*/\1/p" "$OLD/includes/bootstrap.inc" 2>/dev/null | head -n1)"
  if [ -d "$OLD/sites/$H" ]; then kv site_dir "$OLD/sites/$H"; else kv site_dir "$OLD/sites/default"; fi
  for f in "$OLD"/sites/*/settings.php; do
    [ -f "$f" ] || continue
    kv settings "${f%/settings.php}"
    [ -n "$DB" ] && grep -qE "[\"']$DB[\"']" "$f" && kv db_user "${f%/settings.php}"
  done
  return 0
}
"#,
    );
    s.push_str(&format!(
        "cleancheck {c} {rel} {old} {h} {db} {r}\n",
        c = quote(site.current.as_deref().unwrap_or("")),
        rel = quote(release),
        old = quote(old_root),
        h = quote(&super::uri_host(&site.uri)),
        db = quote(old_db),
        r = quote(&site.root),
    ));
    for c in served {
        s.push_str(&format!("kv served_any \"$(readlink -f {})\"\n", quote(c)));
    }
    s
}

fn parse_found(out: &str) -> Found {
    let mut f = Found::default();
    for line in out.lines() {
        let Some((k, hex)) = line.split_once('=') else {
            continue;
        };
        let Some(v) = unhex(hex) else { continue };
        match k {
            "serves" => f.serves = v,
            "release_real" => f.release_real = v,
            "marker" => f.marker = v.trim().to_owned(),
            "old_exists" => f.old_exists = true,
            "old_version" => f.old_version = v.trim().to_owned(),
            "site_dir" => f.site_dir = v,
            "lock_dir" => f.lock_dir = v,
            "settings" => f.settings.push(v),
            "db_user" => f.db_users.push(v),
            "served_any" => f.served_any.push(v),
            _ => {}
        }
    }
    f
}

/// A database name fleet itself recorded, checked again before it goes into SQL.
fn sql_name(db: &str) -> Result<&str, String> {
    if !db.is_empty() && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(db)
    } else {
        Err(format!(
            "database name `{}` is not of [A-Za-z0-9_]",
            db.escape_debug()
        ))
    }
}

/// One site's cleanup as it goes: what it removed and archived.
struct SiteCleanup<'a> {
    w: Work<'a>,
    /// Every inventory site's `current` on the host.
    served: &'a [String],
    release: String,
    /// `<backup dir>/fleet-<run>/final`: where the dumps and archives go.
    keep_dir: String,
    removed: Vec<String>,
    archives: Vec<String>,
}

type Step<T = ()> = Result<T, (BuiltinStep, StepError)>;

fn at(step: BuiltinStep) -> impl Fn(StepError) -> (BuiltinStep, StepError) {
    move |e| (step, e)
}

fn journal_err(step: BuiltinStep) -> impl Fn((StepName, StepError)) -> (BuiltinStep, StepError) {
    move |(_, e)| (step, e)
}

impl HostRun<'_> {
    /// Cleans up every site of the host the run built.
    pub(crate) async fn cleanup(
        &self,
        m: &Manifest,
        c: &Cleanup,
        results: &mut BTreeMap<String, SiteOutcome>,
    ) {
        let served = c.served.get(self.host).cloned().unwrap_or_default();
        for s in &self.job.host.sites {
            if self.ctx.cancel.drain.is_cancelled() {
                results.insert(
                    s.name.clone(),
                    SiteOutcome::NotStarted {
                        reason: "interrupted before this site's cleanup".into(),
                    },
                );
                continue;
            }
            let outcome = self.cleanup_site(m, c, s, &served).await;
            results.insert(s.name.clone(), outcome);
        }
        // The tarballs the build uploaded, once no site of the run on this host needs them.
        let done = self.job.host.sites.iter().all(|s| {
            self.site_artifact(&s.name, ArtifactKind::CleanedUp)
                .is_some()
        });
        if done {
            let mut dirs: Vec<&str> = self
                .job
                .host
                .sites
                .iter()
                .map(|s| s.backup_dir.as_str())
                .collect();
            dirs.dedup();
            let mut script = String::from("set -e\n");
            for d in dirs {
                for (i, t) in std::iter::once(&m.core)
                    .chain(m.modules.iter().map(|x| &x.tarball))
                    .enumerate()
                {
                    let name = t
                        .path
                        .file_name()
                        .map_or_else(|| "tarball".into(), |n| n.to_string_lossy().into_owned());
                    script.push_str(&format!(
                        "rm -f {}\n",
                        quote(&format!("{d}/fleet-{}/{i}-{name}", self.ctx.run))
                    ));
                }
            }
            if let Err(e) = self
                .exec(&Unit::Host, BuiltinStep::CodeRemove, &script)
                .await
            {
                tracing::warn!(
                    host = self.host,
                    "the build's tarballs stay: {}",
                    step_error_text(&e)
                );
            }
        }
    }

    async fn cleanup_site(
        &self,
        m: &Manifest,
        c: &Cleanup,
        s: &Site,
        served: &[String],
    ) -> SiteOutcome {
        let unit = Unit::site(&s.name);
        if let Some(done) = self.site_artifact(&s.name, ArtifactKind::CleanedUp) {
            return SiteOutcome::Skipped {
                reason: format!("cleaned up already: {done}"),
            };
        }
        let row = match self.ctx.journal.site_row(&self.ctx.run, self.host, &s.name) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return failed(
                    BuiltinStep::CleanupCheck,
                    "not a site of this run",
                    After::Untouched,
                );
            }
            Err(e) => {
                return failed(
                    BuiltinStep::CleanupCheck,
                    &format!("the journal cannot be read: {e}"),
                    After::Untouched,
                );
            }
        };
        if row.in_maintenance || row.status.is_midway() {
            return SiteOutcome::Skipped {
                reason: format!(
                    "its last phase did not end (`{}`{}): finish it first (`fleet migrate release` or `fleet migrate rollback`); nothing removed",
                    row.status.as_str(),
                    if row.in_maintenance {
                        ", in maintenance"
                    } else {
                        ""
                    }
                ),
            };
        }
        let Some(release) = self.site_artifact(&s.name, ArtifactKind::Release) else {
            return SiteOutcome::Skipped {
                reason: "this run made no release for it: nothing to clean up".into(),
            };
        };
        let last = CHANGES
            .iter()
            .filter_map(|st| {
                self.ctx
                    .journal
                    .step_done_at(&self.ctx.run, self.host, &unit, &(*st).into())
                    .ok()
                    .flatten()
            })
            .max();
        let now = crate::journal::now_ms();
        let age_ms = last.map_or(0, |t| now.saturating_sub(t));
        if u128::try_from(age_ms).unwrap_or(0) < c.older_than.as_millis() {
            return SiteOutcome::Skipped {
                reason: format!(
                    "its last change was {} ago, not older than {}: kept",
                    crate::journal::format_age(age_ms / 1000),
                    crate::journal::format_age(
                        i64::try_from(c.older_than.as_secs()).unwrap_or(i64::MAX)
                    )
                ),
            };
        }
        let old_root = self
            .site_artifact(&s.name, ArtifactKind::PriorCurrent)
            .unwrap_or_default();
        let old_db = self
            .site_artifact(&s.name, ArtifactKind::OldDatabase)
            .filter(|d| sql_name(d).is_ok())
            .unwrap_or_default();
        let found = match self
            .exec_probed(
                &unit,
                BuiltinStep::CleanupCheck,
                &check_script(s, &release, &old_root, &old_db, served),
                &release,
                |out| Ok(parse_found(out)),
            )
            .await
        {
            Ok(f) => f,
            Err(e) => {
                return failed(
                    BuiltinStep::CleanupCheck,
                    &step_error_text(&e),
                    After::Untouched,
                );
            }
        };
        let live = !found.release_real.is_empty() && found.serves == found.release_real;
        let site_dir = self
            .site_artifact(&s.name, ArtifactKind::OldSiteDir)
            .unwrap_or_else(|| found.site_dir.clone());
        let mut work = SiteCleanup {
            w: Work {
                site: s,
                // The lock is keyed as every other run's on this site.
                facts: Facts {
                    site_dir: found.lock_dir.clone(),
                    ..Facts::default()
                },
                prior_from: None,
            },
            served,
            keep_dir: format!("{}/fleet-{}/final", s.backup_dir, self.ctx.run),
            release,
            removed: Vec::new(),
            archives: Vec::new(),
        };
        if !live && !old_root.is_empty() && found.serves != old_root {
            return failed(
                BuiltinStep::CleanupCheck,
                &format!(
                    "`current` serves `{}`, neither this run's release nor the old site: something else moved it; nothing removed",
                    found.serves.escape_debug()
                ),
                After::Untouched,
            );
        }
        if let Err(why) = self.lock_group(std::slice::from_ref(&work.w)).await {
            return failed(BuiltinStep::Lock, &why, After::Untouched);
        }
        let result = if live {
            self.remove_old_side(m, &mut work, &found, &old_root, &old_db, &site_dir)
                .await
        } else {
            self.remove_new_side(m, &mut work, &found).await
        };
        let outcome = match result {
            Ok(()) => {
                let text = format!(
                    "removed [{}]; archives [{}]",
                    work.removed.join(", "),
                    work.archives.join(", ")
                );
                match self.record(
                    BuiltinStep::CleanupCheck,
                    &unit,
                    ArtifactKind::CleanedUp,
                    &text,
                ) {
                    Ok(()) => SiteOutcome::CleanedUp {
                        serves: found.serves.clone(),
                        removed: work.removed.clone(),
                        archives: work.archives.clone(),
                    },
                    Err((_, e)) => failed(
                        BuiltinStep::CleanupCheck,
                        &step_error_text(&e),
                        After::Untouched,
                    ),
                }
            }
            Err((step, e)) => {
                let mut why = step_error_text(&e);
                if !work.removed.is_empty() {
                    why.push_str(&format!(
                        "; removed before that: {}",
                        work.removed.join(", ")
                    ));
                }
                why.push_str(&format!(
                    "; `current` still serves `{}`; run the cleanup again once this is fixed",
                    found.serves
                ));
                failed(step, &why, After::Untouched)
            }
        };
        self.unlock_group(std::slice::from_ref(&work.w)).await;
        outcome
    }

    /// The old database, then the site's own directory in the old root, then the old root
    /// once nothing else is in it or served from it.
    async fn remove_old_side(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        found: &Found,
        old_root: &str,
        old_db: &str,
        site_dir: &str,
    ) -> Step {
        let unit = Unit::site(&work.w.site.name);
        if old_root.is_empty() {
            return Err((
                BuiltinStep::CleanupCheck,
                StepError::Failed("the journal has no record of the old site's root".into()),
            ));
        }
        if found.old_exists {
            self.check_old_root(old_root, found, site_dir)
                .map_err(|e| (BuiltinStep::CleanupCheck, StepError::Failed(e)))?;
            if self
                .site_artifact(&work.w.site.name, ArtifactKind::OldSiteDir)
                .is_none()
            {
                self.record(
                    BuiltinStep::CleanupCheck,
                    &unit,
                    ArtifactKind::OldSiteDir,
                    site_dir,
                )
                .map_err(journal_err(BuiltinStep::CleanupCheck))?;
            }
        }
        // The new site reads the old site's connection from the old site's settings file
        // (see `settings.rs`): from a copy of it in the release before that file can go.
        self.detach_settings(m, work, &found.lock_dir).await?;
        // Another site whose settings name the same database keeps it.
        let others: Vec<&String> = found.db_users.iter().filter(|d| *d != site_dir).collect();
        if !old_db.is_empty() && others.is_empty() {
            // Dumped over the connection to it, asked after over the new site's own (which
            // stays when the old database is gone).
            let key = m.import.legacy_key.clone();
            self.drop_database(m, work, old_db, &key, "default").await?;
        }
        if !found.old_exists {
            return Ok(());
        }
        let others: Vec<&String> = found.settings.iter().filter(|d| *d != site_dir).collect();
        let served = found.served_any.iter().any(|c| c == old_root);
        if others.is_empty() && !served {
            let name = format!("{}-old-root.tar.gz", work.w.site.name);
            self.archive_then_remove(work, old_root, &name, &format!(
                "grep -q \"define('VERSION', '7\\.\" \"$D/includes/bootstrap.inc\" || {{ echo \"$D is no Drupal 7 root\" >&2; exit 1; }}; {}",
                not_served(work.served, "$D")
            ))
            .await?;
        } else {
            let name = format!("{}-site-dir.tar.gz", work.w.site.name);
            self.archive_then_remove(work, site_dir, &name, "").await?;
        }
        // What `current` serves still boots without the old site.
        self.boots(m, work, BuiltinStep::QaBoot).await
    }

    /// The release's drush, run in the release.
    fn release_drush(m: &Manifest, release: &str) -> String {
        format!(
            "cd {} && {}",
            quote(release),
            quote(&format!("{release}/{}", m.site.drush))
        )
    }

    /// `drush status` of the release says it boots.
    async fn boots(&self, m: &Manifest, work: &SiteCleanup<'_>, step: BuiltinStep) -> Step {
        let unit = Unit::site(&work.w.site.name);
        let script = format!(
            "{} status --format=json",
            Self::release_drush(m, &work.release)
        );
        self.exec_probed(&unit, step, &script, "", |out| {
            let v: serde_json::Value = serde_json::from_str(out.trim())
                .map_err(|_| "drush status printed no JSON".to_owned())?;
            if v.get("bootstrap").and_then(|x| x.as_str()) == Some("Successful") {
                Ok(())
            } else {
                Err("the new site does not boot (drush status: no successful bootstrap)".into())
            }
        })
        .await
        .map_err(at(step))
    }

    /// Copies the old site's settings file into the release (`legacy.settings.php`, its mode
    /// kept) and points the new settings' include at the copy, then checks the site boots.
    /// Done already (the include names the copy): only the check.
    async fn detach_settings(
        &self,
        m: &Manifest,
        work: &SiteCleanup<'_>,
        old_site_dir: &str,
    ) -> Step {
        let unit = Unit::site(&work.w.site.name);
        let dir = format!("{}/sites/default", work.release);
        let old = format!("{old_site_dir}/settings.php");
        let copy = format!("{dir}/legacy.settings.php");
        let (old_lit, new_lit) = (php_str(&old), php_str(&copy));
        let script = format!(
            "S={s}; OLD={old}; COPY={copy}; O={ol}; N={nl}\n\
             if grep -qF \"include $N\" \"$S/settings.php\"; then exit 0; fi\n\
             grep -qF \"include $O\" \"$S/settings.php\" || {{ echo \"$S/settings.php includes neither the old site's settings nor a copy: left as it is\" >&2; exit 1; }}\n\
             [ -f \"$OLD\" ] || {{ echo \"$OLD is gone: the new site cannot be detached from it\" >&2; exit 1; }}\n\
             m=$(stat -c %a \"$S\"); chmod u+w \"$S\" || exit 1\n\
             ok=0; cp -p \"$OLD\" \"$COPY.tmp\" && mv \"$COPY.tmp\" \"$COPY\" \\\n\
               && O=\"include $O\" N=\"include $N\" awk '{{ i = index($0, ENVIRON[\"O\"]); if (i) $0 = substr($0, 1, i - 1) ENVIRON[\"N\"] substr($0, i + length(ENVIRON[\"O\"])); print }}' \"$S/settings.php\" > \"$S/settings.php.tmp\" \\\n\
               && grep -qF \"include $N\" \"$S/settings.php.tmp\" && ! grep -qF \"include $O\" \"$S/settings.php.tmp\" \\\n\
               && chmod --reference=\"$S/settings.php\" \"$S/settings.php.tmp\" && mv \"$S/settings.php.tmp\" \"$S/settings.php\" && ok=1\n\
             rm -f \"$S/settings.php.tmp\"; chmod \"$m\" \"$S\"\n\
             [ \"$ok\" = 1 ] || {{ echo \"the new settings could not be pointed at $COPY\" >&2; exit 1; }}",
            s = quote(&dir),
            old = quote(&old),
            copy = quote(&copy),
            ol = quote(&old_lit),
            nl = quote(&new_lit),
        );
        self.exec(&unit, BuiltinStep::SettingsDetach, &script)
            .await
            .map_err(at(BuiltinStep::SettingsDetach))?;
        self.boots(m, work, BuiltinStep::SettingsDetach).await
    }

    fn check_old_root(&self, old_root: &str, found: &Found, site_dir: &str) -> Result<(), String> {
        safe_path("old root", old_root)?;
        safe_path("site dir", site_dir)?;
        if old_root.trim_end_matches('/').matches('/').count() < 2 {
            return Err(format!(
                "the old root `{old_root}` is too near `/` to be removed"
            ));
        }
        if !found.old_version.starts_with("7.") {
            return Err(format!(
                "`{old_root}` is no Drupal 7 root (version `{}`): nothing removed",
                found.old_version.escape_debug()
            ));
        }
        let Some(dir) = site_dir.strip_prefix(&format!("{old_root}/sites/")) else {
            return Err(format!(
                "site dir `{site_dir}` is not inside `{old_root}/sites/`"
            ));
        };
        if dir.is_empty() || dir.contains('/') || dir == "all" || dir.starts_with('.') {
            return Err(format!(
                "site dir `{site_dir}` is not a site's own directory"
            ));
        }
        if !found.release_real.is_empty() && found.release_real.starts_with(&format!("{old_root}/"))
        {
            return Err(format!(
                "the release is inside the old root `{old_root}`: nothing removed"
            ));
        }
        Ok(())
    }

    /// The preview link (when it shows the release), the new database, the release.
    async fn remove_new_side(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        found: &Found,
    ) -> Step {
        let unit = Unit::site(&work.w.site.name);
        let current = work.w.site.current.clone().unwrap_or_default();
        let base = current
            .rsplit_once('/')
            .map_or(String::new(), |(b, _)| b.to_owned());
        if found.release_real.is_empty() {
            // Gone already (an earlier cleanup, or the build's undo): its database went first.
            return Ok(());
        }
        let mine = format!("run={} site={}", self.ctx.run, work.w.site.name);
        if found.marker != mine {
            return Err((
                BuiltinStep::CleanupCheck,
                StepError::Failed(format!(
                    "`{}` is not this run's build of the site: kept",
                    work.release
                )),
            ));
        }
        let prior = self
            .site_artifact(&work.w.site.name, ArtifactKind::PriorPreview)
            .unwrap_or_default();
        self.exec(
            &unit,
            BuiltinStep::PreviewUnlink,
            &preview_unlink_script(&base, &work.release, &prior, &self.ctx.run),
        )
        .await
        .map_err(at(BuiltinStep::PreviewUnlink))?;
        if let Some(db) = self.site_artifact(&work.w.site.name, ArtifactKind::NewDatabase) {
            let key = m.import.legacy_key.clone();
            self.drop_database(m, work, &db, "default", &key).await?;
        }
        let name = format!("{}-release-site.tar.gz", work.w.site.name);
        let site_default = format!("{}/sites/default", work.release);
        self.archive(work, &site_default, &name).await?;
        self.exec(
            &unit,
            BuiltinStep::ReleaseRemove,
            &release_remove_script(
                &work.release,
                &release_tmp(&base, &self.ctx.run),
                &current,
                &mine,
            ),
        )
        .await
        .map_err(at(BuiltinStep::ReleaseRemove))?;
        work.removed.push(work.release.clone());
        Ok(())
    }

    /// `db` dumped through the release's drush on connection `key` (the dump checked and its
    /// SHA-256 recorded), then dropped once the dump is verified again, the server asked
    /// and told over connection `server` (one that does not need `db`). A database gone
    /// already is left at that.
    async fn drop_database(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        db: &str,
        key: &str,
        server: &str,
    ) -> Step {
        let db = sql_name(db).map_err(|e| (BuiltinStep::FinalDump, StepError::Failed(e)))?;
        let dunit = Unit::Database(db.to_owned());
        let drush = Self::release_drush(m, &work.release);
        let exists = format!(
            "o=$({drush} sql:query --database={k} \"SHOW DATABASES LIKE '{db}'\") || {{ echo \"cannot ask whether {db} exists\" >&2; exit 1; }}; printf '%s\\n' \"$o\" | grep -qx {dbq}",
            k = quote(server),
            dbq = quote(db),
        );
        let recorded = self
            .ctx
            .journal
            .artifact(&self.ctx.run, self.host, &dunit, ArtifactKind::FinalDump)
            .ok()
            .flatten();
        let file = format!("{}/{db}.sql", work.keep_dir);
        let sha = match recorded.as_deref().and_then(|v| v.split_once(" sha256:")) {
            Some((_, sha)) => sha.to_owned(),
            None => {
                self.record(
                    BuiltinStep::FinalDump,
                    &dunit,
                    ArtifactKind::FinalDump,
                    &file,
                )
                .map_err(journal_err(BuiltinStep::FinalDump))?;
                let script = format!(
                    "if ! {{ {exists}; }}; then echo gone; exit 0; fi\n\
                     umask 077 && mkdir -p {dir} && {drush} sql:dump --database={k} --result-file={f} && {check}",
                    dir = quote(&work.keep_dir),
                    k = quote(key),
                    f = quote(&file),
                    check = check_dump(&file, db),
                );
                let out = self
                    .exec(&dunit, BuiltinStep::FinalDump, &script)
                    .await
                    .map_err(at(BuiltinStep::FinalDump))?;
                let last = out.trim().lines().last().unwrap_or("").trim().to_owned();
                if last == "gone" {
                    return Ok(());
                }
                if last.len() != 64 || !last.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err((
                        BuiltinStep::FinalDump,
                        StepError::Failed(format!("the dump of `{db}` gave no SHA-256")),
                    ));
                }
                self.record(
                    BuiltinStep::FinalDump,
                    &dunit,
                    ArtifactKind::FinalDump,
                    &format!("{file} sha256:{last}"),
                )
                .map_err(journal_err(BuiltinStep::FinalDump))?;
                last
            }
        };
        let script = format!(
            "if ! {{ {exists}; }}; then exit 0; fi\n\
             {verify} >/dev/null && {drush} sql:query --database={k} 'DROP DATABASE `{db}`'",
            verify = verify_dump(&file, db, &sha),
            k = quote(server),
        );
        self.exec(&dunit, BuiltinStep::DatabaseDrop, &script)
            .await
            .map_err(at(BuiltinStep::DatabaseDrop))?;
        work.archives.push(file);
        work.removed.push(format!("database `{db}`"));
        Ok(())
    }

    /// `dir` archived into the keep dir as `name` (read back, its SHA-256 recorded); nothing
    /// to do when `dir` is gone. Returns the SHA-256, or `None` when there was nothing.
    async fn archive(
        &self,
        work: &mut SiteCleanup<'_>,
        dir: &str,
        name: &str,
    ) -> Step<Option<String>> {
        let cunit = Unit::Codebase(dir.to_owned());
        let file = format!("{}/{name}", work.keep_dir);
        let recorded = self
            .ctx
            .journal
            .artifact(&self.ctx.run, self.host, &cunit, ArtifactKind::Archive)
            .ok()
            .flatten();
        if let Some((_, sha)) = recorded.as_deref().and_then(|v| v.split_once(" sha256:")) {
            return Ok(Some(sha.to_owned()));
        }
        self.record(BuiltinStep::Archive, &cunit, ArtifactKind::Archive, &file)
            .map_err(journal_err(BuiltinStep::Archive))?;
        let (parent, base) = dir.rsplit_once('/').unwrap_or(("/", dir));
        let script = format!(
            "D={d}; F={f}; [ -e \"$D\" ] || {{ echo gone; exit 0; }}\n\
             umask 077 && mkdir -p {keep} && tar -czf \"$F.tmp\" -C {p} {b} && tar -tzf \"$F.tmp\" >/dev/null && mv \"$F.tmp\" \"$F\" && sha256sum \"$F\" | cut -d' ' -f1",
            d = quote(dir),
            f = quote(&file),
            keep = quote(&work.keep_dir),
            p = quote(if parent.is_empty() { "/" } else { parent }),
            b = quote(base),
        );
        let out = self
            .exec(&cunit, BuiltinStep::Archive, &script)
            .await
            .map_err(at(BuiltinStep::Archive))?;
        let last = out.trim().lines().last().unwrap_or("").trim().to_owned();
        if last == "gone" {
            return Ok(None);
        }
        if last.len() != 64 || !last.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err((
                BuiltinStep::Archive,
                StepError::Failed(format!("the archive of `{dir}` gave no SHA-256")),
            ));
        }
        self.record(
            BuiltinStep::Archive,
            &cunit,
            ArtifactKind::Archive,
            &format!("{file} sha256:{last}"),
        )
        .map_err(journal_err(BuiltinStep::Archive))?;
        work.archives.push(file);
        Ok(Some(last))
    }

    /// [`Self::archive`], then `dir` removed once its archive is verified again and `guard`
    /// (shell, `$D` the dir) holds.
    async fn archive_then_remove(
        &self,
        work: &mut SiteCleanup<'_>,
        dir: &str,
        name: &str,
        guard: &str,
    ) -> Step {
        let Some(sha) = self.archive(work, dir, name).await? else {
            return Ok(());
        };
        let file = format!("{}/{name}", work.keep_dir);
        let script = format!(
            "D={d}; F={f}; [ -e \"$D\" ] || exit 0\n\
             [ \"$(sha256sum \"$F\" | cut -d' ' -f1)\" = {sha} ] || {{ echo \"archive $F is missing or changed since it was written: $D kept\" >&2; exit 1; }}\n\
             {guard}\n\
             chmod -R u+w \"$D\" && rm -rf \"$D\"",
            d = quote(dir),
            f = quote(&file),
            sha = quote(&sha),
        );
        self.exec(
            &Unit::Codebase(dir.to_owned()),
            BuiltinStep::CodeRemove,
            &script,
        )
        .await
        .map_err(at(BuiltinStep::CodeRemove))?;
        work.removed.push(dir.to_owned());
        Ok(())
    }
}

/// Shell that exits non-zero when any of `currents` resolves to `dir` (a shell word).
fn not_served(currents: &[String], dir: &str) -> String {
    currents
        .iter()
        .map(|c| {
            format!(
                "[ \"$(readlink -f {c})\" != \"$(readlink -f \"{dir}\")\" ] || {{ echo \"{c} serves {dir}: kept\" >&2; exit 1; }}",
                c = quote(c)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_database_names_are_checked_before_sql() {
        assert_eq!(sql_name("drupal_h01_1"), Ok("drupal_h01_1"));
        assert!(sql_name("x`; DROP").is_err());
        assert!(sql_name("").is_err());
    }

    #[test]
    fn the_check_reads_hex_values_and_ignores_noise() {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let out = format!(
            "motd\nserves={}\nsettings={}\nsettings={}\nold_exists={}\nbogus=zz\n",
            hex("/srv/a/releases/r1"),
            hex("/w/sites/a"),
            hex("/w/sites/b\nserves=/evil"),
            hex("1"),
        );
        let f = parse_found(&out);
        assert_eq!(f.serves, "/srv/a/releases/r1");
        assert_eq!(
            f.settings,
            vec![
                "/w/sites/a".to_owned(),
                "/w/sites/b\nserves=/evil".to_owned()
            ]
        );
        assert!(f.old_exists);
    }
}
