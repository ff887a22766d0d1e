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

/// A TOML key: bare when it can be, else a basic string on one line. (`string` may give a
/// multi-line literal, which is no key: a variable named `"a\nb"` in YAML made a converted
/// inventory that did not parse.)
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::key;
    use crate::{Format, VarsDirs, ansible_to_toml_with};

    /// Found by `make fuzz` (ansible_yaml): a key with a line break was written as a
    /// multi-line literal, and the converted inventory did not parse.
    #[test]
    fn every_key_is_written_on_one_line_and_reads_back() {
        for k in [
            "a\nb",
            "a'''b\r\n",
            "q\"\\",
            "tab\there",
            "nul\0",
            "é ü",
            "",
            "bare_ok-1",
        ] {
            let doc = format!("{} = 1\n", key(k));
            assert_eq!(doc.lines().count(), 1, "{doc:?}");
            let table: toml::Table = doc.parse().unwrap_or_else(|e| panic!("{doc:?}: {e}"));
            assert!(table.contains_key(k), "{doc:?} reads back as {table:?}");
        }
        let yaml = "all:\n  vars:\n    \"a\\nb\": 1\n  hosts:\n    web1:\n";
        let toml = ansible_to_toml_with(
            Path::new("/inv/hosts.yml"),
            yaml,
            Format::AnsibleYaml,
            &VarsDirs::default(),
        )
        .expect("converts");
        let table: toml::Table = toml.parse().unwrap_or_else(|e| panic!("{e}\n{toml}"));
        assert_eq!(
            table["defaults"]["vars"]["a\nb"].as_integer(),
            Some(1),
            "{toml}"
        );
    }
}
