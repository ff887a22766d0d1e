//! The undo chain of the CiviCRM procedure: what a group changed, put back in reverse order,
//! each source verified before it is used; maintenance comes off only once code and
//! databases are back.

use super::Changes;
use super::commands::{self, CodeCmds, SiteCmds};
use crate::context::OnFailure;
use crate::engine::{HostRun, step_error_text};
use crate::vocab::ArtifactKind;
use crate::vocab::{BuiltinStep, Unit};
use crate::work::Work;

impl HostRun<'_> {
    /// The undo chain: old code back, databases restored from this run's dumps, caches
    /// emptied, modules re-enabled, maintenance back to its prior value (unless holding).
    pub(crate) async fn put_back(&self, g: &[Work<'_>], ch: &mut Changes) -> Result<(), String> {
        self.put_back_after(g, ch, Vec::new()).await
    }

    /// [`Self::put_back`] after earlier undo steps that left `problems`: everything is still
    /// put back, but no site comes back up over a problem.
    pub(crate) async fn put_back_after(
        &self,
        g: &[Work<'_>],
        ch: &mut Changes,
        mut problems: Vec<String>,
    ) -> Result<(), String> {
        let run = &self.ctx.run;
        let first = &g[0];
        let run_dir = format!("{}/fleet-{run}", first.site.backup_dir);
        let codebase = &first.facts.civicrm_root;
        let code = CodeCmds::new(codebase, &format!("{run_dir}/code/civicrm"));
        if ch.code_moved {
            match self
                .exec(
                    &Unit::codebase(codebase),
                    BuiltinStep::RestoreCode,
                    &code.restore(run),
                )
                .await
            {
                Ok(v) if v.trim() == first.facts.code_version => ch.code_moved = false,
                Ok(v) => problems.push(format!(
                    "restored code is at `{}`, expected `{}`",
                    v.trim(),
                    first.facts.code_version
                )),
                Err(e) => problems.push(format!("restore-code: {}", step_error_text(&e))),
            }
        }
        for db in ch.db_upgrade_started.clone() {
            let Some(w) = g.iter().find(|w| w.facts.civi_db == db) else {
                continue;
            };
            let c = SiteCmds::new(w.site, &w.facts);
            let Some((file, sha)) = self.recorded_dump(&db) else {
                // No verified source, no restore: the database stays as it is.
                problems.push(format!(
                    "no dump of database `{db}` is recorded in this run's journal; not restoring it"
                ));
                continue;
            };
            let script = format!("{} && {}", c.restore_civi(&file, &db, &sha), c.db_version());
            match self
                .exec(&Unit::database(&db), BuiltinStep::RestoreDb, &script)
                .await
            {
                Ok(v) if v.trim() == w.facts.db_version => {
                    ch.db_upgrade_started.remove(&db);
                }
                Ok(v) => problems.push(format!(
                    "restored database `{db}` is at `{}`, expected `{}`",
                    v.trim(),
                    w.facts.db_version
                )),
                Err(e) => problems.push(format!("restore-db `{db}`: {}", step_error_text(&e))),
            }
        }
        for w in g {
            if !w.facts.templates_c.is_empty() {
                let _ = self
                    .exec(
                        &Unit::site(&w.site.name),
                        BuiltinStep::ClearTemplates,
                        &commands::empty_dir(&w.facts.templates_c),
                    )
                    .await;
            }
        }
        for (site, mods) in ch.modules_disabled.clone() {
            let Some(w) = g.iter().find(|w| w.site.name == site) else {
                continue;
            };
            let c = SiteCmds::new(w.site, &w.facts);
            match self
                .exec(
                    &Unit::site(&site),
                    BuiltinStep::EnableModules,
                    &c.enable_modules(&mods),
                )
                .await
            {
                Ok(_) => {
                    ch.modules_disabled.remove(&site);
                }
                Err(e) => problems.push(format!(
                    "re-enable modules on `{site}`: {}",
                    step_error_text(&e)
                )),
            }
        }
        if !problems.is_empty() {
            // Never bring a site back up on top of a half-restored codebase or database.
            return Err(problems.join("; "));
        }
        if self.ctx.settings.on_failure == OnFailure::Hold {
            return Ok(());
        }
        let down: Vec<&Work<'_>> = g
            .iter()
            .filter(|w| ch.maintenance_on.contains(&w.site.name))
            .collect();
        for w in down {
            let c = SiteCmds::new(w.site, &w.facts);
            let prior = &w.facts.maintenance;
            match self
                .exec(
                    &Unit::site(&w.site.name),
                    BuiltinStep::MaintenanceRestore,
                    &format!("{} && {}", c.set_maintenance(prior), c.read_maintenance()),
                )
                .await
            {
                Ok(v) if v.trim() == prior => {
                    ch.maintenance_on.remove(&w.site.name);
                    if let Err((_, e)) = self.mark(w, BuiltinStep::MaintenanceRestore, Some(false))
                    {
                        problems.push(step_error_text(&e));
                    }
                }
                Ok(v) => problems.push(format!(
                    "maintenance_mode of `{}` is `{}`, expected `{prior}`",
                    w.site.name,
                    v.trim()
                )),
                Err(e) => problems.push(format!(
                    "maintenance-restore `{}`: {}",
                    w.site.name,
                    step_error_text(&e)
                )),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The dump of `db` this run recorded: its path and SHA-256.
    pub(crate) fn recorded_dump(&self, db: &str) -> Option<(String, String)> {
        let v = self
            .ctx
            .journal
            .artifact(
                &self.ctx.run,
                self.host,
                &Unit::database(db),
                ArtifactKind::DbDump,
            )
            .ok()
            .flatten()?;
        let (file, sha) = v.rsplit_once(" sha256:")?;
        Some((file.to_owned(), sha.to_owned()))
    }
}
