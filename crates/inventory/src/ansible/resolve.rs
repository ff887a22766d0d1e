//! What the converted file says, worked out so that every host ends up with the settings and
//! variables Ansible would give it.
//!
//! Ansible merges a host's variables as: the inventory's `all` < its other groups (by depth,
//! then `ansible_group_priority`, then name) < `group_vars/all` < `group_vars/<group>` (same
//! order) < the host's own < `host_vars/<host>`. fleet merges `[defaults]` < groups (parents
//! before children, then file order) < `[hosts.X]`. The converted file keeps Ansible's
//! structure (`all` and `group_vars/all` as `[defaults]`, each group's variables and its
//! `group_vars` file in its table), then, for every host, compares what fleet would merge with
//! what Ansible merges, and writes the host's own table with whatever differs. So the
//! structure reads like the original and the result is Ansible's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::connection::{Item, Key, Translated, translate};
use super::model::{ALL, Entry, Layer, Origin, Parsed};
use super::vars_dirs::VarsDirs;
use crate::error::InventoryError;

/// A group as the converted file writes it.
#[derive(Debug, Clone)]
pub(crate) struct PlanGroup {
    pub(crate) name: String,
    pub(crate) at: Origin,
    /// Host names or fleet ranges, each with the line that named it.
    pub(crate) hosts: Vec<(String, Origin)>,
    pub(crate) children: Vec<(String, Origin)>,
    pub(crate) t: Translated,
}

/// A `[hosts.X]` table: a host or a fleet range of hosts with the same table.
#[derive(Debug, Clone)]
pub(crate) struct PlanHost {
    pub(crate) key: String,
    pub(crate) at: Origin,
    pub(crate) t: Translated,
}

/// The converted file's content.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) defaults: Translated,
    pub(crate) groups: Vec<PlanGroup>,
    pub(crate) hosts: Vec<PlanHost>,
    /// The `group_vars`/`host_vars` files read.
    pub(crate) files: Vec<PathBuf>,
}

