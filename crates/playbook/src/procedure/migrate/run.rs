//! `fleet migrate` phases across the fleet, each on one run id: `build` starts the run,
//! `import RUN` goes on with it. Every host in parallel (up to `forks`), each site on its
//! own: neither phase touches a live site, so there is nothing for a canary to protect (the
//! release phase has batches).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_remote_exec::Client;

use super::Phase;
use super::manifest::Manifest;
use crate::context::{Cancel, Ctx, HostJob, OnFailure, Settings};
use crate::error::PlaybookError;
use crate::event::{Event, Reporter};
use crate::journal::{BatchBudget, Journal, RunInfo, RunRow, SiteUpdate};
use crate::outcome::RunReport;
use crate::procedure::AnyProcedure;
use crate::remote::Connect;
use crate::translations::{OnLostTranslations, Translations};
use crate::vocab::{ArtifactKind, RunState, SiteStatus, SiteTally, Unit};

/// How a phase runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Hosts at once.
    pub forks: usize,
    /// Bound on each remote step.
    pub step_timeout: Duration,
    /// The command line, for the journal.
    pub args: String,
}

/// Builds a new release and database beside every selected site (see `build.rs`): a new run.
///
/// # Errors
///
/// [`PlaybookError`] only when the run cannot start or the journal fails; every host and
/// site problem is in the returned report.
pub async fn run_migrate_build(
    client: &Client,
    jobs: Vec<HostJob>,
    manifest: Manifest,
    opts: &MigrateOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let jobs = with_sites(jobs)?;
    let procedure = AnyProcedure::Migrate(Arc::new(manifest), Phase::Build);
    let target = target_of(&procedure);
    let run = journal.create_run(&RunInfo {
        procedure: procedure.name(),
        target: target.clone(),
        args: opts.args.clone(),
    })?;
    if let AnyProcedure::Migrate(m, _) = &procedure {
        journal.set_artifact(&run, "", &Unit::Run, ArtifactKind::Manifest, &m.text)?;
    }
    for job in &jobs {
        for site in &job.host.sites {
            journal.site(
                &run,
                &job.host.name,
                &site.name,
                &SiteUpdate {
                    batch: Some(0),
                    status: Some(SiteStatus::Pending),
                    to_version: Some(&target),
                    ..Default::default()
                },
            )?;
        }
    }
    run_phase(
        client, jobs, procedure, run, opts, journal, reporter, cancel,
    )
    .await
}

/// Imports the old sites' data into the new sites run `run` built, then the QA gates (see
/// `import.rs`), with the manifest the run recorded. Only the run's own sites are
/// imported; `jobs` narrows them to its hosts.
///
/// # Errors
///
/// [`PlaybookError::Plan`] when `run` is not a migrate run or has no recorded manifest, or
/// none of the selected hosts has a site the run built; journal errors.
pub async fn run_migrate_import(
    client: &Client,
    jobs: Vec<HostJob>,
    run: &RunRow,
    opts: &MigrateOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let manifest = recorded_manifest(journal, run)?;
    let jobs = run_sites(jobs, journal, run)?;
    go_on(
        client,
        jobs,
        run,
        manifest,
        Phase::Import,
        opts,
        journal,
        reporter,
        cancel,
    )
    .await
}

/// Phase `phase` of run `run` (reopened) on `jobs`, narrowed to the run's sites, with the
/// manifest the run recorded: every host at once.
#[allow(clippy::too_many_arguments)]
async fn go_on(
    client: &Client,
    jobs: Vec<HostJob>,
    run: &RunRow,
    manifest: Manifest,
    phase: Phase,
    opts: &MigrateOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    journal.reopen_run(&run.id)?;
    let procedure = AnyProcedure::Migrate(Arc::new(manifest), phase);
    run_phase(
        client,
        jobs,
        procedure,
        run.id.clone(),
        opts,
        journal,
        reporter,
        cancel,
    )
    .await
}

/// The manifest run `run` started with: the journal's copy, never the file as it may be now.
pub(crate) fn recorded_manifest(
    journal: &Journal,
    run: &RunRow,
) -> Result<Manifest, PlaybookError> {
    if !super::is_migrate_run(&run.procedure) {
        return Err(PlaybookError::Plan(format!(
            "run `{}` is not a `fleet migrate` run ({})",
            run.id, run.procedure
        )));
    }
    let text = journal
        .artifact(&run.id, "", &Unit::Run, ArtifactKind::Manifest)?
        .ok_or_else(|| PlaybookError::Plan(format!("run `{}` has no recorded manifest", run.id)))?;
    Manifest::parse_recorded(&text, &PathBuf::from(format!("manifest of run {}", run.id)))
}

fn with_sites(jobs: Vec<HostJob>) -> Result<Vec<HostJob>, PlaybookError> {
    let jobs: Vec<HostJob> = jobs
        .into_iter()
        .filter(|j| !j.host.sites.is_empty())
        .collect();
    if jobs.is_empty() {
        return Err(PlaybookError::Plan(
            "no selected host has sites to migrate".into(),
        ));
    }
    Ok(jobs)
}

