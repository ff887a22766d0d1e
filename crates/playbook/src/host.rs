//! One host's part of a run: discovery, locks, the tarball upload, and the procedure for each
//! group of sites that share a codebase or a database, with the undo chain.

use std::collections::{BTreeMap, BTreeSet};

use fleet_inventory::Site;
use fleet_remote_exec::{ExecError, ExecOptions, ExitStatus, RemoteCommand, Session};

use crate::civicrm::{self, CodeCmds, PRELUDE, SiteCmds, version_cmp};
use crate::discovery::{self, Facts};
use crate::event::Event;
use crate::journal::SiteUpdate;
use crate::outcome::{After, SiteOutcome, SiteReport};
use crate::runner::{Ctx, HostJob, OnFailure, UpgradeOptions, finish_site};

/// A site this host will work on, with what discovery found.
#[derive(Clone)]
pub(crate) struct Work<'a> {
    pub(crate) site: &'a Site,
    pub(crate) facts: Facts,
    /// The earlier run that left this site in maintenance and whose journal holds its true
    /// prior state (`facts.maintenance` then is that state, not the live `1`).
    pub(crate) prior_from: Option<String>,
}

pub(crate) async fn run_host(ctx: &Ctx<'_>, job: &HostJob, batch: usize) -> Vec<SiteReport> {
    let host = &job.host.name;
    let mut results: BTreeMap<String, SiteOutcome> = BTreeMap::new();
    let mut froms: BTreeMap<String, String> = BTreeMap::new();
    let session = match ctx.client.connect(&job.target, &ctx.cancel.abort).await {
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
            session: &session,
            host,
            job,
        };
        h.run(&mut results, &mut froms).await;
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

/// Why a step did not succeed.
pub(crate) enum StepError {
    /// The command failed or its verification did not hold.
    Failed(String),
    /// Aborted (second interrupt): remote state unknown.
    Aborted,
}

pub(crate) struct HostRun<'a, 'c> {
    pub(crate) ctx: &'a Ctx<'c>,
    pub(crate) session: &'a Session,
    pub(crate) host: &'a str,
    pub(crate) job: &'a HostJob,
}

/// What a group has changed so far, i.e. what the undo chain must put back.
#[derive(Default)]
pub(crate) struct Changes {
    pub(crate) maintenance_on: BTreeSet<String>,
    pub(crate) modules_disabled: BTreeMap<String, Vec<String>>,
    pub(crate) code_moved: bool,
    pub(crate) db_upgrade_started: BTreeSet<String>,
    /// `undo` commands of completed playbook shell steps: (unit, step, script).
    pub(crate) shell_undo: Vec<(String, String, String)>,
}

impl HostRun<'_, '_> {
    pub(crate) async fn run(
        &self,
        results: &mut BTreeMap<String, SiteOutcome>,
        froms: &mut BTreeMap<String, String>,
    ) {
        let sites = &self.job.host.sites;
        // Discovery (read-only, one round trip).
        let facts = match self
            .exec("host", "preflight", &discovery::discover_script(sites))
            .await
        {
            Ok(out) => discovery::parse_discovery(&out, sites),
            Err(StepError::Aborted) => {
                for s in sites {
                    results.insert(
                        s.name.clone(),
                        SiteOutcome::Interrupted {
                            step: "preflight".into(),
                            in_maintenance: false,
                        },
                    );
                }
                return;
            }
            Err(StepError::Failed(why)) => {
                for s in sites {
                    results.insert(s.name.clone(), failed("preflight", &why, After::Untouched));
                }
                return;
            }
        };
        let mut work: Vec<Work<'_>> = Vec::new();
        for site in sites {
            let mut f = facts.get(&site.name).cloned().unwrap_or_default();
            froms.insert(site.name.clone(), f.code_version.clone());
            // A site an earlier held or crashed run left in maintenance was not "in
            // maintenance before": that run's journal knows what it was.
            let prior_from = match (f.maintenance.as_str(), f.error.is_none()) {
                ("1", true) => self.inherited_prior(&site.name).map(|(run, prior)| {
                    f.maintenance = prior;
                    run
                }),
                _ => None,
            };
            match verdict(self.ctx.opts, site, &f) {
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
                        failed("preflight", &reason, After::Untouched),
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
                            "preflight",
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
        // Locks, then the tarball upload: both before any site goes down.
        let mut locked: Vec<Vec<Work<'_>>> = Vec::new();
        for g in runnable {
            match self.lock_group(&g).await {
                Ok(_) => locked.push(g),
                Err(why) => {
                    for w in &g {
                        results.insert(w.site.name.clone(), failed("lock", &why, After::Untouched));
                    }
                }
            }
        }
        let tarball = match locked.first() {
            None => return,
            Some(g) => format!(
                "{}/fleet-{}/civicrm-{}-drupal.tar.gz",
                g[0].site.backup_dir, self.ctx.run, self.ctx.opts.target
            ),
        };
        let needs_tarball = self
            .ctx
            .opts
            .playbook
            .as_ref()
            .is_none_or(crate::Playbook::needs_tarball);
        if needs_tarball
            && !locked.is_empty()
            && let Err(why) = self.upload(&tarball).await
        {
            for g in &locked {
                for w in g {
                    results.insert(
                        w.site.name.clone(),
                        failed("upload", &why, After::Untouched),
                    );
                }
                self.unlock_group(g).await;
            }
            return;
        }
        for g in &locked {
            let outcomes = self.run_group(g, &tarball).await;
            results.extend(outcomes);
            self.unlock_group(g).await;
        }
    }

    /// The run that left `site` in maintenance, and the prior state it recorded: the latest
    /// run whose row still says it holds the site down. Runs that did not change the site
    /// (unreachable, refused at preflight, not started) are looked past; a later run that
    /// changed it and did not leave it down means the `1` is not that run's doing.
    fn inherited_prior(&self, site: &str) -> Option<(String, String)> {
        let history = match self.ctx.journal.site_history(self.host, site) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("journal: {e}");
                return None;
            }
        };
        for (run, _, row) in history.iter().rev().filter(|(r, _, _)| *r != self.ctx.run) {
            if row.in_maintenance && row.status != "superseded" {
                let prior = self
                    .ctx
                    .journal
                    .artifact(run, self.host, &format!("site:{site}"), "prior-maintenance")
                    .ok()
                    .flatten()?;
                return Some((run.clone(), prior));
            }
            if crate::restore::TOUCHED.contains(&row.status.as_str()) {
                return None;
            }
        }
        None
    }

    /// Records an artifact the way back depends on; a journal that cannot record it stops the
    /// step before its side effect.
    pub(crate) fn record(
        &self,
        step: &str,
        unit: &str,
        kind: &str,
        value: &str,
    ) -> Result<(), (String, StepError)> {
        self.ctx
            .journal
            .set_artifact(&self.ctx.run, self.host, unit, kind, value)
            .map_err(|e| {
                (
                    step.to_owned(),
                    StepError::Failed(format!("the journal could not record the {kind}: {e}")),
                )
            })
    }

    /// Takes the locks of every site of `g`, or none: returns the sites whose lock this call
    /// took (a lock the run held already is not among them, and is never released on the
    /// way out of a failure: it protects what the run left).
    pub(crate) async fn lock_group<'w>(&self, g: &[Work<'w>]) -> Result<Vec<Work<'w>>, String> {
        let owner = format!(
            "run={} controller={} pid={} time={}",
            self.ctx.run,
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
            std::process::id(),
            crate::journal::format_time(crate::journal::unix_now())
        );
        let mut taken = Vec::new();
        let mut taken_over = Vec::new();
        for w in g {
            let dir = lock_dir(w.site, &w.facts);
            let unit = format!("site:{}", w.site.name);
            let mut attempt = self
                .exec(
                    &unit,
                    "lock",
                    &civicrm::lock(&dir, &owner, &self.ctx.run, None),
                )
                .await;
            // A lock left by a run that is over (our journal says so) or named by
            // `--break-lock` is stale: take it over.
            if let Ok(out) = &attempt
                && let Some(holder) = lock_holder(out)
                && self.lock_is_stale(&holder)
            {
                // A dead controller's step may still be running on the host: never work on
                // a site under it.
                if let Err(why) =
                    crate::inflight::settle(self.ctx, self.session, self.host, &holder).await
                {
                    self.unlock_group(&taken).await;
                    return Err(why);
                }
                tracing::warn!(host = self.host, site = %w.site.name, run = %holder, "taking over a stale lock");
                taken_over.push((w.clone(), holder.clone()));
                attempt = self
                    .exec(
                        &unit,
                        "lock",
                        &civicrm::lock(&dir, &owner, &self.ctx.run, Some(&holder)),
                    )
                    .await;
            }
            match attempt {
                Ok(out) if matches!(out.trim(), "locked" | "relocked") => {
                    if out.trim() == "locked" {
                        taken.push(w.clone());
                    }
                    if let Err((_, e)) = self.record("lock", &unit, "lock", &dir) {
                        self.unlock_group(&taken).await;
                        return Err(step_error_text(&e));
                    }
                }
                Ok(out) => {
                    self.unlock_group(&taken).await;
                    return Err(format!(
                        "site `{}` is locked by another run: {}",
                        w.site.name,
                        out.trim().trim_start_matches("held-by ")
                    ));
                }
                Err(StepError::Failed(why)) => {
                    self.unlock_group(&taken).await;
                    return Err(why);
                }
                Err(StepError::Aborted) => return Err("aborted".into()),
            }
        }
        // The dead run no longer owns these sites. One it left in maintenance stays its
        // until this run has recorded the prior state it carries over (`maintenance_on`).
        for (w, holder) in taken_over.iter().filter(|(w, _)| w.prior_from.is_none()) {
            self.supersede(holder, w)
                .map_err(|(_, e)| step_error_text(&e))?;
        }
        Ok(taken)
    }

    /// Marks `earlier`'s row of the site as taken over by this run, so that `fleet recover`
    /// and `fleet resume` of that run leave it alone.
    fn supersede(&self, earlier: &str, w: &Work<'_>) -> Result<(), (String, StepError)> {
        // A lock of a run this journal never knew (another controller's, `--break-lock`)
        // has no row here to update.
        if !matches!(self.ctx.journal.run(earlier), Ok(Some(_))) {
            return Ok(());
        }
        let detail = format!(
            "taken over by run {} (prior maintenance state `{}` carried over)",
            self.ctx.run, w.facts.maintenance
        );
        self.ctx
            .journal
            .site(
                earlier,
                self.host,
                &w.site.name,
                &SiteUpdate {
                    status: Some("superseded"),
                    in_maintenance: Some(false),
                    detail: Some(&detail),
                    ..Default::default()
                },
            )
            .map_err(|e| {
                (
                    "record-maintenance".to_owned(),
                    StepError::Failed(format!("journal: {e}")),
                )
            })
    }

    /// Whether the run holding a lock is over: named by `--break-lock`, or in this journal
    /// and no longer running (or running with no live controller on this machine).
    fn lock_is_stale(&self, holder: &str) -> bool {
        if self.ctx.opts.break_lock.as_deref() == Some(holder) {
            return true;
        }
        match self.ctx.journal.run(holder) {
            Ok(Some(r)) if r.state != "running" => true,
            Ok(Some(r)) => {
                let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                me.trim() == r.controller
                    && !std::path::Path::new(&format!("/proc/{}", r.pid)).exists()
            }
            _ => false,
        }
    }

    pub(crate) async fn unlock_group(&self, g: &[Work<'_>]) {
        for w in g {
            let dir = lock_dir(w.site, &w.facts);
            let _ = self
                .exec(
                    &format!("site:{}", w.site.name),
                    "unlock",
                    &civicrm::unlock(&dir, &self.ctx.run),
                )
                .await;
        }
    }

    pub(crate) async fn upload(&self, dest: &str) -> Result<(), String> {
        let id = self.journal_start("host", "upload", dest);
        let opts = ExecOptions {
            timeout: self.ctx.opts.step_timeout,
            max_output: 64 * 1024,
        };
        let dir_script = format!("mkdir -p \"$(dirname {})\"", fleet_remote_exec::quote(dest));
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
                self.session
                    .upload(
                        &self.ctx.opts.tarball,
                        dest,
                        0o600,
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
        self.journal_end(id, "host", "upload", &result);
        result
    }

    /// The procedure for one group of sites; on failure, the undo chain.
    pub(crate) async fn run_group(
        &self,
        g: &[Work<'_>],
        tarball: &str,
    ) -> Vec<(String, SiteOutcome)> {
        let mut ch = Changes::default();
        let result = match &self.ctx.opts.playbook {
            None => self.forward(g, tarball, &mut ch).await,
            Some(pb) => self.forward_playbook(g, pb, tarball, &mut ch).await,
        };
        let target = &self.ctx.opts.target;
        match result {
            Ok(()) => g
                .iter()
                .map(|w| {
                    let outcome = match &self.ctx.opts.playbook {
                        Some(pb) if !pb.needs_tarball() => SiteOutcome::Completed {
                            playbook: pb.name.clone(),
                        },
                        _ => SiteOutcome::Upgraded {
                            from: w.facts.code_version.clone(),
                            to: target.clone(),
                            in_maintenance: w.facts.maintenance == "1",
                        },
                    };
                    (w.site.name.clone(), outcome)
                })
                .collect(),
            Err((step, StepError::Aborted)) => g
                .iter()
                .map(|w| {
                    (
                        w.site.name.clone(),
                        SiteOutcome::Interrupted {
                            step: step.clone(),
                            in_maintenance: ch.maintenance_on.contains(&w.site.name),
                        },
                    )
                })
                .collect(),
            Err((step, StepError::Failed(reason))) => {
                let after = if ch.maintenance_on.is_empty() && !ch.code_moved {
                    self.put_back(g, &mut ch)
                        .await
                        .map_or_else(After::RollbackFailed, |()| After::Untouched)
                } else {
                    match self.put_back(g, &mut ch).await {
                        Ok(()) if self.ctx.opts.on_failure == OnFailure::Hold => After::Held,
                        Ok(()) => After::RolledBack,
                        Err(why) => After::RollbackFailed(why),
                    }
                };
                g.iter()
                    .map(|w| (w.site.name.clone(), failed(&step, &reason, after.clone())))
                    .collect()
            }
        }
    }

    pub(crate) async fn forward(
        &self,
        g: &[Work<'_>],
        tarball: &str,
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let run_dir = self.run_dir(g);
        let code = self.code_cmds(g);
        self.maintenance_on(g, ch).await?;
        self.disable_modules(g, ch).await?;
        self.checkpoint(ch, "backup-db")?;
        self.backup(g, &run_dir).await?;
        self.checkpoint(ch, "move-code-out")?;
        self.code_swap(g, &code, tarball, ch).await?;
        // The point of no easy return: from here a drain goes forward, not back.
        self.checkpoint(ch, "upgrade-db")?;
        self.upgrade_dbs(g, &code, ch).await?;
        self.finish(g, ch).await
    }

    /// A user's playbook: its steps in order, then maintenance back to the prior state.
    pub(crate) async fn forward_playbook(
        &self,
        g: &[Work<'_>],
        pb: &crate::Playbook,
        tarball: &str,
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        use crate::placeholder::render;
        use crate::playbook::StepKind;
        let run_dir = self.run_dir(g);
        let code = self.code_cmds(g);
        for step in &pb.steps {
            self.checkpoint(ch, &step.name)?;
            match &step.kind {
                StepKind::Maintenance => self.maintenance_on(g, ch).await?,
                StepKind::Backup => self.backup(g, &run_dir).await?,
                StepKind::CodeSwap => self.code_swap(g, &code, tarball, ch).await?,
                StepKind::Verify => self.verify(g).await?,
                StepKind::Shell(sh) => {
                    let targets: Vec<&Work<'_>> = if sh.per_host {
                        g.iter().take(1).collect()
                    } else {
                        g.iter().collect()
                    };
                    for w in targets {
                        let value = |k: &str| -> String {
                            match k {
                                "root" => w.site.root.clone(),
                                "uri" => w.site.uri.clone(),
                                "site" => w.site.name.clone(),
                                "host" => self.host.to_owned(),
                                "web_user" => w.facts.web_user.clone(),
                                "backup_dir" => w.site.backup_dir.clone(),
                                "run_dir" => run_dir.clone(),
                                "drush" => w.site.drush.clone(),
                                "cv" => w.site.cv.clone(),
                                "civicrm_root" => w.facts.civicrm_root.clone(),
                                "civi_db" => w.facts.civi_db.clone(),
                                _ => self.ctx.opts.target.clone(),
                            }
                        };
                        // A value that cannot be placed safely fails the step before it runs.
                        let wrap = |t: &str| -> Result<String, (String, StepError)> {
                            let body = render(t, value)
                                .map_err(|e| (step.name.clone(), StepError::Failed(e)))?;
                            Ok(if sh.as_web_user {
                                format!(
                                    "as_web {} /bin/sh -c {}",
                                    fleet_remote_exec::quote(&w.facts.web_user),
                                    fleet_remote_exec::quote(&body)
                                )
                            } else {
                                body
                            })
                        };
                        let unit = if sh.per_host {
                            "host".to_owned()
                        } else {
                            format!("site:{}", w.site.name)
                        };
                        // All three rendered first: a step whose undo cannot be written must
                        // not run.
                        let run_cmd = wrap(&sh.run)?;
                        let verify_cmd = sh.verify.as_deref().map(wrap).transpose()?;
                        let undo_cmd = sh.undo.as_deref().map(wrap).transpose()?;
                        if sh.touches_db && !w.facts.civi_db.is_empty() {
                            ch.db_upgrade_started.insert(w.facts.civi_db.clone());
                        }
                        self.mark(w, &step.name, "running", None);
                        self.exec(&unit, &step.name, &run_cmd)
                            .await
                            .map_err(|e| (step.name.clone(), e))?;
                        if let Some(v) = &verify_cmd {
                            self.exec(&unit, &format!("{}-verify", step.name), v)
                                .await
                                .map_err(|e| (step.name.clone(), e))?;
                        }
                        if let Some(u) = undo_cmd {
                            ch.shell_undo.push((unit, format!("{}-undo", step.name), u));
                        }
                    }
                }
            }
        }
        if !ch.maintenance_on.is_empty() {
            self.maintenance_restore(g, ch).await?;
        }
        Ok(())
    }

    pub(crate) fn run_dir(&self, g: &[Work<'_>]) -> String {
        format!("{}/fleet-{}", g[0].site.backup_dir, self.ctx.run)
    }

    pub(crate) fn code_cmds(&self, g: &[Work<'_>]) -> CodeCmds {
        CodeCmds::new(
            &g[0].facts.civicrm_root,
            &format!("{}/code/civicrm", self.run_dir(g)),
        )
    }

    /// Records each site's prior maintenance state, then turns maintenance on.
    pub(crate) async fn maintenance_on(
        &self,
        g: &[Work<'_>],
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        for w in g {
            let unit = format!("site:{}", w.site.name);
            self.mark(w, "record-maintenance", "running", None);
            self.record(
                "record-maintenance",
                &unit,
                "prior-maintenance",
                &w.facts.maintenance,
            )?;
            if let Some(earlier) = &w.prior_from {
                // This run now owns the site's way back to its prior state: it says the site
                // is down (it is), then the earlier run stops offering to recover it.
                ch.maintenance_on.insert(w.site.name.clone());
                self.mark(w, "record-maintenance", "running", Some(true));
                self.supersede(earlier, w)?;
            }
        }
        self.checkpoint(ch, "maintenance-on")?;
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            let unit = format!("site:{}", w.site.name);
            // Recorded as on before the command: if we die mid-way, recovery turns it off.
            ch.maintenance_on.insert(w.site.name.clone());
            self.mark(w, "maintenance-on", "running", Some(true));
            let out = self
                .exec(
                    &unit,
                    "maintenance-on",
                    &format!("{} && {}", c.set_maintenance("1"), c.read_maintenance()),
                )
                .await
                .map_err(|e| (step("maintenance-on"), e))?;
            expect(&out, "1", "maintenance_mode").map_err(|e| (step("maintenance-on"), e))?;
        }
        Ok(())
    }

    /// Disables the listed integration modules that are enabled, recording them.
    pub(crate) async fn disable_modules(
        &self,
        g: &[Work<'_>],
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        for w in g.iter().filter(|w| !w.facts.enabled_modules.is_empty()) {
            let c = SiteCmds::new(w.site, &w.facts);
            let unit = format!("site:{}", w.site.name);
            let mods = w.facts.enabled_modules.clone();
            self.record(
                "disable-modules",
                &unit,
                "disabled-modules",
                &mods.join(" "),
            )?;
            ch.modules_disabled
                .insert(w.site.name.clone(), mods.clone());
            self.mark(w, "disable-modules", "running", None);
            let out = self
                .exec(
                    &unit,
                    "disable-modules",
                    &format!("{} && {}", c.disable_modules(&mods), c.enabled_modules()),
                )
                .await
                .map_err(|e| (step("disable-modules"), e))?;
            if let Some(m) = mods
                .iter()
                .find(|m| out.lines().any(|l| l.trim() == m.as_str()))
            {
                return Err((
                    step("disable-modules"),
                    StepError::Failed(format!("module `{m}` is still enabled")),
                ));
            }
        }
        Ok(())
    }

    /// Dumps every database of the group (CiviCRM and Drupal) and checks the dumps.
    pub(crate) async fn backup(
        &self,
        g: &[Work<'_>],
        run_dir: &str,
    ) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        let mut dumped: BTreeSet<String> = BTreeSet::new();
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            for (db, is_civi) in [(&w.facts.civi_db, true), (&w.facts.cms_db, false)] {
                if db.is_empty() || !dumped.insert(db.clone()) {
                    continue;
                }
                let file = format!("{run_dir}/db/{db}.sql");
                let unit = format!("database:{db}");
                for s in g {
                    self.mark(s, "backup-db", "running", None);
                }
                let script = if is_civi {
                    c.dump_civi(&file, db)
                } else {
                    c.dump_cms(&file, db)
                };
                let sha = self
                    .exec(&unit, "backup-db", &script)
                    .await
                    .map_err(|e| (step("backup-db"), e))?;
                self.record(
                    "backup-db",
                    &unit,
                    "db-dump",
                    &format!("{file} sha256:{}", sha.trim()),
                )?;
            }
        }
        Ok(())
    }

    /// Moves the old code out, unpacks the new code, fixes the files dirs' ownership.
    pub(crate) async fn code_swap(
        &self,
        g: &[Work<'_>],
        code: &CodeCmds,
        tarball: &str,
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let run = &self.ctx.run;
        let step = |name: &str| name.to_owned();
        let target = &self.ctx.opts.target;
        let first = &g[0];
        let code_unit = format!("codebase:{}", first.facts.civicrm_root);
        let run_dir = self.run_dir(g);
        self.record(
            "move-code-out",
            &code_unit,
            "code-backup",
            &format!("{run_dir}/code/civicrm"),
        )?;
        for w in g {
            self.mark(w, "move-code-out", "running", None);
        }
        ch.code_moved = true;
        let old = self
            .exec(&code_unit, "move-code-out", &code.move_out())
            .await
            .map_err(|e| (step("move-code-out"), e))?;
        expect(&old, &first.facts.code_version, "moved code version")
            .map_err(|e| (step("move-code-out"), e))?;
        for w in g {
            self.mark(w, "unpack", "running", None);
        }
        let new = self
            .exec(&code_unit, "unpack", &code.unpack(tarball, run))
            .await
            .map_err(|e| (step("unpack"), e))?;
        expect(&new, target, "unpacked code version (xml/version.xml)")
            .map_err(|e| (step("unpack"), e))?;
        for w in g {
            let unit = format!("site:{}", w.site.name);
            self.mark(w, "fix-permissions", "running", None);
            let files = format!("{}/files", w.facts.site_dir);
            let owner = self
                .exec(
                    &unit,
                    "fix-permissions",
                    &civicrm::fix_permissions(&files, &w.facts.web_user),
                )
                .await
                .map_err(|e| (step("fix-permissions"), e))?;
            expect(&owner, &w.facts.web_user, "owner of the files dir")
                .map_err(|e| (step("fix-permissions"), e))?;
        }
        Ok(())
    }

    /// Runs the DB upgrade once per database and re-reads the versions.
    pub(crate) async fn upgrade_dbs(
        &self,
        g: &[Work<'_>],
        code: &CodeCmds,
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        let target = &self.ctx.opts.target;
        let mut upgraded: BTreeSet<String> = BTreeSet::new();
        for w in g {
            let db = &w.facts.civi_db;
            if !upgraded.insert(db.clone()) {
                continue;
            }
            let unit = format!("database:{db}");
            let c = SiteCmds::new(w.site, &w.facts);
            let (cmd, tool) = c.upgrade_db();
            ch.db_upgrade_started.insert(db.clone());
            for s in g.iter().filter(|s| &s.facts.civi_db == db) {
                self.mark(s, "upgrade-db", "running", None);
            }
            // Exit codes lie here (cv exits 0 in "ext" mode): the probe decides.
            let script = format!(
                "{cmd}; rc=$?; echo \"rc=$rc\"; echo \"db=$({})\"; echo \"code=$({})\"",
                c.db_version(),
                code.version()
            );
            let out = self
                .exec_allow_fail(&unit, "upgrade-db", &script, tool)
                .await
                .map_err(|e| (step("upgrade-db"), e))?;
            let get = |k: &str| {
                out.lines()
                    .rev()
                    .find_map(|l| l.strip_prefix(&format!("{k}=")))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            };
            let (rc, dbv, codev) = (get("rc"), get("db"), get("code"));
            if dbv.ends_with(".upgrade") {
                return Err((
                    step("upgrade-db"),
                    StepError::Failed(format!(
                        "{tool} left the database partially upgraded (`{dbv}`)"
                    )),
                ));
            }
            if dbv != *target || codev != *target {
                return Err((
                    step("upgrade-db"),
                    StepError::Failed(format!(
                        "after {tool} (exit {rc}) the database is at `{dbv}` and the code at `{codev}`, not `{target}`"
                    )),
                ));
            }
            if rc != "0" {
                // Core reached the target but a later phase (extensions) failed.
                return Err((
                    step("upgrade-db"),
                    StepError::Failed(format!(
                        "{tool} exited {rc} after reaching `{target}` (extension upgrades failed?)"
                    )),
                ));
            }
        }
        Ok(())
    }

    /// The tail of the procedure once the databases are at the target: caches, modules,
    /// maintenance back to its prior value, verification.
    pub(crate) async fn finish(
        &self,
        g: &[Work<'_>],
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        self.flush(g).await?;
        self.enable_modules(g, ch).await?;
        self.maintenance_restore(g, ch).await?;
        self.verify(g).await
    }

    pub(crate) async fn flush(&self, g: &[Work<'_>]) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            self.mark(w, "flush", "running", None);
            self.exec(&format!("site:{}", w.site.name), "flush", &c.flush())
                .await
                .map_err(|e| (step("flush"), e))?;
        }
        Ok(())
    }

    pub(crate) async fn enable_modules(
        &self,
        g: &[Work<'_>],
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        let with_disabled: Vec<&Work<'_>> = g
            .iter()
            .filter(|w| ch.modules_disabled.contains_key(&w.site.name))
            .collect();
        for w in with_disabled {
            let c = SiteCmds::new(w.site, &w.facts);
            let mods = ch.modules_disabled[&w.site.name].clone();
            self.mark(w, "enable-modules", "running", None);
            let out = self
                .exec(
                    &format!("site:{}", w.site.name),
                    "enable-modules",
                    &format!("{} && {}", c.enable_modules(&mods), c.enabled_modules()),
                )
                .await
                .map_err(|e| (step("enable-modules"), e))?;
            if let Some(m) = mods
                .iter()
                .find(|m| !out.lines().any(|l| l.trim() == m.as_str()))
            {
                return Err((
                    step("enable-modules"),
                    StepError::Failed(format!("module `{m}` did not come back")),
                ));
            }
            ch.modules_disabled.remove(&w.site.name);
        }
        Ok(())
    }

    pub(crate) async fn maintenance_restore(
        &self,
        g: &[Work<'_>],
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            let prior = &w.facts.maintenance;
            self.mark(w, "maintenance-restore", "running", None);
            let out = self
                .exec(
                    &format!("site:{}", w.site.name),
                    "maintenance-restore",
                    &format!("{} && {}", c.set_maintenance(prior), c.read_maintenance()),
                )
                .await
                .map_err(|e| (step("maintenance-restore"), e))?;
            expect(&out, prior, "maintenance_mode")
                .map_err(|e| (step("maintenance-restore"), e))?;
            ch.maintenance_on.remove(&w.site.name);
            self.mark(w, "maintenance-restore", "running", Some(false));
        }
        Ok(())
    }

    pub(crate) async fn verify(&self, g: &[Work<'_>]) -> Result<(), (String, StepError)> {
        let step = |name: &str| name.to_owned();
        let target = &self.ctx.opts.target;
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            self.mark(w, "verify", "running", None);
            let out = self
                .exec(&format!("site:{}", w.site.name), "verify", &c.status())
                .await
                .map_err(|e| (step("verify"), e))?;
            if !out.contains(target.as_str())
                || out.contains("pending upgrade")
                || out.contains("futuristic")
            {
                return Err((
                    step("verify"),
                    StepError::Failed(format!(
                        "status does not show `{target}` cleanly: {}",
                        last_line(&out)
                    )),
                ));
            }
        }
        Ok(())
    }

    /// Between steps: a first interrupt turns a group that has not reached the DB upgrade back.
    pub(crate) fn checkpoint(&self, ch: &Changes, next: &str) -> Result<(), (String, StepError)> {
        if self.ctx.cancel.abort.is_cancelled() {
            return Err((next.to_owned(), StepError::Aborted));
        }
        if self.ctx.cancel.drain.is_cancelled() && ch.db_upgrade_started.is_empty() {
            return Err((
                next.to_owned(),
                StepError::Failed("interrupted by the operator before the database upgrade".into()),
            ));
        }
        Ok(())
    }

    /// The undo chain: old code back, databases restored from this run's dumps, caches
    /// emptied, modules re-enabled, maintenance back to its prior value (unless holding).
    pub(crate) async fn put_back(&self, g: &[Work<'_>], ch: &mut Changes) -> Result<(), String> {
        let run = &self.ctx.run;
        let first = &g[0];
        let run_dir = format!("{}/fleet-{run}", first.site.backup_dir);
        let codebase = &first.facts.civicrm_root;
        let code = CodeCmds::new(codebase, &format!("{run_dir}/code/civicrm"));
        let mut problems = Vec::new();
        while let Some((unit, step, script)) = ch.shell_undo.pop() {
            if let Err(e) = self.exec(&unit, &step, &script).await {
                problems.push(format!("{step}: {}", step_error_text(&e)));
            }
        }
        if ch.code_moved {
            match self
                .exec(
                    &format!("codebase:{codebase}"),
                    "restore-code",
                    &code.restore(run),
                )
                .await
            {
                Ok(v) if v.trim() == first.facts.code_version => ch.code_moved = false,
                Ok(v) => problems.push(format!(
                    "restored code is at `{}`, expected `{}`",
                    v.trim(),
                    first.facts.code_version
                )),
                Err(e) => problems.push(format!("restore-code: {}", step_error_text(&e))),
            }
        }
        for db in ch.db_upgrade_started.clone() {
            let Some(w) = g.iter().find(|w| w.facts.civi_db == db) else {
                continue;
            };
            let c = SiteCmds::new(w.site, &w.facts);
            let Some((file, sha)) = self.recorded_dump(&db) else {
                // No verified source, no restore: the database stays as it is.
                problems.push(format!(
                    "no dump of database `{db}` is recorded in this run's journal; not restoring it"
                ));
                continue;
            };
            let script = format!("{} && {}", c.restore_civi(&file, &db, &sha), c.db_version());
            match self
                .exec(&format!("database:{db}"), "restore-db", &script)
                .await
            {
                Ok(v) if v.trim() == w.facts.db_version => {
                    ch.db_upgrade_started.remove(&db);
                }
                Ok(v) => problems.push(format!(
                    "restored database `{db}` is at `{}`, expected `{}`",
                    v.trim(),
                    w.facts.db_version
                )),
                Err(e) => problems.push(format!("restore-db `{db}`: {}", step_error_text(&e))),
            }
        }
        for w in g {
            if !w.facts.templates_c.is_empty() {
                let _ = self
                    .exec(
                        &format!("site:{}", w.site.name),
                        "clear-templates",
                        &civicrm::empty_dir(&w.facts.templates_c),
                    )
                    .await;
            }
        }
        for (site, mods) in ch.modules_disabled.clone() {
            let Some(w) = g.iter().find(|w| w.site.name == site) else {
                continue;
            };
            let c = SiteCmds::new(w.site, &w.facts);
            match self
                .exec(
                    &format!("site:{site}"),
                    "enable-modules",
                    &c.enable_modules(&mods),
                )
                .await
            {
                Ok(_) => {
                    ch.modules_disabled.remove(&site);
                }
                Err(e) => problems.push(format!(
                    "re-enable modules on `{site}`: {}",
                    step_error_text(&e)
                )),
            }
        }
        if !problems.is_empty() {
            // Never bring a site back up on top of a half-restored codebase or database.
            return Err(problems.join("; "));
        }
        if self.ctx.opts.on_failure == OnFailure::Hold {
            return Ok(());
        }
        let down: Vec<&Work<'_>> = g
            .iter()
            .filter(|w| ch.maintenance_on.contains(&w.site.name))
            .collect();
        for w in down {
            let c = SiteCmds::new(w.site, &w.facts);
            let prior = &w.facts.maintenance;
            match self
                .exec(
                    &format!("site:{}", w.site.name),
                    "maintenance-restore",
                    &format!("{} && {}", c.set_maintenance(prior), c.read_maintenance()),
                )
                .await
            {
                Ok(v) if v.trim() == prior => {
                    ch.maintenance_on.remove(&w.site.name);
                    self.mark(w, "maintenance-restore", "running", Some(false));
                }
                Ok(v) => problems.push(format!(
                    "maintenance_mode of `{}` is `{}`, expected `{prior}`",
                    w.site.name,
                    v.trim()
                )),
                Err(e) => problems.push(format!(
                    "maintenance-restore `{}`: {}",
                    w.site.name,
                    step_error_text(&e)
                )),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The dump of `db` this run recorded: its path and SHA-256.
    pub(crate) fn recorded_dump(&self, db: &str) -> Option<(String, String)> {
        let v = self
            .ctx
            .journal
            .artifact(
                &self.ctx.run,
                self.host,
                &format!("database:{db}"),
                "db-dump",
            )
            .ok()
            .flatten()?;
        let (file, sha) = v.rsplit_once(" sha256:")?;
        Some((file.to_owned(), sha.to_owned()))
    }

    pub(crate) fn mark(
        &self,
        w: &Work<'_>,
        step: &str,
        status: &str,
        in_maintenance: Option<bool>,
    ) {
        if let Err(e) = self.ctx.journal.site(
            &self.ctx.run,
            self.host,
            &w.site.name,
            &SiteUpdate {
                status: Some(status),
                step: Some(step),
                from_version: Some(&w.facts.code_version),
                in_maintenance,
                ..Default::default()
            },
        ) {
            tracing::error!("journal: {e}");
        }
    }

    pub(crate) fn journal_start(&self, unit: &str, step: &str, detail: &str) -> Option<i64> {
        self.ctx.reporter.on_event(&Event::StepStarted {
            host: self.host.into(),
            unit: unit.into(),
            step: step.into(),
        });
        match self
            .ctx
            .journal
            .step_start(&self.ctx.run, self.host, unit, step, detail)
        {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!("journal: {e}");
                None
            }
        }
    }

    pub(crate) fn journal_end(
        &self,
        id: Option<i64>,
        unit: &str,
        step: &str,
        result: &Result<(), String>,
    ) {
        let (state, detail) = match result {
            Ok(()) => ("done", String::new()),
            Err(why) => ("failed", why.clone()),
        };
        if let Some(id) = id {
            let _ = self.ctx.journal.step_end(id, state, &detail);
        }
        self.ctx.reporter.on_event(&Event::StepFinished {
            host: self.host.into(),
            unit: unit.into(),
            step: step.into(),
            ok: result.is_ok(),
            detail,
        });
    }

    /// Runs one journaled step; success means exit 0. Returns stdout.
    pub(crate) async fn exec(
        &self,
        unit: &str,
        step: &str,
        script: &str,
    ) -> Result<String, StepError> {
        self.exec_inner(unit, step, script, "", false).await
    }

    /// Runs one journaled step whose exit status the caller judges (it probes state itself).
    pub(crate) async fn exec_allow_fail(
        &self,
        unit: &str,
        step: &str,
        script: &str,
        detail: &str,
    ) -> Result<String, StepError> {
        self.exec_inner(unit, step, script, detail, true).await
    }

    pub(crate) async fn exec_inner(
        &self,
        unit: &str,
        step: &str,
        script: &str,
        detail: &str,
        allow_fail: bool,
    ) -> Result<String, StepError> {
        let id = self.journal_start(unit, step, detail);
        if id.is_none() {
            // Guarantee 1: nothing happens that the journal does not know about first.
            let r = Err("the journal could not record this step; not running it".to_owned());
            self.journal_end(None, unit, step, &r);
            return Err(StepError::Failed(
                "the journal could not record this step".into(),
            ));
        }
        let opts = ExecOptions {
            timeout: self.ctx.opts.step_timeout,
            max_output: 256 * 1024,
        };
        // Tags the step's processes on the host so that `fleet recover` can tell whether a
        // step of a crashed run is still running there before it undoes anything.
        let cmd = RemoteCommand::shell(format!(
            "export FLEET_RUN_STEP={}; {PRELUDE}{script}",
            fleet_remote_exec::quote(&format!(
                "{}/{}/{}",
                self.ctx.run,
                self.host,
                id.unwrap_or_default()
            ))
        ));
        let r = self.session.exec(&cmd, &opts, &self.ctx.cancel.abort).await;
        let (result, ret) = match r {
            Ok(o) => match &o.status {
                ExitStatus::Cancelled { .. } => (
                    Err("aborted by the operator".to_owned()),
                    Err(StepError::Aborted),
                ),
                ExitStatus::TimedOut { killed } => {
                    let why = format!(
                        "timed out after {:?} ({})",
                        self.ctx.opts.step_timeout,
                        if *killed {
                            "remote process killed"
                        } else {
                            "remote process may still run"
                        }
                    );
                    (Err(why.clone()), Err(StepError::Failed(why)))
                }
                s if s.success() || allow_fail => (Ok(()), Ok(o.stdout.to_string_lossy())),
                s => {
                    let why = format!(
                        "{s}: {}",
                        last_line(&o.stderr.to_string_lossy())
                            .if_empty(&last_line(&o.stdout.to_string_lossy()))
                    );
                    (Err(why.clone()), Err(StepError::Failed(why)))
                }
            },
            Err(e) => {
                let why = error_text(&e);
                (Err(why.clone()), Err(StepError::Failed(why)))
            }
        };
        self.journal_end(id, unit, step, &result);
        ret
    }
}

pub(crate) trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_owned()
        } else {
            self
        }
    }
}

pub(crate) enum Classified {
    Upgrade,
    Skip(String),
    Refuse(String),
}

/// What a run does with a site: the built-in procedure and playbooks that install the
/// tarball compare versions; other playbooks run on every site discovery could read.
pub(crate) fn verdict(opts: &UpgradeOptions, site: &Site, f: &Facts) -> Classified {
    match &opts.playbook {
        Some(pb) if !pb.needs_tarball() => match &f.error {
            Some(e) => Classified::Refuse(e.clone()),
            None => Classified::Upgrade,
        },
        _ => classify(site, f, &opts.target),
    }
}

pub(crate) fn classify(site: &Site, f: &Facts, target: &str) -> Classified {
    use std::cmp::Ordering;
    if let Some(e) = &f.error {
        return Classified::Refuse(e.clone());
    }
    if f.code_version.is_empty() {
        return Classified::Refuse(format!(
            "no CiviCRM code version at `{}/xml/version.xml`",
            f.civicrm_root
        ));
    }
    if f.db_version.is_empty() {
        return Classified::Refuse("cannot read the CiviCRM database version".into());
    }
    if f.db_version.ends_with(".upgrade") {
        return Classified::Refuse(format!(
            "the database is partially upgraded (`{}`): restore it first",
            f.db_version
        ));
    }
    if f.db_version != f.code_version {
        return Classified::Refuse(format!(
            "code `{}` and database `{}` differ: finish or undo that first",
            f.code_version, f.db_version
        ));
    }
    if f.web_user.is_empty() {
        return Classified::Refuse("cannot tell the web-server user (set `web_user`)".into());
    }
    match version_cmp(target, &f.code_version) {
        Ordering::Equal => return Classified::Skip(format!("already at {target}")),
        Ordering::Less => {
            return Classified::Refuse(format!(
                "refusing to downgrade {} to {target}",
                f.code_version
            ));
        }
        Ordering::Greater => {}
    }
    if !f.code_parent_writable {
        return Classified::Refuse(format!(
            "cannot write next to the code dir `{}`",
            f.civicrm_root
        ));
    }
    let need = f.code_kb + 50 * 1024;
    if f.free_kb < need {
        return Classified::Refuse(format!(
            "only {} MiB free for backups in `{}`, need {} MiB",
            f.free_kb / 1024,
            site.backup_dir,
            need / 1024
        ));
    }
    Classified::Upgrade
}

/// Groups sites that share a codebase (`$civicrm_root`) or a CiviCRM database.
pub(crate) fn group_units<'a>(work: &[Work<'a>]) -> Vec<Vec<Work<'a>>> {
    let n = work.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while p[r] != r {
            r = p[r];
        }
        p[i] = r;
        r
    }
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&work[i].facts, &work[j].facts);
            if a.civicrm_root == b.civicrm_root || (!a.civi_db.is_empty() && a.civi_db == b.civi_db)
            {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                parent[rj] = ri;
            }
        }
    }
    let mut groups: Vec<(usize, Vec<Work<'a>>)> = Vec::new();
    for (i, w) in work.iter().enumerate() {
        let r = find(&mut parent, i);
        match groups.iter_mut().find(|(root, _)| *root == r) {
            Some((_, g)) => g.push(w.clone()),
            None => groups.push((r, vec![w.clone()])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// The run id in a `held-by run=ID controller=...` answer.
fn lock_holder(out: &str) -> Option<String> {
    out.trim()
        .strip_prefix("held-by ")?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("run="))
        .map(str::to_owned)
}

pub(crate) fn lock_dir(site: &Site, facts: &Facts) -> String {
    let key: String = format!("{}{}", facts.site_dir, site.uri)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}/.fleet-locks/{key}", site.backup_dir)
}

pub(crate) fn expect(out: &str, want: &str, what: &str) -> Result<(), StepError> {
    let got = out.lines().last().unwrap_or("").trim();
    if got == want {
        Ok(())
    } else {
        Err(StepError::Failed(format!(
            "{what} is `{got}` after the step, expected `{want}`"
        )))
    }
}

pub(crate) fn failed(step: &str, reason: &str, after: After) -> SiteOutcome {
    SiteOutcome::Failed {
        step: step.into(),
        reason: reason.into(),
        after,
    }
}

pub(crate) fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

pub(crate) fn step_error_text(e: &StepError) -> String {
    match e {
        StepError::Failed(w) => w.clone(),
        StepError::Aborted => "aborted".into(),
    }
}

pub(crate) fn error_text(e: &ExecError) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// `--bake`: after the wait, re-reads every upgraded site of `batch` (read-only) and returns
/// `(host, problem)` for each site no longer at the target or not back to its prior
/// maintenance state.
pub(crate) async fn bake_check(
    ctx: &Ctx<'_>,
    batch: &[HostJob],
    reports: &[SiteReport],
) -> Vec<(String, String)> {
    let futures = batch.iter().map(|job| async move {
        let sites: Vec<Site> = job
            .host
            .sites
            .iter()
            .filter(|s| {
                reports.iter().any(|r| {
                    r.host == job.host.name
                        && r.site == s.name
                        && matches!(r.outcome, SiteOutcome::Upgraded { .. })
                })
            })
            .cloned()
            .collect();
        if sites.is_empty() {
            return Vec::new();
        }
        let host = job.host.name.clone();
        let facts = match discover(
            ctx.client,
            &job.target,
            &sites,
            ctx.opts.step_timeout,
            ctx.cancel,
        )
        .await
        {
            Ok(f) => f,
            Err(Discovery::Unreachable(why)) => {
                return vec![(host, format!("unreachable after the bake: {why}"))];
            }
            Err(Discovery::Failed(why)) => return vec![(host, format!("re-verify failed: {why}"))],
        };
        let mut problems = Vec::new();
        for s in &sites {
            let f = facts.get(&s.name).cloned().unwrap_or_default();
            let prior = ctx
                .journal
                .artifact(
                    &ctx.run,
                    &host,
                    &format!("site:{}", s.name),
                    "prior-maintenance",
                )
                .ok()
                .flatten();
            let target = &ctx.opts.target;
            if f.code_version != *target || f.db_version != *target {
                problems.push((
                    host.clone(),
                    format!(
                        "{}: code `{}` / database `{}`, expected `{target}`",
                        s.name, f.code_version, f.db_version
                    ),
                ));
            } else if prior.as_deref().is_some_and(|p| p != f.maintenance) {
                problems.push((
                    host.clone(),
                    format!(
                        "{}: maintenance_mode is `{}`, expected `{}`",
                        s.name,
                        f.maintenance,
                        prior.unwrap_or_default()
                    ),
                ));
            }
        }
        problems
    });
    futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Why a read-only discovery gave no facts.
pub(crate) enum Discovery {
    /// Could not connect or the connection dropped.
    Unreachable(String),
    /// The discovery script failed on the host.
    Failed(String),
}

/// Connects, runs the read-only discovery script for `sites`, and closes: what `--plan` and
/// `--bake` need (no journal, no locks).
pub(crate) async fn discover(
    client: &fleet_remote_exec::Client,
    target: &fleet_remote_exec::Target,
    sites: &[Site],
    timeout: std::time::Duration,
    cancel: &crate::runner::Cancel,
) -> Result<BTreeMap<String, Facts>, Discovery> {
    let session = client
        .connect(target, &cancel.abort)
        .await
        .map_err(|e| Discovery::Unreachable(error_text(&e)))?;
    let opts = ExecOptions {
        timeout,
        max_output: 1 << 20,
    };
    let out = session
        .exec(
            &RemoteCommand::shell(discovery::discover_script(sites)),
            &opts,
            &cancel.abort,
        )
        .await;
    session.close().await;
    match out {
        Ok(o) if o.status.success() => Ok(discovery::parse_discovery(
            &o.stdout.to_string_lossy(),
            sites,
        )),
        Ok(o) => Err(Discovery::Failed(last_line(&o.stderr.to_string_lossy()))),
        Err(e) => Err(Discovery::Unreachable(error_text(&e))),
    }
}
