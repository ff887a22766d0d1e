//! The rollout: a run across the fleet, batch by batch, within failure budgets, each host
//! admitted only when its batch starts (see `host.rs` for what happens on a host).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_inventory::{Amount, Batches};
use fleet_remote_exec::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::context::{Cancel, Ctx, HostJob, OnFailure, Settings};
use crate::engine::finish_site;
use crate::error::PlaybookError;
use crate::event::{Event, Gate, Reporter};
use crate::host::run_host;
use crate::journal::{BatchBudget, BatchVerdict, Journal, RunInfo, SiteUpdate};
use crate::outcome::{After, RunReport, SiteOutcome, SiteReport};
use crate::procedure::AnyProcedure;
use crate::remote::Connect;
use crate::translations::{OnLostTranslations, Translations};
use crate::vocab::{ArtifactKind, RunState, SiteStatus, SiteTally, Unit};

/// How the run rolls out and what it installs.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Local release tarball (`civicrm-X.Y.Z-drupal.tar.gz`), uploaded once per host.
    pub tarball: PathBuf,
    /// Its version (read from the tarball's `civicrm/xml/version.xml`).
    pub target: String,
    /// The localization tarball of the same version (`civicrm-X.Y.Z-l10n.tar.gz`), unpacked
    /// over the new code in the same code-swap step (`--l10n`).
    pub l10n: Option<PathBuf>,
    /// What to do with a site that has translations installed which `l10n` does not bring
    /// (all of them without it): refuse it, or upgrade it anyway (`--drop-translations`).
    pub lost_translations: OnLostTranslations,
    /// Batch sizes.
    pub batches: Batches,
    /// Failed hosts tolerated per batch and for the whole run.
    pub max_fail: Amount,
    /// Whether an unreachable host counts as failed.
    pub unreachable_counts: bool,
    /// At most N hosts in flight per value of an inventory var.
    pub max_per: BTreeMap<String, usize>,
    /// Hosts in flight at once inside a batch.
    pub forks: usize,
    /// Failure policy.
    pub on_failure: OnFailure,
    /// Bound on each remote step.
    pub step_timeout: Duration,
    /// The command line, for the journal.
    pub args: String,
    /// A user's playbook instead of the built-in CiviCRM procedure.
    pub playbook: Option<crate::Playbook>,
    /// Continue this run (`fleet resume`) instead of starting a new one.
    pub resume: Option<String>,
    /// Take over site locks held by this run id (`--break-lock`).
    pub break_lock: Option<String>,
    /// After each batch but the last, wait this long, then re-verify its sites (`--bake`).
    pub bake: Option<Duration>,
}

/// Runs the upgrade across `jobs` (in inventory order), batch by batch.
///
/// # Errors
///
/// [`PlaybookError`] only when the run cannot start or the journal fails; every host and
/// site problem is in the returned report.
///
/// # Cancel safety
///
/// Not cancel safe: cancel through `cancel` and await the report.
pub async fn run_upgrade(
    client: &Client,
    jobs: Vec<HostJob>,
    opts: &UpgradeOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    gate: Option<&dyn Gate>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let connect: Arc<dyn Connect> = Arc::new(client.clone());
    run_upgrade_on(&connect, jobs, opts, journal, reporter, gate, cancel).await
}

