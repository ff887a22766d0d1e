//! The report's timeline: time runs left to right from the run's start, each journaled step
//! is a bar as wide as it lasted, in a lane of its own unit (the host itself, each site, each
//! codebase and database), lanes grouped by host and hosts by batch, and behind them a band
//! per batch decision. Positions are percentages of the track, so the page needs no script
//! and prints at any width.

use std::fmt::{self, Write};

use fleet_playbook::{BatchRow, BatchVerdict, BuiltinStep, SiteRow, StepRow, StepState, Unit};

use super::phase::{Phase, phases};
use super::{Esc, Record, duration_text, exact_time, status_class, verdict_text};

/// Journal time to a position on the track, in percent of its width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Scale {
    start_ms: i64,
    span_ms: i64,
}

/// Tick intervals a person reads at a glance, smallest first.
const TICK_STEPS_MS: &[i64] = &[
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
];

/// At most this many intervals on the axis, so that labels never touch.
const MAX_TICKS: i64 = 8;

impl Scale {
    /// From `start_ms` to `end_ms`, never less than a second: a run of a few milliseconds
    /// would otherwise turn its steps into bars of the whole width.
    pub(super) fn new(start_ms: i64, end_ms: i64) -> Scale {
        Scale {
            start_ms,
            span_ms: (end_ms - start_ms).max(1_000),
        }
    }

    /// Where time `t` is; times before the start (a skewed clock) or after the end are kept
    /// on the track.
    pub(super) fn x(&self, t: i64) -> f64 {
        ((t - self.start_ms) as f64 * 100.0 / self.span_ms as f64).clamp(0.0, 100.0)
    }

    /// Left edge and width of what lasted from `from` to `to`.
    pub(super) fn place(&self, from: i64, to: i64) -> (f64, f64) {
        let left = self.x(from);
        (left, self.x(to.max(from)) - left)
    }

    /// The axis' ticks: offsets from the start, evenly spaced on a round interval.
    pub(super) fn ticks(&self) -> Vec<i64> {
        let step = TICK_STEPS_MS
            .iter()
            .copied()
            .find(|s| self.span_ms / s <= MAX_TICKS)
            .unwrap_or_else(|| {
                let day = 86_400_000;
                (self.span_ms / MAX_TICKS / day + 1) * day
            });
        (0..=self.span_ms / step).map(|i| i * step).collect()
    }
}

/// An offset from the run's start as the axis shows it (`0 s`, `0.5 s`, `1 min 30 s`).
pub(super) fn offset_label(ms: i64) -> String {
    if ms % 1_000 == 0 {
        fleet_playbook::format_age(ms / 1_000)
    } else {
        format!("{:.1} s", ms as f64 / 1_000.0)
    }
}

/// One unit of a host: its steps' indices into the run's steps, in order.
#[derive(Debug)]
pub(super) struct Lane<'a> {
    pub(super) unit: Unit,
    pub(super) site: Option<&'a SiteRow>,
    pub(super) steps: Vec<usize>,
}

/// A host's lanes: the host itself (when it has steps), its sites, then its codebases and
/// databases as their first steps came.
#[derive(Debug)]
pub(super) struct HostLanes<'a> {
    pub(super) host: &'a str,
    /// The batch its sites were given (0 = canary).
    pub(super) batch: Option<i64>,
    pub(super) lanes: Vec<Lane<'a>>,
}

/// The hosts of `sites` and `steps` in the journal's (inventory) order, each with its lanes.
pub(super) fn host_lanes<'a>(sites: &'a [SiteRow], steps: &'a [StepRow]) -> Vec<HostLanes<'a>> {
    let mut hosts: Vec<HostLanes<'a>> = Vec::new();
    fn host_of<'h, 'a>(hosts: &'h mut Vec<HostLanes<'a>>, name: &'a str) -> &'h mut HostLanes<'a> {
        let i = match hosts.iter().position(|h| h.host == name) {
            Some(i) => i,
            None => {
                hosts.push(HostLanes {
                    host: name,
                    batch: None,
                    lanes: Vec::new(),
                });
                hosts.len() - 1
            }
        };
        &mut hosts[i]
    }
    for s in sites {
        let h = host_of(&mut hosts, &s.host);
        h.batch = h.batch.or(s.batch);
        h.lanes.push(Lane {
            unit: Unit::site(&s.site),
            site: Some(s),
            steps: Vec::new(),
        });
    }
    for (i, st) in steps.iter().enumerate() {
        let h = host_of(&mut hosts, &st.host);
        match h.lanes.iter_mut().find(|l| l.unit == st.unit) {
            Some(l) => l.steps.push(i),
            None => {
                let lane = Lane {
                    unit: st.unit.clone(),
                    site: None,
                    steps: vec![i],
                };
                if st.unit == Unit::Host {
                    h.lanes.insert(0, lane);
                } else {
                    h.lanes.push(lane);
                }
            }
        }
    }
    hosts
}