/// Works out the converted file for `inv` and the vars directories beside it.
///
/// # Errors
///
/// What [`Parsed::finish`] and [`translate`] refuse, a vars file that cannot be read, or a
/// host whose Ansible result fleet cannot write (a null or a jump-less ssh argument that
/// clears what a group sets).
pub(crate) fn plan(mut inv: Parsed, dirs: &VarsDirs) -> Result<Plan, InventoryError> {
    inv.finish()?;
    let mut files = Vec::new();

    // Direct groups of each host, and which hosts end in `ungrouped`: those in no group but
    // `all` and `ungrouped` (Ansible's `reconcile_inventory`).
    let mut direct: Vec<Vec<usize>> = vec![Vec::new(); inv.hosts.len()];
    for (g, group) in inv.groups.iter().enumerate() {
        for e in &group.entries {
            for n in &e.pattern.names {
                let h = inv.host_id(n).unwrap_or_default();
                if !direct[h].contains(&g) {
                    direct[h].push(g);
                }
            }
        }
    }
    let named_ungrouped = inv.group_id("ungrouped");
    let is_ungrouped: Vec<bool> = direct
        .iter()
        .map(|gs| gs.iter().all(|&g| g == ALL || Some(g) == named_ungrouped))
        .collect();
    // Ansible always has `ungrouped`; the converted file has it when it holds a host.
    let any_ungrouped = is_ungrouped.iter().any(|&u| u);
    let ungrouped_id = match named_ungrouped {
        Some(u) => Some(u),
        None if any_ungrouped => {
            let first = is_ungrouped.iter().position(|&u| u).unwrap_or_default();
            let at = inv.hosts[first].at.clone();
            Some(inv.group("ungrouped", &at)?)
        }
        None => None,
    };
    let inv = &inv;
    let n_groups = inv.groups.len();

    // Parents, Ansible's depth (longest path from `all`), and each host's groups.
    let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n_groups];
    for g in 0..n_groups {
        for c in inv.child_ids(g) {
            if g != ALL && !parents[c].contains(&g) {
                parents[c].push(g);
            }
        }
    }
    let depth = longest_paths(&parents, 1);
    let ancestors = |direct: &[usize]| -> Vec<usize> {
        let mut seen: HashSet<usize> = HashSet::new();
        let mut stack: Vec<usize> = direct.to_vec();
        while let Some(g) = stack.pop() {
            if g != ALL && seen.insert(g) {
                stack.extend(parents[g].iter().copied());
            }
        }
        seen.into_iter().collect()
    };
    let host_groups: Vec<Vec<usize>> = direct
        .iter()
        .zip(&is_ungrouped)
        .map(|(d, &ung)| {
            let d: Vec<usize> = d
                .iter()
                .copied()
                .filter(|&g| Some(g) != ungrouped_id || ung)
                .collect();
            let mut gs = ancestors(&d);
            if ung
                && let Some(u) = ungrouped_id
                && !gs.contains(&u)
            {
                gs.push(u);
            }
            gs
        })
        .collect();

    // Each level's variables: the file's, then its vars directory's.
    let mut gv: Vec<Layer> = Vec::with_capacity(n_groups);
    for g in &inv.groups {
        let (layer, used) = dirs.group(&g.name)?;
        files.extend(used);
        gv.push(layer);
    }
    let mut defaults_layer = inv.groups[ALL].vars.clone();
    defaults_layer.overlay(&gv[ALL]);
    let mut defaults = translate(&defaults_layer)?;
    defaults.settings.remove(&Key::Address);

    // The groups the converted file writes, in the order Ansible first saw them; the
    // implicit `ungrouped` is one when it has hosts.
    let ungrouped_seq = inv.groups[ALL]
        .entries
        .iter()
        .chain(ungrouped_id.map_or(&[][..], |u| &inv.groups[u].entries[..]))
        .filter(|e| e.pattern.names.iter().any(|n| is_ungrouped[host(inv, n)]))
        .map(|e| e.seq)
        .min();
    let mut order: Vec<(usize, usize)> = Vec::new(); // (seq, group id)
    for (g, group) in inv.groups.iter().enumerate() {
        if g == ALL || Some(g) == ungrouped_id {
            continue;
        }
        order.push((group.seq, g));
    }
    // `ungrouped` is written when it has hosts or the file gave it variables, where its
    // first host was named.
    if let Some(u) = ungrouped_id
        && (any_ungrouped || !inv.groups[u].vars.is_empty() || !gv[u].is_empty())
    {
        let seq = ungrouped_seq.unwrap_or(inv.groups[u].seq);
        order.push((seq, u));
    }
    order.sort();

    let mut groups = Vec::with_capacity(order.len());
    let mut translated: HashMap<usize, Translated> = HashMap::new();
    for &(_, g) in &order {
        let group = &inv.groups[g];
        let mut layer = group.vars.clone();
        layer.overlay(&gv[g]);
        let mut t = translate(&layer)?;
        t.settings.remove(&Key::Address);
        translated.insert(g, t.clone());
        let hosts = if Some(g) == ungrouped_id {
            let entries: Vec<&Entry> = inv.groups[ALL]
                .entries
                .iter()
                .chain(ungrouped_id.map_or(&[][..], |u| &inv.groups[u].entries[..]))
                .collect();
            let mut entries = entries;
            entries.sort_by_key(|e| e.seq);
            members(inv, entries, |h| is_ungrouped[h])
        } else {
            members(inv, inv.groups[g].entries.iter().collect(), |_| true)
        };
        let mut children: Vec<(String, Origin)> = Vec::new();
        for (c, cat) in &group.children {
            if !children.iter().any(|(x, _)| x == c) {
                children.push((c.clone(), cat.clone()));
            }
        }
        groups.push(PlanGroup {
            name: group.name.clone(),
            at: group.at.clone(),
            hosts,
            children,
            t,
        });
    }

    // fleet's merge order: parents first (longest path from a root), then file order.
    let position: HashMap<usize, usize> = order
        .iter()
        .enumerate()
        .map(|(i, &(_, g))| (g, i))
        .collect();
    let fleet_parents: Vec<Vec<usize>> = order
        .iter()
        .map(|&(_, g)| {
            parents[g]
                .iter()
                .filter_map(|p| position.get(p).copied())
                .collect()
        })
        .collect();
    let fleet_depth = longest_paths(&fleet_parents, 0);
    let mut fleet_order: Vec<usize> = (0..order.len()).collect();
    fleet_order.sort_by_key(|&i| (fleet_depth[i], i));

    // Ansible's group order for merging: depth, priority, name.
    let sort_ansible = |gs: &[usize]| -> Vec<usize> {
        let mut gs = gs.to_vec();
        gs.sort_by(|&a, &b| {
            let key = |g: usize| (depth[g], inv.groups[g].priority, &inv.groups[g].name);
            key(a).cmp(&key(b))
        });
        gs
    };

    let mut tables: Vec<Option<Translated>> = Vec::with_capacity(inv.hosts.len());
    for (h, def) in inv.hosts.iter().enumerate() {
        let (hv, used) = dirs.host(&def.name)?;
        files.extend(used);
        let mut own_layer = def.vars.clone();
        own_layer.overlay(&hv);
        let own = translate(&own_layer)?;

        let sorted = sort_ansible(&host_groups[h]);
        let mut full = inv.groups[ALL].vars.clone();
        for &g in &sorted {
            full.overlay(&inv.groups[g].vars);
        }
        full.overlay(&gv[ALL]);
        for &g in &sorted {
            full.overlay(&gv[g]);
        }
        full.overlay(&own_layer);
        let ansible = translate(&full).map_err(|e| for_host(e, &def.name))?;

        let mut fleet = Translated::default();
        merge(&mut fleet, &defaults);
        for &i in &fleet_order {
            let g = order[i].1;
            if host_groups[h].contains(&g) {
                merge(&mut fleet, &translated[&g]);
            }
        }
        merge(&mut fleet, &own);

        let mut table = own;
        fix(
            &def.name,
            &ansible.settings,
            &fleet.settings,
            &mut table.settings,
            &ansible.cleared,
            |k| k.name().to_owned(),
        )?;
        fix(
            &def.name,
            &ansible.vars,
            &fleet.vars,
            &mut table.vars,
            &ansible.cleared,
            Clone::clone,
        )?;
        table.cleared.clear();
        tables.push((!table.settings.is_empty() || !table.vars.is_empty()).then_some(table));
    }

    let hosts = host_tables(inv, tables);
    files.sort();
    files.dedup();
    Ok(Plan {
        defaults,
        groups,
        hosts,
        files,
    })
}

