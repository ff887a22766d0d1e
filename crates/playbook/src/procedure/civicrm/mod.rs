//! The built-in procedure: CiviCRM on Drupal 7, upgraded in place. Maintenance on, modules
//! off, databases dumped, code moved out and the release unpacked, the database upgraded once
//! per database, then caches, modules and maintenance back and a final check. Every step
//! re-reads the state it changed; exit codes alone are never trusted.

use std::collections::{BTreeMap, BTreeSet};

use super::{Changed, Procedure, StepDef};
use crate::engine::{HostRun, StepError, StepResult, expect, last_line};
use crate::outcome::SiteOutcome;
use crate::vocab::{ArtifactKind, BuiltinStep, Scope, Unit};
use crate::work::Work;

pub(crate) mod commands;
pub(crate) mod dryrun;
pub(crate) mod tarball;
mod undo;

use commands::{CodeCmds, SiteCmds};

/// Where the localization tarball goes on a host: next to the release tarball `tarball`.
pub(crate) fn l10n_upload_path(tarball: &str, target: &str) -> String {
    let dir = tarball.rsplit_once('/').map_or(".", |(d, _)| d);
    format!("{dir}/civicrm-{target}-l10n.tar.gz")
}

/// Which code a dry run of the database upgrade runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DryRunAt {
    /// The code still in place before the swap (the old version, equal to the DB's).
    OldCode,
    /// The new code, unpacked; the database not yet touched.
    NewCode,
}

/// The procedure's step names, in order (`fleet upgrade --show-steps`, `--plan`).
pub const STEPS: &[StepDef] = &[
    StepDef {
        step: BuiltinStep::Preflight,
        scope: Scope::Site,
        what: "read code and DB versions, `.upgrade` marker, the CiviCRM database's name, installed translations, free disk, write permission; skip sites at the target, refuse downgrades, databases it cannot name and translations the run would not bring",
    },
    StepDef {
        step: BuiltinStep::Lock,
        scope: Scope::Site,
        what: "take the per-site lock on the host (run id, controller, pid)",
    },
    StepDef {
        step: BuiltinStep::PreflightDryRun,
        scope: Scope::Database,
        what: "cv upgrade:db --dry-run as the web user against the code still in place, once the sites are locked (cv only; drush has no dry run): cv boots, sees the versions discovery read, changes nothing; a failure stops the sites before the upload and maintenance",
    },
    StepDef {
        step: BuiltinStep::Upload,
        scope: Scope::Host,
        what: "upload the release tarball once per host, size-checked, atomic rename; with --l10n, the localization tarball next to it (refused unless of the release's version)",
    },
    StepDef {
        step: BuiltinStep::RecordMaintenance,
        scope: Scope::Site,
        what: "record the prior maintenance state in the journal",
    },
    StepDef {
        step: BuiltinStep::MaintenanceOn,
        scope: Scope::Site,
        what: "drush vset --exact maintenance_mode 1; drush cc all; verify vget = 1",
    },
    StepDef {
        step: BuiltinStep::DisableModules,
        scope: Scope::Site,
        what: "drush pm-disable the listed integration modules that are enabled; record them",
    },
    StepDef {
        step: BuiltinStep::BackupDb,
        scope: Scope::Database,
        what: "drush civicrm-sql-dump (with routines) per CiviCRM database, Drupal DBs with sql-dump --routines; verify header and `Dump completed` trailer; record path and sha256",
    },
    StepDef {
        step: BuiltinStep::MoveCodeOut,
        scope: Scope::Codebase,
        what: "mv the CiviCRM code dir into the run's backup dir (moved, not copied); verify",
    },
    StepDef {
        step: BuiltinStep::Unpack,
        scope: Scope::Codebase,
        what: "tar -xzf into a temp dir next to it, with --l10n the localization tarball over it, rename into place; verify xml/version.xml = target (and the civicrm.mo files)",
    },
    StepDef {
        step: BuiltinStep::FixPermissions,
        scope: Scope::Site,
        what: "chown the site's files dir to the web user, dirs 0755, files 0644",
    },
    StepDef {
        step: BuiltinStep::UpgradeDbDryRun,
        scope: Scope::Database,
        what: "cv upgrade:db --dry-run against the new code, once per database (cv only): lists the tasks from the DB version to the target; must plan a core upgrade and leave the DB unchanged, else the old code goes back (the DB was never touched)",
    },
    StepDef {
        step: BuiltinStep::UpgradeDb,
        scope: Scope::Database,
        what: "cv upgrade:db -n (or drush civicrm-upgrade-db -y) as the web user, once per database; re-read: code = DB = target, no `.upgrade` marker",
    },
    StepDef {
        step: BuiltinStep::Flush,
        scope: Scope::Site,
        what: "cv flush (or drush cc civicrm) as the web user; drush cc all",
    },
    StepDef {
        step: BuiltinStep::EnableModules,
        scope: Scope::Site,
        what: "drush pm-enable the modules disabled before",
    },
    StepDef {
        step: BuiltinStep::MaintenanceRestore,
        scope: Scope::Site,
        what: "set maintenance_mode back to its recorded prior value; verify",
    },
    StepDef {
        step: BuiltinStep::Verify,
        scope: Scope::Site,
        what: "cv status: CiviCRM at the target, no pending upgrade",
    },
    StepDef {
        step: BuiltinStep::Unlock,
        scope: Scope::Site,
        what: "release the per-site lock",
    },
];

