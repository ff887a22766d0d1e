//! Live output for `fleet exec --stream`: every host's lines as they arrive, each prefixed
//! with the host's name, whole lines only.
//!
//! Each host assembles its own lines; a complete line is written with one locked write, so
//! lines of different hosts never mix mid-line however the hosts' chunks interleave. A host's
//! stdout goes to fleet's stdout as `name: line`, its stderr to fleet's stderr as
//! `name! line` (the `!` marks stderr also when both go to one file). On a terminal each host
//! gets a colour and control characters are shown escaped, so a host cannot drive the
//! operator's terminal; piped output is the host's bytes as they are.

use std::io::Write;
use std::sync::{Arc, Mutex};

use fleet_remote_exec::{Sink, Stream};
use serde_json::json;

use super::PipeSafe;

/// A line longer than this is written in pieces, each marked as continued, so one host
/// printing without newlines cannot hold unbounded memory.
const MAX_LINE: usize = 64 * 1024;

/// How a line ended, when not with a newline.
const CONTINUED: &str = " [continued]";
const NO_NEWLINE: &str = " [no newline at end]";

/// Where the streamed lines go, shared by every host.
pub(crate) struct Printer {
    out: Mutex<Outputs>,
    /// Every prefix padded to the longest host name.
    width: usize,
    json: bool,
    color_stdout: bool,
    color_stderr: bool,
}

struct Outputs {
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
}

/// How the printer shows the lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamStyle {
    /// One JSON object per line on stdout instead of prefixed text.
    pub(crate) json: bool,
    pub(crate) color_stdout: bool,
    pub(crate) color_stderr: bool,
}

impl Printer {
    /// A printer to fleet's stdout and stderr.
    pub(crate) fn new<'a>(
        names: impl IntoIterator<Item = &'a str>,
        style: StreamStyle,
    ) -> Arc<Self> {
        Self::to(
            Box::new(PipeSafe::new(std::io::stdout())),
            Box::new(PipeSafe::new(std::io::stderr())),
            names,
            style,
        )
    }

    fn to<'a>(
        stdout: Box<dyn Write + Send>,
        stderr: Box<dyn Write + Send>,
        names: impl IntoIterator<Item = &'a str>,
        style: StreamStyle,
    ) -> Arc<Self> {
        let width = names
            .into_iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0);
        Arc::new(Self {
            out: Mutex::new(Outputs { stdout, stderr }),
            width,
            json: style.json,
            color_stdout: style.color_stdout,
            color_stderr: style.color_stderr,
        })
    }

    /// The sink of host number `index` (its colour) called `name`.
    pub(crate) fn host(self: &Arc<Self>, index: usize, name: &str) -> HostLines {
        HostLines {
            printer: self.clone(),
            name: name.to_owned(),
            color: PALETTE[index % PALETTE.len()],
            partial: [Vec::new(), Vec::new()],
            pending: [Vec::new(), Vec::new()],
        }
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A closed pipe or a hung-up terminal is tolerated by `PipeSafe`; any other write
        // error leaves that line out, as there is nowhere left to say so.
        let _ = match (stream, self.json) {
            (Stream::Stderr, false) => out
                .stderr
                .write_all(bytes)
                .and_then(|()| out.stderr.flush()),
            _ => out
                .stdout
                .write_all(bytes)
                .and_then(|()| out.stdout.flush()),
        };
    }
}

/// Host colours on a terminal (SGR codes), by host order.
const PALETTE: [&str; 6] = ["36", "33", "35", "32", "34", "96"];

/// One host's line assembler: a [`Sink`] for its command.
pub(crate) struct HostLines {
    printer: Arc<Printer>,
    name: String,
    color: &'static str,
    /// The line each stream has started and not ended yet.
    partial: [Vec<u8>; 2],
    /// Formatted lines waiting for the one write that prints them.
    pending: [Vec<u8>; 2],
}

fn slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl HostLines {
    /// Writes what is left of a line that never ended, marked, and forgets the host's state.
    pub(crate) fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[slot(stream)]);
            if !rest.is_empty() {
                self.line(stream, &rest, NO_NEWLINE);
            }
            self.flush(stream);
        }
    }

    fn line(&mut self, stream: Stream, text: &[u8], ending: &str) {
        let p = &self.printer;
        let buf = &mut self.pending[slot(stream)];
        if p.json {
            let mut v = json!({
                "host": self.name,
                "stream": match stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
                "line": String::from_utf8_lossy(text),
            });
            if !ending.is_empty() {
                v["partial"] = json!(true);
            }
            buf.extend_from_slice(v.to_string().as_bytes());
            buf.push(b'\n');
            return;
        }
        let color = match stream {
            Stream::Stdout => p.color_stdout,
            Stream::Stderr => p.color_stderr,
        };
        let mark = match stream {
            Stream::Stdout => ':',
            Stream::Stderr => '!',
        };
        let pad = p.width.saturating_sub(self.name.chars().count());
        if color {
            let mark_color = if mark == '!' { "1;31" } else { self.color };
            buf.extend_from_slice(
                format!(
                    "\x1b[{}m{}\x1b[0m\x1b[{mark_color}m{mark}\x1b[0m{:pad$} ",
                    self.color, self.name, ""
                )
                .as_bytes(),
            );
            escape_controls(text, buf);
            if !ending.is_empty() {
                buf.extend_from_slice(format!("\x1b[2m{ending}\x1b[0m").as_bytes());
            }
        } else {
            buf.extend_from_slice(format!("{}{mark}{:pad$} ", self.name, "").as_bytes());
            buf.extend_from_slice(text);
            buf.extend_from_slice(ending.as_bytes());
        }
        buf.push(b'\n');
    }

    fn flush(&mut self, stream: Stream) {
        let buf = std::mem::take(&mut self.pending[slot(stream)]);
        if !buf.is_empty() {
            self.printer.write(stream, &buf);
        }
    }
}

