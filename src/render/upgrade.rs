//! How `fleet upgrade` looks: timestamped progress lines (or JSON events), the plan, and the
//! end-of-run summary with the sites still down said loudly.

use std::io::{self, BufRead, Write};

use fleet_playbook::{Event, Gate, PlanRow, Reporter, RunReport, STEPS, UpgradeOptions};
use serde_json::json;

use super::table;

/// Plain lines on stderr, one per event that matters, each with a UTC time; on a terminal a
/// progress bar (sites done, and the step each host is in) stays below them.
pub(crate) struct LineReporter {
    verbose: bool,
    color: bool,
    bar: indicatif::ProgressBar,
    current: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl LineReporter {
    pub(crate) fn new(verbose: bool, color: bool) -> Self {
        let bar = super::progress_bar(0, false);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} sites  {wide_msg}",
        ) {
            bar.set_style(style);
        }
        Self {
            verbose,
            color,
            bar,
            current: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    fn track(&self, host: &str, step: Option<&str>) {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            Some(s) => cur.insert(host.to_owned(), s.to_owned()),
            None => cur.remove(host),
        };
        let msg: Vec<String> = cur
            .iter()
            .take(6)
            .map(|(h, s)| format!("{h}: {s}"))
            .collect();
        self.bar.set_message(msg.join("  "));
    }

    fn line(&self, text: &str, code: &str) {
        let t = fleet_playbook::format_time(fleet_playbook::now_ms());
        let time = t.split(' ').nth(1).unwrap_or("");
        let body = if self.color && !code.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        };
        if self.bar.is_hidden() {
            let _ = writeln!(io::stderr().lock(), "{time} {body}");
        } else {
            self.bar.println(format!("{time} {body}"));
        }
    }
}