/// [`run_upgrade`] over any [`Connect`] (the unit tests' local hosts).
pub(crate) async fn run_upgrade_on(
    connect: &Arc<dyn Connect>,
    jobs: Vec<HostJob>,
    opts: &UpgradeOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    gate: Option<&dyn Gate>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    // The localization tarball is checked once, here, before any host is contacted (the
    // hosts' uploads then find the verdict kept): a wrong one stops the run before it starts.
    // Its locales are read then too, for the hosts to tell which translations it brings.
    let (l10n, target, on_lost) = (
        opts.l10n.clone(),
        opts.target.clone(),
        opts.lost_translations,
    );
    let translations = tokio::task::spawn_blocking(move || {
        if let Some(path) = &l10n {
            crate::procedure::civicrm::tarball::check_l10n_once(path, &target)?;
        }
        Translations::of(l10n.as_deref(), on_lost)
    })
    .await
    .map_err(|e| PlaybookError::Plan(format!("internal: the l10n check died: {e}")))?
    .map_err(PlaybookError::Plan)?;
    let jobs: Vec<HostJob> = jobs
        .into_iter()
        .filter(|j| !j.host.sites.is_empty())
        .collect();
    if jobs.is_empty() {
        return Err(PlaybookError::Plan(
            "no selected host has sites to upgrade".into(),
        ));
    }
    let run = match &opts.resume {
        Some(id) => {
            journal.reopen_run(id)?;
            id.clone()
        }
        None => journal.create_run(&RunInfo {
            procedure: AnyProcedure::of(opts.playbook.as_ref()).name(),
            target: opts.target.clone(),
            args: opts.args.clone(),
        })?,
    };
    journal.set_artifact(
        &run,
        "",
        &Unit::Run,
        ArtifactKind::Tarball,
        &opts.tarball.display().to_string(),
    )?;
    // A resumed run keeps what it started with; a new one records it for its resume.
    if opts.resume.is_none() {
        crate::resume::Recorded::record(journal, &run, opts)?;
    }
    let sizes = opts.batches.sizes(jobs.len());
    let batch_budget: Vec<usize> = sizes.iter().map(|&n| opts.max_fail.of(n)).collect();
    let run_budget = opts.max_fail.of(jobs.len());
    // Every site is in the journal before anything happens, so `runs show` lists them all.
    let mut batch_of = Vec::with_capacity(jobs.len());
    for (b, &n) in sizes.iter().enumerate() {
        batch_of.extend(std::iter::repeat_n(b, n));
    }
    for (job, &b) in jobs.iter().zip(&batch_of) {
        for site in &job.host.sites {
            journal.site(
                &run,
                &job.host.name,
                &site.name,
                &SiteUpdate {
                    batch: Some(b as i64),
                    status: Some(SiteStatus::Pending),
                    to_version: Some(&opts.target),
                    ..Default::default()
                },
            )?;
        }
    }
    reporter.on_event(&Event::RunStarted {
        run: run.clone(),
        hosts: jobs.len(),
        sites: jobs.iter().map(|j| j.host.sites.len()).sum(),
        batches: sizes.clone(),
        batch_budget: batch_budget.clone(),
        run_budget,
    });
    let settings = Settings {
        target: opts.target.clone(),
        step_timeout: opts.step_timeout,
        on_failure: opts.on_failure,
        procedure: AnyProcedure::of(opts.playbook.as_ref()),
        tarball: Some(opts.tarball.clone()),
        l10n: opts.l10n.clone(),
        translations,
        break_lock: opts.break_lock.clone(),
    };
    let ctx = Ctx {
        connect: connect.clone(),
        settings: Arc::new(settings),
        journal: journal.clone(),
        reporter: reporter.clone(),
        cancel: cancel.clone(),
        run: run.clone(),
    };
    let mut reports: Vec<SiteReport> = Vec::new();
    let mut stopped: Option<String> = None;
    let mut total_failed = 0usize;
    let mut start = 0usize;
    for (index, &size) in sizes.iter().enumerate() {
        let batch = &jobs[start..start + size];
        start += size;
        let names: Vec<String> = batch.iter().map(|j| j.host.name.clone()).collect();
        if stopped.is_none() && cancel.drain.is_cancelled() {
            stopped = Some("interrupted: no further batch admitted".into());
        }
        if stopped.is_none()
            && index > 0
            && let Some(g) = gate
            && !g.proceed(index, &names)
        {
            stopped = Some(format!("operator declined batch {}", index + 1));
        }
        let budget = BatchBudget {
            batch: index,
            hosts: batch.len(),
            budget: batch_budget[index],
            run_budget,
        };
        if let Some(why) = &stopped {
            // The decision is part of the run's story, not a guard: a journal that cannot
            // keep it is in the report's journal failures, and nothing more happens anyway.
            if let Err(e) = journal.batch_not_admitted(&run, &budget, why) {
                tracing::error!("journal: {e}");
            }
            for j in batch {
                for s in &j.host.sites {
                    let outcome = SiteOutcome::NotStarted {
                        reason: why.clone(),
                    };
                    // Nothing happened on this site: a journal that cannot say so is in
                    // the report's journal failures, and the run goes on to report the rest.
                    if let Err(e) = finish_site(&ctx, &j.host.name, &s.name, index, &outcome, None)
                    {
                        tracing::error!("journal: {e}");
                    }
                    reports.push(SiteReport {
                        host: j.host.name.clone(),
                        site: s.name.clone(),
                        batch: index,
                        outcome,
                    });
                }
            }
            continue;
        }
        let admitted = journal
            .batch_admitted(&run, &budget)
            .inspect_err(|e| tracing::error!("journal: {e}"))
            .ok();
        reporter.on_event(&Event::BatchStarted {
            index,
            hosts: names,
        });
        let batch_reports = run_batch(&ctx, opts.forks, &opts.max_per, batch, index).await;
        let mut failed: Vec<&str> = batch
            .iter()
            .filter(|j| {
                batch_reports
                    .iter()
                    .any(|r| r.host == j.host.name && r.outcome.is_failure(opts.unreachable_counts))
            })
            .map(|j| j.host.name.as_str())
            .collect();
        // `--bake`: let the batch run for a while, then check its sites again before the
        // next batch is admitted; a site that no longer verifies fails its host.
        if let Some(d) = opts.bake
            && index + 1 < sizes.len()
            && !cancel.drain.is_cancelled()
        {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = cancel.drain.cancelled() => {}
            }
            let problems = crate::bake::bake_check(&ctx, batch, &batch_reports).await;
            for (host, _) in &problems {
                if !failed.contains(&host.as_str()) {
                    failed.push(
                        batch
                            .iter()
                            .find(|j| j.host.name == *host)
                            .map_or("", |j| j.host.name.as_str()),
                    );
                }
            }
            reporter.on_event(&Event::Baked {
                index,
                problems: problems.iter().map(|(h, p)| format!("{h}: {p}")).collect(),
            });
        }
        let failed_hosts = failed.len();
        total_failed += failed_hosts;
        reporter.on_event(&Event::BatchFinished {
            index,
            failed: failed_hosts,
            allowed: batch_budget[index],
        });
        reports.extend(batch_reports);
        let mut judged = budget.judge(failed_hosts, total_failed);
        if judged.verdict == BatchVerdict::WithinBudget && cancel.abort.is_cancelled() {
            judged.verdict = BatchVerdict::Aborted;
        }
        stopped = budget.stop_reason(&judged);
        if let Some(id) = admitted
            && let Err(e) = journal.batch_judged(id, &judged, stopped.as_deref().unwrap_or(""))
        {
            tracing::error!("journal: {e}");
        }
        if let Some(why) = &stopped {
            reporter.on_event(&Event::Stopped {
                reason: why.clone(),
            });
        }
    }
    // What the hosts did is in `reports` whatever the journal can still record: a journal
    // that fails here is reported with them, never instead of them.
    match journal.sites(&run) {
        Ok(rows) => {
            let state = RunState::decide(SiteTally::of(&rows), cancel.drain.is_cancelled());
            if let Err(e) = journal.finish_run(&run, state) {
                tracing::error!("journal: {e}");
            }
        }
        Err(e) => tracing::error!("journal: {e}"),
    }
    Ok(RunReport {
        run,
        sites: reports,
        stopped,
        journal_failures: journal.write_failures(),
    })
}

