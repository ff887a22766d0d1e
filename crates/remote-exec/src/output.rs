//! The result of one remote command: bounded stdout/stderr capture and how it ended.

use std::collections::VecDeque;
use std::time::Duration;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// The process exited with this code.
    Code(u32),
    /// The process was killed by a signal (`TERM`, `KILL`, ...).
    Signal {
        /// Signal name without the `SIG` prefix.
        name: String,
        /// Whether the process dumped core.
        core_dumped: bool,
    },
    /// The command ran past its timeout; `killed` says whether the remote process group was
    /// confirmed killed.
    TimedOut {
        /// The remote process group was killed.
        killed: bool,
    },
    /// The command was aborted by the caller; `killed` as for [`ExitStatus::TimedOut`].
    Cancelled {
        /// The remote process group was killed.
        killed: bool,
    },
    /// The channel closed without an exit status or signal.
    Unknown,
}

impl ExitStatus {
    /// Returns true for exit code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// Returns the exit code, if the process exited normally.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal { name, core_dumped } => {
                write!(f, "killed by signal {name}")?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ExitStatus::TimedOut { killed: true } => {
                f.write_str("timed out (remote process killed)")
            }
            ExitStatus::TimedOut { killed: false } => {
                f.write_str("timed out (remote process may still be running)")
            }
            ExitStatus::Cancelled { killed: true } => {
                f.write_str("cancelled (remote process killed)")
            }
            ExitStatus::Cancelled { killed: false } => {
                f.write_str("cancelled (remote process may still be running)")
            }
            ExitStatus::Unknown => f.write_str("no exit status"),
        }
    }
}

/// A bounded capture of one output stream: keeps the first and the last bytes and counts what
/// was dropped in between.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
    limit: usize,
}

/// Where a stream's bytes go: a [`Capture`], or a filter in front of one.
pub(crate) trait Push {
    fn push(&mut self, data: &[u8]);
}

/// Which of a command's streams some output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Receives a command's output as it arrives, with fleet's own markers already taken out, in
/// the order the host sent it. The bytes are also captured as usual.
///
pub trait Sink: Send {
    /// Takes the next bytes of `stream`. Chunks split lines, and UTF-8 characters, anywhere.
    /// It must not block: a sink that cannot keep up says so through [`Sink::ready`].
    fn output(&mut self, stream: Stream, data: &[u8]);

    /// Resolves when the sink takes more output. Until then the command's output is not
    /// read (its SSH window fills and the host waits), while its time limit and
    /// cancellation still apply. The default is always ready.
    fn ready(&mut self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A capture with an optional sink beside it: every byte goes to both.
pub(crate) struct Tee<'a> {
    pub(crate) capture: &'a mut Capture,
    pub(crate) sink: Option<&'a mut dyn Sink>,
    pub(crate) stream: Stream,
}

impl Push for Tee<'_> {
    fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.capture.push(data);
        if let Some(s) = &mut self.sink {
            s.output(self.stream, data);
        }
    }
}

impl Push for Capture {
    fn push(&mut self, data: &[u8]) {
        Capture::push(self, data);
    }
}

impl Capture {
    /// Creates an empty capture that keeps at most `limit` bytes (half head, half tail).
    pub fn new(limit: usize) -> Self {
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            dropped: 0,
            limit,
        }
    }

    /// Appends `data`, dropping from the middle once the limit is reached.
    pub fn push(&mut self, mut data: &[u8]) {
        let head_cap = self.limit / 2 + self.limit % 2;
        if self.head.len() < head_cap {
            let n = data.len().min(head_cap - self.head.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() {
            return;
        }
        let tail_cap = self.limit / 2;
        if data.len() >= tail_cap {
            self.dropped += (self.tail.len() + data.len() - tail_cap) as u64;
            self.tail.clear();
            self.tail.extend(&data[data.len() - tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + data.len()).saturating_sub(tail_cap);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(data);
    }

    /// Returns how many bytes were dropped from the middle.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Returns the total number of bytes the stream produced.
    pub fn total_len(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + self.dropped
    }

    /// Returns true when the stream produced nothing.
    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }

    /// Returns the kept bytes; when bytes were dropped, a one-line marker separates head and
    /// tail.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + 48);
        out.extend_from_slice(&self.head);
        if self.dropped > 0 {
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(format!("[... {} bytes dropped ...]\n", self.dropped).as_bytes());
        }
        out.extend(self.tail.iter());
        out
    }

    /// Returns [`Capture::to_bytes`] as text, replacing invalid UTF-8.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }
}

/// The result of one remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How the command ended.
    pub status: ExitStatus,
    /// Captured standard output.
    pub stdout: Capture,
    /// Captured standard error.
    pub stderr: Capture,
    /// Wall time from sending the command to its end.
    pub duration: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_everything_under_limit() {
        let mut c = Capture::new(10);
        c.push(b"abc");
        c.push(b"def");
        assert_eq!(c.to_bytes(), b"abcdef");
        assert_eq!(c.dropped(), 0);
    }

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = Capture::new(6);
        for chunk in [&b"0123"[..], b"4567", b"89"] {
            c.push(chunk);
        }
        assert_eq!(c.dropped(), 4);
        assert_eq!(c.total_len(), 10);
        assert_eq!(c.to_string_lossy(), "012\n[... 4 bytes dropped ...]\n789");
    }

    #[test]
    fn capture_large_single_chunk() {
        let mut c = Capture::new(4);
        c.push(b"abcdefghij");
        assert_eq!(c.to_string_lossy(), "ab\n[... 6 bytes dropped ...]\nij");
        c.push(b"k");
        assert_eq!(c.to_string_lossy(), "ab\n[... 7 bytes dropped ...]\njk");
    }

    #[test]
    fn status_display() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::TimedOut { killed: true }.success());
    }
}
