//! Host selection (`-l/--limit`).
//!
//! | selector | meaning |
//! |---|---|
//! | `web01` | the host `web01` |
//! | `web` | every host of group `web` (and of its children) |
//! | `all` | every host |
//! | `web*`, `db?` | hosts and groups whose name matches the glob |
//! | `web[01:05]` | the hosts `web01` .. `web05` |
//! | `a,b` or `a:b` | union |
//! | `web,&prod` | intersection: `web` hosts that are also in `prod` |
//! | `all,!db` | exclusion |
//! | `@FILE` | the names in FILE, one per line (`#` comments allowed) |
//!
//! Positive terms are unioned (no positive term means every host), then each `&` term
//! intersects and each `!` term removes. A term that matches nothing is an error, and so is
//! an empty result: a typo never turns into a silent no-op. Several selectors (repeated
//! `-l`) combine as one comma-separated list.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::SelectError;
use crate::model::{Host, Inventory};
use crate::range::expand;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Intersect,
    Exclude,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    op: Op,
    /// The name, glob or range, without its prefix.
    pattern: String,
}

/// A parsed selector expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    terms: Vec<Term>,
}

impl Selector {
    /// Parses one selector; `@FILE` terms are read now.
    ///
    /// # Errors
    ///
    /// [`SelectError::Syntax`] for an empty selector or term, [`SelectError::File`] when an
    /// `@FILE` cannot be read.
    pub fn parse(text: &str) -> Result<Selector, SelectError> {
        let mut terms = Vec::new();
        for piece in split_terms(text) {
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            if let Some(file) = piece.strip_prefix('@') {
                let path = PathBuf::from(file);
                let body = std::fs::read_to_string(&path).map_err(|e| SelectError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                for line in body.lines() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if !line.is_empty() {
                        terms.push(term(line, text)?);
                    }
                }
                continue;
            }
            terms.push(term(piece, text)?);
        }
        if terms.is_empty() {
            return Err(SelectError::Syntax {
                selector: text.to_owned(),
                reason: "no host or group named".into(),
            });
        }
        Ok(Selector {
            text: text.to_owned(),
            terms,
        })
    }
}

