//! Placeholders (`{root}`, `{uri}`, ...) in a playbook's shell steps, turned into shell text
//! that no value can break out of.
//!
//! A value is never spliced raw. Every placeholder becomes a reference to an environment
//! variable set (and exported) at the start of the command, written for where it lands:
//! - outside quotes: `"${FLEET_ARG_ROOT}"`: one word, exactly the value; the shell never
//!   reads an expanded value again, so nothing in it runs, whatever it holds;
//! - inside `"..."`, `'...'` (closed around `"${...}"`) or a here-document: `${FLEET_ARG_ROOT}`,
//!   exactly the value where it stands. Quoted text is often a script for another shell
//!   (`sh -c '...'`, `su -c "..."`, `sh <<EOF`) that reads the value again, so there the
//!   value must hold nothing a shell reads as syntax (quotes, `$`, backquotes, `;`, `&`, `|`,
//!   redirections, globs, `#`, newlines): a step whose value does is refused before it runs,
//!   naming the placeholder. Spaces are fine; quote the placeholder for the inner shell
//!   (`sh -c "cd '{root}'"`) when the value may hold them.
//!
//! To know where a placeholder lands, [`render`] follows the shell's lexing: quotes,
//! backslashes, `$(...)` and backquotes (each starts unquoted again), arithmetic `$((...))`,
//! comments, here-strings and here-documents (quoted or not, `<<-` included).

use fleet_remote_exec::quote;

#[derive(Clone, Copy, PartialEq)]
enum Q {
    None,
    Single,
    Double,
}

/// What opened a level of the command.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Top,
    /// `$(...)`.
    Subst,
    /// A backquoted command.
    Backquote,
    /// `$((...))` or `((...))`: no here-documents or comments in there (`1<<3` shifts).
    Arith,
}

/// A level of the command; each starts unquoted, whatever quotes are around it.
struct Frame {
    q: Q,
    parens: u32,
    /// Open `case ... esac`: a `)` there ends a pattern, not a `$(...)`.
    cases: u32,
    kind: Kind,
}

impl Frame {
    fn new(kind: Kind) -> Self {
        Self {
            q: Q::None,
            parens: 0,
            cases: 0,
            kind,
        }
    }
}

/// Whether the shell keyword `word` stands at `i` (a word of its own).
fn keyword(t: &str, i: usize, word: &str) -> bool {
    word_start(t.as_bytes(), i)
        && t[i..].starts_with(word)
        && t[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == ';' || c == ')')
}

/// A here-document announced on the current line, its body starting at the next line.
struct Heredoc {
    delimiter: String,
    /// `<<'EOF'`: nothing in the body is expanded.
    quoted: bool,
    /// `<<-EOF`: leading tabs are stripped from body lines (and from the delimiter line).
    strip_tabs: bool,
}

