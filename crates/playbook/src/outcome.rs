//! How each site ended, and the run's report.

use std::fmt;

use crate::vocab::SiteStatus;

/// What state a site was left in after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Nothing had been changed yet.
    Untouched,
    /// Code and database were restored from this run's backups and maintenance mode is back
    /// to what it was before the run.
    RolledBack,
    /// Restored as far as possible but deliberately left in maintenance (`--on-failure hold`).
    Held,
    /// The way back failed: the site is still down. The text says what failed.
    RollbackFailed(String),
}

/// How one site ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteOutcome {
    /// Upgraded, verified, back out of maintenance (unless it was in maintenance before).
    Upgraded {
        /// Version before.
        from: String,
        /// Version after.
        to: String,
        /// Still in maintenance because it was before the run (its recorded prior state).
        in_maintenance: bool,
    },
    /// Put back on its old code and database from the run's backups (`fleet rollback`, or
    /// `fleet recover` of a site that had not reached its database upgrade), maintenance as
    /// it was before the run.
    RolledBack {
        /// The version it is back on.
        to: String,
        /// Where the databases it replaced were saved first (so the rollback can be undone).
        safety_dumps: Vec<String>,
    },
    /// Left as it was: a check before the restore did not hold (a dump missing or changed, a
    /// later run on the site, the site no longer at the run's target).
    Refused {
        /// Why.
        reason: String,
    },
    /// A user's playbook ran through on the site.
    Completed {
        /// The playbook's name.
        playbook: String,
    },
    /// `fleet migrate rollback`: `current` serves the old site again, out of maintenance as it
    /// was; the new release and database are kept.
    SwitchedBack {
        /// What `current` serves again (the old site's root).
        to: String,
        /// The new site's database, kept (with whatever was written to it since the release).
        kept: String,
    },
    /// `fleet migrate release`: `current` serves the new release, out of maintenance; the old
    /// release and database are kept for the way back.
    Released {
        /// The release served now.
        release: String,
        /// Its database.
        database: String,
    },
    /// `fleet migrate import`: the old site's data is in the new one and every QA gate
    /// passed; the old site is untouched and still served.
    Imported {
        /// What the gates found (counts, probe).
        summary: String,
    },
    /// `fleet migrate build`: a new release and database stand beside the old site, which
    /// is untouched and still served.
    Built {
        /// The release directory.
        release: String,
        /// The new site's database.
        database: String,
    },
    /// `fleet migrate cleanup`: what the site no longer needs (the old site once the new one
    /// is released, else the new site) is removed, each directory and database archived
    /// first; what `current` serves is never touched. The journal's row keeps saying where
    /// the site stands (released or not).
    CleanedUp {
        /// What `current` serves (kept).
        serves: String,
        /// What was removed (databases as `database NAME`, directories as paths).
        removed: Vec<String>,
        /// The archives and final dumps left in the site's backup dir.
        archives: Vec<String>,
        /// What was kept that might have gone, and why.
        kept: Vec<String>,
    },
    /// Already at the target version; nothing done.
    Skipped {
        /// Why.
        reason: String,
    },
    /// A step failed.
    Failed {
        /// The step.
        step: String,
        /// What went wrong.
        reason: String,
        /// The state it was left in.
        after: After,
    },
    /// The host could not be reached; nothing done.
    Unreachable {
        /// Why.
        reason: String,
    },
    /// Never started (failure budget exhausted, operator stopped, interrupted).
    NotStarted {
        /// Why.
        reason: String,
    },
    /// Aborted in the middle of a step: the remote state is whatever that step left.
    Interrupted {
        /// The step that was running.
        step: String,
        /// Whether the site was in maintenance because of this run.
        in_maintenance: bool,
    },
}

impl SiteOutcome {
    /// The status word (`upgraded`, `skipped`, `failed`, `rolled-back`, `held`,
    /// `rollback-failed`, `refused`, `unreachable`, `not-started`, `interrupted`).
    pub fn status(&self) -> SiteStatus {
        match self {
            SiteOutcome::Upgraded { .. } | SiteOutcome::Released { .. } => SiteStatus::Upgraded,
            SiteOutcome::RolledBack { .. } | SiteOutcome::SwitchedBack { .. } => {
                SiteStatus::RolledBack
            }
            SiteOutcome::Refused { .. } => SiteStatus::Refused,
            SiteOutcome::Completed { .. }
            | SiteOutcome::CleanedUp { .. }
            | SiteOutcome::Built { .. }
            | SiteOutcome::Imported { .. } => SiteStatus::Done,
            SiteOutcome::Skipped { .. } => SiteStatus::Skipped,
            SiteOutcome::Failed {
                after: After::Untouched,
                ..
            } => SiteStatus::Failed,
            SiteOutcome::Failed {
                after: After::RolledBack,
                ..
            } => SiteStatus::RolledBack,
            SiteOutcome::Failed {
                after: After::Held, ..
            } => SiteStatus::Held,
            SiteOutcome::Failed {
                after: After::RollbackFailed(_),
                ..
            } => SiteStatus::RollbackFailed,
            SiteOutcome::Unreachable { .. } => SiteStatus::Unreachable,
            SiteOutcome::NotStarted { .. } => SiteStatus::NotStarted,
            SiteOutcome::Interrupted { .. } => SiteStatus::Interrupted,
        }
    }

