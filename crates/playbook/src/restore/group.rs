//! One group of sites (sharing a codebase or a database) brought to its end: forward when
//! its databases reached the target, else guarded, verified, and put back from the run's
//! backups, a rollback keeping a safety dump of what it replaces.

use std::collections::BTreeSet;

use super::rollback::{live_maintenance_back, rollback_guard, safety_dumps};
use fleet_remote_exec::quote;

use super::{Live, RestoreMode, RollbackPlan, Scope};
use crate::engine::{HostRun, failed, step_error_text};
use crate::journal::SiteRow;
use crate::outcome::{After, SiteOutcome};
use crate::procedure::civicrm::Changes;
use crate::procedure::civicrm::commands::{self as civicrm, SiteCmds};
use crate::vocab::ArtifactKind;
use crate::vocab::{BuiltinStep, Unit};
use crate::work::Work;

/// How a group ended, with one outcome per site of the group in order: `Done` (at a safe
/// end: the lock can go), `Left` (failed part-way: the lock stays with the run),
/// `Unchanged` (refused before anything changed), or `Planned` (`--plan`: nothing done).
pub(super) enum GroupEnd {
    Done(Vec<SiteOutcome>),
    Left(Vec<SiteOutcome>),
    Unchanged(Vec<SiteOutcome>),
    Planned,
}

