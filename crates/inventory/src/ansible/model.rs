//! An Ansible inventory as Ansible builds it from a file, before any fleet rule applies:
//! the groups (`all` first) with their host entries, children and variables, the hosts with
//! their own variables, each item with the file, line and column it came from.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::pattern::{HostPattern, expand_host_pattern};
use crate::error::{InventoryError, printable};
use crate::model::names::{NAME_RULE, name_problem};

/// Where an item was written: a file (the inventory or a vars file), 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) file: Arc<Path>,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Origin {
    pub(crate) fn new(file: &Arc<Path>, line: usize, column: usize) -> Self {
        Origin {
            file: Arc::clone(file),
            line,
            column,
        }
    }

    /// An [`InventoryError::Invalid`] at this place.
    pub(crate) fn err(&self, message: impl Into<String>) -> InventoryError {
        InventoryError::Invalid {
            path: self.file.to_path_buf(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A variable's value as Ansible holds it (Python's types, as YAML or `ast.literal_eval` make
/// them).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    Map(Vec<(String, Val)>),
}

impl Val {
    /// The text Python's `str()` gives a scalar, which is what a YAML or Python dict key
    /// becomes when fleet needs a string; `None` for a list or a mapping.
    pub(crate) fn key_text(&self) -> Option<String> {
        Some(match self {
            Val::Null => "None".into(),
            Val::Bool(true) => "True".into(),
            Val::Bool(false) => "False".into(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => python_float(*f),
            Val::Str(s) => s.clone(),
            Val::List(_) | Val::Map(_) => return None,
        })
    }
}

/// `repr(float)` as Python writes it, closely enough for keys and messages.
pub(crate) fn python_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{f:?}")
    }
}

/// One variable: its value and where it was set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Var {
    pub(crate) val: Val,
    pub(crate) at: Origin,
}

/// Variables set at one level (a group, a host, a vars file): a later set replaces an
/// earlier one, as Ansible's `set_variable` does (its default `hash_behaviour = replace`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Layer(Vec<(String, Var)>);

impl Layer {
    pub(crate) fn set(&mut self, key: &str, var: Var) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = var,
            None => self.0.push((key.to_owned(), var)),
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, key: &str) -> Option<&Var> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `other` set over this layer.
    pub(crate) fn overlay(&mut self, other: &Layer) {
        for (k, v) in &other.0 {
            self.set(k, v.clone());
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One line (INI) or key (YAML) naming hosts in a group: the pattern as written and the
/// names it expands to.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) pattern: HostPattern,
    pub(crate) at: Origin,
    /// When it was read, counted with groups (file order).
    pub(crate) seq: usize,
}

/// A group as the Ansible file builds it.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) at: Origin,
    /// When it was first seen, counted with host entries (file order).
    pub(crate) seq: usize,
    pub(crate) entries: Vec<Entry>,
    /// Child group names, resolved by [`Parsed::finish`].
    pub(crate) children: Vec<(String, Origin)>,
    pub(crate) vars: Layer,
    /// `ansible_group_priority`: orders groups of the same depth when their variables merge.
    pub(crate) priority: i64,
}

/// A host: its name, where it was first named, and the variables its lines give it.
#[derive(Debug, Clone)]
pub(crate) struct HostDef {
    pub(crate) name: String,
    pub(crate) at: Origin,
    pub(crate) vars: Layer,
}

/// The whole Ansible inventory. Group 0 is `all`.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) groups: Vec<Group>,
    pub(crate) hosts: Vec<HostDef>,
    group_index: HashMap<String, usize>,
    host_index: HashMap<String, usize>,
    seq: usize,
}

pub(crate) const ALL: usize = 0;

impl Parsed {
    /// An inventory with only the implicit `all` group, anchored at `file`'s start.
    pub(crate) fn new(file: &Arc<Path>) -> Self {
        let mut p = Parsed {
            groups: Vec::new(),
            hosts: Vec::new(),
            group_index: HashMap::new(),
            host_index: HashMap::new(),
            seq: 0,
        };
        p.push_group("all", Origin::new(file, 1, 1));
        p
    }

