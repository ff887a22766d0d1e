//! One host's part of a run: discovery, classification, locks, the tarball upload, then the
//! procedure for each group of sites that share a codebase or a database, with its undo
//! chain on failure.

use std::collections::BTreeMap;

use fleet_remote_exec::{ExecOptions, RemoteCommand};

use crate::classify::{Classified, group_units, verdict};
use crate::context::{Ctx, HostJob};
use crate::discovery;
use crate::engine::{HostRun, StepError, error_text, failed, finish_site, last_line};
use crate::outcome::{After, SiteOutcome, SiteReport};
use crate::procedure::civicrm::commands::PRELUDE;
use crate::procedure::migrate::Phase;
use crate::procedure::{AnyProcedure, Civicrm};
use crate::vocab::{ArtifactKind, SiteStatus};
use crate::vocab::{BuiltinStep, Unit};
use crate::work::Work;

pub(crate) async fn run_host(ctx: &Ctx, job: &HostJob, batch: usize) -> Vec<SiteReport> {
    let host = &job.host.name;
    let mut results: BTreeMap<String, SiteOutcome> = BTreeMap::new();
    let mut froms: BTreeMap<String, String> = BTreeMap::new();
    let session = match ctx.connect.connect(&job.target, &ctx.cancel.abort).await {
        Ok(s) => Some(s),
        Err(e) => {
            let reason = error_text(&e);
            for s in &job.host.sites {
                results.insert(
                    s.name.clone(),
                    SiteOutcome::Unreachable {
                        reason: reason.clone(),
                    },
                );
            }
            None
        }
    };
    if let Some(session) = session {
        let h = HostRun {
            ctx,
            session: &*session,
            host,
            job,
            prelude: PRELUDE,
        };
        match &ctx.settings.procedure {
            AnyProcedure::Migrate(m, Phase::Build) => h.build(m, &mut results).await,
            AnyProcedure::Migrate(m, Phase::Import) => h.import(m, &mut results).await,
            AnyProcedure::Migrate(m, Phase::Release) => h.release(m, &mut results).await,
            AnyProcedure::Migrate(m, Phase::Rollback) => h.switch_back(m, &mut results).await,
            AnyProcedure::Migrate(m, Phase::Cleanup(c)) => h.cleanup(m, c, &mut results).await,
            AnyProcedure::Civicrm | AnyProcedure::Playbook(_) => {
                h.run(&mut results, &mut froms).await;
            }
        }
        session.close().await;
    }
    job.host
        .sites
        .iter()
        .map(|s| {
            let outcome = results
                .remove(&s.name)
                .unwrap_or_else(|| SiteOutcome::NotStarted {
                    reason: "internal: no outcome".into(),
                });
            if let Err(e) = finish_site(
                ctx,
                host,
                &s.name,
                batch,
                &outcome,
                froms.get(&s.name).map(String::as_str),
            ) {
                tracing::error!("journal: {e}");
            }
            SiteReport {
                host: host.clone(),
                site: s.name.clone(),
                batch,
                outcome,
            }
        })
        .collect()
}

