//! YAML as Ansible reads it (PyYAML, so YAML 1.1 scalars: `yes`/`no`/`on`/`off` are
//! booleans, `010` is octal, `1:30` is 90, `1.10` is a float), with positions: the node tree
//! of one document, anchors, aliases and `<<` merge keys resolved, `!vault` refused. Then
//! the two documents Ansible reads as YAML: an inventory (`all: {hosts, vars, children}`)
//! and a `group_vars`/`host_vars` file (a mapping of variables).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use regex_lite::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::model::{Layer, Origin, Parsed, Val, Var};
use crate::error::{InventoryError, printable};

/// Most nodes a document may hold once aliases are copied in (a guard against
/// alias bombs).
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting of lists and mappings (the tree is walked recursively).
const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    kind: Kind,
    at: Origin,
}

#[derive(Debug, Clone)]
enum Kind {
    Scalar {
        text: String,
        style: ScalarStyle,
        tag: Option<Tag>,
    },
    Seq(Vec<Node>, Option<Tag>),
    Map(Vec<(Node, Node)>, Option<Tag>),
}

impl Node {
    fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, style: ScalarStyle::Plain, tag: None } if null_re().is_match(text))
    }

    /// What the node is, for an error that expected something else.
    fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar { text, .. } => format!("`{}`", printable(text)),
            Kind::Seq(..) => "a list".into(),
            Kind::Map(..) => "a mapping".into(),
        }
    }

    fn plain_text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar {
                text, tag: None, ..
            } => Some(text),
            _ => None,
        }
    }
}

/// The number of the last line of `text` (line breaks as YAML counts them: `\n`, `\r\n`
/// and a lone `\r`) and its length in characters.
fn last_line(text: &str) -> (usize, usize) {
    let breaks =
        text.matches('\n').count() + text.matches('\r').count() - text.matches("\r\n").count();
    let tail = text.rsplit(['\n', '\r']).next().unwrap_or("");
    (breaks + 1, tail.chars().count())
}

/// The first (and only) document of `text`, read from `file`; `None` when it is empty.
///
/// # Errors
///
/// A YAML syntax error, an unknown alias, a second document, or too many nodes.
pub(crate) fn document(file: &Arc<Path>, text: &str) -> Result<Option<Node>, InventoryError> {
    enum Frame {
        Seq(Vec<Node>, Option<Tag>, usize, Origin),
        Map(Vec<(Node, Node)>, Option<Node>, Option<Tag>, usize, Origin),
    }
    fn count(n: &Node) -> usize {
        match &n.kind {
            Kind::Scalar { .. } => 1,
            Kind::Seq(items, _) => 1 + items.iter().map(count).sum::<usize>(),
            Kind::Map(entries, _) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| count(k) + count(v))
                    .sum::<usize>()
            }
        }
    }
    // The scanner places the end of a text without a final line break on the line after its
    // last one, which the file does not have: such a place is the end of the last line.
    let (last_line, last_len) = last_line(text);
    let place = |line: usize, col: usize| {
        if line > last_line {
            Origin::new(file, last_line, last_len + 1)
        } else {
            Origin::new(file, line.max(1), col + 1)
        }
    };
    let at = |span: &Span| place(span.start.line(), span.start.col());
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    let mut nodes = 0usize;
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            place(e.marker().line(), e.marker().col()).err(format!("invalid YAML: {}", e.info()))
        })?;
        let done = match event {
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(at(&span).err(
                        "a second YAML document (`---`): an inventory or vars file holds one",
                    ));
                }
                continue;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let n = Node {
                    kind: Kind::Scalar {
                        text: text.into_owned(),
                        style,
                        tag: tag.map(|t| t.into_owned()),
                    },
                    at: at(&span),
                };
                nodes += 1;
                Some((n, anchor))
            }
            Event::Alias(id) => {
                let n = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| at(&span).err("alias to an unknown anchor"))?;
                nodes += count(&n);
                Some((n, 0))
            }
            Event::SequenceStart(anchor, tag) => {
                stack.push(Frame::Seq(
                    Vec::new(),
                    tag.map(|t| t.into_owned()),
                    anchor,
                    at(&span),
                ));
                None
            }
            Event::MappingStart(anchor, tag) => {
                stack.push(Frame::Map(
                    Vec::new(),
                    None,
                    tag.map(|t| t.into_owned()),
                    anchor,
                    at(&span),
                ));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq(items, tag, anchor, at)) => Some((
                    Node {
                        kind: Kind::Seq(items, tag),
                        at,
                    },
                    anchor,
                )),
                Some(Frame::Map(entries, _, tag, anchor, at)) => Some((
                    Node {
                        kind: Kind::Map(entries, tag),
                        at,
                    },
                    anchor,
                )),
                None => None,
            },
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => None,
        };
        if stack.len() > MAX_DEPTH {
            return Err(at(&span).err(format!(
                "lists and mappings nested more than {MAX_DEPTH} deep"
            )));
        }
        if nodes > MAX_NODES {
            return Err(at(&span).err(format!(
                "the document holds more than {MAX_NODES} values once its aliases are copied"
            )));
        }
        let Some((node, anchor)) = done else {
            continue;
        };
        if anchor > 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, key, ..)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root)
}

