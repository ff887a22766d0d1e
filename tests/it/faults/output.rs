//! Hosts that answer with too much, with bytes that are not text, with escape sequences, or
//! with commands that wait for input: fleet's memory stays bounded (measured, not assumed), its
//! JSON stays valid, the operator's terminal never receives a host's control bytes, and a
//! command reading stdin gets end-of-file at once instead of hanging the run.

use std::process::Stdio;
use std::time::{Duration, Instant};

use fleet_lab::TestLab;
use serde_json::Value;

use super::Figures;
use crate::{both, fleet, stdout};

/// Runs `cmd` to its end and returns its output, exit code and peak resident memory (KiB):
/// the kernel's high-water mark (`VmHWM`), read until the process is gone (its last moments,
/// printing a few bounded captures, cannot add much).
fn run_measured(cmd: &mut std::process::Command) -> (Vec<u8>, i32, i64) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fleet");
    let status_file = format!("/proc/{}/status", child.id());
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut buf).expect("read stdout");
        buf
    });
    let mut peak = 0;
    let code = loop {
        if let Some(hwm) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        }) {
            peak = peak.max(hwm);
        }
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (reader.join().expect("reader"), code, peak)
}

/// 4 hosts each print 256 MiB: fleet keeps the head and tail of each, and its peak memory
/// stays far below what it was sent (the bound is generous: it catches a copy of the output,
/// not a few MiB of buffers).
#[test]
fn a_gigabyte_of_output_is_read_in_bounded_memory() {
    let lab = TestLab::start(4);
    let small =
        run_measured(fleet(&lab.inventory_path()).args(["exec", "--json", "--", "echo hi"]));
    let (out, code, peak_kb) = run_measured(fleet(&lab.inventory_path()).args([
        "exec",
        "--json",
        "--timeout",
        "120s",
        "--",
        "head -c 268435456 /dev/zero | tr '\\0' x; echo; echo last-line",
    ]));
    assert_eq!(
        code,
        0,
        "{}",
        String::from_utf8_lossy(&out[..out.len().min(2000)])
    );
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4, "one object per host");
    for l in &lines {
        let so = l["stdout"].as_str().expect("stdout");
        assert!(
            so.starts_with("xxxx") && so.ends_with("last-line\n"),
            "head and tail kept"
        );
        assert!(
            so.len() < 8 << 20,
            "the capture is bounded: {} bytes",
            so.len()
        );
    }
    let sent_mb = 4 * 256;
    let (peak_mb, small_mb) = (peak_kb / 1024, small.2 / 1024);
    assert!(
        peak_mb < small_mb + 128,
        "fleet peaked at {peak_mb} MiB reading {sent_mb} MiB (a 1-line run: {small_mb} MiB)"
    );
    Figures {
        sites: 4,
        inputs: 1,
        ..Figures::default()
    }
    .save("hostile output: 1 GiB in bounded memory");
}

/// Bytes that are not UTF-8 and escape sequences that would retitle, clear or recolour the
/// operator's terminal: in JSON they are data (valid JSON, the invalid bytes replaced); on a
/// terminal (a pty here, as an operator's) not one ESC, BEL or other control byte of the
/// host's reaches it, in folded and in streamed output, on stdout and stderr alike.
#[test]
fn control_bytes_and_invalid_text_never_reach_a_terminal_raw() {
    let lab = TestLab::start(2);
    let hostile = r"printf 'ok \377\376 bytes\n\033]0;pwned\007\033[2J\033[31mred\r\n'; printf '\033]52;c;cHduZWQ=\007err\n' >&2";
    let o = crate::run(fleet(&lab.inventory_path()).args(["exec", "--json", "--", hostile]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for l in stdout(&o).lines() {
        let v: Value = serde_json::from_str(l).expect("valid JSON despite invalid UTF-8");
        assert!(v["stdout"].as_str().expect("stdout").contains("ok "), "{v}");
    }
    let mut cases = 0;
    for mode in ["--fold", "--stream"] {
        let mut c = fleet(&lab.inventory_path());
        c.args(["exec", mode, "--", hostile]);
        // `script` gives fleet a terminal of its own and copies what fleet wrote to it.
        let line = format!(
            "{} {}",
            shell_words(c.get_program().to_str().expect("utf-8 path")),
            c.get_args()
                .map(|a| shell_words(a.to_str().expect("utf-8 arg")))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut s = std::process::Command::new("script");
        s.args(["-q", "-e", "-c", &line, "/dev/null"]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        let out = s.stdin(Stdio::null()).output().expect("script");
        let seen = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(seen.contains("ok "), "{mode}: {seen:?}");
        assert!(seen.contains("err"), "{mode}: {seen:?}");
        // The pty turns `\n` into `\r\n`; any other control byte came from the host.
        let raw: Vec<char> = seen
            .chars()
            .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            .collect();
        assert!(
            raw.is_empty(),
            "{mode}: control bytes reached the terminal: {raw:?} in {seen:?}"
        );
        assert!(!seen.contains("pwned\u{7}"), "{mode}");
        cases += 1;
    }
    Figures {
        sites: 2,
        inputs: cases + 1,
        ..Figures::default()
    }
    .save("hostile output: control bytes and invalid UTF-8");
}

/// A command that reads its stdin (`cat`, `read`, a tool asking for confirmation) gets
/// end-of-file at once: the run ends in seconds, not at its timeout.
#[test]
fn a_command_reading_stdin_does_not_hang() {
    let lab = TestLab::start(3);
    let start = Instant::now();
    let o = crate::run(fleet(&lab.inventory_path()).args([
        "exec",
        "--json",
        "--timeout",
        "60s",
        "--",
        "cat; read -r answer; echo \"read: ${answer:-nothing}\"",
    ]));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for l in stdout(&o).lines() {
        let v: Value = serde_json::from_str(l).expect("json");
        assert_eq!(v["stdout"], "read: nothing\n", "{v}");
    }
    Figures {
        sites: 3,
        inputs: 1,
        ..Figures::default()
    }
    .save("hostile output: a command reading stdin");
}

/// `s` quoted for `sh -c`.
fn shell_words(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
