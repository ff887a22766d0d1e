//! A user's playbook (`fleet upgrade --playbook FILE`): its steps in order, the built-in ones
//! reused, shell steps rendered with placeholders that can never become shell text.

use crate::engine::{Changes, HostRun, StepError};
use crate::placeholder::render;
use crate::playbook::{Playbook, StepKind};
use crate::work::Work;

impl HostRun<'_> {
    /// A user's playbook: its steps in order, then maintenance back to the prior state.
    pub(crate) async fn forward_playbook(
        &self,
        g: &[Work<'_>],
        pb: &Playbook,
        tarball: &str,
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        let run_dir = self.run_dir(g);
        let code = self.code_cmds(g);
        for step in &pb.steps {
            self.checkpoint(ch, &step.name)?;
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
                        let wrap = |t: &str| -> Result<String, (String, StepError)> {
                            let body = render(t, value)
                                .map_err(|e| (step.name.clone(), StepError::Failed(e)))?;
                            Ok(if sh.as_web_user {
                                format!(
                                    "as_web {} /bin/sh -c {}",
                                    fleet_remote_exec::quote(&w.facts.web_user),
                                    fleet_remote_exec::quote(&body)
                                )
                            } else {
                                body
                            })
                        };
                        let unit = if sh.per_host {
                            "host".to_owned()
                        } else {
                            format!("site:{}", w.site.name)
                        };
                        // All three rendered first: a step whose undo cannot be written must
                        // not run.
                        let run_cmd = wrap(&sh.run)?;
                        let verify_cmd = sh.verify.as_deref().map(wrap).transpose()?;
                        let undo_cmd = sh.undo.as_deref().map(wrap).transpose()?;
                        if sh.touches_db && !w.facts.civi_db.is_empty() {
                            ch.db_upgrade_started.insert(w.facts.civi_db.clone());
                        }
                        self.mark(w, &step.name, None)?;
                        self.exec(&unit, &step.name, &run_cmd)
                            .await
                            .map_err(|e| (step.name.clone(), e))?;
                        if let Some(v) = &verify_cmd {
                            self.exec(&unit, &format!("{}-verify", step.name), v)
                                .await
                                .map_err(|e| (step.name.clone(), e))?;
                        }
                        if let Some(u) = undo_cmd {
                            ch.shell_undo.push((unit, format!("{}-undo", step.name), u));
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
