//! The inverse of ranges: `web01,web02,web03,web05` prints as `web[01-03,05]`.

/// Folds names sharing a prefix and a same-width numeric suffix into bracketed ranges, keeping
/// the order in which each prefix first appears.
pub fn compact_names(names: &[&str]) -> String {
    struct Run<'a> {
        prefix: &'a str,
        width: usize,
        numbers: Vec<u64>,
        first: &'a str,
    }
    let mut runs: Vec<Run<'_>> = Vec::new();
    let mut plain: Vec<(usize, &str)> = Vec::new();
    let mut order: Vec<(bool, usize)> = Vec::new();
    for &name in names {
        let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (prefix, num) = name.split_at(name.len() - digits);
        match num.parse::<u64>() {
            Ok(n) if digits > 0 && digits <= 18 => {
                match runs
                    .iter_mut()
                    .find(|r| r.prefix == prefix && r.width == digits)
                {
                    Some(r) => r.numbers.push(n),
                    None => {
                        order.push((true, runs.len()));
                        runs.push(Run {
                            prefix,
                            width: digits,
                            numbers: vec![n],
                            first: name,
                        });
                    }
                }
            }
            _ => {
                order.push((false, plain.len()));
                plain.push((0, name));
            }
        }
    }
    let mut parts = Vec::with_capacity(order.len());
    for (is_run, i) in order {
        if !is_run {
            parts.push(plain[i].1.to_owned());
            continue;
        }
        let r = &mut runs[i];
        r.numbers.sort_unstable();
        r.numbers.dedup();
        if r.numbers.len() == 1 {
            parts.push(r.first.to_owned());
            continue;
        }
        let w = r.width;
        let mut spans: Vec<String> = Vec::new();
        let mut k = 0;
        while k < r.numbers.len() {
            let start = r.numbers[k];
            let mut end = start;
            while k + 1 < r.numbers.len() && r.numbers[k + 1] == end + 1 {
                k += 1;
                end = r.numbers[k];
            }
            spans.push(if start == end {
                format!("{start:0w$}")
            } else {
                format!("{start:0w$}-{end:0w$}")
            });
            k += 1;
        }
        parts.push(format!("{}[{}]", r.prefix, spans.join(",")));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(input: &[&str], expected: &str) {
        assert_eq!(compact_names(input), expected);
    }

    #[test]
    fn compaction() {
        case(
            &["web01", "web02", "web03", "web05", "db1"],
            "web[01-03,05],db1",
        );
        case(&["a1", "a2", "a3"], "a[1-3]");
        case(&["web05"], "web05");
        case(&["n9", "n10"], "n9,n10");
        case(&["bastion", "h01", "h02"], "bastion,h[01-02]");
        case(&[], "");
        case(&["h03", "h01", "h02"], "h[01-03]");
    }
}