/// Renders template `t`: the assignments of every placeholder used, then the command with
/// each placeholder written for where it lands (see the module docs).
/// `{{` and `}}` are literal braces. `value` gives a placeholder's value by name.
///
/// # Errors
///
/// A placeholder inside quotes or a here-document whose value holds shell syntax.
pub(crate) fn render(t: &str, value: impl Fn(&str) -> String) -> Result<String, String> {
    let mut used: Vec<&str> = Vec::new();
    let mut body = String::with_capacity(t.len());
    let mut stack = vec![Frame::new(Kind::Top)];
    let mut pending: Vec<Heredoc> = Vec::new();
    let mut refused: Option<String> = None;
    let mut i = 0;
    let b = t.as_bytes();
    // Renders the placeholder starting at `i` (a `{` that is not `{{`) for context `ctx`;
    // returns where the template goes on.
    let mut placeholder = |i: usize, ctx: Ctx, body: &mut String| -> usize {
        let end = t[i..].find('}').map_or(t.len(), |e| i + e);
        let name = &t[i + 1..end];
        if !used.contains(&name) {
            used.push(name);
        }
        let var = env_name(name);
        if !matches!(ctx, Ctx::Word) {
            let v = value(name);
            if let Some(c) = v
                .chars()
                .find(|c| c.is_control() || crate::discovery::SHELL_SYNTAX.contains(*c))
            {
                refused.get_or_insert(format!(
                    "`{{{name}}}` stands inside quotes or a here-document, where a shell may read its value again, and the value `{}` holds `{}`: use `{{{name}}}` outside quotes",
                    v.escape_debug(),
                    c.escape_debug()
                ));
            }
        }
        body.push_str(&match ctx {
            Ctx::Word => format!("\"${{{var}}}\""),
            Ctx::Double | Ctx::Heredoc => format!("${{{var}}}"),
            Ctx::Single => format!("'\"${{{var}}}\"'"),
            // Nothing in a quoted here-document expands: the (inert) value as text.
            Ctx::Literal => value(name),
        });
        end + 1
    };
    while i < t.len() {
        let c = t[i..].chars().next().unwrap_or('\0');
        // Braces of the template language come first, in every context.
        if t[i..].starts_with("{{") {
            body.push('{');
            i += 2;
            continue;
        }
        if t[i..].starts_with("}}") {
            body.push('}');
            i += 2;
            continue;
        }
        let depth = stack.len();
        let Some(f) = stack.last_mut() else { break };
        if c == '{' {
            let ctx = match f.q {
                Q::None => Ctx::Word,
                Q::Double => Ctx::Double,
                Q::Single => Ctx::Single,
            };
            i = placeholder(i, ctx, &mut body);
            continue;
        }
        let arith = f.kind == Kind::Arith;
        if f.q == Q::None && !arith {
            if keyword(t, i, "case") {
                f.cases += 1;
            } else if keyword(t, i, "esac") {
                f.cases = f.cases.saturating_sub(1);
            }
        }
        match c {
            '\\' if f.q != Q::Single => {
                let n = t[i + 1..].chars().next().map_or(0, char::len_utf8);
                body.push_str(&t[i..i + 1 + n]);
                i += 1 + n;
                continue;
            }
            '\'' if f.q != Q::Double => f.q = if f.q == Q::Single { Q::None } else { Q::Single },
            '"' if f.q != Q::Single => f.q = if f.q == Q::Double { Q::None } else { Q::Double },
            '$' if f.q != Q::Single && t[i..].starts_with("$((") => {
                body.push_str("$((");
                i += 3;
                stack.push(Frame::new(Kind::Arith));
                continue;
            }
            '$' if f.q != Q::Single && t[i..].starts_with("$(") => {
                body.push_str("$(");
                i += 2;
                stack.push(Frame::new(Kind::Subst));
                continue;
            }
            '(' if f.q == Q::None && !arith && t[i..].starts_with("((") && word_start(b, i) => {
                body.push_str("((");
                i += 2;
                stack.push(Frame::new(Kind::Arith));
                continue;
            }
            ')' if arith && f.q == Q::None && f.parens == 0 && t[i..].starts_with("))") => {
                body.push_str("))");
                i += 2;
                stack.pop();
                continue;
            }
            '`' if f.q != Q::Single => {
                if f.kind == Kind::Backquote && f.q == Q::None {
                    stack.pop();
                } else {
                    stack.push(Frame::new(Kind::Backquote));
                }
            }
            '(' if f.q == Q::None => f.parens += 1,
            ')' if f.q == Q::None => {
                if f.parens > 0 {
                    f.parens -= 1;
                } else if f.cases > 0 {
                    // The end of a `case` pattern.
                } else if depth > 1 && f.kind == Kind::Subst {
                    stack.pop();
                }
            }
            '#' if f.q == Q::None && !arith && word_start(b, i) => {
                // A comment runs to the end of the line; its quotes mean nothing.
                let end = t[i..].find('\n').map_or(t.len(), |e| i + e);
                i = copy_line(t, i, end, Ctx::Word, &mut body, &mut placeholder);
                continue;
            }
            '<' if f.q == Q::None && !arith && t[i..].starts_with("<<<") => {
                // A here-string: its word is an ordinary word.
                body.push_str("<<<");
                i += 3;
                continue;
            }
            '<' if f.q == Q::None && !arith && t[i..].starts_with("<<") => {
                let (doc, len) = heredoc_operator(&t[i..]);
                body.push_str(&t[i..i + len]);
                i += len;
                pending.extend(doc);
                continue;
            }
            '\n' if f.q == Q::None && !pending.is_empty() => {
                body.push('\n');
                i += 1;
                for doc in std::mem::take(&mut pending) {
                    i = heredoc_body(t, i, &doc, &mut body, &mut placeholder);
                }
                continue;
            }
            _ => {}
        }
        body.push(c);
        i += c.len_utf8();
    }
    if let Some(why) = refused {
        return Err(why);
    }
    let mut out = String::new();
    for name in used {
        let var = env_name(name);
        out.push_str(&format!("{var}={}; export {var}; ", quote(&value(name))));
    }
    out.push_str(&body);
    Ok(out)
}

/// Where a placeholder lands.
#[derive(Clone, Copy)]
enum Ctx {
    /// Outside quotes.
    Word,
    /// Inside `"..."`.
    Double,
    /// Inside `'...'`.
    Single,
    /// In the body of a here-document that expands.
    Heredoc,
    /// In the body of a quoted here-document (`<<'EOF'`): taken as it is.
    Literal,
}

