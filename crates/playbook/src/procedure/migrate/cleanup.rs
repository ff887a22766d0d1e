//! `fleet migrate cleanup RUN --older-than AGE` on one host: what each site of the run no
//! longer needs goes, once the site's last change in the run is older than AGE.
//! - A released site (`current` serves the run's release) no longer needs its old side: the
//!   old Drupal database, the site's own directory in the old Drupal root, and the old root
//!   itself once no other site is in it or served from it. The new site first gets its own
//!   copy of the old settings file it reads the old connection from.
//! - A site that is not released (QA failed, never released, switched back) no longer needs
//!   its new side: the `preview` link (when it shows the release), the new database (a
//!   switched-back site may have taken writes in it) and the release.
//!
//! The order keeps every way back open until the copies exist: the plan (which side, which
//! database, which directory) is journaled first, and from then on the release, import and
//! rollback refuse the site; every copy is taken and checked (a dump named and complete, an
//! archive read back, SHA-256 recorded) before anything goes; a directory is moved aside
//! (atomic), the site checked to still boot (moved back if not), and only then is the
//! database dropped and the directory deleted. Every destructive script checks on the host
//! first that `current` still serves what the plan says. Each step skips what is done
//! already, so a cleanup run again (after a crash or a failure) finishes the plan.
//!
//! Fail closed: a database is kept unless the site's own settings name it and no other
//! site's settings name it or hide their database; a site directory is kept unless its
//! settings name the site's database (a `sites.php` alias could make it another site's).

mod script;

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_inventory::Site;
use fleet_remote_exec::quote;

use super::build::{preview_unlink_script, release_tmp};
use super::manifest::Manifest;
use super::settings::php_str;
use crate::discovery::{Facts, safe_path};
use crate::engine::{HostRun, StepError, failed, step_error_text};
use crate::outcome::{After, SiteOutcome};
use crate::procedure::civicrm::commands::{check_dump, verify_dump};
use crate::vocab::{ArtifactKind, BuiltinStep, StepName, Unit};
use crate::work::Work;
use script::{Found, sha_line, sql_name};

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

/// What a cleanup removes of a site, journaled before anything is: a cleanup run again
/// goes on with it, and the release, import and rollback refuse a site that has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The old side (the site is released) or the new one.
    pub(crate) old_side: bool,
    /// The database to drop (none: kept).
    pub(crate) drop: Option<String>,
    /// The directory to remove (none: kept).
    pub(crate) code: Option<String>,
    /// What is kept, and why.
    pub(crate) kept: Vec<String>,
}

impl Plan {
    fn to_text(&self) -> String {
        let mut t = format!(
            "side={}\ndrop={}\ncode={}\n",
            if self.old_side { "old" } else { "new" },
            self.drop.as_deref().unwrap_or(""),
            self.code.as_deref().unwrap_or("")
        );
        for k in &self.kept {
            t.push_str(&format!("kept={k}\n"));
        }
        t
    }

    pub(crate) fn parse(text: &str) -> Option<Plan> {
        let mut p = Plan {
            old_side: false,
            drop: None,
            code: None,
            kept: Vec::new(),
        };
        let mut side = None;
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            let v = (!v.is_empty()).then(|| v.to_owned());
            match k {
                "side" => side = v,
                "drop" => p.drop = v,
                "code" => p.code = v,
                "kept" => p.kept.extend(v),
                _ => return None,
            }
        }
        p.old_side = match side.as_deref()? {
            "old" => true,
            "new" => false,
            _ => return None,
        };
        Some(p)
    }
}

/// One site's cleanup as it goes: what it removed and archived.
struct SiteCleanup<'a> {
    w: Work<'a>,
    release: String,
    /// `<backup dir>/fleet-<run>/final`: where the dumps and archives go.
    keep_dir: String,
    /// When the site last changed (unix ms): a copy older than this is taken again.
    changed: i64,
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