    fn next_seq(&mut self) -> usize {
        self.seq += 1;
        self.seq
    }

    fn push_group(&mut self, name: &str, at: Origin) -> usize {
        let seq = self.next_seq();
        let id = self.groups.len();
        self.groups.push(Group {
            name: name.to_owned(),
            at,
            seq,
            entries: Vec::new(),
            children: Vec::new(),
            vars: Layer::default(),
            priority: 1,
        });
        self.group_index.insert(name.to_owned(), id);
        id
    }

    /// The group called `name`, created at `at` if it is new.
    ///
    /// # Errors
    ///
    /// A name fleet cannot use for a group (see `model/names.rs`).
    pub(crate) fn group(&mut self, name: &str, at: &Origin) -> Result<usize, InventoryError> {
        if let Some(&g) = self.group_index.get(name) {
            return Ok(g);
        }
        if let Some(why) = name_problem(name) {
            return Err(at.err(format!(
                "invalid group name `{}`: {why}; {NAME_RULE}",
                printable(name)
            )));
        }
        Ok(self.push_group(name, at.clone()))
    }

    pub(crate) fn group_id(&self, name: &str) -> Option<usize> {
        self.group_index.get(name).copied()
    }

    pub(crate) fn host_id(&self, name: &str) -> Option<usize> {
        self.host_index.get(name).copied()
    }

    /// Adds the hosts of `pattern` (written at `at`) to group `g`, then sets `vars` on each,
    /// as Ansible's `_populate_host_vars` does: a `:port` in the pattern first, as
    /// `ansible_port`, so that a variable on the same line wins over it.
    ///
    /// # Errors
    ///
    /// A bad pattern, or a name fleet cannot use for a host.
    pub(crate) fn add_hosts(
        &mut self,
        g: usize,
        pattern: &str,
        at: &Origin,
        vars: &Layer,
    ) -> Result<(), InventoryError> {
        let p = expand_host_pattern(pattern).map_err(|why| at.err(why))?;
        for name in &p.names {
            if let Some(why) = name_problem(name) {
                let from = if name == pattern {
                    String::new()
                } else {
                    format!(" (from `{}`)", printable(pattern))
                };
                return Err(at.err(format!(
                    "invalid host name `{}`{from}: {why}; {NAME_RULE}",
                    printable(name)
                )));
            }
        }
        let seq = self.next_seq();
        for name in &p.names {
            let h = match self.host_index.get(name) {
                Some(&h) => h,
                None => {
                    self.host_index.insert(name.clone(), self.hosts.len());
                    self.hosts.push(HostDef {
                        name: name.clone(),
                        at: at.clone(),
                        vars: Layer::default(),
                    });
                    self.hosts.len() - 1
                }
            };
            if let Some(port) = p.port {
                self.hosts[h].vars.set(
                    "ansible_port",
                    Var {
                        val: Val::Int(i64::from(port)),
                        at: at.clone(),
                    },
                );
            }
            self.hosts[h].vars.overlay(vars);
        }
        self.groups[g].entries.push(Entry {
            pattern: p,
            at: at.clone(),
            seq,
        });
        Ok(())
    }

    /// Sets variable `key` of group `g`; `ansible_group_priority` sets the group's priority
    /// instead, as in Ansible.
    ///
    /// # Errors
    ///
    /// An `ansible_group_priority` that is not an integer.
    pub(crate) fn set_group_var(
        &mut self,
        g: usize,
        key: &str,
        var: Var,
    ) -> Result<(), InventoryError> {
        if key == "ansible_group_priority" {
            let n = match &var.val {
                Val::Int(n) => Some(*n),
                Val::Str(s) => s.trim().parse().ok(),
                _ => None,
            };
            let Some(n) = n else {
                return Err(var
                    .at
                    .err("`ansible_group_priority` must be an integer".to_string()));
            };
            self.groups[g].priority = n;
            return Ok(());
        }
        self.groups[g].vars.set(key, var);
        Ok(())
    }

