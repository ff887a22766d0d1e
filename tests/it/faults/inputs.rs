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

use fleet_inventory::{Format, Inventory, VarsDirs};
use fleet_playbook::{Manifest, Playbook};

use super::{Figures, Rng, seed};
use crate::{fleet, run, stderr};

/// Inputs per parser: 9 parsers, a few thousand in all, well under 30 s in a debug build.
const PER_PARSER: u64 = 400;

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
    check: checks::Check,
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

// What a parser owes its input is written once, in the fuzz targets' checks: libFuzzer runs
// them there, this scenario runs them over seeded inputs here.
// (Public there, for the targets and the replay binary; a private module here.)
#[allow(unreachable_pub)]
#[path = "../../../fuzz/src/lib.rs"]
mod checks;

fn parsers() -> Vec<Parser> {
    checks::TARGETS
        .iter()
        .map(|&(name, check)| Parser {
            name,
            seeds: seeds(name),
            check,
        })
        .collect()
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
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (p.check)(text.as_bytes()))) {
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
    std::fs::write(&good, checks::SAMPLE).expect("good inventory");
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
