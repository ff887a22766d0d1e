//! `fleet upgrade`: the CiviCRM procedure in rolling batches, journaled.

use std::io::Write;
use std::sync::Arc;

use fleet_inventory::{Amount, Batches};
use fleet_playbook::{
    HostJob, Journal, OnFailure, OnLostTranslations, UpgradeOptions, plan_upgrade, procedure_steps,
    run_upgrade, tarball_version,
};
use fleet_remote_exec::{Client, ClientOptions};

use crate::args::{Cli, OnFailureArg, UpgradeArgs};
use crate::exit::ExitStatus;
use crate::prompt::TtyPrompter;
use crate::render::upgrade::{JsonReporter, TtyGate, write_plan, write_summary};
use crate::settings::{Settings, watched};
use crate::targets::{TargetOverrides, target_for};

pub(crate) async fn run(cli: &Cli, args: &UpgradeArgs) -> anyhow::Result<ExitStatus> {
    if args.show_steps {
        let playbook = args
            .playbook
            .as_deref()
            .map(fleet_playbook::Playbook::load)
            .transpose()?;
        let mut out = crate::render::stdout();
        for (i, s) in procedure_steps(playbook.as_ref()).iter().enumerate() {
            writeln!(
                out,
                "{:>2}. {:<20} per {:<9} {}",
                i + 1,
                s.name,
                s.scope,
                s.what
            )?;
        }
        return Ok(ExitStatus::Success);
    }
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    let playbook = args
        .playbook
        .as_deref()
        .map(fleet_playbook::Playbook::load)
        .transpose()?;
    let needs_tarball = playbook
        .as_ref()
        .is_none_or(fleet_playbook::Playbook::needs_tarball);
    let tarball = match &args.tarball {
        Some(t) => t.clone(),
        None if needs_tarball => {
            anyhow::bail!("`--tarball FILE` is required (the release to install)")
        }
        None => std::path::PathBuf::new(),
    };
    let target = if tarball.as_os_str().is_empty() {
        String::new()
    } else {
        tarball_version(&tarball)?
    };
    for (given, flag) in [
        (args.l10n.is_some(), "--l10n"),
        (args.drop_translations, "--drop-translations"),
    ] {
        if given && !needs_tarball {
            anyhow::bail!(
                "`{flag}` goes with the release tarball, which this playbook does not install"
            );
        }
    }
    let rollout = inventory.rollout();
    let opts = UpgradeOptions {
        tarball,
        // Checked against the release before anything is touched: by `--plan` before any
        // host is contacted, and in a run on the controller before anything is uploaded.
        l10n: args.l10n.clone(),
        lost_translations: if args.drop_translations {
            OnLostTranslations::Drop
        } else {
            OnLostTranslations::Refuse
        },
        target,
        batches: args
            .batches
            .clone()
            .or_else(|| rollout.batches.clone())
            .unwrap_or_else(|| Batches(vec![Amount::Count(1), Amount::Percent(100)])),
        max_fail: args
            .max_fail
            .or(rollout.max_fail)
            .unwrap_or(Amount::Count(0)),
        unreachable_counts: !args.unreachable_ok,
        max_per: if args.max_per.is_empty() {
            rollout.max_per.clone()
        } else {
            args.max_per.iter().cloned().collect()
        },
        forks: args.forks as usize,
        on_failure: match args.on_failure {
            OnFailureArg::Rollback => OnFailure::Rollback,
            OnFailureArg::Hold => OnFailure::Hold,
        },
        step_timeout: args.step_timeout,
        args: std::env::args().collect::<Vec<_>>().join(" "),
        playbook,
        resume: None,
        break_lock: args.break_lock.clone(),
        bake: args.bake,
    };
    let jobs = jobs(&inventory, &hosts)?;
    let client = client();
    let (cancel, shared, watcher) = watched(
        "admitting no new host; sites not yet at the database upgrade are being brought back",
    );

    if args.plan {
        let (sizes, rows) = plan_upgrade(&client, jobs, &opts, &cancel).await?;
        watcher.abort();
        write_plan(&mut crate::render::stdout(), &opts, &sizes, &rows)?;
        return Ok(ExitStatus::Success);
    }

    let journal = Arc::new(Journal::open(&super::state_dir(cli)?)?);
    let reporter: Arc<dyn fleet_playbook::Reporter> = if args.json {
        Arc::new(JsonReporter)
    } else {
        Settings::of(cli).line_reporter()
    };
    let gate = TtyGate;
    let report = run_upgrade(
        &client,
        jobs,
        &opts,
        &journal,
        &reporter,
        args.pause.then_some(&gate as &dyn fleet_playbook::Gate),
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
                serde_json::json!({"event": "site", "host": s.host, "site": s.site, "batch": s.batch, "status": s.outcome.status().as_str(), "detail": s.outcome.to_string()})
            )?;
        }
    } else {
        write_summary(
            &mut crate::render::stdout(),
            &mut crate::render::stderr(),
            &report,
            &opts.target,
            None,
        )?;
    }
    if args.json && !report.journal_failures.is_empty() {
        writeln!(
            crate::render::stdout(),
            "{}",
            serde_json::json!({"event": "journal_failed", "failures": report.journal_failures})
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

/// One job per selected host.
///
/// # Errors
///
/// A password a host needs cannot be had (see `access.rs`).
pub(crate) fn jobs(
    inventory: &fleet_inventory::Inventory,
    hosts: &[&fleet_inventory::Host],
) -> anyhow::Result<Vec<HostJob>> {
    hosts
        .iter()
        .map(|h| {
            Ok(HostJob {
                host: (*h).clone(),
                target: target_for(inventory, h, TargetOverrides::default())?,
            })
        })
        .collect()
}

/// The SSH client of an upgrade-like command (prompts only on a terminal).
pub(crate) fn client() -> Client {
    Client::new(ClientOptions {
        prompter: Arc::new(TtyPrompter::new(indicatif::ProgressBar::hidden())),
        ..ClientOptions::default()
    })
}