    /// Records `child` (a group name, resolved later) as a child of group `g`.
    pub(crate) fn add_child(&mut self, g: usize, child: &str, at: &Origin) {
        self.groups[g].children.push((child.to_owned(), at.clone()));
    }

    /// Checks what Ansible checks once the file is read, plus what fleet's names need.
    ///
    /// # Errors
    ///
    /// An unknown child group, `all` or a group itself as a child, a cycle of children,
    /// `ungrouped` with children or as a child, a host named `all` or like a group.
    pub(crate) fn finish(&self) -> Result<(), InventoryError> {
        for g in &self.groups {
            for (child, at) in &g.children {
                if child == "all" {
                    return Err(at.err(format!(
                        "`all` cannot be a child of group `{}`: it is the group of every host",
                        g.name
                    )));
                }
                if child == &g.name {
                    return Err(at.err(format!("group `{child}` is its own child")));
                }
                // `all: {children: {ungrouped: ...}}` is how `ansible-inventory --list
                // --yaml` writes it; under any other group it would be a contradiction.
                if child == "ungrouped" && g.name != "all" {
                    return Err(at.err(format!(
                        "`ungrouped` cannot be a child of group `{}`: it holds the hosts in no other group",
                        g.name
                    )));
                }
                if !self.group_index.contains_key(child) {
                    return Err(at.err(format!(
                        "group `{}` lists undefined group `{child}` as a child",
                        g.name
                    )));
                }
            }
            if g.name == "ungrouped"
                && let Some((_, at)) = g.children.first()
            {
                return Err(at.err(
                    "`ungrouped` cannot have children: it holds the hosts in no other group",
                ));
            }
        }
        self.check_cycles()?;
        for h in &self.hosts {
            if h.name == "all" || h.name == "ungrouped" {
                return Err(h.at.err(format!(
                    "`{}` is a built-in Ansible group and cannot name a host",
                    h.name
                )));
            }
            if let Some(&g) = self.group_index.get(&h.name) {
                return Err(h.at.err(format!(
                    "host `{0}` and group `{0}` ({1}) have the same name, so `-l {0}` could not tell them apart: rename one",
                    h.name, self.groups[g].at
                )));
            }
        }
        Ok(())
    }

    /// The children of group `g`, as group indices.
    pub(crate) fn child_ids(&self, g: usize) -> impl Iterator<Item = usize> + '_ {
        self.groups[g]
            .children
            .iter()
            .filter_map(|(c, _)| self.group_index.get(c).copied())
    }

    fn check_cycles(&self) -> Result<(), InventoryError> {
        // 0 = unvisited, 1 = on the current path, 2 = done.
        fn visit(
            p: &Parsed,
            g: usize,
            state: &mut [u8],
            path: &mut Vec<usize>,
        ) -> Result<(), InventoryError> {
            state[g] = 1;
            path.push(g);
            for (child, at) in &p.groups[g].children {
                let Some(&c) = p.group_index.get(child) else {
                    continue;
                };
                if state[c] == 1 {
                    let start = path.iter().position(|&x| x == c).unwrap_or(0);
                    let mut names: Vec<String> = path[start..]
                        .iter()
                        .map(|&i| format!("`{}`", p.groups[i].name))
                        .collect();
                    names.push(format!("`{child}`"));
                    return Err(at.err(format!("group cycle: {}", names.join(" -> "))));
                }
                if state[c] == 0 {
                    visit(p, c, state, path)?;
                }
            }
            path.pop();
            state[g] = 2;
            Ok(())
        }
        let mut state = vec![0u8; self.groups.len()];
        for g in 0..self.groups.len() {
            if state[g] == 0 {
                visit(self, g, &mut state, &mut Vec::new())?;
            }
        }
        Ok(())
    }
}
