//! `fleet migrate`: major Drupal upgrades, a new site built beside each old one.

use std::io::Write;
use std::sync::Arc;

use fleet_inventory::{Amount, Batches};
use fleet_playbook::{
    Journal, Manifest, MigrateOptions, ReleaseOptions, RunReport, plan_migrate_build,
    plan_migrate_cleanup, plan_migrate_phase, run_migrate_build, run_migrate_cleanup,
    run_migrate_import, run_migrate_release, run_migrate_rollback,
};

use crate::args::{
    Cli, MigrateArgs, MigrateBuildArgs, MigrateCleanupArgs, MigrateCommand, MigrateImportArgs,
    MigratePlanArgs, MigrateReleaseArgs, MigrateRollbackArgs,
};
use crate::exit::ExitStatus;
use crate::render::upgrade::{JsonReporter, write_summary};
use crate::settings::{Settings, watched};

pub(crate) async fn run(cli: &Cli, args: &MigrateArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        MigrateCommand::Plan(a) => plan(cli, a).await,
        MigrateCommand::Build(a) => build(cli, a).await,
        MigrateCommand::Import(a) => import(cli, a).await,
        MigrateCommand::Release(a) => release(cli, a).await,
        MigrateCommand::Rollback(a) => rollback(cli, a).await,
        MigrateCommand::Cleanup(a) => cleanup(cli, a).await,
    }
}

async fn plan(cli: &Cli, args: &MigratePlanArgs) -> anyhow::Result<ExitStatus> {
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let manifest = Manifest::load(&args.manifest)?;
    let jobs = super::upgrade::jobs(&inventory, &hosts)?;
    let client = super::upgrade::client();
    let (cancel, _shared, watcher) = watched("stopping the plan");
    let rows = plan_migrate_build(
        &client,
        jobs,
        &manifest,
        args.forks as usize,
        args.step_timeout,
        &cancel,
    )
    .await?;
    watcher.abort();
    let mut out = crate::render::stdout();
    if args.json {
        for r in &rows {
            let line = serde_json::json!({
                "host": r.host, "site": r.site, "drupal": r.old_version, "old_db": r.old_db,
                "new_db": r.new_db, "release": r.release, "action": r.action, "reason": r.reason,
            });
            writeln!(out, "{line}")?;
        }
    } else {
        crate::render::migrate::write_plan(&mut out, &manifest, &rows)?;
    }
    Ok(ExitStatus::Success)
}

fn reporter_for(cli: &Cli, json: bool) -> Arc<dyn fleet_playbook::Reporter> {
    if json {
        Arc::new(JsonReporter)
    } else {
        Settings::of(cli).line_reporter()
    }
}

fn phase_opts(forks: u32, step_timeout: std::time::Duration) -> MigrateOptions {
    MigrateOptions {
        forks: forks as usize,
        step_timeout,
        args: std::env::args().collect::<Vec<_>>().join(" "),
    }
}

async fn build(cli: &Cli, args: &MigrateBuildArgs) -> anyhow::Result<ExitStatus> {
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let manifest = Manifest::load(&args.manifest)?;
    let target = manifest.core.version.clone();
    let jobs = super::upgrade::jobs(&inventory, &hosts)?;
    let client = super::upgrade::client();
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let reporter = reporter_for(cli, args.json);
    // A build never touches a live site: an interrupt only stops admitting hosts, and the
    // sites being built are undone or finished by their own steps.
    let (cancel, shared, watcher) =
        watched("admitting no new host; builds under way are finished or undone");
    let opts = phase_opts(args.forks, args.step_timeout);
    let report =
        run_migrate_build(&client, jobs, manifest, &opts, &journal, &reporter, &cancel).await?;
    watcher.abort();
    report_end(
        &report,
        args.json,
        &format!("Drupal {target} (built beside the old sites)"),
        "build --manifest FILE",
        shared.interrupted(),
    )
}

