//! `fleet migrate release RUN` on one host: each QA-passed site is switched to its new
//! release. Per site, under its lock:
//! 1. the old site's maintenance state recorded (the first record of the run stands), the old
//!    site into maintenance (no more writes to the old data), the site marked down;
//! 2. a last `migrate:import --update` (the content written since the import);
//! 3. `current`'s target recorded, then the switch: a new link renamed over `current`, so the
//!    web server never sees a moment without a docroot;
//! 4. the new site out of maintenance, then the probe of the live name over HTTP.
//!
//! A failure before the switch takes the old site out of maintenance again; a failure after
//! it (the probe) switches back at once and does the same. Each step is idempotent and reads
//! the journal first, so running the phase again (or `fleet resume RUN`) after a crash ends
//! every site on exactly one release, out of maintenance.

use std::collections::BTreeMap;

use fleet_remote_exec::quote;

use super::build::{failure, then_probe};
use super::manifest::Manifest;
use crate::discovery::Facts;
use crate::engine::{HostRun, StepError, failed, step_error_text};
use crate::outcome::{After, SiteOutcome};
use crate::procedure::civicrm::commands::SiteCmds;
use crate::vocab::{ArtifactKind, BuiltinStep, Unit};
use crate::work::Work;

type Step<T = ()> = Result<T, (BuiltinStep, StepError)>;

/// One site's release, with what the build recorded.
struct SiteRelease<'a> {
    w: Work<'a>,
    release: String,
    database: String,
    base: String,
    current: String,
    /// The Drupal 7 site's commands (maintenance), as its web user.
    old: SiteCmds,
}

impl<'a> SiteRelease<'a> {
    /// `site`'s release work: its lock keyed as every other run's (site dir and URI), the
    /// journal's site row showing `version`.
    fn new(
        site: &'a fleet_inventory::Site,
        site_dir: &str,
        version: &str,
        release: String,
        database: String,
    ) -> SiteRelease<'a> {
        let current = site.current.clone().unwrap_or_default();
        let base = current
            .rsplit_once('/')
            .map_or(String::new(), |(b, _)| b.to_owned());
        let old_facts = Facts {
            web_user: site.web_user.clone().unwrap_or_default(),
            has_drush: true,
            ..Facts::default()
        };
        SiteRelease {
            w: Work {
                site,
                facts: Facts {
                    site_dir: site_dir.to_owned(),
                    code_version: version.to_owned(),
                    ..Facts::default()
                },
                prior_from: None,
            },
            old: SiteCmds::new(site, &old_facts),
            release,
            database,
            base,
            current,
        }
    }

    fn drush(&self, m: &Manifest, args: &str) -> String {
        format!(
            "cd {} && {} {args}",
            quote(&self.release),
            quote(&format!("{}/{}", self.release, m.site.drush))
        )
    }

    /// Points `current` at `to`: a new link renamed over it, then read back.
    fn switch_to(&self, run: &str, to: &str) -> String {
        format!(
            "B={b}; ln -sfn {to} \"$B/.current.{run}\" && mv -T \"$B/.current.{run}\" {cur} && readlink {cur}",
            b = quote(&self.base),
            to = quote(to),
            cur = quote(&self.current),
        )
    }
}

