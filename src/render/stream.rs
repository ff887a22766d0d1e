//! Live output for `fleet exec --stream`: every host's lines as they arrive, each prefixed
//! with the host's name, whole lines only.
//!
//! Each host assembles its own lines and hands complete ones to one writer thread, which
//! writes each batch whole: lines of different hosts never mix mid-line however the hosts'
//! chunks interleave, and stdout and stderr lines keep the order they came in. A host's
//! stdout goes to fleet's stdout as `name: line`, its stderr to fleet's stderr as
//! `name! line` (the `!` marks stderr also when both go to one file). On a terminal each host
//! gets a colour and control characters are shown escaped, so a host cannot drive the
//! operator's terminal; piped output is the host's bytes as they are.
//!
//! When the reader is slow (a pager waiting on its first screen), the lines waiting for it
//! are bounded: past [`MAX_PENDING`] bytes a host's output is not read until they drain (its
//! SSH window fills, and the host waits), while its time limit and Ctrl-C still work.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fleet_remote_exec::{Sink, Stream};
use futures::future::BoxFuture;
use serde_json::json;

use super::{PipeSafe, escape_controls};

/// A line longer than this is written in pieces, each marked as continued, so one host
/// printing without newlines cannot hold unbounded memory.
const MAX_LINE: usize = 64 * 1024;

/// Bytes of lines written by hosts and not yet by the writer, past which hosts wait.
const MAX_PENDING: usize = 1 << 20;

/// How a line ended, when not with a newline.
const CONTINUED: &str = " [continued]";
const NO_NEWLINE: &str = " [no newline at end]";

enum Msg {
    Write(Stream, Vec<u8>),
    Done,
}

/// What the writer has not written yet, and the wake-up for hosts waiting on it.
#[derive(Default)]
struct Flow {
    pending: AtomicUsize,
    drained: tokio::sync::Notify,
}

/// Where the streamed lines go, shared by every host.
pub(crate) struct Printer {
    tx: std::sync::mpsc::Sender<Msg>,
    flow: Arc<Flow>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Every prefix padded to the longest host name.
    width: usize,
    style: StreamStyle,
}

/// How the printer shows the lines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamStyle {
    /// One JSON object per line on stdout instead of prefixed text.
    pub(crate) json: bool,
    pub(crate) color_stdout: bool,
    pub(crate) color_stderr: bool,
    /// Control characters shown escaped: the stream is a terminal.
    pub(crate) escape_stdout: bool,
    pub(crate) escape_stderr: bool,
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
        mut stdout: Box<dyn Write + Send>,
        mut stderr: Box<dyn Write + Send>,
        names: impl IntoIterator<Item = &'a str>,
        style: StreamStyle,
    ) -> Arc<Self> {
        let width = names
            .into_iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0);
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let flow = Arc::new(Flow::default());
        let f = flow.clone();
        let writer = std::thread::spawn(move || {
            while let Ok(Msg::Write(stream, bytes)) = rx.recv() {
                let out = match (stream, style.json) {
                    (Stream::Stderr, false) => &mut stderr,
                    _ => &mut stdout,
                };
                // A closed pipe or a hung-up terminal is tolerated by `PipeSafe`; any other
                // write error leaves those lines out, as there is nowhere left to say so.
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
                f.pending.fetch_sub(bytes.len(), Ordering::SeqCst);
                f.drained.notify_waiters();
            }
        });
        Arc::new(Self {
            tx,
            flow,
            writer: Mutex::new(Some(writer)),
            width,
            style,
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

    /// Writes what the hosts handed over and stops the writer; call once every host is done.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(Msg::Done);
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(w) = writer {
            let _ = w.join();
        }
    }

    fn write(&self, stream: Stream, bytes: Vec<u8>) {
        self.flow.pending.fetch_add(bytes.len(), Ordering::SeqCst);
        // Gone only once closed, when no host writes any more.
        let _ = self.tx.send(Msg::Write(stream, bytes));
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
    /// Formatted lines waiting to be handed to the writer.
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
        let st = p.style;
        let buf = &mut self.pending[slot(stream)];
        if st.json {
            let mut v = json!({
                "host": self.name,
                "stream": match stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
                "line": String::from_utf8_lossy(text),
            });
            match ending {
                NO_NEWLINE => v["partial"] = json!(true),
                CONTINUED => v["continued"] = json!(true),
                _ => {}
            }
            buf.extend_from_slice(v.to_string().as_bytes());
            buf.push(b'\n');
            return;
        }
        let (color, escape) = match stream {
            Stream::Stdout => (st.color_stdout, st.escape_stdout),
            Stream::Stderr => (st.color_stderr, st.escape_stderr),
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
        } else {
            buf.extend_from_slice(format!("{}{mark}{:pad$} ", self.name, "").as_bytes());
        }
        if escape {
            escape_controls(text, buf);
        } else {
            buf.extend_from_slice(text);
        }
        if color && !ending.is_empty() {
            buf.extend_from_slice(format!("\x1b[2m{ending}\x1b[0m").as_bytes());
        } else {
            buf.extend_from_slice(ending.as_bytes());
        }
        buf.push(b'\n');
    }

    fn flush(&mut self, stream: Stream) {
        let buf = std::mem::take(&mut self.pending[slot(stream)]);
        if !buf.is_empty() {
            self.printer.write(stream, buf);
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
        // Past the limit (not at it: the newline may be the next byte to come), a piece
        // ending on a character boundary.
        while self.partial[i].len() > MAX_LINE {
            let cut = char_boundary(&self.partial[i], MAX_LINE);
            let rest = self.partial[i].split_off(cut);
            let piece = std::mem::replace(&mut self.partial[i], rest);
            self.line(stream, &piece, CONTINUED);
        }
        self.flush(stream);
    }

    fn ready(&mut self) -> BoxFuture<'_, ()> {
        let flow = self.printer.flow.clone();
        Box::pin(async move {
            loop {
                let drained = flow.drained.notified();
                tokio::pin!(drained);
                // Registered before the check, so a drain in between is not missed.
                drained.as_mut().enable();
                if flow.pending.load(Ordering::SeqCst) < MAX_PENDING {
                    return;
                }
                drained.await;
            }
        })
    }
}