/// Runs a later phase on run `run`: claimed first (no other fleet process acts on it at the
/// same time), given back as it was found when the phase cannot start. Returns the report
/// and whether the operator interrupted it.
async fn claimed<Fut>(
    cli: &Cli,
    journal: &Journal,
    run: &fleet_playbook::RunRow,
    json: bool,
    on_interrupt: &'static str,
    phase: impl FnOnce(
        fleet_remote_exec::Client,
        Arc<dyn fleet_playbook::Reporter>,
        fleet_playbook::Cancel,
    ) -> Fut,
) -> anyhow::Result<(RunReport, bool)>
where
    Fut: std::future::Future<Output = Result<RunReport, fleet_playbook::PlaybookError>>,
{
    super::recover::claim(journal, run)?;
    let (cancel, shared, watcher) = watched(on_interrupt);
    let result = phase(super::upgrade::client(), reporter_for(cli, json), cancel).await;
    watcher.abort();
    match result {
        Ok(r) => Ok((r, shared.interrupted())),
        Err(e) => {
            // Nothing ran: the run goes back to how it was found.
            let _ = journal.unclaim_run(run);
            Err(e.into())
        }
    }
}

/// A phase's `--plan`: printed, nothing changed.
fn phase_plan(
    run: &fleet_playbook::RunRow,
    plan: &fleet_playbook::PhasePlan,
    phase: &str,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    let mut out = crate::render::stdout();
    if json {
        for r in &plan.rows {
            let line = serde_json::json!({
                "host": r.host, "site": r.site, "batch": r.batch + 1, "action": r.action,
                "reason": r.reason,
            });
            writeln!(out, "{line}")?;
        }
    } else {
        crate::render::migrate::write_phase_plan(&mut out, &run.id, phase, plan)?;
    }
    Ok(ExitStatus::Success)
}

async fn import(cli: &Cli, args: &MigrateImportArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let jobs = super::upgrade::jobs(&inventory, &hosts)?;
    if args.plan {
        let plan = plan_migrate_phase(
            jobs,
            &run,
            &journal,
            false,
            &Batches(vec![Amount::Percent(100)]),
            Amount::Count(0),
        )?;
        return phase_plan(&run, &plan, "import", args.json);
    }
    let opts = phase_opts(args.forks, args.step_timeout);
    let (j, r) = (&journal, &run);
    let (report, interrupted) = claimed(
        cli,
        &journal,
        &run,
        args.json,
        "admitting no new host; imports under way finish their step",
        |client, reporter, cancel| async move {
            run_migrate_import(&client, jobs, r, &opts, j, &reporter, &cancel).await
        },
    )
    .await?;
    report_end(
        &report,
        args.json,
        &format!("Drupal {} (imported, QA-checked)", run.target),
        "import",
        interrupted,
    )
}

async fn release(cli: &Cli, args: &MigrateReleaseArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let rollout = inventory.rollout();
    let opts = ReleaseOptions {
        phase: phase_opts(args.forks, args.step_timeout),
        batches: args
            .batches
            .clone()
            .or_else(|| rollout.batches.clone())
            .unwrap_or_else(|| Batches(vec![Amount::Count(1), Amount::Percent(100)])),
        max_fail: args
            .max_fail
            .or(rollout.max_fail)
            .unwrap_or(Amount::Count(0)),
    };
    if args.plan {
        let plan = plan_migrate_phase(
            super::upgrade::jobs(&inventory, &hosts)?,
            &run,
            &journal,
            true,
            &opts.batches,
            opts.max_fail,
        )?;
        return phase_plan(&run, &plan, "release", args.json);
    }
    release_run(
        cli,
        &journal,
        &run,
        super::upgrade::jobs(&inventory, &hosts)?,
        &opts,
        args.json,
    )
    .await
}

/// The release phase of `run` (also what `fleet resume` does with a migrate run caught
/// mid-release).
pub(crate) async fn release_run(
    cli: &Cli,
    journal: &Arc<Journal>,
    run: &fleet_playbook::RunRow,
    jobs: Vec<fleet_playbook::HostJob>,
    opts: &ReleaseOptions,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    let (report, interrupted) = claimed(
        cli,
        journal,
        run,
        json,
        "admitting no new batch or site; the sites under way finish their release or switch back",
        |client, reporter, cancel| async move {
            run_migrate_release(&client, jobs, run, opts, journal, &reporter, &cancel).await
        },
    )
    .await?;
    report_end(
        &report,
        json,
        &format!("Drupal {} (released)", run.target),
        "release",
        interrupted,
    )
}