impl FromStr for Selector {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

fn term(piece: &str, whole: &str) -> Result<Term, SelectError> {
    let (op, pattern) = match piece.as_bytes()[0] {
        b'!' => (Op::Exclude, &piece[1..]),
        b'&' => (Op::Intersect, &piece[1..]),
        _ => (Op::Union, piece),
    };
    let pattern = pattern.trim();
    if pattern.is_empty() || pattern.starts_with(['!', '&', '@']) {
        return Err(SelectError::Syntax {
            selector: whole.to_owned(),
            reason: format!("bad term `{piece}`"),
        });
    }
    Ok(Term {
        op,
        pattern: pattern.to_owned(),
    })
}

/// Splits on `,` and `:` outside `[...]`, so `web[01:05]` stays one term.
fn split_terms(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' | ':' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

impl Inventory {
    /// Returns the hosts chosen by `selectors`, in inventory order; every host when empty.
    ///
    /// # Errors
    ///
    /// [`SelectError::NoHosts`] when the inventory has no host at all (an empty or wrong
    /// file must not look like a successful run on "0 hosts"), [`SelectError::NoMatch`] naming
    /// a term that matches nothing, [`SelectError::Empty`] when the combination leaves no host.
    pub fn select(&self, selectors: &[Selector]) -> Result<Vec<&Host>, SelectError> {
        if self.hosts().is_empty() {
            return Err(SelectError::NoHosts(self.path().to_owned()));
        }
        if selectors.is_empty() {
            return Ok(self.hosts().iter().collect());
        }
        let terms: Vec<&Term> = selectors.iter().flat_map(|s| &s.terms).collect();
        let mut chosen: BTreeSet<usize> = if terms.iter().any(|t| t.op == Op::Union) {
            BTreeSet::new()
        } else {
            (0..self.hosts().len()).collect()
        };
        for t in terms.iter().filter(|t| t.op == Op::Union) {
            chosen.extend(self.resolve(&t.pattern)?);
        }
        for t in terms.iter().filter(|t| t.op == Op::Intersect) {
            let keep = self.resolve(&t.pattern)?;
            chosen.retain(|i| keep.contains(i));
        }
        for t in terms.iter().filter(|t| t.op == Op::Exclude) {
            for i in self.resolve(&t.pattern)? {
                chosen.remove(&i);
            }
        }
        if chosen.is_empty() {
            let text: Vec<&str> = selectors.iter().map(|s| s.text.as_str()).collect();
            return Err(SelectError::Empty(text.join(",")));
        }
        Ok(chosen.into_iter().map(|i| &self.hosts()[i]).collect())
    }

    fn resolve(&self, pattern: &str) -> Result<BTreeSet<usize>, SelectError> {
        let mut out = BTreeSet::new();
        if pattern == "all" {
            out.extend(0..self.hosts().len());
        } else if pattern.contains(['*', '?']) {
            for (i, h) in self.hosts().iter().enumerate() {
                if glob(pattern, &h.name) {
                    out.insert(i);
                }
            }
            for g in self.groups() {
                if glob(pattern, &g.name) {
                    out.extend(self.group_members(&g.name).unwrap_or_default());
                }
            }
        } else if pattern.contains('[') {
            let names = expand(pattern).map_err(|reason| SelectError::Syntax {
                selector: pattern.to_owned(),
                reason,
            })?;
            for n in names {
                out.extend(self.resolve(&n)?);
            }
        } else if let Some(members) = self.group_members(pattern) {
            out.extend(members);
        } else if let Some(i) = self.host_position(pattern) {
            out.insert(i);
        }
        if out.is_empty() {
            return Err(SelectError::NoMatch(pattern.to_owned()));
        }
        Ok(out)
    }
}

/// `*` matches any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star) = (0, 0, None);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const INV: &str = r#"
[hosts.bastion]
[hosts.web01]
[groups.web]
hosts = ["web[01:04]"]
children = ["canary"]
[groups.canary]
hosts = ["cn1"]
[groups.db]
hosts = ["db1", "db2"]
[groups.prod]
hosts = ["web01", "web02", "db1"]
"#;

    fn inv() -> Inventory {
        Inventory::from_toml_str(INV, Path::new("inv.toml")).unwrap()
    }

    #[track_caller]
    fn case(selectors: &[&str], expected: &[&str]) {
        let inv = inv();
        let sel: Vec<Selector> = selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
        let got: Vec<&str> = inv
            .select(&sel)
            .unwrap()
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(got, expected, "{selectors:?}");
    }

    #[track_caller]
    fn fails(selectors: &[&str], expected: SelectError) {
        let inv = inv();
        let sel: Vec<Selector> = selectors
            .iter()
            .map(|s| Selector::parse(s).unwrap())
            .collect();
        assert_eq!(inv.select(&sel).unwrap_err(), expected, "{selectors:?}");
    }

    #[test]
    fn selector_table() {
        case(
            &[],
            &[
                "bastion", "web01", "web02", "web03", "web04", "cn1", "db1", "db2",
            ],
        );
        case(&["web01"], &["web01"]);
        case(&["db"], &["db1", "db2"]);
        case(&["web"], &["web01", "web02", "web03", "web04", "cn1"]);
        case(
            &["all"],
            &[
                "bastion", "web01", "web02", "web03", "web04", "cn1", "db1", "db2",
            ],
        );
        case(&["web0*"], &["web01", "web02", "web03", "web04"]);
        case(&["d?"], &["db1", "db2"]);
        case(&["web[02:03]"], &["web02", "web03"]);
        case(&["db,bastion"], &["bastion", "db1", "db2"]);
        case(&["db:bastion"], &["bastion", "db1", "db2"]);
        case(&["web,&prod"], &["web01", "web02"]);
        case(&["all,!web"], &["bastion", "db1", "db2"]);
        case(&["!web"], &["bastion", "db1", "db2"]);
        case(&["&prod"], &["web01", "web02", "db1"]);
        case(
            &["web", "db1"],
            &["web01", "web02", "web03", "web04", "cn1", "db1"],
        );
        case(&["web[01:04]:!web02"], &["web01", "web03", "web04"]);
    }

    #[test]
    fn selector_errors() {
        fails(&["dbx"], SelectError::NoMatch("dbx".into()));
        fails(&["x*"], SelectError::NoMatch("x*".into()));
        fails(&["web[07:08]"], SelectError::NoMatch("web07".into()));
        fails(&["db,&canary"], SelectError::Empty("db,&canary".into()));
        fails(&["db", "!db"], SelectError::Empty("db,!db".into()));
        assert!(matches!(
            Selector::parse(""),
            Err(SelectError::Syntax { .. })
        ));
        assert!(matches!(
            Selector::parse("!"),
            Err(SelectError::Syntax { .. })
        ));
    }

    /// Found by the properties (`props.rs`): a control character of the selector went raw
    /// into the error, so a terminal received it and the error could span lines.
    #[test]
    fn selector_errors_escape_control_characters() {
        let inv = inv();
        let e = inv
            .select(&[Selector::parse("web\u{1b}x").unwrap()])
            .unwrap_err();
        assert_eq!(e.to_string(), "no host or group matches `web\\u{1b}x`");
        let e = Selector::parse("a,!\n").unwrap_err().to_string();
        assert_eq!(e, "bad selector `a,!\\n`: bad term `!`");
    }

    /// Every selection from an inventory without hosts fails, naming the file, instead of
    /// running on nothing.
    #[test]
    fn selecting_from_an_inventory_without_hosts_fails() {
        for text in ["", "[defaults]\nuser = \"deploy\"\n", "[groups.web]\n"] {
            let inv = Inventory::from_toml_str(text, Path::new("x.toml")).unwrap();
            for selectors in [vec![], vec![Selector::parse("all").unwrap()]] {
                let e = inv.select(&selectors).unwrap_err();
                assert_eq!(e, SelectError::NoHosts("x.toml".into()), "{text:?}");
                assert_eq!(e.to_string(), "inventory `x.toml` defines no hosts");
            }
        }
    }

    #[test]
    fn selector_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hosts.txt");
        std::fs::write(&f, "# canary first\nweb03\n\ndb2  # the replica\n!web\n").unwrap();
        let s = Selector::parse(&format!("@{}", f.display())).unwrap();
        let inv = inv();
        let got: Vec<&str> = inv
            .select(&[s])
            .unwrap()
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(got, ["db2"]);
        let missing = Selector::parse(&format!("@{}", dir.path().join("nope").display()));
        assert!(matches!(missing, Err(SelectError::File { .. })));
    }
}
