//! `fleet runs show RUN --html FILE`: the report of a real run against lab hosts, rendered by
//! headless Chromium and checked in the DOM it built (not in the text fleet wrote).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_playbook::{Journal, StepState};

use crate::upgrade::{FROM, Upgrade, fleet_cmd, run_id};
use crate::{both, stderr, stdout};

const CHROMIUM: &str = "/usr/bin/chromium";

/// What a site admin can put in a Drupal variable: fleet refuses the site, and the value
/// reaches the journal in the site's detail. Unescaped, it would mark the page's body.
const HOSTILE: &str = "<script>document.body.dataset.pwned=1</script>";

/// The browser, or a failure saying how to get it: a report test that skips would let a
/// green run hide that the page was never rendered.
fn chromium() -> &'static Path {
    let path = Path::new(CHROMIUM);
    assert!(
        path.exists(),
        "`{CHROMIUM}` is missing: the HTML report tests render the page in headless Chromium; `make deps` installs it (Debian package `chromium`)"
    );
    path
}

/// The DOM Chromium builds from `file`, serialized (`--dump-dom`); its profile, HOME and
/// caches live in `scratch`.
fn dump_dom(file: &Path, scratch: &Path) -> String {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .env("HOME", scratch)
        .env("XDG_CONFIG_HOME", scratch.join("config"))
        .env("XDG_CACHE_HOME", scratch.join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().expect("chromium status").is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not render `{}` in 90 s", file.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// One element's opening tag in the serialized DOM: its name and its attributes, decoded.
#[derive(Debug)]
struct El {
    name: String,
    attrs: BTreeMap<String, String>,
}

impl El {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map_or("", String::as_str)
    }

    fn has_class(&self, class: &str) -> bool {
        self.attr("class").split_whitespace().any(|c| c == class)
    }
}

/// Every opening tag of `dom`. A serializer writes each attribute as `name="value"` with the
/// value's `"` and `&` as entities, so a value never holds a raw quote.
fn elements(dom: &str) -> Vec<El> {
    let tag = regex_lite::Regex::new(
        r#"<([a-zA-Z][a-zA-Z0-9]*)((?:\s+[^\s="'>/]+(?:="[^"]*")?)*)\s*/?>"#,
    )
    .expect("tag regex");
    let attr = regex_lite::Regex::new(r#"([^\s="'>/]+)(?:="([^"]*)")?"#).expect("attr regex");
    tag.captures_iter(dom)
        .map(|c| El {
            name: c[1].to_ascii_lowercase(),
            attrs: attr
                .captures_iter(&c[2])
                .map(|a| {
                    (
                        a[1].to_owned(),
                        a.get(2).map_or(String::new(), |v| decode(v.as_str())),
                    )
                })
                .collect(),
        })
        .collect()
}

fn decode(v: &str) -> String {
    v.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// A run of five hosts of two sites in batches of 1, 2 and 2, one failure tolerated: the
/// canary upgrades; in batch 2, h02 is refused at preflight (a hostile Drupal variable) and
/// h03's database upgrade fails half-way, so its code and database are put back and, with
/// `--on-failure hold`, its sites stay in maintenance; two failures exceed the budget, so
/// batch 3 is never admitted. The report rendered by Chromium shows each of these.
#[test]
fn html_report_of_a_failed_batch_renders_in_chromium() {
    chromium();
    let u = Upgrade::new(5, 2);
    let refused = u.sites_of("h02")[1].clone();
    std::fs::write(
        refused
            .db_dir(&refused.cms_db)
            .join("variable.maintenance_mode"),
        HOSTILE,
    )
    .expect("hostile variable");
    u.inject("h03", "upgrade.midway", None);
    let o = u.fleet(&[
        "--batches",
        "1,2,100%",
        "--max-fail",
        "1",
        "--on-failure",
        "hold",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    // What the report must agree with: the hosts themselves.
    for s in u.sites_of("h03") {
        assert_eq!(s.db_version(), FROM, "{} restored", s.name);
        assert_eq!(s.maintenance(), "1", "{} held in maintenance", s.name);
    }
    for h in ["h04", "h05"] {
        assert!(u.calls(h).is_empty(), "{h} was touched");
    }
    let run = run_id(&u);
    let dir = tempfile::tempdir().expect("report dir");
    let file = dir.path().join("report.html");
    let o = fleet_cmd(
        &u,
        &[
            "runs",
            "show",
            &run,
            "--html",
            file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stdout(&o).is_empty(), "{}", both(&o));
    assert!(stderr(&o).contains("written to"), "{}", both(&o));
    // Written by a rename: nothing else is left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("report dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.html"]);
    let scratch = tempfile::tempdir().expect("chromium scratch");
    let dom = dump_dom(&file, scratch.path());
    let els = elements(&dom);
    let journal = Journal::open(u.state.path()).expect("journal");

    // Host values are text: no script element, nothing ran, the payload shown as text.
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    let body = els.iter().find(|e| e.name == "body").expect("body");
    assert!(!body.attrs.contains_key("data-pwned"), "{body:?}");
    assert!(
        dom.contains("&lt;script&gt;document.body.dataset.pwned=1&lt;/script&gt;"),
        "the hostile detail is not shown as text"
    );

    // One bar per journaled step, on its host, unit and step, in its state.
    let bars: Vec<&El> = els.iter().filter(|e| e.has_class("bar")).collect();
    let steps = journal.steps(&run).expect("steps");
    assert!(steps.len() > 20, "{steps:?}");
    assert_eq!(bars.len(), steps.len());
    for st in &steps {
        let n = bars
            .iter()
            .filter(|b| {
                b.attr("data-host") == st.host
                    && b.attr("data-unit") == st.unit.to_string()
                    && b.attr("data-step") == st.step.as_str()
                    && b.attr("data-state") == st.state.as_str()
                    && b.attr("data-attempt") == st.attempt.to_string()
            })
            .count();
        assert_eq!(n, 1, "bar of {st:?}");
    }
    for b in &bars {
        assert!(b.attr("style").contains("left:"), "{b:?}");
        assert!(b.attr("title").contains("started: "), "{b:?}");
        assert!(b.attr("title").contains("lasted: "), "{b:?}");
    }
    let failed: Vec<&&El> = bars
        .iter()
        .filter(|b| b.attr("data-state") == StepState::Failed.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].attr("data-host"), "h03");
    assert_eq!(failed[0].attr("data-step"), "upgrade-db");
    assert_eq!(failed[0].attr("data-batch"), "2");
    assert!(failed[0].has_class("failed"));
    assert!(
        failed[0].attr("title").contains("partially upgraded"),
        "{:?}",
        failed[0]
    );
    let way_back: Vec<&str> = bars
        .iter()
        .filter(|b| b.attr("data-phase") == "way-back")
        .map(|b| b.attr("data-step"))
        .collect();
    for step in ["restore-code", "restore-db", "clear-templates"] {
        assert!(
            way_back.contains(&step),
            "{step} not on the way back: {way_back:?}"
        );
    }
    assert!(
        bars.iter()
            .filter(|b| b.attr("data-phase") == "way-back")
            .all(|b| b.attr("data-host") == "h03"),
        "only h03 went back"
    );
    assert!(
        bars.iter()
            .filter(|b| b.attr("data-host") == "h01")
            .all(|b| b.attr("data-batch") == "1" && b.attr("data-state") == "done")
    );

    // The batches: bands, and the decisions the journal recorded.
    let bands: BTreeMap<&str, &str> = els
        .iter()
        .filter(|e| e.has_class("band"))
        .map(|e| (e.attr("data-batch"), e.attr("data-verdict")))
        .collect();
    assert_eq!(
        bands,
        BTreeMap::from([
            ("1", "within-budget"),
            ("2", "over-batch-budget"),
            ("3", "not-admitted")
        ])
    );
    let decisions: Vec<(&str, &str)> = els
        .iter()
        .filter(|e| e.has_class("decision"))
        .map(|e| (e.attr("data-batch"), e.attr("data-verdict")))
        .collect();
    assert_eq!(
        decisions,
        [
            ("1", "within-budget"),
            ("2", "over-batch-budget"),
            ("3", "not-admitted")
        ]
    );
    assert!(dom.contains("2 of 2 host(s) failed, more than its budget of 1"));

    // The summary table: a row per site, as `fleet runs show` has them.
    let rows: Vec<(&str, &str, &str, &str)> = els
        .iter()
        .filter(|e| e.name == "tr" && e.has_class("site"))
        .map(|e| {
            (
                e.attr("data-host"),
                e.attr("data-site"),
                e.attr("data-batch"),
                e.attr("data-status"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("h01", "site1", "1", "upgraded"),
            ("h01", "site2", "1", "upgraded"),
            ("h02", "site1", "2", "failed"),
            ("h02", "site2", "2", "failed"),
            ("h03", "site1", "2", "held"),
            ("h03", "site2", "2", "held"),
            ("h04", "site1", "3", "not-started"),
            ("h04", "site2", "3", "not-started"),
            ("h05", "site1", "3", "not-started"),
            ("h05", "site2", "3", "not-started"),
        ]
    );
    let down: Vec<&str> = els
        .iter()
        .filter(|e| e.name == "tr" && e.has_class("down"))
        .map(|e| e.attr("data-host"))
        .collect();
    assert_eq!(down, ["h03", "h03"]);
    assert!(els.iter().any(|e| e.attr("id") == "still-down"));
    assert!(dom.contains("2 SITE(S) STILL IN MAINTENANCE"));
    // Backups and recorded state: h03's dumps, which its restore used.
    assert!(els.iter().any(|e| e.has_class("artifact")
        && e.attr("data-host") == "h03"
        && e.attr("data-kind") == "db-dump"));

    // `runs show` without --html is the text it always was; `--html -` is the page.
    let text = fleet_cmd(&u, &["runs", "show", &run]);
    assert_eq!(text.status.code(), Some(0), "{}", both(&text));
    let text = stdout(&text);
    assert!(text.contains("HOST  SITE   BATCH  STATUS"), "{text}");
    assert!(!text.contains("<html"), "{text}");
    let piped = fleet_cmd(&u, &["runs", "show", &run, "--html", "-"]);
    assert_eq!(piped.status.code(), Some(0), "{}", both(&piped));
    let written = std::fs::read_to_string(&file).expect("report");
    let without_footer = |page: &str| -> String {
        page.lines()
            .filter(|l| !l.starts_with("<footer>"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_footer(&stdout(&piped)), without_footer(&written));
}

/// A report into a directory that does not exist fails naming it, and writes nothing.
#[test]
fn html_report_into_a_missing_directory_names_it() {
    let u = Upgrade::new(1, 1);
    let o = u.fleet(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let run = run_id(&u);
    let missing: PathBuf = u.state.path().join("no/such/dir/report.html");
    let o = fleet_cmd(
        &u,
        &[
            "runs",
            "show",
            &run,
            "--html",
            missing.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains(&u.state.path().join("no/such/dir").display().to_string()),
        "{}",
        both(&o)
    );
    assert!(!missing.exists());
}
