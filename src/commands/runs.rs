//! `fleet runs` and `fleet runs show RUN [--html FILE]`: what the journal knows.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use fleet_playbook::{
    ArtifactKind, ArtifactRow, Journal, RunRow, RunState, SiteStatus, Unit, format_time,
};

use crate::args::{Cli, RunsArgs, RunsCommand};
use crate::exit::ExitStatus;
use crate::render::{html, table};

pub(crate) fn run(cli: &Cli, args: &RunsArgs) -> anyhow::Result<ExitStatus> {
    let journal = Journal::open(&super::state_dir(cli)?)?;
    let mut out = crate::render::stdout();
    match &args.command {
        None => {
            let rows: Vec<[String; 6]> = journal
                .runs()?
                .into_iter()
                .map(|r| {
                    let sites = journal.sites(&r.id).unwrap_or_default();
                    let done = sites
                        .iter()
                        .filter(|s| {
                            matches!(
                                s.status,
                                SiteStatus::Upgraded | SiteStatus::Skipped | SiteStatus::Done
                            )
                        })
                        .count();
                    [
                        r.id.clone(),
                        format_time(r.started_ms),
                        super::recover::state_text(&r),
                        r.target,
                        format!("{done}/{}", sites.len()),
                        r.operator,
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(
                    &[
                        "RUN",
                        "STARTED (UTC)",
                        "STATE",
                        "TARGET",
                        "AT TARGET",
                        "OPERATOR"
                    ],
                    &rows
                )
            )?;
        }
        Some(RunsCommand::Show { run, html: None }) => {
            show(&mut out, &journal, &super::find_run(&journal, run)?)?;
        }
        Some(RunsCommand::Show {
            run,
            html: Some(path),
        }) => {
            let r = super::find_run(&journal, run)?;
            let page = html_report(&journal, &r)?;
            if path.as_os_str() == "-" {
                out.write_all(page.as_bytes())?;
            } else {
                write_atomically(path, page.as_bytes())?;
                writeln!(
                    crate::render::stderr(),
                    "report of run {} written to {}",
                    r.id,
                    path.display()
                )?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// What `fleet runs show RUN` prints.
fn show(out: &mut impl Write, journal: &Journal, r: &RunRow) -> anyhow::Result<()> {
    writeln!(
        out,
        "run {} ({}), {} -> {}",
        r.id,
        super::recover::state_text(r),
        r.procedure,
        r.target
    )?;
    writeln!(
        out,
        "started {} by {} on {} (pid {}){}",
        format_time(r.started_ms),
        r.operator,
        r.controller,
        r.pid,
        r.finished_ms
            .map(|f| format!(", ended {}", format_time(f)))
            .unwrap_or_default()
    )?;
    writeln!(out, "command: {}", r.args)?;
    // What `fleet resume` replays: the options and the playbook the run started with.
    if let Some(o) = journal.artifact(&r.id, "", &Unit::Run, ArtifactKind::Options)? {
        let o: Vec<&str> = o.lines().filter(|l| !l.trim().is_empty()).collect();
        writeln!(out, "options: {}", o.join("; "))?;
    }
    for note in kept_texts(journal, r)? {
        writeln!(out, "{note}")?;
    }
    writeln!(out)?;
    if let Some(w) = controller_gone(r) {
        writeln!(out, "{w}\n")?;
    }
    let sites = journal.sites(&r.id).context("reading sites")?;
    let rows: Vec<[String; 8]> = sites
        .iter()
        .map(|s| {
            [
                s.host.clone(),
                s.site.clone(),
                s.batch.map(|b| (b + 1).to_string()).unwrap_or_default(),
                s.status.to_string()
                    + if s.in_maintenance {
                        " (IN MAINTENANCE)"
                    } else {
                        ""
                    },
                s.step.as_ref().map(ToString::to_string).unwrap_or_default(),
                s.from_version.clone().unwrap_or_default(),
                format_time(s.updated_ms),
                s.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(
            &[
                "HOST",
                "SITE",
                "BATCH",
                "STATUS",
                "STEP",
                "FROM",
                "UPDATED (UTC)",
                "DETAIL"
            ],
            &rows
        )
    )?;
    let artifacts = shown_artifacts(journal, r)?;
    if !artifacts.is_empty() {
        writeln!(out, "\nbackups and recorded state:")?;
        let rows: Vec<[String; 4]> = artifacts
            .into_iter()
            .map(|a| [a.host, a.unit.to_string(), a.kind.to_string(), a.value])
            .collect();
        write!(out, "{}", table(&["HOST", "UNIT", "KIND", "VALUE"], &rows))?;
    }
    Ok(())
}

/// The texts the journal keeps for the run (its playbook, its manifest), as `runs show`
/// mentions them.
fn kept_texts(journal: &Journal, r: &RunRow) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    for (kind, what) in [
        (ArtifactKind::Playbook, "playbook"),
        (ArtifactKind::Manifest, "manifest"),
    ] {
        if let Some(text) = journal.artifact(&r.id, "", &Unit::Run, kind)? {
            notes.push(format!(
                "{what}: the journal keeps its text as the run started ({} lines)",
                text.lines().count()
            ));
        }
    }
    Ok(notes)
}

/// What to say of a run whose controller died without ending it.
fn controller_gone(r: &RunRow) -> Option<String> {
    if r.state != RunState::Running || super::recover::controller_alive(r) {
        return None;
    }
    Some(if fleet_playbook::is_migrate_run(&r.procedure) {
        "its controller is gone: the old sites were never touched; the releases and databases it recorded are listed below".to_owned()
    } else {
        format!(
            "its controller is gone: `fleet resume {}` finishes the run, `fleet recover` brings its sites to a safe end",
            r.id
        )
    })
}

/// The backups and recorded state of the run, without what only the controller uses (the
/// texts it replays, the local tarball) and, once it ended, the locks it released.
fn shown_artifacts(journal: &Journal, r: &RunRow) -> anyhow::Result<Vec<ArtifactRow>> {
    Ok(journal
        .artifacts(&r.id)?
        .into_iter()
        .filter(|a| a.kind != ArtifactKind::Lock || r.state == RunState::Running)
        .filter(|a| a.host.is_empty() || a.kind != ArtifactKind::Tarball)
        .filter(|a| {
            !matches!(
                a.kind,
                ArtifactKind::Options | ArtifactKind::Playbook | ArtifactKind::Manifest
            )
        })
        .collect())
}

/// The run as one HTML page (see `render/html.rs`).
fn html_report(journal: &Journal, r: &RunRow) -> anyhow::Result<String> {
    let sites = journal.sites(&r.id).context("reading sites")?;
    let steps = journal.steps(&r.id).context("reading steps")?;
    let batches = journal.batches(&r.id).context("reading budget decisions")?;
    let artifacts = shown_artifacts(journal, r)?;
    let options = journal.artifact(&r.id, "", &Unit::Run, ArtifactKind::Options)?;
    let state = super::recover::state_text(r);
    let warnings: Vec<String> = controller_gone(r).into_iter().collect();
    let notes = kept_texts(journal, r)?;
    Ok(html::render(&html::Record {
        run: r,
        state: &state,
        warnings: &warnings,
        notes: &notes,
        sites: &sites,
        steps: &steps,
        batches: &batches,
        artifacts: &artifacts,
        options: options.as_deref(),
        written_ms: fleet_playbook::now_ms(),
    }))
}

/// Writes `bytes` to `path` through a temporary file in the same directory, renamed over it
/// once complete: a reader (a browser reloading it, a mail client) never sees half a page,
/// and a failed write leaves an earlier report as it was.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("`{}` names no file", path.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        // A report is for people to pass around: the umask decides, as for any file written.
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in `{}`", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write `{}`", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}