/// The built-in procedure.
pub(crate) struct Civicrm;

/// What a group has changed so far, i.e. what the undo chain must put back. Each entry is
/// added before the side effect it describes, so a failure mid-step is undone as well.
#[derive(Default)]
pub(crate) struct Changes {
    /// Sites this run took down.
    pub(crate) maintenance_on: BTreeSet<String>,
    /// Integration modules disabled, per site.
    pub(crate) modules_disabled: BTreeMap<String, Vec<String>>,
    /// The CiviCRM code dir was moved into the run's backup dir.
    pub(crate) code_moved: bool,
    /// CiviCRM databases an upgrade (or a dry run that changed them) began on.
    pub(crate) db_upgrade_started: BTreeSet<String>,
}

impl Changed for Changes {
    fn any(&self) -> bool {
        !self.maintenance_on.is_empty() || self.code_moved
    }

    fn holds_down(&self, site: &str) -> bool {
        self.maintenance_on.contains(site)
    }

    fn past_no_return(&self) -> bool {
        !self.db_upgrade_started.is_empty()
    }
}

impl Procedure for Civicrm {
    type Changes = Changes;

    /// The dry run of the database upgrade against the code still in place.
    async fn preflight(&self, h: &HostRun<'_>, g: &[Work<'_>]) -> StepResult {
        h.dry_run_dbs(g, DryRunAt::OldCode, &mut Changes::default())
            .await
    }

    async fn forward(
        &self,
        h: &HostRun<'_>,
        g: &[Work<'_>],
        tarball: &str,
        ch: &mut Changes,
    ) -> StepResult {
        h.forward(g, tarball, ch).await
    }

    async fn undo(&self, h: &HostRun<'_>, g: &[Work<'_>], ch: &mut Changes) -> Result<(), String> {
        h.put_back(g, ch).await
    }

    fn success(&self, w: &Work<'_>, target: &str) -> SiteOutcome {
        SiteOutcome::Upgraded {
            from: w.facts.code_version.clone(),
            to: target.to_owned(),
            in_maintenance: w.facts.maintenance == "1",
        }
    }
}

