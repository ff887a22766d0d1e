//! Properties of this crate's parsers (`make test`): the playbook (`playbook.rs`) and the
//! migrate manifest (`procedure/migrate/manifest.rs`). Each is fed arbitrary text and
//! near-valid documents (lines of a valid one, recombined, then corrupted), and must not
//! panic, must give the same answer twice, and must name the file and line it refuses.
//!
//! The `fuzz/` targets and the fault suite's `inputs` scenario feed them far more input.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::{Manifest, Playbook};

/// Where the documents claim to come from: a directory that does not exist, so a manifest's
/// tarballs are never found (and the error must say where they were named).
const PLAYBOOK: &str = "/nonexistent-fleet-props/upgrade.toml";
const MANIFEST: &str = "/nonexistent-fleet-props/migrate.toml";

const PLAYBOOK_LINES: &[&str] = &[
    "name = \"security update\"",
    "[[steps]]",
    "kind = \"maintenance\"",
    "kind = \"backup\"",
    "kind = \"code-swap\"",
    "kind = \"verify\"",
    "kind = \"shell\"",
    "kind = \"restore\"",
    "name = \"drush-updb\"",
    "name = \"backup\"",
    "scope = \"site\"",
    "scope = \"host\"",
    "run = \"{drush} -r {root} -l {uri} updb -y\"",
    "run = \"echo {{literal}} {nope} {root\"",
    "verify = \"{drush} updb-status | grep -q 'No database updates'\"",
    "undo = \"\"",
    "as_web_user = true",
    "become = \"www-data\"",
    "become = \"-root\"",
    "touches_db = true",
    "",
    "# comment",
];

const MANIFEST_LINES: &[&str] = &[
    "[core]",
    "version = \"10.3.1\"",
    "version = \"7.99\"",
    "tarball = \"drupal-10.3.1.tar.gz\"",
    "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
    "[[module]]",
    "name = \"migrate_upgrade\"",
    "version = \"4.0.2\"",
    "tarball = \"mu.tar.gz\"",
    "[site]",
    "profile = \"minimal\"",
    "database = \"{old_db}_d10\"",
    "database = \"{nope}\"",
    "enable = [\"migrate\", \"migrate_upgrade\"]",
    "drush = \"vendor/bin/drush\"",
    "[import]",
    "legacy_key = \"migrate\"",
    "tag = \"Drupal 7\"",
    "[qa]",
    "count_tolerance = \"2%\"",
    "count_tolerance = 3",
    "probe = \"http://{address}:8080/\"",
    "marker = \"Drupal 10\"",
    "[[qa.check]]",
    "run = \"test -f index.php\"",
    "[civicrm]",
    "root = \"vendor/civicrm/civicrm-core\"",
    "",
];

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "=",
    ",",
    "{",
    "}",
    "{{",
    "}}",
    "\n",
    "\t",
    " ",
    "#",
    "\\",
    "\0",
    "é",
    "\u{202e}",
    "999999999999999999999",
    "-1",
    "1e400",
    "true",
    "\r\n",
    "%",
    "..",
    "/",
    "$(touch pwned)",
    "`id`",
    "steps",
    "kind",
    "name",
    "run",
];

/// A playbook built step by step (a `[[steps]]` table, a kind, some of the keys a step may
/// have), so that the checks behind the TOML syntax are reached before the corruption.
fn structured_playbook() -> impl Strategy<Value = String> {
    let step = (
        select(
            &[
                "maintenance",
                "backup",
                "code-swap",
                "verify",
                "shell",
                "shell",
                "nope",
            ][..],
        ),
        proptest::collection::vec(select(&PLAYBOOK_LINES[8..20]), 0..4),
    )
        .prop_map(|(kind, keys)| {
            let mut keys = keys;
            keys.sort_unstable();
            keys.dedup_by_key(|k| k.split(' ').next());
            format!("[[steps]]\nkind = \"{kind}\"\n{}\n", keys.join("\n"))
        });
    (
        proptest::collection::vec(step, 0..5),
        proptest::collection::vec(
            (any::<Index>(), 0u8..5, select(TOKENS), any::<Index>()),
            0..2,
        ),
    )
        .prop_map(|(steps, edits)| corrupt(steps.concat(), &edits))
}

const CIVICRM_LINES: &[&str] = &[
    "database = \"{old_db}_civi\"",
    "root = \"vendor/civicrm/core\"",
];

/// A manifest with its tables in order, each with some of its keys.
fn structured_manifest() -> impl Strategy<Value = String> {
    let table = |header: &'static str, keys: &'static [&'static str]| {
        proptest::collection::vec(select(keys), 0..keys.len() + 1).prop_map(move |mut k| {
            k.sort_unstable();
            k.dedup_by_key(|l| l.split(' ').next());
            format!("{header}\n{}\n", k.join("\n"))
        })
    };
    (
        table("[core]", &MANIFEST_LINES[1..5]),
        proptest::collection::vec(table("[[module]]", &MANIFEST_LINES[6..9]), 0..2),
        table("[site]", &MANIFEST_LINES[10..15]),
        proptest::option::of(table("[import]", &MANIFEST_LINES[16..18])),
        proptest::option::of(table("[qa]", &MANIFEST_LINES[19..23])),
        proptest::option::of(table("[civicrm]", CIVICRM_LINES)),
        proptest::collection::vec(
            (any::<Index>(), 0u8..5, select(TOKENS), any::<Index>()),
            0..2,
        ),
    )
        .prop_map(|(core, modules, site, import, qa, civicrm, edits)| {
            let text = [
                Some(core),
                Some(modules.concat()),
                Some(site),
                import,
                qa,
                civicrm,
            ]
            .into_iter()
            .flatten()
            .collect::<String>();
            corrupt(text, &edits)
        })
}