fn null_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^(?:~|null|Null|NULL|)$").expect("a valid regex"))
}

fn bool_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
        )
        .expect("a valid regex")
    })
}

fn int_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
        )
        .expect("a valid regex")
    })
}

fn float_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        )
        .expect("a valid regex")
    })
}

/// A YAML 1.1 int as PyYAML constructs it; `None` beyond 64 bits.
fn yaml_int(text: &str) -> Option<i64> {
    let v = text.replace('_', "");
    let (sign, v) = match v.as_bytes().first() {
        Some(b'-') => (-1, &v[1..]),
        Some(b'+') => (1, &v[1..]),
        _ => (1, &v[..]),
    };
    let n = if v == "0" {
        0
    } else if let Some(b) = v.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if let Some(x) = v.strip_prefix("0x") {
        i64::from_str_radix(x, 16).ok()?
    } else if v.starts_with('0') {
        i64::from_str_radix(v, 8).ok()?
    } else if v.contains(':') {
        sexagesimal(v)?
    } else {
        v.parse().ok()?
    };
    n.checked_mul(sign)
}

fn sexagesimal(v: &str) -> Option<i64> {
    v.split(':').try_fold(0i64, |acc, part| {
        acc.checked_mul(60)?.checked_add(part.parse::<i64>().ok()?)
    })
}

/// A YAML 1.1 float as PyYAML constructs it.
fn yaml_float(text: &str) -> Option<f64> {
    let v = text.replace('_', "").to_ascii_lowercase();
    let (sign, v) = match v.as_bytes().first() {
        Some(b'-') => (-1.0, &v[1..]),
        Some(b'+') => (1.0, &v[1..]),
        _ => (1.0, &v[..]),
    };
    let f = match v {
        ".inf" => f64::INFINITY,
        ".nan" => return Some(f64::NAN),
        v if v.contains(':') => {
            let (whole, frac) = v.rsplit_once(':')?;
            sexagesimal(whole)? as f64 * 60.0 + frac.parse::<f64>().ok()?
        }
        v => v.parse().ok()?,
    };
    Some(sign * f)
}

/// A plain scalar as PyYAML's resolver types it.
fn implicit(text: &str) -> Val {
    if null_re().is_match(text) {
        Val::Null
    } else if bool_re().is_match(text) {
        Val::Bool(matches!(
            text.to_ascii_lowercase().as_str(),
            "yes" | "true" | "on"
        ))
    } else if int_re().is_match(text) {
        yaml_int(text).map_or_else(|| Val::Str(text.to_owned()), Val::Int)
    } else if float_re().is_match(text) {
        yaml_float(text).map_or_else(|| Val::Str(text.to_owned()), Val::Float)
    } else {
        Val::Str(text.to_owned())
    }
}

fn vault_error(at: &Origin, what: &str) -> InventoryError {
    at.err(format!(
        "`{what}` is encrypted with Ansible Vault (`!vault`): vault is not supported; decrypt it (`ansible-vault decrypt`) or keep the secret in a 0600 file fleet reads"
    ))
}

