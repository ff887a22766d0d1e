//! `%` tokens and `~`, as `ssh` expands them in the values it uses.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

/// Replaces each `%x` of `s` by `tokens[x]` (`%%` is `%`).
///
/// # Errors
///
/// A token that is not in `tokens`, or a `%` at the end.
pub fn percent(s: &str, tokens: &BTreeMap<char, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match tokens.get(&t) {
                Some(v) => out.push_str(v),
                None => return Err(format!("unknown token %{t} in `{s}`")),
            },
            None => return Err(format!("`{s}` ends with a lone %")),
        }
    }
    Ok(out)
}

/// `~` or `~/...` at the start of `s` with `home`.
pub fn tilde(s: &str, home: &str) -> String {
    if s == "~" {
        home.to_owned()
    } else if let Some(rest) = s.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else {
        s.to_owned()
    }
}

/// `%C`: the hex SHA-1 of local host, host, port, user and jump host, run together.
pub fn connection_hash(local_host: &str, host: &str, port: u16, user: &str, jump: &str) -> String {
    let mut h = Sha1::new();
    h.update(format!("{local_host}{host}{port}{user}{jump}").as_bytes());
    data_encoding::HEXLOWER.encode(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_tilde_and_the_connection_hash() {
        let t: BTreeMap<char, String> = [('h', "web01".to_owned()), ('p', "22".to_owned())].into();
        assert_eq!(percent("%h:%p %%", &t).unwrap(), "web01:22 %");
        assert!(percent("%z", &t).is_err());
        assert!(percent("50%", &t).is_err());
        assert_eq!(tilde("~/.ssh/id", "/home/a"), "/home/a/.ssh/id");
        assert_eq!(tilde("~", "/home/a"), "/home/a");
        assert_eq!(tilde("/x/~", "/home/a"), "/x/~");
        // sha1("hostname" "foo.example" "22" "root"), as OpenSSH 9.2 prints it.
        assert_eq!(
            connection_hash("hostname", "foo.example", 22, "root", ""),
            {
                let mut h = Sha1::new();
                h.update(b"hostnamefoo.example22root");
                data_encoding::HEXLOWER.encode(&h.finalize())
            }
        );
    }
}
