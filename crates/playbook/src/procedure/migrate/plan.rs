//! `fleet migrate build --plan`: what a build would do on each site, found with read-only
//! commands (no journal, no lock, no upload).

use std::sync::Arc;
use std::time::Duration;

use fleet_inventory::Site;
use fleet_remote_exec::{Client, ExecOptions, RemoteCommand};
use tokio::sync::Semaphore;

use super::discovery::{MigrateFacts, discover_script, parse_discovery};
use super::manifest::{Manifest, database_name};
use crate::context::{Cancel, HostJob};
use crate::engine::{AS_WEB, error_text, last_line};
use crate::error::PlaybookError;
use crate::remote::Connect;

/// What `--plan` found for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigratePlanRow {
    /// Host.
    pub host: String,
    /// Site.
    pub site: String,
    /// The old site's Drupal version (empty when unknown).
    pub old_version: String,
    /// Its database.
    pub old_db: String,
    /// The new site's database.
    pub new_db: String,
    /// Where the new release would go (`<base>/releases/<run id>`, the run id to come).
    pub release: String,
    /// `build`, `refuse` or `unreachable`.
    pub action: String,
    /// Why, for anything but `build`.
    pub reason: String,
}

/// A build's unpacked release is about this many times its tarballs: core's tarball unpacks
/// to four to five times its size (measured on drupal-10.3.1: 17 MiB to 78 MiB).
const UNPACKED_FACTOR: u64 = 5;

/// About how much room a release of `manifest` takes: its tarballs and what they unpack to.
pub(crate) fn needed_kb(manifest: &Manifest) -> u64 {
    let tarball_kb: u64 = std::iter::once(&manifest.core)
        .chain(manifest.modules.iter().map(|m| &m.tarball))
        .map(|t| std::fs::metadata(&t.path).map_or(0, |m| m.len().div_ceil(1024)))
        .sum();
    tarball_kb * (UNPACKED_FACTOR + 1)
}

/// Discovers every selected site (read-only) and says what `fleet migrate build` would do.
///
/// # Errors
///
/// [`PlaybookError::Plan`] when no selected host has sites.
pub async fn plan_migrate_build(
    client: &Client,
    jobs: Vec<HostJob>,
    manifest: &Manifest,
    forks: usize,
    step_timeout: Duration,
    cancel: &Cancel,
) -> Result<Vec<MigratePlanRow>, PlaybookError> {
    let jobs: Vec<HostJob> = jobs
        .into_iter()
        .filter(|j| !j.host.sites.is_empty())
        .collect();
    if jobs.is_empty() {
        return Err(PlaybookError::Plan(
            "no selected host has sites to migrate".into(),
        ));
    }
    let needed_kb = needed_kb(manifest);
    let limit = Arc::new(Semaphore::new(forks.max(1)));
    let futures = jobs.iter().map(|job| {
        let limit = limit.clone();
        async move {
            let _permit = limit.acquire_owned().await;
            let rows_for = |action: &str, why: &str| -> Vec<MigratePlanRow> {
                job.host
                    .sites
                    .iter()
                    .map(|s| row(&job.host.name, s, &MigrateFacts::default(), action, why))
                    .collect()
            };
            let (with_current, without): (Vec<&Site>, Vec<&Site>) =
                job.host.sites.iter().partition(|s| s.current.is_some());
            let facts = if with_current.is_empty() {
                Default::default()
            } else {
                let session = match Connect::connect(client, &job.target, &cancel.abort).await {
                    Ok(s) => s,
                    Err(e) => return rows_for("unreachable", &error_text(&e)),
                };
                let owned: Vec<Site> = with_current.iter().map(|s| (*s).clone()).collect();
                let out = session
                    .exec(
                        &RemoteCommand::shell(format!("{AS_WEB}{}", discover_script(&owned))),
                        &ExecOptions {
                            timeout: step_timeout,
                            max_output: 1 << 20,
                        },
                        &cancel.abort,
                    )
                    .await;
                session.close().await;
                match out {
                    Err(e) => return rows_for("unreachable", &error_text(&e)),
                    Ok(o) if !o.status.success() => {
                        let why = format!(
                            "discovery failed: {}",
                            last_line(&o.stderr.to_string_lossy())
                        );
                        return rows_for("refuse", &why);
                    }
                    Ok(o) => parse_discovery(&o.stdout.to_string_lossy(), &owned),
                }
            };
            job.host
                .sites
                .iter()
                .map(|s| {
                    if without.iter().any(|w| w.name == s.name) {
                        return row(
                            &job.host.name,
                            s,
                            &MigrateFacts::default(),
                            "refuse",
                            "no `current` in the inventory: the symlink the web server serves, which a release replaces",
                        );
                    }
                    let f = facts.get(&s.name).cloned().unwrap_or_default();
                    let mut r = row(&job.host.name, s, &f, "build", "");
                    if let Some(e) = &f.error {
                        r.action = "refuse".into();
                        r.reason = e.clone();
                        return r;
                    }
                    match database_name(&manifest.site.database, &f.old_db, &s.name, &job.host.name) {
                        Some(db) => r.new_db = db,
                        None => {
                            r.action = "refuse".into();
                            r.reason = format!(
                                "`database` `{}` gives no usable database name for this site (`A-Za-z0-9_`, at most 64, not the old one)",
                                manifest.site.database
                            );
                            return r;
                        }
                    }
                    if f.free_kb < needed_kb {
                        r.action = "refuse".into();
                        r.reason = format!(
                            "{} MiB free beside `current`, a release needs about {} MiB",
                            f.free_kb / 1024,
                            needed_kb.div_ceil(1024)
                        );
                    }
                    r
                })
                .collect::<Vec<_>>()
        }
    });
    Ok(futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect())
}

fn row(host: &str, s: &Site, f: &MigrateFacts, action: &str, why: &str) -> MigratePlanRow {
    let release = s.current.as_deref().map_or(String::new(), |c| {
        let base = c.rsplit_once('/').map_or("", |(b, _)| b);
        format!("{base}/releases/RUN")
    });
    MigratePlanRow {
        host: host.to_owned(),
        site: s.name.clone(),
        old_version: f.drupal_version.clone(),
        old_db: f.old_db.clone(),
        new_db: String::new(),
        release,
        action: action.to_owned(),
        reason: why.to_owned(),
    }
}