/// Refuses a file encrypted whole with Ansible Vault.
pub(crate) fn refuse_vault_file(file: &Arc<Path>, text: &str) -> Result<(), InventoryError> {
    if text.trim_start().starts_with("$ANSIBLE_VAULT") {
        return Err(Origin::new(file, 1, 1).err(
            "the file is encrypted with Ansible Vault (`$ANSIBLE_VAULT`): vault is not supported; decrypt it (`ansible-vault decrypt`) and keep secrets out of the inventory",
        ));
    }
    Ok(())
}

/// `node` as a value; `what` names it in errors (the variable, with a path inside it).
fn value(node: &Node, what: &str) -> Result<Val, InventoryError> {
    let tag_err = |t: &Tag| {
        node.at.err(format!(
            "unsupported YAML tag `{t}` on `{what}`: fleet reads plain YAML values (and `!unsafe`)"
        ))
    };
    match &node.kind {
        Kind::Scalar { text, style, tag } => match tag {
            None if *style == ScalarStyle::Plain => Ok(implicit(text)),
            None => Ok(Val::Str(text.clone())),
            Some(t) if t.handle == "!" => match t.suffix.as_str() {
                "vault" | "vault-encrypted" => Err(vault_error(&node.at, what)),
                "unsafe" | "" => Ok(Val::Str(text.clone())),
                _ => Err(tag_err(t)),
            },
            Some(t) if t.is_yaml_core_schema() => {
                let bad = || {
                    node.at.err(format!(
                        "`{what}`: `{}` is not a valid `{t}`",
                        printable(text)
                    ))
                };
                match t.suffix.as_str() {
                    "str" => Ok(Val::Str(text.clone())),
                    "int" => yaml_int(text).map(Val::Int).ok_or_else(bad),
                    "float" => yaml_float(text).map(Val::Float).ok_or_else(bad),
                    "bool" if bool_re().is_match(text) => Ok(implicit(text)),
                    "null" if null_re().is_match(text) => Ok(Val::Null),
                    "bool" | "null" => Err(bad()),
                    _ => Err(tag_err(t)),
                }
            }
            Some(t) => Err(tag_err(t)),
        },
        Kind::Seq(items, tag) => {
            if let Some(t) = tag.as_ref().filter(|t| !plain_collection_tag(t, "seq")) {
                return Err(tag_err(t));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, n)| value(n, &format!("{what}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Val::List)
        }
        Kind::Map(_, tag) => {
            if let Some(t) = tag.as_ref().filter(|t| !plain_collection_tag(t, "map")) {
                return Err(tag_err(t));
            }
            let mut out: Vec<(String, Val)> = Vec::new();
            for (k, at, v) in entries(node)? {
                let _ = at;
                let val = value(&v, &format!("{what}.{k}"))?;
                out.push((k, val));
            }
            Ok(Val::Map(out))
        }
    }
}

fn plain_collection_tag(t: &Tag, core: &str) -> bool {
    (t.is_yaml_core_schema() && t.suffix == core) || (t.handle == "!" && t.suffix == "unsafe")
}

/// The entries of mapping `node` with their keys as strings, `<<` merges applied (merged
/// keys first, the first merged mapping winning, the mapping's own keys over them); a key
/// written twice is refused (Ansible warns and keeps the last).
fn entries(node: &Node) -> Result<Vec<(String, Origin, Node)>, InventoryError> {
    let Kind::Map(pairs, _) = &node.kind else {
        return Ok(Vec::new());
    };
    let mut merged: Vec<(String, Origin, Node)> = Vec::new();
    let mut own: Vec<(String, Origin, Node)> = Vec::new();
    for (k, v) in pairs {
        if k.plain_text() == Some("<<")
            && matches!(
                k.kind,
                Kind::Scalar {
                    style: ScalarStyle::Plain,
                    ..
                }
            )
        {
            let sources: Vec<&Node> = match &v.kind {
                Kind::Map(..) => vec![v],
                Kind::Seq(items, _) if items.iter().all(|i| matches!(i.kind, Kind::Map(..))) => {
                    items.iter().rev().collect()
                }
                _ => {
                    return Err(v.at.err(format!(
                        "`<<` merges a mapping or a list of mappings, got {}",
                        v.describe()
                    )));
                }
            };
            for s in sources {
                for (mk, mat, mv) in entries(s)? {
                    match merged.iter_mut().find(|(old, ..)| *old == mk) {
                        Some(slot) => *slot = (mk, mat, mv),
                        None => merged.push((mk, mat, mv)),
                    }
                }
            }
            continue;
        }
        let key = match value(k, "a key")? {
            Val::List(_) | Val::Map(_) => {
                return Err(k.at.err("a list or a mapping cannot be a key"));
            }
            v => v.key_text().unwrap_or_default(),
        };
        if let Some((_, first, _)) = own.iter().find(|(old, ..)| *old == key) {
            return Err(k.at.err(format!(
                "key `{}` is written twice in one mapping (first at {first})",
                printable(&key)
            )));
        }
        own.push((key, k.at.clone(), v.clone()));
    }
    for e in own {
        match merged.iter_mut().find(|(old, ..)| *old == e.0) {
            Some(slot) => *slot = e,
            None => merged.push(e),
        }
    }
    Ok(merged)
}

/// Reads YAML inventory `text` from `file`.
///
/// # Errors
///
/// Invalid YAML, a dynamic inventory plugin's configuration, a group or host that is not
/// a mapping, an unknown key in a group, or what the model refuses.
pub(crate) fn parse_inventory(file: &Arc<Path>, text: &str) -> Result<Parsed, InventoryError> {
    refuse_vault_file(file, text)?;
    let mut inv = Parsed::new(file);
    let Some(root) = document(file, text)? else {
        return Ok(inv);
    };
    if root.is_null() {
        return Ok(inv);
    }
    if !matches!(root.kind, Kind::Map(..)) {
        return Err(root.at.err(format!(
            "a YAML inventory is a mapping of groups (`all:`), got {}",
            root.describe()
        )));
    }
    let top = entries(&root)?;
    if let Some((_, at, v)) = top.iter().find(|(k, ..)| k == "plugin") {
        let name = v.plain_text().unwrap_or("?");
        return Err(at.err(format!(
            "this is the configuration of dynamic inventory plugin `{}`, which fleet cannot run: save its hosts as a static inventory (`ansible-inventory -i FILE --list --yaml --export > inventory.yml`) and convert that",
            printable(name)
        )));
    }
    if let Some((_, at, _)) = top.iter().find(|(k, ..)| k == "_meta") {
        return Err(at.err(
            "`_meta` is the JSON output of `ansible-inventory --list`, not an inventory: save it with `--list --yaml --export` instead",
        ));
    }
    for (name, at, node) in &top {
        group(&mut inv, name, at, node, None)?;
    }
    Ok(inv)
}

fn group(
    inv: &mut Parsed,
    name: &str,
    at: &Origin,
    node: &Node,
    parent: Option<usize>,
) -> Result<(), InventoryError> {
    let g = inv.group(name, at)?;
    if let Some(p) = parent {
        inv.add_child(p, name, at);
    }
    if node.is_null() {
        return Ok(());
    }
    if !matches!(node.kind, Kind::Map(..)) {
        return Err(node.at.err(format!(
            "group `{name}` must be a mapping of `hosts`, `vars` and `children`, got {}",
            node.describe()
        )));
    }
    for (key, kat, v) in entries(node)? {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "hosts" => match &v.kind {
                Kind::Scalar { .. } => {
                    let h = value(&v, "hosts")?.key_text().unwrap_or_default();
                    inv.add_hosts(g, &h, &v.at, &Layer::default())?;
                }
                Kind::Map(..) => {
                    for (h, hat, hv) in entries(&v)? {
                        let vars = if hv.is_null() {
                            Layer::default()
                        } else if matches!(hv.kind, Kind::Map(..)) {
                            layer(&hv)?
                        } else {
                            return Err(hv.at.err(format!(
                                "host `{}` must have a mapping of variables or nothing, got {}",
                                printable(&h),
                                hv.describe()
                            )));
                        };
                        inv.add_hosts(g, &h, &hat, &vars)?;
                    }
                }
                Kind::Seq(..) => {
                    return Err(v.at.err(format!(
                        "`hosts` of group `{name}` must be a mapping (`host:` on each line, its variables under it), got a list"
                    )));
                }
            },
            "vars" => {
                if !matches!(v.kind, Kind::Map(..)) {
                    return Err(v.at.err(format!(
                        "`vars` of group `{name}` must be a mapping, got {}",
                        v.describe()
                    )));
                }
                for (k, vat, vv) in entries(&v)? {
                    let val = value(&vv, &k)?;
                    inv.set_group_var(g, &k, Var { val, at: vat })?;
                }
            }
            "children" => match &v.kind {
                Kind::Scalar { .. } => {
                    let c = value(&v, "children")?.key_text().unwrap_or_default();
                    let null = Node {
                        kind: Kind::Scalar {
                            text: String::new(),
                            style: ScalarStyle::Plain,
                            tag: None,
                        },
                        at: v.at.clone(),
                    };
                    group(inv, &c, &v.at, &null, Some(g))?;
                }
                Kind::Map(..) => {
                    for (c, cat, cv) in entries(&v)? {
                        group(inv, &c, &cat, &cv, Some(g))?;
                    }
                }
                Kind::Seq(..) => {
                    return Err(v.at.err(format!(
                        "`children` of group `{name}` must be a mapping (`group:` on each line), got a list"
                    )));
                }
            },
            other => {
                return Err(kat.err(format!(
                    "unknown key `{}` in group `{name}`: a group has `hosts`, `vars` and `children` (a host goes under `hosts:`)",
                    printable(other)
                )));
            }
        }
    }
    Ok(())
}

/// The variables of mapping `node`.
fn layer(node: &Node) -> Result<Layer, InventoryError> {
    let mut out = Layer::default();
    for (k, at, v) in entries(node)? {
        let val = value(&v, &k)?;
        out.set(&k, Var { val, at });
    }
    Ok(out)
}

/// Reads a `group_vars`/`host_vars` file: a mapping of variables (JSON is YAML too), or
/// nothing.
///
/// # Errors
///
/// Invalid YAML, vault, or a document that is not a mapping.
pub(crate) fn parse_vars_file(file: &Arc<Path>, text: &str) -> Result<Layer, InventoryError> {
    refuse_vault_file(file, text)?;
    let Some(root) = document(file, text)? else {
        return Ok(Layer::default());
    };
    if root.is_null() {
        return Ok(Layer::default());
    }
    if !matches!(root.kind, Kind::Map(..)) {
        return Err(root.at.err(format!(
            "a vars file holds a mapping of variables, got {}",
            root.describe()
        )));
    }
    layer(&root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<Path> {
        Arc::from(Path::new("/inv/vars.yml"))
    }

    fn vars(text: &str) -> Result<Layer, InventoryError> {
        parse_vars_file(&file(), text)
    }

    #[track_caller]
    fn val(text: &str, key: &str) -> Val {
        vars(text).unwrap().get(key).unwrap().val.clone()
    }

    #[track_caller]
    fn error_at(text: &str, line: usize, column: usize, message: &str) {
        let e = vars(text).expect_err("must fail");
        assert_eq!(
            e.to_string(),
            format!("/inv/vars.yml:{line}:{column}: {message}")
        );
    }

    /// PyYAML's YAML 1.1 types, which Ansible sees, not YAML 1.2's.
    #[test]
    fn yaml_1_1_scalars() {
        let t = "a: yes\nb: Off\nc: 010\nd: 0x1f\ne: 1:30\nf: 1.10\ng: ~\nh: 'yes'\ni: 1_000\n\
                 j: .inf\nk: 1e3\nl: 08\nm: !!str 22\nn: !unsafe '{{ x }}'\no: |\n  text\np: -7\n\
                 q: 2024-01-02\nr: y\n";
        assert_eq!(val(t, "a"), Val::Bool(true));
        assert_eq!(val(t, "b"), Val::Bool(false));
        assert_eq!(val(t, "c"), Val::Int(8));
        assert_eq!(val(t, "d"), Val::Int(31));
        assert_eq!(val(t, "e"), Val::Int(90));
        assert_eq!(val(t, "f"), Val::Float(1.1));
        assert_eq!(val(t, "g"), Val::Null);
        assert_eq!(val(t, "h"), Val::Str("yes".into()));
        assert_eq!(val(t, "i"), Val::Int(1000));
        assert_eq!(val(t, "j"), Val::Float(f64::INFINITY));
        assert_eq!(val(t, "k"), Val::Str("1e3".into()));
        assert_eq!(val(t, "l"), Val::Str("08".into()));
        assert_eq!(val(t, "m"), Val::Str("22".into()));
        assert_eq!(val(t, "n"), Val::Str("{{ x }}".into()));
        assert_eq!(val(t, "o"), Val::Str("text\n".into()));
        assert_eq!(val(t, "p"), Val::Int(-7));
        assert_eq!(val(t, "q"), Val::Str("2024-01-02".into()));
        assert_eq!(val(t, "r"), Val::Str("y".into()));
    }

    #[test]
    fn anchors_and_merges() {
        let t =
            "base: &b {x: 1, y: 2}\nother: &o {y: 3, z: 4}\nm:\n  <<: [*b, *o]\n  x: 9\nl: *b\n";
        // The first merged mapping wins over the second, the mapping's own keys over both.
        let Val::Map(mut m) = val(t, "m") else {
            panic!("a mapping");
        };
        m.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            m,
            [
                ("x".into(), Val::Int(9)),
                ("y".into(), Val::Int(2)),
                ("z".into(), Val::Int(4)),
            ]
        );
        assert_eq!(
            val(t, "l"),
            Val::Map(vec![("x".into(), Val::Int(1)), ("y".into(), Val::Int(2))])
        );
        let top = "<<: {a: 1}\nb: 2\n";
        assert_eq!(val(top, "a"), Val::Int(1));
    }

    /// Found by the properties (`props.rs`): the end of a text without a final line break
    /// was reported on a line after the last.
    #[test]
    fn an_error_at_the_end_of_a_text_without_a_final_break_is_on_its_last_line() {
        error_at(
            "%¡",
            1,
            3,
            "invalid YAML: did not find expected <document start>",
        );
        error_at(
            "a: 1\nb: [1, 2",
            2,
            9,
            "invalid YAML: while parsing a flow sequence, expected ',' or ']'",
        );
        assert_eq!(last_line("a\r\nb\rc"), (3, 1));
        assert_eq!(last_line("a\n"), (2, 0));
    }

    #[test]
    fn refusals_and_odd_documents() {
        assert!(vars("").unwrap().is_empty());
        assert!(vars("# only a comment\n").unwrap().is_empty());
        assert!(vars("---\n...\n").unwrap().is_empty());
        error_at(
            "a: 1\npass: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n",
            2,
            7,
            "`pass` is encrypted with Ansible Vault (`!vault`): vault is not supported; decrypt it (`ansible-vault decrypt`) or keep the secret in a 0600 file fleet reads",
        );
        error_at(
            "$ANSIBLE_VAULT;1.1;AES256\n6162\n",
            1,
            1,
            "the file is encrypted with Ansible Vault (`$ANSIBLE_VAULT`): vault is not supported; decrypt it (`ansible-vault decrypt`) and keep secrets out of the inventory",
        );
        error_at(
            "- a\n- b\n",
            1,
            1,
            "a vars file holds a mapping of variables, got a list",
        );
        error_at(
            "a: 1\nb: 2\na: 3\n",
            3,
            1,
            "key `a` is written twice in one mapping (first at /inv/vars.yml:1:1)",
        );
        error_at(
            "a: !custom x\n",
            1,
            4,
            "unsupported YAML tag `!custom` on `a`: fleet reads plain YAML values (and `!unsafe`)",
        );
        error_at(
            "a: 1\n---\nb: 2\n",
            2,
            1,
            "a second YAML document (`---`): an inventory or vars file holds one",
        );
        error_at(
            "a: *nope\n",
            1,
            4,
            "invalid YAML: while parsing node, found unknown anchor",
        );
        let e = vars("a: [1, 2\n").unwrap_err().to_string();
        assert!(e.starts_with("/inv/vars.yml:"), "{e}");
        assert!(e.contains("invalid YAML"), "{e}");
        // An alias bomb stops at the node limit instead of eating the memory.
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = vars(&bomb).unwrap_err().to_string();
        assert!(e.contains("more than 1000000 values"), "{e}");
        let deep = format!("a: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let e = vars(&deep).unwrap_err().to_string();
        // The parser's own limit or this module's, whichever comes first: an error, not a
        // stack overflow.
        assert!(
            e.contains("nested more than 200 deep") || e.contains("recursion limit"),
            "{e}"
        );
    }
}
