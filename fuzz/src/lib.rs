//! What each fuzz target does with its input: parse it, and panic (which libFuzzer reports as
//! a crash, with the input saved) when a parser panics itself, answers differently twice, or
//! refuses the input without naming the file and line (or the key) it is about.
//!
//! Each `fuzz_targets/NAME.rs` calls the function `NAME` here; `replay` (`src/bin/replay.rs`)
//! calls the same functions on files, for machines where libFuzzer cannot run.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fleet_inventory::{Format, Inventory, Selector, VarsDirs, compact_names};
use fleet_playbook::{Manifest, Playbook};

/// What a target does with one input.
pub type Check = fn(&[u8]);

/// The targets, by name, for `replay`.
pub const TARGETS: &[(&str, Check)] = &[
    ("inventory_toml", inventory_toml),
    ("host_range", host_range),
    ("selector", selector),
    ("ansible_ini", ansible_ini),
    ("ansible_yaml", ansible_yaml),
    ("playbook", playbook),
    ("manifest", manifest),
    ("known_hosts", known_hosts),
    ("ssh_config", ssh_config),
];

/// Paths the documents claim to come from: a directory that does not exist, so nothing
/// beside them (tarballs, vars directories) is ever read.
const DIR: &str = "/nonexistent-fleet-fuzz";

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// Panics unless `msg` is one line starting `FILE:LINE:` with LINE inside `text`.
fn assert_names_line(msg: &str, file: &str, text: &str) {
    let rest = msg
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("error does not start with `{file}:`: {msg}"));
    let line: usize = rest
        .split(':')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("error names no line: {msg}"));
    // YAML counts a lone `\r` as a line break too.
    let lines = text.matches('\n').count() + text.matches('\r').count() + 1;
    assert!(
        (1..=lines).contains(&line),
        "line {line} is outside the text: {msg}"
    );
    assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
}

/// Panics unless the first backticked name of `msg` is part of `input` (escaped as errors
/// escape control characters).
fn assert_quotes_input(msg: &str, input: &str) {
    let quoted = msg
        .split_once('`')
        .and_then(|(_, r)| r.split_once('`'))
        .map(|(q, _)| q)
        .unwrap_or_else(|| panic!("error names nothing in backticks: {msg}"));
    let escaped: String = input
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
        escaped.contains(quoted) || without_ranges(&escaped).contains(&without_ranges(quoted)),
        "error names `{quoted}`, which is not in {input:?}: {msg}"
    );
    assert!(!msg.contains('\n'), "error of more than one line: {msg:?}");
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

/// A fleet TOML inventory.
pub fn inventory_toml(data: &[u8]) {
    let text = text(data);
    let origin = format!("{DIR}/inventory.toml");
    let first = toml_inventory(&text, &origin);
    assert_eq!(first, toml_inventory(&text, &origin), "not deterministic");
    if let Err(msg) = first {
        assert_names_line(&msg, &origin, &text);
    }
}

/// The inventory the selector targets select from.
/// The inventory selectors are tried against: ranges, groups of groups, names with dots.
pub const SAMPLE: &str = "[hosts.\"web[01:05]\"]\n[hosts.db1]\n[hosts.\"db.x-2\"]\n\
     [groups.web]\nhosts = [\"web[01:05]\"]\n[groups.db]\nhosts = [\"db1\", \"db.x-2\"]\n\
     [groups.prod]\nchildren = [\"web\", \"db\"]\n";

fn sample() -> &'static Inventory {
    static INV: OnceLock<Inventory> = OnceLock::new();
    INV.get_or_init(|| {
        Inventory::from_toml_str(SAMPLE, Path::new("sample.toml"))
            .expect("the sample inventory loads")
    })
}

fn select(text: &str) -> Result<Vec<String>, String> {
    let s = Selector::parse(text).map_err(|e| e.to_string())?;
    sample()
        .select(std::slice::from_ref(&s))
        .map(|h| h.iter().map(|h| h.name.clone()).collect())
        .map_err(|e| e.to_string())
}

/// A selector (`-l`), chosen from a small inventory. `@FILE` terms read files, which is not
/// parsing: they are left out.
pub fn selector(data: &[u8]) {
    let text = text(data).replace('@', "");
    let first = select(&text);
    assert_eq!(first, select(&text), "not deterministic");
    if let Err(msg) = first {
        assert_quotes_input(&msg, &text);
    }
}

