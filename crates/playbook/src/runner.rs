//! The rollout: a run across the fleet, batch by batch, within failure budgets, each host
//! admitted only when its batch starts (see `host.rs` for what happens on a host).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_inventory::{Amount, Batches, Host};
use fleet_remote_exec::{Client, Target};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::PlaybookError;
use crate::event::{Event, Gate, Reporter};
use crate::host::run_host;
use crate::journal::{Journal, RunInfo, SiteUpdate};
use crate::outcome::{RunReport, SiteOutcome, SiteReport};

/// What to do with a site whose upgrade failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Restore code and database from the run's backups, then maintenance back as it was.
    Rollback,
    /// Restore, but keep the site in maintenance (for a person to look at it).
    Hold,
}

/// How the run rolls out and what it installs.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Local release tarball (`civicrm-X.Y.Z-drupal.tar.gz`), uploaded once per host.
    pub tarball: PathBuf,
    /// Its version (read from the tarball's `civicrm/xml/version.xml`).
    pub target: String,
    /// Batch sizes.
    pub batches: Batches,
    /// Failed hosts tolerated per batch and for the whole run.
    pub max_fail: Amount,
    /// Whether an unreachable host counts as failed.
    pub unreachable_counts: bool,
    /// At most N hosts in flight per value of an inventory var.
    pub max_per: BTreeMap<String, usize>,
    /// Hosts in flight at once inside a batch.
    pub forks: usize,
    /// Failure policy.
    pub on_failure: OnFailure,
    /// Bound on each remote step.
    pub step_timeout: Duration,
    /// The command line, for the journal.
    pub args: String,
    /// A user's playbook instead of the built-in CiviCRM procedure.
    pub playbook: Option<crate::Playbook>,
    /// Continue this run (`fleet resume`) instead of starting a new one.
    pub resume: Option<String>,
    /// Take over site locks held by this run id (`--break-lock`).
    pub break_lock: Option<String>,
    /// After each batch but the last, wait this long, then re-verify its sites (`--bake`).
    pub bake: Option<Duration>,
}

/// One host to upgrade: its inventory entry and how to reach it.
#[derive(Debug, Clone)]
pub struct HostJob {
    /// The inventory host (its sites).
    pub host: Host,
    /// Where to connect.
    pub target: Target,
}

/// Cancellation: `drain` admits nothing new and brings sites that are still safe back;
/// `abort` kills running commands.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    /// First interrupt.
    pub drain: CancellationToken,
    /// Second interrupt (also cancels `drain` when created with [`Cancel::new`]).
    pub abort: CancellationToken,
}

impl Cancel {
    /// A pair where aborting also drains.
    pub fn new() -> Self {
        let abort = CancellationToken::new();
        Self {
            drain: abort.child_token(),
            abort,
        }
    }
}

/// The procedure's step names, in order (`fleet upgrade --show-steps`, `--plan`).
pub const STEPS: &[(&str, &str, &str)] = &[
    (
        "preflight",
        "site",
        "read code and DB versions, `.upgrade` marker, free disk, write permission; skip sites at the target, refuse downgrades",
    ),
    (
        "lock",
        "site",
        "take the per-site lock on the host (run id, controller, pid)",
    ),
    (
        "upload",
        "host",
        "upload the release tarball once per host, size-checked, atomic rename",
    ),
    (
        "record-maintenance",
        "site",
        "record the prior maintenance state in the journal",
    ),
    (
        "maintenance-on",
        "site",
        "drush vset --exact maintenance_mode 1; drush cc all; verify vget = 1",
    ),
    (
        "disable-modules",
        "site",
        "drush pm-disable the listed integration modules that are enabled; record them",
    ),
    (
        "backup-db",
        "database",
        "drush civicrm-sql-dump (with routines) per CiviCRM database, Drupal DBs with sql-dump --routines; verify header and `Dump completed` trailer; record path and sha256",
    ),
    (
        "move-code-out",
        "codebase",
        "mv the CiviCRM code dir into the run's backup dir (moved, not copied); verify",
    ),
    (
        "unpack",
        "codebase",
        "tar -xzf into a temp dir next to it, rename into place; verify xml/version.xml = target",
    ),
    (
        "fix-permissions",
        "site",
        "chown the site's files dir to the web user, dirs 0755, files 0644",
    ),
    (
        "upgrade-db",
        "database",
        "cv upgrade:db -n (or drush civicrm-upgrade-db -y) as the web user, once per database; re-read: code = DB = target, no `.upgrade` marker",
    ),
    (
        "flush",
        "site",
        "cv flush (or drush cc civicrm) as the web user; drush cc all",
    ),
    (
        "enable-modules",
        "site",
        "drush pm-enable the modules disabled before",
    ),
    (
        "maintenance-restore",
        "site",
        "set maintenance_mode back to its recorded prior value; verify",
    ),
    (
        "verify",
        "site",
        "cv status: CiviCRM at the target, no pending upgrade",
    ),
    ("unlock", "site", "release the per-site lock"),
];

