//! `fleet migrate`: a major Drupal upgrade done as a new site built beside the old one (a
//! new release directory, a new database, the data imported with Drupal's Migrate API),
//! QA-gated, then switched in by replacing the `current` symlink the web server serves,
//! with the old release and database kept for the way back.

mod build;
pub(crate) mod discovery;
pub(crate) mod manifest;
pub(crate) mod plan;
pub(crate) mod run;
mod settings;

use crate::error::PlaybookError;
use crate::journal::RunRow;

/// Whether run `procedure` (its journal name) is a `fleet migrate` phase.
pub fn is_migrate_run(procedure: &str) -> bool {
    procedure.starts_with("migrate-")
}

/// Stops the in-place upgrade's way back (`recover`, `resume`, `rollback`) at a migrate run:
/// its steps restore CiviCRM code and dumps, and a migrate run never changes the old site.
pub(crate) fn refuse_upgrade_tools(run: &RunRow) -> Result<(), PlaybookError> {
    if is_migrate_run(&run.procedure) {
        return Err(PlaybookError::Plan(format!(
            "run `{}` is a `fleet migrate` run ({}): it never changed the old sites, and `fleet recover`, `resume` and `rollback` undo in-place upgrades only; what it made (releases, databases) is listed by `fleet runs show {}`",
            run.id, run.procedure, run.id
        )));
    }
    Ok(())
}