    /// Whether the site ended at the target (upgraded, or already there).
    pub fn at_target(&self) -> bool {
        matches!(
            self,
            SiteOutcome::Upgraded { .. }
                | SiteOutcome::Completed { .. }
                | SiteOutcome::Built { .. }
                | SiteOutcome::Imported { .. }
                | SiteOutcome::Released { .. }
                | SiteOutcome::CleanedUp { .. }
                | SiteOutcome::Skipped { .. }
        )
    }

    /// Whether this run leaves the site in maintenance mode.
    pub fn left_in_maintenance(&self) -> bool {
        match self {
            SiteOutcome::Failed { after, .. } => {
                matches!(after, After::Held | After::RollbackFailed(_))
            }
            SiteOutcome::Interrupted { in_maintenance, .. } => *in_maintenance,
            _ => false,
        }
    }

    /// Whether the site counts against the failure budget (unreachable only when asked).
    pub fn is_failure(&self, unreachable_counts: bool) -> bool {
        match self {
            SiteOutcome::Failed { .. }
            | SiteOutcome::Interrupted { .. }
            | SiteOutcome::Refused { .. } => true,
            SiteOutcome::Unreachable { .. } => unreachable_counts,
            _ => false,
        }
    }
}

impl fmt::Display for SiteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteOutcome::Upgraded {
                from,
                to,
                in_maintenance,
            } => {
                write!(f, "upgraded {from} -> {to}")?;
                if *in_maintenance {
                    write!(f, " (in maintenance, as it was before the run)")?;
                }
                Ok(())
            }
            SiteOutcome::RolledBack { to, safety_dumps } => {
                write!(
                    f,
                    "rolled back to {to}: code and database from this run's backups, maintenance as before"
                )?;
                if !safety_dumps.is_empty() {
                    write!(
                        f,
                        "; the replaced database is kept in {}",
                        safety_dumps
                            .iter()
                            .map(|d| format!("`{d}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )?;
                }
                Ok(())
            }
            SiteOutcome::Refused { reason } => {
                write!(f, "not rolled back: {reason} (nothing was changed)")
            }
            SiteOutcome::Completed { playbook } => write!(f, "playbook `{playbook}` done"),
            SiteOutcome::SwitchedBack { to, kept } => write!(
                f,
                "switched back: `current` serves `{to}` again, maintenance as before the release; the new site and its database `{kept}` are kept (what was written there since the release was not copied back)"
            ),
            SiteOutcome::Released { release, database } => write!(
                f,
                "released: `current` serves `{release}` (database `{database}`); the old release and database are kept for the way back"
            ),
            SiteOutcome::Imported { summary } => {
                write!(
                    f,
                    "imported, QA passed: {summary}; the old site is untouched"
                )
            }
            SiteOutcome::Built { release, database } => write!(
                f,
                "built `{release}` with database `{database}`, linked as `preview`; the old site is untouched"
            ),
            SiteOutcome::CleanedUp {
                serves,
                removed,
                archives,
                kept,
            } => {
                if removed.is_empty() {
                    write!(f, "cleaned up: nothing left to remove")?;
                } else {
                    write!(f, "cleaned up: removed {}", removed.join(", "))?;
                }
                if !archives.is_empty() {
                    write!(f, "; archived first to {}", archives.join(", "))?;
                }
                if !kept.is_empty() {
                    write!(f, "; kept {}", kept.join("; "))?;
                }
                write!(f, "; `current` serves `{serves}`")
            }
            SiteOutcome::Skipped { reason } => write!(f, "skipped: {reason}"),
            SiteOutcome::Failed {
                step,
                reason,
                after,
            } => {
                write!(f, "failed at `{step}`: {reason}")?;
                match after {
                    After::Untouched => write!(f, " (nothing was changed)"),
                    After::RolledBack => write!(
                        f,
                        " (rolled back: code and database restored, maintenance as before)"
                    ),
                    After::Held => {
                        write!(f, " (held in maintenance on purpose: --on-failure hold)")
                    }
                    After::RollbackFailed(why) => {
                        write!(f, " (ROLLBACK FAILED, SITE STILL IN MAINTENANCE: {why})")
                    }
                }
            }
            SiteOutcome::Unreachable { reason } => write!(f, "unreachable: {reason}"),
            SiteOutcome::NotStarted { reason } => write!(f, "not started: {reason}"),
            SiteOutcome::Interrupted {
                step,
                in_maintenance,
            } => {
                write!(f, "interrupted during `{step}`")?;
                if *in_maintenance {
                    write!(f, " (SITE STILL IN MAINTENANCE)")?;
                }
                Ok(())
            }
        }
    }
}

/// One site's end state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteReport {
    /// Host.
    pub host: String,
    /// Site.
    pub site: String,
    /// Batch index (0 = canary).
    pub batch: usize,
    /// How it ended.
    pub outcome: SiteOutcome,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Run id.
    pub run: String,
    /// Every site, in inventory order.
    pub sites: Vec<SiteReport>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Journal writes that failed during the run ([`crate::Journal::write_failures`]): each
    /// stopped the step it guarded, and the journal may not know everything the summary does.
    pub journal_failures: Vec<String>,
}

impl RunReport {
    /// True when every site is at the target version and none is left in maintenance.
    pub fn success(&self) -> bool {
        self.sites.iter().all(|s| s.outcome.at_target())
    }
}
