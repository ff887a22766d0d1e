//! Bad input: every parser fleet has (the TOML inventory, host ranges, selectors, Ansible
//! INI and YAML inventories, playbooks, migrate manifests, known_hosts, ssh_config) fed a
//! seeded, bounded number of generated and mutated documents in-process, each under
//! `catch_unwind`: no panic, the same answer twice, and every refusal naming its file and
//! line (or the selector term). Then a handful of bad files and selectors through the real
//! `fleet` binary: exit code 2 and one line of error naming the place.
//!
//! The mutations start from the seeds the fuzz targets start from (`fuzz/seeds/`), so the
//! fault suite and `make fuzz` explore from the same documents; a failing input is written
//! to `CARGO_TARGET_TMPDIR/bad-inputs/` to be replayed (`fuzz/`'s `replay` takes it too).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fleet_inventory::{Format, Inventory, Selector, VarsDirs};
use fleet_playbook::{Manifest, Playbook};

use super::{Figures, Rng, seed};
use crate::{fleet, run, stderr};

/// Inputs per parser: 9 parsers, a few thousand in all, well under 30 s in a debug build.
const PER_PARSER: u64 = 400;

/// Where the documents claim to come from: a directory that does not exist, so that nothing
/// beside them (tarballs, vars directories) is ever read.
const DIR: &str = "/nonexistent-fleet-inputs";

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
    "{{",
    "}}",
    "\n",
    "\r",
    "\t",
    " ",
    "#",
    "\\",
    "\0",
    "\u{1b}[2J",
    "é",
    "\u{202e}",
    "*",
    "?",
    "!",
    "&",
    "-",
    "%",
    "%h",
    "~",
    "|1|",
    "@revoked",
    "999999999999999999999",
    "18446744073709551615",
    "[0:99999]",
    "-1",
    "1e400",
    "true",
    "\r\n",
    "|",
    ">",
    "&a",
    "*a",
    "---",
    "...",
    "$(touch pwned)",
    "`id`",
    "Host",
    "Match",
    "Include",
    "[[steps]]",
    "[core]",
    "[hosts.x]",
    "[groups.all]",
    ":vars]",
    ":children]",
    "ansible_host=",
    "all:",
];

/// One parser: its name, the seeds mutations start from, and the check of one input, which
/// panics on a wrong answer (a panic of the parser itself panics the same way).
struct Parser {
    name: &'static str,
    seeds: Vec<String>,
    check: fn(&str),
}

/// The seed documents of fuzz target `target` (`fuzz/seeds/TARGET/*`), read as the targets
/// read their input (not UTF-8: replaced).
fn seeds(target: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seeds `{}`: {e}", dir.display()))
        .map(|e| e.expect("seed entry").path())
        .collect();
    files.sort();
    let seeds: Vec<String> = files
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).expect("seed")).into_owned())
        .collect();
    assert!(!seeds.is_empty(), "no seeds in `{}`", dir.display());
    seeds
}

fn boundary(text: &str, mut pos: usize) -> usize {
    pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    pos
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.range(0, items.len() as u64 - 1) as usize]
}

/// A character of any kind: ASCII (controls too), Latin, bidi controls, astral.
fn any_char(rng: &mut Rng) -> char {
    match rng.range(0, 5) {
        0..=2 => char::from(rng.range(0, 127) as u8),
        3 => char::from_u32(rng.range(0x80, 0x2fff) as u32).unwrap_or('\u{fffd}'),
        4 => *pick(
            rng,
            &['\u{202e}', '\u{200b}', '\u{feff}', '\u{1f600}', '\u{7f}'],
        ),
        _ => char::from_u32(rng.range(0x1_0000, 0x10_ffff) as u32).unwrap_or('x'),
    }
}