/// Runs one batch: hosts in parallel up to `forks`, and at most `max_per[key]` hosts sharing a
/// value of var `key`.
pub(crate) async fn run_batch(
    ctx: &Ctx,
    forks: usize,
    max_per: &BTreeMap<String, usize>,
    batch: &[HostJob],
    index: usize,
) -> Vec<SiteReport> {
    let forks = Arc::new(Semaphore::new(forks.max(1)));
    let mut caps: HashMap<(String, String), Arc<Semaphore>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut task_job: HashMap<tokio::task::Id, usize> = HashMap::new();
    for (i, job) in batch.iter().enumerate() {
        let mut sems = vec![forks.clone()];
        for (key, &n) in max_per {
            if let Some(v) = job.host.var(key) {
                sems.push(
                    caps.entry((key.clone(), v))
                        .or_insert_with(|| Arc::new(Semaphore::new(n)))
                        .clone(),
                );
            }
        }
        let (ctx, job) = (ctx.clone(), job.clone());
        // Each host is its own task: its waits (the journal's fsync, a slow step) never
        // hold up another host, and a panic ends only this host (see below).
        let handle = tasks.spawn(async move {
            let mut permits = Vec::with_capacity(sems.len());
            for s in &sems {
                tokio::select! {
                    biased;
                    () = ctx.cancel.drain.cancelled() => {
                        return not_started(&ctx, &job, index, "interrupted before this host was admitted");
                    }
                    p = s.clone().acquire_owned() => match p {
                        Ok(p) => permits.push(p),
                        Err(_) => return not_started(&ctx, &job, index, "internal: semaphore closed"),
                    },
                }
            }
            run_host(&ctx, &job, index).await
        });
        task_job.insert(handle.id(), i);
    }
    let mut out: Vec<(usize, Vec<SiteReport>)> = Vec::with_capacity(batch.len());
    while let Some(done) = tasks.join_next_with_id().await {
        match done {
            Ok((id, reports)) => out.push((task_job[&id], reports)),
            Err(e) => {
                let i = task_job[&e.id()];
                let why = if e.is_panic() {
                    panic_text(e.into_panic())
                } else {
                    "the host's task was cancelled".to_owned()
                };
                out.push((i, host_lost(ctx, &batch[i], index, &why).await));
            }
        }
    }
    // Reports in inventory order, whatever order the hosts finished in.
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().flat_map(|(_, r)| r).collect()
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    let text = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned());
    format!("internal error in fleet: {text}")
}