fn host(inv: &Parsed, name: &str) -> usize {
    inv.host_id(name).unwrap_or_default()
}

/// Adds `e`'s message the host it is about.
fn for_host(e: InventoryError, host: &str) -> InventoryError {
    match e {
        InventoryError::Invalid {
            path,
            line,
            column,
            message,
        } => InventoryError::Invalid {
            path,
            line,
            column,
            message: format!("{message} (for host `{host}`)"),
        },
        other => other,
    }
}

/// The longest path from a root to each node, given each node's parents (acyclic); roots
/// are at `root`.
fn longest_paths(parents: &[Vec<usize>], root: usize) -> Vec<usize> {
    let mut depth = vec![root; parents.len()];
    for _ in 0..parents.len() {
        let mut changed = false;
        for c in 0..parents.len() {
            for &p in &parents[c] {
                if depth[c] < depth[p] + 1 {
                    depth[c] = depth[p] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

/// `over` set over `base`, as fleet merges levels.
fn merge(base: &mut Translated, over: &Translated) {
    for (k, v) in &over.settings {
        base.settings.insert(*k, v.clone());
    }
    for (k, v) in &over.vars {
        base.vars.insert(k.clone(), v.clone());
    }
}

/// Puts in `table` every key whose fleet result differs from Ansible's.
fn fix<K: Ord + Clone>(
    host: &str,
    ansible: &BTreeMap<K, Item>,
    fleet: &BTreeMap<K, Item>,
    table: &mut BTreeMap<K, Item>,
    cleared: &BTreeMap<String, Origin>,
    name: impl Fn(&K) -> String,
) -> Result<(), InventoryError> {
    for (k, f) in fleet {
        if !ansible.contains_key(k) {
            let key = name(k);
            let at = cleared.get(&key).cloned().unwrap_or_else(|| f.at.clone());
            return Err(at.err(format!(
                "for host `{host}` this clears `{key}`, which fleet's inventory cannot do: `{key}` also comes from {} (`{}`); remove it there or set it on each host",
                f.at, f.from
            )));
        }
    }
    for (k, a) in ansible {
        if fleet.get(k).map(|f| &f.value) != Some(&a.value) {
            table.insert(k.clone(), a.clone());
        }
    }
    Ok(())
}

/// The names of `entries` that `keep` accepts, each once; a fleet range stands for an
/// entry whose hosts are all kept and new.
fn members(
    inv: &Parsed,
    entries: Vec<&Entry>,
    keep: impl Fn(usize) -> bool,
) -> Vec<(String, Origin)> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for e in entries {
        let names = &e.pattern.names;
        if let Some(range) = &e.pattern.fleet
            && names
                .iter()
                .all(|n| keep(host(inv, n)) && !seen.contains(n.as_str()))
        {
            seen.extend(names.iter().map(String::as_str));
            out.push((range.clone(), e.at.clone()));
            continue;
        }
        for n in names {
            if keep(host(inv, n)) && seen.insert(n) {
                out.push((n.clone(), e.at.clone()));
            }
        }
    }
    out
}

/// The host tables in host order; the hosts of a fleet range with equal tables share one.
fn host_tables(inv: &Parsed, mut tables: Vec<Option<Translated>>) -> Vec<PlanHost> {
    let same = |a: &Translated, b: &Translated| {
        let values = |t: &Translated| {
            (
                t.settings
                    .iter()
                    .map(|(k, i)| (*k, i.value.clone()))
                    .collect::<Vec<_>>(),
                t.vars
                    .iter()
                    .map(|(k, i)| (k.clone(), i.value.clone()))
                    .collect::<Vec<_>>(),
            )
        };
        values(a) == values(b)
    };
    // First host of a range -> the range's key and line.
    let mut ranges: HashMap<usize, (String, Origin, Vec<usize>)> = HashMap::new();
    let mut in_range: HashSet<usize> = HashSet::new();
    let mut entries: Vec<&Entry> = inv.groups.iter().flat_map(|g| &g.entries).collect();
    entries.sort_by_key(|e| e.seq);
    for e in entries {
        let Some(range) = &e.pattern.fleet else {
            continue;
        };
        let ids: Vec<usize> = e.pattern.names.iter().map(|n| host(inv, n)).collect();
        let Some(first) = ids.first().and_then(|&i| tables[i].as_ref()) else {
            continue;
        };
        let all_same = ids
            .iter()
            .all(|&i| !in_range.contains(&i) && tables[i].as_ref().is_some_and(|t| same(t, first)));
        if all_same {
            in_range.extend(ids.iter().copied());
            ranges.insert(ids[0], (range.clone(), e.at.clone(), ids));
        }
    }
    let mut out = Vec::new();
    for h in 0..inv.hosts.len() {
        if let Some((key, at, ids)) = ranges.remove(&h) {
            let t = tables[h].take().unwrap_or_default();
            for i in ids {
                tables[i] = None;
            }
            out.push(PlanHost { key, at, t });
        } else if !in_range.contains(&h)
            && let Some(t) = tables[h].take()
        {
            out.push(PlanHost {
                key: inv.hosts[h].name.clone(),
                at: inv.hosts[h].at.clone(),
                t,
            });
        }
    }
    out
}
