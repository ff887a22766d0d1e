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

mod civicrm;
mod error;
mod event;
mod journal;
mod outcome;
mod playbook;
mod runner;

pub use civicrm::{Facts, version_cmp};
pub use error::PlaybookError;
pub use event::{Event, Gate, Reporter};
pub use journal::{
    ArtifactRow, Journal, RunInfo, RunRow, SiteRow, SiteUpdate, StepRow, format_time,
};
pub use outcome::{After, RunReport, SiteOutcome, SiteReport};
pub use playbook::{Playbook, ShellStep, Step, StepKind};
pub use runner::{
    Cancel, HostJob, OnFailure, PlanRow, RestoreMode, STEPS, UpgradeOptions, needs_restore,
    plan_upgrade, restore_run, run_upgrade, tarball_version,
};
