//! `fleet resume` and `fleet recover`: acting on what the journal says (`fleet rollback` is in
//! `rollback.rs`).

use std::io::Write;
use std::sync::Arc;

use anyhow::bail;
use fleet_inventory::Inventory;
use fleet_playbook::{
    HeldLock, HostJob, Journal, RestoreMode, ResumeOptions, RunReport, RunRow, RunState,
    SiteStatus, locks_left, needs_restore, recover_run, resume_run,
};

use crate::args::{Cli, RecoverArgs, ResumeArgs};
use crate::exit::ExitStatus;
use crate::render::upgrade::write_summary;
use crate::settings::{Settings, watched};

/// Whether `run` is still driven by a live controller on this machine.
pub(crate) fn controller_alive(run: &RunRow) -> bool {
    if run.state != RunState::Running {
        return false;
    }
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", run.pid)).unwrap_or_default();
    me.trim() == run.controller
        && String::from_utf8_lossy(&cmdline).contains("fleet")
        && run.pid != i64::from(std::process::id())
}

/// How `fleet runs` names a run's state: a run recorded as running whose controller is gone
/// is said to be interrupted, with what to do about it.
pub(crate) fn state_text(run: &RunRow) -> String {
    if run.state != RunState::Running || controller_alive(run) {
        return run.state.to_string();
    }
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if me.trim() == run.controller {
        format!("interrupted (controller pid {} gone)", run.pid)
    } else {
        format!("running? (on {}, pid {})", run.controller, run.pid)
    }
}

/// A run still driven by a live controller on this machine must not be touched.
pub(crate) fn refuse_if_active(run: &RunRow) -> anyhow::Result<()> {
    if controller_alive(run) {
        bail!(
            "run `{}` is still in progress (pid {} on {}); wait for it or interrupt it first",
            run.id,
            run.pid,
            run.controller
        );
    }
    Ok(())
}

/// Takes `run` over for this process before acting on its sites, so that a second `fleet`
/// (another terminal, a retry) finds it in progress and refuses instead of undoing what
/// this one is doing.
/// `fleet resume` of a migrate run: a release caught mid-way (a site down, or between its
/// steps) goes on; any other phase is the operator's to run again.
async fn resume_migrate(
    cli: &Cli,
    journal: &Arc<Journal>,
    run: &RunRow,
    inventory: &Inventory,
    args: &ResumeArgs,
) -> anyhow::Result<ExitStatus> {
    use fleet_playbook::{ArtifactKind, SiteStatus, Unit};
    // Mid-release: a site the release reached (its prior maintenance state recorded) and left
    // between two safe ends (running, interrupted, or its way back failed). A site switched
    // back cleanly, or never reached, is not the resume's: its batch may have been stopped
    // on purpose (the canary's budget), and a resume must not release past that.
    let rows = journal.sites(&run.id)?;
    let mut hosts: Vec<String> = Vec::new();
    for r in &rows {
        let midway = matches!(
            r.status,
            SiteStatus::Running | SiteStatus::Interrupted | SiteStatus::RollbackFailed
        );
        let reached = journal
            .artifact(
                &run.id,
                &r.host,
                &Unit::site(&r.site),
                ArtifactKind::PriorMaintenance,
            )?
            .is_some();
        if midway && reached && !hosts.contains(&r.host) {
            hosts.push(r.host.clone());
        }
    }
    if hosts.is_empty() {
        bail!(
            "run `{}` (fleet migrate) was not caught mid-release: go on with `fleet migrate import {}`, `fleet migrate release {}` or, for a cleanup cut off, `fleet migrate cleanup {} --older-than AGE` (a cleanup that began goes on whatever its age)",
            run.id,
            run.id,
            run.id,
            run.id
        );
    }
    let jobs = jobs_for(inventory, &hosts)?;
    let opts = fleet_playbook::ReleaseOptions {
        phase: fleet_playbook::MigrateOptions {
            forks: 20,
            step_timeout: args
                .step_timeout
                .unwrap_or(std::time::Duration::from_secs(30 * 60)),
            args: std::env::args().collect::<Vec<_>>().join(" "),
        },
        // What is left of a release goes at once: its canary was released already.
        batches: fleet_inventory::Batches(vec![fleet_inventory::Amount::Percent(100)]),
        max_fail: args.max_fail.unwrap_or(fleet_inventory::Amount::Count(0)),
    };
    super::migrate::release_run(cli, journal, run, jobs, &opts, false).await
}

pub(crate) fn claim(journal: &Journal, run: &RunRow) -> anyhow::Result<()> {
    refuse_if_active(run)?;
    if !journal.claim_run(run)? {
        bail!(
            "run `{}` was just taken over by another fleet process; see `fleet runs show {}`",
            run.id,
            run.id
        );
    }
    Ok(())
}

pub(crate) fn jobs_for(inventory: &Inventory, hosts: &[String]) -> anyhow::Result<Vec<HostJob>> {
    let selected: Vec<&fleet_inventory::Host> = inventory
        .hosts()
        .iter()
        .filter(|h| hosts.contains(&h.name))
        .collect();
    super::upgrade::jobs(inventory, &selected)
}

/// A job for every host of the inventory: the library takes a run's hosts from them.
fn all_jobs(inventory: &Inventory) -> anyhow::Result<Vec<HostJob>> {
    let hosts: Vec<&fleet_inventory::Host> = inventory.hosts().iter().collect();
    super::upgrade::jobs(inventory, &hosts)
}

