//! `fleet recover` and `fleet rollback`: bringing a run's sites to a safe end, or back to the
//! run's backups, without ever destroying data.
//!
//! A restore is a side effect like any other, and the most dangerous one: it replaces a live
//! database. So, per group of sites that share a codebase or a database:
//! 1. no step of the run may still be running on the host (see `inflight.rs`);
//! 2. `fleet rollback` refuses a site that a later run touched, or that is no longer at this
//!    run's target version (its backups describe a site that no longer exists), unless
//!    `--force`;
//! 3. every source is verified on the host before anything changes: each dump exists, is
//!    complete and has the SHA-256 the journal recorded; the code backup holds the old
//!    version. A failed check changes nothing;
//! 4. `fleet rollback` then dumps every database it is about to replace (a safety dump, kept
//!    and recorded in the journal, so the rollback itself can be undone);
//! 5. only then: maintenance on, code and databases back, maintenance as before the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleet_inventory::Site;
use fleet_remote_exec::Client;

use crate::classify::group_units;
use crate::context::{Cancel, Ctx, HostJob, OnFailure, Settings};
use crate::discovery::{self, Facts};
use crate::engine::{HostRun, error_text, failed, finish_site, step_error_text};
use crate::error::PlaybookError;
use crate::event::Reporter;
use crate::journal::{HeldLock, Journal, SiteRow};
use crate::outcome::{After, SiteOutcome, SiteReport};
use crate::procedure::AnyProcedure;
use crate::procedure::civicrm::Changes;
use crate::procedure::civicrm::commands::{PRELUDE, SiteCmds};
use crate::remote::Connect;
use crate::vocab::{ArtifactKind, SiteStatus};
use crate::work::Work;

mod group;
mod release;
mod rollback;

use crate::vocab::{BuiltinStep, Unit};
use group::{GroupEnd, restore_group};
pub(crate) use release::lone_locks;
pub use rollback::later_runs;

/// What [`restore_run`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// Bring every site left mid-way or in maintenance to its nearest safe end: forward when
    /// its database already reached the target, else back to the run's backups.
    Recover,
    /// Put sites back on their old code and database from the run's backups, even finished
    /// ones, with maintenance as it was before the run.
    Rollback,
}

/// How [`restore_run`] goes about it.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Recover or roll back.
    pub mode: RestoreMode,
    /// Only these sites (`site` or `host/site`) and the ones sharing their codebase or
    /// database; empty means every site that needs it.
    pub sites: Vec<String>,
    /// Bound on each remote step.
    pub step_timeout: Duration,
    /// Whether sites restored by a recovery come out of maintenance ([`OnFailure::Rollback`],
    /// what `fleet recover` asks) or stay down ([`OnFailure::Hold`]: a host lost in the middle
    /// of a run with that policy). A rollback always brings them back up; a restore that
    /// failed never does.
    pub on_failure: OnFailure,
    /// Roll back even sites a later run touched or that are no longer at the run's target.
    pub force: bool,
    /// Verify everything and say what would be restored; change nothing.
    pub plan: bool,
    /// Hosts restored at once.
    pub forks: usize,
}

/// What a rollback would do to one site (`fleet rollback --plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackPlan {
    /// Host.
    pub host: String,
    /// Site.
    pub site: String,
    /// Code and database versions on the host now.
    pub live: String,
    /// The version it would be back on.
    pub back_to: String,
    /// The dumps it would load: `(path, unix time taken)`.
    pub dumps: Vec<(String, Option<i64>)>,
    /// Why it would be refused (nothing would change), if it would.
    pub refused: Option<String>,
}

/// What [`restore_run`] did, or with `plan`, would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// One report per site acted on (empty with `plan`).
    pub sites: Vec<SiteReport>,
    /// With `plan`: one row per site.
    pub plan: Vec<RollbackPlan>,
}

