//! Per-site locks on the host: an atomic `mkdir` naming the run, the controller and its pid,
//! taken for every site of a group before any of them goes down, re-entrant for the same run,
//! and taken over from a run that is over only once none of its steps still runs there.

use fleet_inventory::Site;
use fleet_remote_exec::quote;

use crate::discovery::Facts;
use crate::engine::{HostRun, StepError, StepResult, step_error_text};
use crate::journal::SiteUpdate;
use crate::vocab::{ArtifactKind, RunState, SiteStatus};
use crate::vocab::{BuiltinStep, Unit};
use crate::work::Work;

impl HostRun<'_> {
    /// Takes the locks of every site of `g`, or none: returns the sites whose lock this call
    /// took (a lock the run held already is not among them, and is never released on the
    /// way out of a failure: it protects what the run left).
    pub(crate) async fn lock_group<'w>(&self, g: &[Work<'w>]) -> Result<Vec<Work<'w>>, String> {
        let owner = format!(
            "run={} controller={} pid={} time={}",
            self.ctx.run,
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap_or_default()
                .trim(),
            std::process::id(),
            crate::journal::format_time(crate::journal::now_ms())
        );
        let mut taken = Vec::new();
        let mut taken_over = Vec::new();
        for w in g {
            let dir = lock_dir(w.site, &w.facts);
            let unit = Unit::site(&w.site.name);
            // Recorded before the `mkdir`: a controller killed right after it leaves a
            // journal that names the lock, so `fleet recover` can release it.
            if let Err((_, e)) = self.record(BuiltinStep::Lock, &unit, ArtifactKind::Lock, &dir) {
                self.unlock_group(&taken).await;
                return Err(step_error_text(&e));
            }
            let mut attempt = self
                .exec(
                    &unit,
                    BuiltinStep::Lock,
                    &lock(&dir, &owner, &self.ctx.run, None),
                )
                .await;
            // A lock left by a run that is over (our journal says so) or named by
            // `--break-lock` is stale: take it over.
            if let Ok(out) = &attempt
                && let Some(holder) = lock_holder(out)
                && self.lock_is_stale(&holder)
            {
                // A dead controller's step may still be running on the host: never work on
                // a site under it.
                if let Err(why) =
                    crate::inflight::settle(self.ctx, self.session, self.host, &holder).await
                {
                    self.unlock_group(&taken).await;
                    return Err(why);
                }
                tracing::warn!(host = self.host, site = %w.site.name, run = %holder, "taking over a stale lock");
                taken_over.push((w.clone(), holder.clone()));
                attempt = self
                    .exec(
                        &unit,
                        BuiltinStep::Lock,
                        &lock(&dir, &owner, &self.ctx.run, Some(&holder)),
                    )
                    .await;
            }
            match attempt {
                Ok(out) if matches!(out.trim(), "locked" | "relocked") => {
                    if out.trim() == "locked" {
                        taken.push(w.clone());
                    }
                }
                Ok(out) => {
                    self.unlock_group(&taken).await;
                    return Err(format!(
                        "site `{}` is locked by another run: {}",
                        w.site.name,
                        out.trim().trim_start_matches("held-by ")
                    ));
                }
                Err(StepError::Failed(why)) => {
                    self.unlock_group(&taken).await;
                    return Err(why);
                }
                Err(StepError::Aborted) => return Err("aborted".into()),
            }
        }
        // The dead run no longer owns these sites. One it left in maintenance stays its
        // until this run has recorded the prior state it carries over (`maintenance_on`).
        for (w, holder) in taken_over.iter().filter(|(w, _)| w.prior_from.is_none()) {
            self.supersede(holder, w)
                .map_err(|(_, e)| step_error_text(&e))?;
        }
        Ok(taken)
    }

    /// Marks `earlier`'s row of the site as taken over by this run, so that `fleet recover`
    /// and `fleet resume` of that run leave it alone.
    pub(crate) fn supersede(&self, earlier: &str, w: &Work<'_>) -> StepResult {
        // A lock of a run this journal never knew (another controller's, `--break-lock`)
        // has no row here to update.
        if !matches!(self.ctx.journal.run(earlier), Ok(Some(_))) {
            return Ok(());
        }
        let detail = format!(
            "taken over by run {} (prior maintenance state `{}` carried over)",
            self.ctx.run, w.facts.maintenance
        );
        self.ctx
            .journal
            .site(
                earlier,
                self.host,
                &w.site.name,
                &SiteUpdate {
                    status: Some(SiteStatus::Superseded),
                    in_maintenance: Some(false),
                    detail: Some(&detail),
                    ..Default::default()
                },
            )
            .map_err(|e| {
                (
                    BuiltinStep::RecordMaintenance.into(),
                    StepError::Failed(format!("journal: {e}")),
                )
            })
    }

    /// Whether the run holding a lock is over: named by `--break-lock`, or in this journal
    /// and no longer running (or running with no live controller on this machine).
    fn lock_is_stale(&self, holder: &str) -> bool {
        if self.ctx.settings.break_lock.as_deref() == Some(holder) {
            return true;
        }
        match self.ctx.journal.run(holder) {
            Ok(Some(r)) if r.state != RunState::Running => true,
            Ok(Some(r)) => {
                let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                me.trim() == r.controller
                    && !std::path::Path::new(&format!("/proc/{}", r.pid)).exists()
            }
            _ => false,
        }
    }

    pub(crate) async fn unlock_group(&self, g: &[Work<'_>]) {
        for w in g {
            let dir = lock_dir(w.site, &w.facts);
            let _ = self
                .exec(
                    &Unit::site(&w.site.name),
                    BuiltinStep::Unlock,
                    &unlock(&dir, &self.ctx.run),
                )
                .await;
        }
    }
}

