//! `fleet exec --stream` and `fleet exec --script` against real sshd hosts.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fleet_lab::TestLab;
use serde_json::Value;

use crate::{both, fleet, run, stderr, stdout};

/// 20 hosts print 1,000 lines each, block-buffered by awk so the chunks that arrive end in
/// the middle of lines, with stderr lines between and a last line without a newline. Every
/// line comes out whole, with its host's prefix, each host's in its own order; stderr lines
/// go to stderr marked `!`; the unfinished line is flushed with its marker; the statuses
/// follow, folded.
#[test]
fn streamed_lines_of_twenty_hosts_are_never_torn() {
    let lab = TestLab::start(20);
    let o = run(fleet(&lab.inventory_path()).args([
        "exec",
        "--stream",
        "--",
        r#"awk -v h="$FLEET_HOST" 'BEGIN { for (i = 1; i <= 1000; i++) { printf "%s %d %0100d\n", h, i, i; if (i % 100 == 0) { printf "%s err %d\n", h, i > "/dev/stderr" } } printf "%s tail", h }'; [ "$FLEET_HOST" != h05 ]"#,
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let mut next = std::collections::BTreeMap::<String, u32>::new();
    let mut statuses = Vec::new();
    for line in out.lines() {
        if line.starts_with("==> ") {
            statuses.push(line);
            continue;
        }
        assert!(
            statuses.is_empty(),
            "a streamed line after the statuses: {line}"
        );
        let (host, text) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("no prefix: {line:?}"));
        let n = next.entry(host.to_owned()).or_insert(1);
        if *n == 1001 {
            assert_eq!(text, format!("{host} tail [no newline at end]"));
            *n += 1;
            continue;
        }
        assert_eq!(text, format!("{host} {n} {:0100}", n), "line {n} of {host}");
        *n += 1;
    }
    assert_eq!(next.len(), 20, "{next:?}");
    assert!(next.values().all(|&n| n == 1002), "{next:?}");
    assert_eq!(
        statuses,
        [
            "==> h[01-04,06-20] (19 hosts): exit code 0",
            "==> h05: exit code 1"
        ]
    );
    let err = stderr(&o);
    for host in lab.hosts() {
        let marked: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with(&format!("{}! ", host.name)))
            .collect();
        let want: Vec<String> = (1..=10)
            .map(|i| format!("{}! {} err {}", host.name, host.name, i * 100))
            .collect();
        assert_eq!(marked, want);
    }
    assert!(err.contains("20 hosts in "), "{err}");
}

/// Streaming is live: the first line is on fleet's stdout while the host still runs the
/// command, and with `--json` each line is an object of its own before the host's result.
#[test]
fn streamed_lines_show_while_the_command_runs() {
    let lab = TestLab::start(1);
    let mut child = fleet(&lab.inventory_path())
        .args([
            "exec",
            "--stream",
            "--json",
            "--",
            "echo first; sleep 4; echo second",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fleet");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("read");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "fleet ended before its first line was read: {first}"
    );
    let v: Value = serde_json::from_str(&first).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"host": "h01", "stream": "stdout", "line": "first"})
    );
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.expect("read")).expect("json"))
        .collect();
    assert!(child.wait().expect("wait").success());
    assert_eq!(rest[0]["line"], "second");
    assert_eq!(rest[1]["host"], "h01");
    assert_eq!(rest[1]["status"], "ok");
    assert_eq!(
        rest[1]["stdout"],
        Value::Null,
        "the lines were sent already"
    );
}

