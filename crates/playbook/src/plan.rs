//! `--plan`: what a run would do, found with read-only commands.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use fleet_inventory::Site;
use fleet_remote_exec::{Client, ExecOptions, RemoteCommand};

use crate::remote::{Connect, Remote};
use tokio::sync::Semaphore;

use crate::classify::{Classified, verdict};
use crate::context::{Cancel, HostJob};
use crate::discovery::{self, Facts};
use crate::engine::{error_text, last_line};
use crate::error::PlaybookError;
use crate::procedure::AnyProcedure;
use crate::procedure::civicrm::commands::{SiteCmds, standalone, version_cmp};
use crate::procedure::civicrm::dryrun::parse_dry_run;
use crate::procedure::civicrm::tarball::check_l10n;
use crate::runner::UpgradeOptions;
use crate::translations::Translations;

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
    /// What `cv upgrade:db --dry-run` said about the site's CiviCRM database, run against the
    /// code now on disk (once per database; the sites sharing it get the same): the tasks it
    /// would run, in order (none when code and database are at the same version, as every
    /// site to upgrade is: the tasks to the target appear only once its code is on disk, and
    /// the run dry-runs them then, in `upgrade-db-dry-run`), or why it failed (the run would
    /// stop the site before maintenance). `None` when it was not run: the site upgrades its
    /// database with drush, which has no dry run, or it could not be read.
    pub dry_run: Option<Result<Vec<String>, String>>,
}

/// Discovers every site (read-only), dry-runs the database upgrade of each CiviCRM database
/// that cv upgrades, and says what a run would do, batch by batch. Changes nothing on any
/// host: no journal, no lock, no upload, and only read-only commands (a real cv's dry run
/// rebuilds its upgrade queue table and may write caches, but changes no schema or site
/// data).
///
/// # Errors
///
/// [`PlaybookError::Plan`] when no selected host has sites, or the `--l10n` tarball is not
/// a localization tarball of the release's version (or cannot be listed).
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
    if let Some(l10n) = &opts.l10n {
        check_l10n(l10n, &opts.target)?;
    }
    let translations = Translations::of(opts.l10n.as_deref(), opts.lost_translations)
        .map_err(PlaybookError::Plan)?;
    let translations = &translations;
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
                dry_run: None,
            };
            let failed_all = |action: &str, why: String| -> Vec<PlanRow> {
                job.host
                    .sites
                    .iter()
                    .map(|s| row(s, &Facts::default(), action, why.clone()))
                    .collect()
            };
            let session = match Connect::connect(client, &job.target, &cancel.abort).await {
                Ok(s) => s,
                Err(e) => return failed_all("unreachable", error_text(&e)),
            };
            let probed = probe(&*session, &job.host.sites, opts, cancel).await;
            session.close().await;
            let (facts, dry_runs) = match probed {
                Ok(p) => p,
                Err(Probe::Unreachable(why)) => return failed_all("unreachable", why),
                Err(Probe::Failed(why)) => {
                    return failed_all("refuse", format!("discovery failed: {why}"));
                }
            };
            job.host
                .sites
                .iter()
                .map(|s| {
                    let f = facts.get(&s.name).cloned().unwrap_or_default();
                    let mut r = match verdict(
                        &AnyProcedure::of(opts.playbook.as_ref()),
                        &opts.target,
                        translations,
                        s,
                        &f,
                    ) {
                        Classified::Upgrade => row(s, &f, "upgrade", String::new()),
                        Classified::Skip(r) => row(s, &f, "skip", r),
                        Classified::Refuse(r) => row(s, &f, "refuse", r),
                    };
                    r.dry_run = dry_runs.get(&s.name).cloned();
                    // A run would stop it at `preflight-dry-run`: not one to upgrade.
                    if let (Some(Err(why)), "upgrade") = (&r.dry_run, r.action.as_str()) {
                        r.action = "refuse".into();
                        r.reason = format!("the dry run of its database upgrade fails: {why}");
                    }
                    r
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

/// Why [`probe`] gave no facts.
enum Probe {
    /// The connection failed or dropped.
    Unreachable(String),
    /// The discovery script failed on the host.
    Failed(String),
}

type Probed = (
    BTreeMap<String, Facts>,
    BTreeMap<String, Result<Vec<String>, String>>,
);

/// On one connected host: discovery, then `cv upgrade:db --dry-run` once per CiviCRM database
/// that a readable site upgrades with cv, against the code on disk. Returns the facts per
/// site and the dry run's verdict per site (see [`PlanRow::dry_run`]).
async fn probe(
    session: &dyn Remote,
    sites: &[Site],
    opts: &UpgradeOptions,
    cancel: &Cancel,
) -> Result<Probed, Probe> {
    let exec_opts = ExecOptions {
        timeout: opts.step_timeout,
        max_output: 1 << 20,
    };
    let out = session
        .exec(
            &RemoteCommand::shell(standalone(&discovery::discover_script(sites))),
            &exec_opts,
            &cancel.abort,
        )
        .await
        .map_err(|e| Probe::Unreachable(error_text(&e)))?;
    if !out.status.success() {
        return Err(Probe::Failed(last_line(&out.stderr.to_string_lossy())));
    }
    let facts = discovery::parse_discovery(&out.stdout.to_string_lossy(), sites);
    if opts.playbook.is_some() {
        // A playbook upgrades no database by itself: nothing to dry-run.
        return Ok((facts, BTreeMap::new()));
    }
    let mut by_db: BTreeMap<String, Result<Vec<String>, String>> = BTreeMap::new();
    let mut per_site = BTreeMap::new();
    for site in sites {
        let Some(f) = facts.get(&site.name) else {
            continue;
        };
        if f.error.is_some() || f.civi_db.is_empty() || f.db_version.is_empty() {
            continue;
        }
        let Some(script) = SiteCmds::new(site, f).dry_run_db() else {
            continue;
        };
        if !by_db.contains_key(&f.civi_db) {
            let verdict = match session
                .exec(
                    &RemoteCommand::shell(standalone(&script)),
                    &exec_opts,
                    &cancel.abort,
                )
                .await
            {
                Ok(o) => {
                    // Core tasks are due only when the code on disk is ahead of the database.
                    let core_due = version_cmp(&f.code_version, &f.db_version) == Ordering::Greater;
                    parse_dry_run(&o.stdout.to_string_lossy()).judge(
                        &f.db_version,
                        &f.code_version,
                        core_due,
                    )
                }
                Err(e) => Err(error_text(&e)),
            };
            by_db.insert(f.civi_db.clone(), verdict);
        }
        per_site.insert(site.name.clone(), by_db[&f.civi_db].clone());
    }
    Ok((facts, per_site))
}
