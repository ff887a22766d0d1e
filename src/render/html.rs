//! `fleet runs show RUN --html FILE`: one run of the journal as a single self-contained HTML
//! page (inline CSS; no script, no font, image or stylesheet from anywhere), so that it opens
//! the same from a mail attachment, an archive or a printer.
//!
//! Everything in it that the journal holds came from a host or an operator: every value goes
//! through [`Esc`], in text and in attributes alike.

mod phase;
mod timeline;

use std::fmt::{self, Write};

use fleet_playbook::{
    ArtifactRow, BatchRow, BatchVerdict, RunRow, SiteRow, SiteStatus, StepRow, format_age,
    format_time,
};

use timeline::Scale;

/// What the report shows: a run and everything the journal recorded about it.
pub(crate) struct Record<'a> {
    pub(crate) run: &'a RunRow,
    /// The run's state as `fleet runs` words it (`interrupted (controller pid 42 gone)`).
    pub(crate) state: &'a str,
    /// What the operator must know before reading on (a controller that is gone).
    pub(crate) warnings: &'a [String],
    /// What else `fleet runs show` says about the run (the playbook it keeps).
    pub(crate) notes: &'a [String],
    pub(crate) sites: &'a [SiteRow],
    pub(crate) steps: &'a [StepRow],
    pub(crate) batches: &'a [BatchRow],
    /// Backups and recorded state, as `fleet runs show` lists them.
    pub(crate) artifacts: &'a [ArtifactRow],
    /// The options the run started with (TOML), when the journal keeps them.
    pub(crate) options: Option<&'a str>,
    /// When the report was written (unix ms).
    pub(crate) written_ms: i64,
}

impl Record<'_> {
    /// The last time the journal recorded anything of the run: where the timeline ends, and
    /// how far a step with no recorded end is drawn.
    fn last_ms(&self) -> i64 {
        let steps = self
            .steps
            .iter()
            .map(|s| s.finished_ms.unwrap_or(s.started_ms));
        let batches = self
            .batches
            .iter()
            .map(|b| b.finished_ms.unwrap_or(b.started_ms));
        let sites = self.sites.iter().map(|s| s.updated_ms);
        steps
            .chain(batches)
            .chain(sites)
            .chain(self.run.finished_ms)
            .fold(self.run.started_ms, i64::max)
    }
}

/// Text made safe for HTML, in element content and in double-quoted attributes alike.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'', '\0']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                // A NUL is a parse error that browsers handle each their own way.
                _ => "\u{fffd}",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A journal time to the millisecond, UTC.
fn exact_time(ms: i64) -> String {
    format!("{}.{:03} UTC", format_time(ms), ms.rem_euclid(1_000))
}

/// How long something lasted: milliseconds below a second, then seconds with milliseconds,
/// then as `fleet` says ages.
fn duration_text(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{} ms", ms.max(0)),
        1_000..60_000 => format!("{}.{:03} s", ms / 1_000, ms % 1_000),
        _ => format_age(ms / 1_000),
    }
}

/// The colour family of a site status.
fn status_class(s: SiteStatus) -> &'static str {
    match s {
        SiteStatus::Upgraded | SiteStatus::Done | SiteStatus::Skipped => "ok",
        SiteStatus::Failed
        | SiteStatus::RollbackFailed
        | SiteStatus::Refused
        | SiteStatus::Unreachable => "bad",
        SiteStatus::RolledBack => "back",
        SiteStatus::Held | SiteStatus::Running | SiteStatus::Interrupted => "held",
        SiteStatus::Pending | SiteStatus::NotStarted | SiteStatus::Superseded => "idle",
    }
}