fn stop<T>(step: BuiltinStep, why: impl Into<String>) -> Step<T> {
    Err((step, StepError::Failed(why.into())))
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
        self.remove_tarballs(m).await;
    }

    /// The tarballs the build uploaded, once no site of the run on this host needs them (each
    /// is cleaned up, or had no release).
    async fn remove_tarballs(&self, m: &Manifest) {
        let Ok(rows) = self.ctx.journal.sites(&self.ctx.run) else {
            return;
        };
        let done = rows.iter().filter(|r| r.host == self.host).all(|r| {
            self.site_artifact(&r.site, ArtifactKind::CleanedUp)
                .is_some()
                || self.site_artifact(&r.site, ArtifactKind::Release).is_none()
        });
        if !done {
            return;
        }
        let mut dirs: Vec<&str> = self
            .job
            .host
            .sites
            .iter()
            .map(|s| s.backup_dir.as_str())
            .collect();
        dirs.sort_unstable();
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

    /// When the site last changed in the run; `None` when the journal cannot say.
    fn last_change(&self, unit: &Unit) -> Option<i64> {
        let mut last = 0;
        for st in CHANGES {
            match self
                .ctx
                .journal
                .step_done_at(&self.ctx.run, self.host, unit, &st.into())
            {
                Ok(t) => last = last.max(t.unwrap_or(0)),
                Err(_) => return None,
            }
        }
        Some(last)
    }

    async fn check(
        &self,
        s: &Site,
        release: &str,
        old_root: &str,
        old_db: &str,
        served: &[String],
    ) -> Step<Found> {
        let found = self
            .exec_probed(
                &Unit::site(&s.name),
                BuiltinStep::CleanupCheck,
                &script::check(s, release, old_root, old_db, served),
                release,
                |out| {
                    let f = script::parse(out);
                    if f.complete {
                        Ok(f)
                    } else {
                        Err("the host's answer to the check was cut off".into())
                    }
                },
            )
            .await
            .map_err(at(BuiltinStep::CleanupCheck))?;
        Ok(found)
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
            Ok(None) => return skipped("not a site of this run"),
            Err(e) => {
                return skipped(&format!(
                    "the journal cannot be read ({e}): nothing removed"
                ));
            }
        };
        if row.in_maintenance || row.status.is_midway() {
            return skipped(&format!(
                "its last phase did not end (`{}`{}): finish it first (`fleet migrate release` or `fleet migrate rollback`); nothing removed",
                row.status.as_str(),
                if row.in_maintenance {
                    ", in maintenance"
                } else {
                    ""
                }
            ));
        }
        let Some(release) = self.site_artifact(&s.name, ArtifactKind::Release) else {
            return skipped("this run made no release for it: nothing to clean up");
        };
        let recorded = self
            .site_artifact(&s.name, ArtifactKind::CleanupPlan)
            .map(|t| Plan::parse(&t));
        let Some(changed) = self.last_change(&unit) else {
            return skipped("the journal cannot say when the site last changed: nothing removed");
        };
        let age_ms = crate::journal::now_ms().saturating_sub(changed);
        // A cleanup that began goes on whatever its age now.
        if recorded.is_none() && u128::try_from(age_ms).unwrap_or(0) < c.older_than.as_millis() {
            return skipped(&format!(
                "its last change was {} ago, not older than {}: kept",
                crate::journal::format_age(age_ms / 1000),
                crate::journal::format_age(
                    i64::try_from(c.older_than.as_secs()).unwrap_or(i64::MAX)
                )
            ));
        }
        let old_root = self
            .site_artifact(&s.name, ArtifactKind::PriorCurrent)
            .unwrap_or_default();
        let old_db = self
            .site_artifact(&s.name, ArtifactKind::OldDatabase)
            .filter(|d| sql_name(d).is_ok())
            .unwrap_or_default();
        // Read once for the lock's key, then again under the lock for the decisions.
        let first = match self.check(s, &release, &old_root, &old_db, served).await {
            Ok(f) => f,
            Err((step, e)) => return failed(step, &step_error_text(&e), After::Untouched),
        };
        let mut work = SiteCleanup {
            w: Work {
                site: s,
                // The lock is keyed as every other run's on this site.
                facts: Facts {
                    site_dir: first.lock_dir.clone(),
                    ..Facts::default()
                },
                prior_from: None,
            },
            keep_dir: format!("{}/fleet-{}/final", s.backup_dir, self.ctx.run),
            release,
            changed,
            removed: Vec::new(),
            archives: Vec::new(),
        };
        if let Err(why) = self.lock_group(std::slice::from_ref(&work.w)).await {
            return failed(BuiltinStep::Lock, &why, After::Untouched);
        }
        let result = async {
            let found = self.check(s, &work.release, &old_root, &old_db, served).await?;
            let plan = match recorded {
                Some(Some(p)) => p,
                Some(None) => return stop(BuiltinStep::CleanupCheck, "the journal's cleanup plan for the site cannot be read: nothing removed"),
                None => {
                    let p = self.plan(&work, &found, &old_root, &old_db)?;
                    self.record(BuiltinStep::CleanupCheck, &unit, ArtifactKind::CleanupPlan, &p.to_text())
                        .map_err(journal_err(BuiltinStep::CleanupCheck))?;
                    p
                }
            };
            let live = !found.release_real.is_empty() && found.serves == found.release_real;
            if plan.old_side != live {
                return stop(
                    BuiltinStep::CleanupCheck,
                    format!(
                        "an earlier cleanup began removing the site's {} side, but `current` now serves `{}`: nothing more removed; put `current` back, then run the cleanup again",
                        if plan.old_side { "old" } else { "new" },
                        found.serves.escape_debug()
                    ),
                );
            }
            if plan.old_side {
                self.remove_old_side(m, &mut work, &found, &plan, &old_root, served).await?;
            } else {
                self.remove_new_side(m, &mut work, &found, &plan).await?;
            }
            Ok::<_, (BuiltinStep, StepError)>((plan, found.serves))
        }
        .await;
        let outcome = match result {
            Ok((plan, serves)) => {
                let text = format!(
                    "removed [{}]; archives [{}]; kept [{}]",
                    work.removed.join(", "),
                    work.archives.join(", "),
                    plan.kept.join(", ")
                );
                match self.record(
                    BuiltinStep::CleanupCheck,
                    &unit,
                    ArtifactKind::CleanedUp,
                    &text,
                ) {
                    Ok(()) => SiteOutcome::CleanedUp {
                        serves,
                        removed: work.removed.clone(),
                        archives: work.archives.clone(),
                        kept: plan.kept,
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
                why.push_str("; what `current` serves is untouched; run the cleanup again once this is fixed");
                failed(step, &why, After::Untouched)
            }
        };
        self.unlock_group(std::slice::from_ref(&work.w)).await;
        outcome
    }

    /// What goes, decided once from what the host shows.
    fn plan(
        &self,
        work: &SiteCleanup<'_>,
        found: &Found,
        old_root: &str,
        old_db: &str,
    ) -> Step<Plan> {
        let live = !found.release_real.is_empty() && found.serves == found.release_real;
        if !live {
            if !old_root.is_empty() && found.serves != old_root {
                return stop(
                    BuiltinStep::CleanupCheck,
                    format!(
                        "`current` serves `{}`, neither this run's release nor the old site: something else moved it; nothing removed",
                        found.serves.escape_debug()
                    ),
                );
            }
            let mine = format!("run={} site={}", self.ctx.run, work.w.site.name);
            if !found.release_real.is_empty() && found.marker != mine {
                return stop(
                    BuiltinStep::CleanupCheck,
                    format!(
                        "`{}` is not this run's build of the site: nothing removed",
                        work.release
                    ),
                );
            }
            return Ok(Plan {
                old_side: false,
                drop: self.site_artifact(&work.w.site.name, ArtifactKind::NewDatabase),
                code: Some(work.release.clone()),
                kept: Vec::new(),
            });
        }
        let mut kept = Vec::new();
        if old_root.is_empty() {
            return stop(
                BuiltinStep::CleanupCheck,
                "the journal has no record of the old site's root",
            );
        }
        if !found.old_exists {
            kept.push(format!("`{old_root}`: gone already"));
            return Ok(Plan {
                old_side: true,
                drop: None,
                code: None,
                kept,
            });
        }
        check_old_root(old_root, found)
            .map_err(|e| (BuiltinStep::CleanupCheck, StepError::Failed(e)))?;
        let site_dir = found.site_dir.as_str();
        // The site's own settings must name its database: else the directory found by the
        // discovery's rule may not be its own (a `sites.php` alias), and nothing of it goes.
        let own = !old_db.is_empty() && found.db_users.iter().any(|d| d == site_dir);
        if !own {
            kept.push(format!(
                "`{site_dir}` and database `{old_db}`: the settings there do not name the site's database"
            ));
            return Ok(Plan {
                old_side: true,
                drop: None,
                code: None,
                kept,
            });
        }
        let others: Vec<&String> = found.settings.iter().filter(|d| *d != site_dir).collect();
        let sharing: Vec<&&String> = others
            .iter()
            .filter(|d| found.db_users.contains(d) || !found.db_named.contains(d))
            .collect();
        let drop = if sharing.is_empty() {
            Some(old_db.to_owned())
        } else {
            kept.push(format!(
                "database `{old_db}`: {} may use it too",
                sharing
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            None
        };
        let served = found.served_any.iter().any(|c| c == old_root);
        let code = if others.is_empty() && !served {
            old_root.to_owned()
        } else {
            kept.push(format!(
                "`{old_root}`: {}",
                if served {
                    "another site is served from it"
                } else {
                    "other sites are in it"
                }
            ));
            site_dir.to_owned()
        };
        Ok(Plan {
            old_side: true,
            drop,
            code: Some(code),
            kept,
        })
    }

    /// The new site detached from the old settings, the copies, the code moved aside (the
    /// site still boots, or it goes back), the database dropped, the code deleted.
    async fn remove_old_side(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        found: &Found,
        plan: &Plan,
        old_root: &str,
        served: &[String],
    ) -> Step {
        let current = work.w.site.current.clone().unwrap_or_default();
        let live = script::current_guard(&current, &work.release, true);
        if found.old_exists {
            self.detach_settings(m, work, &found.lock_dir).await?;
        }
        if let Some(db) = &plan.drop {
            self.final_dump(m, work, db, &m.import.legacy_key, "default")
                .await?;
        }
        if let Some(dir) = &plan.code {
            let name = if dir == old_root {
                format!("{}-old-root.tar.gz", work.w.site.name)
            } else {
                format!("{}-site-dir.tar.gz", work.w.site.name)
            };
            self.archive(work, dir, &name).await?;
            let guards = format!("{live}\n{}", script::not_served(served));
            self.move_aside(work, dir, BuiltinStep::CodeRemove, &guards)
                .await?;
            if let Err(e) = self.boots(m, work, BuiltinStep::QaBoot).await {
                // Not without it: the directory goes back where it was.
                let back = self
                    .exec(
                        &Unit::Codebase(dir.clone()),
                        BuiltinStep::CodeRemove,
                        &script::back(dir, &self.ctx.run),
                    )
                    .await;
                let mut why = format!("{}; `{dir}` was put back", step_error_text(&e.1));
                if let Err(b) = back {
                    why = format!(
                        "{}; `{dir}` could NOT be put back from `{}`: {}",
                        step_error_text(&e.1),
                        script::trash(dir, &self.ctx.run),
                        step_error_text(&b)
                    );
                }
                return stop(BuiltinStep::QaBoot, why);
            }
        }
        if let Some(db) = &plan.drop {
            self.drop_database(m, work, db, "default", &live).await?;
        }
        if let Some(dir) = &plan.code {
            self.exec(
                &Unit::Codebase(dir.clone()),
                BuiltinStep::CodeRemove,
                &script::purge(dir, &self.ctx.run),
            )
            .await
            .map_err(at(BuiltinStep::CodeRemove))?;
            work.removed.push(dir.clone());
        }
        self.boots(m, work, BuiltinStep::QaBoot).await
    }

    /// The preview link, the copies, the database dropped, the release moved aside and
    /// deleted.
    async fn remove_new_side(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        found: &Found,
        plan: &Plan,
    ) -> Step {
        let unit = Unit::site(&work.w.site.name);
        let current = work.w.site.current.clone().unwrap_or_default();
        let base = current
            .rsplit_once('/')
            .map_or(String::new(), |(b, _)| b.to_owned());
        let unlive = script::current_guard(&current, &work.release, false);
        if found.release_real.is_empty() {
            // The release went (an earlier attempt of the cleanup moved it, or the build's
            // undo): its database went first, or must be said to remain.
            if let Some(db) = &plan.drop {
                let dropped = self
                    .ctx
                    .journal
                    .step_done_at(
                        &self.ctx.run,
                        self.host,
                        &Unit::Database(db.clone()),
                        &BuiltinStep::DatabaseDrop.into(),
                    )
                    .ok()
                    .flatten()
                    .is_some();
                if !dropped {
                    return stop(
                        BuiltinStep::DatabaseDrop,
                        format!(
                            "the release is gone but this run never dropped database `{db}`: it may remain on the server (drop it by hand once you have a copy)"
                        ),
                    );
                }
            }
            self.exec(
                &unit,
                BuiltinStep::ReleaseRemove,
                &script::purge(&work.release, &self.ctx.run),
            )
            .await
            .map_err(at(BuiltinStep::ReleaseRemove))?;
            return Ok(());
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
        if let Some(db) = &plan.drop {
            self.final_dump(m, work, db, "default", &m.import.legacy_key)
                .await?;
        }
        let name = format!("{}-release-site.tar.gz", work.w.site.name);
        self.archive(work, &format!("{}/sites/default", work.release), &name)
            .await?;
        if let Some(db) = &plan.drop {
            self.drop_database(m, work, db, &m.import.legacy_key, &unlive)
                .await?;
        }
        let mark = format!("run={} site={}", self.ctx.run, work.w.site.name);
        let guards = format!(
            "{unlive}\n[ \"$(cat \"$D/.fleet-release\" 2>/dev/null)\" = {} ] || {{ echo \"$D is not this run's build of the site: kept\" >&2; exit 1; }}\nrm -rf {}",
            quote(&mark),
            quote(&release_tmp(&base, &self.ctx.run)),
        );
        let release = work.release.clone();
        self.move_aside(work, &release, BuiltinStep::ReleaseRemove, &guards)
            .await?;
        self.exec(
            &unit,
            BuiltinStep::ReleaseRemove,
            &script::purge(&release, &self.ctx.run),
        )
        .await
        .map_err(at(BuiltinStep::ReleaseRemove))?;
        work.removed.push(release);
        Ok(())
    }

    /// `dir` moved to its trash after `guards` (none of which may have run if it is gone).
    async fn move_aside(
        &self,
        work: &SiteCleanup<'_>,
        dir: &str,
        step: BuiltinStep,
        guards: &str,
    ) -> Step {
        safe_path("directory", dir).map_err(|e| (step, StepError::Failed(e)))?;
        self.exec(
            &Unit::Codebase(dir.to_owned()),
            step,
            &script::aside(dir, &self.ctx.run, &work.keep_dir, guards),
        )
        .await
        .map_err(at(step))?;
        Ok(())
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

    /// Whether `db` exists, asked over connection `server` (one that does not need `db`).
    fn db_exists(m: &Manifest, release: &str, db: &str, server: &str) -> String {
        format!(
            "o=$({drush} sql:query --database={k} \"SHOW DATABASES LIKE '{db}'\") || {{ echo \"cannot ask whether {db} exists\" >&2; exit 1; }}; printf '%s\\n' \"$o\" | grep -qx {dbq}",
            drush = Self::release_drush(m, release),
            k = quote(server),
            dbq = quote(db),
        )
    }

    /// A copy's recorded SHA-256 when it was taken after the site's last change and the file
    /// still has it.
    async fn fresh_copy(
        &self,
        work: &SiteCleanup<'_>,
        unit: &Unit,
        kind: ArtifactKind,
        step: BuiltinStep,
    ) -> Option<(String, String)> {
        let v = self
            .ctx
            .journal
            .artifact(&self.ctx.run, self.host, unit, kind)
            .ok()
            .flatten()?;
        let (file, sha) = v.split_once(" sha256:")?;
        let taken = self
            .ctx
            .journal
            .step_done_at(&self.ctx.run, self.host, unit, &step.into())
            .ok()
            .flatten()?;
        if taken < work.changed {
            return None;
        }
        let out = self
            .exec(unit, step, &script::same_file(file, sha))
            .await
            .ok()?;
        (out.trim() == "ok").then(|| (file.to_owned(), sha.to_owned()))
    }

    /// `db` dumped through the release's drush on connection `key` (checked, SHA-256
    /// recorded) unless a fresh dump is there; nothing when `db` is gone.
    async fn final_dump(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        db: &str,
        key: &str,
        server: &str,
    ) -> Step {
        let db = sql_name(db).map_err(|e| (BuiltinStep::FinalDump, StepError::Failed(e)))?;
        let dunit = Unit::Database(db.to_owned());
        if let Some((file, _)) = self
            .fresh_copy(
                work,
                &dunit,
                ArtifactKind::FinalDump,
                BuiltinStep::FinalDump,
            )
            .await
        {
            work.archives.push(file);
            return Ok(());
        }
        let file = format!("{}/{db}.sql", work.keep_dir);
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
            exists = Self::db_exists(m, &work.release, db, server),
            dir = quote(&work.keep_dir),
            drush = Self::release_drush(m, &work.release),
            k = quote(key),
            f = quote(&file),
            check = check_dump(&file, db),
        );
        let out = self
            .exec(&dunit, BuiltinStep::FinalDump, &script)
            .await
            .map_err(at(BuiltinStep::FinalDump))?;
        if out.trim().lines().last() == Some("gone") {
            return Ok(());
        }
        let Some(sha) = sha_line(&out) else {
            return stop(
                BuiltinStep::FinalDump,
                format!("the dump of `{db}` gave no SHA-256"),
            );
        };
        self.record(
            BuiltinStep::FinalDump,
            &dunit,
            ArtifactKind::FinalDump,
            &format!("{file} sha256:{sha}"),
        )
        .map_err(journal_err(BuiltinStep::FinalDump))?;
        work.archives.push(file);
        Ok(())
    }

    /// `db` dropped once its recorded dump is verified again and `guard` holds; nothing when
    /// it is gone.
    async fn drop_database(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        db: &str,
        server: &str,
        guard: &str,
    ) -> Step {
        let dunit = Unit::Database(db.to_owned());
        let recorded = self
            .ctx
            .journal
            .artifact(&self.ctx.run, self.host, &dunit, ArtifactKind::FinalDump)
            .ok()
            .flatten();
        let script = match recorded.as_deref().and_then(|v| v.split_once(" sha256:")) {
            Some((file, sha)) => format!(
                "if ! {{ {exists}; }}; then exit 0; fi\n{guard}\n{verify} >/dev/null && {drush} sql:query --database={k} 'DROP DATABASE `{db}`'",
                exists = Self::db_exists(m, &work.release, db, server),
                verify = verify_dump(file, db, sha),
                drush = Self::release_drush(m, &work.release),
                k = quote(server),
            ),
            // No dump taken: the database was gone when the dump was to be taken.
            None => format!(
                "if ! {{ {exists}; }}; then exit 0; fi\necho 'database {db} has no checked dump: kept' >&2; exit 1",
                exists = Self::db_exists(m, &work.release, db, server),
            ),
        };
        self.exec(&dunit, BuiltinStep::DatabaseDrop, &script)
            .await
            .map_err(at(BuiltinStep::DatabaseDrop))?;
        work.removed.push(format!("database `{db}`"));
        Ok(())
    }

    /// `dir` archived into the keep dir as `name` (read back, SHA-256 recorded) unless a
    /// fresh archive is there; nothing when `dir` is gone.
    async fn archive(&self, work: &mut SiteCleanup<'_>, dir: &str, name: &str) -> Step {
        let cunit = Unit::Codebase(dir.to_owned());
        if let Some((file, _)) = self
            .fresh_copy(work, &cunit, ArtifactKind::Archive, BuiltinStep::Archive)
            .await
        {
            work.archives.push(file);
            return Ok(());
        }
        let file = format!("{}/{name}", work.keep_dir);
        self.record(BuiltinStep::Archive, &cunit, ArtifactKind::Archive, &file)
            .map_err(journal_err(BuiltinStep::Archive))?;
        let out = self
            .exec(
                &cunit,
                BuiltinStep::Archive,
                &script::archive(dir, &file, &work.keep_dir),
            )
            .await
            .map_err(at(BuiltinStep::Archive))?;
        if out.trim().lines().last() == Some("gone") {
            return Ok(());
        }
        let Some(sha) = sha_line(&out) else {
            return stop(
                BuiltinStep::Archive,
                format!("the archive of `{dir}` gave no SHA-256"),
            );
        };
        self.record(
            BuiltinStep::Archive,
            &cunit,
            ArtifactKind::Archive,
            &format!("{file} sha256:{sha}"),
        )
        .map_err(journal_err(BuiltinStep::Archive))?;
        work.archives.push(file);
        Ok(())
    }
}

fn skipped(reason: &str) -> SiteOutcome {
    SiteOutcome::Skipped {
        reason: reason.to_owned(),
    }
}

fn check_old_root(old_root: &str, found: &Found) -> Result<(), String> {
    safe_path("old root", old_root)?;
    safe_path("site dir", &found.site_dir)?;
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
    let Some(dir) = found.site_dir.strip_prefix(&format!("{old_root}/sites/")) else {
        return Err(format!(
            "site dir `{}` is not inside `{old_root}/sites/`",
            found.site_dir
        ));
    };
    if dir.is_empty() || dir.contains('/') || dir == "all" || dir.starts_with('.') {
        return Err(format!(
            "site dir `{}` is not a site's own directory",
            found.site_dir
        ));
    }
    if !found.release_real.is_empty() && found.release_real.starts_with(&format!("{old_root}/")) {
        return Err(format!(
            "the release is inside the old root `{old_root}`: nothing removed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_as_it_was_written_and_anything_else_is_refused() {
        let p = Plan {
            old_side: true,
            drop: Some("drupal_h01_1".into()),
            code: Some("/w/drupal 7/sites/a".into()),
            kept: vec!["`/w/drupal 7`: other sites are in it".into()],
        };
        assert_eq!(Plan::parse(&p.to_text()), Some(p));
        let n = Plan {
            old_side: false,
            drop: None,
            code: None,
            kept: vec![],
        };
        assert_eq!(Plan::parse(&n.to_text()), Some(n));
        assert_eq!(Plan::parse("side=sideways\n"), None);
        assert_eq!(Plan::parse("drop=x\n"), None);
        assert_eq!(Plan::parse("side=old\nevil=1\n"), None);
    }
}