fn target_of(p: &AnyProcedure) -> String {
    match p {
        AnyProcedure::Migrate(m, _) => m.core.version.clone(),
        _ => String::new(),
    }
}

/// The shared parts of a phase's host jobs.
fn phase_ctx(
    client: &Client,
    procedure: AnyProcedure,
    run: &str,
    opts: &MigrateOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<Ctx, PlaybookError> {
    let connect: Arc<dyn Connect> = Arc::new(client.clone());
    Ok(Ctx {
        connect,
        settings: Arc::new(Settings {
            target: target_of(&procedure),
            step_timeout: opts.step_timeout,
            on_failure: OnFailure::Rollback,
            procedure,
            tarball: None,
            l10n: None,
            translations: Translations::of(None, OnLostTranslations::Refuse)
                .map_err(PlaybookError::Plan)?,
            break_lock: None,
        }),
        journal: journal.clone(),
        reporter: reporter.clone(),
        cancel: cancel.clone(),
        run: run.to_owned(),
    })
}

/// One phase on every host of `jobs` at once, then the run's state.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    client: &Client,
    jobs: Vec<HostJob>,
    procedure: AnyProcedure,
    run: String,
    opts: &MigrateOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    reporter.on_event(&Event::RunStarted {
        run: run.clone(),
        hosts: jobs.len(),
        sites: jobs.iter().map(|j| j.host.sites.len()).sum(),
        batches: vec![jobs.len()],
        batch_budget: vec![jobs.len()],
        run_budget: jobs.len(),
    });
    let ctx = phase_ctx(client, procedure, &run, opts, journal, reporter, cancel)?;
    let sites = crate::runner::run_batch(&ctx, opts.forks, &BTreeMap::new(), &jobs, 0).await;
    finish(journal, run, sites, None, cancel)
}

/// The run's state from its sites, and the report.
fn finish(
    journal: &Journal,
    run: String,
    sites: Vec<crate::outcome::SiteReport>,
    stopped: Option<String>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
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
        sites,
        stopped: stopped.or_else(|| {
            cancel
                .drain
                .is_cancelled()
                .then(|| "interrupted: no further host admitted".to_owned())
        }),
        journal_failures: journal.write_failures(),
    })
}

/// How the release rolls out.
#[derive(Debug, Clone)]
pub struct ReleaseOptions {
    /// Hosts at once inside a batch, the step bound, the command line.
    pub phase: MigrateOptions,
    /// Batch sizes (canary first).
    pub batches: fleet_inventory::Batches,
    /// Failed hosts tolerated per batch and for the whole run.
    pub max_fail: fleet_inventory::Amount,
}

