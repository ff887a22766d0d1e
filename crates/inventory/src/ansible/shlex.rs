//! Python's `shlex.split(line, comments=True)` (POSIX mode), which Ansible uses to split an
//! INI host line and which fleet uses for `ansible_ssh_common_args`: whitespace separates
//! words, `'...'` is literal, `"..."` keeps a backslash except before `"` or `\`, a backslash
//! outside quotes escapes any character, and `#` outside quotes ends the line, even inside a
//! word.

/// One word of a split line, with the 0-based character index where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) start: usize,
}

/// The words of `line`.
///
/// # Errors
///
/// An unclosed quote or a backslash at the end, as Python words them.
pub(crate) fn split(line: &str) -> Result<Vec<Word>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Space,
        Word,
        Quote(char),
        Escape { back_to: Option<char> },
    }
    let mut out = Vec::new();
    let mut state = State::Space;
    let mut token = String::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in line.chars().enumerate() {
        match state {
            State::Space | State::Word => {
                if c.is_whitespace() || c == '#' {
                    if state == State::Word {
                        out.push(Word {
                            text: std::mem::take(&mut token),
                            start,
                        });
                        quoted = false;
                    }
                    state = State::Space;
                    if c == '#' {
                        return Ok(out);
                    }
                    continue;
                }
                if state == State::Space {
                    start = i;
                }
                state = match c {
                    '\'' | '"' => State::Quote(c),
                    '\\' => State::Escape { back_to: None },
                    _ => {
                        token.push(c);
                        State::Word
                    }
                };
            }
            State::Quote(q) => {
                quoted = true;
                if c == q {
                    state = State::Word;
                } else if c == '\\' && q == '"' {
                    state = State::Escape { back_to: Some(q) };
                } else {
                    token.push(c);
                }
            }
            State::Escape { back_to } => {
                // Inside double quotes only `"` and `\` are escaped; the backslash stays
                // before anything else.
                if let Some(q) = back_to
                    && c != q
                    && c != '\\'
                {
                    token.push('\\');
                }
                token.push(c);
                state = match back_to {
                    Some(q) => State::Quote(q),
                    None => State::Word,
                };
            }
        }
    }
    match state {
        State::Quote(_) => Err("no closing quotation".into()),
        State::Escape { .. } => Err("no escaped character".into()),
        State::Word => {
            out.push(Word { text: token, start });
            Ok(out)
        }
        State::Space => {
            if quoted {
                out.push(Word { text: token, start });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(line: &str, expected: &[&str]) {
        let words: Vec<String> = split(line).unwrap().into_iter().map(|w| w.text).collect();
        assert_eq!(words, expected, "{line}");
    }

    #[test]
    fn words() {
        case("a b  c", &["a", "b", "c"]);
        case("h x='a b' y=\"c d\"", &["h", "x=a b", "y=c d"]);
        case("h pass=ab#c d", &["h", "pass=ab"]);
        case("h x=\"'03#pa33w0rd'\"", &["h", "x='03#pa33w0rd'"]);
        case("a\\ b", &["a b"]);
        case("\"a\\\"b\\n\"", &["a\"b\\n"]);
        case("'a\\b'", &["a\\b"]);
        case("x='' y", &["x=", "y"]);
        case("''", &[""]);
        case("# all comment", &[]);
        case("", &[]);
    }

    #[test]
    fn starts_and_errors() {
        let w = split("  web01  ansible_port=22").unwrap();
        assert_eq!((w[0].start, w[1].start), (2, 9));
        assert_eq!(split("a 'b").unwrap_err(), "no closing quotation");
        assert_eq!(split("a \\").unwrap_err(), "no escaped character");
    }
}
