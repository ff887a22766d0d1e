//! The report's HTML: escaping, where bars go, and what a run's journal turns into.

use fleet_playbook::{
    ArtifactKind, ArtifactRow, BatchBudget, BatchRow, BatchVerdict, RunRow, RunState, SiteRow,
    SiteStatus, StepName, StepRow, StepState, Unit,
};

use super::*;

const T0: i64 = 1_795_000_000_000;

/// A journaled step `id` of `host` on `unit`, started at `id` seconds and lasting 0.5 s.
pub(super) fn bar_step(id: i64, host: &str, unit: Unit, step: &str, state: StepState) -> StepRow {
    StepRow {
        id,
        host: host.into(),
        unit,
        step: StepName::parse(step),
        state,
        attempt: 1,
        started_ms: 1_000 * id,
        finished_ms: Some(1_000 * id + 500),
        detail: None,
    }
}

#[test]
fn escaping_leaves_no_markup_in_text_or_attributes() {
    #[track_caller]
    fn case(input: &str, want: &str) {
        assert_eq!(Esc(input).to_string(), want);
    }
    case("plain", "plain");
    case(
        "<script>alert('x')</script>",
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;",
    );
    case(r#"" onmouseover="x"#, "&quot; onmouseover=&quot;x");
    case("a & b &amp;", "a &amp; b &amp;amp;");
    case("nul\0byte", "nul\u{fffd}byte");
    case("déjà vu → ✓", "déjà vu → ✓");
    case("", "");
}

#[test]
fn durations_read_at_the_precision_they_need() {
    assert_eq!(duration_text(0), "0 ms");
    assert_eq!(duration_text(230), "230 ms");
    assert_eq!(duration_text(1_234), "1.234 s");
    assert_eq!(duration_text(59_999), "59.999 s");
    assert_eq!(duration_text(90_000), "1 min 30 s");
    assert_eq!(exact_time(T0 + 7), "2026-11-18 11:06:40.007 UTC");
}

fn run() -> RunRow {
    RunRow {
        id: "20261118-110640-abcd".into(),
        started_ms: T0,
        finished_ms: Some(T0 + 10_000),
        state: RunState::Failed,
        operator: "ops".into(),
        controller: "ctl".into(),
        pid: 42,
        procedure: "civicrm-d7".into(),
        target: "5.70.0".into(),
        args: "fleet upgrade --tarball <x>.tar.gz".into(),
    }
}

fn site(host: &str, name: &str, batch: i64, status: SiteStatus) -> SiteRow {
    SiteRow {
        host: host.into(),
        site: name.into(),
        batch: Some(batch),
        status,
        step: None,
        from_version: Some("5.69.0".into()),
        to_version: Some("5.70.0".into()),
        in_maintenance: false,
        detail: None,
        updated_ms: T0 + 9_000,
    }
}

fn step(
    id: i64,
    host: &str,
    unit: Unit,
    name: &str,
    state: StepState,
    from: i64,
    to: i64,
) -> StepRow {
    StepRow {
        id,
        host: host.into(),
        unit,
        step: StepName::parse(name),
        state,
        attempt: 1,
        started_ms: T0 + from,
        finished_ms: Some(T0 + to),
        detail: None,
    }
}

fn decision(
    batch: usize,
    verdict: BatchVerdict,
    failed: Option<usize>,
    detail: Option<&str>,
) -> BatchRow {
    BatchRow {
        budget: BatchBudget {
            batch,
            hosts: 1,
            budget: 0,
            run_budget: 0,
        },
        verdict,
        failed,
        run_failed: failed,
        started_ms: T0 + 5_000 * batch as i64,
        finished_ms: Some(T0 + 5_000 * batch as i64 + 4_000),
        detail: detail.map(str::to_owned),
    }
}

struct Fixture {
    run: RunRow,
    sites: Vec<SiteRow>,
    steps: Vec<StepRow>,
    batches: Vec<BatchRow>,
    artifacts: Vec<ArtifactRow>,
}

impl Fixture {
    /// Two hosts: h1's canary upgraded, h2's database upgrade failed, restored, its site
    /// held in maintenance, a hostile detail from the host.
    fn new() -> Fixture {
        let hostile = "<script>document.body.dataset.pwned=1</script>";
        let mut held = site("h2", "s1", 1, SiteStatus::Held);
        held.in_maintenance = true;
        held.detail = Some(format!("failed at `upgrade-db`: {hostile}"));
        let mut failed = step(
            5,
            "h2",
            Unit::database("civi"),
            "upgrade-db",
            StepState::Failed,
            6_000,
            7_000,
        );
        failed.detail = Some(hostile.into());
        Fixture {
            run: run(),
            sites: vec![site("h1", "s1", 0, SiteStatus::Upgraded), held],
            steps: vec![
                step(1, "h1", Unit::Host, "preflight", StepState::Done, 0, 1_000),
                step(
                    2,
                    "h1",
                    Unit::database("civi"),
                    "upgrade-db",
                    StepState::Done,
                    2_000,
                    3_000,
                ),
                step(
                    3,
                    "h2",
                    Unit::site("s1"),
                    "maintenance-on",
                    StepState::Done,
                    5_000,
                    5_500,
                ),
                step(
                    4,
                    "h2",
                    Unit::site("s1"),
                    "flush",
                    StepState::Started,
                    5_500,
                    5_600,
                ),
                failed,
                step(
                    6,
                    "h2",
                    Unit::database("civi"),
                    "restore-db",
                    StepState::Done,
                    7_000,
                    8_000,
                ),
            ],
            batches: vec![
                decision(0, BatchVerdict::WithinBudget, Some(0), None),
                decision(
                    1,
                    BatchVerdict::OverBatchBudget,
                    Some(1),
                    Some("batch 2 had 1 failed host(s), more than its budget of 0"),
                ),
            ],
            artifacts: vec![ArtifactRow {
                host: "h2".into(),
                unit: Unit::database("civi"),
                kind: ArtifactKind::DbDump,
                value: "/b/civi.sql sha256:<00>".into(),
            }],
        }
    }

    fn render(&self) -> String {
        let mut steps = self.steps.clone();
        // A step the controller never saw end.
        steps[3].finished_ms = None;
        render(&Record {
            run: &self.run,
            state: "failed",
            warnings: &[],
            notes: &[],
            sites: &self.sites,
            steps: &steps,
            batches: &self.batches,
            artifacts: &self.artifacts,
            options: Some("forks = 20\n"),
            written_ms: T0 + 60_000,
        })
    }
}

/// The opening tag of the element whose attributes include every one of `attrs`.
#[track_caller]
fn tag<'a>(html: &'a str, attrs: &[&str]) -> &'a str {
    html.split('<')
        .find(|t| attrs.iter().all(|a| t.contains(a)))
        .unwrap_or_else(|| panic!("no element with {attrs:?}"))
}