impl Drop for LineReporter {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

impl Reporter for LineReporter {
    fn on_event(&self, e: &Event) {
        match e {
            Event::StepStarted { host, unit, step } if !self.bar.is_hidden() => {
                self.track(host, Some(&format!("{unit} {step}")))
            }
            Event::RunStarted {
                run,
                hosts,
                sites,
                batches,
                batch_budget,
                run_budget,
            } => {
                self.bar.set_length(*sites as u64);
                // One batch of every host with a budget of every host: a run without
                // batches (a migrate build, which touches no live site).
                let text = if batches.len() == 1 && batch_budget == &[*hosts] {
                    format!("run {run}: {hosts} host(s), {sites} site(s), all at once")
                } else {
                    format!(
                        "run {run}: {hosts} host(s) in {} batch(es) of {}; failures tolerated per batch: {}; for the whole run: {run_budget}",
                        batches.len(),
                        join(batches),
                        join(batch_budget)
                    )
                };
                self.line(&text, "1");
            }
            Event::BatchStarted { index, hosts } => {
                let kind = if *index == 0 { " (canary)" } else { "" };
                self.line(
                    &format!(
                        "batch {}{kind}: {}",
                        index + 1,
                        fleet_inventory::compact_names(
                            &hosts.iter().map(String::as_str).collect::<Vec<_>>()
                        )
                    ),
                    "1",
                );
            }
            Event::StepStarted { host, unit, step } if self.verbose => {
                self.line(&format!("{host} {unit}: {step} ..."), "")
            }
            Event::StepStarted { .. } => {}
            Event::StepFinished {
                host,
                unit,
                step,
                ok: false,
                detail,
            } => self.line(&format!("{host} {unit}: {step} FAILED: {detail}"), "31"),
            Event::StepFinished {
                host,
                unit,
                step,
                ok: true,
                ..
            } if self.verbose => self.line(&format!("{host} {unit}: {step} ok"), ""),
            Event::StepFinished { .. } => {}
            Event::SiteFinished {
                host,
                site,
                outcome,
            } => {
                let code = if outcome.at_target() {
                    "32"
                } else if outcome.left_in_maintenance() {
                    "1;31"
                } else {
                    "33"
                };
                self.line(&format!("{host}/{site}: {outcome}"), code);
                self.bar.inc(1);
                self.track(host, None);
            }
            Event::BatchFinished {
                index,
                failed,
                allowed,
            } => {
                self.line(
                    &format!(
                        "batch {} done: {failed} failed host(s), {allowed} tolerated",
                        index + 1
                    ),
                    "",
                );
            }
            Event::Baked { index, problems } if problems.is_empty() => {
                self.line(
                    &format!("batch {} re-verified after the bake: all good", index + 1),
                    "32",
                );
            }
            Event::Baked { index, problems } => {
                self.line(
                    &format!(
                        "batch {} re-verify after the bake FAILED: {}",
                        index + 1,
                        problems.join("; ")
                    ),
                    "1;31",
                );
            }
            Event::Stopped { reason } => self.line(
                &format!("STOPPED: {reason}; no further batch starts"),
                "1;31",
            ),
            Event::Notice { host, message } => self.line(&format!("{host}: {message}"), "33"),
        }
    }
}

/// One JSON object per event on stdout.
pub(crate) struct JsonReporter;

impl Reporter for JsonReporter {
    fn on_event(&self, e: &Event) {
        let v = match e {
            Event::RunStarted {
                run,
                hosts,
                sites,
                batches,
                batch_budget,
                run_budget,
            } => {
                json!({"event": "run_started", "run": run, "hosts": hosts, "sites": sites, "batches": batches, "batch_budget": batch_budget, "run_budget": run_budget})
            }
            Event::BatchStarted { index, hosts } => {
                json!({"event": "batch_started", "batch": index + 1, "hosts": hosts})
            }
            Event::StepStarted { host, unit, step } => {
                json!({"event": "step_started", "host": host, "unit": unit, "step": step})
            }
            Event::StepFinished {
                host,
                unit,
                step,
                ok,
                detail,
            } => {
                json!({"event": "step_finished", "host": host, "unit": unit, "step": step, "ok": ok, "detail": detail})
            }
            Event::SiteFinished {
                host,
                site,
                outcome,
            } => {
                json!({"event": "site_finished", "host": host, "site": site, "status": outcome.status().as_str(), "detail": outcome.to_string(), "in_maintenance": outcome.left_in_maintenance()})
            }
            Event::BatchFinished {
                index,
                failed,
                allowed,
            } => {
                json!({"event": "batch_finished", "batch": index + 1, "failed": failed, "allowed": allowed})
            }
            Event::Baked { index, problems } => {
                json!({"event": "baked", "batch": index + 1, "problems": problems})
            }
            Event::Stopped { reason } => json!({"event": "stopped", "reason": reason}),
            Event::Notice { host, message } => {
                json!({"event": "notice", "host": host, "message": message})
            }
        };
        let _ = writeln!(io::stdout().lock(), "{v}");
    }
}

/// `--pause`: asks on the terminal before each batch after the canary.
pub(crate) struct TtyGate;

impl Gate for TtyGate {
    fn proceed(&self, index: usize, hosts: &[String]) -> bool {
        let Ok(tty) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
        else {
            return false;
        };
        let mut w = &tty;
        let names =
            fleet_inventory::compact_names(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
        let _ = write!(w, "start batch {} ({names})? [y/N] ", index + 1);
        let mut answer = String::new();
        let _ = io::BufReader::new(&tty).read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    }
}

/// `--plan`: every site, its versions, its batch and what would happen, then the steps.
pub(crate) fn write_plan(
    w: &mut dyn Write,
    opts: &UpgradeOptions,
    sizes: &[usize],
    rows: &[PlanRow],
) -> io::Result<()> {
    let what = match &opts.playbook {
        Some(pb) => format!("playbook `{}` (`{}`)", pb.name, pb.source.display()),
        None => format!("CiviCRM {} from `{}`", opts.target, opts.tarball.display()),
    };
    let what = match &opts.l10n {
        Some(l) => format!("{what} with the localization files of `{}`", l.display()),
        None => what,
    };
    let what = match opts.lost_translations {
        fleet_playbook::OnLostTranslations::Drop => {
            format!("{what}, dropping site translations it does not bring (--drop-translations)")
        }
        fleet_playbook::OnLostTranslations::Refuse => what,
    };
    writeln!(
        w,
        "plan: {what}, {} batch(es) of {}, failures tolerated per batch: {}\n",
        sizes.len(),
        join(sizes),
        join(
            &sizes
                .iter()
                .map(|&n| opts.max_fail.of(n))
                .collect::<Vec<_>>()
        ),
    )?;
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                (r.batch + 1).to_string(),
                r.host.clone(),
                r.site.clone(),
                r.code_version.clone(),
                r.db_version.clone(),
                r.maintenance.clone(),
                r.civi_db.clone(),
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
                "BATCH", "HOST", "SITE", "CODE", "DB", "MAINT", "CIVI DB", "ACTION"
            ],
            &cells
        )
    )?;
    if opts.playbook.is_none() {
        write_dry_runs(w, &opts.target, rows)?;
    }
    let n = rows.iter().filter(|r| r.action == "upgrade").count();
    writeln!(w, "\n{n} site(s) to upgrade; each runs these steps:")?;
    match &opts.playbook {
        Some(pb) => {
            for (i, step) in pb.steps.iter().enumerate() {
                let kind = match &step.kind {
                    fleet_playbook::StepKind::Shell(sh) if sh.per_host => "shell, per host",
                    fleet_playbook::StepKind::Shell(_) => "shell, per site",
                    fleet_playbook::StepKind::Maintenance => "maintenance window",
                    fleet_playbook::StepKind::Backup => "backup",
                    fleet_playbook::StepKind::CodeSwap => "code swap",
                    fleet_playbook::StepKind::Verify => "verify",
                };
                writeln!(w, "  {:>2}. {} ({kind})", i + 1, step.name)?;
            }
        }
        None => {
            for (i, d) in STEPS.iter().enumerate() {
                writeln!(w, "  {:>2}. {} (per {})", i + 1, d.step, d.scope)?;
            }
        }
    }
    writeln!(w, "nothing was changed")
}

