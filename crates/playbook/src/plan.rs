//! `--plan`: what a run would do, found with read-only commands.

use std::sync::Arc;

use fleet_inventory::Site;
use fleet_remote_exec::Client;
use tokio::sync::Semaphore;

use crate::classify::{Classified, verdict};
use crate::context::{Cancel, HostJob};
use crate::discovery::Facts;
use crate::discovery::{Discovery, discover};
use crate::error::PlaybookError;
use crate::procedure::Procedure;
use crate::runner::UpgradeOptions;

/// What `--plan` found for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    /// Host.
    pub host: String,
    /// Site.
    pub site: String,
    /// Batch index (0 = canary).
    pub batch: usize,
    /// Code version found (empty when unknown).
    pub code_version: String,
    /// DB version found.
    pub db_version: String,
    /// `maintenance_mode` found.
    pub maintenance: String,
    /// CiviCRM database.
    pub civi_db: String,
    /// `upgrade`, `skip`, `refuse` or `unreachable`.
    pub action: String,
    /// Why, for anything but `upgrade`.
    pub reason: String,
}

/// Discovers every site (read-only) and says what a run would do, batch by batch. Changes
/// nothing on any host: no journal, no lock, no upload, and only read-only commands.
///
/// # Errors
///
/// [`PlaybookError::Plan`] when no selected host has sites.
pub async fn plan_upgrade(
    client: &Client,
    jobs: Vec<HostJob>,
    opts: &UpgradeOptions,
    cancel: &Cancel,
) -> Result<(Vec<usize>, Vec<PlanRow>), PlaybookError> {
    let jobs: Vec<HostJob> = jobs
        .into_iter()
        .filter(|j| !j.host.sites.is_empty())
        .collect();
    if jobs.is_empty() {
        return Err(PlaybookError::Plan(
            "no selected host has sites to upgrade".into(),
        ));
    }
    let sizes = opts.batches.sizes(jobs.len());
    let mut batch_of = Vec::with_capacity(jobs.len());
    for (b, &n) in sizes.iter().enumerate() {
        batch_of.extend(std::iter::repeat_n(b, n));
    }
    let limit = Arc::new(Semaphore::new(opts.forks.max(1)));
    let futures = jobs.iter().zip(batch_of).map(|(job, batch)| {
        let limit = limit.clone();
        async move {
            let _permit = limit.acquire_owned().await;
            let row = |site: &Site, f: &Facts, action: &str, reason: String| PlanRow {
                host: job.host.name.clone(),
                site: site.name.clone(),
                batch,
                code_version: f.code_version.clone(),
                db_version: f.db_version.clone(),
                maintenance: f.maintenance.clone(),
                civi_db: f.civi_db.clone(),
                action: action.into(),
                reason,
            };
            let failed_all = |action: &str, why: String| -> Vec<PlanRow> {
                job.host
                    .sites
                    .iter()
                    .map(|s| row(s, &Facts::default(), action, why.clone()))
                    .collect()
            };
            let facts = match discover(
                client,
                &job.target,
                &job.host.sites,
                opts.step_timeout,
                cancel,
            )
            .await
            {
                Ok(f) => f,
                Err(Discovery::Unreachable(why)) => return failed_all("unreachable", why),
                Err(Discovery::Failed(why)) => {
                    return failed_all("refuse", format!("discovery failed: {why}"));
                }
            };
            job.host
                .sites
                .iter()
                .map(|s| {
                    let f = facts.get(&s.name).cloned().unwrap_or_default();
                    match verdict(&Procedure::of(opts.playbook.as_ref()), &opts.target, s, &f) {
                        Classified::Upgrade => row(s, &f, "upgrade", String::new()),
                        Classified::Skip(r) => row(s, &f, "skip", r),
                        Classified::Refuse(r) => row(s, &f, "refuse", r),
                    }
                })
                .collect()
        }
    });
    let rows = futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect();
    Ok((sizes, rows))
}
