//! The process-group marker every command prints on stderr, and finding it again.
//!
//! A timed-out or aborted command must be killed on the host. Without a PTY, closing an SSH
//! channel does not stop the remote process, and OpenSSH refuses `signal`
//! requests for root sessions; sshd makes each exec session its own process group, so
//! `kill -- -PGID` reaches the command and its children. So every command first prints its
//! shell's pid (the group id) on stderr, and the collector takes it out of the stream.
//!
//! The marker is not necessarily the first thing on stderr: the login shell reads its rc
//! files (bash sources `~/.bashrc` for ssh commands) before it runs the command, and a line
//! of noise there must not cost the kill. So the marker carries a random nonce for each
//! command, and is searched for anywhere in the stream; the bytes around it are
//! the command's stderr. Only the first occurrence of the exact nonce counts: it is printed
//! before the command starts, so anything the command itself writes comes after it, and a
//! command cannot choose which process group fleet kills by printing a marker of its own.

use crate::output::Push;

/// Starts every marker: an ASCII record separator, which real output seldom contains, so the
/// search passes over most of a stream looking for one byte value. It appears nowhere else
/// in a marker, which keeps the search a simple restart on mismatch.
const START: u8 = 0x1e;

/// How much stderr is searched for the marker before giving up. The search itself holds
/// back at most one marker's length (the rest is passed on to the capture at once), so the
/// limit is not about memory: it bounds the work, and the startup noise that can precede the
/// marker is a few lines in practice. Past this much, the stream is almost surely the
/// command's own (the marker was never printed, e.g. the login shell is not POSIX), and the
/// command could have read the nonce from its shell's argv.
const SEARCH_LIMIT: usize = 256 * 1024;

/// Digits of a pid (`u32`): at most 10.
const MAX_PID_DIGITS: usize = 10;

/// The marker of one command: a fresh nonce, the shell code that prints it, and the search
/// for it in the command's stderr.
pub(crate) struct PgidMarker {
    /// Hex, so the shell code needs no quoting for it.
    nonce: String,
    /// `\x1efleet-pgid-<nonce> `, followed on the wire by the pid and a newline.
    prefix: Vec<u8>,
    state: State,
    /// Stderr bytes looked at so far while searching.
    scanned: usize,
}

enum State {
    /// Searching; the first `matched` bytes of the prefix were seen and are held back.
    Looking { matched: usize },
    /// The whole prefix was seen and is held back, then these pid digits.
    Pid { digits: Vec<u8> },
    /// Found, or given up: everything else is the command's stderr.
    Done,
}

impl PgidMarker {
    /// Creates a marker with a fresh nonce.
    pub(crate) fn new() -> Self {
        Self::with_nonce(&nonce())
    }

    fn with_nonce(nonce: &str) -> Self {
        let mut prefix = vec![START];
        prefix.extend_from_slice(b"fleet-pgid-");
        prefix.extend_from_slice(nonce.as_bytes());
        prefix.push(b' ');
        Self {
            nonce: nonce.to_owned(),
            prefix,
            state: State::Looking { matched: 0 },
            scanned: 0,
        }
    }

    /// The shell code to run before the command: prints the marker and the shell's pid on
    /// stderr, in one `write` (a short line), so other writers cannot split it.
    pub(crate) fn shell_prefix(&self) -> String {
        format!("printf '\\036fleet-pgid-{} %s\\n' \"$$\" >&2; ", self.nonce)
    }

    /// The line [`PgidMarker::shell_prefix`] prints for a shell of pid `pid`.
    #[cfg(test)]
    pub(crate) fn line(&self, pid: u32) -> String {
        format!("\x1efleet-pgid-{} {pid}\n", self.nonce)
    }