/// The locks run `run` left on sites that need no restore (`restoring` are the rows that
/// do): what `fleet recover` releases besides bringing those rows to a safe end.
///
/// # Errors
///
/// When the journal cannot be read.
pub fn locks_left(
    journal: &Journal,
    run: &str,
    restoring: &[SiteRow],
) -> Result<Vec<HeldLock>, PlaybookError> {
    lone_locks(journal, run, restoring, |_, _| true)
}

/// Whether a site row of a run needs [`restore_run`] in `mode`.
pub fn needs_restore(row: &SiteRow, mode: RestoreMode) -> bool {
    let midway = row.status.is_midway();
    match mode {
        RestoreMode::Recover => row.in_maintenance || midway,
        RestoreMode::Rollback => midway || row.in_maintenance || row.status == SiteStatus::Upgraded,
    }
}

fn is(s: &str, r: &SiteRow) -> bool {
    *s == r.site || *s == format!("{}/{}", r.host, r.site)
}

/// Checks that every `--site` (`site` or `host/site`) names a site of run `run` (`rows`).
///
/// # Errors
///
/// [`PlaybookError::Plan`] naming the first unknown one and the run's sites.
pub fn check_sites(run: &str, rows: &[SiteRow], sites: &[String]) -> Result<(), PlaybookError> {
    match sites.iter().find(|s| !rows.iter().any(|r| is(s, r))) {
        None => Ok(()),
        Some(nosuch) => Err(PlaybookError::Plan(format!(
            "run `{run}` has no site `{nosuch}`; its sites: {}",
            rows.iter()
                .map(|r| format!("{}/{}", r.host, r.site))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Recovers or rolls back the sites of run `run` that need it (see [`needs_restore`]) on
/// `jobs` (the inventory hosts they live on), recording every step in the same run.
///
/// # Errors
///
/// [`PlaybookError::UnknownRun`], [`PlaybookError::Plan`] for a `--site` the run does not
/// have, or journal failures; host problems are in the reports.
pub async fn restore_run(
    client: &Client,
    jobs: &[HostJob],
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
    run: &str,
    ro: &RestoreOptions,
) -> Result<RestoreReport, PlaybookError> {
    let connect: Arc<dyn Connect> = Arc::new(client.clone());
    restore_run_on(&connect, jobs, journal, reporter, cancel, run, ro).await
}

/// [`restore_run`] over any [`Connect`] (the unit tests' local hosts).
pub(crate) async fn restore_run_on(
    connect: &Arc<dyn Connect>,
    jobs: &[HostJob],
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
    run: &str,
    ro: &RestoreOptions,
) -> Result<RestoreReport, PlaybookError> {
    let info = journal
        .run(run)?
        .ok_or_else(|| PlaybookError::UnknownRun(run.to_owned()))?;
    crate::procedure::migrate::refuse_upgrade_tools(&info)?;
    let every = journal.sites(run)?;
    check_sites(run, &every, &ro.sites)?;
    let wanted = |r: &SiteRow| ro.sites.is_empty() || ro.sites.iter().any(|s| is(s, r));
    // Every site of a host that has a wanted site is looked at: the ones sharing its codebase
    // or database must go back with it (restoring shared code under an upgraded database
    // would leave "futuristic data"); the others are left alone.
    let all: Vec<SiteRow> = every
        .into_iter()
        .filter(|r| needs_restore(r, ro.mode))
        .collect();
    let rows: Vec<SiteRow> = all
        .iter()
        .filter(|r| all.iter().any(|w| w.host == r.host && wanted(w)))
        .cloned()
        .collect();
    let requested: Vec<String> = all
        .iter()
        .filter(|r| wanted(r))
        .map(|r| format!("{}/{}", r.host, r.site))
        .collect();
    // A recovery also gives back the locks the run left on sites that need nothing else.
    let release = if ro.mode == RestoreMode::Recover && !ro.plan {
        lone_locks(journal, run, &all, |host, site| {
            ro.sites.is_empty()
                || ro
                    .sites
                    .iter()
                    .any(|s| s == site || *s == format!("{host}/{site}"))
        })?
    } else {
        Vec::new()
    };
    let mut later = BTreeMap::new();
    if ro.mode == RestoreMode::Rollback {
        for r in &rows {
            let l = later_runs(journal, run, &r.host, &r.site)?;
            if !l.is_empty() {
                later.insert(format!("{}/{}", r.host, r.site), l);
            }
        }
    }
    // A restore runs the built-in undo chain and maintenance back to the prior state; it
    // uploads nothing and takes no lock over.
    let settings = Settings {
        target: info.target.clone(),
        step_timeout: ro.step_timeout,
        on_failure: match ro.mode {
            RestoreMode::Recover => ro.on_failure,
            RestoreMode::Rollback => OnFailure::Rollback,
        },
        procedure: AnyProcedure::Civicrm,
        tarball: None,
        l10n: None,
        translations: Default::default(),
        break_lock: None,
    };
    let ctx = Ctx {
        connect: connect.clone(),
        settings: Arc::new(settings),
        journal: journal.clone(),
        reporter: reporter.clone(),
        cancel: cancel.clone(),
        run: run.to_owned(),
    };
    let scope = Arc::new(Scope {
        mode: ro.mode,
        force: ro.force,
        plan: ro.plan,
        requested,
        later,
    });
    // Each host is its own task, at most `forks` at once: its waits (the journal's fsync, a
    // slow restore) never hold up another host.
    let forks = Arc::new(tokio::sync::Semaphore::new(ro.forks.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for job in jobs.iter().filter(|j| {
        rows.iter().any(|r| r.host == j.host.name) || release.iter().any(|l| l.host == j.host.name)
    }) {
        let mine: Vec<SiteRow> = rows
            .iter()
            .filter(|r| r.host == job.host.name)
            .cloned()
            .collect();
        let locks: Vec<HeldLock> = release
            .iter()
            .filter(|l| l.host == job.host.name)
            .cloned()
            .collect();
        let (ctx, scope, job, forks) = (ctx.clone(), scope.clone(), job.clone(), forks.clone());
        tasks.spawn(async move {
            let ctx = &ctx;
            let _permit = tokio::select! {
                biased;
                () = ctx.cancel.drain.cancelled() => return (Vec::new(), Vec::new()),
                p = forks.acquire_owned() => p,
            };
            if ctx.cancel.drain.is_cancelled() {
                return (Vec::new(), Vec::new());
            }
            // A panic (a bug in fleet) ends this host's restore only: its sites keep
            // their rows, as the journal had them, for another `fleet recover`.
            let restored = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                restore_host(ctx, &job, &mine, &locks, &scope),
            ))
            .await;
            let (outcomes, plan) = match restored {
                Ok(r) => r,
                Err(p) => {
                    let why = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    let outcome = failed(
                        "internal",
                        &format!(
                            "internal error in fleet: {why}; nothing more was done on this host"
                        ),
                        After::RollbackFailed("the restore stopped part-way".into()),
                    );
                    (
                        mine.iter()
                            .map(|r| (r.site.clone(), outcome.clone(), Changed::No))
                            .collect(),
                        Vec::new(),
                    )
                }
            };
            let mut reports = Vec::new();
            for r in &mine {
                let Some((outcome, changed)) = outcomes
                    .iter()
                    .find(|(s, ..)| *s == r.site)
                    .map(|(_, o, c)| (o.clone(), *c))
                else {
                    // Not requested and not tied to a requested site: left as it is.
                    continue;
                };
                // A site the restore did not change keeps its journal row (an upgraded
                // site is still upgraded and can be rolled back later; a site down is
                // still down and will be recovered).
                if changed == Changed::Yes
                    && let Err(e) = finish_site(ctx, &r.host, &r.site, 0, &outcome, None)
                {
                    tracing::error!("journal: {e}");
                }
                reports.push(SiteReport {
                    host: r.host.clone(),
                    site: r.site.clone(),
                    batch: r.batch.unwrap_or(0) as usize,
                    outcome,
                });
            }
            (reports, plan)
        });
    }
    let mut report = RestoreReport::default();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((sites, plan)) => {
                report.sites.extend(sites);
                report.plan.extend(plan);
            }
            // Panics are caught inside the task; a task can only be lost if the runtime
            // is shutting down, and then its sites keep their rows for `fleet recover`.
            Err(e) => tracing::error!("restore task: {e}"),
        }
    }
    // Hosts finish in any order; the report lists them as the inventory does.
    let order = |host: &str| jobs.iter().position(|j| j.host.name == host);
    report.sites.sort_by_key(|r| order(&r.host));
    report.plan.sort_by_key(|p| order(&p.host));
    let later = &scope.later;
    // A forced rollback undid the later runs on these sites: their rows must stop saying
    // the sites are at their targets.
    for r in report
        .sites
        .iter()
        .filter(|r| matches!(r.outcome, SiteOutcome::RolledBack { .. }))
    {
        for l in later
            .get(&format!("{}/{}", r.host, r.site))
            .into_iter()
            .flatten()
        {
            let detail = format!("undone by `fleet rollback {run} --force`");
            journal.site(
                l,
                &r.host,
                &r.site,
                &crate::journal::SiteUpdate {
                    status: Some(SiteStatus::Superseded),
                    in_maintenance: Some(false),
                    detail: Some(&detail),
                    ..Default::default()
                },
            )?;
        }
    }
    // Sites whose host is not in the inventory selection are reported as such.
    for r in rows
        .iter()
        .filter(|r| !jobs.iter().any(|j| j.host.name == r.host))
        .filter(|r| scope.requested.contains(&format!("{}/{}", r.host, r.site)))
    {
        report.sites.push(SiteReport {
            host: r.host.clone(),
            site: r.site.clone(),
            batch: r.batch.unwrap_or(0) as usize,
            outcome: SiteOutcome::NotStarted {
                reason: "host not in the selected inventory".into(),
            },
        });
    }
    Ok(report)
}

/// What one host's restore may do, shared by every host of the run.
struct Scope {
    mode: RestoreMode,
    force: bool,
    plan: bool,
    requested: Vec<String>,
    /// `host/site` -> later runs that touched it.
    later: BTreeMap<String, Vec<String>>,
}

/// One site of a group as the restore sees it: facts as they were before the run (the
/// journal) with paths as they are now (the probe), and what is live on the host.
struct Live<'a> {
    work: Work<'a>,
    code: String,
    db: String,
    maintenance: String,
    /// The journal row as the restore found it (put back when a rollback is refused late).
    row: Option<SiteRow>,
}

/// Whether the restore changed a site (and so its journal row must say how it ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    Yes,
    No,
}

type HostResult = (Vec<(String, SiteOutcome, Changed)>, Vec<RollbackPlan>);

async fn restore_host(
    ctx: &Ctx,
    job: &HostJob,
    rows: &[SiteRow],
    locks: &[HeldLock],
    scope: &Scope,
) -> HostResult {
    let host = &job.host.name;
    let sites: Vec<&Site> = job
        .host
        .sites
        .iter()
        .filter(|s| rows.iter().any(|r| r.site == s.name))
        .collect();
    // Nothing could be looked at, so nothing changed.
    let all_fail = |outcome: SiteOutcome| -> HostResult {
        (
            sites
                .iter()
                .map(|s| (s.name.clone(), outcome.clone(), Changed::No))
                .collect(),
            Vec::new(),
        )
    };
    let session = match ctx.connect.connect(&job.target, &ctx.cancel.abort).await {
        Ok(s) => s,
        Err(e) => {
            return all_fail(SiteOutcome::Unreachable {
                reason: error_text(&e),
            });
        }
    };
    let h = HostRun {
        ctx,
        session: &*session,
        host,
        job,
        prelude: PRELUDE,
    };
    let result = restore_on(&h, &sites, rows, locks, scope).await;
    session.close().await;
    match result {
        Ok(r) => r,
        Err(why) => all_fail(match scope.mode {
            RestoreMode::Rollback => SiteOutcome::Refused { reason: why },
            RestoreMode::Recover => failed(
                BuiltinStep::RecoverProbe,
                &why,
                After::RollbackFailed(why.clone()),
            ),
        }),
    }
}

/// The restore on one connected host. `Err` when nothing could be looked at (nothing changed).
async fn restore_on(
    h: &HostRun<'_>,
    sites: &[&Site],
    rows: &[SiteRow],
    locks: &[HeldLock],
    scope: &Scope,
) -> Result<HostResult, String> {
    let (ctx, host) = (h.ctx, h.host);
    // 1. Nothing is undone under a step of the run that is still running (and a plan,
    //    which changes nothing, does not wait for it or kill it either).
    if scope.plan {
        if let Some(pids) = crate::inflight::running(ctx, h.session, host, &ctx.run).await? {
            return Err(format!(
                "a step of run {} is still running on the host (pid {pids}); what it leaves is not known yet",
                ctx.run
            ));
        }
    } else {
        crate::inflight::settle(ctx, h.session, host, &ctx.run).await?;
    }
    release::release_locks(h, locks).await;
    if sites.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let owned: Vec<Site> = sites.iter().map(|s| (*s).clone()).collect();
    let live = h
        .exec(
            &Unit::Host,
            BuiltinStep::RecoverProbe,
            &discovery::discover_script(&owned),
        )
        .await
        .map(|out| discovery::parse_discovery(&out, &owned))
        .map_err(|e| step_error_text(&e))?;
    let mut all: Vec<Live<'_>> = Vec::new();
    for s in sites {
        let row = rows.iter().find(|r| r.site == s.name);
        let mut f = live.get(&s.name).cloned().unwrap_or_default();
        if let Some(e) = &f.error {
            return Err(format!("site `{}`: {e}", s.name));
        }
        let old = row.and_then(|r| r.from_version.clone()).unwrap_or_default();
        let prior = ctx
            .journal
            .artifact(
                &ctx.run,
                host,
                &Unit::site(&s.name),
                ArtifactKind::PriorMaintenance,
            )
            // Without the prior state, a site would be kept down and called "as before".
            .map_err(|e| {
                format!(
                    "cannot read the prior maintenance state of `{}`: {e}",
                    s.name
                )
            })?;
        let live_maint = f.maintenance.clone();
        f.maintenance = prior.unwrap_or_else(|| live_maint.clone());
        let code = std::mem::replace(&mut f.code_version, old.clone());
        let db = std::mem::replace(&mut f.db_version, old);
        all.push(Live {
            work: Work {
                site: s,
                facts: f,
                prior_from: None,
            },
            code,
            db,
            maintenance: live_maint,
            row: row.cloned(),
        });
    }
    let works: Vec<Work<'_>> = all.iter().map(|l| l.work.clone()).collect();
    let mut out = Vec::new();
    let mut plans = Vec::new();
    for g in group_units(&works) {
        if !g
            .iter()
            .any(|w| scope.requested.contains(&format!("{host}/{}", w.site.name)))
        {
            continue;
        }
        let group: Vec<&Live<'_>> = g
            .iter()
            .filter_map(|w| all.iter().find(|l| l.work.site.name == w.site.name))
            .collect();
        let (outcomes, changed, released) =
            match restore_group(h, &g, &group, rows, scope, &mut plans).await {
                GroupEnd::Done(o) => (o, Changed::Yes, true),
                GroupEnd::Left(o) => (o, Changed::Yes, false),
                GroupEnd::Unchanged(o) => (o, Changed::No, false),
                GroupEnd::Planned => continue,
            };
        out.extend(
            g.iter()
                .zip(outcomes)
                .map(|(w, o)| (w.site.name.clone(), o, changed)),
        );
        if released {
            h.unlock_group(&g).await;
        }
    }
    Ok((out, plans))
}