/// Whether the `#` at `i` starts a word (so a comment).
fn word_start(b: &[u8], i: usize) -> bool {
    i == 0
        || matches!(
            b[i - 1],
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')'
        )
}

/// Parses `<<[-] WORD` at the start of `s`: the here-document it announces and how many
/// bytes the operator and its word take.
fn heredoc_operator(s: &str) -> (Option<Heredoc>, usize) {
    let mut i = 2;
    let strip_tabs = s[i..].starts_with('-');
    if strip_tabs {
        i += 1;
    }
    while s[i..].starts_with([' ', '\t']) {
        i += 1;
    }
    let start = i;
    let mut delimiter = String::new();
    let mut quoted = false;
    let mut q: Option<char> = None;
    for c in s[start..].chars() {
        match (q, c) {
            (None, ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')') => break,
            (None, '\'' | '"') => {
                quoted = true;
                q = Some(c);
            }
            (None, '\\') => quoted = true,
            (Some(open), c) if c == open => q = None,
            (_, c) => delimiter.push(c),
        }
        i += c.len_utf8();
    }
    if delimiter.is_empty() {
        return (None, i);
    }
    (
        Some(Heredoc {
            delimiter,
            quoted,
            strip_tabs,
        }),
        i,
    )
}

/// Copies the body of `doc` starting at `i` (the start of a line), rendering its
/// placeholders, through its delimiter line; returns where the template goes on.
fn heredoc_body(
    t: &str,
    mut i: usize,
    doc: &Heredoc,
    body: &mut String,
    placeholder: &mut impl FnMut(usize, Ctx, &mut String) -> usize,
) -> usize {
    while i < t.len() {
        let end = t[i..].find('\n').map_or(t.len(), |e| i + e);
        let line = &t[i..end];
        let bare = if doc.strip_tabs {
            line.trim_start_matches('\t')
        } else {
            line
        };
        if bare == doc.delimiter {
            body.push_str(line);
            return end;
        }
        let ctx = if doc.quoted {
            Ctx::Literal
        } else {
            Ctx::Heredoc
        };
        copy_line(t, i, end, ctx, body, placeholder);
        if end < t.len() {
            body.push('\n');
        }
        i = end + 1;
    }
    t.len()
}

/// Copies `t[i..end]` (a line of a comment or a here-document body, where quotes mean
/// nothing) into `body`, rendering its placeholders for `ctx`; returns `end`.
fn copy_line(
    t: &str,
    mut i: usize,
    end: usize,
    ctx: Ctx,
    body: &mut String,
    placeholder: &mut impl FnMut(usize, Ctx, &mut String) -> usize,
) -> usize {
    while i < end {
        if t[i..].starts_with("{{") {
            body.push('{');
            i += 2;
        } else if t[i..].starts_with("}}") {
            body.push('}');
            i += 2;
        } else if t[i..].starts_with('{') {
            i = placeholder(i, ctx, body).min(end);
        } else if t[i..].starts_with('\\') && i + 1 < end {
            // An escaped character stays with its backslash (`\$` is not an expansion).
            let n = t[i + 1..].chars().next().map_or(0, char::len_utf8);
            body.push_str(&t[i..i + 1 + n]);
            i += 1 + n;
        } else {
            let n = t[i..].chars().next().map_or(1, char::len_utf8);
            body.push_str(&t[i..i + n]);
            i += n;
        }
    }
    end
}