pub(crate) struct Ctx<'a> {
    pub(crate) client: &'a Client,
    pub(crate) opts: &'a UpgradeOptions,
    pub(crate) journal: &'a Journal,
    pub(crate) reporter: &'a dyn Reporter,
    pub(crate) cancel: &'a Cancel,
    pub(crate) run: String,
}

/// Runs the upgrade across `jobs` (in inventory order), batch by batch.
///
/// # Errors
///
/// [`PlaybookError`] only when the run cannot start or the journal fails; every host and
/// site problem is in the returned report.
///
/// # Cancel safety
///
/// Not cancel safe: cancel through `cancel` and await the report.
pub async fn run_upgrade(
    client: &Client,
    jobs: Vec<HostJob>,
    opts: &UpgradeOptions,
    journal: &Journal,
    reporter: &dyn Reporter,
    gate: Option<&dyn Gate>,
    cancel: &Cancel,
) -> Result<RunReport, PlaybookError> {
    let jobs: Vec<HostJob> = jobs
        .into_iter()
        .filter(|j| !j.host.sites.is_empty())
        .collect();
    if jobs.is_empty() {
        return Err(PlaybookError::Plan(
            "no selected host has sites to upgrade".into(),
        ));
    }
    let run = match &opts.resume {
        Some(id) => {
            journal.reopen_run(id)?;
            id.clone()
        }
        None => journal.create_run(&RunInfo {
            procedure: opts.playbook.as_ref().map_or_else(
                || "civicrm-d7".to_owned(),
                |p| format!("playbook:{}", p.name),
            ),
            target: opts.target.clone(),
            args: opts.args.clone(),
        })?,
    };
    journal.set_artifact(
        &run,
        "",
        "run",
        "tarball",
        &opts.tarball.display().to_string(),
    )?;
    if let Some(pb) = &opts.playbook {
        journal.set_artifact(&run, "", "run", "playbook", &pb.text)?;
    }
    let sizes = opts.batches.sizes(jobs.len());
    let batch_budget: Vec<usize> = sizes.iter().map(|&n| opts.max_fail.of(n)).collect();
    let run_budget = opts.max_fail.of(jobs.len());
    // Every site is in the journal before anything happens, so `runs show` lists them all.
    let mut batch_of = Vec::with_capacity(jobs.len());
    for (b, &n) in sizes.iter().enumerate() {
        batch_of.extend(std::iter::repeat_n(b, n));
    }
    for (job, &b) in jobs.iter().zip(&batch_of) {
        for site in &job.host.sites {
            journal.site(
                &run,
                &job.host.name,
                &site.name,
                &SiteUpdate {
                    batch: Some(b as i64),
                    status: Some("pending"),
                    to_version: Some(&opts.target),
                    ..Default::default()
                },
            )?;
        }
    }
    reporter.on_event(&Event::RunStarted {
        run: run.clone(),
        hosts: jobs.len(),
        sites: jobs.iter().map(|j| j.host.sites.len()).sum(),
        batches: sizes.clone(),
        batch_budget: batch_budget.clone(),
        run_budget,
    });
    let ctx = Ctx {
        client,
        opts,
        journal,
        reporter,
        cancel,
        run: run.clone(),
    };
    let mut reports: Vec<SiteReport> = Vec::new();
    let mut stopped: Option<String> = None;
    let mut total_failed = 0usize;
    let mut start = 0usize;
    for (index, &size) in sizes.iter().enumerate() {
        let batch = &jobs[start..start + size];
        start += size;
        let names: Vec<String> = batch.iter().map(|j| j.host.name.clone()).collect();
        if stopped.is_none() && cancel.drain.is_cancelled() {
            stopped = Some("interrupted: no further batch admitted".into());
        }
        if stopped.is_none()
            && index > 0
            && let Some(g) = gate
            && !g.proceed(index, &names)
        {
            stopped = Some(format!("operator declined batch {}", index + 1));
        }
        if let Some(why) = &stopped {
            for j in batch {
                for s in &j.host.sites {
                    let outcome = SiteOutcome::NotStarted {
                        reason: why.clone(),
                    };
                    finish_site(&ctx, &j.host.name, &s.name, index, &outcome, None)?;
                    reports.push(SiteReport {
                        host: j.host.name.clone(),
                        site: s.name.clone(),
                        batch: index,
                        outcome,
                    });
                }
            }
            continue;
        }
        reporter.on_event(&Event::BatchStarted {
            index,
            hosts: names,
        });
        let batch_reports = run_batch(&ctx, batch, index).await;
        let mut failed: Vec<&str> = batch
            .iter()
            .filter(|j| {
                batch_reports
                    .iter()
                    .any(|r| r.host == j.host.name && r.outcome.is_failure(opts.unreachable_counts))
            })
            .map(|j| j.host.name.as_str())
            .collect();
        // `--bake`: let the batch run for a while, then check its sites again before the
        // next batch is admitted; a site that no longer verifies fails its host.
        if let Some(d) = opts.bake
            && index + 1 < sizes.len()
            && !cancel.drain.is_cancelled()
        {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = cancel.drain.cancelled() => {}
            }
            let problems = crate::host::bake_check(&ctx, batch, &batch_reports).await;
            for (host, _) in &problems {
                if !failed.contains(&host.as_str()) {
                    failed.push(
                        batch
                            .iter()
                            .find(|j| j.host.name == *host)
                            .map_or("", |j| j.host.name.as_str()),
                    );
                }
            }
            reporter.on_event(&Event::Baked {
                index,
                problems: problems.iter().map(|(h, p)| format!("{h}: {p}")).collect(),
            });
        }
        let failed_hosts = failed.len();
        total_failed += failed_hosts;
        reporter.on_event(&Event::BatchFinished {
            index,
            failed: failed_hosts,
            allowed: batch_budget[index],
        });
        reports.extend(batch_reports);
        if failed_hosts > batch_budget[index] {
            stopped = Some(format!(
                "batch {} had {failed_hosts} failed host(s), more than its budget of {}",
                index + 1,
                batch_budget[index]
            ));
        } else if total_failed > run_budget {
            stopped = Some(format!(
                "{total_failed} failed host(s) in the run, more than its budget of {run_budget}"
            ));
        } else if cancel.abort.is_cancelled() {
            stopped = Some("aborted".into());
        }
        if let Some(why) = &stopped {
            reporter.on_event(&Event::Stopped {
                reason: why.clone(),
            });
        }
    }
    let state = if cancel.drain.is_cancelled() {
        "interrupted"
    } else if reports.iter().all(|r| r.outcome.at_target()) {
        "finished"
    } else {
        "failed"
    };
    journal.finish_run(&run, state)?;
    Ok(RunReport {
        run,
        sites: reports,
        stopped,
    })
}

