//! Ansible's INI inventory, read as its `ini` plugin reads it: `[group]` sections of host
//! lines (`host[:port] [key=value ...]`, split like a shell line, values read as Python
//! literals), `[group:children]` sections of group names, `[group:vars]` sections of
//! `key=value` lines; hosts before the first section are `ungrouped`; `#` and `;` start
//! comment lines.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::literal::literal_eval;
use super::model::{ALL, Layer, Origin, Parsed, Val, Var};
use super::shlex;
use crate::error::{InventoryError, printable};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Hosts,
    Children,
    Vars,
}

/// Reads INI inventory `text` from `file`.
///
/// # Errors
///
/// The first line Ansible would refuse (or fleet cannot name), as `file:line:col`.
pub(crate) fn parse(file: &Arc<Path>, text: &str) -> Result<Parsed, InventoryError> {
    let mut inv = Parsed::new(file);
    // Groups declared by a `[g]` or `[g:children]` header; `[g:vars]` alone does not
    // declare one (Ansible refuses it once the whole file is read).
    let mut declared: HashSet<usize> = HashSet::from([ALL]);
    let mut vars_only: Vec<(usize, Origin)> = Vec::new();
    let mut group = None;
    let mut kind = Kind::Hosts;
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        let at = Origin::new(file, n + 1, indent + 1);
        if let Some((name, section)) = section(line) {
            kind = match section {
                None | Some("hosts") => Kind::Hosts,
                Some("children") => Kind::Children,
                Some("vars") => Kind::Vars,
                Some(other) => {
                    return Err(at.err(format!(
                        "section `{}` has unknown type `{other}`: expected `[{name}]`, `[{name}:children]` or `[{name}:vars]`",
                        printable(line)
                    )));
                }
            };
            let g = inv.group(name, &at)?;
            if kind == Kind::Vars {
                if !declared.contains(&g) && name != "ungrouped" {
                    vars_only.push((g, at.clone()));
                }
            } else {
                declared.insert(g);
            }
            group = Some(g);
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(at.err(format!(
                "invalid section `{}`: a section is `[group]`, `[group:children]` or `[group:vars]`, without spaces",
                printable(line)
            )));
        }
        let g = match group {
            Some(g) => g,
            None => {
                let g = inv.group("ungrouped", &at)?;
                declared.insert(g);
                group = Some(g);
                g
            }
        };
        match kind {
            Kind::Hosts => host_line(&mut inv, g, file, n + 1, raw)?,
            Kind::Children => {
                let name = group_name(line).ok_or_else(|| {
                    at.err(format!("expected a group name, got `{}`", printable(line)))
                })?;
                inv.add_child(g, name, &at);
            }
            Kind::Vars => {
                let Some((k, v)) = line.split_once('=') else {
                    return Err(at.err(format!(
                        "expected `key=value` in a `:vars` section, got `{}`",
                        printable(line)
                    )));
                };
                let k = k.trim();
                if k.is_empty() {
                    return Err(at.err("a variable needs a name before `="));
                }
                let var = Var {
                    val: vars_value(v.trim()),
                    at,
                };
                inv.set_group_var(g, k, var)?;
            }
        }
    }
    let unknown_child = inv.groups.iter().find_map(|g| {
        g.children
            .iter()
            .find(|(c, _)| inv.group_id(c).is_none_or(|id| !declared.contains(&id)))
            .map(|(c, at)| (g.name.clone(), c.clone(), at.clone()))
    });
    let undeclared = vars_only.iter().find(|(g, _)| !declared.contains(g));
    match (unknown_child, undeclared) {
        (Some((parent, child, at)), u) if u.is_none_or(|(_, v)| at.line < v.line) => {
            Err(at.err(format!(
                "section `[{parent}:children]` includes undefined group `{child}`: declare it with `[{child}]`"
            )))
        }
        (_, Some((g, at))) => {
            let name = &inv.groups[*g].name;
            Err(at.err(format!(
                "section `[{name}:vars]` is for undefined group `{name}`: declare it with `[{name}]` or `[{name}:children]`"
            )))
        }
        _ => Ok(inv),
    }
}

