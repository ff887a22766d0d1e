//! `fleet migrate build` across the fleet: one journaled run, every host in parallel (up to
//! `forks`), each site built beside the old one. No batches: a build never touches a live
//! site, so there is nothing for a canary to protect; the release phase has them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_remote_exec::Client;

use super::manifest::Manifest;
use crate::context::{Cancel, Ctx, HostJob, OnFailure, Settings};
use crate::error::PlaybookError;
use crate::event::{Event, Reporter};
use crate::journal::{Journal, RunInfo, SiteUpdate};
use crate::outcome::RunReport;
use crate::procedure::AnyProcedure;
use crate::remote::Connect;
use crate::translations::{OnLostTranslations, Translations};
use crate::vocab::{ArtifactKind, RunState, SiteStatus, SiteTally, Unit};

/// How a build runs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Hosts at once.
    pub forks: usize,
    /// Bound on each remote step.
    pub step_timeout: Duration,
    /// The command line, for the journal.
    pub args: String,
}

/// Builds a new release and database beside every selected site (see `build.rs`).
///
/// # Errors
///
/// [`PlaybookError`] only when the run cannot start or the journal fails; every host and
/// site problem is in the returned report.
pub async fn run_migrate_build(
    client: &Client,
    jobs: Vec<HostJob>,
    manifest: Manifest,
    opts: &BuildOptions,
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let jobs: Vec<HostJob> = jobs
        .into_iter()
        .filter(|j| !j.host.sites.is_empty())
        .collect();
    if jobs.is_empty() {
        return Err(PlaybookError::Plan(
            "no selected host has sites to migrate".into(),
        ));
    }
    let target = manifest.core.version.clone();
    let procedure = AnyProcedure::MigrateBuild(Arc::new(manifest));
    let run = journal.create_run(&RunInfo {
        procedure: procedure.name(),
        target: target.clone(),
        args: opts.args.clone(),
    })?;
    if let AnyProcedure::MigrateBuild(m) = &procedure {
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
            target,
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
