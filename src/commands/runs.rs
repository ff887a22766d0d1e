//! `fleet runs` and `fleet runs show RUN`: what the journal knows.

use std::io::Write;

use anyhow::Context;
use fleet_playbook::{ArtifactKind, Journal, RunState, SiteStatus, Unit, format_time};

use crate::args::{Cli, RunsArgs, RunsCommand};
use crate::exit::ExitStatus;
use crate::render::table;

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
        Some(RunsCommand::Show { run }) => {
            let r = &super::find_run(&journal, run)?;
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
            if let Some(p) = journal.artifact(&r.id, "", &Unit::Run, ArtifactKind::Playbook)? {
                writeln!(
                    out,
                    "playbook: the journal keeps its text as the run started ({} lines)",
                    p.lines().count()
                )?;
            }
            if let Some(m) = journal.artifact(&r.id, "", &Unit::Run, ArtifactKind::Manifest)? {
                writeln!(
                    out,
                    "manifest: the journal keeps its text as the run started ({} lines)",
                    m.lines().count()
                )?;
            }
            writeln!(out)?;
            let migrate = fleet_playbook::is_migrate_run(&r.procedure);
            if migrate && r.state == RunState::Running && !super::recover::controller_alive(r) {
                writeln!(
                    out,
                    "its controller is gone: the old sites were never touched; the releases and databases it recorded are listed below\n"
                )?;
            } else if r.state == RunState::Running && !super::recover::controller_alive(r) {
                writeln!(
                    out,
                    "its controller is gone: `fleet resume {}` finishes the run, `fleet recover` brings its sites to a safe end\n",
                    r.id
                )?;
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
            // Locks are released when a run ends; list them only while it runs.
            let artifacts: Vec<_> = journal
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
                .collect();
            if !artifacts.is_empty() {
                writeln!(out, "\nbackups and recorded state:")?;
                let rows: Vec<[String; 4]> = artifacts
                    .into_iter()
                    .map(|a| [a.host, a.unit.to_string(), a.kind.to_string(), a.value])
                    .collect();
                write!(out, "{}", table(&["HOST", "UNIT", "KIND", "VALUE"], &rows))?;
            }
        }
    }
    Ok(ExitStatus::Success)
}