/// `[name]` or `[name:type]`, with an optional `#` comment after it.
fn section(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let end = rest.find(|c: char| c == ':' || c == ']' || c.is_whitespace())?;
    let (name, mut rest) = rest.split_at(end);
    if name.is_empty() {
        return None;
    }
    let mut kind = None;
    if let Some(r) = rest.strip_prefix(':') {
        let len = r
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(r.len());
        if len == 0 {
            return None;
        }
        kind = Some(&r[..len]);
        rest = &r[len..];
    }
    let after = rest.strip_prefix(']')?.trim_start();
    (after.is_empty() || after.starts_with('#')).then_some((name, kind))
}

/// A line of a `:children` section: one group name, then perhaps a `#` comment.
fn group_name(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| c == ':' || c == ']' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_start();
    (!name.is_empty() && (rest.is_empty() || rest.starts_with('#'))).then_some(name)
}

/// A host line: a pattern, then `key=value` words.
fn host_line(
    inv: &mut Parsed,
    g: usize,
    file: &Arc<Path>,
    line_no: usize,
    raw: &str,
) -> Result<(), InventoryError> {
    let at = |start: usize| Origin::new(file, line_no, start + 1);
    let words = shlex::split(raw).map_err(|why| {
        let indent = raw.chars().take_while(|c| c.is_whitespace()).count();
        at(indent).err(format!(
            "cannot split host line `{}`: {why}",
            printable(raw.trim())
        ))
    })?;
    let Some((first, rest)) = words.split_first() else {
        return Ok(());
    };
    let pattern_at = at(first.start);
    if first.text == "---" {
        return Err(pattern_at.err(
            "`---` starts a YAML document: name a YAML inventory `.yml` or `.yaml` so it is read as YAML",
        ));
    }
    let mut vars = Layer::default();
    for w in rest {
        let Some((k, v)) = w.text.split_once('=') else {
            return Err(at(w.start).err(format!(
                "expected `key=value` after host `{}`, got `{}`",
                printable(&first.text),
                printable(&w.text)
            )));
        };
        if k.is_empty() {
            return Err(at(w.start).err("a variable needs a name before `="));
        }
        let val = literal_eval(v).unwrap_or_else(|| Val::Str(v.to_owned()));
        vars.set(
            k,
            Var {
                val,
                at: at(w.start),
            },
        );
    }
    if first.text.ends_with(':') && !first.text.contains('[') && rest.is_empty() {
        return Err(pattern_at.err(format!(
            "host `{}` ends in `:`, which Ansible keeps for a port (is this a YAML file? name it `.yml` so it is read as YAML)",
            printable(&first.text)
        )));
    }
    inv.add_hosts(g, &first.text, &pattern_at, &vars)
}

/// A `:vars` value. Ansible documents these as strings (its code reads them as Python
/// literals, which gives the same text); quotes around a string are removed, as
/// `literal_eval` removes them, and lists and dicts stay lists and dicts, which is how
/// Ansible's code hands them to templates.
fn vars_value(v: &str) -> Val {
    match literal_eval(v) {
        Some(Val::Str(s)) => Val::Str(s),
        Some(l @ (Val::List(_) | Val::Map(_))) => l,
        // A number, `True`, `None`: their text, without a trailing comment.
        Some(_) => Val::Str(strip_comment(v).to_owned()),
        None => Val::Str(v.to_owned()),
    }
}