/// A host range, two ways: as the key of a host table (the names it expands to), and as a
/// selector over that inventory, which must choose exactly those hosts; and the names
/// printed back compact must be as many as there are hosts.
pub fn host_range(data: &[u8]) {
    let pattern = text(data).replace('@', "");
    let origin = format!("{DIR}/range.toml");
    let key = toml::Value::String(pattern.clone()).to_string();
    let doc = format!("[hosts.{key}]\naddress = \"10.0.0.1\"\n");
    let inv = match Inventory::from_toml_str(&doc, Path::new(&origin)) {
        Ok(inv) => inv,
        Err(e) => return assert_names_line(&e.to_string(), &origin, &doc),
    };
    let names: Vec<&str> = inv.hosts().iter().map(|h| h.name.as_str()).collect();
    let compact = compact_names(&names);
    assert!(
        names.len() == 1 || compact.contains('[') || compact.contains(','),
        "{compact}"
    );
    match Selector::parse(&pattern).and_then(|s| inv.select(&[s])) {
        Ok(chosen) => {
            let chosen: Vec<&str> = chosen.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(chosen, names, "the selector `{pattern}` chose other hosts");
        }
        Err(e) => assert_quotes_input(&e.to_string(), &pattern),
    }
}

fn ansible(data: &[u8], file: &str, format: Format) {
    let text = text(data);
    let origin = format!("{DIR}/{file}");
    let convert = || {
        fleet_inventory::ansible_to_toml_with(
            Path::new(&origin),
            &text,
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
            // fleet then loads the converted text; its errors are mapped back to the
            // Ansible lines by `Inventory::load`, which reads a file.
            let _ = Inventory::from_toml_str(&converted, Path::new(&origin));
        }
        Err(msg) => assert_names_line(&msg, &origin, &text),
    }
}

/// An Ansible INI inventory.
pub fn ansible_ini(data: &[u8]) {
    ansible(data, "hosts.ini", Format::AnsibleIni);
}

/// An Ansible YAML inventory.
pub fn ansible_yaml(data: &[u8]) {
    ansible(data, "hosts.yml", Format::AnsibleYaml);
}

/// A playbook; an accepted one reads back the same from the text it records.
pub fn playbook(data: &[u8]) {
    let text = text(data);
    let origin = PathBuf::from(format!("{DIR}/playbook.toml"));
    let parse = |t: &str| Playbook::parse(t, &origin).map_err(|e| e.to_string());
    let first = parse(&text);
    assert_eq!(first, parse(&text), "not deterministic");
    match first {
        Ok(pb) => assert_eq!(parse(&pb.text), Ok(pb)),
        Err(msg) => assert_names_line(&msg, &origin.display().to_string(), &text),
    }
}

/// A migrate manifest, as recorded (tarballs not read) and as given (tarballs in a missing
/// directory: refused at the key that names them).
pub fn manifest(data: &[u8]) {
    let text = text(data);
    let origin = PathBuf::from(format!("{DIR}/migrate.toml"));
    let recorded = |t: &str| Manifest::parse_recorded(t, &origin).map_err(|e| e.to_string());
    let first = recorded(&text);
    assert_eq!(first, recorded(&text), "not deterministic");
    match first {
        Ok(m) => assert_eq!(recorded(&m.text), Ok(m)),
        Err(msg) => assert_names_line(&msg, &origin.display().to_string(), &text),
    }
    match Manifest::parse(&text, &origin) {
        Ok(_) => panic!("a tarball in `{DIR}` was read"),
        Err(e) => assert_names_line(&e.to_string(), &origin.display().to_string(), &text),
    }
}

/// A known_hosts file, matched against names taken from the input itself (its first
/// fields), so the matching code is reached, not only the line splitting.
pub fn known_hosts(data: &[u8]) {
    let text = text(data);
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_ascii_whitespace().next())
        .flat_map(|f| f.split(','))
        .map(|n| n.trim_start_matches('!').to_ascii_lowercase())
        .take(8)
        .collect();
    names.push("[127.0.0.1]:2222".into());
    for name in &names {
        let lines = fleet_remote_exec::known_hosts_matching_lines(&text, name);
        assert_eq!(
            lines,
            fleet_remote_exec::known_hosts_matching_lines(&text, name),
            "not deterministic"
        );
        let count = text.lines().count();
        assert!(lines.iter().all(|l| (1..=count).contains(l)), "{lines:?}");
    }
}

/// An ssh_config file (as `~/.ssh/config` of a home made for the process, where relative
/// `Include`s stay), read for a host named in it.
pub fn ssh_config(data: &[u8]) {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    let home = HOME.get_or_init(|| {
        let home = std::env::temp_dir().join(format!("fleet-fuzz-ssh-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".ssh")).expect("fuzz home");
        home
    });
    // An absolute `Include` could name a device that never ends (`/dev/zero`) or blocks:
    // reading those is not parsing.
    let text: String = text(data)
        .lines()
        .map(|l| {
            if l.trim_start().to_ascii_lowercase().starts_with("include") {
                l.replace('/', "_") + "\n"
            } else {
                l.to_owned() + "\n"
            }
        })
        .collect();
    let path = home.join(".ssh/config");
    std::fs::write(&path, &text).expect("write config");
    let ctx = fleet_ssh_config::Context {
        home: home.clone(),
        tilde_home: home.clone(),
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
    let check = |e: &fleet_ssh_config::ConfigError| {
        let msg = e.to_string();
        assert!(
            msg.starts_with(&home.display().to_string()),
            "names no file of the home: {msg}"
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
                check(&e);
            }
        }
        Err(e) => check(&e),
    }
}
