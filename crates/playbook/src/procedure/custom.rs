//! A user's playbook (`fleet upgrade --playbook FILE`): its steps in order, the built-in ones
//! reused, shell steps rendered with placeholders that can never become shell text.

use super::civicrm::Changes;
use super::{Changed, Procedure};
use crate::engine::{HostRun, StepError, StepResult, step_error_text};
use crate::outcome::SiteOutcome;
use crate::placeholder::render;
use crate::playbook::{Playbook, StepKind};
use crate::vocab::{StepName, Unit};
use crate::work::Work;

/// What a playbook's group changed: what its built-in steps changed, and the `undo`
/// commands of its completed shell steps, newest last.
#[derive(Default)]
pub(crate) struct PlaybookChanges {
    builtin: Changes,
    /// (unit, step, script) of each completed shell step that has an `undo`.
    shell_undo: Vec<(Unit, StepName, String)>,
}

impl Changed for PlaybookChanges {
    fn any(&self) -> bool {
        self.builtin.any()
    }

    fn holds_down(&self, site: &str) -> bool {
        self.builtin.holds_down(site)
    }

    fn past_no_return(&self) -> bool {
        self.builtin.past_no_return()
    }
}

impl Procedure for Playbook {
    type Changes = PlaybookChanges;

    async fn forward(
        &self,
        h: &HostRun<'_>,
        g: &[Work<'_>],
        tarball: &str,
        ch: &mut PlaybookChanges,
    ) -> StepResult {
        h.forward_playbook(g, self, tarball, ch).await
    }

    /// The shell steps' own `undo` commands, newest first, then the built-in steps' undo
    /// chain; a failed shell undo keeps the sites down.
    async fn undo(
        &self,
        h: &HostRun<'_>,
        g: &[Work<'_>],
        ch: &mut PlaybookChanges,
    ) -> Result<(), String> {
        let mut problems = Vec::new();
        while let Some((unit, step, script)) = ch.shell_undo.pop() {
            if let Err(e) = h.exec(&unit, step.clone(), &script).await {
                problems.push(format!("{step}: {}", step_error_text(&e)));
            }
        }
        h.put_back_after(g, &mut ch.builtin, problems).await
    }

    fn success(&self, w: &Work<'_>, target: &str) -> SiteOutcome {
        if self.needs_tarball() {
            super::Civicrm.success(w, target)
        } else {
            SiteOutcome::Completed {
                playbook: self.name.clone(),
            }
        }
    }
}

impl HostRun<'_> {
    /// A user's playbook: its steps in order, then maintenance back to the prior state.
    pub(crate) async fn forward_playbook(
        &self,
        g: &[Work<'_>],
        pb: &Playbook,
        tarball: &str,
        pch: &mut PlaybookChanges,
    ) -> StepResult {
        let ch = &mut pch.builtin;
        let run_dir = self.run_dir(g);
        let code = self.code_cmds(g);
        for step in &pb.steps {
            let name = StepName::Playbook(step.name.clone());
            self.checkpoint(ch, name.clone())?;
            match &step.kind {
                StepKind::Maintenance => self.maintenance_on(g, ch).await?,
                StepKind::Backup => self.backup(g, &run_dir).await?,
                StepKind::CodeSwap => self.code_swap(g, &code, tarball, ch).await?,
                StepKind::Verify => self.verify(g).await?,
                StepKind::Shell(sh) => {
                    let targets: Vec<&Work<'_>> = if sh.per_host {
                        g.iter().take(1).collect()
                    } else {
                        g.iter().collect()
                    };
                    for w in targets {
                        let value = |k: &str| -> String {
                            match k {
                                "root" => w.site.root.clone(),
                                "uri" => w.site.uri.clone(),
                                "site" => w.site.name.clone(),
                                "host" => self.host.to_owned(),
                                "web_user" => w.facts.web_user.clone(),
                                "backup_dir" => w.site.backup_dir.clone(),
                                "run_dir" => run_dir.clone(),
                                "drush" => w.site.drush.clone(),
                                "cv" => w.site.cv.clone(),
                                "civicrm_root" => w.facts.civicrm_root.clone(),
                                "civi_db" => w.facts.civi_db.clone(),
                                _ => self.ctx.settings.target.clone(),
                            }
                        };
                        // A value that cannot be placed safely fails the step before it runs.
                        let wrap = |t: &str| -> StepResult<String> {
                            let body = render(t, value)
                                .map_err(|e| (name.clone(), StepError::Failed(e)))?;
                            let user = match &sh.become_user {
                                Some(u) => Some(u.as_str()),
                                None if sh.as_web_user => Some(w.facts.web_user.as_str()),
                                None => None,
                            };
                            Ok(match user {
                                Some(u) => format!(
                                    "as_web {} /bin/sh -c {}",
                                    fleet_remote_exec::quote(u),
                                    fleet_remote_exec::quote(&body)
                                ),
                                None => body,
                            })
                        };
                        let unit = if sh.per_host {
                            Unit::Host
                        } else {
                            Unit::site(&w.site.name)
                        };
                        // All three rendered first: a step whose undo cannot be written must
                        // not run.
                        let run_cmd = wrap(&sh.run)?;
                        let verify_cmd = sh.verify.as_deref().map(wrap).transpose()?;
                        let undo_cmd = sh.undo.as_deref().map(wrap).transpose()?;
                        if sh.touches_db && !w.facts.civi_db.is_empty() {
                            ch.db_upgrade_started.insert(w.facts.civi_db.clone());
                        }
                        self.mark(w, name.clone(), None)?;
                        self.exec(&unit, name.clone(), &run_cmd)
                            .await
                            .map_err(|e| (name.clone(), e))?;
                        if let Some(v) = &verify_cmd {
                            let probe = StepName::Playbook(format!("{}-verify", step.name));
                            self.exec(&unit, probe, v)
                                .await
                                .map_err(|e| (name.clone(), e))?;
                        }
                        if let Some(u) = undo_cmd {
                            let undo = StepName::Playbook(format!("{}-undo", step.name));
                            pch.shell_undo.push((unit, undo, u));
                        }
                    }
                }
            }
        }
        if !ch.maintenance_on.is_empty() {
            self.maintenance_restore(g, ch).await?;
        }
        Ok(())
    }
}
