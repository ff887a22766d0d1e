//! What `fleet migrate` prints.

use std::io::{self, Write};

use fleet_playbook::{CleanupPlanRow, Manifest, MigratePlanRow, PhasePlan};

use super::table;

/// `fleet migrate plan`'s table: what a build would do on each site.
pub(crate) fn write_plan(
    w: &mut dyn Write,
    manifest: &Manifest,
    rows: &[MigratePlanRow],
) -> io::Result<()> {
    let modules: Vec<String> = manifest
        .modules
        .iter()
        .map(|m| format!("{} {}", m.name, m.tarball.version))
        .collect();
    writeln!(
        w,
        "plan: Drupal {} from `{}`{}, each site's new database `{}`\n",
        manifest.core.version,
        manifest.core.path.display(),
        if modules.is_empty() {
            String::new()
        } else {
            format!(" with {}", modules.join(", "))
        },
        manifest.site.database,
    )?;
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.site.clone(),
                r.old_version.clone(),
                r.old_db.clone(),
                r.new_db.clone(),
                r.release.clone(),
                if r.reason.is_empty() {
                    r.action.clone()
                } else {
                    format!("{}: {}", r.action, r.reason)
                },
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(
            &[
                "HOST", "SITE", "DRUPAL", "OLD DB", "NEW DB", "RELEASE", "ACTION"
            ],
            &cells
        )
    )?;
    let build = rows.iter().filter(|r| r.action == "build").count();
    writeln!(
        w,
        "\n{build} of {} site(s) can be built; nothing was changed.",
        rows.len()
    )
}

/// `fleet migrate cleanup --plan`'s table: what a cleanup would remove and keep.
pub(crate) fn write_cleanup_plan(
    w: &mut dyn Write,
    run: &str,
    rows: &[CleanupPlanRow],
) -> io::Result<()> {
    writeln!(w, "plan: cleanup of run {run}\n")?;
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let mut detail = Vec::new();
            if r.action == "remove" {
                detail.push(format!(
                    "{} side: {}",
                    r.side,
                    if r.remove.is_empty() {
                        "nothing left to remove".to_owned()
                    } else {
                        r.remove.join(", ")
                    }
                ));
                if !r.kept.is_empty() {
                    detail.push(format!("keeps {}", r.kept.join("; ")));
                }
            }
            if !r.reason.is_empty() {
                detail.push(r.reason.clone());
            }
            [
                r.host.clone(),
                r.site.clone(),
                r.action.clone(),
                detail.join("; "),
            ]
        })
        .collect();
    write!(
        w,
        "{}",
        table(&["HOST", "SITE", "ACTION", "DETAIL"], &cells)
    )?;
    let n = rows.iter().filter(|r| r.action == "remove").count();
    writeln!(
        w,
        "\n{n} of {} site(s) would be cleaned up (each copy taken first); nothing was changed.",
        rows.len()
    )
}

/// `fleet migrate import|release RUN --plan`'s table: which sites the phase would take.
pub(crate) fn write_phase_plan(
    w: &mut dyn Write,
    run: &str,
    phase: &str,
    plan: &PhasePlan,
) -> io::Result<()> {
    if phase == "release" {
        writeln!(
            w,
            "plan: release of run {run} in {} batch(es) of {}; failures tolerated per batch: {}; for the whole run: {}\n",
            plan.batches.len(),
            plan.batches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            plan.batch_budget
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            plan.run_budget
        )?;
    } else {
        writeln!(w, "plan: {phase} of run {run}, every host at once\n")?;
    }
    let cells: Vec<[String; 4]> = plan
        .rows
        .iter()
        .map(|r| {
            [
                r.host.clone(),
                r.site.clone(),
                (r.batch + 1).to_string(),
                if r.reason.is_empty() {
                    r.action.clone()
                } else {
                    format!("{}: {}", r.action, r.reason)
                },
            ]
        })
        .collect();
    write!(w, "{}", table(&["HOST", "SITE", "BATCH", "ACTION"], &cells))?;
    let n = plan.rows.iter().filter(|r| r.action == phase).count();
    writeln!(
        w,
        "\n{n} of {} site(s) would be taken, from the run's journal (each host is read again when the phase runs); nothing was changed.",
        plan.rows.len()
    )
}