pub(super) async fn restore_group(
    h: &HostRun<'_>,
    g: &[Work<'_>],
    group: &[&Live<'_>],
    rows: &[SiteRow],
    scope: &Scope,
    plans: &mut Vec<RollbackPlan>,
) -> GroupEnd {
    let all_sites = |o: SiteOutcome| vec![o; g.len()];
    let (ctx, host) = (h.ctx, h.host);
    let target = ctx.settings.target.clone();
    let mut ch = Changes::default();
    for l in group {
        if l.maintenance != l.work.facts.maintenance {
            ch.maintenance_on.insert(l.work.site.name.clone());
        }
        if let Ok(Some(mods)) = ctx.journal.artifact(
            &ctx.run,
            host,
            &Unit::site(&l.work.site.name),
            ArtifactKind::DisabledModules,
        ) {
            ch.modules_disabled.insert(
                l.work.site.name.clone(),
                mods.split_whitespace().map(str::to_owned).collect(),
            );
        }
    }
    // Forward: every database of the group already reached the target, so finishing the
    // procedure (caches, modules, maintenance) is the safe end; nothing is restored.
    if scope.mode == RestoreMode::Recover
        && group.iter().all(|l| l.code == target && l.db == target)
    {
        return match h.finish(g, &mut ch).await {
            Ok(()) => GroupEnd::Done(upgraded(g, &target)),
            Err((step, e)) => {
                let why = step_error_text(&e);
                GroupEnd::Left(all_sites(failed(
                    &step,
                    &why,
                    After::RollbackFailed(why.clone()),
                )))
            }
        };
    }
    // Forward, part-way: the new code is in place and each database is either at the target
    // or untouched, its upgrade never judged (the run stopped between two databases'
    // upgrades, past the point where a drain goes forward), at least one at the target.
    // Going back would undo upgrades that succeeded only to run them again; going on
    // upgrades only the rest. An upgrade that was tried in this run is never tried again
    // here: its database goes back. The ones at the target count as changed by this run,
    // so a failure restores them too.
    // Never tried, or recorded as started with no verdict (a controller that died before
    // or while sending it): the database reads the old version with no `.upgrade` marker,
    // so the upgrade never began changing it (and no step of the run still runs there).
    let never_tried = |l: &&Live<'_>| {
        matches!(
            ctx.journal.step_state(
                &ctx.run,
                host,
                &Unit::database(&l.work.facts.civi_db),
                &BuiltinStep::UpgradeDb.into(),
            ),
            Ok(None | Some(crate::vocab::StepState::Started))
        )
    };
    if scope.mode == RestoreMode::Recover
        && group.iter().all(|l| l.code == target)
        && group.iter().any(|l| l.db == target)
        && group
            .iter()
            .all(|l| l.db == target || (l.db == l.work.facts.db_version && never_tried(l)))
    {
        let done: BTreeSet<String> = group
            .iter()
            .filter(|l| l.db == target)
            .map(|l| l.work.facts.civi_db.clone())
            .collect();
        ch.code_moved = true;
        ch.db_upgrade_started.extend(done.iter().cloned());
        let code = h.code_cmds(g);
        let forward = match h.upgrade_dbs_except(g, &code, &mut ch, &done).await {
            Ok(()) => h.finish(g, &mut ch).await,
            Err(e) => Err(e),
        };
        return match forward {
            Ok(()) => GroupEnd::Done(upgraded(g, &target)),
            Err((step, e)) => {
                let why = step_error_text(&e);
                let after = match h.put_back(g, &mut ch).await {
                    Ok(()) => After::RolledBack,
                    Err(back) => After::RollbackFailed(back),
                };
                let done = matches!(after, After::RolledBack);
                let outcomes = all_sites(failed(&step, &why, after));
                if done {
                    GroupEnd::Done(outcomes)
                } else {
                    GroupEnd::Left(outcomes)
                }
            }
        };
    }
    let refuse = |why: String| -> GroupEnd {
        match scope.mode {
            RestoreMode::Rollback => {
                GroupEnd::Unchanged(all_sites(SiteOutcome::Refused { reason: why }))
            }
            // In recover the sites are down already; a source that does not verify leaves
            // them down, loudly, rather than loading something unverified.
            RestoreMode::Recover => GroupEnd::Left(all_sites(failed(
                BuiltinStep::Recover,
                &format!("{why}; nothing was restored"),
                After::RollbackFailed(why.clone()),
            ))),
        }
    };
    // 2. The guards of a rollback.
    let mut refused = None;
    if scope.mode == RestoreMode::Rollback && !scope.force {
        refused = rollback_guard(host, group, rows, scope, &target);
    }
    // 3. Every source, verified on the host before anything changes.
    let first = &g[0];
    let backup = format!("{}/fleet-{}/code/civicrm", first.site.backup_dir, ctx.run);
    let old_code = first.facts.code_version.clone();
    let code_needed = group.iter().any(|l| l.code != old_code);
    let mut problems = Vec::new();
    if code_needed {
        match h
            .exec(
                &Unit::Host,
                BuiltinStep::VerifyCodeBackup,
                &format!("codever {}", quote(&backup)),
            )
            .await
        {
            Ok(v) if v.trim() == old_code => ch.code_moved = true,
            Ok(v) => problems.push(format!(
                "the code backup `{backup}` holds `{}`, not the old version `{old_code}`",
                v.trim()
            )),
            Err(e) => problems.push(format!(
                "cannot read the code backup `{backup}`: {}",
                step_error_text(&e)
            )),
        }
    }
    let mut dumps = Vec::new();
    for l in group {
        let f = &l.work.facts;
        // A database whose version cannot be read (emptied, dropped, a failed load) is not
        // "as before": it is restored from its verified dump like any other, or refused.
        if f.civi_db.is_empty()
            || l.db == f.db_version
            || ch.db_upgrade_started.contains(&f.civi_db)
        {
            continue;
        }
        ch.db_upgrade_started.insert(f.civi_db.clone());
        let Some((file, sha)) = h.recorded_dump(&f.civi_db) else {
            problems.push(format!(
                "no dump of database `{}` is recorded in the run's journal",
                f.civi_db
            ));
            continue;
        };
        let taken = ctx
            .journal
            .step_done_at(
                &ctx.run,
                host,
                &Unit::database(&f.civi_db),
                &BuiltinStep::BackupDb.into(),
            )
            .ok()
            .flatten();
        if let Err(e) = h
            .exec(
                &Unit::database(&f.civi_db),
                BuiltinStep::VerifyDump,
                &civicrm::verify_dump(&file, &f.civi_db, &sha),
            )
            .await
        {
            problems.push(step_error_text(&e));
        }
        dumps.push((f.civi_db.clone(), file, taken));
    }
    if refused.is_none() && !problems.is_empty() {
        refused = Some(problems.join("; "));
    }
    if scope.plan {
        for l in group {
            plans.push(RollbackPlan {
                host: host.to_owned(),
                site: l.work.site.name.clone(),
                live: if l.code == l.db {
                    l.code.clone()
                } else {
                    format!("code {} / database {}", l.code, l.db)
                },
                back_to: old_code.clone(),
                dumps: dumps
                    .iter()
                    .filter(|(db, _, _)| *db == l.work.facts.civi_db)
                    .map(|(_, file, t)| (file.clone(), *t))
                    .collect(),
                refused: refused.clone(),
            });
        }
        return GroupEnd::Planned;
    }
    if let Some(why) = refused {
        return refuse(why);
    }
    // The sites' locks, as an upgrade takes them: no other run may work on them meanwhile.
    // Refused before anything changed, the restore gives back only the locks it took.
    let fresh = match h.lock_group(g).await {
        Ok(fresh) => fresh,
        Err(why) => return refuse(why),
    };
    // 4. Down first: never swap code or load a dump under a live site.
    for l in group {
        if l.maintenance == "1" {
            continue;
        }
        let w = &l.work;
        let c = SiteCmds::new(w.site, &w.facts);
        ch.maintenance_on.insert(w.site.name.clone());
        let down = match h.mark(w, BuiltinStep::MaintenanceOn, Some(true)) {
            Ok(()) => h
                .exec(
                    &Unit::site(&w.site.name),
                    BuiltinStep::MaintenanceOn,
                    &c.set_maintenance("1"),
                )
                .await
                .map(|_| ()),
            Err((_, e)) => Err(e),
        };
        if let Err(e) = down {
            // Nothing was restored: the sites already taken down come back up.
            let why = format!(
                "cannot take `{}` down: {}",
                w.site.name,
                step_error_text(&e)
            );
            return match live_maintenance_back(h, group).await {
                Ok(()) => {
                    h.unlock_group(&fresh).await;
                    refuse(format!("{why}; nothing was restored"))
                }
                Err(back) => GroupEnd::Left(all_sites(failed(
                    BuiltinStep::MaintenanceOn,
                    &why,
                    After::RollbackFailed(back),
                ))),
            };
        }
    }
    // 5. A rollback keeps what it replaces: the way back from the way back.
    let mut safety = Vec::new();
    if scope.mode == RestoreMode::Rollback {
        match safety_dumps(h, group, &ch).await {
            Ok(files) => safety = files,
            // A database that cannot be dumped (dropped by a failed load) has nothing left
            // to keep; `--force` goes on without it, and says so.
            Err(why) if scope.force => ctx.reporter.on_event(&crate::event::Event::Notice {
                host: host.to_owned(),
                message: format!("{why}; --force: restoring without a safety dump"),
            }),
            Err(why) => {
                // Nothing was restored: bring the sites back as they were and say so.
                let back = live_maintenance_back(h, group).await;
                return match back {
                    Ok(()) => {
                        h.unlock_group(&fresh).await;
                        refuse(format!("{why}; nothing was restored"))
                    }
                    Err(e) => GroupEnd::Left(all_sites(failed(
                        BuiltinStep::SafetyDump,
                        &why,
                        After::RollbackFailed(e),
                    ))),
                };
            }
        }
    }
    // 6. The undo chain: code, databases (each verified again right before it is loaded),
    //    templates, modules, maintenance as before the run.
    match h.put_back(g, &mut ch).await {
        Ok(()) => GroupEnd::Done(all_sites(SiteOutcome::RolledBack {
            to: old_code,
            safety_dumps: safety,
        })),
        Err(why) => GroupEnd::Left(all_sites(failed(
            match scope.mode {
                RestoreMode::Rollback => BuiltinStep::Rollback,
                RestoreMode::Recover => BuiltinStep::Recover,
            },
            &why,
            After::RollbackFailed(why.clone()),
        ))),
    }
}

/// Each site of a group finished forward: at the target, maintenance as before the run.
fn upgraded(g: &[Work<'_>], target: &str) -> Vec<SiteOutcome> {
    g.iter()
        .map(|w| SiteOutcome::Upgraded {
            from: w.facts.code_version.clone(),
            to: target.to_owned(),
            in_maintenance: w.facts.maintenance == "1",
        })
        .collect()
}
