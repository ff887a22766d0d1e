//! `--bake`: a batch's upgraded sites re-read after a wait, before the next batch is admitted.

use fleet_inventory::Site;

use crate::context::{Ctx, HostJob};
use crate::discovery::{Discovery, discover};
use crate::outcome::{SiteOutcome, SiteReport};
use crate::vocab::ArtifactKind;
use crate::vocab::Unit;

/// `--bake`: after the wait, re-reads every upgraded site of `batch` (read-only) and returns
/// `(host, problem)` for each site no longer at the target or not back to its prior
/// maintenance state.
pub(crate) async fn bake_check(
    ctx: &Ctx,
    batch: &[HostJob],
    reports: &[SiteReport],
) -> Vec<(String, String)> {
    let futures = batch.iter().map(|job| async move {
        let sites: Vec<Site> = job
            .host
            .sites
            .iter()
            .filter(|s| {
                reports.iter().any(|r| {
                    r.host == job.host.name
                        && r.site == s.name
                        && matches!(r.outcome, SiteOutcome::Upgraded { .. })
                })
            })
            .cloned()
            .collect();
        if sites.is_empty() {
            return Vec::new();
        }
        let host = job.host.name.clone();
        let facts = match discover(
            &*ctx.connect,
            &job.target,
            &sites,
            ctx.settings.step_timeout,
            &ctx.cancel,
        )
        .await
        {
            Ok(f) => f,
            Err(Discovery::Unreachable(why)) => {
                return vec![(host, format!("unreachable after the bake: {why}"))];
            }
            Err(Discovery::Failed(why)) => return vec![(host, format!("re-verify failed: {why}"))],
        };
        let mut problems = Vec::new();
        for s in &sites {
            let f = facts.get(&s.name).cloned().unwrap_or_default();
            let prior = ctx
                .journal
                .artifact(
                    &ctx.run,
                    &host,
                    &Unit::site(&s.name),
                    ArtifactKind::PriorMaintenance,
                )
                .ok()
                .flatten();
            let target = &ctx.settings.target;
            if f.code_version != *target || f.db_version != *target {
                problems.push((
                    host.clone(),
                    format!(
                        "{}: code `{}` / database `{}`, expected `{target}`",
                        s.name, f.code_version, f.db_version
                    ),
                ));
            } else if prior.as_deref().is_some_and(|p| p != f.maintenance) {
                problems.push((
                    host.clone(),
                    format!(
                        "{}: maintenance_mode is `{}`, expected `{}`",
                        s.name,
                        f.maintenance,
                        prior.unwrap_or_default()
                    ),
                ));
            }
        }
        problems
    });
    futures::future::join_all(futures)
        .await
        .into_iter()
        .flatten()
        .collect()
}
