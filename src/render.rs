//! Everything the user sees: per-host reports, folded text, JSON, tables, progress.

pub(crate) mod html;
pub(crate) mod human;
pub(crate) mod json;
pub(crate) mod migrate;
pub(crate) mod stream;
pub(crate) mod upgrade;

use std::io::IsTerminal;
use std::time::Duration;

use fleet_remote_exec::{ExecError, ExecOutput, ExitStatus, Target};

/// What happened on one host.
#[derive(Debug)]
pub(crate) struct HostReport {
    pub(crate) name: String,
    pub(crate) endpoint: String,
    pub(crate) outcome: Outcome,
    /// Time to connect and authenticate, when that succeeded.
    pub(crate) connect: Option<Duration>,
    pub(crate) total: Duration,
}

impl HostReport {
    pub(crate) fn new(
        target: &Target,
        outcome: Outcome,
        connect: Option<Duration>,
        total: Duration,
    ) -> Self {
        Self {
            name: target.name.clone(),
            endpoint: target.endpoint(),
            outcome,
            connect,
            total,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Outcome {
    /// The command ran (whatever its exit status).
    Done(ExecOutput),
    /// Could not connect, verify or authenticate.
    Unreachable(ExecError),
    /// The connection failed while the command ran.
    Lost(ExecError),
    /// Aborted before the command started.
    Cancelled,
    /// Never started: the run was interrupted first.
    NotStarted,
    /// A bug: the host's task panicked.
    Internal(String),
}

/// The status word used in JSON and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Status {
    Ok,
    Failed,
    Timeout,
    Cancelled,
    Unreachable,
    Skipped,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Cancelled => "cancelled",
            Status::Unreachable => "unreachable",
            Status::Skipped => "skipped",
        }
    }
}

impl Outcome {
    pub(crate) fn status(&self) -> Status {
        match self {
            Outcome::Done(out) => match out.status {
                ExitStatus::Code(0) => Status::Ok,
                ExitStatus::TimedOut { .. } => Status::Timeout,
                ExitStatus::Cancelled { .. } => Status::Cancelled,
                _ => Status::Failed,
            },
            Outcome::Unreachable(_) => Status::Unreachable,
            Outcome::Lost(_) | Outcome::Internal(_) => Status::Failed,
            Outcome::Cancelled => Status::Cancelled,
            Outcome::NotStarted => Status::Skipped,
        }
    }

    pub(crate) fn is_ok(&self) -> bool {
        self.status() == Status::Ok
    }

    /// The reason a host did not produce a result, as one line.
    pub(crate) fn reason(&self) -> Option<String> {
        match self {
            Outcome::Done(_) => None,
            Outcome::Unreachable(e) | Outcome::Lost(e) => Some(error_chain(e)),
            Outcome::Cancelled => Some("cancelled before the command started".into()),
            Outcome::NotStarted => Some("not started: interrupted".into()),
            Outcome::Internal(why) => Some(format!("internal error: {why}")),
        }
    }
}

/// Joins an error and its sources with `: `, skipping a source whose text the parent already
/// includes (transparent wrappers).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Standard output that a reader may close early (`fleet exec ... | head`): once the pipe
/// is gone, further output is dropped instead of failing, so the run still ends as it should
/// (out-dir written, summary and warnings on stderr, the right exit status).
pub(crate) fn stdout() -> PipeSafe<std::io::StdoutLock<'static>> {
    PipeSafe::new(std::io::stdout().lock())
}

/// Standard error, with the same tolerance as [`stdout`] (`fleet exec ... 2>&1 | head`).
pub(crate) fn stderr() -> PipeSafe<std::io::StderrLock<'static>> {
    PipeSafe::new(std::io::stderr().lock())
}

/// See [`stdout`].
pub(crate) struct PipeSafe<W> {
    inner: W,
    closed: bool,
}

impl<W> PipeSafe<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            closed: false,
        }
    }

    /// Turns a broken pipe, or the I/O error of a terminal that hung up (SIGHUP: the
    /// operator's SSH session closed), into success and drops everything after it: the run
    /// still ends in the state its journal describes, with its exit status.
    fn tolerate<T>(&mut self, r: std::io::Result<T>, done: T) -> std::io::Result<T> {
        const EIO: i32 = 5;
        match r {
            Err(e)
                if e.kind() == std::io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(EIO) =>
            {
                self.closed = true;
                Ok(done)
            }
            r => r,
        }
    }
}

impl<W: std::io::Write> std::io::Write for PipeSafe<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.tolerate(r, buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush();
        self.tolerate(r, ())
    }
}

/// A progress bar on stderr when it is a terminal; hidden (and free) otherwise.
pub(crate) fn progress_bar(len: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::stderr().is_terminal() || std::env::var_os("FLEET_NO_PROGRESS").is_some()
    {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} hosts {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Copies `text` with every control character but tab shown as `^X` (ESC as `^[`) and the
/// C1 controls U+0080..U+009F as `M-^X`, as `cat -v` shows them, so a host's output cannot
/// move the cursor, retitle the window or change colours.
pub(crate) fn escape_controls(text: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        match b {
            b'\t' => out.push(b),
            0..=0x1f => out.extend_from_slice(&[b'^', b + 0x40]),
            0x7f => out.extend_from_slice(b"^?"),
            0xc2 if matches!(text.get(i + 1), Some(0x80..=0x9f)) => {
                out.extend_from_slice(&[b'M', b'-', b'^', text[i + 1] - 0x40]);
                i += 1;
            }
            _ => out.push(b),
        }
        i += 1;
    }
}

/// `text` with its control characters escaped (see [`escape_controls`]).
pub(crate) fn escaped(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    escape_controls(text.as_bytes(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Formats rows as left-aligned columns separated by two spaces.
pub(crate) fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.zip(widths).enumerate() {
            if i + 1 == N {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pipe_safe_output_drops_writes_after_the_reader_left() {
        use std::io::Write;
        struct Closed(usize);
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                self.0 += 1;
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::Other.into())
            }
        }
        let mut w = super::PipeSafe::new(Closed(0));
        writeln!(w, "one").unwrap();
        writeln!(w, "two").unwrap();
        w.flush().unwrap();
        assert_eq!(w.inner.0, 1, "the closed pipe is written to once");
        // Other errors still surface.
        let mut w = super::PipeSafe::new(Closed(0));
        assert!(w.flush().is_err());
        // A terminal that hung up answers EIO.
        struct HungUp;
        impl Write for HungUp {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(5))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = super::PipeSafe::new(HungUp);
        writeln!(w, "summary").unwrap();
    }

    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "ADDRESS"],
            &[
                ["web01".into(), "10.0.0.1:22".into()],
                ["db".into(), "db.example.com:2222".into()],
            ],
        );
        insta::assert_snapshot!(t, @r"
        NAME   ADDRESS
        web01  10.0.0.1:22
        db     db.example.com:2222
        ");
    }
}