/// `v` without a `#` comment (for a value with no string in it).
fn strip_comment(v: &str) -> &str {
    v.split('#').next().unwrap_or(v).trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Parsed, InventoryError> {
        let file: Arc<Path> = Arc::from(Path::new("/inv/hosts.ini"));
        parse(&file, text)
    }

    #[track_caller]
    fn error_at(text: &str, line: usize, column: usize, message: &str) {
        let e = parse_str(text).expect_err("must fail");
        assert_eq!(
            e.to_string(),
            format!("/inv/hosts.ini:{line}:{column}: {message}")
        );
    }

    #[test]
    fn sections_hosts_and_vars() {
        let inv = parse_str(
            "top1 ansible_port=2222\n\
             [web]\n\
             web[01:02] x=1 y='a b' z=True\n\
             ; comment\n\
             [web:vars]\n\
             http_port=8080 # a comment\n\
             name = \"quoted\"\n\
             raw=hello # kept, as Ansible keeps it\n\
             list=[1, 2]\n\
             [prod:children]\n\
             web # comment\n\
             [prod]\n",
        )
        .unwrap();
        let names: Vec<&str> = inv.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["all", "ungrouped", "web", "prod"]);
        let hosts: Vec<&str> = inv.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(hosts, ["top1", "web01", "web02"]);
        let web01 = &inv.hosts[1].vars;
        assert_eq!(web01.get("x").unwrap().val, Val::Int(1));
        assert_eq!(web01.get("y").unwrap().val, Val::Str("a b".into()));
        assert_eq!(web01.get("z").unwrap().val, Val::Bool(true));
        assert_eq!(web01.get("x").unwrap().at.column, 12);
        let web = &inv.groups[2].vars;
        let s = |k: &str| web.get(k).unwrap().val.clone();
        assert_eq!(s("http_port"), Val::Str("8080".into()));
        assert_eq!(s("name"), Val::Str("quoted".into()));
        assert_eq!(
            s("raw"),
            Val::Str("hello # kept, as Ansible keeps it".into())
        );
        assert_eq!(s("list"), Val::List(vec![Val::Int(1), Val::Int(2)]));
        assert_eq!(inv.groups[3].children[0].0, "web");
    }

    #[test]
    fn odd_input_is_an_error_or_nothing() {
        assert_eq!(parse_str("").unwrap().hosts.len(), 0);
        assert_eq!(parse_str("# only\n; comments\n\n").unwrap().hosts.len(), 0);
        error_at(
            "[web:nope]\n",
            1,
            1,
            "section `[web:nope]` has unknown type `nope`: expected `[web]`, `[web:children]` or `[web:vars]`",
        );
        error_at(
            "[web ]\n",
            1,
            1,
            "invalid section `[web ]`: a section is `[group]`, `[group:children]` or `[group:vars]`, without spaces",
        );
        error_at(
            "[a:children]\nb\n",
            2,
            1,
            "section `[a:children]` includes undefined group `b`: declare it with `[b]`",
        );
        error_at(
            "[a:vars]\nx=1\n",
            1,
            1,
            "section `[a:vars]` is for undefined group `a`: declare it with `[a]` or `[a:children]`",
        );
        error_at(
            "[a:vars]\nnovalue\n[a]\n",
            2,
            1,
            "expected `key=value` in a `:vars` section, got `novalue`",
        );
        error_at(
            "[a]\nh1 novalue\n",
            2,
            4,
            "expected `key=value` after host `h1`, got `novalue`",
        );
        error_at(
            "[a]\nh1 x='open\n",
            2,
            1,
            "cannot split host line `h1 x='open`: no closing quotation",
        );
        error_at(
            "---\nall:\n",
            1,
            1,
            "`---` starts a YAML document: name a YAML inventory `.yml` or `.yaml` so it is read as YAML",
        );
        error_at(
            "all:\n  hosts:\n",
            1,
            1,
            "host `all:` ends in `:`, which Ansible keeps for a port (is this a YAML file? name it `.yml` so it is read as YAML)",
        );
        error_at(
            "[a:children]\nx y\n",
            2,
            1,
            "expected a group name, got `x y`",
        );
        error_at(
            "[we/b]\n",
            1,
            1,
            "invalid group name `we/b`: `/` is not allowed; use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`",
        );
        error_at(
            "[a]\n  ../x\n",
            2,
            3,
            "invalid host name `../x`: it starts with `.`; use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`",
        );
        error_at(
            "[a]\nweb[03:01]\n",
            2,
            1,
            "bad host pattern `web[03:01]`: range `[03:01]` goes backwards",
        );
    }

    /// Ansible accepts a `:children` entry before the child's own section, and
    /// `[g:vars]` before `[g]`.
    #[test]
    fn declarations_may_come_later() {
        let inv = parse_str("[p:children]\nc\n[c:vars]\nx=1\n[c]\nh\n").unwrap();
        let c = inv.group_id("c").unwrap();
        assert_eq!(
            inv.groups[c].vars.get("x").unwrap().val,
            Val::Str("1".into())
        );
    }
}
