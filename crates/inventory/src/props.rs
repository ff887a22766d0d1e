//! Properties of every parser of this crate (`make test`): the TOML inventory, host ranges and
//! their compact form, selectors, and the Ansible INI and YAML inventories. Each is fed
//! arbitrary text and near-valid documents (lines of a valid one, shuffled, then corrupted),
//! and must not panic, must give the same answer twice, and must name where it failed.
//!
//! The `fuzz/` targets and the fault suite's `inputs` scenario feed the same parsers far more
//! input; these keep a small seeded dose of it in every test run.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::{Index, select};

use crate::ansible::{self, Format, VarsDirs};
use crate::range::expand;
use crate::{Inventory, Selector, compact_names};

/// Where the inventories of these properties claim to come from (never read).
const ORIGIN: &str = "/nonexistent-fleet-props/inv.toml";
const INI_ORIGIN: &str = "/nonexistent-fleet-props/hosts.ini";
const YAML_ORIGIN: &str = "/nonexistent-fleet-props/hosts.yml";
const VARS_ORIGIN: &str = "/nonexistent-fleet-props/group_vars/web.yml";

/// Lines of valid TOML inventories, recombined by the generator.
const TOML_LINES: &[&str] = &[
    "[defaults]",
    "user = \"deploy\"",
    "port = 22",
    "port = 70000",
    "identity_file = [\"~/.ssh/a\", \"~/.ssh/b\"]",
    "host_key_policy = \"accept-new\"",
    "connect_timeout = \"10s\"",
    "command_timeout = \"5m\"",
    "jump = \"bastion\"",
    "become = true",
    "become = \"www-data\"",
    "become_method = \"doas\"",
    "ssh_config = false",
    "vars = { env = \"prod\", n = 3 }",
    "backup_dir = \"/var/backups/fleet\"",
    "db_upgrade = \"cv\"",
    "disable_modules = [\"civicrm_rules\"]",
    "[rollout]",
    "batches = \"1,10%,50%,100%\"",
    "max_fail = \"10%\"",
    "max_per = { db_server = 2 }",
    "[hosts.bastion]",
    "address = \"198.51.100.5\"",
    "host_key = \"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8\"",
    "[hosts.web01]",
    "[hosts.\"web[02:04]\"]",
    "[hosts.\"db[1:2]\"]",
    "address = \"10.0.0.1\"",
    "[hosts.web01.sites.main]",
    "root = \"/var/www/drupal7\"",
    "uri = \"https://www.example.org\"",
    "current = \"5.69.0\"",
    "[groups.web]",
    "hosts = [\"web01\", \"web[02:04]\"]",
    "children = [\"db\"]",
    "[groups.db]",
    "hosts = [\"db1\", \"db2\"]",
    "[groups.prod]",
    "children = [\"web\", \"db\"]",
    "",
    "# a comment",
];

/// Lines of valid Ansible INI inventories.
const INI_LINES: &[&str] = &[
    "bastion ansible_host=198.51.100.5 ansible_port=2200",
    "[web]",
    "web[01:03]",
    "web04:2222 ansible_host=10.0.0.4 tier=edge",
    "[web:vars]",
    "http_port=8080",
    "[db]",
    "db-[a:b] ansible_user=dba",
    "db[0:20:5]",
    "[prod:children]",
    "web",
    "db",
    "[all:vars]",
    "ansible_user=deploy",
    "ansible_become=true",
    "ansible_ssh_common_args='-o ProxyJump=bastion'",
    "x='a b' y=\"c\\\" d\" z=[1, 2]",
    "; a comment",
    "",
];

/// Lines of valid Ansible YAML inventories (indentation matters, so corruption does too).
const YAML_LINES: &[&str] = &[
    "all:",
    "  hosts:",
    "    bastion:",
    "      ansible_host: 198.51.100.5",
    "      ansible_port: 2200",
    "  vars:",
    "    ansible_user: deploy",
    "  children:",
    "    web:",
    "      hosts:",
    "        web[01:03]:",
    "        web04:2222:",
    "          tier: edge",
    "      vars:",
    "        http_port: '8080'",
    "        list: [1, 2, {a: b}]",
    "        \"odd\\nkey\\\"\": 'x'",
    "    db:",
    "      hosts:",
    "        db-[a:b]: {ansible_user: dba}",
    "anchor: &a {x: 1}",
    "alias: *a",
    "---",
    "",
];

