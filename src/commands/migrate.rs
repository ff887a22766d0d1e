//! `fleet migrate`: major Drupal upgrades, a new site built beside each old one.

use std::io::Write;
use std::sync::Arc;

use fleet_playbook::{BuildOptions, Journal, Manifest, plan_migrate_build, run_migrate_build};

use crate::args::{Cli, MigrateArgs, MigrateBuildArgs, MigrateCommand, MigratePlanArgs};
use crate::exit::ExitStatus;
use crate::render::upgrade::{JsonReporter, write_summary};
use crate::settings::{Settings, watched};

pub(crate) async fn run(cli: &Cli, args: &MigrateArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        MigrateCommand::Plan(a) => plan(cli, a).await,
        MigrateCommand::Build(a) => build(cli, a).await,
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
        &BuildOptions {
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
    if args.json {
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
            &report,
            &format!("Drupal {target} (built beside the old sites)"),
        )?;
    }
    Ok(if !report.journal_failures.is_empty() {
        ExitStatus::Internal
    } else if shared.interrupted() {
        ExitStatus::Interrupted
    } else if report.success() {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    })
}
