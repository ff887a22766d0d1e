//! The removals of each side, in the order that keeps the way back open until the copies
//! exist.

use fleet_remote_exec::quote;

use super::copies::{Db, release_drush};
use super::plan::Plan;
use super::script::{self, Found};
use super::{SiteCleanup, Step, at, stop};
use crate::discovery::safe_path;
use crate::engine::{HostRun, StepError, step_error_text};
use crate::procedure::migrate::build::{preview_unlink_script, release_tmp};
use crate::procedure::migrate::manifest::Manifest;
use crate::procedure::migrate::settings::php_str;
use crate::vocab::{ArtifactKind, BuiltinStep, Unit};

impl HostRun<'_> {
    /// The new site detached from the old settings, the copies, the code moved aside (the
    /// site still boots, or it goes back), the database dropped, the code deleted.
    pub(super) async fn remove_old_side(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        found: &Found,
        plan: &Plan,
        old_root: &str,
        served: &[String],
    ) -> Step {
        let current = work.w.site.current.clone().unwrap_or_default();
        let live = script::current_guard(&current, &work.release, true);
        if found.old_exists {
            self.detach_settings(m, work, &found.lock_dir).await?;
        }
        let drush = release_drush(&work.release, &m.site.drush);
        let s = work.w.site;
        // The old CiviCRM is dumped by the old site's drush (run as the SSH user, as the
        // upgrade's dumps are), dropped over the new site's CiviCRM connection (the copy's
        // server is the old one's).
        let old_drush = super::super::old_drush(s);
        let dbs = databases(
            plan,
            |db| Db::drupal(&drush, db, &m.import.legacy_key, "default"),
            |db| {
                Db::civicrm(
                    &format!("{drush} civicrm:sql-cli"),
                    db,
                    &format!("{old_drush} civicrm-sql-dump"),
                )
            },
        )?;
        for db in &dbs {
            self.final_dump(work, db).await?;
        }
        if let Some(dir) = &plan.code {
            let name = if dir == old_root {
                format!("{}-old-root.tar.gz", work.w.site.name)
            } else {
                format!("{}-site-dir.tar.gz", work.w.site.name)
            };
            self.archive(work, dir, &name).await?;
            let guards = format!("{live}\n{}", script::not_served(served));
            self.move_aside(work, dir, BuiltinStep::CodeRemove, &guards)
                .await?;
            if let Err(e) = self.boots(m, work, BuiltinStep::QaBoot).await {
                // Not without it: the directory goes back where it was.
                let back = self
                    .exec(
                        &Unit::Codebase(dir.clone()),
                        BuiltinStep::CodeRemove,
                        &script::back(dir, &self.ctx.run),
                    )
                    .await;
                let mut why = format!("{}; `{dir}` was put back", step_error_text(&e.1));
                if let Err(b) = back {
                    why = format!(
                        "{}; `{dir}` could NOT be put back from `{}`: {}",
                        step_error_text(&e.1),
                        script::trash(dir, &self.ctx.run),
                        step_error_text(&b)
                    );
                }
                return stop(BuiltinStep::QaBoot, why);
            }
        }
        for db in &dbs {
            self.drop_database(work, db, &live).await?;
        }
        if let Some(dir) = &plan.code {
            self.exec(
                &Unit::Codebase(dir.clone()),
                BuiltinStep::CodeRemove,
                &script::purge(dir, &self.ctx.run),
            )
            .await
            .map_err(at(BuiltinStep::CodeRemove))?;
            work.removed.push(dir.clone());
        }
        self.boots(m, work, BuiltinStep::QaBoot).await
    }

    /// The preview link, the copies, the database dropped, the release moved aside and
    /// deleted.
    pub(super) async fn remove_new_side(
        &self,
        m: &Manifest,
        work: &mut SiteCleanup<'_>,
        found: &Found,
        plan: &Plan,
    ) -> Step {
        let unit = Unit::site(&work.w.site.name);
        let current = work.w.site.current.clone().unwrap_or_default();
        let base = current
            .rsplit_once('/')
            .map_or(String::new(), |(b, _)| b.to_owned());
        let unlive = script::current_guard(&current, &work.release, false);
        if found.release_real.is_empty() {
            // The release went (an earlier attempt of the cleanup moved it, or the build's
            // undo): its database went first, or must be said to remain.
            for db in plan.drop_civi.iter().chain(&plan.drop) {
                let dropped = self
                    .ctx
                    .journal
                    .step_done_at(
                        &self.ctx.run,
                        self.host,
                        &Unit::Database(db.clone()),
                        &BuiltinStep::DatabaseDrop.into(),
                    )
                    .ok()
                    .flatten()
                    .is_some();
                if !dropped {
                    return stop(
                        BuiltinStep::DatabaseDrop,
                        format!(
                            "the release is gone but this run never dropped database `{db}`: it may remain on the server (drop it by hand once you have a copy)"
                        ),
                    );
                }
            }
            self.exec(
                &unit,
                BuiltinStep::ReleaseRemove,
                &script::purge(&work.release, &self.ctx.run),
            )
            .await
            .map_err(at(BuiltinStep::ReleaseRemove))?;
            return Ok(());
        }
        let prior = self
            .site_artifact(&work.w.site.name, ArtifactKind::PriorPreview)
            .unwrap_or_default();
        self.exec(
            &unit,
            BuiltinStep::PreviewUnlink,
            &preview_unlink_script(&base, &work.release, &prior, &self.ctx.run),
        )
        .await
        .map_err(at(BuiltinStep::PreviewUnlink))?;
        let drush = release_drush(&work.release, &m.site.drush);
        // The CiviCRM copy first: its commands need the new site to boot on its database.
        // The copy is asked after and dropped over the old site's CiviCRM connection (same
        // server, and it stays), dumped by the release's CiviCRM.
        let s = work.w.site;
        let old_drush = super::super::old_drush(s);
        let dbs = databases(
            plan,
            |db| Db::drupal(&drush, db, "default", &m.import.legacy_key),
            |db| {
                Db::civicrm(
                    &format!("{old_drush} civicrm-sql-cli"),
                    db,
                    &format!("{drush} civicrm:sql-dump"),
                )
            },
        )?;
        for db in &dbs {
            self.final_dump(work, db).await?;
        }
        let name = format!("{}-release-site.tar.gz", work.w.site.name);
        self.archive(work, &format!("{}/sites/default", work.release), &name)
            .await?;
        for db in &dbs {
            self.drop_database(work, db, &unlive).await?;
        }
        let mark = format!("run={} site={}", self.ctx.run, work.w.site.name);
        let guards = format!(
            "{unlive}\n[ \"$(cat \"$D/.fleet-release\" 2>/dev/null)\" = {} ] || {{ echo \"$D is not this run's build of the site: kept\" >&2; exit 1; }}\nrm -rf {}",
            quote(&mark),
            quote(&release_tmp(&base, &self.ctx.run)),
        );
        let release = work.release.clone();
        self.move_aside(work, &release, BuiltinStep::ReleaseRemove, &guards)
            .await?;
        self.exec(
            &unit,
            BuiltinStep::ReleaseRemove,
            &script::purge(&release, &self.ctx.run),
        )
        .await
        .map_err(at(BuiltinStep::ReleaseRemove))?;
        work.removed.push(release);
        Ok(())
    }

    /// `dir` moved to its trash after `guards` (none of which may have run if it is gone).
    async fn move_aside(
        &self,
        work: &SiteCleanup<'_>,
        dir: &str,
        step: BuiltinStep,
        guards: &str,
    ) -> Step {
        safe_path("directory", dir).map_err(|e| (step, StepError::Failed(e)))?;
        self.exec(
            &Unit::Codebase(dir.to_owned()),
            step,
            &script::aside(dir, &self.ctx.run, &work.keep_dir, guards),
        )
        .await
        .map_err(at(step))?;
        Ok(())
    }

    /// `drush status` of the release says it boots.
    async fn boots(&self, m: &Manifest, work: &SiteCleanup<'_>, step: BuiltinStep) -> Step {
        let unit = Unit::site(&work.w.site.name);
        let script = format!(
            "{} status --format=json",
            release_drush(&work.release, &m.site.drush)
        );
        self.exec_probed(&unit, step, &script, "", |out| {
            let v: serde_json::Value = serde_json::from_str(out.trim())
                .map_err(|_| "drush status printed no JSON".to_owned())?;
            if v.get("bootstrap").and_then(|x| x.as_str()) == Some("Successful") {
                Ok(())
            } else {
                Err("the new site does not boot (drush status: no successful bootstrap)".into())
            }
        })
        .await
        .map_err(at(step))
    }

    /// Copies the old site's settings file into the release (`legacy.settings.php`, its mode
    /// kept) and points the new settings' include at the copy, then checks the site boots.
    /// Done already (the include names the copy): only the check.
    async fn detach_settings(
        &self,
        m: &Manifest,
        work: &SiteCleanup<'_>,
        old_site_dir: &str,
    ) -> Step {
        let unit = Unit::site(&work.w.site.name);
        let dir = format!("{}/sites/default", work.release);
        let old = format!("{old_site_dir}/settings.php");
        let copy = format!("{dir}/legacy.settings.php");
        let (old_lit, new_lit) = (php_str(&old), php_str(&copy));
        let script = format!(
            "S={s}; OLD={old}; COPY={copy}; O={ol}; N={nl}\n\
             if grep -qF \"include $N\" \"$S/settings.php\"; then exit 0; fi\n\
             grep -qF \"include $O\" \"$S/settings.php\" || {{ echo \"$S/settings.php includes neither the old site's settings nor a copy: left as it is\" >&2; exit 1; }}\n\
             [ -f \"$OLD\" ] || {{ echo \"$OLD is gone: the new site cannot be detached from it\" >&2; exit 1; }}\n\
             m=$(stat -c %a \"$S\"); chmod u+w \"$S\" || exit 1\n\
             ok=0; cp -p \"$OLD\" \"$COPY.tmp\" && mv \"$COPY.tmp\" \"$COPY\" \\\n\
               && O=\"include $O\" N=\"include $N\" awk '{{ i = index($0, ENVIRON[\"O\"]); if (i) $0 = substr($0, 1, i - 1) ENVIRON[\"N\"] substr($0, i + length(ENVIRON[\"O\"])); print }}' \"$S/settings.php\" > \"$S/settings.php.tmp\" \\\n\
               && grep -qF \"include $N\" \"$S/settings.php.tmp\" && ! grep -qF \"include $O\" \"$S/settings.php.tmp\" \\\n\
               && chmod --reference=\"$S/settings.php\" \"$S/settings.php.tmp\" && mv \"$S/settings.php.tmp\" \"$S/settings.php\" && ok=1\n\
             rm -f \"$S/settings.php.tmp\"; chmod \"$m\" \"$S\"\n\
             [ \"$ok\" = 1 ] || {{ echo \"the new settings could not be pointed at $COPY\" >&2; exit 1; }}",
            s = quote(&dir),
            old = quote(&old),
            copy = quote(&copy),
            ol = quote(&old_lit),
            nl = quote(&new_lit),
        );
        self.exec(&unit, BuiltinStep::SettingsDetach, &script)
            .await
            .map_err(at(BuiltinStep::SettingsDetach))?;
        self.boots(m, work, BuiltinStep::SettingsDetach).await
    }
}

/// The plan's databases, the CiviCRM one first (its commands need the site to boot).
fn databases(
    plan: &Plan,
    drupal: impl Fn(&str) -> Result<Db, String>,
    civicrm: impl Fn(&str) -> Result<Db, String>,
) -> Step<Vec<Db>> {
    let mut out = Vec::new();
    if let Some(c) = &plan.drop_civi {
        out.push(civicrm(c).map_err(|e| (BuiltinStep::FinalDump, StepError::Failed(e)))?);
    }
    if let Some(d) = &plan.drop {
        out.push(drupal(d).map_err(|e| (BuiltinStep::FinalDump, StepError::Failed(e)))?);
    }
    Ok(out)
}
