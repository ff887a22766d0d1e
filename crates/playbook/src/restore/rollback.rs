//! What only `fleet rollback` needs on top of a restore: the guards against losing newer
//! data (a later run, a site no longer at the run's target), the safety dumps of what it
//! replaces, and putting sites back up when it stops short of restoring anything.

use super::{Changes, Facts, HostRun, Live, PlaybookError, Scope, SiteCmds, SiteRow};
use super::{Journal, step_error_text};
use crate::vocab::{ArtifactKind, SiteStatus};
use crate::vocab::{BuiltinStep, Unit};

/// The runs started after `run` that changed `host/site`, oldest first.
///
/// # Errors
///
/// When the journal cannot be read.
pub fn later_runs(
    journal: &Journal,
    run: &str,
    host: &str,
    site: &str,
) -> Result<Vec<String>, PlaybookError> {
    let history = journal.site_history(host, site)?;
    let Some(pos) = history.iter().position(|(r, _, _)| r == run) else {
        return Ok(Vec::new());
    };
    let target = history[pos].2.to_version.clone();
    Ok(history[pos + 1..]
        .iter()
        .filter(|(_, _, row)| row.status.touched())
        // A later run that was itself rolled back put the site back where it found it: at
        // this run's target, it no longer stands in the way (`fleet rollback` of the later
        // run first, as the refusal advises).
        .filter(|(_, _, row)| !(row.status == SiteStatus::RolledBack && row.from_version == target))
        .map(|(r, _, _)| r.clone())
        .collect())
}

/// Why `fleet rollback` must not touch this group without `--force`, if it must not.
pub(super) fn rollback_guard(
    host: &str,
    group: &[&Live<'_>],
    rows: &[SiteRow],
    scope: &Scope,
    target: &str,
) -> Option<String> {
    for l in group {
        let name = &l.work.site.name;
        if let Some(runs) = scope.later.get(&format!("{host}/{name}")) {
            return Some(format!(
                "site `{name}` was changed by a later run ({}): rolling back to this run's backups would undo it and lose what was written since; roll back the later run first, or pass `--force`",
                runs.join(", ")
            ));
        }
        let finished = rows
            .iter()
            .any(|r| r.site == *name && r.status == SiteStatus::Upgraded);
        if finished && (l.code != target || l.db != target) {
            return Some(format!(
                "site `{name}` is no longer at this run's target `{target}` (code `{}`, database `{}`): something changed it since; pass `--force` to roll back anyway",
                l.code, l.db
            ));
        }
    }
    None
}

/// Dumps every database the group's restore will replace into `<run dir>/rollback-<time>/`,
/// checked like any dump, and records each in the journal before anything is replaced.
pub(super) async fn safety_dumps(
    h: &HostRun<'_>,
    group: &[&Live<'_>],
    ch: &Changes,
) -> Result<Vec<String>, String> {
    let ctx = h.ctx;
    let stamp = crate::journal::timestamp_id(crate::journal::unix_now());
    let mut files = Vec::new();
    for db in &ch.db_upgrade_started {
        let Some(l) = group.iter().find(|l| l.work.facts.civi_db == *db) else {
            continue;
        };
        let w = &l.work;
        let file = format!(
            "{}/fleet-{}/rollback-{stamp}/db/{db}.sql",
            w.site.backup_dir, ctx.run
        );
        let unit = Unit::database(db);
        let c = SiteCmds::new(w.site, &w.facts);
        let sha = h
            .exec(&unit, BuiltinStep::SafetyDump, &c.dump_civi(&file, db))
            .await
            .map_err(|e| format!("safety dump of `{db}` failed: {}", step_error_text(&e)))?;
        ctx.journal
            .set_artifact(
                &ctx.run,
                h.host,
                &unit,
                ArtifactKind::SafetyDump,
                &format!("{file} sha256:{}", sha.trim()),
            )
            .map_err(|e| format!("the journal could not record the safety dump of `{db}`: {e}"))?;
        ctx.reporter.on_event(&crate::event::Event::Notice {
            host: h.host.to_owned(),
            message: format!("database `{db}` saved to `{file}` before the rollback replaces it"),
        });
        files.push(file);
    }
    Ok(files)
}

/// Puts maintenance back to what it was when the rollback started (nothing was restored).
pub(super) async fn live_maintenance_back(
    h: &HostRun<'_>,
    group: &[&Live<'_>],
) -> Result<(), String> {
    let mut problems = Vec::new();
    for l in group.iter().filter(|l| l.maintenance != "1") {
        let w = &l.work;
        let mut facts: Facts = w.facts.clone();
        facts.maintenance = l.maintenance.clone();
        let c = SiteCmds::new(w.site, &facts);
        match h
            .exec(
                &Unit::site(&w.site.name),
                BuiltinStep::MaintenanceRestore,
                &format!(
                    "{} && {}",
                    c.set_maintenance(&l.maintenance),
                    c.read_maintenance()
                ),
            )
            .await
        {
            Ok(v) if v.trim() == l.maintenance => {
                // The journal row goes back to what it said before the rollback began.
                if let Some(row) = &l.row
                    && let Err(e) = h.ctx.journal.site(
                        &h.ctx.run,
                        h.host,
                        &w.site.name,
                        &crate::journal::SiteUpdate {
                            status: Some(row.status),
                            step: row.step.as_ref(),
                            in_maintenance: Some(row.in_maintenance),
                            ..Default::default()
                        },
                    )
                {
                    problems.push(format!("journal: {e}"));
                }
            }
            Ok(v) => problems.push(format!(
                "maintenance_mode of `{}` is `{}`, expected `{}`",
                w.site.name,
                v.trim(),
                l.maintenance
            )),
            Err(e) => problems.push(step_error_text(&e)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
