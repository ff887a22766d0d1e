//! Folded text output: one block per distinct result, with its hosts in compact range form.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use fleet_inventory::compact_names;

use super::{HostReport, Outcome, Status};

/// A set of hosts that produced exactly the same result.
struct Block<'a> {
    hosts: Vec<&'a str>,
    first: &'a HostReport,
}

/// Writes one block per distinct (status, stdout, stderr), successes first, then failures,
/// then hosts without a result (unreachable, cancelled, not started), each group in
/// inventory order of its first host. With `escape` (a terminal), control characters in
/// what the hosts said are shown as `^X` instead of reaching the terminal.
pub(crate) fn write_folded(
    w: &mut dyn Write,
    reports: &[HostReport],
    color: bool,
    escape: bool,
) -> io::Result<()> {
    write_blocks(w, reports, color, escape, true)
}

/// Writes the status lines of [`write_folded`] only, folding hosts by status alone: for
/// output that was shown already, as it came.
pub(crate) fn write_statuses(
    w: &mut dyn Write,
    reports: &[HostReport],
    color: bool,
    escape: bool,
) -> io::Result<()> {
    write_blocks(w, reports, color, escape, false)
}

fn write_blocks(
    w: &mut dyn Write,
    reports: &[HostReport],
    color: bool,
    escape: bool,
    with_output: bool,
) -> io::Result<()> {
    let mut blocks: Vec<Block<'_>> = Vec::new();
    let mut index: HashMap<FoldKey, usize> = HashMap::new();
    for r in reports {
        let key = FoldKey::of(r, with_output);
        match index.get(&key) {
            Some(&i) => blocks[i].hosts.push(&r.name),
            None => {
                index.insert(key, blocks.len());
                blocks.push(Block {
                    hosts: vec![&r.name],
                    first: r,
                });
            }
        }
    }
    // Stable sort keeps inventory order inside each rank.
    blocks.sort_by_key(|b| rank(b.first.outcome.status()));
    let paint = |s: &str, code: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    };
    for b in &blocks {
        let status = b.first.outcome.status();
        let names = compact_names(&b.hosts);
        let count = if b.hosts.len() > 1 {
            format!(" ({} hosts)", b.hosts.len())
        } else {
            String::new()
        };
        let (label, code) = match &b.first.outcome {
            Outcome::Done(out) if status == Status::Ok => (out.status.to_string(), "1;32"),
            Outcome::Done(out) => (out.status.to_string(), "1;31"),
            other => (
                format!(
                    "{}: {}",
                    status.as_str(),
                    other.reason().unwrap_or_default()
                ),
                "1;33",
            ),
        };
        let label = if escape {
            super::escaped(&label)
        } else {
            label
        };
        writeln!(
            w,
            "{}",
            paint(&format!("==> {names}{count}: {label}"), code)
        )?;
        if let Outcome::Done(out) = &b.first.outcome
            && with_output
        {
            write_stream(w, &out.stdout.to_bytes(), escape)?;
            if !out.stderr.is_empty() {
                writeln!(w, "{}", paint("--> stderr", "2"))?;
                write_stream(w, &out.stderr.to_bytes(), escape)?;
            }
        }
    }
    Ok(())
}

fn write_stream(w: &mut dyn Write, bytes: &[u8], escape: bool) -> io::Result<()> {
    if escape {
        let mut out = Vec::with_capacity(bytes.len());
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            super::escape_controls(line, &mut out);
        }
        w.write_all(&out)?;
    } else {
        w.write_all(bytes)?;
    }
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        w.write_all(b"\n")?;
    }
    Ok(())
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Ok => 0,
        Status::Failed | Status::Timeout => 1,
        Status::Cancelled => 2,
        Status::Unreachable => 3,
        Status::Skipped => 4,
    }
}

/// What makes two results "the same": the status line and both streams, byte for byte.
/// Hosts without output fold by their reason text.
#[derive(Hash, PartialEq, Eq)]
enum FoldKey {
    Output {
        status: String,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    Reason(Status, String),
}

impl FoldKey {
    fn of(r: &HostReport, with_output: bool) -> Self {
        match &r.outcome {
            Outcome::Done(out) if !with_output => {
                FoldKey::Reason(r.outcome.status(), out.status.to_string())
            }
            Outcome::Done(out) => FoldKey::Output {
                status: out.status.to_string(),
                stdout: out.stdout.to_bytes(),
                stderr: out.stderr.to_bytes(),
            },
            other => FoldKey::Reason(other.status(), other.reason().unwrap_or_default()),
        }
    }
}

/// Writes the one-line end-of-run summary, with the hosts of every non-ok status.
pub(crate) fn write_summary(
    w: &mut dyn Write,
    reports: &[HostReport],
    elapsed: Duration,
) -> io::Result<()> {
    let statuses: Vec<(&str, Status)> = reports
        .iter()
        .map(|r| (r.name.as_str(), r.outcome.status()))
        .collect();
    write_summary_of(w, &statuses, elapsed, "")
}

/// [`write_summary`] from each host's name and status; `extra` follows the elapsed time.
pub(crate) fn write_summary_of(
    w: &mut dyn Write,
    statuses: &[(&str, Status)],
    elapsed: Duration,
    extra: &str,
) -> io::Result<()> {
    let mut by_status: Vec<(Status, Vec<&str>)> = Vec::new();
    for &(name, s) in statuses {
        match by_status.iter_mut().find(|(k, _)| *k == s) {
            Some((_, v)) => v.push(name),
            None => by_status.push((s, vec![name])),
        }
    }
    by_status.sort_by_key(|(s, _)| *s);
    let parts: Vec<String> = by_status
        .iter()
        .map(|(s, hosts)| {
            if *s == Status::Ok {
                format!("{} ok", hosts.len())
            } else {
                format!("{} {} ({})", hosts.len(), s.as_str(), compact_names(hosts))
            }
        })
        .collect();
    let n = statuses.len();
    writeln!(
        w,
        "{n} host{} in {:.2}s{extra}: {}",
        if n == 1 { "" } else { "s" },
        elapsed.as_secs_f64(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fleet_remote_exec::{Capture, ExecOutput, ExitStatus};

    use super::*;

    fn report(name: &str, stdout: &[u8]) -> HostReport {
        let mut out = Capture::new(1 << 10);
        out.push(stdout);
        HostReport {
            name: name.into(),
            endpoint: "e".into(),
            outcome: Outcome::Done(ExecOutput {
                status: ExitStatus::Code(0),
                stdout: out,
                stderr: Capture::new(1 << 10),
                duration: Duration::ZERO,
            }),
            connect: None,
            total: Duration::ZERO,
        }
    }

    /// On a terminal a host's escape sequences are shown, not obeyed; lines and tabs stay.
    #[test]
    fn a_terminal_gets_hosts_control_characters_escaped() {
        let reports = [report("h1", b"\x1b]0;pwned\x07title\n\tindented\n\x1b[2J")];
        let mut tty = Vec::new();
        write_folded(&mut tty, &reports, false, true).unwrap();
        assert_eq!(
            String::from_utf8(tty).unwrap(),
            "==> h1: exit code 0\n^[]0;pwned^Gtitle\n\tindented\n^[[2J\n"
        );
        let mut piped = Vec::new();
        write_folded(&mut piped, &reports, false, false).unwrap();
        assert!(
            piped.windows(4).any(|w| w == b"\x1b[2J"),
            "piped: the bytes as they are"
        );
    }
}
