//! Ansible host patterns: `host`, `host:port`, and the ranges of Ansible's
//! `expand_hostname_range`: numeric `web[01:20]` (zero padding kept, both bounds the same
//! width), alphabetic `db-[a:f]`, with an optional step (`n[0:20:5]`), several multiplying
//! (the first outermost).

/// Most names one pattern may expand to, as in fleet's own ranges.
const MAX_NAMES: usize = 100_000;

/// The letters of an alphabetic range, in Python's `string.ascii_letters` order.
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A host pattern, expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// The names, in Ansible's order.
    pub(crate) names: Vec<String>,
    /// The `:port` after the name.
    pub(crate) port: Option<u16>,
    /// The pattern in fleet's range syntax, when it has a range and fleet's `[A:B]` expands
    /// it to the same names (numeric ranges without a step).
    pub(crate) fleet: Option<String>,
}

/// Expands `pattern` (an INI host token or a YAML host key).
///
/// # Errors
///
/// A malformed range or port, an IPv6 address, or more than 100000 names; the message
/// names the pattern.
pub(crate) fn expand_host_pattern(pattern: &str) -> Result<HostPattern, String> {
    let (host, port) = split_port(pattern)?;
    let mut names = Vec::new();
    expand(host, &mut names).map_err(|why| format!("bad host pattern `{pattern}`: {why}"))?;
    let fleet = (host.contains('[') && fleet_can_expand(host)).then(|| host.to_owned());
    Ok(HostPattern { names, port, fleet })
}

/// `host` and its port, from `host:port`; brackets hold ranges, so only a `:` outside them
/// can start a port.
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let ipv6 = || {
        format!(
            "`{s}` is an IPv6 address, which cannot name a fleet host (`:` is not allowed): give the host a name and set `ansible_host` to the address"
        )
    };
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    if s.starts_with('[')
        && s.find(']').is_some_and(|close| {
            let inner = &s[1..close];
            inner.contains("::") || inner.matches(':').count() > 2
        })
    {
        return Err(ipv6());
    }
    match colons.as_slice() {
        [] => Ok((s, None)),
        [i] => {
            let (host, port) = (&s[..*i], &s[i + 1..]);
            if port.is_empty() {
                return Err(format!(
                    "host pattern `{s}` ends in `:`, which Ansible keeps for a port"
                ));
            }
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "bad host pattern `{s}`: `{port}` after `:` is not a port"
                ));
            }
            let p = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port `{port}` in `{s}`: must be 1 to 65535"))?;
            Ok((host, Some(p)))
        }
        _ => Err(ipv6()),
    }
}

fn expand(pattern: &str, out: &mut Vec<String>) -> Result<(), String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err("unmatched `]`".into());
        }
        if out.len() >= MAX_NAMES {
            return Err(format!("it expands to more than {MAX_NAMES} names"));
        }
        out.push(pattern.to_owned());
        return Ok(());
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or("unclosed `[`")?;
    let (head, inner, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let shape = || format!("range `[{inner}]` must look like `[01:20]`, `[a:f]` or `[0:20:5]`");
    let parts: Vec<&str> = inner.split(':').collect();
    let (beg, end, step) = match parts.as_slice() {
        [b, e] => (*b, *e, 1),
        [b, e, s] => {
            let step = s
                .parse::<usize>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| format!("range step `{s}` in `[{inner}]` must be at least 1"))?;
            (*b, *e, step)
        }
        _ => return Err(shape()),
    };
    let beg = if beg.is_empty() { "0" } else { beg };
    if end.is_empty() {
        return Err(format!("range `[{inner}]` has no end"));
    }
    let letter = |s: &str| match s.as_bytes() {
        [c] => LETTERS.iter().position(|l| l == c),
        _ => None,
    };
    let values: Vec<String> = if let (Some(b), Some(e)) = (letter(beg), letter(end)) {
        if b > e {
            return Err(format!("range `[{inner}]` goes backwards"));
        }
        LETTERS[b..=e]
            .iter()
            .step_by(step)
            .map(|&c| char::from(c).to_string())
            .collect()
    } else if beg.bytes().all(|c| c.is_ascii_digit()) && end.bytes().all(|c| c.is_ascii_digit()) {
        let width = if beg.len() > 1 && beg.starts_with('0') {
            if beg.len() != end.len() {
                return Err(format!(
                    "range `[{inner}]`: a zero-padded range needs bounds of the same width"
                ));
            }
            beg.len()
        } else {
            0
        };
        let (b, e): (u64, u64) = match (beg.parse(), end.parse()) {
            (Ok(b), Ok(e)) => (b, e),
            _ => return Err(format!("range `[{inner}]` is too large")),
        };
        if b > e {
            return Err(format!("range `[{inner}]` goes backwards"));
        }
        if (e - b) / step as u64 >= MAX_NAMES as u64 {
            return Err(format!("it expands to more than {MAX_NAMES} names"));
        }
        (b..=e)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        return Err(format!(
            "range `[{inner}]` needs numbers or single letters as bounds"
        ));
    };
    for v in values {
        expand(&format!("{head}{v}{tail}"), out)?;
    }
    Ok(())
}