/// `text` damaged by a few edits at character boundaries.
fn mutate(rng: &mut Rng, mut text: String) -> String {
    for _ in 0..rng.range(1, 6) {
        let pos = boundary(&text, rng.range(0, text.len() as u64) as usize);
        match rng.range(0, 7) {
            0 => {
                let token = *pick(rng, TOKENS);
                text.insert_str(pos, token);
            }
            1 => {
                let end = boundary(&text, pos + rng.range(1, 12) as usize);
                text.replace_range(pos..end, "");
            }
            2 => text.truncate(pos),
            3 => {
                // A line said again elsewhere: duplicate keys, tables, hosts.
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                if !lines.is_empty() {
                    let line = pick(rng, &lines).clone();
                    text.insert_str(pos, &(line + "\n"));
                }
            }
            4 => {
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.len() > 1 {
                    let (a, b) = (
                        rng.range(0, lines.len() as u64 - 1) as usize,
                        rng.range(0, lines.len() as u64 - 1) as usize,
                    );
                    lines.swap(a, b);
                    text = lines.join("\n");
                }
            }
            5 => {
                let end = boundary(&text, pos + 1);
                let c = any_char(rng).to_string();
                text.replace_range(pos..end, &c);
            }
            6 => {
                // Deep nesting or a long run: what a recursive parser or a quadratic loop
                // would not survive.
                let unit = *pick(rng, &["[", "{", "- ", "  ", "a = [", "[:", "*"]);
                text.insert_str(pos, &unit.repeat(rng.range(10, 3000) as usize));
            }
            _ => {
                let junk: String = (0..rng.range(1, 8)).map(|_| any_char(rng)).collect();
                text.insert_str(pos, &junk);
            }
        }
    }
    text
}

/// One input for `p`: mostly a mutated seed, sometimes text of random characters.
fn input(rng: &mut Rng, p: &Parser) -> String {
    if rng.range(0, 7) == 0 {
        (0..rng.range(0, 300)).map(|_| any_char(rng)).collect()
    } else {
        let seed = pick(rng, &p.seeds).clone();
        mutate(rng, seed)
    }
}

/// Panics unless `msg` is one line starting `FILE:LINE:` with LINE inside `text`.
#[track_caller]
fn names_line(msg: &str, file: &str, text: &str) {
    let line: usize = msg
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|r| r.split(':').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("error does not name `{file}:LINE`: {msg}"));
    let lines = text.matches('\n').count() + text.matches('\r').count() + 1;
    assert!(
        (1..=lines).contains(&line),
        "line {line} is outside the text: {msg}"
    );
    assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
}

/// Panics unless the first backticked name in `msg` is part of `input` (control characters
/// escaped, as errors show them) and `msg` is one line without a raw control character.
#[track_caller]
fn quotes_input(msg: &str, input: &str) {
    let quoted = msg
        .split_once('`')
        .and_then(|(_, r)| r.split_once('`'))
        .map(|(q, _)| q)
        .unwrap_or_else(|| panic!("error names nothing in backticks: {msg}"));
    let shown: String = input
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    assert!(
        shown.contains(quoted) || without_ranges(&shown).contains(&without_ranges(quoted)),
        "error names `{quoted}`, not in {input:?}: {msg}"
    );
    assert!(
        !msg.chars().any(char::is_control),
        "raw control character: {msg:?}"
    );
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

fn toml_inventory(text: &str, origin: &str) -> Result<Vec<String>, String> {
    Inventory::from_toml_str(text, Path::new(origin))
        .map(|i| i.hosts().iter().map(|h| format!("{h:?}")).collect())
        .map_err(|e| e.to_string())
}

fn check_inventory(text: &str) {
    let origin = format!("{DIR}/inventory.toml");
    let first = toml_inventory(text, &origin);
    assert_eq!(first, toml_inventory(text, &origin), "not deterministic");
    if let Err(msg) = first {
        names_line(&msg, &origin, text);
    }
}

/// The inventory selectors choose from.
fn sample() -> &'static Inventory {
    static INV: OnceLock<Inventory> = OnceLock::new();
    INV.get_or_init(|| {
        Inventory::from_toml_str(SAMPLE, Path::new("sample.toml")).expect("sample inventory")
    })
}

const SAMPLE: &str = "[hosts.\"web[01:05]\"]\n[hosts.db1]\n[hosts.\"db.x-2\"]\n\
    [groups.web]\nhosts = [\"web[01:05]\"]\n[groups.db]\nhosts = [\"db1\", \"db.x-2\"]\n\
    [groups.prod]\nchildren = [\"web\", \"db\"]\n";