type Edit = (Index, u8, &'static str, Index);

fn near_valid(lines: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(select(lines), 0..24),
        proptest::collection::vec(
            (any::<Index>(), 0u8..5, select(TOKENS), any::<Index>()),
            0..5,
        ),
    )
        .prop_map(|(lines, edits)| corrupt(lines.join("\n") + "\n", &edits))
}

/// Applies `edits` to `text` at character boundaries: insert a token, delete a run, cut the
/// rest, say a line again elsewhere, replace a character.
fn corrupt(mut text: String, edits: &[Edit]) -> String {
    for (at, op, token, other) in edits {
        let pos = boundary(&text, at.index(text.len() + 1));
        match op {
            0 => text.insert_str(pos, token),
            1 => {
                let end = boundary(&text, pos + other.index(8));
                text.replace_range(pos..end, "");
            }
            2 => text.truncate(pos),
            3 => {
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = lines[other.index(lines.len())].to_owned();
                    text.insert_str(pos, &(line + "\n"));
                }
            }
            _ => {
                let end = boundary(&text, pos + 1);
                text.replace_range(pos..end, token);
            }
        }
    }
    text
}

fn boundary(text: &str, mut pos: usize) -> usize {
    pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

/// Asserts that `msg` is one line starting `FILE:LINE:COLUMN: ` with LINE inside `text`.
#[track_caller]
fn names_file_line(msg: &str, file: &str, text: &str) {
    let rest = msg
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("error does not start with `{file}:`: {msg}"));
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no line number: {msg}"));
    assert!(
        parts.next().and_then(|c| c.parse::<usize>().ok()).is_some(),
        "no column: {msg}"
    );
    // YAML counts a lone `\r` as a line break too.
    let lines = text.matches('\n').count() + text.matches('\r').count() + 1;
    assert!(
        (1..=lines).contains(&line),
        "line {line} outside the text: {msg}"
    );
    assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn playbook_never_panics_and_names_file_line_column(
        text in prop_oneof![near_valid(PLAYBOOK_LINES), structured_playbook(), ".{0,200}"]
    ) {
        let origin = Path::new(PLAYBOOK);
        let first = Playbook::parse(&text, origin).map_err(|e| e.to_string());
        prop_assert_eq!(&first, &Playbook::parse(&text, origin).map_err(|e| e.to_string()));
        match first {
            Ok(pb) => {
                // What was accepted reads back the same from its recorded text (`fleet
                // resume` reads it so), and keeps at least one step.
                prop_assert!(!pb.steps.is_empty());
                prop_assert_eq!(
                    &Playbook::parse_recorded(&pb.text, origin).map_err(|e| e.to_string()),
                    &Ok(pb.clone())
                );
            }
            Err(msg) => names_file_line(&msg, PLAYBOOK, &text),
        }
    }

    #[test]
    fn manifest_never_panics_and_names_file_line_column(
        text in prop_oneof![near_valid(MANIFEST_LINES), structured_manifest(), ".{0,200}"]
    ) {
        let origin = Path::new(MANIFEST);
        for read_tarballs in [true, false] {
            let parse = |t: &str| {
                if read_tarballs {
                    Manifest::parse(t, origin)
                } else {
                    Manifest::parse_recorded(t, origin)
                }
                .map_err(|e| e.to_string())
            };
            let first = parse(&text);
            prop_assert_eq!(&first, &parse(&text));
            match first {
                Ok(m) => {
                    prop_assert!(!read_tarballs, "a tarball of a missing directory was read");
                    prop_assert!(m.major() >= 8);
                    prop_assert_eq!(&parse(&m.text), &Ok(m.clone()));
                }
                Err(msg) => names_file_line(&msg, MANIFEST, &text),
            }
        }
    }
}

/// The structured generators reach documents that are accepted, and documents refused past
/// the TOML syntax (else the properties would only ever test the TOML parser).
#[test]
fn the_generators_reach_past_the_syntax() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut accepted, mut refused_later) = (0, 0);
    for _ in 0..300 {
        let pb = structured_playbook()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        match Playbook::parse(&pb, Path::new(PLAYBOOK)) {
            Ok(_) => accepted += 1,
            Err(e) if !e.to_string().contains("TOML") => refused_later += 1,
            Err(_) => {}
        }
        let m = structured_manifest()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        match Manifest::parse_recorded(&m, Path::new(MANIFEST)) {
            Ok(_) => accepted += 1,
            Err(e) if !e.to_string().contains("TOML") => refused_later += 1,
            Err(_) => {}
        }
    }
    assert!(
        accepted >= 5 && refused_later >= 100,
        "{accepted} accepted, {refused_later} refused past the syntax"
    );
}