/// A script with arguments runs under the interpreter of its `#!` line with its arguments
/// as words (a `$(...)` in one runs nothing), from a file that is already unlinked while
/// it runs; its exit code is the host's. A script without `#!` runs under /bin/sh.
#[test]
fn scripts_run_with_their_interpreter_and_leave_nothing() {
    let lab = TestLab::start(2);
    let dir = lab.temp_dir();
    let py = dir.join("report.py");
    std::fs::write(
        &py,
        "#!/usr/bin/env python3\nimport os, sys\nprint(sys.argv[1:], os.environ['FLEET_HOST'])\nprint(os.readlink('/proc/self/fd/4'))\nsys.exit(0 if os.environ['FLEET_HOST'] == 'h01' else 4)\n",
    )
    .expect("write script");
    let pwned = lab.hosts()[0].root.join("pwned");
    let o = run(fleet(&lab.inventory_path()).args([
        "exec",
        "--json",
        "--script",
        py.to_str().expect("utf-8"),
        "--",
        "two words",
        &format!("$(touch {})", pwned.display()),
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(!pwned.exists(), "an argument ran as shell text");
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for (v, (host, code)) in lines.iter().zip([("h01", 0), ("h02", 4)]) {
        assert_eq!(v["exit_code"], code, "{v}");
        let text = v["stdout"].as_str().expect("stdout");
        let mut out = text.lines();
        assert_eq!(
            out.next(),
            Some(format!("['two words', '$(touch {})'] {host}", pwned.display()).as_str())
        );
        let file = out.next().expect("the script's file");
        let name = file
            .strip_suffix(" (deleted)")
            .unwrap_or_else(|| panic!("the script's file is not unlinked: {file}"));
        assert!(name.contains("fleet-script."), "{name}");
        assert!(!std::path::Path::new(name).exists(), "{name} left behind");
    }

    let sh = dir.join("plain.sh");
    std::fs::write(&sh, "echo \"$0 $#\"; readlink /proc/$$/fd/4; exit 7\n").expect("write");
    let o = run(fleet(&lab.inventory_path()).args([
        "exec",
        "-l",
        "h01",
        "--json",
        "--script",
        sh.to_str().expect("utf-8"),
        "a",
    ]));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["exit_code"], 7, "{}", both(&o));
    let text = v["stdout"].as_str().expect("stdout");
    assert!(text.starts_with("/dev/fd/4 1\n"), "{text}");
    assert!(text.trim_end().ends_with("(deleted)"), "{text}");
}

/// A script killed at its timeout leaves no file either (it was unlinked before it ran), and
/// a script fleet cannot read, or whose `#!` names nothing, reaches no host.
#[test]
fn scripts_killed_or_refused_leave_nothing() {
    let lab = TestLab::start(1);
    let dir = lab.temp_dir();
    let marker = lab.hosts()[0].root.join("file-was");
    let slow = dir.join("slow.sh");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nreadlink /proc/$$/fd/4 > {}\nsleep 300\n",
            marker.display()
        ),
    )
    .expect("write");
    let t0 = Instant::now();
    let o = run(fleet(&lab.inventory_path()).args([
        "exec",
        "--json",
        "-t",
        "2s",
        "--script",
        slow.to_str().expect("utf-8"),
    ]));
    assert!(t0.elapsed() < Duration::from_secs(60));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["status"], "timeout", "{}", both(&o));
    assert_eq!(v["killed"], true);
    let was = std::fs::read_to_string(&marker).expect("the script ran");
    let name = was.trim().strip_suffix(" (deleted)").expect("unlinked");
    assert!(!std::path::Path::new(name).exists());

    let empty = dir.join("empty.sh");
    std::fs::write(&empty, "#!\necho ran\n").expect("write");
    for (script, says) in [
        (
            empty.display().to_string(),
            "its `#!` line names no interpreter",
        ),
        (
            dir.join("missing.sh").display().to_string(),
            "cannot read the script",
        ),
    ] {
        let o = run(fleet(&lab.inventory_path()).args(["exec", "--script", &script]));
        assert_eq!(o.status.code(), Some(2), "{}", both(&o));
        assert!(stderr(&o).contains(says), "{}", both(&o));
        assert!(stdout(&o).is_empty());
    }
}
