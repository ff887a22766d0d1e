//! The converted inventory as fleet TOML text, in a stable order (`[defaults]`, then the
//! groups in the order Ansible first saw them, then the host tables in host order), with
//! the Ansible file and line behind every line written, so that an error the loader finds
//! in the text can point at the Ansible line it came from.

use std::fmt::Write as _;
use std::path::Path;

use super::connection::Translated;
use super::model::Origin;
use super::resolve::Plan;

/// Where a line of the converted text came from.
#[derive(Debug, Clone)]
pub(crate) struct LineInfo {
    pub(crate) at: Origin,
    /// The table the line is in (`[hosts.web01]`), for messages.
    pub(crate) table: String,
}

/// The converted text and where each of its lines came from.
#[derive(Debug, Clone)]
pub(crate) struct Converted {
    pub(crate) text: String,
    pub(crate) lines: Vec<LineInfo>,
}

struct Writer {
    out: Converted,
    table: String,
}

impl Writer {
    fn line(&mut self, text: &str, at: &Origin) {
        self.out.text.push_str(text);
        self.out.text.push('\n');
        self.out.lines.push(LineInfo {
            at: at.clone(),
            table: self.table.clone(),
        });
    }

    fn header(&mut self, table: String, at: &Origin) {
        if !self.out.text.is_empty() {
            self.line("", at);
        }
        self.table = format!("[{table}]");
        let t = self.table.clone();
        self.line(&t, at);
    }

    /// `key = [` one value a line `]`.
    fn list(&mut self, key: &str, items: &[(String, Origin)], at: &Origin) {
        if items.is_empty() {
            return;
        }
        self.line(&format!("{key} = ["), at);
        for (item, item_at) in items {
            self.line(&format!("    {},", string(item)), item_at);
        }
        self.line("]", at);
    }

    /// A table's settings, then its `vars` subtable.
    fn body(&mut self, table: &str, t: &Translated, at: &Origin) {
        for (k, item) in &t.settings {
            self.line(&format!("{} = {}", k.name(), item.value), &item.at);
        }
        if !t.vars.is_empty() {
            self.header(format!("{table}.vars"), at);
            for (k, item) in &t.vars {
                self.line(&format!("{} = {}", key(k), item.value), &item.at);
            }
        }
    }
}

/// A TOML basic string.
fn string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML key: bare when it can be.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_owned()
    } else {
        string(s)
    }
}

/// Writes `plan`, converted from the inventory at `path` (read from `head`, its start).
pub(crate) fn emit(path: &Path, plan: &Plan, head: &Origin) -> Converted {
    let mut w = Writer {
        out: Converted {
            text: String::new(),
            lines: Vec::new(),
        },
        table: String::new(),
    };
    w.line(
        &format!(
            "# fleet inventory converted from the Ansible inventory {}",
            path.display()
        ),
        head,
    );
    if !plan.files.is_empty() {
        let base = path.parent().unwrap_or(Path::new(""));
        let mut names = String::new();
        for (i, f) in plan.files.iter().enumerate() {
            let shown = f.strip_prefix(base).unwrap_or(f);
            let _ = write!(
                names,
                "{}{}",
                if i > 0 { ", " } else { "" },
                shown.display()
            );
        }
        w.line(&format!("# with its vars files: {names}"), head);
    }
    let d = &plan.defaults;
    if !d.settings.is_empty() {
        w.header("defaults".into(), head);
    } else if !d.vars.is_empty() {
        w.table = "[defaults]".into();
    }
    w.body("defaults", d, head);

    for g in &plan.groups {
        let table = format!("groups.{}", key(&g.name));
        w.header(table.clone(), &g.at);
        w.list("hosts", &g.hosts, &g.at);
        w.list("children", &g.children, &g.at);
        w.body(&table, &g.t, &g.at);
    }
    for h in &plan.hosts {
        let table = format!("hosts.{}", key(&h.key));
        w.header(table.clone(), &h.at);
        w.body(&table, &h.t, &h.at);
    }
    w.out
}
