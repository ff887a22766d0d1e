use std::path::Path;
use std::process::Command;

use fleet_lab::TestLab;
use serde_json::Value;

use crate::{fleet, redact, run, stderr, stdout};

/// Pins `HOME` and the state dir to `dir`, so nothing the binary writes (the journal, an
/// accepted host key under `~`) can land outside the test's own temp dir.
pub(crate) fn pinned(mut cmd: Command, dir: &Path) -> Command {
    cmd.env("HOME", dir)
        .env("FLEET_STATE_DIR", dir.join("state"))
        .env_remove("XDG_STATE_HOME");
    cmd
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// 20 hosts: 18 print the same thing, one fails differently, one is down. The down host and
/// the failure are listed after the successes, hosts fold into ranges, exit code is 1.
#[test]
fn exec_folds_identical_results_and_lists_failures_last() {
    let mut lab = TestLab::start(20);
    lab.lab_mut().stop_host("h07").expect("stop h07");
    let o = run(fleet(&lab.inventory_path()).args([
        "exec",
        "--",
        r#"if [ "$FLEET_HOST" = h03 ]; then echo odd one; echo broken >&2; exit 3; fi; echo same"#,
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    insta::assert_snapshot!(redact(&stdout(&o), lab.dir()), @r"
    ==> h[01-02,04-06,08-20] (18 hosts): exit code 0
    same
    ==> h03: exit code 3
    odd one
    --> stderr
    broken
    ==> h07: unreachable: cannot connect to `[ADDR]`: Connection refused (os error 111)
    ");
    insta::assert_snapshot!(redact(&stderr(&o), lab.dir()), @"20 hosts in [ELAPSED]: 18 ok, 1 failed (h03), 1 unreachable (h07)");
}

#[test]
fn exec_all_ok_exits_zero_and_honours_limit() {
    let lab = TestLab::start(4);
    let o =
        run(fleet(&lab.inventory_path()).args(["exec", "-l", "even", "--", "echo", "$FLEET_HOST"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "==> h02: exit code 0\nh02\n==> h04: exit code 0\nh04\n"
    );
}

/// `fleet exec ... | head`: the reader leaves before the output; the run still writes its
/// out-dir and summary and exits with the hosts' status, without a "Broken pipe" error.
#[test]
fn exec_whose_reader_left_still_finishes_the_run() {
    let mut lab = TestLab::start(3);
    lab.lab_mut().stop_host("h03").expect("stop");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut child = fleet(&lab.inventory_path())
        .args(["exec", "--out-dir"])
        .arg(out_dir.path())
        .args(["--", "echo hi"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fleet");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("Broken pipe") && !err.contains("error:"),
        "{err}"
    );
    assert!(err.contains("3 hosts in"), "{err}");
    let summary = std::fs::read_to_string(out_dir.path().join("summary.json")).expect("summary");
    assert!(summary.contains("unreachable"), "{summary}");
}

#[test]
fn exec_json_and_out_dir() {
    let mut lab = TestLab::start(3);
    lab.lab_mut().stop_host("h03").expect("stop");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let o = run(fleet(&lab.inventory_path())
        .args(["exec", "--json", "--out-dir"])
        .arg(out_dir.path())
        .args([
            "--",
            "echo out-$FLEET_HOST; echo err >&2; [ $FLEET_HOST = h01 ]",
        ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines.len(), 3);
    let get = |i: usize, k: &str| lines[i][k].clone();
    assert_eq!(get(0, "host"), "h01");
    assert_eq!(get(0, "status"), "ok");
    assert_eq!(get(0, "exit_code"), 0);
    assert_eq!(get(0, "stdout"), "out-h01\n");
    assert_eq!(get(0, "stderr"), "err\n");
    assert_eq!(get(1, "status"), "failed");
    assert_eq!(get(1, "exit_code"), 1);
    assert_eq!(get(2, "status"), "unreachable");
    assert_eq!(get(2, "error_kind"), "connect");
    assert!(get(2, "exit_code").is_null());
    assert!(get(0, "duration_ms").is_u64() && get(0, "connect_ms").is_u64());

    let read = |f: &str| std::fs::read_to_string(out_dir.path().join(f)).expect(f);
    assert_eq!(read("h01.stdout"), "out-h01\n");
    assert_eq!(read("h02.stderr"), "err\n");
    assert_eq!(read("h03.stdout"), "");
    let summary: Value = serde_json::from_str(&read("summary.json")).expect("summary");
    let statuses: Vec<&str> = summary
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["ok", "failed", "unreachable"]);
}

#[test]
fn exec_timeout_kills_remote_process_and_fails() {
    let lab = TestLab::start(2);
    let o = run(fleet(&lab.inventory_path()).args([
        "exec",
        "--json",
        "--timeout",
        "2s",
        "--",
        r#"sleep 300 & echo $! > "$FLEET_ROOT/bg"; wait"#,
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for (line, host) in json_lines(&stdout(&o)).iter().zip(lab.hosts()) {
        assert_eq!(line["status"], "timeout");
        assert_eq!(line["killed"], true);
        let pid: u32 = std::fs::read_to_string(host.root.join("bg"))
            .expect("bg pid")
            .trim()
            .parse()
            .expect("pid");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "sleep {pid} survived on {}",
            host.name
        );
    }
}

#[test]
fn exec_unknown_host_key_fails_that_host_only() {
    let lab = TestLab::start(2);
    // Forget h02's key: under the strict policy it must fail, with its fingerprint shown.
    let kh = lab.known_hosts();
    let kept: String = std::fs::read_to_string(&kh)
        .expect("known_hosts")
        .lines()
        .filter(|l| !l.starts_with(&format!("[{}]:", lab.hosts()[1].address)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&kh, kept).expect("write");
    let o = run(fleet(&lab.inventory_path()).args(["exec", "--", "true"]));
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("==> h01: exit code 0"), "{out}");
    assert!(out.contains("==> h02: unreachable: host key for"), "{out}");
    assert!(out.contains("is not known (ssh-ed25519 SHA256:"), "{out}");
}

/// A fleet option after the command (`-l h01`), or a mistyped one before it (`--timout`),
/// was sent to every host as part of the command. Now both are usage errors and nothing runs
/// anywhere; after `--`, option-looking words are the command's.
#[test]
fn exec_refuses_options_it_would_send_to_every_host() {
    let lab = TestLab::start(2);
    let home = tempfile::tempdir().expect("tempdir");
    let touch = r#"touch "$FLEET_ROOT/ran""#;
    let ran = |o: &std::process::Output| {
        for h in lab.hosts() {
            for f in ["ran", "ran2"] {
                assert!(
                    !h.root.join(f).exists(),
                    "`{f}` ran on {}: {}",
                    h.name,
                    stderr(o)
                );
            }
        }
    };

    let o =
        run(pinned(fleet(&lab.inventory_path()), home.path()).args(["exec", touch, "-l", "h01"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "error: `-l` after the command: put fleet options before the command, or use `--` before the command to send it all to the hosts\n"
    );
    ran(&o);

    let o = run(pinned(fleet(&lab.inventory_path()), home.path()).args([
        "exec",
        "--timout",
        "5s",
        "--",
        &format!(r#"{touch}; touch "$FLEET_ROOT/ran2""#),
    ]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("unexpected argument '--timout'"),
        "{}",
        stderr(&o)
    );
    ran(&o);

    // After `--` (and after the command's first word, for words that are not fleet's), the
    // words go to the hosts as they are.
    let o = run(pinned(fleet(&lab.inventory_path()), home.path())
        .args(["exec", "-l", "h01", "--", "echo", "-l", "h02", "--json"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "==> h01: exit code 0\n-l h02 --json\n");
    let o = run(pinned(fleet(&lab.inventory_path()), home.path()).args([
        "exec",
        "-l",
        "h02",
        "echo",
        "-la",
        "--limitless",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "==> h02: exit code 0\n-la --limitless\n");
}

/// A host named `../../X` made `--out-dir d` write `X.stdout` outside `d`, with content the
/// host chose. The inventory is refused at load, before anything connects or is written.
#[test]
fn exec_refuses_host_names_that_would_leave_the_out_dir() {
    let lab = TestLab::start(1);
    let home = tempfile::tempdir().expect("tempdir");
    let h = &lab.hosts()[0];
    let inventory = home.path().join("inventory.toml");
    let text = std::fs::read_to_string(lab.inventory_path()).expect("lab inventory");
    std::fs::write(
        &inventory,
        format!(
            "{text}\n[hosts.\"../../X\"]\naddress = \"{}\"\nport = {}\n",
            h.address, h.port
        ),
    )
    .expect("write inventory");
    let out_dir = home.path().join("a").join("out");
    let o = run(pinned(fleet(&inventory), home.path())
        .args(["exec", "--out-dir"])
        .arg(&out_dir)
        .args(["--", r#"touch "$FLEET_ROOT/ran"; echo owned"#]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("inventory.toml:")
            && err.contains("invalid host name `../../X`: it starts with `.`"),
        "{err}"
    );
    assert!(!home.path().join("X.stdout").exists());
    assert!(
        !out_dir.exists(),
        "nothing is written when the inventory is refused"
    );
    assert!(!h.root.join("ran").exists(), "the command ran");
}

/// `-f 1` goes through the hosts one at a time in inventory order (a cautious operator's
/// manual rollout), whatever order the runtime polls its tasks in.
#[test]
fn exec_admits_hosts_in_inventory_order() {
    let lab = TestLab::start(6);
    let o = run(fleet(&lab.inventory_path()).args([
        "exec",
        "-f",
        "1",
        "--",
        r#"date +%s%N > "$FLEET_ROOT/at""#,
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let at: Vec<u128> = lab
        .hosts()
        .iter()
        .map(|h| {
            std::fs::read_to_string(h.root.join("at"))
                .expect("at")
                .trim()
                .parse()
                .expect("ns")
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
}