fn select(text: &str) -> Result<Vec<String>, String> {
    let s = Selector::parse(text).map_err(|e| e.to_string())?;
    sample()
        .select(std::slice::from_ref(&s))
        .map(|h| h.iter().map(|h| h.name.clone()).collect())
        .map_err(|e| e.to_string())
}

fn check_selector(text: &str) {
    // `@FILE` reads a file, which is I/O, not parsing.
    let text = text.replace('@', "");
    let first = select(&text);
    assert_eq!(first, select(&text), "not deterministic");
    if let Err(msg) = first {
        quotes_input(&msg, &text);
    }
}

/// A range as a host table's key and as a selector over that inventory: the selector must
/// choose exactly the hosts the key defined.
fn check_range(pattern: &str) {
    let pattern = pattern.lines().next().unwrap_or("").replace('@', "");
    let origin = format!("{DIR}/range.toml");
    let doc = format!("[hosts.{}]\n", toml::Value::String(pattern.clone()));
    let inv = match Inventory::from_toml_str(&doc, Path::new(&origin)) {
        Ok(inv) => inv,
        Err(e) => return names_line(&e.to_string(), &origin, &doc),
    };
    let names: Vec<&str> = inv.hosts().iter().map(|h| h.name.as_str()).collect();
    match Selector::parse(&pattern).and_then(|s| inv.select(&[s])) {
        Ok(chosen) => {
            let chosen: Vec<&str> = chosen.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(
                chosen, names,
                "`{pattern}` selects other hosts than it defines"
            );
        }
        Err(e) => quotes_input(&e.to_string(), &pattern),
    }
}

fn check_ansible(text: &str, file: &str, format: Format) {
    let origin = format!("{DIR}/{file}");
    let convert = || {
        fleet_inventory::ansible_to_toml_with(
            Path::new(&origin),
            text,
            format,
            &VarsDirs::default(),
        )
        .map_err(|e| e.to_string())
    };
    let first = convert();
    assert_eq!(first, convert(), "not deterministic");
    match first {
        Ok(converted) => {
            if let Err(e) = converted.parse::<toml::Table>() {
                panic!("converted to TOML that does not parse: {e}\n{converted}");
            }
            let _ = Inventory::from_toml_str(&converted, Path::new(&origin));
        }
        Err(msg) => names_line(&msg, &origin, text),
    }
}

fn check_playbook(text: &str) {
    let origin = PathBuf::from(format!("{DIR}/playbook.toml"));
    let parse = |t: &str| Playbook::parse(t, &origin).map_err(|e| e.to_string());
    let first = parse(text);
    assert_eq!(first, parse(text), "not deterministic");
    match first {
        Ok(pb) => assert_eq!(parse(&pb.text), Ok(pb)),
        Err(msg) => names_line(&msg, &origin.display().to_string(), text),
    }
}

fn check_manifest(text: &str) {
    let origin = PathBuf::from(format!("{DIR}/migrate.toml"));
    let file = origin.display().to_string();
    let recorded = |t: &str| Manifest::parse_recorded(t, &origin).map_err(|e| e.to_string());
    let first = recorded(text);
    assert_eq!(first, recorded(text), "not deterministic");
    match first {
        Ok(m) => assert_eq!(recorded(&m.text), Ok(m)),
        Err(msg) => names_line(&msg, &file, text),
    }
    match Manifest::parse(text, &origin) {
        Ok(_) => panic!("a tarball of `{DIR}` was read"),
        Err(e) => names_line(&e.to_string(), &file, text),
    }
}

fn check_known_hosts(text: &str) {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_ascii_whitespace().next())
        .flat_map(|f| f.split(','))
        .map(|n| n.trim_start_matches('!').to_ascii_lowercase())
        .take(6)
        .collect();
    names.push("[127.0.0.1]:2222".into());
    let count = text.lines().count();
    for name in &names {
        let lines = fleet_remote_exec::known_hosts_matching_lines(text, name);
        assert_eq!(
            lines,
            fleet_remote_exec::known_hosts_matching_lines(text, name)
        );
        assert!(lines.iter().all(|l| (1..=count).contains(l)), "{lines:?}");
    }
}