/// The run id in a `held-by run=ID controller=...` answer.
fn lock_holder(out: &str) -> Option<String> {
    out.trim()
        .strip_prefix("held-by ")?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("run="))
        .map(str::to_owned)
}

pub(crate) fn lock_dir(site: &Site, facts: &Facts) -> String {
    let key: String = format!("{}{}", facts.site_dir, site.uri)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{}/.fleet-locks/{key}", site.backup_dir)
}

/// Takes the per-site lock on the host: an atomic `mkdir` holding the owner's run id,
/// controller and pid. Re-entrant for the same run (resume, recover). Prints `locked` (taken
/// now, or over from `take_over`), `relocked` (the run held it already) or
/// `held-by <owner line>`.
pub(crate) fn lock(dir: &str, owner: &str, run: &str, take_over: Option<&str>) -> String {
    let mut mine = format!(
        "grep -q {} \"$l/owner\" 2>/dev/null",
        quote(&format!("run={run} "))
    );
    if let Some(stale) = take_over {
        mine.push_str(&format!(
            " || grep -q {} \"$l/owner\" 2>/dev/null",
            quote(&format!("run={stale} "))
        ));
    }
    format!(
        "umask 077; l={l}; mkdir -p \"$(dirname \"$l\")\" && if mkdir \"$l\" 2>/dev/null; then printf '%s\\n' {o} > \"$l/owner\" && echo locked; \
         elif {mine}; then printf '%s\\n' {o} > \"$l/owner\" && echo relocked; \
         else echo \"held-by $(cat \"$l/owner\" 2>/dev/null)\"; fi",
        l = quote(dir),
        o = quote(owner),
    )
}

/// Releases a lock only if this run holds it.
pub(crate) fn unlock(dir: &str, run: &str) -> String {
    format!(
        "l={l}; if grep -q {r} \"$l/owner\" 2>/dev/null; then rm -rf \"$l\"; fi; true",
        l = quote(dir),
        r = quote(&format!("run={run} ")),
    )
}