    /// Takes the next stderr chunk: passes the command's bytes on to `out` and keeps back
    /// what may be the start of the marker. Returns the pgid when this chunk completed the
    /// marker.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut impl Push) -> Option<u32> {
        let mut found = None;
        while !data.is_empty() {
            match &mut self.state {
                State::Done => {
                    out.push(data);
                    break;
                }
                State::Looking { matched: 0 } => {
                    let budget = SEARCH_LIMIT.saturating_sub(self.scanned);
                    if budget == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    let window = &data[..data.len().min(budget)];
                    let skip = window
                        .iter()
                        .position(|&b| b == START)
                        .unwrap_or(window.len());
                    out.push(&data[..skip]);
                    self.scanned += skip;
                    data = &data[skip..];
                    if skip < window.len() {
                        self.match_prefix(&mut data, out);
                    }
                }
                State::Looking { .. } => self.match_prefix(&mut data, out),
                State::Pid { digits } => {
                    let b = data[0];
                    data = &data[1..];
                    self.scanned += 1;
                    match b {
                        b'0'..=b'9' if digits.len() < MAX_PID_DIGITS => digits.push(b),
                        b'\n' if !digits.is_empty() => {
                            let pid = std::str::from_utf8(digits)
                                .ok()
                                .and_then(|s| s.parse().ok());
                            match pid {
                                Some(pid) => found = Some(pid),
                                None => {
                                    out.push(&self.prefix);
                                    out.push(digits);
                                    out.push(b"\n");
                                }
                            }
                            self.state = State::Done;
                        }
                        _ => {
                            // The exact nonce with no pid after it cannot be ours: keep the
                            // bytes as output, and stop looking (only the first occurrence
                            // counts).
                            out.push(&self.prefix);
                            out.push(digits);
                            out.push(&[b]);
                            self.state = State::Done;
                        }
                    }
                }
            }
        }
        found
    }

    /// Matches `data` against the rest of the prefix from the current state (which is
    /// `Looking`, with `data` starting at a candidate byte when nothing is matched yet).
    fn match_prefix(&mut self, data: &mut &[u8], out: &mut impl Push) {
        let State::Looking { matched } = self.state else {
            return;
        };
        let want = &self.prefix[matched..];
        let n = want.len().min(data.len());
        let same = want[..n]
            .iter()
            .zip(data.iter())
            .take_while(|(a, b)| a == b)
            .count();
        self.scanned += same;
        *data = &data[same..];
        if same == n {
            let matched = matched + same;
            self.state = if matched == self.prefix.len() {
                State::Pid { digits: Vec::new() }
            } else {
                State::Looking { matched }
            };
        } else {
            // A mismatch: what was held back is output. `START` occurs only at the prefix's
            // first byte, so no later part of it can begin a match; the mismatching byte is
            // looked at again from scratch.
            out.push(&self.prefix[..matched + same]);
            self.state = State::Looking { matched: 0 };
        }
    }

    /// Ends the stream: whatever was held back as a possible marker is output after all.
    pub(crate) fn finish(&mut self, out: &mut impl Push) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Looking { matched } => out.push(&self.prefix[..matched]),
            State::Pid { digits } => {
                out.push(&self.prefix);
                out.push(&digits);
            }
            State::Done => {}
        }
    }
}

