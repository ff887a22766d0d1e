//! Host ranges: `web[01:20]` expands to `web01` .. `web20`, keeping zero padding.

/// Most names one pattern may expand to.
const MAX_NAMES: usize = 100_000;

/// Expands every `[A:B]` in `pattern` (several multiply); a pattern without brackets is
/// returned as is.
pub(crate) fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(format!("unmatched `]` in `{pattern}`"));
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("unclosed `[` in `{pattern}`"))?;
    let (prefix, inner, rest) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let (a, b) = inner
        .split_once(':')
        .ok_or_else(|| format!("range `[{inner}]` in `{pattern}` must look like `[01:20]`"))?;
    let parse = |s: &str| -> Result<u64, String> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!("range bound `{s}` in `{pattern}` is not a number"));
        }
        s.parse()
            .map_err(|_| format!("range bound `{s}` in `{pattern}` is too large"))
    };
    let (lo, hi) = (parse(a)?, parse(b)?);
    if lo > hi {
        return Err(format!("range `[{inner}]` in `{pattern}` goes backwards"));
    }
    // `[0:18446744073709551615]` holds one more number than a u64 can count.
    let count = usize::try_from(hi - lo)
        .ok()
        .and_then(|c| c.checked_add(1))
        .unwrap_or(usize::MAX);
    let width = if a.len() > 1 && a.starts_with('0') {
        a.len()
    } else {
        0
    };
    let tails = expand(rest)?;
    if count.saturating_mul(tails.len()) > MAX_NAMES {
        return Err(format!(
            "`{pattern}` expands to more than {MAX_NAMES} names"
        ));
    }
    let mut out = Vec::with_capacity(count * tails.len());
    for n in lo..=hi {
        for t in &tails {
            out.push(format!("{prefix}{n:0width$}{t}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(input: &str, expected: &[&str]) {
        assert_eq!(expand(input).unwrap(), expected, "{input}");
    }

    #[track_caller]
    fn fails(input: &str, needle: &str) {
        let e = expand(input).unwrap_err();
        assert!(e.contains(needle), "{input}: {e}");
    }

    #[test]
    fn expansions() {
        case("web01", &["web01"]);
        case("web[02:04]", &["web02", "web03", "web04"]);
        case("n[1:3]", &["n1", "n2", "n3"]);
        case("x[008:010]", &["x008", "x009", "x010"]);
        case("n[9:10]", &["n9", "n10"]);
        case("r[1:2]n[1:2]", &["r1n1", "r1n2", "r2n1", "r2n2"]);
        case(
            "web[1:2].example.com",
            &["web1.example.com", "web2.example.com"],
        );
    }

    #[test]
    fn errors() {
        fails("web[20:02]", "backwards");
        fails("web[a:b]", "not a number");
        fails("web[01:05", "unclosed");
        fails("web]", "unmatched");
        fails("web[1-5]", "must look like");
        fails("h[0:999999]", "more than");
        // Found by the properties (`props.rs`): the count overflowed.
        fails("h[0:18446744073709551615]", "more than");
        fails("h[1:18446744073709551615]", "more than");
    }
}
