//! `fleet migrate`: major Drupal upgrades, a new site built beside each old one.

use std::io::Write;

use fleet_playbook::{Manifest, plan_migrate_build};

use crate::args::{Cli, MigrateArgs, MigrateCommand, MigratePlanArgs};
use crate::exit::ExitStatus;
use crate::settings::watched;

pub(crate) async fn run(cli: &Cli, args: &MigrateArgs) -> anyhow::Result<ExitStatus> {
    match &args.command {
        MigrateCommand::Plan(a) => plan(cli, a).await,
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