/// A unit's name as its lane shows it: a long codebase path keeps its end, where the paths
/// of one host differ.
fn lane_name(unit: &Unit) -> String {
    const KEEP: usize = 24;
    match unit {
        Unit::Run | Unit::Host => "host".into(),
        Unit::Site(n) => n.clone(),
        Unit::Codebase(p) | Unit::Database(p) => {
            let kind = unit.scope();
            let chars: Vec<char> = p.chars().collect();
            if chars.len() > KEEP {
                let tail: String = chars[chars.len() - KEEP..].iter().collect();
                // From a directory's start when there is one, not from mid-name.
                let tail = tail.find('/').map_or(tail.as_str(), |i| &tail[i..]);
                format!("{kind} …{tail}")
            } else {
                format!("{kind} {p}")
            }
        }
    }
}

/// Writes the timeline section.
pub(super) fn write(out: &mut String, r: &Record<'_>, scale: &Scale) -> fmt::Result {
    let last_ms = r.last_ms();
    let phases = phases(r.steps);
    let mut hosts = host_lanes(r.sites, r.steps);
    // Batch by batch, inventory order within each (a resumed run re-batches its sites).
    hosts.sort_by_key(|h| h.batch.unwrap_or(i64::MAX));
    writeln!(out, r#"<section id="timeline"><h2>Timeline</h2>"#)?;
    writeln!(
        out,
        r#"<p class="legend"><span><i class="key k-done"></i>step done</span> <span><i class="key k-failed">✗</i>failed</span> <span><i class="key k-back">↩</i>way back (undo, restore, rollback)</span> <span><i class="key k-open"></i>no end recorded</span> <span><i class="key k-maint"></i>site still in maintenance</span> <span><i class="key k-band"></i>batch</span> <span class="dim">hover a bar for its exact start, duration and detail</span></p>"#
    )?;
    writeln!(out, r#"<div class="tl">"#)?;
    // The axis: offsets from the run's start on round intervals.
    write!(
        out,
        r#"<div class="tl-row tl-axis"><div class="tl-label">from the run's start</div><div class="tl-track">"#
    )?;
    for t in scale.ticks() {
        write!(
            out,
            r#"<span class="tick" style="left:{:.3}%">{}</span>"#,
            scale.x(scale.start_ms + t),
            Esc(&offset_label(t))
        )?;
    }
    writeln!(out, "</div></div>")?;
    writeln!(out, r#"<div class="tl-body"><div class="tl-bands">"#)?;
    for b in r.batches {
        write_band(out, scale, b, last_ms)?;
    }
    if r.batches.is_empty() {
        write_derived_bands(out, r, scale, &hosts)?;
    }
    writeln!(out, "</div>")?;
    // The bands' labels sit in a row of their own, above every batch's hosts.
    writeln!(
        out,
        r#"<div class="tl-row tl-bandrow"><div class="tl-label">batches</div><div class="tl-track"></div></div>"#
    )?;
    let mut current: Option<Option<i64>> = None;
    for h in &hosts {
        if current != Some(h.batch) {
            current = Some(h.batch);
            write_batch_head(out, r, h.batch)?;
        }
        write_host(out, r, scale, &phases, h, last_ms)?;
    }
    writeln!(out, "</div></div></section>")
}

fn write_band(out: &mut String, scale: &Scale, b: &BatchRow, last_ms: i64) -> fmt::Result {
    let (left, width) = scale.place(b.started_ms, b.finished_ms.unwrap_or(last_ms));
    let n = b.budget.batch + 1;
    let title = format!(
        "batch {n}: {}\n{} from {}{}",
        verdict_text(b),
        if b.verdict == BatchVerdict::NotAdmitted {
            "decided"
        } else {
            "admitted"
        },
        exact_time(b.started_ms),
        b.finished_ms
            .filter(|_| b.verdict != BatchVerdict::NotAdmitted)
            .map(|f| format!(
                " to {} ({})",
                exact_time(f),
                duration_text(f - b.started_ms)
            ))
            .unwrap_or_default()
    );
    writeln!(
        out,
        r#"<div class="band b{}{} {}" data-batch="{n}" data-verdict="{}" style="left:{left:.3}%;width:{width:.3}%" title="{}"><span>batch {n}</span></div>"#,
        b.budget.batch % 2,
        // A band at the track's end has its label on its left, where there is room.
        if left > 85.0 { " at-end" } else { "" },
        b.verdict.as_str(),
        b.verdict.as_str(),
        Esc(&title)
    )
}

/// For a run journaled before budget decisions were kept: each batch's band spans its
/// hosts' steps, and says that is all it knows.
fn write_derived_bands(
    out: &mut String,
    r: &Record<'_>,
    scale: &Scale,
    hosts: &[HostLanes<'_>],
) -> fmt::Result {
    let mut spans: Vec<(i64, i64, i64)> = Vec::new();
    for h in hosts {
        let Some(b) = h.batch else { continue };
        for st in h.lanes.iter().flat_map(|l| &l.steps).map(|&i| &r.steps[i]) {
            let end = st.finished_ms.unwrap_or(st.started_ms);
            match spans.iter_mut().find(|(x, _, _)| *x == b) {
                Some((_, from, to)) => {
                    *from = (*from).min(st.started_ms);
                    *to = (*to).max(end);
                }
                None => spans.push((b, st.started_ms, end)),
            }
        }
    }
    for (b, from, to) in spans {
        let (left, width) = scale.place(from, to);
        let n = b + 1;
        writeln!(
            out,
            r#"<div class="band b{} derived" data-batch="{n}" data-verdict="" style="left:{left:.3}%;width:{width:.3}%" title="{}"><span>batch {n}</span></div>"#,
            b % 2,
            Esc(&format!(
                "batch {n}: no budget decision recorded; from its hosts' first step ({}) to their last ({})",
                exact_time(from),
                exact_time(to)
            ))
        )?;
    }
    Ok(())
}

fn write_batch_head(out: &mut String, r: &Record<'_>, batch: Option<i64>) -> fmt::Result {
    let Some(b) = batch else {
        return writeln!(
            out,
            r#"<div class="tl-row tl-batch" data-batch=""><div class="tl-label">no batch</div><div class="tl-track"></div></div>"#
        );
    };
    let n = b + 1;
    let decisions: Vec<&BatchRow> = r
        .batches
        .iter()
        .filter(|d| i64::try_from(d.budget.batch).is_ok_and(|x| x == b))
        .collect();
    let text = if decisions.is_empty() {
        "no budget decision recorded".to_owned()
    } else {
        decisions
            .iter()
            .map(|d| verdict_text(d))
            .collect::<Vec<_>>()
            .join("; then ")
    };
    let class = decisions.last().map_or("none", |d| d.verdict.as_str());
    writeln!(
        out,
        r#"<div class="tl-row tl-batch" data-batch="{n}"><div class="tl-label">batch {n}{}</div><div class="tl-track"><span class="verdict {class}">{}</span></div></div>"#,
        if b == 0 { " · canary" } else { "" },
        Esc(&text)
    )
}

fn write_host(
    out: &mut String,
    r: &Record<'_>,
    scale: &Scale,
    phases: &[Phase],
    h: &HostLanes<'_>,
    last_ms: i64,
) -> fmt::Result {
    let batch = h.batch.map(|b| (b + 1).to_string()).unwrap_or_default();
    writeln!(
        out,
        r#"<div class="tl-host" data-host="{}" data-batch="{batch}">"#,
        Esc(h.host)
    )?;
    let quiet = h.lanes.iter().all(|l| l.steps.is_empty());
    writeln!(
        out,
        r#"<div class="tl-row tl-hostname"><div class="tl-label">{}</div><div class="tl-track">{}</div></div>"#,
        Esc(h.host),
        if quiet {
            r#"<span class="nosteps">no step journaled on this host</span>"#
        } else {
            ""
        }
    )?;
    for lane in &h.lanes {
        let site = lane.site.map_or("", |s| s.site.as_str());
        let down = lane.site.is_some_and(|s| s.in_maintenance);
        write!(
            out,
            r#"<div class="tl-row lane{}" data-host="{}" data-unit="{}" data-site="{}"><div class="tl-label" title="{}">{}"#,
            if down { " down" } else { "" },
            Esc(h.host),
            Esc(&lane.unit.to_string()),
            Esc(site),
            Esc(&lane.unit.to_string()),
            Esc(&lane_name(&lane.unit))
        )?;
        if let Some(s) = lane.site {
            write!(
                out,
                r#" <span class="status {}">{}</span>"#,
                status_class(s.status),
                Esc(s.status.as_str())
            )?;
            if down {
                write!(out, r#" <span class="flag">IN MAINTENANCE</span>"#)?;
            }
        }
        write!(out, r#"</div><div class="tl-track">"#)?;
        if let Some(s) = lane.site.filter(|s| s.in_maintenance) {
            write_maintenance(out, r, scale, s, last_ms)?;
        }
        for &i in &lane.steps {
            write_bar(out, scale, &r.steps[i], phases[i], &batch, site, last_ms)?;
        }
        if let Some(s) = lane.site {
            write_outcome(out, scale, s, &batch)?;
        }
        writeln!(out, "</div></div>")?;
    }
    writeln!(out, "</div>")
}

/// The stretch a site still in maintenance has been down: from the run's last
/// `maintenance-on` on it (or the run's start when it inherited the state) to the journal's
/// last word.
fn write_maintenance(
    out: &mut String,
    r: &Record<'_>,
    scale: &Scale,
    s: &SiteRow,
    last_ms: i64,
) -> fmt::Result {
    let since = r
        .steps
        .iter()
        .filter(|st| {
            st.host == s.host
                && st.unit == Unit::site(&s.site)
                && st.step == BuiltinStep::MaintenanceOn
        })
        .map(|st| st.started_ms)
        .next_back()
        .unwrap_or(r.run.started_ms);
    let (left, width) = scale.place(since, last_ms);
    write!(
        out,
        r#"<div class="maint" style="left:{left:.3}%;width:{width:.3}%" title="{}"></div>"#,
        Esc(&format!(
            "{}/{} is still in maintenance (since {})",
            s.host,
            s.site,
            exact_time(since)
        ))
    )
}

fn write_bar(
    out: &mut String,
    scale: &Scale,
    st: &StepRow,
    phase: Phase,
    batch: &str,
    site: &str,
    last_ms: i64,
) -> fmt::Result {
    let end = st.finished_ms.unwrap_or(last_ms);
    let (left, width) = scale.place(st.started_ms, end);
    let lasted = match st.finished_ms {
        Some(f) => duration_text(f - st.started_ms),
        None => "no end recorded (still running, or its controller died)".into(),
    };
    let mut title = format!(
        "{} on {} {}{}\nstate: {}\nstarted: {} (+{})\nlasted: {lasted}",
        st.step,
        st.host,
        st.unit,
        if phase == Phase::WayBack {
            " (way back)"
        } else {
            ""
        },
        st.state,
        exact_time(st.started_ms),
        duration_text(st.started_ms - scale.start_ms),
    );
    if st.attempt > 1 {
        title.push_str(&format!("\nattempt: {}", st.attempt));
    }
    if let Some(d) = st.detail.as_deref().filter(|d| !d.is_empty()) {
        title.push_str("\ndetail: ");
        title.push_str(d);
    }
    let mut class = vec!["bar", st.state.as_str(), phase.as_str()];
    if st.finished_ms.is_none() {
        class.push("open");
    }
    let glyph = if st.state == StepState::Failed {
        "✗"
    } else if phase == Phase::WayBack {
        "↩"
    } else {
        ""
    };
    write!(
        out,
        r#"<div class="{}" data-host="{}" data-unit="{}" data-site="{}" data-step="{}" data-state="{}" data-phase="{}" data-batch="{batch}" data-attempt="{}" data-start-ms="{}" data-duration-ms="{}" style="left:{left:.3}%;width:{width:.3}%" title="{}">"#,
        class.join(" "),
        Esc(&st.host),
        Esc(&st.unit.to_string()),
        Esc(site),
        Esc(st.step.as_str()),
        st.state.as_str(),
        phase.as_str(),
        st.attempt,
        st.started_ms - scale.start_ms,
        end - st.started_ms,
        Esc(&title)
    )?;
    // A name goes inside its bar only where it fits on a track about a laptop screen wide;
    // a narrower bar keeps its glyph, and its tooltip says the rest.
    const TRACK_PX: f64 = 1_100.0;
    let name = st.step.as_str();
    let fits = width / 100.0 * TRACK_PX >= 6.2 * name.chars().count() as f64 + 14.0;
    write!(out, r#"<span class="glyph">{glyph}</span>"#)?;
    if fits {
        write!(out, r#"<span class="name">{}</span>"#, Esc(name))?;
    }
    write!(out, "</div>")
}

/// Where a site's row last changed, and to what: the end the run gave it.
fn write_outcome(out: &mut String, scale: &Scale, s: &SiteRow, batch: &str) -> fmt::Result {
    let glyph = match status_class(s.status) {
        "ok" => "✓",
        "bad" => "✗",
        "back" => "↩",
        "held" => "!",
        _ => "•",
    };
    let title = format!(
        "{}/{}: {}{}\nat {}{}",
        s.host,
        s.site,
        s.status,
        if s.in_maintenance {
            " (IN MAINTENANCE)"
        } else {
            ""
        },
        exact_time(s.updated_ms),
        s.detail
            .as_deref()
            .map(|d| format!("\n{d}"))
            .unwrap_or_default()
    );
    write!(
        out,
        r#"<span class="outcome {}" data-host="{}" data-site="{}" data-status="{}" data-batch="{batch}" style="left:{:.3}%" title="{}">{glyph}</span>"#,
        status_class(s.status),
        Esc(&s.host),
        Esc(&s.site),
        s.status.as_str(),
        scale.x(s.updated_ms),
        Esc(&title)
    )
}

#[cfg(test)]
mod tests {
    use fleet_playbook::SiteStatus;

    use super::*;

    use crate::render::html::tests::bar_step as step;

    #[test]
    fn times_scale_to_the_track_and_stay_on_it() {
        let s = Scale::new(10_000, 20_000);
        assert_eq!(s.x(10_000), 0.0);
        assert_eq!(s.x(15_000), 50.0);
        assert_eq!(s.x(20_000), 100.0);
        assert_eq!(s.x(5_000), 0.0, "before the start");
        assert_eq!(s.x(99_000), 100.0, "after the end");
        assert_eq!(s.place(12_000, 13_000), (20.0, 10.0));
        // An end before its start (a clock step) is a bar of no width, not a negative one.
        assert_eq!(s.place(13_000, 12_000), (30.0, 0.0));
        // A run of a few milliseconds spans a second, not the whole track per step.
        assert_eq!(Scale::new(0, 5).place(0, 5), (0.0, 0.5));
    }

    #[test]
    fn ticks_fall_on_round_intervals() {
        #[track_caller]
        fn case(span_ms: i64, want: &[i64]) {
            assert_eq!(Scale::new(0, span_ms).ticks(), want, "span {span_ms}");
        }
        case(1_000, &[0, 200, 400, 600, 800, 1_000]);
        case(10_000, &[0, 2_000, 4_000, 6_000, 8_000, 10_000]);
        case(61_000, &[0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000]);
        case(
            3_600_000,
            &[
                0, 600_000, 1_200_000, 1_800_000, 2_400_000, 3_000_000, 3_600_000,
            ],
        );
        assert_eq!(Scale::new(0, 30 * 86_400_000).ticks().len(), 8);
        assert_eq!(offset_label(0), "0 s");
        assert_eq!(offset_label(500), "0.5 s");
        assert_eq!(offset_label(90_000), "1 min 30 s");
    }

    #[test]
    fn lanes_follow_the_journal_order_with_the_host_first() {
        let site = |host: &str, name: &str, batch| SiteRow {
            host: host.into(),
            site: name.into(),
            batch: Some(batch),
            status: SiteStatus::Pending,
            step: None,
            from_version: None,
            to_version: None,
            in_maintenance: false,
            detail: None,
            updated_ms: 0,
        };
        let sites = [site("h1", "a", 0), site("h1", "b", 0), site("h2", "a", 1)];
        let steps = [
            step(1, "h1", Unit::site("b"), "lock", StepState::Done),
            step(
                2,
                "h1",
                Unit::database("civi"),
                "backup-db",
                StepState::Done,
            ),
            step(3, "h1", Unit::Host, "upload", StepState::Done),
            step(
                4,
                "h1",
                Unit::database("civi"),
                "upgrade-db",
                StepState::Done,
            ),
            step(5, "h9", Unit::Host, "preflight", StepState::Done),
        ];
        let hosts = host_lanes(&sites, &steps);
        assert_eq!(
            hosts.len(),
            3,
            "a host with steps and no site row has its lanes too"
        );
        let units: Vec<String> = hosts[0].lanes.iter().map(|l| l.unit.to_string()).collect();
        assert_eq!(units, ["host", "site:a", "site:b", "database:civi"]);
        assert_eq!(hosts[0].lanes[3].steps, [1, 3]);
        assert_eq!(hosts[0].lanes[2].steps, [0]);
        assert_eq!((hosts[0].batch, hosts[1].batch), (Some(0), Some(1)));
        assert!(hosts[1].lanes[0].steps.is_empty());
        assert_eq!(hosts[2].host, "h9");
        assert_eq!(hosts[2].lanes[0].steps, [4]);
    }

    #[test]
    fn long_codebase_paths_keep_their_end() {
        assert_eq!(lane_name(&Unit::database("civi")), "database civi");
        assert_eq!(
            lane_name(&Unit::codebase(
                "/srv/www/drupal 7/sites/all/modules/civicrm"
            )),
            "codebase …/all/modules/civicrm"
        );
    }
}
