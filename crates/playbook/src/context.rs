//! What every part of a run shares: the SSH client, the journal, the reporter, the cancel
//! tokens, and the settings a host job reads (nothing about batches or budgets: those are the
//! rollout's).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_inventory::Host;
use fleet_remote_exec::Target;
use tokio_util::sync::CancellationToken;

use crate::event::Reporter;
use crate::journal::Journal;
use crate::procedure::AnyProcedure;
use crate::remote::Connect;
use crate::translations::Translations;

/// What to do with a site whose upgrade failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Restore code and database from the run's backups, then maintenance back as it was.
    Rollback,
    /// Restore, but keep the site in maintenance (for a person to look at it).
    Hold,
}

/// One host to upgrade: its inventory entry and how to reach it.
#[derive(Debug, Clone)]
pub struct HostJob {
    /// The inventory host (its sites).
    pub host: Host,
    /// Where to connect.
    pub target: Target,
}

/// Cancellation: `drain` admits nothing new and brings sites that are still safe back;
/// `abort` kills running commands.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    /// First interrupt.
    pub drain: CancellationToken,
    /// Second interrupt (also cancels `drain` when created with [`Cancel::new`]).
    pub abort: CancellationToken,
}

impl Cancel {
    /// A pair where aborting also drains.
    pub fn new() -> Self {
        let abort = CancellationToken::new();
        Self {
            drain: abort.child_token(),
            abort,
        }
    }
}

/// What a host job needs to know of its run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The version the run installs (or, for recovery and rollback, installed).
    pub(crate) target: String,
    /// Bound on each remote step.
    pub(crate) step_timeout: Duration,
    /// Failure policy.
    pub(crate) on_failure: OnFailure,
    /// What runs on each group of sites.
    pub(crate) procedure: AnyProcedure,
    /// The local release tarball the procedure uploads; `None` for jobs that upload nothing
    /// (recovery, rollback).
    pub(crate) tarball: Option<PathBuf>,
    /// The localization tarball unpacked over the new code (`--l10n`), if any.
    pub(crate) l10n: Option<PathBuf>,
    /// The locales that tarball brings, and what to do with a site whose installed
    /// translations it does not (`--drop-translations`).
    pub(crate) translations: Translations,
    /// Take over site locks held by this run id (`--break-lock`).
    pub(crate) break_lock: Option<String>,
}

/// A run's shared parts, owned (cheap to clone) so that each host runs as its own task: one
/// host's wait (an fsync, a slow step) never holds up another, and one host's panic ends only
/// that host.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) connect: Arc<dyn Connect>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) reporter: Arc<dyn Reporter>,
    pub(crate) cancel: Cancel,
    pub(crate) run: String,
}
