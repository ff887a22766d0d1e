//! One configuration line as `ssh` splits it: a keyword (case-insensitive, with one optional
//! `=`), then arguments with `"`/`'` quotes and backslash escapes, a `#` token ending the
//! line. `ProxyCommand` and friends keep the raw rest of the line instead.

/// A line's keyword (lowercased) and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) keyword: String,
    /// The text after the keyword and its separator, untouched.
    pub(crate) rest: String,
}

/// Splits a line into its keyword and rest; `None` for blank and comment lines.
pub(crate) fn line(text: &str) -> Option<Line> {
    let t = text.trim_start_matches([' ', '\t', '\r', '\n']);
    let t = t.trim_end_matches([' ', '\t', '\r', '\n']);
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let end = t.find([' ', '\t', '=']).unwrap_or(t.len());
    let keyword = t[..end].to_ascii_lowercase();
    let mut rest = &t[end..];
    rest = rest.trim_start_matches([' ', '\t']);
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start_matches([' ', '\t']);
    }
    Some(Line {
        keyword,
        rest: rest.to_owned(),
    })
}

/// The arguments of `rest`: quotes group, `\"`, `\'` and `\\` escape (and `\ ` outside
/// quotes), a token starting with `#` ends the line.
///
/// # Errors
///
/// An unterminated quote.
pub(crate) fn args(rest: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, ' ' | '\t') => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => match chars.peek() {
                    Some(&n)
                        if n == '"' || n == '\'' || n == '\\' || (quote.is_none() && n == ' ') =>
                    {
                        word.push(n);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                (_, c) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_separators_quotes_and_comments() {
        let l = line("  HostName=example.org # trailing").unwrap();
        assert_eq!(l.keyword, "hostname");
        assert_eq!(args(&l.rest).unwrap(), vec!["example.org"]);
        let l = line("IdentityFile = \"~/.ssh/my key\" 'b c' d\\ e").unwrap();
        assert_eq!(l.keyword, "identityfile");
        assert_eq!(args(&l.rest).unwrap(), vec!["~/.ssh/my key", "b c", "d e"]);
        assert_eq!(args("foo#bar #c").unwrap(), vec!["foo#bar"]);
        assert!(line("   # only a comment").is_none());
        assert!(line("").is_none());
        assert!(args("\"open").is_err());
        let l = line("ProxyCommand ssh -W %h:%p 'b c' # kept").unwrap();
        assert_eq!(l.rest, "ssh -W %h:%p 'b c' # kept");
    }
}