#[test]
fn nothing_from_the_journal_becomes_markup() {
    let html = Fixture::new().render();
    assert!(!html.to_lowercase().contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;"));
    assert!(html.contains("fleet upgrade --tarball &lt;x&gt;.tar.gz"));
    assert!(html.contains("sha256:&lt;00&gt;"));
    // Self-contained: nothing is fetched from anywhere.
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(fetch), "{fetch}");
    }
}

#[test]
fn bars_sit_where_and_as_long_as_their_steps_ran() {
    let html = Fixture::new().render();
    // The run spans 10 s: a step from +2 s to +3 s starts at 20% and is 10% wide.
    let t = tag(&html, &[r#"data-host="h1""#, r#"data-step="upgrade-db""#]);
    assert!(t.contains("left:20.000%;width:10.000%"), "{t}");
    assert!(t.contains(r#"data-state="done""#), "{t}");
    assert!(t.contains(r#"data-batch="1""#), "{t}");
    assert!(
        t.contains(r#"data-start-ms="2000" data-duration-ms="1000""#),
        "{t}"
    );
    assert!(
        t.contains("started: 2026-11-18 11:06:42.000 UTC (+2.000 s)"),
        "{t}"
    );
    let failed = tag(&html, &[r#"data-host="h2""#, r#"data-step="upgrade-db""#]);
    assert!(failed.contains(r#"class="bar failed forward""#), "{failed}");
    assert!(failed.contains(r#"data-batch="2""#), "{failed}");
    assert!(failed.contains("detail: &lt;script&gt;"), "{failed}");
    let back = tag(&html, &[r#"data-step="restore-db""#]);
    assert!(back.contains(r#"data-phase="way-back""#), "{back}");
    // An open step is drawn to the journal's last word, and says so.
    let open = tag(&html, &[r#"data-step="flush""#]);
    assert!(open.contains("open"), "{open}");
    assert!(open.contains("no end recorded"), "{open}");
}

#[test]
fn batches_are_bands_and_their_decisions_rows() {
    let html = Fixture::new().render();
    let band = tag(&html, &[r#"class="band"#, r#"data-batch="2""#]);
    assert!(
        band.contains(r#"data-verdict="over-batch-budget""#),
        "{band}"
    );
    assert!(band.contains("left:50.000%;width:40.000%"), "{band}");
    let row = tag(&html, &[r#"class="decision"#, r#"data-batch="2""#]);
    assert!(row.contains("over-batch-budget"), "{row}");
    assert!(html.contains("more than its budget of 0"));
    assert!(!html.contains(r#"id="no-decisions""#));
    // A journal that kept no decision: the bands span each batch's steps, and say so.
    let mut f = Fixture::new();
    f.batches.clear();
    let html = f.render();
    assert!(html.contains(r#"id="no-decisions""#));
    let band = tag(&html, &[r#"class="band b1 derived""#]);
    assert!(band.contains(r#"data-batch="2""#), "{band}");
    assert!(band.contains("left:50.000%;width:30.000%"), "{band}");
    assert!(band.contains("no budget decision recorded"), "{band}");
}

#[test]
fn a_site_still_in_maintenance_is_flagged_loudly() {
    let html = Fixture::new().render();
    assert!(html.contains(r#"id="still-down""#));
    assert!(html.contains("1 SITE(S) STILL IN MAINTENANCE"));
    assert!(html.contains("h2/s1 (held, held on purpose)"));
    let lane = tag(
        &html,
        &[r#"class="tl-row lane down""#, r#"data-unit="site:s1""#],
    );
    assert!(lane.contains(r#"data-host="h2""#), "{lane}");
    let row = tag(&html, &[r#"class="site down""#]);
    assert!(row.contains(r#"data-status="held""#), "{row}");
    let mut f = Fixture::new();
    f.sites[1].in_maintenance = false;
    assert!(!f.render().contains(r#"id="still-down""#));
}

#[test]
fn the_sites_table_has_the_columns_runs_show_prints() {
    let html = Fixture::new().render();
    assert!(html.contains("<th>host</th><th>site</th><th>batch</th><th>status</th><th>step</th><th>from</th><th>updated (UTC)</th><th>detail</th>"));
    let row = tag(&html, &[r#"class="site""#, r#"data-host="h1""#]);
    assert!(row.contains(r#"data-status="upgraded""#), "{row}");
    assert!(html.contains(r#"<tr class="artifact" data-host="h2" data-kind="db-dump">"#));
}
