//! `fleet migrate cleanup RUN --plan`: what a cleanup would remove and keep of each site,
//! found with the cleanup's own read-only check and decided by the same rules; no journal
//! write, no lock, nothing removed.

use std::sync::Arc;
use std::time::Duration;

use fleet_remote_exec::{Client, ExecOptions, RemoteCommand};
use tokio::sync::Semaphore;

use super::{plan, script};
use crate::context::{Cancel, HostJob};
use crate::engine::{error_text, last_line};
use crate::error::PlaybookError;
use crate::journal::{Journal, RunRow};
use crate::remote::Connect;

/// What `--plan` found for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupPlanRow {
    /// Host.
    pub host: String,
    /// Site.
    pub site: String,
    /// `remove`, `skip`, `refuse` or `unreachable`.
    pub action: String,
    /// `old` (the site is released: its old side goes) or `new`; empty unless `remove`.
    pub side: String,
    /// What would go: databases (`database NAME`) and directories.
    pub remove: Vec<String>,
    /// What would stay that might have gone, and why.
    pub kept: Vec<String>,
    /// Why, for `skip`, `refuse` and `unreachable`; for `remove`, whether it goes on with
    /// the plan an earlier cleanup journaled.
    pub reason: String,
}

/// What `fleet migrate cleanup RUN --older-than AGE` would do on the selected sites.
///
/// # Errors
///
/// [`PlaybookError::Plan`] when `run` is not a migrate run or none of the selected hosts has
/// a site of it; journal errors.
#[allow(clippy::too_many_arguments)]
pub async fn plan_migrate_cleanup(
    client: &Client,
    jobs: Vec<HostJob>,
    run: &RunRow,
    sites: &[String],
    older_than: Duration,
    forks: usize,
    step_timeout: Duration,
    journal: &Journal,
    cancel: &Cancel,
) -> Result<Vec<CleanupPlanRow>, PlaybookError> {
    super::super::run::recorded_manifest(journal, run)?;
    let (jobs, around) = super::super::run::cleanup_jobs(jobs, journal, run, sites)?;
    let limit = Arc::new(Semaphore::new(forks.max(1)));
    let futures = jobs.iter().map(|job| {
        let limit = limit.clone();
        let around = around.get(&job.host.name).cloned().unwrap_or_default();
        async move {
            let _permit = limit.acquire_owned().await;
            let host = job.host.name.as_str();
            let row = |site: &str, action: &str, why: &str| CleanupPlanRow {
                host: host.to_owned(),
                site: site.to_owned(),
                action: action.to_owned(),
                side: String::new(),
                remove: Vec::new(),
                kept: Vec::new(),
                reason: why.to_owned(),
            };
            // The journal first: a site it leaves alone needs no host.
            let recs: Vec<_> = job
                .host
                .sites
                .iter()
                .map(|s| {
                    (
                        s,
                        plan::precheck(journal, &run.id, host, &s.name, older_than),
                    )
                })
                .collect();
            if recs.iter().all(|(_, r)| r.is_err()) {
                return recs
                    .into_iter()
                    .map(|(s, r)| row(&s.name, "skip", &r.err().unwrap_or_default()))
                    .collect::<Vec<_>>();
            }
            let session = match Connect::connect(client, &job.target, &cancel.abort).await {
                Ok(s) => s,
                Err(e) => {
                    let why = error_text(&e);
                    return recs
                        .into_iter()
                        .map(|(s, _)| row(&s.name, "unreachable", &why))
                        .collect();
                }
            };
            let mut rows = Vec::new();
            for (s, rec) in recs {
                let rec = match rec {
                    Ok(r) => r,
                    Err(why) => {
                        rows.push(row(&s.name, "skip", &why));
                        continue;
                    }
                };
                let out = session
                    .exec(
                        &RemoteCommand::shell(script::check(
                            s,
                            &rec,
                            &around.currents,
                            &around.roots,
                        )),
                        &ExecOptions {
                            timeout: step_timeout,
                            max_output: 1 << 20,
                        },
                        &cancel.abort,
                    )
                    .await;
                let found = match out {
                    Err(e) => {
                        rows.push(row(&s.name, "unreachable", &error_text(&e)));
                        continue;
                    }
                    Ok(o) if !o.status.success() => {
                        let why = format!(
                            "the check failed: {}",
                            last_line(&o.stderr.to_string_lossy())
                        );
                        rows.push(row(&s.name, "refuse", &why));
                        continue;
                    }
                    Ok(o) => script::complete(&o.stdout.to_string_lossy()),
                };
                let decided = match (&rec.planned, found) {
                    (_, Err(why)) => Err(why),
                    (Some(Some(p)), Ok(_)) => Ok((
                        p.clone(),
                        "goes on with the plan an earlier cleanup journaled",
                    )),
                    (Some(None), Ok(_)) => {
                        Err("the journal's cleanup plan for the site cannot be read".into())
                    }
                    (None, Ok(f)) => plan::decide(&run.id, &s.name, &rec, &f).map(|p| (p, "")),
                };
                match decided {
                    Ok((p, why)) => {
                        let mut r = row(&s.name, "remove", why);
                        r.side = if p.old_side { "old" } else { "new" }.into();
                        for db in p.drop_civi.iter().chain(&p.drop) {
                            r.remove.push(format!("database `{db}`"));
                        }
                        r.remove.extend(p.code.clone());
                        r.kept = p.kept;
                        rows.push(r);
                    }
                    Err(why) => rows.push(row(&s.name, "refuse", &why)),
                }
            }
            session.close().await;
            rows
        }
    });
    Ok(futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect())
}