/// Prints a command's summary and picks its exit code: internal when the journal failed,
/// interrupted on a signal, success only when every site it acted on is at a safe end and
/// none is left in maintenance.
fn conclude(report: &RunReport, target: &str, interrupted: bool) -> anyhow::Result<ExitStatus> {
    write_summary(
        &mut crate::render::stdout(),
        &mut crate::render::stderr(),
        report,
        target,
        None,
    )?;
    Ok(if !report.journal_failures.is_empty() {
        ExitStatus::Internal
    } else if interrupted {
        ExitStatus::Interrupted
    } else if report.success()
        && report
            .sites
            .iter()
            .all(|r| !r.outcome.left_in_maintenance())
    {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    })
}

pub(crate) async fn resume(cli: &Cli, args: &ResumeArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    if fleet_playbook::is_migrate_run(&run.procedure) {
        return resume_migrate(cli, &journal, &run, &inventory, args).await;
    }
    claim(&journal, &run)?;
    let client = super::upgrade::client();
    let (cancel, shared, watcher) = watched(
        "admitting no new host; sites not yet at the database upgrade are being brought back",
    );
    let reporter = Settings::of(cli).line_reporter();
    let ro = ResumeOptions {
        step_timeout: args.step_timeout,
        max_fail: args.max_fail,
    };
    let result = resume_run(
        &client,
        &all_jobs(&inventory)?,
        &journal,
        &reporter,
        &cancel,
        &run,
        &ro,
    )
    .await;
    watcher.abort();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // Nothing was done (the run's record is unusable): give the run back as it was.
            if journal
                .sites(&run.id)?
                .iter()
                .all(|s| !s.status.is_midway())
            {
                journal.unclaim_run(&run)?;
            }
            return Err(e.into());
        }
    };
    if report.sites.is_empty() {
        writeln!(std::io::stderr(), "run `{}`: nothing left to do", run.id)?;
    }
    conclude(&report, &run.target, shared.interrupted())
}

pub(crate) async fn recover(cli: &Cli, args: &RecoverArgs) -> anyhow::Result<ExitStatus> {
    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let mut found: Vec<(RunRow, Vec<fleet_playbook::SiteRow>, Vec<HeldLock>)> = Vec::new();
    for run in journal.runs()?.into_iter().rev() {
        // A migrate run never changed an old site: nothing of it is for recovery to undo.
        if fleet_playbook::is_migrate_run(&run.procedure) {
            continue;
        }
        let rows: Vec<_> = journal
            .sites(&run.id)?
            .into_iter()
            .filter(|r| needs_restore(r, RestoreMode::Recover))
            .collect();
        // Locks a dead run left on sites that need nothing else; a live run's are its own.
        let locks = if controller_alive(&run) {
            Vec::new()
        } else {
            locks_left(&journal, &run.id, &rows)?
        };
        if !rows.is_empty() || !locks.is_empty() {
            found.push((run, rows, locks));
        }
    }
    let mut err = crate::render::stderr();
    if found.is_empty() {
        writeln!(
            err,
            "nothing to recover: no site is left in maintenance or mid-step by any run"
        )?;
        return Ok(ExitStatus::Success);
    }
    for (run, rows, locks) in &found {
        writeln!(err, "run {} ({}, -> {}):", run.id, run.state, run.target)?;
        for r in rows {
            writeln!(
                err,
                "  {}/{}: {}{} at step `{}`",
                r.host,
                r.site,
                r.status,
                if r.in_maintenance {
                    ", IN MAINTENANCE"
                } else {
                    ""
                },
                r.step.as_ref().map_or("-", |s| s.as_str())
            )?;
        }
        for l in locks {
            writeln!(
                err,
                "  {}/{}: its lock is left on the host (the site needs nothing else): released",
                l.host, l.site
            )?;
        }
    }
    writeln!(
        err,
        "each site goes forward if its database already reached the target, else back to that run's backups"
    )?;
    if !args.yes {
        if !crate::prompt::have_tty() {
            writeln!(err, "run `fleet recover --yes` to do it")?;
            return Ok(ExitStatus::HostsFailed);
        }
        if !crate::prompt::confirm(&mut err, "proceed?")? {
            return Ok(ExitStatus::HostsFailed);
        }
    }
    drop(err);
    let inventory = super::load_inventory(cli)?;
    let client = super::upgrade::client();
    let reporter = Settings::of(cli).line_reporter();
    let (cancel, shared, watcher) = watched("starting no new host; steps already running finish");
    let jobs = all_jobs(&inventory)?;
    let mut status = ExitStatus::Success;
    for (run, ..) in found {
        if cancel.drain.is_cancelled() {
            break;
        }
        claim(&journal, &run)?;
        let report = match recover_run(
            &client,
            &jobs,
            &journal,
            &reporter,
            &cancel,
            &run,
            args.step_timeout,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // Give the run back as it was found: a later `fleet recover` must not find
                // it held by this process, gone.
                journal.unclaim_run(&run)?;
                return Err(e.into());
            }
        };
        let s = conclude(&report, &run.target, false)?;
        if s == ExitStatus::Internal {
            status = s;
        } else if s != ExitStatus::Success
            && status == ExitStatus::Success
            && report.sites.iter().any(|r| {
                r.outcome.left_in_maintenance() || r.outcome.status() == SiteStatus::Unreachable
            })
        {
            status = ExitStatus::HostsFailed;
        }
    }
    watcher.abort();
    Ok(if shared.interrupted() {
        ExitStatus::Interrupted
    } else {
        status
    })
}