fn check_ssh_config(text: &str) {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME
        .get_or_init(|| {
            let d = tempfile::tempdir().expect("home");
            std::fs::create_dir(d.path().join(".ssh")).expect(".ssh");
            d
        })
        .path();
    // An absolute `Include` could name a device that never ends: reading that is not
    // parsing, and this home is the only place an Include may reach.
    let text: String = text
        .lines()
        .map(|l| {
            let include = l.trim_start().to_ascii_lowercase().starts_with("include");
            (if include {
                l.replace('/', "_")
            } else {
                l.to_owned()
            }) + "\n"
        })
        .collect();
    let path = home.join(".ssh/config");
    std::fs::write(&path, &text).expect("config");
    let ctx = fleet_ssh_config::Context {
        home: home.to_owned(),
        tilde_home: home.to_owned(),
        local_user: "me".into(),
        local_host: "ctl.example.com".into(),
        uid: u32::MAX,
    };
    let host = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Host ")?.split_whitespace().next())
        .map_or("web1".to_owned(), |h| h.replace(['*', '?', '!'], "x"));
    let first = fleet_ssh_config::resolve(&path, &host, &ctx);
    assert_eq!(
        first,
        fleet_ssh_config::resolve(&path, &host, &ctx),
        "not deterministic"
    );
    let names_file = |e: &fleet_ssh_config::ConfigError| {
        let msg = e.to_string();
        assert!(
            msg.starts_with(&home.display().to_string()),
            "names no file: {msg}"
        );
        assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
    };
    match first {
        Ok(r) => {
            let _ = (
                r.effective_hostname(),
                r.effective_port(),
                r.effective_user(&ctx),
            );
            let _ = r.tokens(&ctx);
            if let Err(e) = r.jump_hosts() {
                names_file(&e);
            }
        }
        Err(e) => names_file(&e),
    }
}

fn parsers() -> Vec<Parser> {
    vec![
        Parser {
            name: "inventory_toml",
            seeds: seeds("inventory_toml"),
            check: check_inventory,
        },
        Parser {
            name: "host_range",
            seeds: seeds("host_range"),
            check: check_range,
        },
        Parser {
            name: "selector",
            seeds: seeds("selector"),
            check: check_selector,
        },
        Parser {
            name: "ansible_ini",
            seeds: seeds("ansible_ini"),
            check: |t| check_ansible(t, "hosts.ini", Format::AnsibleIni),
        },
        Parser {
            name: "ansible_yaml",
            seeds: seeds("ansible_yaml"),
            check: |t| check_ansible(t, "hosts.yml", Format::AnsibleYaml),
        },
        Parser {
            name: "playbook",
            seeds: seeds("playbook"),
            check: check_playbook,
        },
        Parser {
            name: "manifest",
            seeds: seeds("manifest"),
            check: check_manifest,
        },
        Parser {
            name: "known_hosts",
            seeds: seeds("known_hosts"),
            check: check_known_hosts,
        },
        Parser {
            name: "ssh_config",
            seeds: seeds("ssh_config"),
            check: check_ssh_config,
        },
    ]
}

/// Writes a failing input where it can be replayed, and says where.
fn keep(parser: &str, n: u64, text: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("bad-inputs")
        .join(parser);
    std::fs::create_dir_all(&dir).expect("bad-inputs dir");
    let path = dir.join(format!("{n}"));
    std::fs::write(&path, text).expect("keep input");
    path.display().to_string()
}

#[test]
fn parsers_survive_generated_and_mutated_input() {
    let started = std::time::Instant::now();
    let mut figures = Figures::default();
    let mut failures = Vec::new();
    for p in parsers() {
        let mut rng = Rng::new(seed(), &format!("inputs/{}", p.name));
        for n in 0..PER_PARSER {
            let text = input(&mut rng, &p);
            figures.inputs += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (p.check)(&text))) {
                figures.panics += 1;
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!(
                    "{} #{n} ({}): {why}",
                    p.name,
                    keep(p.name, n, &text)
                ));
            }
        }
    }
    let mut bin = binary_cases();
    figures.inputs += bin.0;
    failures.append(&mut bin.1);
    figures.save("bad input: parsers");
    assert!(
        failures.is_empty(),
        "{} of {} inputs failed in {:.1?}:\n{}",
        failures.len(),
        figures.inputs,
        started.elapsed(),
        failures.join("\n")
    );
    assert_eq!(figures.panics, 0);
}