/// Lines of `group_vars`/`host_vars` files.
const VARS_LINES: &[&str] = &[
    "ntp: ntp.example.org",
    "tier: web-gv",
    "max_conn: 100",
    "limits: {open_files: 4096}",
    "pkgs: [nginx, certbot]",
    "pass: !vault |",
    "  $ANSIBLE_VAULT;1.1;AES256",
    "  6162",
    "<<: {a: 1}",
    "n: 0x1f",
    "t: yes",
    "s: !!str 22",
    "u: !unsafe '{{ x }}'",
    "- a",
    "{\"json\": [1, 2]}",
    "---",
    "",
];

/// Text that breaks documents in interesting places.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "=",
    ":",
    ",",
    "{",
    "}",
    "\n",
    "\t",
    " ",
    "#",
    "\\",
    "\0",
    "é",
    "\u{202e}",
    "*",
    "!",
    "&",
    "@",
    "-",
    "%",
    "999999999999999999999",
    "[0:99999]",
    "18446744073709551615",
    "true",
    "1e400",
    "\r\n",
    "|",
    ">",
    "&x",
    "*x",
    "---",
    "...",
    "~",
    "${x}",
    "$(touch pwned)",
    "`id`",
    "vars",
    "hosts",
    "children",
    "name",
    "all",
];

/// A corruption of a document: where, how and with what.
type Edit = (Index, u8, &'static str, Index);

/// A document made of `lines` and then damaged by up to five edits.
fn near_valid(lines: &'static [&'static str]) -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(select(lines), 0..24),
        proptest::collection::vec(
            (any::<Index>(), 0u8..6, select(TOKENS), any::<Index>()),
            0..5,
        ),
    )
        .prop_map(|(lines, edits)| corrupt(lines.join("\n") + "\n", &edits))
}

/// Applies `edits` to `text`, at character boundaries.
pub(crate) fn corrupt(mut text: String, edits: &[Edit]) -> String {
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
                // A line said again somewhere else (duplicate keys and tables).
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let line = lines[other.index(lines.len())].to_owned();
                    text.insert_str(pos, &(line + "\n"));
                }
            }
            4 => {
                let end = boundary(&text, pos + 1);
                text.replace_range(pos..end, token);
            }
            _ => {
                // A line's indentation changed (YAML's structure, TOML's nothing).
                let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
                text.insert_str(start, &" ".repeat(other.index(5)));
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
    let column: Option<usize> = parts.next().and_then(|c| c.parse().ok());
    assert!(column.is_some(), "no column: {msg}");
    // YAML counts a lone `\r` as a line break too.
    let lines = text.matches('\n').count() + text.matches('\r').count() + 1;
    assert!(
        (1..=lines).contains(&line),
        "line {line} outside the text: {msg}"
    );
    assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
}

/// The text between the first pair of backticks of `msg`, if any.
fn first_quoted(msg: &str) -> Option<&str> {
    let (_, rest) = msg.split_once('`')?;
    Some(rest.split_once('`')?.0)
}

/// `s` without its bracketed ranges and digits: a term `web[07:08]` that matches nothing is
/// named by its first host, `web07`, and both read `web` so.
fn without_ranges(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth > 0 || c.is_ascii_digit() => {}
            _ => out.push(c),
        }
    }
    out
}

fn toml_inventory(text: &str) -> Result<Inventory, crate::InventoryError> {
    Inventory::from_toml_str(text, Path::new(ORIGIN))
}

fn ansible(text: &str, origin: &str, format: Format) -> Result<String, String> {
    ansible::ansible_to_toml_with(Path::new(origin), text, format, &VarsDirs::default())
        .map_err(|e| e.to_string())
}