/// What a group gets if the upgrade flow ever met a migrate build (run_host sends those to
/// their own flow): refused, untouched.
fn not_an_upgrade(g: &[Work<'_>]) -> Vec<(String, SiteOutcome)> {
    g.iter()
        .map(|w| {
            (
                w.site.name.clone(),
                failed(
                    BuiltinStep::Preflight,
                    "internal: a migrate build reached the upgrade's steps; nothing done",
                    After::Untouched,
                ),
            )
        })
        .collect()
}

impl HostRun<'_> {
    pub(crate) async fn run(
        &self,
        results: &mut BTreeMap<String, SiteOutcome>,
        froms: &mut BTreeMap<String, String>,
    ) {
        let sites = &self.job.host.sites;
        // Discovery (read-only, one round trip).
        let facts = match self
            .exec(
                &Unit::Host,
                BuiltinStep::Preflight,
                &discovery::discover_script(sites),
            )
            .await
        {
            Ok(out) => discovery::parse_discovery(&out, sites),
            Err(StepError::Aborted) => {
                for s in sites {
                    results.insert(
                        s.name.clone(),
                        SiteOutcome::Interrupted {
                            step: BuiltinStep::Preflight.to_string(),
                            in_maintenance: false,
                        },
                    );
                }
                return;
            }
            Err(StepError::Failed(why)) => {
                for s in sites {
                    results.insert(
                        s.name.clone(),
                        failed(BuiltinStep::Preflight, &why, After::Untouched),
                    );
                }
                return;
            }
        };
        let mut work: Vec<Work<'_>> = Vec::new();
        for site in sites {
            let mut f = facts.get(&site.name).cloned().unwrap_or_default();
            froms.insert(site.name.clone(), f.code_version.clone());
            // A site an earlier held or crashed run left in maintenance was not "in
            // maintenance before": that run's journal knows what it was. So does this run's,
            // when it gets to a site again (`fleet resume`): the first record stands.
            let prior_from = match (f.maintenance.as_str(), f.error.is_none()) {
                ("1", true) => match self.inherited_prior(&site.name) {
                    Ok(Some((run, prior))) => {
                        f.maintenance = prior;
                        (run != self.ctx.run).then_some(run)
                    }
                    Ok(None) => None,
                    Err(why) => {
                        // Not knowing the true prior state, the run would keep the site down
                        // and call that "as before": refuse it instead.
                        results.insert(
                            site.name.clone(),
                            failed(BuiltinStep::Preflight, &why, After::Untouched),
                        );
                        continue;
                    }
                },
                _ => None,
            };
            match verdict(
                &self.ctx.settings.procedure,
                &self.ctx.settings.target,
                &self.ctx.settings.translations,
                site,
                &f,
            ) {
                Classified::Upgrade => work.push(Work {
                    site,
                    facts: f,
                    prior_from,
                }),
                Classified::Skip(reason) => {
                    results.insert(site.name.clone(), SiteOutcome::Skipped { reason });
                }
                Classified::Refuse(reason) => {
                    results.insert(
                        site.name.clone(),
                        failed(BuiltinStep::Preflight, &reason, After::Untouched),
                    );
                }
            }
        }
        // Sites sharing a codebase or a database go through the procedure together.
        let groups = group_units(&work);
        let mut runnable = Vec::new();
        for g in groups {
            let blocked: Vec<String> = sites
                .iter()
                .filter(|s| results.get(&s.name).is_some_and(|o| !o.at_target()))
                .filter(|s| {
                    facts.get(&s.name).is_some_and(|f| {
                        g.iter().any(|w| {
                            w.facts.civicrm_root == f.civicrm_root && !f.civicrm_root.is_empty()
                        })
                    })
                })
                .map(|s| s.name.clone())
                .collect();
            if blocked.is_empty() {
                runnable.push(g);
            } else {
                for w in &g {
                    results.insert(
                        w.site.name.clone(),
                        failed(
                            BuiltinStep::Preflight,
                            &format!(
                                "shares its codebase with site(s) {} that cannot be upgraded",
                                blocked.join(", ")
                            ),
                            After::Untouched,
                        ),
                    );
                }
            }
        }
        if runnable.is_empty() {
            return;
        }
        // Locks, the procedure's checks and the tarball upload, all before any site goes down.
        let mut locked: Vec<Vec<Work<'_>>> = Vec::new();
        for g in runnable {
            match self.lock_group(&g).await {
                Ok(_) => locked.push(g),
                Err(why) => {
                    for w in &g {
                        results.insert(
                            w.site.name.clone(),
                            failed(BuiltinStep::Lock, &why, After::Untouched),
                        );
                    }
                }
            }
        }
        // The procedure's read-only checks, then the upload: a group they stop costs nothing.
        let mut ready = Vec::new();
        for g in locked {
            let stopped = match &self.ctx.settings.procedure {
                AnyProcedure::Civicrm => self.preflight_group(&Civicrm, &g).await,
                AnyProcedure::Playbook(pb) => self.preflight_group(pb, &g).await,
                AnyProcedure::Migrate(..) => Some(not_an_upgrade(&g)),
            };
            match stopped {
                None => ready.push(g),
                Some(outcomes) => {
                    results.extend(outcomes);
                    self.unlock_group(&g).await;
                }
            }
        }
        let locked = ready;
        let tarball = match locked.first() {
            None => return,
            Some(g) => format!(
                "{}/fleet-{}/civicrm-{}-drupal.tar.gz",
                g[0].site.backup_dir, self.ctx.run, self.ctx.settings.target
            ),
        };
        let needs_tarball = self.ctx.settings.procedure.needs_tarball();
        if needs_tarball
            && !locked.is_empty()
            && let Err(why) = self.upload_release(&tarball).await
        {
            for g in &locked {
                for w in g {
                    results.insert(
                        w.site.name.clone(),
                        failed(BuiltinStep::Upload, &why, After::Untouched),
                    );
                }
                self.unlock_group(g).await;
            }
            return;
        }
        for g in &locked {
            let outcomes = match &self.ctx.settings.procedure {
                AnyProcedure::Civicrm => self.run_group(&Civicrm, g, &tarball).await,
                AnyProcedure::Playbook(pb) => self.run_group(pb, g, &tarball).await,
                AnyProcedure::Migrate(..) => not_an_upgrade(g),
            };
            results.extend(outcomes);
            self.unlock_group(g).await;
        }
    }

    /// The run that left `site` in maintenance, and the prior state it recorded: the latest
    /// run whose row still says it holds the site down. Runs that did not change the site
    /// (unreachable, refused at preflight, not started) are looked past; a later run that
    /// changed it and did not leave it down means the `1` is not that run's doing.
    fn inherited_prior(&self, site: &str) -> Result<Option<(String, String)>, String> {
        let unit = Unit::site(site);
        let read = |run: &str| {
            self.ctx
                .journal
                .artifact(run, self.host, &unit, ArtifactKind::PriorMaintenance)
                .map_err(|e| {
                    format!("cannot read the prior maintenance state from the journal: {e}")
                })
        };
        if let Some(prior) = read(&self.ctx.run)? {
            return Ok(Some((self.ctx.run.clone(), prior)));
        }
        let history = self
            .ctx
            .journal
            .site_history(self.host, site)
            .map_err(|e| format!("cannot read the site's history from the journal: {e}"))?;
        for (run, _, row) in history.iter().rev().filter(|(r, _, _)| *r != self.ctx.run) {
            if row.in_maintenance && row.status != SiteStatus::Superseded {
                return Ok(read(run)?.map(|prior| (run.clone(), prior)));
            }
            if row.status.touched() {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Uploads the run's release tarball to `dest` and, with `--l10n`, its localization
    /// tarball next to it. The localization tarball is checked first (on the controller: of
    /// the release's version, and nothing but translations), so a wrong one uploads nothing.
    pub(crate) async fn upload_release(&self, dest: &str) -> Result<(), String> {
        let Some(tarball) = &self.ctx.settings.tarball else {
            return Err("internal: this job has no tarball to upload".into());
        };
        let target = &self.ctx.settings.target;
        if let Some(l10n) = &self.ctx.settings.l10n {
            crate::procedure::civicrm::tarball::check_l10n_once(l10n, target)?;
        }
        self.upload(tarball, dest).await?;
        match &self.ctx.settings.l10n {
            Some(l10n) => {
                let to = crate::procedure::civicrm::l10n_upload_path(dest, target);
                self.upload(l10n, &to).await
            }
            None => Ok(()),
        }
    }

    /// Uploads the local file `local` to `dest`, as a journaled step.
    pub(crate) async fn upload(&self, local: &std::path::Path, dest: &str) -> Result<(), String> {
        let id = self.journal_start(&Unit::Host, &BuiltinStep::Upload.into(), dest);
        if id.is_none() {
            let why = "the journal could not record the upload; not uploading".to_owned();
            self.journal_end(
                None,
                &Unit::Host,
                &BuiltinStep::Upload.into(),
                &Err(why.clone()),
            );
            return Err(why);
        }
        let opts = ExecOptions {
            timeout: self.ctx.settings.step_timeout,
            max_output: 64 * 1024,
        };
        // The run's own directory beside the backups: the operator's alone, as they are.
        let dir_script = format!(
            "umask 077 && mkdir -p \"$(dirname {})\"",
            fleet_remote_exec::quote(dest)
        );
        let r = match self
            .session
            .exec(
                &RemoteCommand::shell(dir_script),
                &opts,
                &self.ctx.cancel.abort,
            )
            .await
        {
            Ok(o) if o.status.success() => {
                // Tagged as every journaled step is (see `engine.rs`), so that what is left
                // of a cut-off upload on the host is told as this run's.
                let tag = format!("{}/{}/{}", self.ctx.run, self.host, id.unwrap_or_default());
                self.session
                    .upload(
                        local,
                        dest,
                        0o600,
                        &[("FLEET_RUN_STEP", &tag)],
                        &opts,
                        &self.ctx.cancel.abort,
                    )
                    .await
            }
            Ok(o) => Ok(o),
            Err(e) => Err(e),
        };
        let result = match r {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "{}: {}",
                o.status,
                last_line(&o.stderr.to_string_lossy())
            )),
            Err(e) => Err(error_text(&e)),
        };
        self.journal_end(id, &Unit::Host, &BuiltinStep::Upload.into(), &result);
        result
    }
}