/// `web_user` -> `FLEET_ARG_WEB_USER` (placeholder names are checked at load: lowercase and
/// `_`).
fn env_name(placeholder: &str) -> String {
    let clean: String = placeholder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("FLEET_ARG_{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_placeholders_become_variable_references() {
        let out = render("cd {root} && echo {{literal}} {site} {root}", |k| match k {
            "root" => "/var/www/o'brien site".into(),
            _ => "s1".into(),
        })
        .unwrap();
        assert_eq!(
            out,
            "FLEET_ARG_ROOT='/var/www/o'\\''brien site'; export FLEET_ARG_ROOT; FLEET_ARG_SITE=s1; export FLEET_ARG_SITE; \
             cd \"${FLEET_ARG_ROOT}\" && echo {literal} \"${FLEET_ARG_SITE}\" \"${FLEET_ARG_ROOT}\""
        );
    }

    const EVIL: &str = "/x y/*/$(touch PWNED1)`touch PWNED2`;touch PWNED3 'q' \"d\" \\ # {a}";
    const SPACED: &str = "/srv/drupal 7/x";

    /// Runs the rendering of `t` (every placeholder `value`) in a fresh directory:
    /// what it printed, and that it created nothing (no part of the value ran).
    #[track_caller]
    fn run(t: &str, value: &str) -> String {
        let script = render(t, |_| value.to_owned()).unwrap_or_else(|e| panic!("{t}: {e}"));
        let dir = tempfile::tempdir().unwrap();
        // Here-strings are bash's, not POSIX sh's.
        let shell = if t.contains("<<<") { "bash" } else { "sh" };
        let out = std::process::Command::new(shell)
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{t}\n{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(
            left.is_empty(),
            "{t}: part of the value ran: {left:?}\n{script}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Any value, however hostile, outside quotes: one word, exactly, none of it run.
    #[test]
    fn any_value_is_one_word_outside_quotes() {
        let exact = format!("[{EVIL}]\n");
        for t in [
            "printf '[%s]\\n' {uri}",
            "x={uri}; printf '[%s]\\n' \"$x\"",
            "printf '[%s]\\n' \"$(printf '%s' {uri})\"",
            "printf '[%s]\\n' \"`printf '%s' {uri}`\"",
            "printf '[%s]\\n' \"$( (printf '%s' {uri}) )\"",
            "# don't {{x}}\nprintf '[%s]\\n' {uri}",
            "echo $((1<<3)) >/dev/null\nprintf '[%s]\\n' {uri}",
            "[ $(( (1 << 2) + 1 )) -eq 5 ] && printf '[%s]\\n' {uri}",
            "grep -q . <<<{uri} && printf '[%s]\\n' {uri}\nprintf ''",
            "v=\"$(case x in x) printf '%s' {uri};; esac)\"; printf '[%s]\\n' \"$v\"",
        ] {
            assert_eq!(run(t, EVIL), exact, "{t}");
        }
    }

    /// Inside quotes or a here-document the value may be read again by another shell: a
    /// value with shell syntax is refused there, before anything runs.
    #[test]
    fn a_value_with_shell_syntax_is_refused_inside_quotes() {
        for t in [
            "printf '[%s]\\n' \"{uri}\"",
            "printf '[%s]\\n' '{uri}'",
            "sh -c 'printf \"[%s]\\n\" {uri}'",
            "sh -c \"cd '{uri}'\"",
            "sh <<EOF\nprintf '[%s]\\n' {uri}\nEOF",
            "sh <<'EOF'\nprintf '[%s]\\n' {uri}\nEOF",
            "cat <<EOF\ndirs: $(ls -d {uri})\nEOF",
        ] {
            let err = render(t, |_| EVIL.to_owned()).expect_err(t);
            assert!(err.contains("`{uri}` stands inside quotes"), "{t}: {err}");
        }
    }

    /// A value with spaces, wherever an author would quote it: exactly the value, for the
    /// shell that reads it (also a second shell, when the author quoted it for that one).
    #[test]
    fn a_spaced_value_is_exact_in_every_quoting_context() {
        let exact = format!("[{SPACED}]\n");
        for t in [
            "printf '[%s]\\n' {root}",
            "printf '[%s]\\n' \"{root}\"",
            "printf '[%s]\\n' '{root}'",
            "test -d \"{root}/sites\" || printf '[%s]\\n' \"{root}\"",
            "sh -c 'printf \"[%s]\\n\" \"{root}\"'",
            "sh -c \"printf '[%s]\\n' '{root}'\"",
            "sh <<EOF\nprintf '[%s]\\n' '{root}'\nEOF",
            "sh <<'EOF'\nprintf '[%s]\\n' '{root}'\nEOF",
            "sh <<-EOF\n\tprintf '[%s]\\n' \"{root}\"\n\tEOF",
            "cat <<A; cat <<B\n{root}\nA\nB\n",
            "v=\"$(case x in x) printf '%s' \"{root}\";; esac)\"; printf '[%s]\\n' \"$v\"",
        ] {
            let want = if t.starts_with("cat <<A") {
                format!("{SPACED}\n")
            } else {
                exact.clone()
            };
            assert_eq!(run(t, SPACED), want, "{t}");
        }
    }

    #[test]
    fn heredoc_operators_parse() {
        let (d, n) = heredoc_operator("<<-'E O' rest");
        let d = d.unwrap();
        assert_eq!(
            (d.delimiter.as_str(), d.quoted, d.strip_tabs, n),
            ("E O", true, true, 8)
        );
        let (d, _) = heredoc_operator("<< EOF\n");
        let d = d.unwrap();
        assert_eq!(
            (d.delimiter.as_str(), d.quoted, d.strip_tabs),
            ("EOF", false, false)
        );
    }
}
