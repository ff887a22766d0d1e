//! Locks a run took and never gave back on sites that need nothing else: settled ones (the
//! controller died between a site's last step and its unlock) and ones it never changed (it
//! died between a batch's locks and its first step). Left alone, such a lock is only taken
//! over by a later run of this journal; another controller's run would find the site locked.

use crate::engine::{HostRun, step_error_text};
use crate::event::Event;
use crate::journal::{HeldLock, Journal, SiteRow};
use crate::lock::unlock;
use crate::vocab::{BuiltinStep, SiteStatus, Unit};

/// The held locks of `run` on sites that `restoring` (the rows a recovery brings to a safe
/// end, which release their own locks) does not hold, no later run took over, and `wanted`
/// selects.
pub(crate) fn lone_locks(
    journal: &Journal,
    run: &str,
    restoring: &[SiteRow],
    wanted: impl Fn(&str, &str) -> bool,
) -> Result<Vec<HeldLock>, crate::error::PlaybookError> {
    let superseded: Vec<SiteRow> = journal
        .sites(run)?
        .into_iter()
        .filter(|r| r.status == SiteStatus::Superseded)
        .collect();
    let among =
        |rows: &[SiteRow], l: &HeldLock| rows.iter().any(|r| r.host == l.host && r.site == l.site);
    Ok(journal
        .held_locks(run)?
        .into_iter()
        .filter(|l| !among(restoring, l) && !among(&superseded, l))
        .filter(|l| wanted(&l.host, &l.site))
        .collect())
}

/// Releases `locks` (this host's) where this run still holds them, each a journaled step.
/// The caller has made sure that no step of the run still runs on the host.
pub(super) async fn release_locks(h: &HostRun<'_>, locks: &[HeldLock]) {
    for l in locks {
        let said = match h
            .exec(
                &Unit::site(&l.site),
                BuiltinStep::Unlock,
                &unlock(&l.dir, &h.ctx.run),
            )
            .await
        {
            Ok(_) => format!(
                "released the lock run {} held on site `{}` (the site needed nothing else)",
                h.ctx.run, l.site
            ),
            Err(e) => format!(
                "could not release the lock run {} holds on site `{}`: {}; a later run of this journal takes it over",
                h.ctx.run,
                l.site,
                step_error_text(&e)
            ),
        };
        h.ctx.reporter.on_event(&Event::Notice {
            host: h.host.to_owned(),
            message: said,
        });
    }
}
