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
use crate::journal::{Journal, RunInfo, RunRow, SiteUpdate};
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
    let jobs = with_sites(jobs).map_err(|_| {
        PlaybookError::Plan(format!(
            "no selected host has a site of run `{}` to import into",
            run.id
        ))
    })?;
    journal.reopen_run(&run.id)?;
    let procedure = AnyProcedure::Migrate(Arc::new(manifest), Phase::Import);
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
fn recorded_manifest(journal: &Journal, run: &RunRow) -> Result<Manifest, PlaybookError> {
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

/// One phase on every host of `jobs`, then the run's state.
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
    let connect: Arc<dyn Connect> = Arc::new(client.clone());
    let ctx = Ctx {
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
        run: run.clone(),
    };
    let sites = crate::runner::run_batch(&ctx, opts.forks, &BTreeMap::new(), &jobs, 0).await;
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
        stopped: cancel
            .drain
            .is_cancelled()
            .then(|| "interrupted: no further host admitted".to_owned()),
        journal_failures: journal.write_failures(),
    })
}