/// Whether every range in `host` (already expanded without error) is one fleet's
/// `[A:B]` writes the same way: numeric, with both bounds written, without a step.
fn fleet_can_expand(host: &str) -> bool {
    let mut rest = host;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']').map(|i| open + i) else {
            return false;
        };
        let ok = rest[open + 1..close].split_once(':').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        if !ok {
            return false;
        }
        rest = &rest[close + 1..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(input: &str, names: &[&str], port: Option<u16>, fleet: Option<&str>) {
        let p = expand_host_pattern(input).unwrap();
        assert_eq!(p.names, names, "{input}");
        assert_eq!(p.port, port, "{input}");
        assert_eq!(p.fleet.as_deref(), fleet, "{input}");
    }

    #[track_caller]
    fn fails(input: &str, needle: &str) {
        let e = expand_host_pattern(input).unwrap_err();
        assert!(e.contains(needle), "{input}: {e}");
    }

    #[test]
    fn patterns() {
        case("web01", &["web01"], None, None);
        case("web01:2222", &["web01"], Some(2222), None);
        case("10.0.0.1:22", &["10.0.0.1"], Some(22), None);
        case(
            "web[01:03]",
            &["web01", "web02", "web03"],
            None,
            Some("web[01:03]"),
        );
        case(
            "web[1:3]:2200",
            &["web1", "web2", "web3"],
            Some(2200),
            Some("web[1:3]"),
        );
        case("db-[a:c]", &["db-a", "db-b", "db-c"], None, None);
        case("x[y:B]", &["xy", "xz", "xA", "xB"], None, None);
        case("n[0:6:3]", &["n0", "n3", "n6"], None, None);
        case("n[:2]", &["n0", "n1", "n2"], None, None);
        case(
            "r[1:2]-[a:b]",
            &["r1-a", "r1-b", "r2-a", "r2-b"],
            None,
            None,
        );
        case(
            "r[1:2]n[08:09].x",
            &["r1n08.x", "r1n09.x", "r2n08.x", "r2n09.x"],
            None,
            Some("r[1:2]n[08:09].x"),
        );
        // The same names as fleet's own expansion gives.
        let fleet = crate::range::expand("r[1:2]n[08:09].x").unwrap();
        assert_eq!(
            expand_host_pattern("r[1:2]n[08:09].x").unwrap().names,
            fleet
        );
    }

    #[test]
    fn errors() {
        fails("web[03:01]", "goes backwards");
        fails("web[c:a]", "goes backwards");
        fails("web[01:5]", "same width");
        fails("web[1:]", "has no end");
        fails("web[1-5]", "must look like");
        fails("web[aa:bb]", "numbers or single letters");
        fails("web[1:5:0]", "at least 1");
        fails("web[01:05", "unclosed");
        fails("web]", "unmatched");
        fails("web:", "ends in `:`");
        fails("web:ssh", "is not a port");
        fails("web:70000", "must be 1 to 65535");
        fails("fe80::1", "IPv6");
        fails("[fe80::1]:22", "IPv6");
        fails("h[0:999999]", "more than 100000");
        fails("h[0:99][0:9999]", "more than 100000");
    }
}
