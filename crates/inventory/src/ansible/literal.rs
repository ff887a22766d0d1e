//! Python's `ast.literal_eval` for the values of an INI inventory, as Ansible's INI plugin
//! applies it: numbers, `True`/`False`/`None`, quoted strings, and lists, tuples, sets and
//! dicts of them; a `#` outside a string starts a comment. What it cannot read is not an
//! error: Ansible then keeps the text as a string.

use super::model::Val;

/// `text` read as a Python literal, or `None` when Python would refuse it (Ansible then
/// keeps `text` as it is).
pub(crate) fn literal_eval(text: &str) -> Option<Val> {
    let mut p = Reader {
        s: text.chars().collect(),
        i: 0,
        depth: 0,
    };
    let first = p.expr()?;
    p.skip();
    // `1, 2` is a tuple even without parentheses.
    let v = if p.eat(',') {
        let mut items = vec![first];
        items.extend(p.items(None)?);
        Val::List(items)
    } else {
        first
    };
    p.skip();
    (p.i == p.s.len()).then_some(v)
}

/// Deepest nesting read (Python stops too, with a `RecursionError`).
const MAX_DEPTH: usize = 100;

struct Reader {
    s: Vec<char>,
    i: usize,
    depth: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.i += 1;
            } else if c == '#' {
                self.i = self.s.len();
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Val> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let v = self.value();
        self.depth -= 1;
        v
    }

    fn value(&mut self) -> Option<Val> {
        self.skip();
        let c = self.peek()?;
        match c {
            '[' => {
                self.i += 1;
                Some(Val::List(self.items(Some(']'))?))
            }
            '(' => {
                self.i += 1;
                self.skip();
                if self.eat(')') {
                    return Some(Val::List(Vec::new()));
                }
                let first = self.expr()?;
                if self.eat(')') {
                    // `(x)` is `x`, not a tuple.
                    return Some(first);
                }
                if !self.eat(',') {
                    return None;
                }
                let mut items = vec![first];
                items.extend(self.items(Some(')'))?);
                Some(Val::List(items))
            }
            '{' => {
                self.i += 1;
                self.dict_or_set()
            }
            '+' | '-' => {
                self.i += 1;
                self.skip();
                match self.number()? {
                    Val::Int(n) if c == '-' => n.checked_neg().map(Val::Int),
                    Val::Float(f) if c == '-' => Some(Val::Float(-f)),
                    v => Some(v),
                }
            }
            '.' if self.s.get(self.i + 1..self.i + 3) == Some(&['.', '.']) => {
                // `...` (Ellipsis): Ansible turns it back into the text.
                self.i += 3;
                Some(Val::Str("...".into()))
            }
            c if c.is_ascii_digit() || c == '.' => self.number(),
            '\'' | '"' => self.strings(),
            c if c.is_alphabetic() || c == '_' => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.i += 1;
                }
                let word: String = self.s[start..self.i].iter().collect();
                match word.as_str() {
                    "True" => Some(Val::Bool(true)),
                    "False" => Some(Val::Bool(false)),
                    "None" => Some(Val::Null),
                    w if w.len() <= 2
                        && w.chars().all(|c| "rRuUbB".contains(c))
                        && matches!(self.peek(), Some('\'' | '"')) =>
                    {
                        self.i = start;
                        self.strings()
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Comma-separated values up to `close` (a trailing comma allowed), or to the end.
    fn items(&mut self, close: Option<char>) -> Option<Vec<Val>> {
        let mut out = Vec::new();
        loop {
            self.skip();
            match close {
                Some(c) if self.eat(c) => return Some(out),
                None if self.peek().is_none() => return Some(out),
                _ => {}
            }
            out.push(self.expr()?);
            if self.eat(',') {
                continue;
            }
            return match close {
                Some(c) => self.eat(c).then_some(out),
                None => Some(out),
            };
        }
    }

    fn dict_or_set(&mut self) -> Option<Val> {
        if self.eat('}') {
            return Some(Val::Map(Vec::new()));
        }
        let first = self.expr()?;
        if self.eat(':') {
            let mut map = vec![(first.key_text()?, self.expr()?)];
            loop {
                if self.eat('}') {
                    return Some(Val::Map(map));
                }
                if !self.eat(',') {
                    return None;
                }
                if self.eat('}') {
                    return Some(Val::Map(map));
                }
                let k = self.expr()?.key_text()?;
                if !self.eat(':') {
                    return None;
                }
                let v = self.expr()?;
                match map.iter_mut().find(|(old, _)| *old == k) {
                    Some((_, old)) => *old = v,
                    None => map.push((k, v)),
                }
            }
        }
        // A set: Ansible makes it a list.
        let mut items = vec![first];
        if self.eat(',') {
            items.extend(self.items(Some('}'))?);
            return Some(Val::List(items));
        }
        self.eat('}').then_some(Val::List(items))
    }

    fn number(&mut self) -> Option<Val> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            || (matches!(self.peek(), Some('+' | '-'))
                && matches!(self.s.get(self.i.wrapping_sub(1)), Some('e' | 'E'))
                && !self.s[start..self.i]
                    .iter()
                    .any(|c| matches!(c, 'x' | 'X' | 'b' | 'B' | 'o' | 'O')))
        {
            self.i += 1;
        }
        let text: String = self.s[start..self.i].iter().collect();
        parse_number(&text)
    }

    /// One or more adjacent string literals (`'a' "b"` is `'ab'`).
    fn strings(&mut self) -> Option<Val> {
        let mut out = String::new();
        let mut any = false;
        loop {
            self.skip();
            let start = self.i;
            let mut raw = false;
            while let Some(c) = self.peek().filter(|c| "rRuUbB".contains(*c)) {
                raw |= c == 'r' || c == 'R';
                self.i += 1;
            }
            let Some(q) = self.peek().filter(|c| *c == '\'' || *c == '"') else {
                self.i = start;
                return any.then_some(Val::Str(out));
            };
            self.i += 1;
            let triple = self.s.get(self.i..self.i + 2) == Some(&[q, q]);
            if triple {
                self.i += 2;
            }
            loop {
                let c = self.peek()?;
                if c == q && (!triple || self.s.get(self.i..self.i + 3) == Some(&[q, q, q])) {
                    self.i += if triple { 3 } else { 1 };
                    break;
                }
                self.i += 1;
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                let e = self.peek()?;
                self.i += 1;
                if raw {
                    out.push('\\');
                    out.push(e);
                    continue;
                }
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0'..='7' => {
                        let mut n = e.to_digit(8)?;
                        for _ in 0..2 {
                            match self.peek().and_then(|c| c.to_digit(8)) {
                                Some(d) => {
                                    n = n * 8 + d;
                                    self.i += 1;
                                }
                                None => break,
                            }
                        }
                        out.push(char::from_u32(n)?);
                    }
                    'x' | 'u' | 'U' => {
                        let len = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = self.s.get(self.i..self.i + len)?.iter().collect();
                        self.i += len;
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' | '\'' | '"' => out.push(e),
                    '\n' => {}
                    // Python keeps an unknown escape as written.
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            any = true;
        }
    }
}

/// A Python int or float literal (`1_000`, `0x1f`, `0o17`, `0b11`, `1.5`, `.5`, `1e3`);
/// `None` for what Python refuses (`08`) or makes complex (`1j`), or an int beyond 64 bits.
fn parse_number(t: &str) -> Option<Val> {
    let lower = t.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            return i64::from_str_radix(&underscores(digits)?, radix)
                .ok()
                .map(Val::Int);
        }
    }
    if lower.ends_with('j') {
        return None;
    }
    if lower.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        let digits = underscores(&lower)?;
        // Python 3 refuses `08` (and any other leading zero but in `0`, `00`).
        if digits.len() > 1 && digits.starts_with('0') && digits.bytes().any(|b| b != b'0') {
            return None;
        }
        return digits.parse().ok().map(Val::Int);
    }
    let ok = lower
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'e' | b'+' | b'-'));
    if !ok || !lower.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let clean = underscores(&lower)?;
    clean.parse::<f64>().ok().map(Val::Float)
}