/// A host whose task died (a bug in fleet): its sites the journal says are down or mid-step
/// go through recovery, as after a crash (even after a first Ctrl-C: a drain admits nothing
/// new, it does not leave sites down); the others are reported failed, untouched. A site
/// recovery could not act on keeps its journal row, so `fleet recover` still finds it.
async fn host_lost(ctx: &Ctx, job: &HostJob, batch: usize, why: &str) -> Vec<SiteReport> {
    if let AnyProcedure::Migrate(..) = &ctx.settings.procedure {
        // A build never touches the old site: nothing to bring back up. What it made (a
        // release, a database) is in the journal, recorded before it was made.
        return job
            .host
            .sites
            .iter()
            .map(|s| {
                let outcome = SiteOutcome::Failed {
                    step: "internal".into(),
                    reason: format!(
                        "{why}; the old site is untouched; what this run made for the site is in its journal (`fleet runs show`)"
                    ),
                    after: After::Untouched,
                };
                if let Err(e) = finish_site(ctx, &job.host.name, &s.name, batch, &outcome, None) {
                    tracing::error!("journal: {e}");
                }
                SiteReport {
                    host: job.host.name.clone(),
                    site: s.name.clone(),
                    batch,
                    outcome,
                }
            })
            .collect();
    }
    ctx.reporter.on_event(&Event::Notice {
        host: job.host.name.clone(),
        message: format!("{why}; recovering its sites from the journal"),
    });
    let cancel = Cancel {
        drain: ctx.cancel.abort.child_token(),
        abort: ctx.cancel.abort.clone(),
    };
    let recovered = crate::restore::restore_run_on(
        &ctx.connect,
        std::slice::from_ref(job),
        &ctx.journal,
        &ctx.reporter,
        &cancel,
        &ctx.run,
        &crate::restore::RestoreOptions {
            mode: crate::restore::RestoreMode::Recover,
            sites: Vec::new(),
            step_timeout: ctx.settings.step_timeout,
            on_failure: ctx.settings.on_failure,
            force: false,
            plan: false,
            forks: 1,
        },
    )
    .await
    .map(|r| r.sites)
    .unwrap_or_else(|e| {
        tracing::error!("recovering {}: {e}", job.host.name);
        Vec::new()
    });
    let rows = ctx.journal.sites(&ctx.run).unwrap_or_default();
    job.host
        .sites
        .iter()
        .map(|s| {
            let report = recovered
                .iter()
                .find(|r| r.host == job.host.name && r.site == s.name);
            let down = rows.iter().any(|r| {
                r.host == job.host.name
                    && r.site == s.name
                    && crate::restore::needs_restore(r, crate::restore::RestoreMode::Recover)
            });
            let (outcome, record) = match report.map(|r| &r.outcome) {
                // Recovery finished it forward: its database had reached the target.
                Some(o) if o.at_target() => (o.clone(), false),
                // Recovery acted and recorded how it ended.
                Some(o @ (SiteOutcome::Failed { .. } | SiteOutcome::RolledBack { .. })) => (
                    SiteOutcome::Failed {
                        step: "internal".into(),
                        reason: format!("{why}; then recovery: {o}"),
                        after: if o.left_in_maintenance() {
                            After::RollbackFailed(o.to_string())
                        } else {
                            After::RolledBack
                        },
                    },
                    true,
                ),
                // Recovery could not act (unreachable, refused, not run): the row stays as it
                // was, down or mid-step, for `fleet recover`.
                Some(o) => (
                    SiteOutcome::Failed {
                        step: "internal".into(),
                        reason: format!("{why}; recovery could not act: {o}"),
                        after: After::RollbackFailed(o.to_string()),
                    },
                    false,
                ),
                None if down => (
                    SiteOutcome::Failed {
                        step: "internal".into(),
                        reason: format!("{why}; recovery did not run"),
                        after: After::RollbackFailed("recovery did not run".into()),
                    },
                    false,
                ),
                None => (
                    SiteOutcome::Failed {
                        step: "internal".into(),
                        reason: why.to_owned(),
                        after: After::Untouched,
                    },
                    true,
                ),
            };
            if record
                && let Err(e) = finish_site(ctx, &job.host.name, &s.name, batch, &outcome, None)
            {
                tracing::error!("journal: {e}");
            }
            SiteReport {
                host: job.host.name.clone(),
                site: s.name.clone(),
                batch,
                outcome,
            }
        })
        .collect()
}

