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

mod copies;
pub(crate) mod dry;
mod plan;
mod script;
mod sides;

use std::collections::BTreeMap;
use std::time::Duration;

use fleet_inventory::Site;
use fleet_remote_exec::quote;

use super::manifest::Manifest;
use crate::discovery::Facts;
use crate::engine::{HostRun, StepError, failed, step_error_text};
use crate::outcome::{After, SiteOutcome};
use crate::vocab::{ArtifactKind, BuiltinStep, StepName, Unit};
use crate::work::Work;
use script::Found;

/// What a cleanup is told beyond the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cleanup {
    /// Only sites whose last change in the run is older than this.
    pub(crate) older_than: Duration,
    /// What surrounds the run's sites on each host.
    pub(crate) around: BTreeMap<String, Around>,
}

/// Every inventory site of a host, not only the run's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Around {
    /// Their `current` links: an old root any of them serves is never removed.
    pub(crate) currents: Vec<String>,
    /// Their Drupal roots: a CiviCRM database any site in them names is never dropped.
    pub(crate) roots: Vec<String>,
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
        let around = c.around.get(self.host).cloned().unwrap_or_default();
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
            let outcome = self.cleanup_site(m, c, s, &around).await;
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

    async fn check(&self, s: &Site, rec: &plan::Recorded, around: &Around) -> Step<Found> {
        self.exec_probed(
            &Unit::site(&s.name),
            BuiltinStep::CleanupCheck,
            &script::check(s, rec, &around.currents, &around.roots),
            &rec.release,
            script::complete,
        )
        .await
        .map_err(at(BuiltinStep::CleanupCheck))
    }

    async fn cleanup_site(
        &self,
        m: &Manifest,
        c: &Cleanup,
        s: &Site,
        around: &Around,
    ) -> SiteOutcome {
        let unit = Unit::site(&s.name);
        let rec = match plan::precheck(
            &self.ctx.journal,
            &self.ctx.run,
            self.host,
            &s.name,
            c.older_than,
        ) {
            Ok(r) => r,
            Err(why) => return skipped(&why),
        };
        let old_root = rec.old_root.clone();
        // Read once for the lock's key, then again under the lock for the decisions.
        let first = match self.check(s, &rec, around).await {
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
            release: rec.release.clone(),
            changed: rec.changed,
            removed: Vec::new(),
            archives: Vec::new(),
        };
        if let Err(why) = self.lock_group(std::slice::from_ref(&work.w)).await {
            return failed(BuiltinStep::Lock, &why, After::Untouched);
        }
        let result = async {
            let found = self.check(s, &rec, around).await?;
            let plan = match rec.planned.clone() {
                Some(Some(p)) => p,
                Some(None) => return stop(BuiltinStep::CleanupCheck, "the journal's cleanup plan for the site cannot be read: nothing removed"),
                None => {
                    let p = plan::decide(&self.ctx.run, &s.name, &rec, &found)
                        .map_err(|e| (BuiltinStep::CleanupCheck, StepError::Failed(e)))?;
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
                self.remove_old_side(m, &mut work, &found, &plan, &old_root, &around.currents).await?;
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
}

fn skipped(reason: &str) -> SiteOutcome {
    SiteOutcome::Skipped {
        reason: reason.to_owned(),
    }
}
