//! OpenSSH's patterns: `*` and `?` globs (`match_pattern`), `Host` lines (any positive match,
//! and no negated one), and comma-separated host lists (`match_hostname`, lowercased).

/// `s` against one glob pattern (`*` any run, `?` any one character), case-sensitive.
pub(crate) fn glob(s: &str, pattern: &str) -> bool {
    let (s, p): (Vec<char>, Vec<char>) = (s.chars().collect(), pattern.chars().collect());
    let (mut i, mut j) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if j < p.len() && (p[j] == '?' || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '*' {
            star = Some(j);
            mark = i;
            j += 1;
        } else if let Some(st) = star {
            j = st + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while j < p.len() && p[j] == '*' {
        j += 1;
    }
    j == p.len()
}

/// A `Host` line's patterns against `host`: matches when one positive pattern does and no
/// negated one does (a negated match makes the whole line fail).
pub(crate) fn host_line(host: &str, patterns: &[String]) -> bool {
    let mut hit = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(host, neg) {
                return false;
            }
        } else if glob(host, p) {
            hit = true;
        }
    }
    hit
}

/// A comma-separated pattern list (`Match host`, `Match user`): `Some(true)` on a positive
/// match without a negated one, `Some(false)`... as OpenSSH's `match_pattern_list`: a negated
/// match fails the list at once. `lower` lowercases `s` first (host names).
pub(crate) fn list(s: &str, list: &str, lower: bool) -> bool {
    let s = if lower {
        s.to_ascii_lowercase()
    } else {
        s.to_owned()
    };
    let mut hit = false;
    for p in list.split(',') {
        let p = if lower {
            p.to_ascii_lowercase()
        } else {
            p.to_owned()
        };
        if let Some(neg) = p.strip_prefix('!') {
            if glob(&s, neg) {
                return false;
            }
        } else if glob(&s, &p) {
            hit = true;
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_lines_and_lists() {
        assert!(glob("web01.example", "web*.example"));
        assert!(glob("a", "?"));
        assert!(!glob("ab", "?"));
        assert!(glob("", "*"));
        assert!(glob("abcabc", "*bc"));
        assert!(!glob("Web01", "web*"));
        let line = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(host_line("web01", &line(&["web*", "!db*"])));
        assert!(!host_line("web-bastion", &line(&["web*", "!*bastion"])));
        assert!(
            !host_line("x", &line(&["!y"])),
            "only negations never match"
        );
        assert!(list("Web01.Example", "*.example,!db*", true));
        assert!(!list("db1.example", "*.example,!db*", true));
    }
}