async fn rollback(cli: &Cli, args: &MigrateRollbackArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    let jobs = super::upgrade::jobs(&inventory, &inventory.hosts().iter().collect::<Vec<_>>())?;
    let opts = phase_opts(args.forks, args.step_timeout);
    let (j, r) = (&journal, &run);
    let (report, interrupted) = claimed(
        cli,
        &journal,
        &run,
        args.json,
        "admitting no new host; the sites under way finish switching back",
        |client, reporter, cancel| async move {
            run_migrate_rollback(&client, jobs, r, &args.sites, &opts, j, &reporter, &cancel).await
        },
    )
    .await?;
    let status = report_end(
        &report,
        args.json,
        "the old sites (switched back)",
        "rollback",
        interrupted,
    )?;
    // A rollback succeeded when every site it was asked for serves its old site again.
    let back = report.sites.iter().all(|s| {
        matches!(
            s.outcome,
            fleet_playbook::SiteOutcome::SwitchedBack { .. }
                | fleet_playbook::SiteOutcome::Skipped { .. }
        )
    });
    Ok(if status == ExitStatus::HostsFailed && back {
        ExitStatus::Success
    } else {
        status
    })
}

async fn cleanup(cli: &Cli, args: &MigrateCleanupArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    let jobs = super::upgrade::jobs(&inventory, &inventory.hosts().iter().collect::<Vec<_>>())?;
    if args.plan {
        // Read-only: the run is not claimed, the journal not written.
        let (cancel, _shared, watcher) = watched("stopping the plan");
        let rows = plan_migrate_cleanup(
            &super::upgrade::client(),
            jobs,
            &run,
            &args.sites,
            args.older_than,
            args.forks as usize,
            args.step_timeout,
            &journal,
            &cancel,
        )
        .await?;
        watcher.abort();
        let mut out = crate::render::stdout();
        if args.json {
            for r in &rows {
                let line = serde_json::json!({
                    "host": r.host, "site": r.site, "action": r.action, "side": r.side,
                    "remove": r.remove, "kept": r.kept, "reason": r.reason,
                });
                writeln!(out, "{line}")?;
            }
        } else {
            crate::render::migrate::write_cleanup_plan(&mut out, &run.id, &rows)?;
        }
        return Ok(ExitStatus::Success);
    }
    let opts = phase_opts(args.forks, args.step_timeout);
    let (j, r) = (&journal, &run);
    let (report, interrupted) = claimed(
        cli,
        &journal,
        &run,
        args.json,
        "admitting no new host; the sites under way finish the step they are in",
        |client, reporter, cancel| async move {
            run_migrate_cleanup(
                &client,
                jobs,
                r,
                &args.sites,
                args.older_than,
                &opts,
                j,
                &reporter,
                &cancel,
            )
            .await
        },
    )
    .await?;
    report_end(
        &report,
        args.json,
        "what the sites no longer need (cleaned up)",
        "cleanup",
        interrupted,
    )
}

/// The summary (or the JSON site lines) and the exit status of a phase.
fn report_end(
    report: &RunReport,
    json: bool,
    what: &str,
    phase: &str,
    interrupted: bool,
) -> anyhow::Result<ExitStatus> {
    if json {
        let mut out = crate::render::stdout();
        for s in &report.sites {
            writeln!(
                out,
                "{}",
                serde_json::json!({"event": "site", "host": s.host, "site": s.site, "status": s.outcome.status().as_str(), "detail": s.outcome.to_string()})
            )?;
        }
    } else {
        write_summary(
            &mut crate::render::stdout(),
            &mut crate::render::stderr(),
            report,
            what,
            Some(phase),
        )?;
    }
    Ok(if !report.journal_failures.is_empty() {
        ExitStatus::Internal
    } else if interrupted {
        ExitStatus::Interrupted
    } else if report.success() {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    })
}
