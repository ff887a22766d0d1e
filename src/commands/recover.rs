//! `fleet resume` and `fleet recover`: acting on what the journal says (`fleet rollback` is in
//! `rollback.rs`).

use std::io::{IsTerminal, Write};

use anyhow::{Context, bail};
use fleet_inventory::{Amount, Batches, Inventory};
use fleet_playbook::{
    ArtifactKind, Cancel, HostJob, Journal, OnFailure, RestoreMode, RestoreOptions, RunRow,
    RunState, SiteReport, SiteStatus, SiteTally, UpgradeOptions, needs_restore, restore_run,
    run_upgrade,
};

use crate::args::{Cli, RecoverArgs, ResumeArgs};
use crate::exit::ExitStatus;
use crate::render::upgrade::{LineReporter, write_summary};

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

/// Cancellation for a command that acts on hosts, watching SIGINT, SIGTERM and SIGHUP: the
/// first drains (nothing new starts), the second aborts running steps.
pub(crate) fn watched(
    what: &'static str,
) -> (Cancel, crate::signal::Cancel, tokio::task::JoinHandle<()>) {
    let cancel = Cancel::new();
    let shared = crate::signal::Cancel::from_tokens(cancel.drain.clone(), cancel.abort.clone());
    let watcher = shared.watch_signals(move || {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("interrupted: {what}; press Ctrl-C again to abort running steps");
        }
    });
    (cancel, shared, watcher)
}