impl HostRun<'_> {
    /// What a site an earlier attempt of this run left in maintenance gets when this attempt
    /// cannot go on with it (`why`): interrupted, still down, so that `fleet resume` and the
    /// operator still find it; `None` for a site that is up.
    fn left_down(&self, site: &str, why: &str) -> Option<SiteOutcome> {
        let row = self
            .ctx
            .journal
            .site_row(&self.ctx.run, self.host, site)
            .ok()
            .flatten()?;
        row.in_maintenance.then(|| {
            tracing::warn!(
                host = self.host,
                site,
                "left in maintenance by an earlier attempt: {why}"
            );
            SiteOutcome::Interrupted {
                step: format!(
                    "{} ({why})",
                    row.step.map(|s| s.to_string()).unwrap_or_default()
                ),
                in_maintenance: true,
            }
        })
    }

    /// Releases every QA-passed site of the host the run built.
    pub(crate) async fn release(&self, m: &Manifest, results: &mut BTreeMap<String, SiteOutcome>) {
        let ready = self.built_sites(
            true,
            "its new site has not passed QA in this run (`fleet migrate import RUN`): not released",
            results,
        );
        if ready.is_empty() {
            return;
        }
        // Discovery reads where `current` points; a site switched already (a resumed release)
        // points at its release, which the Drupal 7 checks would refuse: those are read as they
        // stand and go on from the switch.
        let owned: Vec<_> = ready.iter().map(|(s, _, _)| (*s).clone()).collect();
        let Some(facts) = self.discover_migrate(&owned, results).await else {
            return;
        };
        for (s, release, database) in ready {
            if self.ctx.cancel.drain.is_cancelled() {
                results.insert(
                    s.name.clone(),
                    SiteOutcome::NotStarted {
                        reason: "interrupted before this site's release".into(),
                    },
                );
                continue;
            }
            let f = facts.get(&s.name).cloned().unwrap_or_default();
            let switched = !f.releases_real.is_empty()
                && f.current_target == format!("{}/{}", f.releases_real, self.ctx.run);
            // Released by an earlier attempt and judged then: left alone (probing it again
            // could switch a live site back over a passing blip).
            let released = self
                .ctx
                .journal
                .site_row(&self.ctx.run, self.host, &s.name)
                .ok()
                .flatten()
                .is_some_and(|r| r.status == crate::vocab::SiteStatus::Upgraded);
            if switched && released {
                results.insert(
                    s.name.clone(),
                    SiteOutcome::Skipped {
                        reason: "released already: `current` serves its new release".into(),
                    },
                );
                continue;
            }
            if let (Some(e), false) = (&f.error, switched) {
                // A site an earlier attempt left down keeps its row down (and the run
                // interrupted) until a release or a rollback brings it to an end.
                if let Some(down) = self.left_down(&s.name, e) {
                    results.insert(s.name.clone(), down);
                    continue;
                }
                results.insert(
                    s.name.clone(),
                    failed(BuiltinStep::Preflight, e, After::Untouched),
                );
                continue;
            }
            let r = SiteRelease::new(s, &f.site_dir, &f.drupal_version, release, database);
            if let Err(why) = self.lock_group(std::slice::from_ref(&r.w)).await {
                let outcome = self
                    .left_down(&s.name, &why)
                    .unwrap_or_else(|| failed(BuiltinStep::Lock, &why, After::Untouched));
                results.insert(s.name.clone(), outcome);
                continue;
            }
            let outcome = self.release_site(m, &r, switched, &f.current_target).await;
            results.insert(s.name.clone(), outcome);
            self.unlock_group(std::slice::from_ref(&r.w)).await;
        }
    }

    /// `served`: what `current` serves now, resolved (checked by discovery to be the old
    /// site's root when not `switched`).
    async fn release_site(
        &self,
        m: &Manifest,
        r: &SiteRelease<'_>,
        switched: bool,
        served: &str,
    ) -> SiteOutcome {
        let unit = Unit::site(&r.w.site.name);
        // The old site's state before this run took it down: the first record stands (a
        // resumed release finds the `1` this run set).
        let prior = match self.ctx.journal.artifact(
            &self.ctx.run,
            self.host,
            &unit,
            ArtifactKind::PriorMaintenance,
        ) {
            Ok(Some(p)) => p,
            Ok(None) => {
                match self
                    .exec_probed(
                        &unit,
                        BuiltinStep::RecordMaintenance,
                        &r.old.read_maintenance(),
                        "",
                        |out| {
                            let v = out.trim().lines().last().unwrap_or("").trim().to_owned();
                            if ["0", "1", "unset"].contains(&v.as_str()) {
                                Ok(v)
                            } else {
                                Err(format!("maintenance_mode reads `{}`", v.escape_debug()))
                            }
                        },
                    )
                    .await
                {
                    Ok(v) => {
                        if let Err((_, e)) = self.record(
                            BuiltinStep::RecordMaintenance,
                            &unit,
                            ArtifactKind::PriorMaintenance,
                            &v,
                        ) {
                            return fail(BuiltinStep::RecordMaintenance, &e, After::Untouched);
                        }
                        v
                    }
                    Err(e) => return fail(BuiltinStep::RecordMaintenance, &e, After::Untouched),
                }
            }
            Err(e) => {
                return failed(
                    BuiltinStep::RecordMaintenance,
                    &format!("the journal cannot say the old site's maintenance state: {e}"),
                    After::Untouched,
                );
            }
        };
        if !switched {
            match self.forward_to_switch(m, r, served).await {
                Ok(()) => {}
                Err((step, e)) => {
                    let back = self.old_back_up(r, &prior).await;
                    return fail_then(step, &e, back, "the old site is served as before");
                }
            }
        }
        match self.after_switch(m, r).await {
            Ok(()) => SiteOutcome::Released {
                release: r.release.clone(),
                database: r.database.clone(),
            },
            Err((step, e)) => {
                // Back at once: the old release, then the old site out of maintenance.
                let old_root = self
                    .ctx
                    .journal
                    .artifact(&self.ctx.run, self.host, &unit, ArtifactKind::PriorCurrent)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let back = if old_root.is_empty() {
                    Err("the journal has no record of what `current` served before".to_owned())
                } else if let Err((_, e)) = self.mark(&r.w, BuiltinStep::SwitchBack, Some(true)) {
                    // The old site is still in maintenance: the journal must say so first.
                    Err(step_error_text(&e))
                } else {
                    let rel = old_root.clone();
                    match self
                        .exec_probed(
                            &unit,
                            BuiltinStep::SwitchBack,
                            &r.switch_to(&self.ctx.run, &old_root),
                            &old_root,
                            |out| {
                                if out.trim() == rel {
                                    Ok(())
                                } else {
                                    Err("`current` could not be pointed back".to_owned())
                                }
                            },
                        )
                        .await
                    {
                        Ok(()) => self.old_back_up(r, &prior).await,
                        Err(e) => Err(step_error_text(&e)),
                    }
                };
                fail_then(
                    step,
                    &e,
                    back,
                    "switched back: the old site is served as before",
                )
            }
        }
    }

    /// Old site into maintenance, the last import, `current` switched.
    async fn forward_to_switch(&self, m: &Manifest, r: &SiteRelease<'_>, served: &str) -> Step {
        let unit = Unit::site(&r.w.site.name);
        let at = |step: BuiltinStep| move |e: StepError| (step, e);
        self.mark(&r.w, BuiltinStep::MaintenanceOn, Some(true))
            .map_err(|(_, e)| (BuiltinStep::MaintenanceOn, e))?;
        self.exec(
            &unit,
            BuiltinStep::MaintenanceOn,
            &r.old.set_maintenance("1"),
        )
        .await
        .map_err(at(BuiltinStep::MaintenanceOn))?;

        self.mark(&r.w, BuiltinStep::MigrateImport, Some(true))
            .map_err(|(_, e)| (BuiltinStep::MigrateImport, e))?;
        let select = match &m.import.tag {
            Some(t) => format!("--tag={}", quote(t)),
            None => "--all".to_owned(),
        };
        let script = then_probe(
            &r.drush(m, &format!("migrate:import {select} --update")),
            &r.drush(m, "migrate:status --format=json"),
        );
        self.exec_probed(&unit, BuiltinStep::MigrateImport, &script, "delta", |out| {
            if let Some(why) = failure(out) {
                return Err(format!("the last import failed: {why}"));
            }
            let rows = super::import::status_rows(out)?;
            super::import::judge_status(&rows).map(|_| ())
        })
        .await
        .map_err(at(BuiltinStep::MigrateImport))?;

        // CiviCRM has no delta import: its copy is made again now that nothing writes to the
        // old database, and upgraded again.
        self.mark(&r.w, BuiltinStep::CivicrmCheck, Some(true))
            .map_err(|(_, e)| (BuiltinStep::CivicrmCheck, e))?;
        self.civicrm_copy(
            m,
            &super::civicrm::CiviTarget {
                site: r.w.site,
                old_site_dir: &r.w.facts.site_dir,
                release: &r.release,
                new_db: &r.database,
                drush: &m.site.drush,
            },
        )
        .await?;

        self.mark(&r.w, BuiltinStep::Switch, Some(true))
            .map_err(|(_, e)| (BuiltinStep::Switch, e))?;
        // What `current` serves: the old site's root as discovery resolved and checked it
        // (a value the host gave, but one that had to equal the inventory's root).
        let was = served.to_owned();
        if self
            .ctx
            .journal
            .artifact(&self.ctx.run, self.host, &unit, ArtifactKind::PriorCurrent)
            .ok()
            .flatten()
            .is_none()
        {
            self.record(BuiltinStep::Switch, &unit, ArtifactKind::PriorCurrent, &was)
                .map_err(|(_, e)| (BuiltinStep::Switch, e))?;
        }
        let rel = r.release.clone();
        self.exec_probed(
            &unit,
            BuiltinStep::Switch,
            &r.switch_to(&self.ctx.run, &r.release),
            &r.release,
            |out| {
                if out.trim() == rel {
                    Ok(())
                } else {
                    Err("`current` does not point at the release after the switch".into())
                }
            },
        )
        .await
        .map_err(at(BuiltinStep::Switch))
    }

    /// The new site out of maintenance, then the live name over HTTP.
    async fn after_switch(&self, m: &Manifest, r: &SiteRelease<'_>) -> Step {
        let unit = Unit::site(&r.w.site.name);
        let at = |step: BuiltinStep| move |e: StepError| (step, e);
        self.exec(
            &unit,
            BuiltinStep::MaintenanceRestore,
            &r.drush(
                m,
                "state:set system.maintenance_mode 0 --input-format=integer",
            ),
        )
        .await
        .map_err(at(BuiltinStep::MaintenanceRestore))?;
        self.mark(&r.w, BuiltinStep::QaProbe, Some(false))
            .map_err(|(_, e)| (BuiltinStep::QaProbe, e))?;
        self.probe_page(
            &unit,
            m,
            &super::uri_host(&r.w.site.uri),
            m.qa.marker.as_deref(),
        )
        .await
        .map_err(at(BuiltinStep::QaProbe))
    }

    /// The old site's maintenance back to its state before the run.
    async fn old_back_up(&self, r: &SiteRelease<'_>, prior: &str) -> Result<(), String> {
        let unit = Unit::site(&r.w.site.name);
        self.exec(
            &unit,
            BuiltinStep::MaintenanceRestore,
            &r.old.set_maintenance(prior),
        )
        .await
        .map_err(|e| step_error_text(&e))?;
        self.mark(&r.w, BuiltinStep::MaintenanceRestore, Some(false))
            .map_err(|(_, e)| step_error_text(&e))
    }
}