/// The end-of-run table in inventory order, counts, and sites still in maintenance.
/// `migrate`: the `fleet migrate` phase that ran (its hints differ: `fleet recover` leaves
/// migrate runs alone).
pub(crate) fn write_summary(
    out: &mut dyn Write,
    err: &mut dyn Write,
    report: &RunReport,
    target: &str,
    migrate: Option<&str>,
) -> io::Result<()> {
    let rows: Vec<[String; 5]> = report
        .sites
        .iter()
        .map(|s| {
            [
                s.host.clone(),
                s.site.clone(),
                (s.batch + 1).to_string(),
                s.outcome.status().to_string(),
                s.outcome.to_string(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(&["HOST", "SITE", "BATCH", "STATUS", "DETAIL"], &rows)
    )?;
    let mut counts: Vec<(fleet_playbook::SiteStatus, usize)> = Vec::new();
    for s in &report.sites {
        match counts.iter_mut().find(|(k, _)| *k == s.outcome.status()) {
            Some((_, n)) => *n += 1,
            None => counts.push((s.outcome.status(), 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let target = if target.is_empty() {
        "playbook"
    } else {
        target
    };
    writeln!(
        err,
        "run {}: {} site(s) -> {target}: {}",
        report.run,
        report.sites.len(),
        parts.join(", ")
    )?;
    if let Some(why) = &report.stopped {
        writeln!(err, "stopped early: {why}")?;
    }
    let down: Vec<String> = report
        .sites
        .iter()
        .filter(|s| s.outcome.left_in_maintenance())
        .map(|s| format!("{}/{}", s.host, s.site))
        .collect();
    if !down.is_empty() {
        writeln!(
            err,
            "\n!!! {} SITE(S) STILL IN MAINTENANCE: {}",
            down.len(),
            down.join(", ")
        )?;
        match migrate {
            Some(_) => writeln!(
                err,
                "!!! bring them to a safe end: fleet resume {} finishes their release (or fleet migrate rollback {} switches them back); what was recorded: fleet runs show {}",
                report.run, report.run, report.run
            )?,
            None => writeln!(
                err,
                "!!! bring them to a safe end: fleet recover (or fleet resume {} to finish the run); backups and recorded prior state: fleet runs show {}",
                report.run, report.run
            )?,
        }
    } else if report.sites.iter().any(|s| {
        matches!(
            s.outcome,
            fleet_playbook::SiteOutcome::Failed { .. }
                | fleet_playbook::SiteOutcome::Interrupted { .. }
                | fleet_playbook::SiteOutcome::Unreachable { .. }
        )
    }) {
        match migrate {
            Some(phase) => writeln!(
                err,
                "details: fleet runs show {}; for the sites that did not finish, once fixed: fleet migrate {phase} {} -l HOST",
                report.run, report.run
            )?,
            None => writeln!(
                err,
                "details: fleet runs show {}; retry the sites that did not finish: fleet resume {}",
                report.run, report.run
            )?,
        }
    }
    let down_before: Vec<String> = report
        .sites
        .iter()
        .filter(|s| {
            matches!(
                s.outcome,
                fleet_playbook::SiteOutcome::Upgraded {
                    in_maintenance: true,
                    ..
                }
            )
        })
        .map(|s| format!("{}/{}", s.host, s.site))
        .collect();
    if !down_before.is_empty() {
        writeln!(
            err,
            "note: {} site(s) upgraded but still in maintenance, as they were before the run: {}",
            down_before.len(),
            down_before.join(", ")
        )?;
    }
    if let Some(first) = report.journal_failures.first() {
        writeln!(
            err,
            "\n!!! THE JOURNAL FAILED: {} write(s) could not be recorded; each stopped the step it guarded before it ran (first: {first})",
            report.journal_failures.len()
        )?;
        writeln!(
            err,
            "!!! the table above is what happened on the hosts; once the state dir is writable again, run `fleet recover` (the journal may not know of the last steps)"
        )?;
    }
    Ok(())
}

/// The plan's dry runs, one entry per host and CiviCRM database (with the sites on it).
fn write_dry_runs(w: &mut dyn Write, target: &str, rows: &[PlanRow]) -> io::Result<()> {
    let mut dbs: Vec<(&PlanRow, Vec<&str>)> = Vec::new();
    for r in rows {
        // No dry run, and none expected: the site could not be read.
        if r.dry_run.is_none() && !matches!(r.action.as_str(), "upgrade" | "skip") {
            continue;
        }
        match dbs
            .iter_mut()
            .find(|(d, _)| d.host == r.host && d.civi_db == r.civi_db)
        {
            Some((_, sites)) => sites.push(&r.site),
            None => dbs.push((r, vec![&r.site])),
        }
    }
    if dbs.is_empty() {
        return Ok(());
    }
    writeln!(
        w,
        "\ndry runs of the database upgrade (`cv upgrade:db --dry-run`, against the code now on disk):"
    )?;
    let mut at_rest = false;
    for (r, sites) in dbs {
        let head = format!("  {} {} ({})", r.host, r.civi_db, sites.join(", "));
        match &r.dry_run {
            None => writeln!(w, "{head}: none (drush civicrm-upgrade-db has no dry run)")?,
            Some(Err(why)) => writeln!(
                w,
                "{head}: FAILED: {why} (a run stops these sites before maintenance)"
            )?,
            Some(Ok(tasks)) if tasks.is_empty() => {
                at_rest = true;
                writeln!(
                    w,
                    "{head}: ok, nothing pending (code {}, database {})",
                    r.code_version, r.db_version
                )?;
            }
            Some(Ok(tasks)) => {
                writeln!(
                    w,
                    "{head}: {} task(s) pending from database {} to code {}:",
                    tasks.len(),
                    r.db_version,
                    r.code_version
                )?;
                for t in tasks {
                    writeln!(w, "      {t}")?;
                }
            }
        }
    }
    if at_rest {
        writeln!(
            w,
            "  (\"nothing pending\": cv boots and reaches the database; the tasks to {target} exist only once its code is on disk, so a run dry-runs them again after the unpack, before the database is touched: upgrade-db-dry-run)"
        )?;
    }
    Ok(())
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