impl Sink for HostLines {
    fn output(&mut self, stream: Stream, mut data: &[u8]) {
        let i = slot(stream);
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[i]);
            line.extend_from_slice(&data[..nl]);
            // A CRLF host's line ends at the newline as well.
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.line(stream, &line, "");
            data = &data[nl + 1..];
        }
        self.partial[i].extend_from_slice(data);
        while self.partial[i].len() >= MAX_LINE {
            let rest = self.partial[i].split_off(MAX_LINE);
            let piece = std::mem::replace(&mut self.partial[i], rest);
            self.line(stream, &piece, CONTINUED);
        }
        self.flush(stream);
    }
}

impl Drop for HostLines {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Copies `text` with every control character but tab shown as `^X` (ESC as `^[`), so a
/// host's output cannot move the cursor, retitle the window or change colours.
fn escape_controls(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            b'\t' => out.push(b),
            0..=0x1f => out.extend_from_slice(&[b'^', b + 0x40]),
            0x7f => out.extend_from_slice(b"^?"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What host `name` prints for `chunks` on a printer sized for `names` in `style`:
    /// (stdout, stderr).
    fn lines(
        names: &[&str],
        style: StreamStyle,
        name: &str,
        chunks: &[(Stream, &[u8])],
    ) -> (String, String) {
        let (out, err) = (Shared::default(), Shared::default());
        let p = Printer::to(
            Box::new(out.clone()),
            Box::new(err.clone()),
            names.iter().copied(),
            style,
        );
        let mut h = p.host(0, name);
        for (stream, chunk) in chunks {
            h.output(*stream, chunk);
        }
        drop(h);
        let text = |s: Shared| String::from_utf8(s.0.lock().unwrap().clone()).unwrap();
        (text(out), text(err))
    }

    const PLAIN: StreamStyle = StreamStyle {
        json: false,
        color_stdout: false,
        color_stderr: false,
    };

    #[test]
    fn lines_are_whole_prefixed_and_aligned() {
        let (out, err) = lines(
            &["h1", "web-long"],
            PLAIN,
            "h1",
            &[
                (Stream::Stdout, b"one\ntw"),
                (Stream::Stderr, b"oops"),
                (Stream::Stdout, b"o\r\nthree"),
                (Stream::Stderr, b"!\n"),
            ],
        );
        assert_eq!(
            out,
            "h1:       one\nh1:       two\nh1:       three [no newline at end]\n"
        );
        assert_eq!(err, "h1!       oops!\n");
    }

    #[test]
    fn endless_lines_come_in_marked_pieces() {
        let big = vec![b'x'; MAX_LINE * 2 + 10];
        let (out, _) = lines(&["h"], PLAIN, "h", &[(Stream::Stdout, &big)]);
        let ends: Vec<&str> = out.lines().map(|l| &l[l.len() - 30..]).collect();
        assert_eq!(ends.len(), 3);
        assert!(
            ends[0].ends_with(CONTINUED) && ends[1].ends_with(CONTINUED),
            "{ends:?}"
        );
        assert!(out.ends_with("xxxxxxxxxx [no newline at end]\n"));
        assert_eq!(
            out.len(),
            big.len() + 3 * 4 + 2 * CONTINUED.len() + NO_NEWLINE.len()
        );
    }

    #[test]
    fn a_terminal_sees_control_characters_escaped() {
        let style = StreamStyle {
            json: false,
            color_stdout: true,
            color_stderr: true,
        };
        let (out, _) = lines(
            &["h"],
            style,
            "h",
            &[(Stream::Stdout, b"\x1b]0;pwned\x07\tok\n")],
        );
        assert!(out.contains("^[]0;pwned^G\tok"), "{out:?}");
        assert_eq!(
            out.matches('\x1b').count(),
            4,
            "only fleet's own colours: {out:?}"
        );
    }

    #[test]
    fn json_lines_carry_host_stream_and_text() {
        let style = StreamStyle {
            json: true,
            color_stdout: true,
            color_stderr: false,
        };
        let (out, err) = lines(&["h"], style, "h", &[(Stream::Stderr, b"a\xffb\nrest")]);
        assert!(err.is_empty(), "JSON goes to stdout");
        let v: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            v[0],
            json!({"host": "h", "stream": "stderr", "line": "a\u{fffd}b"})
        );
        assert_eq!(
            v[1],
            json!({"host": "h", "stream": "stderr", "line": "rest", "partial": true})
        );
    }
}
