//! The journaled step engine: every remote step is recorded before it runs and after it
//! ends, carries its journal id to the host (so a crashed run's steps can be found there),
//! and is judged by its exit status or by the caller's own probe. A group of sites goes
//! through a [`Procedure`] forward, and back through its undo chain when a step fails. It
//! knows no procedure: what a step does, and what it changed, is the procedure's.

use std::fmt;

use fleet_remote_exec::{ExecError, ExecOptions, ExitStatus, RemoteCommand};

use crate::context::{Ctx, HostJob, OnFailure};
use crate::error::PlaybookError;
use crate::event::Event;
use crate::journal::SiteUpdate;
use crate::outcome::{After, SiteOutcome};
use crate::procedure::{AnyProcedure, Changed, Procedure};
use crate::remote::Remote;
use crate::vocab::{ArtifactKind, SiteStatus, StepName, StepState, Unit};
use crate::work::Work;

/// What a timed-out step's failure says when its remote process could not be killed: an
/// undo must not race it.
pub(crate) const MAY_STILL_RUN: &str = "remote process may still run";

/// A step's result; on failure, which step and why.
pub(crate) type StepResult<T = ()> = Result<T, (StepName, StepError)>;

/// Why a step did not succeed.
pub(crate) enum StepError {
    /// The command failed or its verification did not hold.
    Failed(String),
    /// Aborted (second interrupt): remote state unknown.
    Aborted,
}

pub(crate) struct HostRun<'a> {
    pub(crate) ctx: &'a Ctx,
    pub(crate) session: &'a dyn Remote,
    pub(crate) host: &'a str,
    pub(crate) job: &'a HostJob,
    /// Shell functions the procedure's scripts use, put before every script.
    pub(crate) prelude: &'static str,
}

/// Shell helpers every script may use: `as_web USER CMD...` runs CMD as the web-server user
/// (directly, with runuser as root, else with `sudo -n`).
pub(crate) const AS_WEB: &str = r#"as_web() { w=$1; shift; if [ -z "$w" ] || [ "$(id -un)" = "$w" ]; then "$@"; elif [ "$(id -u)" = 0 ] && command -v runuser >/dev/null 2>&1; then runuser -u "$w" -- "$@"; else sudo -n -u "$w" -H -- "$@"; fi; }
"#;