/// Runs one batch: hosts in parallel up to `forks`, and at most `max_per[key]` hosts sharing a
/// value of var `key`.
pub(crate) async fn run_batch(ctx: &Ctx<'_>, batch: &[HostJob], index: usize) -> Vec<SiteReport> {
    let forks = Arc::new(Semaphore::new(ctx.opts.forks.max(1)));
    let mut caps: HashMap<(String, String), Arc<Semaphore>> = HashMap::new();
    let mut futures = Vec::with_capacity(batch.len());
    for job in batch {
        let mut sems = vec![forks.clone()];
        for (key, &n) in &ctx.opts.max_per {
            if let Some(v) = job.host.var(key) {
                sems.push(
                    caps.entry((key.clone(), v))
                        .or_insert_with(|| Arc::new(Semaphore::new(n)))
                        .clone(),
                );
            }
        }
        futures.push(async move {
            let mut permits = Vec::with_capacity(sems.len());
            for s in &sems {
                tokio::select! {
                    biased;
                    () = ctx.cancel.drain.cancelled() => {
                        return not_started(ctx, job, index, "interrupted before this host was admitted");
                    }
                    p = s.clone().acquire_owned() => match p {
                        Ok(p) => permits.push(p),
                        Err(_) => return not_started(ctx, job, index, "internal: semaphore closed"),
                    },
                }
            }
            run_host(ctx, job, index).await
        });
    }
    // Hosts of a batch run concurrently on this task's runtime; the SSH work itself is spread
    // over the runtime's workers by russh's own connection tasks.
    futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect()
}

pub(crate) fn not_started(
    ctx: &Ctx<'_>,
    job: &HostJob,
    batch: usize,
    why: &str,
) -> Vec<SiteReport> {
    job.host
        .sites
        .iter()
        .map(|s| {
            let outcome = SiteOutcome::NotStarted { reason: why.into() };
            let _ = finish_site(ctx, &job.host.name, &s.name, batch, &outcome, None);
            SiteReport {
                host: job.host.name.clone(),
                site: s.name.clone(),
                batch,
                outcome,
            }
        })
        .collect()
}

pub(crate) fn finish_site(
    ctx: &Ctx<'_>,
    host: &str,
    site: &str,
    _batch: usize,
    outcome: &SiteOutcome,
    from: Option<&str>,
) -> Result<(), PlaybookError> {
    let detail = outcome.to_string();
    ctx.journal.site(
        &ctx.run,
        host,
        site,
        &SiteUpdate {
            status: Some(outcome.status()),
            detail: Some(&detail),
            from_version: from,
            in_maintenance: Some(outcome.left_in_maintenance()),
            ..Default::default()
        },
    )?;
    ctx.reporter.on_event(&Event::SiteFinished {
        host: host.into(),
        site: site.into(),
        outcome: outcome.clone(),
    });
    Ok(())
}