fn fail(step: BuiltinStep, e: &StepError, after: After) -> SiteOutcome {
    failed(step, &step_error_text(e), after)
}

/// A failed release and how the way back went.
fn fail_then(step: BuiltinStep, e: &StepError, back: Result<(), String>, ok: &str) -> SiteOutcome {
    match back {
        Ok(()) => SiteOutcome::Failed {
            step: step.to_string(),
            reason: format!("{}; {ok}", step_error_text(e)),
            after: After::RolledBack,
        },
        Err(why) => SiteOutcome::Failed {
            step: step.to_string(),
            reason: step_error_text(e),
            after: After::RollbackFailed(why),
        },
    }
}

impl HostRun<'_> {
    /// Switches every released site of the host back to its old site: the old root checked
    /// first (a Drupal 7 root, where `current` pointed before the release), the new site into
    /// maintenance (no more writes there), `current` back, the old site's maintenance as it
    /// was before the release, the live name probed (a 200).
    pub(crate) async fn switch_back(
        &self,
        m: &Manifest,
        results: &mut BTreeMap<String, SiteOutcome>,
    ) {
        for s in &self.job.host.sites {
            let unit = Unit::site(&s.name);
            if self
                .site_artifact(&s.name, ArtifactKind::CleanupPlan)
                .is_some()
            {
                results.insert(
                    s.name.clone(),
                    SiteOutcome::Refused {
                        reason: "`fleet migrate cleanup` has removed (or begun removing) the way back; its archives and final dumps are in the site's backup dir".into(),
                    },
                );
                continue;
            }
            let read = |kind| {
                self.ctx
                    .journal
                    .artifact(&self.ctx.run, self.host, &unit, kind)
                    .ok()
                    .flatten()
                    .filter(|v| !v.is_empty())
            };
            let (Some(release), Some(database), Some(old_root), Some(prior)) = (
                read(ArtifactKind::Release),
                read(ArtifactKind::NewDatabase),
                read(ArtifactKind::PriorCurrent),
                read(ArtifactKind::PriorMaintenance),
            ) else {
                results.insert(
                    s.name.clone(),
                    failed(
                        BuiltinStep::SwitchBack,
                        "this run never switched the site: nothing to switch back",
                        After::Untouched,
                    ),
                );
                continue;
            };
            let mut one = BTreeMap::new();
            let Some(mut facts) = self
                .discover_migrate(std::slice::from_ref(s), &mut one)
                .await
            else {
                results.extend(one);
                continue;
            };
            let lock_facts = facts.remove(&s.name).unwrap_or_default();
            let release_real = format!("{}/{}", lock_facts.releases_real, self.ctx.run);
            let already = lock_facts.current_target == old_root;
            if !already && lock_facts.current_target != release_real {
                results.insert(
                    s.name.clone(),
                    SiteOutcome::Refused {
                        reason: format!(
                            "`current` serves `{}`, neither this run's release nor the old site: something else moved it; left alone",
                            lock_facts.current_target.escape_debug()
                        ),
                    },
                );
                continue;
            }
            let r = SiteRelease::new(s, &lock_facts.site_dir, &m.core.version, release, database);
            if let Err(why) = self.lock_group(std::slice::from_ref(&r.w)).await {
                results.insert(
                    s.name.clone(),
                    failed(BuiltinStep::Lock, &why, After::Untouched),
                );
                continue;
            }
            // Back already (an earlier rollback, or a release's switch-back, stopped after
            // the switch): its maintenance still goes back to the state before the release.
            if already {
                // Its row is brought to its end (the maintenance restore marked it).
                let outcome = match self.old_back_up(&r, &prior).await {
                    Ok(()) => SiteOutcome::SwitchedBack {
                        to: old_root.clone(),
                        kept: r.database.clone(),
                    },
                    Err(why) => failed(
                        BuiltinStep::MaintenanceRestore,
                        &why,
                        After::RollbackFailed("the old site may be left in maintenance".into()),
                    ),
                };
                results.insert(s.name.clone(), outcome);
                self.unlock_group(std::slice::from_ref(&r.w)).await;
                continue;
            }
            let outcome = match self.switch_back_site(m, &r, &old_root, &prior).await {
                Ok(()) => SiteOutcome::SwitchedBack {
                    to: old_root.clone(),
                    kept: r.database.clone(),
                },
                Err((step, e)) => SiteOutcome::Failed {
                    step: step.to_string(),
                    reason: step_error_text(&e),
                    after: After::RollbackFailed(
                        "the site may be down: run `fleet migrate rollback` again, or `fleet migrate release` to go forward".into(),
                    ),
                },
            };
            results.insert(s.name.clone(), outcome);
            self.unlock_group(std::slice::from_ref(&r.w)).await;
        }
    }

    async fn switch_back_site(
        &self,
        m: &Manifest,
        r: &SiteRelease<'_>,
        old_root: &str,
        prior: &str,
    ) -> Step {
        let unit = Unit::site(&r.w.site.name);
        let at = |step: BuiltinStep| move |e: StepError| (step, e);
        // The source first: where `current` goes back to must still be a Drupal 7 root.
        self.exec(
            &unit,
            BuiltinStep::VerifyCodeBackup,
            &format!(
                "grep -q \"define('VERSION', '7\\.\" {}/includes/bootstrap.inc || {{ echo 'the old site is no Drupal 7 root any more' >&2; exit 1; }}",
                quote(old_root)
            ),
        )
        .await
        .map_err(at(BuiltinStep::VerifyCodeBackup))?;
        self.mark(&r.w, BuiltinStep::MaintenanceOn, Some(true))
            .map_err(|(_, e)| (BuiltinStep::MaintenanceOn, e))?;
        self.exec(
            &unit,
            BuiltinStep::MaintenanceOn,
            &r.drush(
                m,
                "state:set system.maintenance_mode 1 --input-format=integer",
            ),
        )
        .await
        .map_err(at(BuiltinStep::MaintenanceOn))?;
        let to = old_root.to_owned();
        self.exec_probed(
            &unit,
            BuiltinStep::SwitchBack,
            &r.switch_to(&self.ctx.run, old_root),
            old_root,
            |out| {
                if out.trim() == to {
                    Ok(())
                } else {
                    Err("`current` could not be pointed back".to_owned())
                }
            },
        )
        .await
        .map_err(at(BuiltinStep::SwitchBack))?;
        self.old_back_up(r, prior)
            .await
            .map_err(|why| (BuiltinStep::MaintenanceRestore, StepError::Failed(why)))?;
        // The old page has no new-release marker: any 200 will do.
        self.probe_page(&unit, m, &super::uri_host(&r.w.site.uri), None)
            .await
            .map_err(at(BuiltinStep::QaProbe))
    }
}
