//! `fleet migrate`: major Drupal upgrades, a new site built beside each old one.

use std::io::Write;
use std::sync::Arc;

use fleet_inventory::{Amount, Batches};
use fleet_playbook::{
    Journal, Manifest, MigrateOptions, ReleaseOptions, RunReport, plan_migrate_build,
    run_migrate_build, run_migrate_import, run_migrate_release, run_migrate_rollback,
};

use crate::args::{
    Cli, MigrateArgs, MigrateBuildArgs, MigrateCommand, MigrateImportArgs, MigratePlanArgs,
    MigrateReleaseArgs, MigrateRollbackArgs,
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
    }
}

async fn plan(cli: &Cli, args: &MigratePlanArgs) -> anyhow::Result<ExitStatus> {
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let manifest = Manifest::load(&args.manifest)?;
    let jobs = super::upgrade::jobs(&inventory, &hosts);
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

async fn build(cli: &Cli, args: &MigrateBuildArgs) -> anyhow::Result<ExitStatus> {
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let manifest = Manifest::load(&args.manifest)?;
    let target = manifest.core.version.clone();
    let jobs = super::upgrade::jobs(&inventory, &hosts);
    let client = super::upgrade::client();
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let reporter: Arc<dyn fleet_playbook::Reporter> = if args.json {
        Arc::new(JsonReporter)
    } else {
        Settings::of(cli).line_reporter()
    };
    // A build never touches a live site: an interrupt only stops admitting hosts, and the
    // sites being built are undone or finished by their own steps.
    let (cancel, shared, watcher) =
        watched("admitting no new host; builds under way are finished or undone");
    let report = run_migrate_build(
        &client,
        jobs,
        manifest,
        &MigrateOptions {
            forks: args.forks as usize,
            step_timeout: args.step_timeout,
            args: std::env::args().collect::<Vec<_>>().join(" "),
        },
        &journal,
        &reporter,
        &cancel,
    )
    .await?;
    watcher.abort();
    report_end(
        &report,
        args.json,
        &format!("Drupal {target} (built beside the old sites)"),
        "build --manifest FILE",
        shared.interrupted(),
    )
}

async fn import(cli: &Cli, args: &MigrateImportArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let jobs = super::upgrade::jobs(&inventory, &hosts);
    super::recover::claim(&journal, &run)?;
    let client = super::upgrade::client();
    let reporter: Arc<dyn fleet_playbook::Reporter> = if args.json {
        Arc::new(JsonReporter)
    } else {
        Settings::of(cli).line_reporter()
    };
    let (cancel, shared, watcher) =
        watched("admitting no new host; imports under way finish their step");
    let result = run_migrate_import(
        &client,
        jobs,
        &run,
        &MigrateOptions {
            forks: args.forks as usize,
            step_timeout: args.step_timeout,
            args: std::env::args().collect::<Vec<_>>().join(" "),
        },
        &journal,
        &reporter,
        &cancel,
    )
    .await;
    watcher.abort();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // Nothing ran: the run goes back to how it was found.
            let _ = journal.unclaim_run(&run);
            return Err(e.into());
        }
    };
    report_end(
        &report,
        args.json,
        &format!("Drupal {} (imported, QA-checked)", run.target),
        "import",
        shared.interrupted(),
    )
}

async fn release(cli: &Cli, args: &MigrateReleaseArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let rollout = inventory.rollout();
    let opts = ReleaseOptions {
        phase: MigrateOptions {
            forks: args.forks as usize,
            step_timeout: args.step_timeout,
            args: std::env::args().collect::<Vec<_>>().join(" "),
        },
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
    release_run(
        cli,
        &journal,
        &run,
        super::upgrade::jobs(&inventory, &hosts),
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
    super::recover::claim(journal, run)?;
    let client = super::upgrade::client();
    let reporter: Arc<dyn fleet_playbook::Reporter> = if json {
        Arc::new(JsonReporter)
    } else {
        Settings::of(cli).line_reporter()
    };
    let (cancel, shared, watcher) = watched(
        "admitting no new batch or site; the sites under way finish their release or switch back",
    );
    let result = run_migrate_release(&client, jobs, run, opts, journal, &reporter, &cancel).await;
    watcher.abort();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = journal.unclaim_run(run);
            return Err(e.into());
        }
    };
    report_end(
        &report,
        json,
        &format!("Drupal {} (released)", run.target),
        "release",
        shared.interrupted(),
    )
}

async fn rollback(cli: &Cli, args: &MigrateRollbackArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    let jobs = super::upgrade::jobs(&inventory, &inventory.hosts().iter().collect::<Vec<_>>());
    super::recover::claim(&journal, &run)?;
    let client = super::upgrade::client();
    let reporter: Arc<dyn fleet_playbook::Reporter> = if args.json {
        Arc::new(JsonReporter)
    } else {
        Settings::of(cli).line_reporter()
    };
    let (cancel, shared, watcher) =
        watched("admitting no new host; the sites under way finish switching back");
    let result = run_migrate_rollback(
        &client,
        jobs,
        &run,
        &args.sites,
        &MigrateOptions {
            forks: args.forks as usize,
            step_timeout: args.step_timeout,
            args: std::env::args().collect::<Vec<_>>().join(" "),
        },
        &journal,
        &reporter,
        &cancel,
    )
    .await;
    watcher.abort();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = journal.unclaim_run(&run);
            return Err(e.into());
        }
    };
    let status = report_end(
        &report,
        args.json,
        "the old sites (switched back)",
        "rollback",
        shared.interrupted(),
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
