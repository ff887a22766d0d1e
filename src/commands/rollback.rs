//! `fleet rollback`: a run's sites back on their old code and database, from that run's
//! backups, with every guard a restore of live data needs (see the playbook crate's
//! `restore.rs` for what is verified on the hosts).

use std::io::Write;
use std::sync::Arc;

use fleet_playbook::{
    ArtifactKind, BuiltinStep, Journal, RestoreMode, RestoreOptions, RestoreReport, RunReport,
    RunState, SiteOutcome, SiteRow, SiteStatus, Unit, age_of, check_sites, format_time,
    needs_restore, restore_run,
};

use super::recover::{claim, jobs_for, refuse_if_active};
use crate::args::{Cli, RollbackArgs};
use crate::exit::ExitStatus;
use crate::render::table;
use crate::render::upgrade::write_summary;
use crate::settings::{Settings, watched};

pub(crate) async fn run(cli: &Cli, args: &RollbackArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    if fleet_playbook::is_migrate_run(&run.procedure) {
        anyhow::bail!(
            "run `{}` is a `fleet migrate` run: it never changed the old sites, and `fleet rollback` puts back in-place upgrades only; what it made is listed by `fleet runs show {}`",
            run.id,
            run.id
        );
    }
    refuse_if_active(&run)?;
    let rows = journal.sites(&run.id)?;
    check_sites(&run.id, &rows, &args.sites)?;
    let inventory = super::load_inventory(cli)?;
    let todo: Vec<&SiteRow> = rows
        .iter()
        .filter(|r| needs_restore(r, RestoreMode::Rollback))
        .filter(|r| {
            args.sites.is_empty()
                || args
                    .sites
                    .iter()
                    .any(|s| *s == r.site || *s == format!("{}/{}", r.host, r.site))
        })
        .collect();
    let mut err = crate::render::stderr();
    if todo.is_empty() {
        writeln!(err, "run `{}`: no site to roll back", run.id)?;
        return Ok(ExitStatus::Success);
    }
    let hosts: Vec<String> = todo.iter().map(|r| r.host.clone()).collect();
    let jobs = jobs_for(&inventory, &hosts)?;
    let ro = RestoreOptions {
        mode: RestoreMode::Rollback,
        sites: args.sites.clone(),
        step_timeout: args.step_timeout,
        on_failure: fleet_playbook::OnFailure::Rollback,
        force: args.force,
        plan: args.plan,
        forks: args.forks as usize,
    };
    let reporter = Settings::of(cli).line_reporter();
    let client = super::upgrade::client();
    if args.plan {
        let (cancel, _, watcher) = watched("stopping");
        let report =
            restore_run(&client, &jobs, &journal, &reporter, &cancel, &run.id, &ro).await?;
        watcher.abort();
        drop(reporter);
        write_plan(&mut crate::render::stdout(), &report)?;
        return Ok(ExitStatus::Success);
    }
    // What is about to be lost, said before anything happens.
    writeln!(
        err,
        "run {} ({} -> {}): rolling back {} site(s) to their backups: {}",
        run.id,
        run.procedure,
        run.target,
        todo.len(),
        todo.iter()
            .map(|r| format!("{}/{}", r.host, r.site))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    let oldest = dump_times(&journal, &run.id, &hosts)?;
    for (host, db, taken) in &oldest {
        writeln!(
            err,
            "  {host}: database `{db}` from its dump of {} UTC ({} ago)",
            format_time(*taken),
            age_of(*taken)
        )?;
    }
    if let Some(t) = oldest.iter().map(|(_, _, t)| *t).min() {
        writeln!(
            err,
            "data written to these databases in the last {} will be lost from the live sites (each database is saved to a safety dump first)",
            age_of(t)
        )?;
    }
    if args.force {
        writeln!(
            err,
            "--force: sites changed by a later run or no longer at {} are rolled back too",
            run.target
        )?;
    }
    if !args.yes {
        if !crate::prompt::have_tty() {
            anyhow::bail!(
                "`fleet rollback` replaces live databases: pass `--yes` to do it without a terminal (or `--plan` to see what it would do)"
            );
        }
        if !crate::prompt::confirm(&mut err, "roll back?")? {
            writeln!(err, "nothing was changed")?;
            return Ok(ExitStatus::HostsFailed);
        }
    }
    drop(err);
    claim(&journal, &run)?;
    let (cancel, shared, watcher) =
        watched("starting no new host; groups already being restored finish");
    let report = restore_run(&client, &jobs, &journal, &reporter, &cancel, &run.id, &ro).await?;
    watcher.abort();
    drop(reporter);
    let summary = RunReport {
        run: run.id.clone(),
        sites: report.sites.clone(),
        stopped: None,
        journal_failures: journal.write_failures(),
    };
    write_summary(
        &mut crate::render::stdout(),
        &mut crate::render::stderr(),
        &summary,
        &run.target,
        None,
    )?;
    let ok = !report.sites.is_empty()
        && report
            .sites
            .iter()
            .all(|r| r.outcome.status() == SiteStatus::RolledBack);
    // The run as a whole is rolled back only when every one of its sites is; a rollback
    // that changed nothing gives the run back as it found it.
    let rows = journal.sites(&run.id)?;
    let all_back = rows.iter().all(|s| {
        matches!(
            s.status,
            SiteStatus::RolledBack
                | SiteStatus::Skipped
                | SiteStatus::Failed
                | SiteStatus::NotStarted
                | SiteStatus::Unreachable
                | SiteStatus::Superseded
        )
    });
    if all_back
        && report
            .sites
            .iter()
            .any(|r| r.outcome.status() == SiteStatus::RolledBack)
    {
        journal.finish_run(&run.id, RunState::RolledBack)?;
    } else if rows.iter().any(|s| s.in_maintenance) {
        journal.finish_run(&run.id, RunState::Interrupted)?;
    } else {
        journal.unclaim_run(&run)?;
    }
    Ok(if !summary.journal_failures.is_empty() {
        ExitStatus::Internal
    } else if shared.interrupted() {
        ExitStatus::Interrupted
    } else if ok {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    })
}

/// `(host, database, unix time)` of each dump of the run on `hosts`, oldest first.
fn dump_times(
    journal: &Journal,
    run: &str,
    hosts: &[String],
) -> anyhow::Result<Vec<(String, String, i64)>> {
    let mut out = Vec::new();
    for a in journal.artifacts(run)? {
        if a.kind != ArtifactKind::DbDump || !hosts.contains(&a.host) {
            continue;
        }
        let Unit::Database(db) = &a.unit else {
            continue;
        };
        if let Some(t) =
            journal.step_done_at(run, &a.host, &a.unit, &BuiltinStep::BackupDb.into())?
        {
            out.push((a.host.clone(), db.to_owned(), t));
        }
    }
    out.sort_by_key(|(_, _, t)| *t);
    Ok(out)
}

fn write_plan(out: &mut dyn Write, report: &RestoreReport) -> std::io::Result<()> {
    let mut rows: Vec<[String; 6]> = report
        .plan
        .iter()
        .map(|p| {
            [
                p.host.clone(),
                p.site.clone(),
                p.live.clone(),
                p.back_to.clone(),
                p.dumps
                    .iter()
                    .map(|(file, t)| match t {
                        Some(t) => format!(
                            "{file} (taken {}, {} ago: newer data lost)",
                            format_time(*t),
                            age_of(*t)
                        ),
                        None => file.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                match &p.refused {
                    None => "would roll back".to_owned(),
                    Some(why) => format!("REFUSED: {why}"),
                },
            ]
        })
        .collect();
    // Hosts that could not be looked at: why, per site.
    rows.extend(report.sites.iter().map(|r| {
        [
            r.host.clone(),
            r.site.clone(),
            String::new(),
            String::new(),
            String::new(),
            match &r.outcome {
                SiteOutcome::Refused { reason } => format!("REFUSED: {reason}"),
                o => o.to_string(),
            },
        ]
    }));
    write!(
        out,
        "{}",
        table(
            &["HOST", "SITE", "NOW", "BACK TO", "DUMP", "VERDICT"],
            &rows
        )
    )?;
    writeln!(out, "(--plan: nothing was changed)")
}