impl HostRun<'_> {
    pub(crate) async fn forward(
        &self,
        g: &[Work<'_>],
        tarball: &str,
        ch: &mut Changes,
    ) -> StepResult {
        let run_dir = self.run_dir(g);
        let code = self.code_cmds(g);
        self.maintenance_on(g, ch).await?;
        self.disable_modules(g, ch).await?;
        self.checkpoint(ch, BuiltinStep::BackupDb)?;
        self.backup(g, &run_dir).await?;
        self.checkpoint(ch, BuiltinStep::MoveCodeOut)?;
        self.code_swap(g, &code, tarball, ch).await?;
        self.checkpoint(ch, BuiltinStep::UpgradeDbDryRun)?;
        self.dry_run_dbs(g, DryRunAt::NewCode, ch).await?;
        // The point of no easy return: from here a drain goes forward, not back.
        self.checkpoint(ch, BuiltinStep::UpgradeDb)?;
        self.upgrade_dbs(g, &code, ch).await?;
        self.finish(g, ch).await
    }

    pub(crate) fn run_dir(&self, g: &[Work<'_>]) -> String {
        format!("{}/fleet-{}", g[0].site.backup_dir, self.ctx.run)
    }

    pub(crate) fn code_cmds(&self, g: &[Work<'_>]) -> CodeCmds {
        CodeCmds::new(
            &g[0].facts.civicrm_root,
            &format!("{}/code/civicrm", self.run_dir(g)),
        )
    }

    /// Records each site's prior maintenance state, then turns maintenance on.
    pub(crate) async fn maintenance_on(&self, g: &[Work<'_>], ch: &mut Changes) -> StepResult {
        for w in g {
            let unit = Unit::site(&w.site.name);
            self.mark(w, BuiltinStep::RecordMaintenance, None)?;
            self.record(
                BuiltinStep::RecordMaintenance,
                &unit,
                ArtifactKind::PriorMaintenance,
                &w.facts.maintenance,
            )?;
            if let Some(earlier) = &w.prior_from {
                // This run now owns the site's way back to its prior state: it says the site
                // is down (it is), then the earlier run stops offering to recover it.
                ch.maintenance_on.insert(w.site.name.clone());
                self.mark(w, BuiltinStep::RecordMaintenance, Some(true))?;
                self.supersede(earlier, w)?;
            }
        }
        self.checkpoint(ch, BuiltinStep::MaintenanceOn)?;
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            let unit = Unit::site(&w.site.name);
            // Recorded as on before the command: if we die mid-way, recovery turns it off.
            ch.maintenance_on.insert(w.site.name.clone());
            self.mark(w, BuiltinStep::MaintenanceOn, Some(true))?;
            let out = self
                .exec(
                    &unit,
                    BuiltinStep::MaintenanceOn,
                    &format!("{} && {}", c.set_maintenance("1"), c.read_maintenance()),
                )
                .await
                .map_err(|e| (BuiltinStep::MaintenanceOn.into(), e))?;
            expect(&out, "1", "maintenance_mode")
                .map_err(|e| (BuiltinStep::MaintenanceOn.into(), e))?;
        }
        Ok(())
    }

    /// Disables the listed integration modules that are enabled, recording them.
    pub(crate) async fn disable_modules(&self, g: &[Work<'_>], ch: &mut Changes) -> StepResult {
        for w in g.iter().filter(|w| !w.facts.enabled_modules.is_empty()) {
            let c = SiteCmds::new(w.site, &w.facts);
            let unit = Unit::site(&w.site.name);
            let mods = w.facts.enabled_modules.clone();
            self.record(
                BuiltinStep::DisableModules,
                &unit,
                ArtifactKind::DisabledModules,
                &mods.join(" "),
            )?;
            ch.modules_disabled
                .insert(w.site.name.clone(), mods.clone());
            self.mark(w, BuiltinStep::DisableModules, None)?;
            let out = self
                .exec(
                    &unit,
                    BuiltinStep::DisableModules,
                    &format!("{} && {}", c.disable_modules(&mods), c.enabled_modules()),
                )
                .await
                .map_err(|e| (BuiltinStep::DisableModules.into(), e))?;
            if let Some(m) = mods
                .iter()
                .find(|m| out.lines().any(|l| l.trim() == m.as_str()))
            {
                return Err((
                    BuiltinStep::DisableModules.into(),
                    StepError::Failed(format!("module `{m}` is still enabled")),
                ));
            }
        }
        Ok(())
    }

    /// Dumps every database of the group (CiviCRM and Drupal) and checks the dumps.
    pub(crate) async fn backup(&self, g: &[Work<'_>], run_dir: &str) -> StepResult {
        let mut dumped: BTreeSet<String> = BTreeSet::new();
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            for (db, is_civi) in [(&w.facts.civi_db, true), (&w.facts.cms_db, false)] {
                if db.is_empty() || !dumped.insert(db.clone()) {
                    continue;
                }
                let file = format!("{run_dir}/db/{db}.sql");
                let unit = Unit::database(db);
                for s in g {
                    self.mark(s, BuiltinStep::BackupDb, None)?;
                }
                let script = if is_civi {
                    c.dump_civi(&file, db)
                } else {
                    c.dump_cms(&file, db)
                };
                let sha = self
                    .exec(&unit, BuiltinStep::BackupDb, &script)
                    .await
                    .map_err(|e| (BuiltinStep::BackupDb.into(), e))?;
                self.record(
                    BuiltinStep::BackupDb,
                    &unit,
                    ArtifactKind::DbDump,
                    &format!("{file} sha256:{}", sha.trim()),
                )?;
            }
        }
        Ok(())
    }

    /// `cv upgrade:db --dry-run` once per CiviCRM database of the group that is upgraded
    /// with cv (drush has no dry run), as the web user, like the real upgrade.
    ///
    /// Where it runs, and why twice: a dry run compares the code's version with the
    /// database's and lists the tasks between them. Before the swap the code on disk is the
    /// old version, equal to the database's (classification refuses anything else), so cv
    /// lists no core task: what that dry run proves is that cv boots this site, reaches its
    /// database and sees the versions discovery read through drush (cv silently falls back
    /// to `sites/default` when the URL does not resolve), all before any site goes down
    /// ([`DryRunAt::OldCode`], step `preflight-dry-run`; a failure leaves the group
    /// untouched). The tasks of the upgrade itself exist only once the new code is on disk:
    /// so the dry run runs again right after the unpack and before the real `upgrade:db`
    /// ([`DryRunAt::NewCode`], step `upgrade-db-dry-run`), where it must plan a core upgrade
    /// from the DB version to the target. A failure there (a pre-upgrade blocker of the new
    /// version, say) goes through the normal undo chain with the database never touched:
    /// only the old code is put back. Both re-read the DB version afterwards and fail if the
    /// dry run changed it. After the unpack the undo chain then restores the DB from the dump
    /// this attempt took; before maintenance the site is live and the only dump there could
    /// be is an earlier attempt's, older than what the site wrote since: nothing is loaded,
    /// the site stops there and the reason says to look at its database. Real cv's dry run is not strictly read-only: it rebuilds its upgrade queue
    /// (`civicrm_queue_item`) and may write caches, neither of them site data.
    async fn dry_run_dbs(&self, g: &[Work<'_>], at: DryRunAt, ch: &mut Changes) -> StepResult {
        let step = match at {
            DryRunAt::OldCode => BuiltinStep::PreflightDryRun,
            DryRunAt::NewCode => BuiltinStep::UpgradeDbDryRun,
        };
        let target = &self.ctx.settings.target;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for w in g {
            let db = &w.facts.civi_db;
            if !seen.insert(db.clone()) {
                continue;
            }
            let Some(script) = SiteCmds::new(w.site, &w.facts).dry_run_db() else {
                continue;
            };
            let code = match at {
                // Before maintenance no site is marked (as for the lock and the upload): a
                // crash there leaves nothing to recover.
                DryRunAt::OldCode => &w.facts.code_version,
                DryRunAt::NewCode => {
                    for s in g.iter().filter(|s| &s.facts.civi_db == db) {
                        self.mark(s, step, None)?;
                    }
                    target
                }
            };
            let tasks = self
                .exec_probed(
                    &Unit::database(db),
                    step,
                    &script,
                    "cv upgrade:db --dry-run",
                    |out| {
                        let dry = dryrun::parse_dry_run(out);
                        if !dry.db_after.is_empty() && dry.db_after != w.facts.db_version {
                            if at == DryRunAt::OldCode {
                                return Err(format!(
                                    "database `{db}` reads `{}` after the dry run, `{}` before; the site is live and no dump of this attempt exists, so nothing is loaded under it: look at the database before going on",
                                    dry.db_after, w.facts.db_version
                                ));
                            }
                            // Whatever changed it, the way back is this attempt's dump; before
                            // one was taken there is no way back to offer, and nothing else
                            // was changed yet: stop here.
                            if self.recorded_dump(db).is_none() {
                                return Err(format!(
                                    "database `{db}` reads `{}` after the dry run, `{}` before, and no dump of it was taken yet; not going on",
                                    dry.db_after, w.facts.db_version
                                ));
                            }
                            ch.db_upgrade_started.insert(db.clone());
                        }
                        dry.judge(&w.facts.db_version, code, at == DryRunAt::NewCode)
                    },
                )
                .await
                .map_err(|e| (step.into(), e))?;
            tracing::info!(host = self.host, db = %db, step = %step, "dry run: {} task(s): {}", tasks.len(), tasks.join("; "));
        }
        Ok(())
    }

    /// Moves the old code out, unpacks the new code (and the localization files), fixes the
    /// files dirs' ownership.
    pub(crate) async fn code_swap(
        &self,
        g: &[Work<'_>],
        code: &CodeCmds,
        tarball: &str,
        ch: &mut Changes,
    ) -> StepResult {
        let run = &self.ctx.run;
        let target = &self.ctx.settings.target;
        let first = &g[0];
        let code_unit = Unit::codebase(&first.facts.civicrm_root);
        let run_dir = self.run_dir(g);
        self.record(
            BuiltinStep::MoveCodeOut,
            &code_unit,
            ArtifactKind::CodeBackup,
            &format!("{run_dir}/code/civicrm"),
        )?;
        for w in g {
            self.mark(w, BuiltinStep::MoveCodeOut, None)?;
        }
        ch.code_moved = true;
        let old = self
            .exec(&code_unit, BuiltinStep::MoveCodeOut, &code.move_out())
            .await
            .map_err(|e| (BuiltinStep::MoveCodeOut.into(), e))?;
        expect(&old, &first.facts.code_version, "moved code version")
            .map_err(|e| (BuiltinStep::MoveCodeOut.into(), e))?;
        for w in g {
            self.mark(w, BuiltinStep::Unpack, None)?;
        }
        // The translations go into the temp dir with the code, before it is renamed into
        // place: they are part of the new code dir, so a rollback (which moves that dir away)
        // takes them with it, and the old code never gets files of another version.
        let l10n = self
            .ctx
            .settings
            .l10n
            .as_ref()
            .map(|_| l10n_upload_path(tarball, target));
        let new = self
            .exec(
                &code_unit,
                BuiltinStep::Unpack,
                &code.unpack(tarball, l10n.as_deref(), run),
            )
            .await
            .map_err(|e| (BuiltinStep::Unpack.into(), e))?;
        if l10n.is_some() {
            let mo = new
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("l10n="))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if mo == 0 {
                return Err((
                    BuiltinStep::Unpack.into(),
                    StepError::Failed(
                        "no civicrm.mo in the new code dir after unpacking the localization tarball"
                            .into(),
                    ),
                ));
            }
        }
        expect(&new, target, "unpacked code version (xml/version.xml)")
            .map_err(|e| (BuiltinStep::Unpack.into(), e))?;
        for w in g {
            let unit = Unit::site(&w.site.name);
            self.mark(w, BuiltinStep::FixPermissions, None)?;
            let files = format!("{}/files", w.facts.site_dir);
            let owner = self
                .exec(
                    &unit,
                    BuiltinStep::FixPermissions,
                    &commands::fix_permissions(&files, &w.facts.web_user),
                )
                .await
                .map_err(|e| (BuiltinStep::FixPermissions.into(), e))?;
            expect(&owner, &w.facts.web_user, "owner of the files dir")
                .map_err(|e| (BuiltinStep::FixPermissions.into(), e))?;
        }
        Ok(())
    }

    /// Runs the DB upgrade once per database and re-reads the versions.
    pub(crate) async fn upgrade_dbs(
        &self,
        g: &[Work<'_>],
        code: &CodeCmds,
        ch: &mut Changes,
    ) -> StepResult {
        self.upgrade_dbs_except(g, code, ch, &BTreeSet::new()).await
    }

    /// [`Self::upgrade_dbs`] for every database of the group but the ones in `done` (already
    /// at the target: a resumed group never upgrades a database twice).
    pub(crate) async fn upgrade_dbs_except(
        &self,
        g: &[Work<'_>],
        code: &CodeCmds,
        ch: &mut Changes,
        done: &BTreeSet<String>,
    ) -> StepResult {
        let target = &self.ctx.settings.target;
        let mut upgraded: BTreeSet<String> = done.clone();
        for w in g {
            let db = &w.facts.civi_db;
            if !upgraded.insert(db.clone()) {
                continue;
            }
            let unit = Unit::database(db);
            let c = SiteCmds::new(w.site, &w.facts);
            let (cmd, tool) = c.upgrade_db();
            ch.db_upgrade_started.insert(db.clone());
            for s in g.iter().filter(|s| &s.facts.civi_db == db) {
                self.mark(s, BuiltinStep::UpgradeDb, None)?;
            }
            // Exit codes lie here (cv exits 0 in "ext" mode): the probe decides.
            let script = format!(
                "{cmd}; rc=$?; echo \"rc=$rc\"; echo \"db=$({})\"; echo \"code=$({})\"",
                c.db_version(),
                code.version()
            );
            self.exec_probed(&unit, BuiltinStep::UpgradeDb, &script, tool, |out| {
                let get = |k: &str| {
                    out.lines()
                        .rev()
                        .find_map(|l| l.strip_prefix(&format!("{k}=")))
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                };
                let (rc, dbv, codev) = (get("rc"), get("db"), get("code"));
                if dbv.ends_with(".upgrade") {
                    return Err(format!(
                        "{tool} left the database partially upgraded (`{dbv}`)"
                    ));
                }
                if dbv != *target || codev != *target {
                    return Err(format!(
                        "after {tool} (exit {rc}) the database is at `{dbv}` and the code at `{codev}`, not `{target}`"
                    ));
                }
                if rc != "0" {
                    // Core reached the target but a later phase (extensions) failed.
                    return Err(format!(
                        "{tool} exited {rc} after reaching `{target}` (extension upgrades failed?)"
                    ));
                }
                Ok(())
            })
            .await
            .map_err(|e| (BuiltinStep::UpgradeDb.into(), e))?;
        }
        Ok(())
    }

    /// The tail of the procedure once the databases are at the target: caches, modules,
    /// maintenance back to its prior value, verification.
    pub(crate) async fn finish(&self, g: &[Work<'_>], ch: &mut Changes) -> StepResult {
        self.flush(g).await?;
        self.enable_modules(g, ch).await?;
        self.maintenance_restore(g, ch).await?;
        self.verify(g).await
    }

    pub(crate) async fn flush(&self, g: &[Work<'_>]) -> StepResult {
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            self.mark(w, BuiltinStep::Flush, None)?;
            self.exec(&Unit::site(&w.site.name), BuiltinStep::Flush, &c.flush())
                .await
                .map_err(|e| (BuiltinStep::Flush.into(), e))?;
        }
        Ok(())
    }

    pub(crate) async fn enable_modules(&self, g: &[Work<'_>], ch: &mut Changes) -> StepResult {
        let with_disabled: Vec<&Work<'_>> = g
            .iter()
            .filter(|w| ch.modules_disabled.contains_key(&w.site.name))
            .collect();
        for w in with_disabled {
            let c = SiteCmds::new(w.site, &w.facts);
            let mods = ch.modules_disabled[&w.site.name].clone();
            self.mark(w, BuiltinStep::EnableModules, None)?;
            let out = self
                .exec(
                    &Unit::site(&w.site.name),
                    BuiltinStep::EnableModules,
                    &format!("{} && {}", c.enable_modules(&mods), c.enabled_modules()),
                )
                .await
                .map_err(|e| (BuiltinStep::EnableModules.into(), e))?;
            if let Some(m) = mods
                .iter()
                .find(|m| !out.lines().any(|l| l.trim() == m.as_str()))
            {
                return Err((
                    BuiltinStep::EnableModules.into(),
                    StepError::Failed(format!("module `{m}` did not come back")),
                ));
            }
            ch.modules_disabled.remove(&w.site.name);
        }
        Ok(())
    }

    pub(crate) async fn maintenance_restore(&self, g: &[Work<'_>], ch: &mut Changes) -> StepResult {
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            let prior = &w.facts.maintenance;
            self.mark(w, BuiltinStep::MaintenanceRestore, None)?;
            let out = self
                .exec(
                    &Unit::site(&w.site.name),
                    BuiltinStep::MaintenanceRestore,
                    &format!("{} && {}", c.set_maintenance(prior), c.read_maintenance()),
                )
                .await
                .map_err(|e| (BuiltinStep::MaintenanceRestore.into(), e))?;
            expect(&out, prior, "maintenance_mode")
                .map_err(|e| (BuiltinStep::MaintenanceRestore.into(), e))?;
            ch.maintenance_on.remove(&w.site.name);
            self.mark(w, BuiltinStep::MaintenanceRestore, Some(false))?;
        }
        Ok(())
    }

    pub(crate) async fn verify(&self, g: &[Work<'_>]) -> StepResult {
        let target = &self.ctx.settings.target;
        for w in g {
            let c = SiteCmds::new(w.site, &w.facts);
            self.mark(w, BuiltinStep::Verify, None)?;
            let out = self
                .exec(&Unit::site(&w.site.name), BuiltinStep::Verify, &c.status())
                .await
                .map_err(|e| (BuiltinStep::Verify.into(), e))?;
            if !out.contains(target.as_str())
                || out.contains("pending upgrade")
                || out.contains("futuristic")
            {
                return Err((
                    BuiltinStep::Verify.into(),
                    StepError::Failed(format!(
                        "status does not show `{target}` cleanly: {}",
                        last_line(&out)
                    )),
                ));
            }
        }
        Ok(())
    }
}