/// 128 random bits, in hex, from russh's CSPRNG (the one it uses for key exchange, seeded
/// from the OS).
pub(crate) fn nonce() -> String {
    use russh::keys::ssh_key::rand_core::Rng as _;
    let mut bytes = [0u8; 16];
    russh::keys::key::safe_rng().fill_bytes(&mut bytes);
    data_encoding::HEXLOWER.encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Capture;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn marker_line(nonce: &str, pid: u32) -> String {
        format!("\x1efleet-pgid-{nonce} {pid}\n")
    }

    /// Feeds `chunks` through a marker with [`NONCE`]; returns the pgid found and the stderr
    /// the command is left with.
    #[track_caller]
    fn run(chunks: &[&[u8]]) -> (Option<u32>, String) {
        let mut m = PgidMarker::with_nonce(NONCE);
        let mut out = Capture::new(1 << 24);
        let mut pgid = None;
        for c in chunks {
            if let Some(p) = m.feed(c, &mut out) {
                assert!(pgid.is_none(), "found twice");
                pgid = Some(p);
            }
        }
        m.finish(&mut out);
        (pgid, out.to_string_lossy())
    }

    #[test]
    fn shell_prefix_prints_the_marker_with_the_nonce() {
        let m = PgidMarker::with_nonce(NONCE);
        assert_eq!(
            m.shell_prefix(),
            format!("printf '\\036fleet-pgid-{NONCE} %s\\n' \"$$\" >&2; ")
        );
        let a = PgidMarker::new().shell_prefix();
        let b = PgidMarker::new().shell_prefix();
        assert_ne!(a, b, "every command gets its own nonce");
        assert_eq!(a.len(), m.shell_prefix().len());
    }

    #[test]
    fn marker_first_is_stripped() {
        let line = marker_line(NONCE, 4242);
        assert_eq!(
            run(&[line.as_bytes(), b"warning\n"]),
            (Some(4242), "warning\n".into())
        );
    }

    #[test]
    fn marker_split_at_every_byte_is_found() {
        let text = format!("noise\n{}oops\n", marker_line(NONCE, 77));
        let bytes = text.as_bytes();
        for at in 0..bytes.len() {
            assert_eq!(
                run(&[&bytes[..at], &bytes[at..]]),
                (Some(77), "noise\noops\n".into()),
                "split at {at}"
            );
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&one_by_one), (Some(77), "noise\noops\n".into()));
    }

    #[test]
    fn noise_before_the_marker_is_kept_as_stderr() {
        let text = format!(
            "bashrc: noise\n\x1e not a marker\n\x1efleet-pgid-00 x\n{}done\n",
            marker_line(NONCE, 9)
        );
        assert_eq!(
            run(&[text.as_bytes()]),
            (
                Some(9),
                "bashrc: noise\n\x1e not a marker\n\x1efleet-pgid-00 x\ndone\n".into()
            )
        );
    }

    #[test]
    fn large_noise_before_the_marker_is_searched_and_capped() {
        let noise = "n".repeat(200 * 1024);
        let text = format!("{noise}{}tail\n", marker_line(NONCE, 5));
        let mut m = PgidMarker::with_nonce(NONCE);
        let mut out = Capture::new(100);
        let mut pgid = None;
        for c in text.as_bytes().chunks(32 * 1024) {
            pgid = pgid.or(m.feed(c, &mut out));
        }
        m.finish(&mut out);
        assert_eq!(pgid, Some(5));
        assert_eq!(
            out.total_len(),
            noise.len() as u64 + 5,
            "the marker is not counted"
        );
        assert!(out.to_string_lossy().ends_with("nnntail\n"));
    }

    #[test]
    fn search_gives_up_past_the_limit() {
        let noise = "n".repeat(SEARCH_LIMIT);
        let text = format!("{noise}{}", marker_line(NONCE, 5));
        assert_eq!(run(&[text.as_bytes()]), (None, text.clone()));
    }

    #[test]
    fn forged_marker_with_a_wrong_nonce_is_output() {
        let forged = marker_line("ffeeddccbbaa99887766554433221100", 1);
        let text = format!("{forged}{}", marker_line(NONCE, 2));
        assert_eq!(run(&[text.as_bytes()]), (Some(2), forged.clone()));
        // A prefix of the nonce that stops short is output too.
        let short = format!("\x1efleet-pgid-{} 3\n", &NONCE[..16]);
        assert_eq!(run(&[short.as_bytes()]), (None, short.clone()));
    }

    #[test]
    fn only_the_first_marker_counts() {
        let second = marker_line(NONCE, 666);
        let text = format!("{}{second}", marker_line(NONCE, 2));
        assert_eq!(run(&[text.as_bytes()]), (Some(2), second.clone()));
        // The exact nonce without a pid is not a marker, and ends the search.
        let broken = format!("\x1efleet-pgid-{NONCE} x\n{}", marker_line(NONCE, 4));
        assert_eq!(run(&[broken.as_bytes()]), (None, broken.clone()));
        let long = format!("\x1efleet-pgid-{NONCE} 12345678901\n");
        assert_eq!(run(&[long.as_bytes()]), (None, long.clone()));
    }

    #[test]
    fn stderr_without_marker_is_kept() {
        assert_eq!(
            run(&[b"sh: broken\n", b"\x1efleet-pg"]),
            (None, "sh: broken\n\x1efleet-pg".into())
        );
        let cut = format!("\x1efleet-pgid-{NONCE} 12");
        assert_eq!(run(&[cut.as_bytes()]), (None, cut.clone()));
        assert_eq!(run(&[]), (None, String::new()));
    }
}