/// Every site of a run that needs it, to its nearest safe end.
fn recovery(step_timeout: std::time::Duration) -> RestoreOptions {
    RestoreOptions {
        mode: RestoreMode::Recover,
        sites: Vec::new(),
        step_timeout,
        force: false,
        plan: false,
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
    Ok(super::upgrade::jobs(inventory, &selected))
}

fn finish(
    journal: &Journal,
    run: &str,
    reports: &[SiteReport],
    target: &str,
    interrupted: bool,
) -> anyhow::Result<ExitStatus> {
    let report = fleet_playbook::RunReport {
        run: run.to_owned(),
        sites: reports.to_vec(),
        stopped: None,
        journal_failures: journal.write_failures(),
    };
    write_summary(
        &mut crate::render::stdout(),
        &mut crate::render::stderr(),
        &report,
        target,
    )?;
    let tally = SiteTally::of(&journal.sites(run)?);
    journal.finish_run(run, RunState::decide(tally, interrupted))?;
    Ok(if !report.journal_failures.is_empty() {
        ExitStatus::Internal
    } else if report.success() && reports.iter().all(|r| !r.outcome.left_in_maintenance()) {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    })
}

pub(crate) async fn resume(cli: &Cli, args: &ResumeArgs) -> anyhow::Result<ExitStatus> {
    let journal = Journal::open(&super::state_dir(cli)?)?;
    let run = super::find_run(&journal, &args.run)?;
    let inventory = super::load_inventory(cli)?;
    claim(&journal, &run)?;
    let client = super::upgrade::client();
    let (cancel, shared, watcher) = watched(
        "admitting no new host; sites not yet at the database upgrade are being brought back",
    );
    let reporter = LineReporter::new(cli.verbose > 0, std::io::stderr().is_terminal());
    // 1. Sites left mid-step: re-verified and moved to a safe end (forward when their DB is
    //    already upgraded, so no DB upgrade ever runs twice; else back to the backups).
    let rows = journal.sites(&run.id)?;
    let midway: Vec<String> = rows
        .iter()
        .filter(|r| needs_restore(r, RestoreMode::Recover))
        .map(|r| r.host.clone())
        .collect();
    let mut reports = Vec::new();
    if !midway.is_empty() {
        let jobs = jobs_for(&inventory, &midway)?;
        reports.extend(
            restore_run(
                &client,
                &jobs,
                &journal,
                &reporter,
                &cancel,
                &run.id,
                &recovery(args.step_timeout),
            )
            .await?
            .sites,
        );
    }
    // 2. Every site not yet at the target runs the procedure from its start, in this run.
    let rows = journal.sites(&run.id)?;
    let todo: Vec<(String, String)> = rows
        .iter()
        .filter(|r| !r.status.is_settled())
        .map(|r| (r.host.clone(), r.site.clone()))
        .collect();
    if !todo.is_empty() && !cancel.drain.is_cancelled() {
        let tarball = journal
            .artifact(&run.id, "", "run", ArtifactKind::Tarball)?
            .context("the run recorded no tarball")?;
        // The procedure the run started with, from its journal (never the built-in one for
        // a playbook run, and never the file as it may have been edited since).
        let origin = std::path::PathBuf::from(format!("playbook of run {}", run.id));
        let playbook = journal
            .artifact(&run.id, "", "run", ArtifactKind::Playbook)?
            .map(|text| fleet_playbook::Playbook::parse(&text, &origin))
            .transpose()?;
        if playbook.is_none() && run.procedure.starts_with("playbook:") {
            bail!(
                "run `{}` ran {} but its journal has no copy of it (recorded before fleet kept one); run that playbook again with `fleet upgrade --playbook FILE`",
                run.id,
                run.procedure
            );
        }
        let mut jobs = jobs_for(
            &inventory,
            &todo.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>(),
        )?;
        for j in &mut jobs {
            j.host
                .sites
                .retain(|s| todo.iter().any(|(h, n)| *h == j.host.name && *n == s.name));
        }
        let opts = UpgradeOptions {
            tarball: tarball.into(),
            target: run.target.clone(),
            l10n: None,
            batches: Batches(vec![Amount::Percent(100)]),
            max_fail: args.max_fail.unwrap_or(Amount::Count(0)),
            unreachable_counts: true,
            max_per: inventory.rollout().max_per.clone(),
            forks: 20,
            on_failure: OnFailure::Rollback,
            step_timeout: args.step_timeout,
            args: run.args.clone(),
            playbook,
            resume: Some(run.id.clone()),
            break_lock: None,
            bake: None,
        };
        let r = run_upgrade(&client, jobs, &opts, &journal, &reporter, None, &cancel).await?;
        reports
            .retain(|x: &SiteReport| !r.sites.iter().any(|y| y.host == x.host && y.site == x.site));
        reports.extend(r.sites);
    }
    watcher.abort();
    if reports.is_empty() {
        writeln!(std::io::stderr(), "run `{}`: nothing left to do", run.id)?;
    }
    let status = finish(
        &journal,
        &run.id,
        &reports,
        &run.target,
        shared.interrupted(),
    )?;
    Ok(if shared.interrupted() {
        ExitStatus::Interrupted
    } else {
        status
    })
}

pub(crate) async fn recover(cli: &Cli, args: &RecoverArgs) -> anyhow::Result<ExitStatus> {
    let journal = Journal::open(&super::state_dir(cli)?)?;
    let mut found: Vec<(RunRow, Vec<fleet_playbook::SiteRow>)> = Vec::new();
    for run in journal.runs()?.into_iter().rev() {
        let rows: Vec<_> = journal
            .sites(&run.id)?
            .into_iter()
            .filter(|r| needs_restore(r, RestoreMode::Recover))
            .collect();
        if !rows.is_empty() {
            found.push((run, rows));
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
    for (run, rows) in &found {
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
                r.step.as_deref().unwrap_or("-")
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
    let reporter = LineReporter::new(cli.verbose > 0, std::io::stderr().is_terminal());
    let (cancel, shared, watcher) = watched("starting no new host; steps already running finish");
    let mut status = ExitStatus::Success;
    for (run, rows) in found {
        if cancel.drain.is_cancelled() {
            break;
        }
        claim(&journal, &run)?;
        let hosts: Vec<String> = rows.iter().map(|r| r.host.clone()).collect();
        let jobs = jobs_for(&inventory, &hosts)?;
        let reports = restore_run(
            &client,
            &jobs,
            &journal,
            &reporter,
            &cancel,
            &run.id,
            &recovery(args.step_timeout),
        )
        .await?
        .sites;
        if finish(
            &journal,
            &run.id,
            &reports,
            &run.target,
            shared.interrupted(),
        )? != ExitStatus::Success
            && reports.iter().any(|r| {
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