impl HostRun<'_> {
    /// Records an artifact the way back depends on; a journal that cannot record it stops the
    /// step before its side effect.
    pub(crate) fn record(
        &self,
        step: impl Into<StepName>,
        unit: &Unit,
        kind: ArtifactKind,
        value: &str,
    ) -> StepResult {
        self.ctx
            .journal
            .set_artifact(&self.ctx.run, self.host, unit, kind, value)
            .map_err(|e| {
                (
                    step.into(),
                    StepError::Failed(format!("the journal could not record the {kind}: {e}")),
                )
            })
    }

    /// Between steps: a first interrupt turns a group that has not reached the DB upgrade back.
    pub(crate) fn checkpoint(&self, ch: &impl Changed, next: impl Into<StepName>) -> StepResult {
        if self.ctx.cancel.abort.is_cancelled() {
            return Err((next.into(), StepError::Aborted));
        }
        if self.ctx.cancel.drain.is_cancelled() && !ch.past_no_return() {
            return Err((
                next.into(),
                StepError::Failed("interrupted by the operator before the database upgrade".into()),
            ));
        }
        Ok(())
    }

    /// Records that the procedure reached `step` on the site (and, when given, whether the
    /// site is now in maintenance). A journal that cannot record it fails the step before
    /// its side effect: recovery must never find a site down that the journal says is up.
    pub(crate) fn mark(
        &self,
        w: &Work<'_>,
        step: impl Into<StepName>,
        in_maintenance: Option<bool>,
    ) -> StepResult {
        let step = step.into();
        self.ctx
            .journal
            .site(
                &self.ctx.run,
                self.host,
                &w.site.name,
                &SiteUpdate {
                    status: Some(SiteStatus::Running),
                    step: Some(&step),
                    from_version: Some(&w.facts.code_version),
                    in_maintenance,
                    ..Default::default()
                },
            )
            .map_err(|e| {
                (
                    step.clone(),
                    StepError::Failed(format!("the journal could not record the step: {e}")),
                )
            })
    }

    pub(crate) fn journal_start(&self, unit: &Unit, step: &StepName, detail: &str) -> Option<i64> {
        self.ctx.reporter.on_event(&Event::StepStarted {
            host: self.host.into(),
            unit: unit.to_string(),
            step: step.to_string(),
        });
        match self
            .ctx
            .journal
            .step_start(&self.ctx.run, self.host, unit, step, detail)
        {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!("journal: {e}");
                None
            }
        }
    }

    pub(crate) fn journal_end(
        &self,
        id: Option<i64>,
        unit: &Unit,
        step: &StepName,
        result: &Result<(), String>,
    ) {
        let (state, detail) = match result {
            Ok(()) => (StepState::Done, String::new()),
            Err(why) => (StepState::Failed, why.clone()),
        };
        // The step has happened either way; a journal that cannot say how it ended leaves
        // it `started`, which recovery treats as "may have run" and re-reads on the host.
        if let Some(id) = id
            && let Err(e) = self.ctx.journal.step_end(id, state, &detail)
        {
            tracing::error!("journal: {e}");
        }
        self.ctx.reporter.on_event(&Event::StepFinished {
            host: self.host.into(),
            unit: unit.to_string(),
            step: step.to_string(),
            ok: result.is_ok(),
            detail,
        });
    }

    /// Runs one journaled step; success means exit 0. Returns stdout.
    pub(crate) async fn exec(
        &self,
        unit: &Unit,
        step: impl Into<StepName>,
        script: &str,
    ) -> Result<String, StepError> {
        self.exec_inner(unit, &step.into(), script, "", false)
            .await
            .map(|(_, out)| out)
    }

    /// Runs one journaled step whose exit status proves nothing: `judge` reads its output
    /// (the probe the script ends with) and decides, and the journal records that verdict
    /// as the step's end, never a bare exit status.
    pub(crate) async fn exec_probed<T>(
        &self,
        unit: &Unit,
        step: impl Into<StepName>,
        script: &str,
        detail: &str,
        judge: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, StepError> {
        let step = step.into();
        let (id, out) = self.exec_inner(unit, &step, script, detail, true).await?;
        let verdict = judge(&out);
        self.journal_end(
            id,
            unit,
            &step,
            &verdict.as_ref().map(|_| ()).map_err(Clone::clone),
        );
        verdict.map_err(StepError::Failed)
    }

    /// Runs a step; with `probed`, any exit status is handed back with the step left open
    /// for [`Self::exec_probed`] to end with its verdict.
    async fn exec_inner(
        &self,
        unit: &Unit,
        step: &StepName,
        script: &str,
        detail: &str,
        probed: bool,
    ) -> Result<(Option<i64>, String), StepError> {
        let id = self.journal_start(unit, step, detail);
        if id.is_none() {
            // Guarantee 1: nothing happens that the journal does not know about first.
            let r = Err("the journal could not record this step; not running it".to_owned());
            self.journal_end(None, unit, step, &r);
            return Err(StepError::Failed(
                "the journal could not record this step".into(),
            ));
        }
        let opts = ExecOptions {
            timeout: self.ctx.settings.step_timeout,
            max_output: 256 * 1024,
        };
        // Tags the step's processes on the host so that `fleet recover` can tell whether a
        // step of a crashed run is still running there before it undoes anything.
        let cmd = RemoteCommand::shell(format!(
            "export FLEET_RUN_STEP={}; {AS_WEB}{}{script}",
            fleet_remote_exec::quote(&format!(
                "{}/{}/{}",
                self.ctx.run,
                self.host,
                id.unwrap_or_default()
            )),
            self.prelude,
        ));
        let r = self.session.exec(&cmd, &opts, &self.ctx.cancel.abort).await;
        let (result, ret) = match r {
            Ok(o) => match &o.status {
                ExitStatus::Cancelled { .. } => (
                    Err("aborted by the operator".to_owned()),
                    Err(StepError::Aborted),
                ),
                ExitStatus::TimedOut { killed } => {
                    let why = format!(
                        "timed out after {:?} ({})",
                        self.ctx.settings.step_timeout,
                        if *killed {
                            "remote process killed"
                        } else {
                            MAY_STILL_RUN
                        }
                    );
                    (Err(why.clone()), Err(StepError::Failed(why)))
                }
                _ if probed => return Ok((id, o.stdout.to_string_lossy())),
                s if s.success() => (Ok(()), Ok((id, o.stdout.to_string_lossy()))),
                s => {
                    let why = format!(
                        "{s}: {}",
                        last_line(&o.stderr.to_string_lossy())
                            .if_empty(&last_line(&o.stdout.to_string_lossy()))
                    );
                    (Err(why.clone()), Err(StepError::Failed(why)))
                }
            },
            Err(e) => {
                let why = error_text(&e);
                (Err(why.clone()), Err(StepError::Failed(why)))
            }
        };
        self.journal_end(id, unit, step, &result);
        ret
    }
}

