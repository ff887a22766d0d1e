//! Site URIs (`[hosts.X.sites.Y] uri = ...`): strict `http(s)://host[:port][/path]`.
//!
//! The URI is passed to `drush -l` and `cv --url` on the host, and may be used in a custom
//! playbook's shell steps through `{uri}`. Values are quoted there, but a URI is data the
//! inventory's author typed and a shell should never have a reason to look inside it: so only
//! characters that no shell treats specially are accepted, and anything beyond scheme, host,
//! port and path (user info, query, fragment) is refused rather than passed on.
//!
//! | part | allowed |
//! |---|---|
//! | scheme | `http://` or `https://` |
//! | host | ASCII letters, digits, `.` and `-` (not first), or a bracketed IPv6 literal |
//! | port | `:` and 1 to 65535 |
//! | path | `/` then `A-Za-z0-9-._~/` and `%XX` (two hex digits) |

use crate::error::shown;

/// Checks `uri` and returns why it is refused: the part and the offending character.
pub(crate) fn check(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or("it must start with `http://` or `https://`")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("`@` is not allowed (no user info before the host)".into());
    }
    let port = if let Some(v6) = authority.strip_prefix('[') {
        let (literal, after) = v6
            .split_once(']')
            .ok_or("the IPv6 host has no closing `]`")?;
        if let Some(c) = literal
            .chars()
            .find(|c| !(c.is_ascii_hexdigit() || matches!(c, ':' | '.')))
        {
            return Err(format!("{} is not allowed in an IPv6 host", shown(c)));
        }
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`[{literal}]` is not an IPv6 address"));
        }
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                let c = after.chars().next().unwrap_or(' ');
                format!("{} is not allowed after the host", shown(c))
            })?),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
        {
            return Err(format!("{} is not allowed in the host", shown(c)));
        }
        if host.starts_with(['.', '-']) {
            return Err(format!("the host `{host}` starts with `{}`", &host[..1]));
        }
        port
    };
    if let Some(p) = port {
        if let Some(c) = p.chars().find(|c| !c.is_ascii_digit()) {
            return Err(format!("{} is not allowed in the port", shown(c)));
        }
        if !p.parse::<u16>().is_ok_and(|n| n != 0) {
            return Err(format!("port `{p}` is not 1 to 65535"));
        }
    }
    let mut chars = path.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '%' {
            let hex = path.get(i + 1..i + 3).unwrap_or("");
            if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("`%` in the path must start an escape like `%20`".into());
            }
            chars.nth(1);
        } else if !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')) {
            return Err(format!("{} is not allowed in the path", shown(c)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(uri: &str) {
        assert_eq!(check(uri), Ok(()), "{uri}");
    }

    #[track_caller]
    fn refused(uri: &str, why: &str) {
        let e = check(uri).expect_err(uri);
        assert!(e.contains(why), "{uri}: {e} lacks {why}");
    }

    #[test]
    fn accepted() {
        ok("https://www.example.org");
        ok("http://example.org/");
        ok("https://shop.example.org:8443/civi/sub-site_2/~me/a.b");
        ok("https://example.org/caf%C3%A9");
        ok("https://[2001:db8::1]");
        ok("https://[::ffff:192.0.2.1]:8080/x");
        ok("https://192.0.2.10:80");
        ok("https://s1.h01.test");
    }

    #[test]
    fn refused_table() {
        // What a shell would act on, inside a host, a port or a path.
        refused("https://x.org/$(id)", "`$` is not allowed in the path");
        refused("https://$(id).org", "`$` is not allowed in the host");
        refused(
            "https://x.org/`id`",
            "a backtick is not allowed in the path",
        );
        refused("https://x.org/a;b", "`;` is not allowed in the path");
        refused("https://x.org/'", "`'` is not allowed in the path");
        refused("https://x.org/\"", "`\"` is not allowed in the path");
        refused("https://x.org/a\\b", "`\\` is not allowed in the path");
        refused("https://x.org/a${IFS}b", "`$` is not allowed in the path");
        refused("https://x.org/a b", "a space is not allowed in the path");
        refused("https://x.org/a\nb", "`\\n` is not allowed in the path");
        refused("https://x.org/a\tb", "`\\t` is not allowed in the path");
        for c in [
            '|', '&', '<', '>', '(', ')', '*', '?', '!', '{', '}', '#', '=', '+', ',', '@', '[',
            ']', ':',
        ] {
            refused(
                &format!("https://x.org/a{c}b"),
                &format!("`{c}` is not allowed in the path"),
            );
        }
        refused(
            "https://x.org/caf\u{e9}",
            "`\u{e9}` is not allowed in the path",
        );
        // User info, query and fragment are refused, not passed on.
        refused("https://u:p@x.org", "`@` is not allowed (no user info");
        refused("https://x.org@evil.org", "`@` is not allowed (no user info");
        refused("https://x.org?q=1", "`?` is not allowed in the host");
        refused("https://x.org/p?q=1", "`?` is not allowed in the path");
        refused("https://x.org/#top", "`#` is not allowed in the path");
        // Escapes must be complete.
        refused("https://x.org/a%2", "must start an escape");
        refused("https://x.org/a%zz", "must start an escape");
        // Scheme, host and port.
        refused("x.org", "must start with `http://` or `https://`");
        refused("ftp://x.org", "must start with");
        refused("HTTPS://x.org", "must start with");
        refused("javascript:alert(1)", "must start with");
        refused(" https://x.org", "must start with");
        refused("https://", "the host is empty");
        refused("https:///path", "the host is empty");
        refused("https://:80", "the host is empty");
        refused("https://-x.org", "starts with `-`");
        refused("https://.x.org", "starts with `.`");
        refused("https://x_y.org", "`_` is not allowed in the host");
        refused("https://x.org:", "port `` is not 1 to 65535");
        refused("https://x.org:0", "port `0` is not 1 to 65535");
        refused("https://x.org:70000", "port `70000`");
        refused("https://x.org:8$(id)", "`$` is not allowed in the port");
        refused("https://x.org:80:81", "`:` is not allowed in the port");
        refused("https://[::1", "no closing `]`");
        refused("https://[::1;id]", "`;` is not allowed in an IPv6 host");
        refused("https://[12345::]", "is not an IPv6 address");
        refused("https://[::1]x", "`x` is not allowed after the host");
        refused("https://[::1]:0", "port `0`");
    }
}
