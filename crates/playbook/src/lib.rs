//! Upgrade procedures for `fleet`: the CiviCRM-on-Drupal-7 procedure, rolled out in batches
//! with per-site maintenance gating, every step journaled in SQLite.
//!
//! # Overview
//!
//! [`run_upgrade`] takes [`HostJob`]s (an inventory host with its sites, and its SSH
//! [`fleet_remote_exec::Target`]) and [`UpgradeOptions`] (tarball, batches, failure budget),
//! and returns a [`RunReport`] with one [`SiteOutcome`] per site. A site enters maintenance
//! only once its host is admitted to a batch, and leaves it on success, after a rollback, or
//! is reported loudly as still down. [`Journal`] records every run, site, step and backup;
//! [`Reporter`] receives [`Event`]s as the run goes. [`STEPS`] lists the procedure.
//!
//! The crate never prints and never touches a terminal.
#![warn(missing_docs)]

mod bake;
mod classify;
mod context;
mod discovery;
mod engine;
mod error;
mod event;
mod host;
mod inflight;
mod journal;
mod lock;
mod outcome;
mod placeholder;
mod plan;
mod playbook;
mod procedure;
#[cfg(test)]
mod props;
#[cfg(test)]
mod regress;
mod remote;
mod restore;
mod resume;
mod runner;
#[cfg(test)]
mod sweep;
#[cfg(test)]
mod testkit;
mod translations;
mod vocab;
mod work;

pub use context::{Cancel, HostJob, OnFailure};
pub use discovery::Facts;
pub use error::PlaybookError;
pub use event::{Event, Gate, Reporter};
pub use journal::{
    ArtifactRow, BatchBudget, BatchJudgement, BatchRow, BatchVerdict, HeldLock, Journal, RunInfo,
    RunRow, SiteRow, SiteUpdate, StepRow, age_of, format_age, format_time, now_ms, unix_now,
};
pub use outcome::{After, RunReport, SiteOutcome, SiteReport};
pub use plan::{PlanRow, plan_upgrade};
pub use playbook::{Playbook, ShellStep, Step, StepKind};
pub use procedure::civicrm::STEPS;
pub use procedure::civicrm::commands::version_cmp;
pub use procedure::civicrm::tarball::tarball_version;
pub use procedure::migrate::cleanup::dry::{CleanupPlanRow, plan_migrate_cleanup};
pub use procedure::migrate::discovery::MigrateFacts;
pub use procedure::migrate::is_migrate_run;
pub use procedure::migrate::manifest::{
    Check, Import, Manifest, Module, NewSite, Qa, Tarball, Tolerance, database_name,
};
pub use procedure::migrate::phase_plan::{PhasePlan, PhasePlanRow, plan_migrate_phase};
pub use procedure::migrate::plan::{MigratePlanRow, plan_migrate_build};
pub use procedure::migrate::run::{
    MigrateOptions, ReleaseOptions, run_migrate_build, run_migrate_cleanup, run_migrate_import,
    run_migrate_release, run_migrate_rollback,
};
pub use procedure::{StepDef, StepInfo, procedure_steps};
pub use restore::{
    RestoreMode, RestoreOptions, RestoreReport, RollbackPlan, check_sites, later_runs, locks_left,
    needs_restore, restore_run,
};
pub use resume::{ResumeOptions, recover_run, resume_run};
pub use runner::{UpgradeOptions, run_upgrade};
pub use translations::OnLostTranslations;
pub use vocab::{
    ArtifactKind, BuiltinStep, RunState, Scope, SiteStatus, SiteTally, StepName, StepState, Unit,
};