/// `s` without the `_` Python allows between digits, or `None` where it is misplaced.
fn underscores(s: &str) -> Option<String> {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    Some(s.replace('_', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(input: &str, expected: Option<Val>) {
        assert_eq!(literal_eval(input), expected, "{input}");
    }

    fn s(v: &str) -> Option<Val> {
        Some(Val::Str(v.into()))
    }

    #[test]
    fn python_literals() {
        case("22", Some(Val::Int(22)));
        case("-5", Some(Val::Int(-5)));
        case("1_000", Some(Val::Int(1000)));
        case("0x1F", Some(Val::Int(31)));
        case("0o17", Some(Val::Int(15)));
        case("1.5", Some(Val::Float(1.5)));
        case(".5", Some(Val::Float(0.5)));
        case("1e3", Some(Val::Float(1000.0)));
        case("2.5e-3", Some(Val::Float(0.0025)));
        case("True", Some(Val::Bool(true)));
        case("False", Some(Val::Bool(false)));
        case("None", Some(Val::Null));
        case("'a b'", s("a b"));
        case("\"it's\"", s("it's"));
        case("'03#pa33w0rd'", s("03#pa33w0rd"));
        case("'a\\nb'", s("a\nb"));
        case("r'a\\nb'", s("a\\nb"));
        case("u'x' 'y'", s("xy"));
        case("'''tri'''", s("tri"));
        case("23 # a comment", Some(Val::Int(23)));
        case(
            "[1, 'a', [True]]",
            Some(Val::List(vec![
                Val::Int(1),
                Val::Str("a".into()),
                Val::List(vec![Val::Bool(true)]),
            ])),
        );
        case("(1,)", Some(Val::List(vec![Val::Int(1)])));
        case("(1)", Some(Val::Int(1)));
        case("1, 2", Some(Val::List(vec![Val::Int(1), Val::Int(2)])));
        case(
            "{'a': 1, 2: 'b',}",
            Some(Val::Map(vec![
                ("a".into(), Val::Int(1)),
                ("2".into(), Val::Str("b".into())),
            ])),
        );
        case(
            "{'x', 'y'}",
            Some(Val::List(vec![Val::Str("x".into()), Val::Str("y".into())])),
        );
        case("{}", Some(Val::Map(vec![])));
        case("[]", Some(Val::List(vec![])));
    }

    #[test]
    fn what_python_refuses_stays_text() {
        for input in [
            "yes",
            "true",
            "hello",
            "08",
            "022",
            "1j",
            "10.0.0.1",
            "a=b",
            "[1, 2",
            "{'a': 1",
            "'open",
            "-x",
            "99999999999999999999",
            "1 2",
            "x # comment",
            "",
            "{{ var }}",
            &"[".repeat(100_000),
        ] {
            case(input, None);
        }
    }
}