/// The inventory the selector properties select from.
fn sample_inventory() -> Inventory {
    toml_inventory(
        "[hosts.\"web[01:05]\"]\n[hosts.db1]\n[hosts.\"db.x-2\"]\n\
         [groups.web]\nhosts = [\"web[01:05]\"]\n[groups.db]\nhosts = [\"db1\", \"db.x-2\"]\n\
         [groups.prod]\nchildren = [\"web\", \"db\"]\n",
    )
    .expect("the sample inventory loads")
}

/// Host names as fleet allows them, many sharing prefixes and numbered.
fn host_names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        (
            select(&["web", "db", "n", "a.b-", "x_", "web0", ""][..]),
            proptest::option::of(0u64..1200),
            0usize..4,
        )
            .prop_map(|(p, n, w)| match n {
                Some(n) => format!("{p}{n:0w$}"),
                None if p.is_empty() => "h".to_owned(),
                None => p.to_owned(),
            }),
        0..30,
    )
}

/// Reads `compact_names`' output back: each `prefix[a-b,c]` as the names `[a:b]` and `[c:c]`
/// expand to.
fn read_compact(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (item, tail) = match (rest.find(','), rest.find('[')) {
            (Some(c), Some(b)) if b < c => {
                let close = rest.find(']').expect("closed bracket") + 1;
                (
                    &rest[..close],
                    rest[close..].strip_prefix(',').unwrap_or(""),
                )
            }
            (None, Some(_)) => (rest, ""),
            (Some(c), _) => (&rest[..c], &rest[c + 1..]),
            (None, None) => (rest, ""),
        };
        match item.split_once('[') {
            Some((prefix, spans)) => {
                for span in spans.trim_end_matches(']').split(',') {
                    let (a, b) = span.split_once('-').unwrap_or((span, span));
                    out.extend(expand(&format!("{prefix}[{a}:{b}]")).expect("expands"));
                }
            }
            None => out.push(item.to_owned()),
        }
        rest = tail;
    }
    out
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
    fn toml_inventory_never_panics_and_names_file_line_column(
        text in prop_oneof![near_valid(TOML_LINES), ".{0,200}"]
    ) {
        let first = toml_inventory(&text).map(|i| format!("{:?}", i.hosts()));
        let again = toml_inventory(&text).map(|i| format!("{:?}", i.hosts()));
        match (&first, &again) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => {
                let msg = a.to_string();
                prop_assert_eq!(&msg, &b.to_string());
                names_file_line(&msg, ORIGIN, &text);
            }
            _ => prop_assert!(false, "not deterministic: {first:?} then {again:?}"),
        }
    }

    #[test]
    fn host_ranges_never_panic_and_count_their_names(
        prefix in "[a-z.-]{0,3}",
        lo in prop_oneof!["[0-9]{1,3}", "[0-9]{15,21}", ".{0,3}", Just("0".to_owned())],
        hi in prop_oneof!["[0-9]{1,3}", "[0-9]{15,21}", ".{0,3}", Just(u64::MAX.to_string())],
        tail in prop_oneof![Just(String::new()), "[a-z]{0,2}\\[[0-9]{1,2}:[0-9]{1,2}\\]", ".{0,6}"],
    ) {
        let pattern = format!("{prefix}[{lo}:{hi}]{tail}");
        match expand(&pattern) {
            Ok(names) => {
                let (a, b): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
                let tails = expand(&tail).expect("the tail of an accepted range").len() as u64;
                prop_assert_eq!(names.len() as u64, (b - a + 1) * tails, "{}", pattern);
                prop_assert!(names.iter().all(|n| n.starts_with(&prefix)));
            }
            Err(why) => {
                let quoted = first_quoted(&why).unwrap_or_else(|| panic!("quotes nothing: {why}"));
                prop_assert!(pattern.contains(quoted), "{why} names no part of `{pattern}`");
            }
        }
    }

    #[test]
    fn compact_names_read_back_give_the_same_names(names in host_names()) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let compact = compact_names(&refs);
        let mut back = read_compact(&compact);
        let mut want = names.clone();
        back.sort();
        back.dedup();
        want.sort();
        want.dedup();
        prop_assert_eq!(back, want, "{}", compact);
    }

    #[test]
    fn selectors_never_panic_and_errors_quote_the_selector(
        text in prop_oneof![
            proptest::collection::vec(
                select(&["web", "web0*", "db?", "web[01:03]", "!db1", "&prod", "all", "nope",
                         "[", "]", "web[9:1]", "web[01:99999999]", "!", "&", " ", "é", "\n"][..]),
                0..6,
            ).prop_map(|t| t.join(",")),
            "[^@]{0,40}",
        ]
    ) {
        let inv = sample_inventory();
        let outcome = Selector::parse(&text).and_then(|s| {
            inv.select(std::slice::from_ref(&s)).map(|h| h.iter().map(|h| h.name.clone()).collect::<Vec<_>>())
        });
        let again = Selector::parse(&text).and_then(|s| {
            inv.select(std::slice::from_ref(&s)).map(|h| h.iter().map(|h| h.name.clone()).collect::<Vec<_>>())
        });
        prop_assert_eq!(&outcome, &again);
        if let Err(e) = outcome {
            let msg = e.to_string();
            let quoted = first_quoted(&msg).unwrap_or_else(|| panic!("quotes nothing: {msg}"));
            let shown = crate::error::printable(&text);
            prop_assert!(
                shown.contains(quoted) || without_ranges(&shown).contains(&without_ranges(quoted)),
                "{msg} names no part of {text:?}"
            );
            prop_assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
        }
    }

    #[test]
    fn ansible_ini_never_panics_names_file_line_and_converts_to_valid_toml(
        text in prop_oneof![near_valid(INI_LINES), ".{0,200}"]
    ) {
        let first = ansible(&text, INI_ORIGIN, Format::AnsibleIni);
        prop_assert_eq!(&first, &ansible(&text, INI_ORIGIN, Format::AnsibleIni));
        match first {
            Ok(converted) => {
                let table = converted.parse::<toml::Table>();
                prop_assert!(table.is_ok(), "converted to bad TOML {:?}:\n{}", table, converted);
            }
            Err(msg) => names_file_line(&msg, INI_ORIGIN, &text),
        }
    }

    #[test]
    fn ansible_yaml_never_panics_names_file_line_and_converts_to_valid_toml(
        text in prop_oneof![near_valid(YAML_LINES), ".{0,200}"]
    ) {
        let first = ansible(&text, YAML_ORIGIN, Format::AnsibleYaml);
        prop_assert_eq!(&first, &ansible(&text, YAML_ORIGIN, Format::AnsibleYaml));
        match first {
            Ok(converted) => {
                let table = converted.parse::<toml::Table>();
                prop_assert!(table.is_ok(), "converted to bad TOML {:?}:\n{}", table, converted);
            }
            Err(msg) => names_file_line(&msg, YAML_ORIGIN, &text),
        }
    }

    #[test]
    fn ansible_vars_files_never_panic_and_name_file_line(
        text in prop_oneof![near_valid(VARS_LINES), ".{0,200}"]
    ) {
        let file: std::sync::Arc<Path> = std::sync::Arc::from(Path::new(VARS_ORIGIN));
        let parse = || ansible::yaml::parse_vars_file(&file, &text).map(|l| {
            l.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>()
        }).map_err(|e| e.to_string());
        let first = parse();
        prop_assert_eq!(&first, &parse());
        if let Err(msg) = first {
            names_file_line(&msg, VARS_ORIGIN, &text);
        }
    }

    #[test]
    fn ansible_patterns_in_fleet_syntax_expand_to_the_same_names(
        pattern in "[a-z]{0,3}(\\[[0-9a-c]{1,3}:[0-9a-c]{1,3}(:[0-9]{1,2})?\\][a-z]{0,2}){0,2}(:[0-9]{1,6})?"
    ) {
        if let Ok(p) = ansible::pattern::expand_host_pattern(&pattern)
            && let Some(fleet) = &p.fleet
        {
            prop_assert_eq!(&expand(fleet).expect("fleet's own syntax"), &p.names, "{}", pattern);
        }
    }
}