impl Drop for HostLines {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The last position at or before `at` that does not split a UTF-8 character (`at` itself
/// when the bytes there are not UTF-8 continuations).
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let mut cut = at;
    // A UTF-8 character has at most 3 continuation bytes.
    while cut > at.saturating_sub(3) && cut < bytes.len() && bytes[cut] & 0xc0 == 0x80 {
        cut -= 1;
    }
    if cut == 0 || (cut < bytes.len() && bytes[cut] & 0xc0 == 0x80) {
        at
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines waiting beyond the limit hold a host until the writer drains them.
    #[tokio::test]
    async fn a_slow_reader_holds_hosts_back_until_it_reads() {
        struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>, Shared);
        impl Write for Gate {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let (open, cv) = &*self.0;
                let mut o = open.lock().unwrap();
                while !*o {
                    o = cv.wait(o).unwrap();
                }
                self.1.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let out = Shared::default();
        let p = Printer::to(
            Box::new(Gate(gate.clone(), out.clone())),
            Box::new(Shared::default()),
            ["h"],
            PLAIN,
        );
        let mut h = p.host(0, "h");
        let n = MAX_PENDING / MAX_LINE + 1;
        for _ in 0..n {
            h.output(Stream::Stdout, &vec![b'x'; MAX_LINE]);
            h.output(Stream::Stdout, b"\n");
        }
        let held = tokio::time::timeout(std::time::Duration::from_millis(200), h.ready()).await;
        assert!(held.is_err(), "ready while the reader reads nothing");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        tokio::time::timeout(std::time::Duration::from_secs(10), h.ready())
            .await
            .expect("ready once the reader read");
        drop(h);
        p.close();
        assert_eq!(out.0.lock().unwrap().len(), n * (3 + MAX_LINE + 1));
    }

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
        p.close();
        let text = |s: Shared| String::from_utf8(s.0.lock().unwrap().clone()).unwrap();
        (text(out), text(err))
    }

    const PLAIN: StreamStyle = StreamStyle {
        json: false,
        color_stdout: false,
        color_stderr: false,
        escape_stdout: false,
        escape_stderr: false,
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
        // A line of exactly the limit whose newline comes in the next chunk is one line.
        let exact = vec![b'y'; MAX_LINE];
        let (out, _) = lines(
            &["h"],
            PLAIN,
            "h",
            &[(Stream::Stdout, &exact), (Stream::Stdout, b"\nz\n")],
        );
        assert_eq!(out.lines().count(), 2, "{}", &out[out.len() - 40..]);
        assert!(!out.contains(CONTINUED));
        // A piece never splits a character.
        let mut wide = vec![b'a'; MAX_LINE - 1];
        wide.extend_from_slice("é and more".as_bytes());
        let (out, _) = lines(&["h"], PLAIN, "h", &[(Stream::Stdout, &wide)]);
        let first = out.lines().next().unwrap();
        assert!(
            first.ends_with(&format!("a{CONTINUED}")),
            "{}",
            &first[first.len() - 20..]
        );
        assert!(
            out.contains("h: é and more [no newline at end]"),
            "{}",
            &out[out.len() - 60..]
        );
    }

    #[test]
    fn a_terminal_sees_control_characters_escaped() {
        let style = StreamStyle {
            json: false,
            color_stdout: true,
            color_stderr: true,
            escape_stdout: true,
            escape_stderr: true,
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
        // C1 controls (here CSI, U+009B) too.
        assert_eq!(crate::render::escaped("a\u{9b}2Jb"), "aM-^[2Jb");
        assert_eq!(
            crate::render::escaped("é\u{a0}"),
            "é\u{a0}",
            "printable text is left as it is"
        );
        // A terminal without colour (NO_COLOR) is still a terminal.
        let (out, _) = lines(
            &["h"],
            StreamStyle {
                color_stdout: false,
                ..style
            },
            "h",
            &[(Stream::Stdout, b"\x1b[2J\n")],
        );
        assert_eq!(out, "h: ^[[2J\n");
    }

    #[test]
    fn json_lines_carry_host_stream_and_text() {
        let style = StreamStyle {
            json: true,
            color_stdout: true,
            color_stderr: false,
            escape_stdout: true,
            escape_stderr: false,
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
        let big = vec![b'q'; MAX_LINE + 1];
        let (out, _) = lines(&["h"], style, "h", &[(Stream::Stdout, &big)]);
        let v: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            (v[0]["continued"].clone(), v[0].get("partial")),
            (json!(true), None)
        );
        assert_eq!(v[1]["partial"], json!(true));
    }
}