pub(crate) fn not_started(ctx: &Ctx, job: &HostJob, batch: usize, why: &str) -> Vec<SiteReport> {
    job.host
        .sites
        .iter()
        .map(|s| {
            let outcome = SiteOutcome::NotStarted { reason: why.into() };
            let _ = finish_site(ctx, &job.host.name, &s.name, batch, &outcome, None);
            SiteReport {
                host: job.host.name.clone(),
                site: s.name.clone(),
                batch,
                outcome,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::BatchVerdict;
    use crate::testkit::{Fault, LocalLab, Quiet};

    /// The budget decisions are the journal's, not only the reporter's: a failed canary's
    /// verdict and the batch it kept out are read back after the run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_canary_records_its_verdict_and_the_batch_it_kept_out() {
        let lab = LocalLab::new(2, 1);
        let state = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(state.path()).unwrap());
        let connect: Arc<dyn Connect> = lab.connect("h01", Fault::FailAt(1));
        let reporter: Arc<dyn Reporter> = Arc::new(Quiet);
        let opts = UpgradeOptions {
            batches: Batches(vec![Amount::Count(1), Amount::Percent(100)]),
            max_fail: Amount::Count(0),
            ..lab.options()
        };
        let report = run_upgrade_on(
            &connect,
            lab.jobs(),
            &opts,
            &journal,
            &reporter,
            None,
            &Cancel::new(),
        )
        .await
        .unwrap();
        let why = "batch 1 had 1 failed host(s), more than its budget of 0";
        assert_eq!(report.stopped.as_deref(), Some(why));
        let rows = journal.batches(&report.run).unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].budget.batch, 0);
        assert_eq!((rows[0].budget.hosts, rows[0].budget.budget), (1, 0));
        assert_eq!(rows[0].verdict, BatchVerdict::OverBatchBudget);
        assert_eq!((rows[0].failed, rows[0].run_failed), (Some(1), Some(1)));
        assert_eq!(rows[0].detail.as_deref(), Some(why));
        assert_eq!(rows[1].budget.batch, 1);
        assert_eq!(rows[1].verdict, BatchVerdict::NotAdmitted);
        assert_eq!(rows[1].detail.as_deref(), Some(why));
        assert!(rows[1].started_ms >= rows[0].finished_ms.unwrap());
    }
}