/// A batch decision in a sentence.
fn verdict_text(b: &BatchRow) -> String {
    let n = b.budget.batch + 1;
    let failed = b.failed.unwrap_or(0);
    match b.verdict {
        BatchVerdict::Admitted => format!(
            "admitted ({} host(s), budget {}); never judged: the run stopped during it",
            b.budget.hosts, b.budget.budget
        ),
        BatchVerdict::NotAdmitted => format!(
            "not admitted: {}",
            b.detail.as_deref().unwrap_or("no reason recorded")
        ),
        BatchVerdict::WithinBudget => format!(
            "{failed} of {} host(s) failed, budget {}; {} in the run, budget {}: within budget",
            b.budget.hosts,
            b.budget.budget,
            b.run_failed.unwrap_or(0),
            b.budget.run_budget
        ),
        BatchVerdict::OverBatchBudget => format!(
            "{failed} of {} host(s) failed, more than its budget of {}: no batch after {n} starts",
            b.budget.hosts, b.budget.budget
        ),
        BatchVerdict::OverRunBudget => format!(
            "{} host(s) failed in the run, more than its budget of {}: no batch after {n} starts",
            b.run_failed.unwrap_or(0),
            b.budget.run_budget
        ),
        BatchVerdict::Aborted => {
            format!(
                "{failed} of {} host(s) failed; the operator aborted the run",
                b.budget.hosts
            )
        }
    }
}

/// The report as one HTML document.
pub(crate) fn render(r: &Record<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail: `fmt::Write for String` always returns Ok.
    write_document(&mut out, r).expect("formatting into a String");
    out
}

fn write_document(out: &mut String, r: &Record<'_>) -> fmt::Result {
    let run = r.run;
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, r#"<html lang="en"><head><meta charset="utf-8">"#)?;
    writeln!(
        out,
        r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
    )?;
    writeln!(
        out,
        "<title>fleet run {} ({}) — {} → {}</title>",
        Esc(&run.id),
        Esc(r.state),
        Esc(&run.procedure),
        Esc(&run.target)
    )?;
    writeln!(
        out,
        "<style>\n{}</style></head>",
        include_str!("html/report.css")
    )?;
    writeln!(
        out,
        r#"<body data-run="{}" data-state="{}">"#,
        Esc(&run.id),
        run.state.as_str()
    )?;
    write_header(out, r)?;
    write_alerts(out, r)?;
    let scale = Scale::new(run.started_ms, r.last_ms());
    timeline::write(out, r, &scale)?;
    write_budget(out, r)?;
    write_sites(out, r)?;
    write_artifacts(out, r)?;
    writeln!(
        out,
        r#"<footer>written by fleet {} at {} from the journal; every time is UTC</footer>"#,
        env!("CARGO_PKG_VERSION"),
        Esc(&exact_time(r.written_ms))
    )?;
    writeln!(out, "</body></html>")
}

