//! The group graph: `children` cycles refused, every group's hosts collected through its
//! children, and the parents-first order in which group variables merge.

use std::collections::HashMap;

use toml::Spanned;

use super::Group;
use super::source::Ctx;
use crate::error::InventoryError;
use crate::raw::RawGroup;

/// Refuses a `children` cycle, naming its groups in order and pointing at the group that
/// closes it.
pub(super) fn check_cycles(
    cx: &Ctx<'_>,
    tables: &[(&Spanned<String>, &RawGroup)],
    index: &HashMap<String, usize>,
) -> Result<(), InventoryError> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit(
        g: usize,
        tables: &[(&Spanned<String>, &RawGroup)],
        index: &HashMap<String, usize>,
        state: &mut [u8],
        path: &mut Vec<usize>,
    ) -> Option<(Vec<usize>, usize)> {
        state[g] = 1;
        path.push(g);
        for child in &tables[g].1.children {
            let c = index[child.get_ref()];
            if state[c] == 1 {
                let start = path.iter().position(|&p| p == c).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(c);
                return Some((cycle, g));
            }
            if state[c] == 0
                && let Some(found) = visit(c, tables, index, state, path)
            {
                return Some(found);
            }
        }
        path.pop();
        state[g] = 2;
        None
    }
    let mut state = vec![0u8; tables.len()];
    for g in 0..tables.len() {
        if state[g] == 0
            && let Some((cycle, at)) = visit(g, tables, index, &mut state, &mut Vec::new())
        {
            let names: Vec<String> = cycle
                .iter()
                .map(|&i| format!("`{}`", tables[i].0.get_ref()))
                .collect();
            return Err(cx.err(
                tables[at].0.span(),
                format!("group cycle: {}", names.join(" -> ")),
            ));
        }
    }
    Ok(())
}

/// Every group's hosts, its children's included, as sorted host indices.
pub(super) fn transitive_members(
    groups: &[Group],
    gindex: &HashMap<String, usize>,
    hindex: &HashMap<String, usize>,
) -> Vec<Vec<usize>> {
    fn collect(
        g: usize,
        groups: &[Group],
        gindex: &HashMap<String, usize>,
        hindex: &HashMap<String, usize>,
        memo: &mut Vec<Option<Vec<usize>>>,
    ) -> Vec<usize> {
        if let Some(done) = &memo[g] {
            return done.clone();
        }
        let mut out: Vec<usize> = groups[g]
            .hosts
            .iter()
            .filter_map(|h| hindex.get(h).copied())
            .collect();
        for c in &groups[g].children {
            if let Some(&ci) = gindex.get(c) {
                out.extend(collect(ci, groups, gindex, hindex, memo));
            }
        }
        out.sort_unstable();
        out.dedup();
        memo[g] = Some(out.clone());
        out
    }
    let mut memo = vec![None; groups.len()];
    (0..groups.len())
        .map(|g| collect(g, groups, gindex, hindex, &mut memo))
        .collect()
}

/// Group indices ordered so that a group comes after every group that lists it as a child
/// (its parents), and otherwise in declaration order.
pub(super) fn parents_first(groups: &[Group], gindex: &HashMap<String, usize>) -> Vec<usize> {
    let mut depth = vec![0usize; groups.len()];
    // Longest path from a root; the graph is acyclic, so |groups| passes suffice.
    for _ in 0..groups.len() {
        let mut changed = false;
        for (p, g) in groups.iter().enumerate() {
            for c in &g.children {
                if let Some(&ci) = gindex.get(c)
                    && depth[ci] < depth[p] + 1
                {
                    depth[ci] = depth[p] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| (depth[g], g));
    order
}
