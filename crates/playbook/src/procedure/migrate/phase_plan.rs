//! `fleet migrate import RUN --plan` and `fleet migrate release RUN --plan`: which sites the
//! phase would take, in which batch, and why the others not, from the run's journal alone
//! (the phase itself reads each host again before it acts). Nothing is written.

use fleet_inventory::{Amount, Batches};

use crate::context::HostJob;
use crate::error::PlaybookError;
use crate::journal::{Journal, RunRow};
use crate::vocab::{ArtifactKind, SiteStatus, Unit};

/// One site in a phase's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhasePlanRow {
    /// Host.
    pub host: String,
    /// Site.
    pub site: String,
    /// Batch (0 = canary; always 0 for an import).
    pub batch: usize,
    /// `import`, `release`, `skip` (nothing to do) or `not-started` (it does not qualify).
    pub action: String,
    /// Why, for `skip` and `not-started`; for `import`, whether it is again (`--update`).
    pub reason: String,
}

/// A phase's plan: its batches and budgets (a release's), and every site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhasePlan {
    /// Hosts per batch.
    pub batches: Vec<usize>,
    /// Failed hosts tolerated per batch.
    pub batch_budget: Vec<usize>,
    /// Failed hosts tolerated in the run.
    pub run_budget: usize,
    /// Every site of the run on the selected hosts, in rollout order.
    pub rows: Vec<PhasePlanRow>,
}

/// What `fleet migrate release RUN` (`release`) or `import RUN` would do, batches and budgets
/// as the release would compute them.
///
/// # Errors
///
/// As the phases: not a migrate run, no recorded manifest, no selected site of the run.
pub fn plan_migrate_phase(
    jobs: Vec<HostJob>,
    run: &RunRow,
    journal: &Journal,
    release: bool,
    batches: &Batches,
    max_fail: Amount,
) -> Result<PhasePlan, PlaybookError> {
    super::run::recorded_manifest(journal, run)?;
    let jobs = super::run::run_sites(jobs, journal, run)?;
    let (sizes, budgets, run_budget) = if release {
        let sizes = batches.sizes(jobs.len());
        let budgets = sizes.iter().map(|&n| max_fail.of(n)).collect();
        (sizes, budgets, max_fail.of(jobs.len()))
    } else {
        (vec![jobs.len()], vec![jobs.len()], jobs.len())
    };
    let mut rows = Vec::new();
    let mut start = 0;
    for (batch, &size) in sizes.iter().enumerate() {
        for job in &jobs[start..start + size] {
            for s in &job.host.sites {
                let (action, reason) =
                    site_action(journal, &run.id, &job.host.name, &s.name, release)?;
                rows.push(PhasePlanRow {
                    host: job.host.name.clone(),
                    site: s.name.clone(),
                    batch,
                    action: action.into(),
                    reason,
                });
            }
        }
        start += size;
    }
    Ok(PhasePlan {
        batches: sizes,
        batch_budget: budgets,
        run_budget,
        rows,
    })
}

fn site_action(
    journal: &Journal,
    run: &str,
    host: &str,
    site: &str,
    release: bool,
) -> Result<(&'static str, String), PlaybookError> {
    let unit = Unit::site(site);
    let art = |kind| -> Result<Option<String>, PlaybookError> {
        Ok(journal
            .artifact(run, host, &unit, kind)?
            .filter(|v| !v.is_empty()))
    };
    let row = journal.site_row(run, host, site)?;
    if art(ArtifactKind::CleanupPlan)?.is_some() {
        return Ok((
            "not-started",
            "`fleet migrate cleanup` has removed (or begun removing) what this run made for the site".into(),
        ));
    }
    if art(ArtifactKind::Release)?.is_none() || art(ArtifactKind::NewDatabase)?.is_none() {
        return Ok((
            "not-started",
            "this run built no release for the site".into(),
        ));
    }
    let reached = art(ArtifactKind::PriorMaintenance)?.is_some();
    if !release {
        if reached {
            return Ok((
                "not-started",
                "the release has reached this site: `fleet migrate release` (or `rollback`) goes on with it".into(),
            ));
        }
        let again = journal
            .step_done_at(
                run,
                host,
                &unit,
                &crate::vocab::BuiltinStep::MigrateImport.into(),
            )?
            .is_some();
        return Ok((
            "import",
            if again {
                "again, with --update".into()
            } else {
                String::new()
            },
        ));
    }
    if art(ArtifactKind::QaPassed)?.is_none() {
        return Ok((
            "not-started",
            "its new site has not passed QA in this run (`fleet migrate import RUN`)".into(),
        ));
    }
    match row.map(|r| r.status) {
        Some(SiteStatus::Upgraded) => Ok(("skip", "released already".into())),
        Some(SiteStatus::RolledBack) => {
            Ok(("release", "switched back before: released again".into()))
        }
        Some(s) if s.is_midway() => Ok(("release", "goes on from where it stopped".into())),
        _ => Ok(("release", String::new())),
    }
}