fn write_header(out: &mut String, r: &Record<'_>) -> fmt::Result {
    let run = r.run;
    writeln!(
        out,
        r#"<header><h1>fleet run <code>{}</code> <span class="state {}">{}</span></h1>"#,
        Esc(&run.id),
        run.state.as_str(),
        Esc(r.state)
    )?;
    let ended = match run.finished_ms {
        Some(f) => format!(
            "{} (after {})",
            exact_time(f),
            duration_text(f - run.started_ms)
        ),
        None => "not ended".into(),
    };
    let facts = [
        ("procedure", run.procedure.clone()),
        ("target", run.target.clone()),
        ("state", r.state.to_owned()),
        ("operator", run.operator.clone()),
        (
            "controller",
            format!("{} (pid {})", run.controller, run.pid),
        ),
        ("started", exact_time(run.started_ms)),
        ("ended", ended),
    ];
    writeln!(out, r#"<dl class="facts">"#)?;
    for (k, v) in facts {
        writeln!(
            out,
            r#"<div data-fact="{k}"><dt>{k}</dt><dd>{}</dd></div>"#,
            Esc(&v)
        )?;
    }
    writeln!(out, "</dl>")?;
    writeln!(
        out,
        r#"<div class="cmd"><span>command</span><pre>{}</pre></div>"#,
        Esc(&run.args)
    )?;
    for n in r.notes {
        writeln!(out, r#"<p class="note">{}</p>"#, Esc(n))?;
    }
    writeln!(out, "</header>")
}

fn write_alerts(out: &mut String, r: &Record<'_>) -> fmt::Result {
    let down = still_down(r.sites);
    if !down.is_empty() {
        let names: Vec<String> = down
            .iter()
            .map(|s| {
                let held = if s.status == SiteStatus::Held {
                    ", held on purpose"
                } else {
                    ""
                };
                format!("{}/{} ({}{held})", s.host, s.site, s.status)
            })
            .collect();
        writeln!(
            out,
            r#"<div class="alert down" id="still-down"><strong>⚠ {} SITE(S) STILL IN MAINTENANCE</strong> {}<br>bring them to a safe end: <code>fleet recover</code>, or <code>fleet resume {}</code> to finish the run</div>"#,
            down.len(),
            Esc(&names.join(", ")),
            Esc(&r.run.id)
        )?;
    }
    for w in r.warnings {
        writeln!(out, r#"<div class="alert warn">{}</div>"#, Esc(w))?;
    }
    let mut tally: Vec<(SiteStatus, usize)> = Vec::new();
    for s in r.sites {
        match tally.iter_mut().find(|(st, _)| *st == s.status) {
            Some((_, n)) => *n += 1,
            None => tally.push((s.status, 1)),
        }
    }
    tally.sort();
    write!(
        out,
        r#"<p class="tally"><span>{} site(s) on {} host(s):</span>"#,
        r.sites.len(),
        {
            let mut hosts: Vec<&str> = r.sites.iter().map(|s| s.host.as_str()).collect();
            hosts.dedup();
            hosts.len()
        }
    )?;
    for (st, n) in tally {
        write!(
            out,
            r#" <span class="status {}" data-status="{}">{n} {}</span>"#,
            status_class(st),
            st.as_str(),
            st.as_str()
        )?;
    }
    writeln!(out, "</p>")
}

fn write_budget(out: &mut String, r: &Record<'_>) -> fmt::Result {
    writeln!(
        out,
        r#"<section id="budget"><h2>Failure budget decisions</h2>"#
    )?;
    if r.batches.is_empty() {
        writeln!(
            out,
            r#"<p class="note" id="no-decisions">The journal records no budget decision for this run: it was journaled by a fleet that did not keep them, or it never reached a batch. The sites' details below say what stopped them.</p></section>"#
        )?;
        return Ok(());
    }
    // The budgets as planned: each batch's first decision, in batch order.
    let mut planned: Vec<&BatchRow> = Vec::new();
    for b in r.batches {
        if !planned.iter().any(|p| p.budget.batch == b.budget.batch) {
            planned.push(b);
        }
    }
    planned.sort_by_key(|b| b.budget.batch);
    let per_batch: Vec<String> = planned
        .iter()
        .map(|b| b.budget.budget.to_string())
        .collect();
    writeln!(
        out,
        r#"<p>failed hosts tolerated per batch: {}; for the whole run: {}</p>"#,
        Esc(&per_batch.join(", ")),
        r.batches[0].budget.run_budget
    )?;
    writeln!(
        out,
        "<table><thead><tr><th>batch</th><th>hosts</th><th>decided (UTC)</th><th>failed / budget</th><th>run failed / budget</th><th>verdict</th><th>why</th></tr></thead><tbody>"
    )?;
    for b in r.batches {
        let n = b.budget.batch + 1;
        let mut hosts: Vec<&str> = r
            .sites
            .iter()
            .filter(|s| s.batch.and_then(|x| usize::try_from(x).ok()) == Some(b.budget.batch))
            .map(|s| s.host.as_str())
            .collect();
        hosts.dedup();
        let decided = b.finished_ms.unwrap_or(b.started_ms);
        let count = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_else(|| "–".into());
        writeln!(
            out,
            r#"<tr class="decision {v}" data-batch="{n}" data-verdict="{v}"><td>{n}{}</td><td>{} <span class="dim">{}</span></td><td>{} <span class="dim">+{}</span></td><td>{} / {}</td><td>{} / {}</td><td><span class="verdict {v}">{v}</span></td><td class="wrap">{}</td></tr>"#,
            if b.budget.batch == 0 { " (canary)" } else { "" },
            b.budget.hosts,
            Esc(&hosts.join(", ")),
            Esc(&format_time(decided)),
            Esc(&duration_text(decided - r.run.started_ms)),
            count(b.failed),
            b.budget.budget,
            count(b.run_failed),
            b.budget.run_budget,
            Esc(&verdict_text(b)),
            v = b.verdict.as_str(),
        )?;
    }
    writeln!(out, "</tbody></table></section>")
}

fn write_sites(out: &mut String, r: &Record<'_>) -> fmt::Result {
    writeln!(out, r#"<section id="sites"><h2>Sites</h2>"#)?;
    writeln!(
        out,
        "<table><thead><tr><th>host</th><th>site</th><th>batch</th><th>status</th><th>step</th><th>from</th><th>updated (UTC)</th><th>detail</th></tr></thead><tbody>"
    )?;
    for s in r.sites {
        let batch = s.batch.map(|b| (b + 1).to_string()).unwrap_or_default();
        writeln!(
            out,
            r#"<tr class="site{}" data-host="{}" data-site="{}" data-status="{}" data-batch="{batch}"><td>{}</td><td>{}</td><td>{batch}</td><td><span class="status {}">{}</span>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="detail">{}</td></tr>"#,
            if s.in_maintenance { " down" } else { "" },
            Esc(&s.host),
            Esc(&s.site),
            s.status.as_str(),
            Esc(&s.host),
            Esc(&s.site),
            status_class(s.status),
            s.status.as_str(),
            if s.in_maintenance {
                r#" <span class="flag">IN MAINTENANCE</span>"#
            } else {
                ""
            },
            Esc(s.step.as_ref().map_or("", |x| x.as_str())),
            Esc(s.from_version.as_deref().unwrap_or("")),
            Esc(&format_time(s.updated_ms)),
            Esc(s.detail.as_deref().unwrap_or(""))
        )?;
    }
    writeln!(out, "</tbody></table></section>")
}

fn write_artifacts(out: &mut String, r: &Record<'_>) -> fmt::Result {
    writeln!(
        out,
        r#"<section id="artifacts"><h2>Backups and recorded state</h2>"#
    )?;
    if r.artifacts.is_empty() {
        writeln!(out, r#"<p class="note">none recorded</p>"#)?;
    } else {
        writeln!(
            out,
            "<table><thead><tr><th>host</th><th>unit</th><th>kind</th><th>value</th></tr></thead><tbody>"
        )?;
        for a in r.artifacts {
            writeln!(
                out,
                r#"<tr class="artifact" data-host="{}" data-kind="{}"><td>{}</td><td class="wrap">{}</td><td>{}</td><td class="detail">{}</td></tr>"#,
                Esc(&a.host),
                a.kind.as_str(),
                Esc(&a.host),
                Esc(&a.unit.to_string()),
                a.kind.as_str(),
                Esc(&a.value)
            )?;
        }
        writeln!(out, "</tbody></table>")?;
    }
    if let Some(o) = r.options {
        writeln!(
            out,
            r#"<h3>Options the run started with</h3><pre class="options">{}</pre>"#,
            Esc(o.trim_end())
        )?;
    }
    writeln!(out, "</section>")
}

/// The sites still down because of the run (a held one included: it is down on purpose,
/// but down).
fn still_down(sites: &[SiteRow]) -> Vec<&SiteRow> {
    sites
        .iter()
        .filter(|s| s.in_maintenance && s.status != SiteStatus::Superseded)
        .collect()
}

#[cfg(test)]
mod tests;
