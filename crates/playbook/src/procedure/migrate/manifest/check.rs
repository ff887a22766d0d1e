//! The manifest's checks of single values and of the tarballs it names.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::{DB_PLACEHOLDERS, Tarball, Tolerance};
use crate::error::PlaybookError;

pub(super) fn tolerance(v: &toml::Value) -> Option<Tolerance> {
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).ok().map(Tolerance::Rows),
        toml::Value::String(s) => {
            let p: f64 = s.strip_suffix('%')?.trim().parse().ok()?;
            (p.is_finite() && (0.0..=100.0).contains(&p)).then_some(Tolerance::Percent(p))
        }
        _ => None,
    }
}

pub(super) type At<'a> = dyn Fn(usize, String) -> PlaybookError + 'a;

/// A Drupal machine name: `a-z`, `0-9`, `_`, starting with a letter.
pub(super) fn machine_name(
    at: &At<'_>,
    what: &str,
    v: &Spanned<String>,
) -> Result<(), PlaybookError> {
    let s = v.get_ref();
    let ok = s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(at(
            v.span().start,
            format!(
                "{what} `{}` is not a Drupal machine name (`a-z0-9_`, starting with a letter)",
                s.escape_debug()
            ),
        ))
    }
}

/// Free text for one command-line word: anything printable.
pub(super) fn text_value(
    at: &At<'_>,
    what: &str,
    v: &Spanned<String>,
) -> Result<String, PlaybookError> {
    let s = v.get_ref();
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(at(
            v.span().start,
            format!(
                "{what} `{}` must be non-empty text without control characters",
                s.escape_debug()
            ),
        ));
    }
    Ok(s.clone())
}

pub(super) fn check_db_template(at: &At<'_>, v: &Spanned<String>) -> Result<(), PlaybookError> {
    let t = v.get_ref();
    let mut rest = t.as_str();
    let mut literal = String::new();
    while let Some(i) = rest.find('{') {
        literal.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find('}').unwrap_or(after.len());
        let name = &after[..end];
        if !DB_PLACEHOLDERS.contains(&name) {
            return Err(at(
                v.span().start,
                format!(
                    "unknown placeholder `{{{name}}}` in `database` `{t}`; known: {}",
                    DB_PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        rest = after.get(end + 1..).unwrap_or("");
    }
    literal.push_str(rest);
    if !literal
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || (literal.is_empty() && !t.contains('{'))
    {
        return Err(at(
            v.span().start,
            format!(
                "`database` `{}` may hold only `A-Za-z0-9_` besides its placeholders",
                t.escape_debug()
            ),
        ));
    }
    // Site names are unique only on their host, and hosts may share a database server:
    // the old database's name (unique on its server) or the host's must be part of it.
    if !t.contains("{old_db}") && !t.contains("{host}") {
        return Err(at(
            v.span().start,
            format!(
                "`database` `{t}` could name one database for two sites (on two hosts sharing a database server): include `{{old_db}}` or `{{host}}`"
            ),
        ));
    }
    Ok(())
}

/// Reads a tarball the manifest names and checks its SHA-256 against the given one.
pub(super) fn tarball(
    at: &At<'_>,
    dir: &Path,
    version: &Spanned<String>,
    path: &Spanned<String>,
    sha256: Option<&Spanned<String>>,
    read: bool,
) -> Result<Tarball, PlaybookError> {
    let v = version.get_ref();
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    {
        return Err(at(
            version.span().start,
            format!(
                "`version` `{}` may hold only `A-Za-z0-9._+-`",
                v.escape_debug()
            ),
        ));
    }
    let p = dir.join(path.get_ref());
    if !read {
        // A manifest a run recorded: its tarballs were read and checked when it started.
        return Ok(Tarball {
            version: v.clone(),
            path: p,
            sha256: sha256
                .map(|s| s.get_ref().to_ascii_lowercase())
                .unwrap_or_default(),
        });
    }
    let actual = sha256_file(&p).map_err(|e| {
        at(
            path.span().start,
            format!("cannot read tarball `{}`: {e}", p.display()),
        )
    })?;
    if let Some(want) = sha256 {
        let w = want.get_ref().to_ascii_lowercase();
        if w.len() != 64 || !w.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(at(
                want.span().start,
                format!(
                    "`sha256` `{}` is not 64 hex digits",
                    want.get_ref().escape_debug()
                ),
            ));
        }
        if w != actual {
            return Err(at(
                want.span().start,
                format!(
                    "tarball `{}` has SHA-256 {actual}, not the {w} the manifest says: a different or damaged file",
                    p.display()
                ),
            ));
        }
    }
    Ok(Tarball {
        version: v.clone(),
        path: p,
        sha256: actual,
    })
}

/// The SHA-256 of a file, in hex, read in blocks.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