/// What `fleet` says of a bad input: exit code 2 and one line of error that names `place`,
/// with no raw control character (the operator's terminal receives it).
fn refused(cmd: &mut std::process::Command, place: &str, failures: &mut Vec<String>, what: &str) {
    let o = run(cmd);
    let err = stderr(&o);
    let ok = o.status.code() == Some(2)
        && err.starts_with("error: ")
        && err.lines().count() == 1
        && err.contains(place)
        && !err.trim_end().chars().any(char::is_control);
    if !ok {
        failures.push(format!(
            "{what}: exit {:?}, expected 2 and one line naming {place:?}: {err:?}",
            o.status.code()
        ));
    }
}

/// A handful of bad inputs through the real binary: the first few mutated documents each
/// parser refuses in-process are given to `fleet`, which must refuse them at the same place.
fn binary_cases() -> (u64, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, SAMPLE).expect("good inventory");
    let mut failures = Vec::new();
    let mut n = 0;
    let mut rng = Rng::new(seed(), "inputs/binary");
    let refusals =
        |name: &str, rng: &mut Rng, file: &str, parse: &dyn Fn(&str, &Path) -> Option<String>| {
            let seeds = seeds(name);
            let path = dir.path().join(file);
            let mut found = Vec::new();
            for _ in 0..200 {
                let seed = pick(rng, &seeds).clone();
                let text = mutate(rng, seed);
                if let Some(msg) = parse(&text, &path) {
                    // The place the library names: `FILE:LINE:` (column aside).
                    let place = msg.splitn(3, ':').take(2).collect::<Vec<_>>().join(":") + ":";
                    found.push((text, place));
                    if found.len() == 3 {
                        break;
                    }
                }
            }
            assert!(!found.is_empty(), "no refused {name} among 200 mutations");
            (path, found)
        };

    let (path, bad) = refusals("inventory_toml", &mut rng, "inventory.toml", &|t, p| {
        Inventory::from_toml_str(t, p).err().map(|e| e.to_string())
    });
    for (text, place) in bad {
        std::fs::write(&path, text).expect("write");
        refused(
            fleet(&path).arg("hosts"),
            &place,
            &mut failures,
            "bad inventory",
        );
        n += 1;
    }
    let (path, bad) = refusals("ansible_ini", &mut rng, "hosts.ini", &|t, p| {
        fleet_inventory::ansible_to_toml_with(p, t, Format::AnsibleIni, &VarsDirs::default())
            .err()
            .map(|e| e.to_string())
    });
    for (text, place) in bad {
        std::fs::write(&path, text).expect("write");
        refused(
            fleet(&path).arg("hosts"),
            &place,
            &mut failures,
            "bad Ansible inventory",
        );
        n += 1;
    }
    let (path, bad) = refusals("playbook", &mut rng, "playbook.toml", &|t, p| {
        Playbook::parse(t, p).err().map(|e| e.to_string())
    });
    for (text, place) in bad {
        std::fs::write(&path, text).expect("write");
        let mut cmd = fleet(&good);
        cmd.args(["upgrade", "--show-steps", "--playbook"])
            .arg(&path);
        refused(&mut cmd, &place, &mut failures, "bad playbook");
        n += 1;
    }
    let (path, bad) = refusals("manifest", &mut rng, "migrate.toml", &|t, p| {
        Manifest::parse(t, p).err().map(|e| e.to_string())
    });
    for (text, place) in bad {
        std::fs::write(&path, text).expect("write");
        let mut cmd = fleet(&good);
        cmd.args(["migrate", "plan", "--manifest"]).arg(&path);
        refused(&mut cmd, &place, &mut failures, "bad manifest");
        n += 1;
    }
    for (selector, place) in [
        ("nope", "`nope`"),
        ("web,!", "`web,!`"),
        ("web[9:1]", "`web[9:1]`"),
        ("web[0:18446744073709551615]", "more than"),
        ("web\u{1b}[2Jx", "`web\\u{1b}[2Jx`"),
        ("db1,&web", "`db1,&web`"),
    ] {
        let mut cmd = fleet(&good);
        cmd.args(["hosts", "-l", selector]);
        refused(&mut cmd, place, &mut failures, "bad selector");
        n += 1;
    }
    (n, failures)
}