/// Switches run `run`'s QA-passed sites to their new releases, batch by batch within the
/// failure budgets (see `release.rs`); running it again after a crash (or `fleet resume`)
/// ends every site on exactly one release.
///
/// # Errors
///
/// As [`run_migrate_import`].
pub async fn run_migrate_release(
    client: &Client,
    jobs: Vec<HostJob>,
    run: &RunRow,
    opts: &ReleaseOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let manifest = recorded_manifest(journal, run)?;
    let jobs = run_sites(jobs, journal, run)?;
    journal.reopen_run(&run.id)?;
    let sizes = opts.batches.sizes(jobs.len());
    let budgets: Vec<usize> = sizes.iter().map(|&n| opts.max_fail.of(n)).collect();
    let run_budget = opts.max_fail.of(jobs.len());
    reporter.on_event(&Event::RunStarted {
        run: run.id.clone(),
        hosts: jobs.len(),
        sites: jobs.iter().map(|j| j.host.sites.len()).sum(),
        batches: sizes.clone(),
        batch_budget: budgets.clone(),
        run_budget,
    });
    let procedure = AnyProcedure::Migrate(Arc::new(manifest), Phase::Release);
    let ctx = phase_ctx(
        client,
        procedure,
        &run.id,
        &opts.phase,
        journal,
        reporter,
        cancel,
    )?;
    let mut reports = Vec::new();
    let mut stopped: Option<String> = None;
    let mut total_failed = 0;
    let mut start = 0;
    for (index, &size) in sizes.iter().enumerate() {
        let batch = &jobs[start..start + size];
        start += size;
        if stopped.is_none() && cancel.drain.is_cancelled() {
            stopped = Some("interrupted: no further batch admitted".into());
        }
        let budget = BatchBudget {
            batch: index,
            hosts: batch.len(),
            budget: budgets[index],
            run_budget,
        };
        if let Some(why) = &stopped {
            // A record of the decision, not a guard: a journal that cannot keep it is in
            // the report's journal failures.
            if let Err(e) = journal.batch_not_admitted(&run.id, &budget, why) {
                tracing::error!("journal: {e}");
            }
            for j in batch {
                reports.extend(crate::runner::not_started(&ctx, j, index, why));
            }
            continue;
        }
        let admitted = journal
            .batch_admitted(&run.id, &budget)
            .inspect_err(|e| tracing::error!("journal: {e}"))
            .ok();
        reporter.on_event(&Event::BatchStarted {
            index,
            hosts: batch.iter().map(|j| j.host.name.clone()).collect(),
        });
        let done =
            crate::runner::run_batch(&ctx, opts.phase.forks, &BTreeMap::new(), batch, index).await;
        let failed = batch
            .iter()
            .filter(|j| {
                done.iter()
                    .any(|r| r.host == j.host.name && r.outcome.is_failure(true))
            })
            .count();
        total_failed += failed;
        reporter.on_event(&Event::BatchFinished {
            index,
            failed,
            allowed: budgets[index],
        });
        reports.extend(done);
        let judged = budget.judge(failed, total_failed);
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
    finish(journal, run.id.clone(), reports, stopped, cancel)
}

/// Switches run `run`'s released sites back to their old sites (`sites`: only these, as
/// `site` or `host/site`; empty: all), every host at once (see `release.rs`).
///
/// # Errors
///
/// As [`run_migrate_import`]; [`PlaybookError::Plan`] when a named site is not the run's.
#[allow(clippy::too_many_arguments)]
pub async fn run_migrate_rollback(
    client: &Client,
    jobs: Vec<HostJob>,
    run: &RunRow,
    sites: &[String],
    opts: &MigrateOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let manifest = recorded_manifest(journal, run)?;
    let jobs = named_sites(run_sites(jobs, journal, run)?, run, sites)?;
    go_on(
        client,
        jobs,
        run,
        manifest,
        Phase::Rollback,
        opts,
        journal,
        reporter,
        cancel,
    )
    .await
}

/// Removes what run `run`'s sites no longer need, once their last change is older than
/// `older_than` (see `cleanup.rs`): the old site of a released site, the new site of one
/// that is not; `sites` narrows it as for the rollback. Every host at once.
///
/// # Errors
///
/// As [`run_migrate_rollback`].
#[allow(clippy::too_many_arguments)]
pub async fn run_migrate_cleanup(
    client: &Client,
    jobs: Vec<HostJob>,
    run: &RunRow,
    sites: &[String],
    older_than: Duration,
    opts: &MigrateOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let manifest = recorded_manifest(journal, run)?;
    let (jobs, around) = cleanup_jobs(jobs, journal, run, sites)?;
    let phase = Phase::Cleanup(Arc::new(super::cleanup::Cleanup { older_than, around }));
    go_on(
        client, jobs, run, manifest, phase, opts, journal, reporter, cancel,
    )
    .await
}

/// The cleanup's jobs (the run's sites, narrowed to `sites`), and what surrounds them on each
/// host (every inventory site's `current` and root, taken before the narrowing).
#[allow(clippy::type_complexity)]
pub(crate) fn cleanup_jobs(
    jobs: Vec<HostJob>,
    journal: &Journal,
    run: &RunRow,
    sites: &[String],
) -> Result<(Vec<HostJob>, BTreeMap<String, super::cleanup::Around>), PlaybookError> {
    let around = jobs
        .iter()
        .map(|j| {
            let mut roots: Vec<String> = j.host.sites.iter().map(|s| s.root.clone()).collect();
            roots.sort();
            roots.dedup();
            (
                j.host.name.clone(),
                super::cleanup::Around {
                    currents: j
                        .host
                        .sites
                        .iter()
                        .filter_map(|s| s.current.clone())
                        .collect(),
                    roots,
                },
            )
        })
        .collect();
    Ok((
        named_sites(run_sites(jobs, journal, run)?, run, sites)?,
        around,
    ))
}

/// `jobs` narrowed to the sites named (`site` or `host/site`; none named: all), each of
/// which must be one of the run's.
fn named_sites(
    mut jobs: Vec<HostJob>,
    run: &RunRow,
    sites: &[String],
) -> Result<Vec<HostJob>, PlaybookError> {
    let named = |host: &str, s: &fleet_inventory::Site| {
        sites
            .iter()
            .any(|n| *n == s.name || *n == format!("{host}/{}", s.name))
    };
    for name in sites {
        let found = jobs.iter().any(|j| {
            j.host
                .sites
                .iter()
                .any(|s| *name == s.name || *name == format!("{}/{}", j.host.name, s.name))
        });
        if !found {
            return Err(PlaybookError::Plan(format!(
                "run `{}` has no site `{name}`",
                run.id
            )));
        }
    }
    if !sites.is_empty() {
        for j in &mut jobs {
            let host = j.host.name.clone();
            j.host.sites.retain(|s| named(&host, s));
        }
    }
    with_sites(jobs)
}

/// `jobs` narrowed to run `run`'s own sites (hosts without one left out).
pub(crate) fn run_sites(
    jobs: Vec<HostJob>,
    journal: &Journal,
    run: &RunRow,
) -> Result<Vec<HostJob>, PlaybookError> {
    let rows = journal.sites(&run.id)?;
    let jobs: Vec<HostJob> = jobs
        .into_iter()
        .map(|mut j| {
            j.host.sites.retain(|s| {
                rows.iter()
                    .any(|r| r.host == j.host.name && r.site == s.name)
            });
            j
        })
        .collect();
    with_sites(jobs).map_err(|_| {
        PlaybookError::Plan(format!("no selected host has a site of run `{}`", run.id))
    })
}
