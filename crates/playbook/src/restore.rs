//! `fleet recover` and `fleet rollback`: bringing a run's sites to a safe end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fleet_inventory::{Amount, Batches, Site};
use fleet_remote_exec::Client;

use crate::civicrm::{self, SiteCmds};
use crate::error::PlaybookError;
use crate::event::Reporter;
use crate::host::{Changes, HostRun, Work, error_text, failed, group_units, step_error_text};
use crate::journal::Journal;
use crate::outcome::{After, SiteOutcome, SiteReport};
use crate::runner::{Cancel, Ctx, HostJob, OnFailure, UpgradeOptions, finish_site};

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

/// Whether a site row of a run needs [`restore_run`] in `mode`.
pub fn needs_restore(row: &crate::journal::SiteRow, mode: RestoreMode) -> bool {
    let midway = matches!(
        row.status.as_str(),
        "running" | "interrupted" | "rollback-failed" | "held"
    );
    match mode {
        RestoreMode::Recover => row.in_maintenance || midway,
        RestoreMode::Rollback => midway || row.in_maintenance || row.status == "upgraded",
    }
}

/// Recovers or rolls back the sites of run `run` that need it (see [`needs_restore`]) on
/// `jobs` (the inventory hosts they live on), recording every step in the same run.
///
/// # Errors
///
/// [`PlaybookError::UnknownRun`], or journal failures; host problems are in the reports.
#[allow(clippy::too_many_arguments)]
pub async fn restore_run(
    client: &Client,
    jobs: &[HostJob],
    journal: &Journal,
    reporter: &dyn Reporter,
    cancel: &Cancel,
    run: &str,
    mode: RestoreMode,
    only_sites: &[String],
    step_timeout: Duration,
) -> Result<Vec<SiteReport>, PlaybookError> {
    let info = journal
        .run(run)?
        .ok_or_else(|| PlaybookError::UnknownRun(run.to_owned()))?;
    let wanted = |r: &crate::journal::SiteRow| {
        only_sites.is_empty()
            || only_sites
                .iter()
                .any(|s| *s == r.site || *s == format!("{}/{}", r.host, r.site))
    };
    // Every site of a host that has a wanted site is looked at: the ones sharing its codebase
    // or database must go back with it (restoring shared code under an upgraded database
    // would leave "futuristic data"); the others are left alone.
    let all: Vec<_> = journal
        .sites(run)?
        .into_iter()
        .filter(|r| needs_restore(r, mode))
        .collect();
    let rows: Vec<_> = all
        .iter()
        .filter(|r| all.iter().any(|w| w.host == r.host && wanted(w)))
        .cloned()
        .collect();
    let requested: Vec<String> = all
        .iter()
        .filter(|r| wanted(r))
        .map(|r| format!("{}/{}", r.host, r.site))
        .collect();
    let opts = UpgradeOptions {
        tarball: PathBuf::new(),
        target: info.target.clone(),
        batches: Batches(vec![Amount::Percent(100)]),
        max_fail: Amount::Percent(100),
        unreachable_counts: true,
        max_per: BTreeMap::new(),
        forks: 20,
        on_failure: OnFailure::Rollback,
        step_timeout,
        args: info.args.clone(),
        playbook: None,
        resume: None,
        break_lock: None,
        bake: None,
    };
    let ctx = Ctx {
        client,
        opts: &opts,
        journal,
        reporter,
        cancel,
        run: run.to_owned(),
    };
    let futures = jobs
        .iter()
        .filter(|j| rows.iter().any(|r| r.host == j.host.name))
        .map(|job| {
            let mine: Vec<_> = rows
                .iter()
                .filter(|r| r.host == job.host.name)
                .cloned()
                .collect();
            let (ctx, requested) = (&ctx, &requested);
            async move {
                let outcomes = restore_host(ctx, job, &mine, mode, requested).await;
                let mut reports = Vec::new();
                for r in &mine {
                    let Some(outcome) = outcomes
                        .iter()
                        .find(|(s, _)| *s == r.site)
                        .map(|(_, o)| o.clone())
                    else {
                        // Not requested and not tied to a requested site: left as it is.
                        continue;
                    };
                    let _ = finish_site(ctx, &r.host, &r.site, 0, &outcome, None);
                    reports.push(SiteReport {
                        host: r.host.clone(),
                        site: r.site.clone(),
                        batch: r.batch.unwrap_or(0) as usize,
                        outcome,
                    });
                }
                reports
            }
        });
    let reports: Vec<SiteReport> = futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect();
    // Sites whose host is not in the inventory selection are reported as such.
    let mut out = reports;
    for r in rows
        .iter()
        .filter(|r| !jobs.iter().any(|j| j.host.name == r.host))
    {
        {
            out.push(SiteReport {
                host: r.host.clone(),
                site: r.site.clone(),
                batch: r.batch.unwrap_or(0) as usize,
                outcome: SiteOutcome::NotStarted {
                    reason: "host not in the selected inventory".into(),
                },
            });
        }
    }
    Ok(out)
}

