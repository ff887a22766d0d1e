//! What may name a host, a group or a site, and when a host's name can stand in for its
//! address.

use toml::Spanned;

use super::source::Ctx;
use crate::error::{InventoryError, printable, shown};

impl Ctx<'_> {
    /// Refuses a host or group name that is not a plain word. Names become file names
    /// (`--out-dir DIR/<host>.stdout`), selector terms and journal keys, so a `/` or a leading
    /// `.` would let an inventory write outside the out-dir (`../../x`), and selector
    /// punctuation (`,:!&@*?[]`) would make the host impossible to select on its own.
    /// `written` is the key or list entry as written: a range there names many hosts, and
    /// the error shows both the bad name and the pattern it came from.
    pub(super) fn check_name(
        &self,
        kind: &str,
        name: &str,
        written: &Spanned<String>,
    ) -> Result<(), InventoryError> {
        let Some(why) = name_problem(name) else {
            return Ok(());
        };
        let from = if written.get_ref() == name {
            String::new()
        } else {
            format!(" (from `{}`)", printable(written.get_ref()))
        };
        Err(self.err(
            written.span(),
            format!(
                "invalid {kind} name `{}`{from}: {why}; {NAME_RULE}",
                printable(name)
            ),
        ))
    }
}

/// How [`name_problem`]'s rule reads in an error.
pub(crate) const NAME_RULE: &str =
    "use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`";

/// Why `name` is not a valid host, group or site name, if it is not (see
/// [`Ctx::check_name`]; site names become journal keys, lock directory names on the hosts
/// and parts of paths, so they follow the same rule).
pub(crate) fn name_problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("it is empty".into());
    };
    if matches!(first, '.' | '-') {
        return Some(format!("it starts with `{first}`"));
    }
    name.chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .map(|c| format!("{} is not allowed", shown(c)))
}

/// Whether `s` is an IP address or a DNS-style host name: at most 253 characters of
/// dot-separated labels, each 1 to 63 ASCII letters, digits, `-` and `_`, not starting or
/// ending with `-`. That is RFC 1123 plus `_`, which RFC 1123 forbids but inventories use
/// (`db_2`) and `/etc/hosts` and most resolvers accept.
pub(super) fn is_host_name(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use crate::model::testkit::{error_at, load};

    /// Names become `--out-dir` file names and selector terms: nothing that could leave the
    /// directory (`/`, a leading `.`) or split a selector.
    #[test]
    fn host_and_group_names_are_plain_words() {
        let rule = "use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`";
        error_at(
            "[hosts.\"../../X\"]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "invalid host name `../../X`: it starts with `.`",
        );
        error_at(
            "[hosts.\"/tmp/X\"]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "invalid host name `/tmp/X`: `/` is not allowed",
        );
        error_at("[hosts.\"a/b\"]\naddress = \"10.0.0.1\"\n", 1, 8, rule);
        error_at(
            "[hosts.\"..\"]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "starts with `.`",
        );
        error_at("[hosts.\".hidden\"]\n", 1, 8, "starts with `.`");
        error_at("[hosts.\"-l\"]\n", 1, 8, "starts with `-`");
        error_at("[hosts.\"\"]\n", 1, 8, "invalid host name ``: it is empty");
        error_at("[hosts.\"web 01\"]\n", 1, 8, "a space is not allowed");
        error_at("[hosts.\"web\\n01\"]\n", 1, 8, "`\\n` is not allowed");
        error_at("[hosts.\"wéb\"]\n", 1, 8, "`é` is not allowed");
        error_at("[hosts.\"a$(id)\"]\n", 1, 8, "`$` is not allowed");
        // A range in a `[hosts]` key: every name it makes is checked, and the error shows
        // the pattern.
        error_at(
            "[hosts.\"web[01:02]/x\"]\n",
            1,
            8,
            "invalid host name `web01/x` (from `web[01:02]/x`): `/` is not allowed",
        );
        // Hosts named only in a group's list, plain and from ranges.
        error_at(
            "[groups.web]\nhosts = [\"ok\", \"../../X\"]\n",
            2,
            16,
            "invalid host name `../../X`",
        );
        error_at(
            "[groups.web]\nhosts = [\"../w[1:2]\"]\n",
            2,
            10,
            "invalid host name `../w1` (from `../w[1:2]`): it starts with `.`",
        );
        error_at(
            "[groups.web]\nhosts = [\"a,b\"]\n",
            2,
            10,
            "`,` is not allowed",
        );
        // Group names.
        error_at("[groups.\"../g\"]\n", 1, 9, "invalid group name `../g`");
        error_at("[groups.\"a:b\"]\n", 1, 9, "`:` is not allowed");
        error_at("[groups.\"-g\"]\n", 1, 9, "starts with `-`");
        error_at(
            "[groups.\"\"]\n",
            1,
            9,
            "invalid group name ``: it is empty",
        );

        // What stays valid: dots, dashes, underscores and digits inside names.
        let inv = load(
            "[hosts.\"web01.example.com\"]\n[hosts.db_2-a]\n[groups.\"eu-west_1.prod\"]\nhosts = [\"n[1:2].x\", \"9lives\"]\n",
        )
        .unwrap();
        let names: Vec<&str> = inv.hosts().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["web01.example.com", "db_2-a", "n1.x", "n2.x", "9lives"]
        );
    }
}