impl HostRun<'_> {
    /// Procedure `p`'s read-only checks of one locked group: `None` when they pass, else
    /// one outcome per site (untouched).
    pub(crate) async fn preflight_group<P: Procedure>(
        &self,
        p: &P,
        g: &[Work<'_>],
    ) -> Option<Vec<(String, SiteOutcome)>> {
        let each = |o: SiteOutcome| g.iter().map(|w| (w.site.name.clone(), o.clone())).collect();
        match p.preflight(self, g).await {
            Ok(()) => None,
            Err((step, StepError::Aborted)) => Some(each(SiteOutcome::Interrupted {
                step: step.to_string(),
                in_maintenance: false,
            })),
            Err((step, StepError::Failed(why))) => Some(each(failed(step, &why, After::Untouched))),
        }
    }

    /// Procedure `p` over one group of sites; on failure, its undo chain. One outcome per
    /// site of the group.
    pub(crate) async fn run_group<P: Procedure>(
        &self,
        p: &P,
        g: &[Work<'_>],
        tarball: &str,
    ) -> Vec<(String, SiteOutcome)> {
        let mut ch = P::Changes::default();
        let result = p.forward(self, g, tarball, &mut ch).await;
        let target = &self.ctx.settings.target;
        let each = |o: &dyn Fn(&Work<'_>) -> SiteOutcome| -> Vec<(String, SiteOutcome)> {
            g.iter().map(|w| (w.site.name.clone(), o(w))).collect()
        };
        match result {
            Ok(()) => each(&|w| p.success(w, target)),
            // Aborted: the remote state is unknown; `fleet recover` re-reads it.
            Err((step, StepError::Aborted)) => each(&|w| SiteOutcome::Interrupted {
                step: step.to_string(),
                in_maintenance: ch.holds_down(&w.site.name),
            }),
            Err((step, StepError::Failed(reason))) => {
                let touched = ch.any();
                let after = match p.undo(self, g, &mut ch).await {
                    Err(why) => After::RollbackFailed(why),
                    Ok(()) if !touched => After::Untouched,
                    Ok(()) if self.ctx.settings.on_failure == OnFailure::Hold => After::Held,
                    Ok(()) => After::RolledBack,
                };
                each(&|_| failed(&step, &reason, after.clone()))
            }
        }
    }
}

pub(crate) trait IfEmpty {
    fn if_empty(self, other: &str) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, other: &str) -> String {
        if self.is_empty() {
            other.to_owned()
        } else {
            self
        }
    }
}

pub(crate) fn expect(out: &str, want: &str, what: &str) -> Result<(), StepError> {
    let got = out.lines().last().unwrap_or("").trim();
    if got == want {
        Ok(())
    } else {
        Err(StepError::Failed(format!(
            "{what} is `{got}` after the step, expected `{want}`"
        )))
    }
}

pub(crate) fn failed(step: impl fmt::Display, reason: &str, after: After) -> SiteOutcome {
    SiteOutcome::Failed {
        step: step.to_string(),
        reason: reason.into(),
        after,
    }
}

pub(crate) fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

pub(crate) fn step_error_text(e: &StepError) -> String {
    match e {
        StepError::Failed(w) => w.clone(),
        StepError::Aborted => "aborted".into(),
    }
}

pub(crate) fn error_text(e: &ExecError) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Records a site's end in the journal and tells the reporter.
pub(crate) fn finish_site(
    ctx: &Ctx,
    host: &str,
    site: &str,
    _batch: usize,
    outcome: &SiteOutcome,
    from: Option<&str>,
) -> Result<(), PlaybookError> {
    let detail = outcome.to_string();
    // An outcome that never reached the host (unreachable, not admitted) says nothing of the
    // site: a row that says it is down or mid-step (from an earlier attempt of this run)
    // still holds, and must stay for `fleet recover` to find.
    if matches!(
        outcome,
        SiteOutcome::Unreachable { .. } | SiteOutcome::NotStarted { .. }
    ) && ctx
        .journal
        .site_row(&ctx.run, host, site)?
        .is_some_and(|r| r.in_maintenance || r.status.is_midway())
    {
        ctx.reporter.on_event(&Event::SiteFinished {
            host: host.into(),
            site: site.into(),
            outcome: outcome.clone(),
        });
        return Ok(());
    }
    // In a migrate run the row says where the site stands across the phases: a phase that
    // finds nothing to do (or refuses) leaves it, and a cleanup never changes where a site
    // stands (released or not), only what it says.
    let (status, in_maintenance) = match (&ctx.settings.procedure, outcome) {
        (AnyProcedure::Migrate(..), SiteOutcome::Skipped { .. } | SiteOutcome::Refused { .. }) => {
            ctx.reporter.on_event(&Event::SiteFinished {
                host: host.into(),
                site: site.into(),
                outcome: outcome.clone(),
            });
            return Ok(());
        }
        (AnyProcedure::Migrate(_, crate::procedure::migrate::Phase::Cleanup(_)), _) => (None, None),
        _ => (Some(outcome.status()), Some(outcome.left_in_maintenance())),
    };
    ctx.journal.site(
        &ctx.run,
        host,
        site,
        &SiteUpdate {
            status,
            detail: Some(&detail),
            from_version: from,
            in_maintenance,
            ..Default::default()
        },
    )?;
    ctx.reporter.on_event(&Event::SiteFinished {
        host: host.into(),
        site: site.into(),
        outcome: outcome.clone(),
    });
    Ok(())
}