pub(crate) async fn restore_host(
    ctx: &Ctx<'_>,
    job: &HostJob,
    rows: &[crate::journal::SiteRow],
    mode: RestoreMode,
    requested: &[String],
) -> Vec<(String, SiteOutcome)> {
    let host = &job.host.name;
    let sites: Vec<&Site> = job
        .host
        .sites
        .iter()
        .filter(|s| rows.iter().any(|r| r.site == s.name))
        .collect();
    let session = match ctx.client.connect(&job.target, &ctx.cancel.abort).await {
        Ok(s) => s,
        Err(e) => {
            let reason = error_text(&e);
            return sites
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        SiteOutcome::Unreachable {
                            reason: reason.clone(),
                        },
                    )
                })
                .collect();
        }
    };
    let h = HostRun {
        ctx,
        session: &session,
        host,
        job,
    };
    let owned: Vec<Site> = sites.iter().map(|s| (*s).clone()).collect();
    let live = match h
        .exec("host", "recover-probe", &civicrm::discover_script(&owned))
        .await
    {
        Ok(out) => civicrm::parse_discovery(&out),
        Err(e) => {
            let why = step_error_text(&e);
            session.close().await;
            return sites
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        failed("recover-probe", &why, After::RollbackFailed(why.clone())),
                    )
                })
                .collect();
        }
    };
    // Facts as they were before the run (journal), paths as they are now (probe).
    let mut work = Vec::new();
    for s in &sites {
        let row = rows.iter().find(|r| r.site == s.name);
        let mut f = live.get(&s.name).cloned().unwrap_or_default();
        let old = row.and_then(|r| r.from_version.clone()).unwrap_or_default();
        let prior = ctx
            .journal
            .artifact(
                &ctx.run,
                host,
                &format!("site:{}", s.name),
                "prior-maintenance",
            )
            .ok()
            .flatten();
        let live_maint = f.maintenance.clone();
        f.maintenance = prior.unwrap_or_else(|| live_maint.clone());
        let live_code = std::mem::replace(&mut f.code_version, old.clone());
        let live_db = std::mem::replace(&mut f.db_version, old);
        work.push((Work { site: s, facts: f }, live_code, live_db, live_maint));
    }
    let ws: Vec<Work<'_>> = work.iter().map(|(w, ..)| w.clone()).collect();
    let mut out = Vec::new();
    for g in group_units(&ws) {
        if !g.iter().any(|w| {
            requested
                .iter()
                .any(|r| *r == format!("{host}/{}", w.site.name))
        }) {
            continue;
        }
        let target = &ctx.opts.target;
        let live_of = |w: &Work<'_>| {
            work.iter()
                .find(|(x, ..)| x.site.name == w.site.name)
                .map(|(_, c, d, m)| (c.clone(), d.clone(), m.clone()))
                .unwrap_or_default()
        };
        let mut ch = Changes::default();
        for w in &g {
            let (_, _, m) = live_of(w);
            if m != w.facts.maintenance {
                ch.maintenance_on.insert(w.site.name.clone());
            }
            if let Ok(Some(mods)) = ctx.journal.artifact(
                &ctx.run,
                host,
                &format!("site:{}", w.site.name),
                "disabled-modules",
            ) {
                ch.modules_disabled.insert(
                    w.site.name.clone(),
                    mods.split_whitespace().map(str::to_owned).collect(),
                );
            }
        }
        let forward = mode == RestoreMode::Recover
            && g.iter().all(|w| {
                let (c, d, _) = live_of(w);
                c == *target && d == *target
            });
        let result = if forward {
            h.finish(&g, &mut ch)
                .await
                .map(|()| true)
                .map_err(|(step, e)| (step, step_error_text(&e)))
        } else {
            let first = &g[0];
            let backup = format!("{}/fleet-{}/code/civicrm", first.site.backup_dir, ctx.run);
            ch.code_moved = h
                .exec(
                    "host",
                    "recover-probe",
                    &format!(
                        "[ -d {} ] && echo yes || echo no",
                        fleet_remote_exec::quote(&backup)
                    ),
                )
                .await
                .is_ok_and(|o| o.trim() == "yes");
            for w in &g {
                let (_, d, _) = live_of(w);
                if !d.is_empty() && d != w.facts.db_version {
                    ch.db_upgrade_started.insert(w.facts.civi_db.clone());
                }
            }
            // Down first: never swap code or load a dump under a live site.
            let mut down = Ok(());
            for w in &g {
                let (_, _, m) = live_of(w);
                if m != "1" {
                    let c = SiteCmds::new(w.site, &w.facts);
                    ch.maintenance_on.insert(w.site.name.clone());
                    h.mark(w, "maintenance-on", "running", Some(true));
                    if let Err(e) = h
                        .exec(
                            &format!("site:{}", w.site.name),
                            "maintenance-on",
                            &c.set_maintenance("1"),
                        )
                        .await
                    {
                        down = Err(("maintenance-on".to_owned(), step_error_text(&e)));
                        break;
                    }
                }
            }
            match down {
                Err(e) => Err(e),
                Ok(()) => h
                    .put_back(&g, &mut ch)
                    .await
                    .map(|()| false)
                    .map_err(|why| ("restore".to_owned(), why)),
            }
        };
        for w in &g {
            let outcome = match &result {
                Ok(true) => SiteOutcome::Upgraded {
                    from: w.facts.code_version.clone(),
                    to: target.clone(),
                },
                Ok(false) => failed(
                    if mode == RestoreMode::Rollback {
                        "rollback"
                    } else {
                        "recover"
                    },
                    "restored from this run's backups",
                    After::RolledBack,
                ),
                Err((step, why)) => failed(step, why, After::RollbackFailed(why.clone())),
            };
            out.push((w.site.name.clone(), outcome));
        }
        if result.is_ok() {
            h.unlock_group(&g).await;
        }
    }
    session.close().await;
    out
}
