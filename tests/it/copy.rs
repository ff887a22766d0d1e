//! `fleet copy` and `fleet fetch` against real sshd hosts, each showing its own directory at
//! the lab's private path, so what landed on which host can be told apart.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet_lab::TestLab;
use serde_json::Value;

use crate::{both, fleet, run, stderr, stdout};

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
}

/// Every file name under `dir`, sorted, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            out.push(p.strip_prefix(dir).expect("under").display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Host `name`'s own directory behind the lab's private path.
fn own(lab: &TestLab, name: &str) -> PathBuf {
    lab.dir().join("hosts").join(name).join("private")
}

/// A file and a directory tree land on every host with their modes; a second copy sends
/// nothing (every file unchanged); a changed file is the only one sent again; a new
/// `--mode` on content already there only sets the mode; `--force` sends everything.
#[test]
fn copy_delivers_files_and_trees_once() {
    let lab = TestLab::with_private_dirs(3);
    let src = lab.temp_dir().join("src");
    std::fs::create_dir_all(src.join("site/conf")).expect("mkdir");
    std::fs::write(src.join("site/index.php"), "<?php echo 1;\n").expect("write");
    std::fs::write(src.join("site/conf/db.ini"), "password=secret\n").expect("write");
    std::fs::write(src.join("deploy.sh"), "#!/bin/sh\necho deployed\n").expect("write");
    set_mode(&src.join("site/conf/db.ini"), 0o640);
    set_mode(&src.join("site/conf"), 0o750);
    set_mode(&src.join("deploy.sh"), 0o755);
    let private = lab.lab().private_dir();
    let copy = |extra: &[&str], sources: &[&str]| {
        let mut cmd = fleet(&lab.inventory_path());
        cmd.arg("copy").arg("--json").args(extra);
        for s in sources {
            cmd.arg(src.join(s));
        }
        cmd.arg(&private);
        run(&mut cmd)
    };

    let o = copy(&["-r"], &["site", "deploy.sh"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for v in json_lines(&stdout(&o)) {
        assert_eq!(
            (v["written"].as_u64(), v["unchanged"].as_u64()),
            (Some(3), Some(0)),
            "{v}"
        );
    }
    for h in lab.hosts() {
        let dir = own(&lab, &h.name);
        assert_eq!(
            tree(&dir),
            [
                "deploy.sh",
                "site",
                "site/conf",
                "site/conf/db.ini",
                "site/index.php"
            ],
            "{}",
            h.name
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("site/conf/db.ini")).expect("read"),
            "password=secret\n"
        );
        assert_eq!(mode(&dir.join("site/conf/db.ini")), 0o640);
        assert_eq!(mode(&dir.join("site/conf")), 0o750);
        assert_eq!(mode(&dir.join("deploy.sh")), 0o755);
    }
    assert!(
        std::fs::read_dir(&private).expect("read").next().is_none(),
        "the machine's own view of the path stays empty"
    );

    let o = copy(&["-r"], &["site", "deploy.sh"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for v in json_lines(&stdout(&o)) {
        assert_eq!(
            (
                v["written"].as_u64(),
                v["unchanged"].as_u64(),
                v["bytes"].as_u64()
            ),
            (Some(0), Some(3), Some(0)),
            "{v}"
        );
    }
    // A file changed by hand on one host is sent to that host alone.
    std::fs::write(own(&lab, "h02").join("site/index.php"), "tampered").expect("write");
    let o = copy(&["-r"], &["site", "deploy.sh"]);
    let written: Vec<u64> = json_lines(&stdout(&o))
        .iter()
        .map(|v| v["written"].as_u64().expect("written"))
        .collect();
    assert_eq!(written, [0, 1, 0], "{}", both(&o));
    assert_eq!(
        std::fs::read_to_string(own(&lab, "h02").join("site/index.php")).expect("read"),
        "<?php echo 1;\n"
    );

    let o = copy(&["--mode", "0700"], &["deploy.sh"]);
    for v in json_lines(&stdout(&o)) {
        assert_eq!(
            (v["fixed"].as_u64(), v["written"].as_u64()),
            (Some(1), Some(0)),
            "{v}"
        );
    }
    assert_eq!(mode(&own(&lab, "h03").join("deploy.sh")), 0o700);
    let o = copy(&["--force", "--mode", "0700"], &["deploy.sh"]);
    for v in json_lines(&stdout(&o)) {
        assert_eq!(v["written"].as_u64(), Some(1), "{v}");
    }

    // The folded text says the same.
    let o = run(fleet(&lab.inventory_path())
        .arg("copy")
        .arg("-r")
        .arg(src.join("site"))
        .arg(&private));
    assert_eq!(
        stdout(&o),
        "==> h[01-03] (3 hosts): 2 unchanged\n",
        "{}",
        both(&o)
    );
    assert!(stderr(&o).contains("3 hosts in "), "{}", both(&o));
}

/// `--owner` gives files and directories to the user (the lab's sessions are root).
#[test]
fn copy_gives_files_to_the_owner_asked() {
    let lab = TestLab::with_private_dirs(1);
    let src = lab.temp_dir().join("owned");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), "x").expect("write");
    let o = run(fleet(&lab.inventory_path())
        .args(["copy", "-r", "--owner", "nobody"])
        .arg(&src)
        .arg(lab.lab().private_dir()));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let nobody = std::fs::metadata(own(&lab, "h01").join("owned/f"))
        .expect("meta")
        .uid();
    assert_ne!(nobody, 0);
    assert_eq!(
        std::fs::metadata(own(&lab, "h01").join("owned"))
            .expect("meta")
            .uid(),
        nobody
    );
    // A new version without `--owner` keeps the owner of the file it replaces, as `cp`.
    std::fs::write(src.join("f"), "y").expect("write");
    let o = run(fleet(&lab.inventory_path())
        .args(["copy", "-r"])
        .arg(&src)
        .arg(lab.lab().private_dir()));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let f = own(&lab, "h01").join("owned/f");
    assert_eq!(std::fs::read_to_string(&f).expect("read"), "y");
    assert_eq!(std::fs::metadata(&f).expect("meta").uid(), nobody);
    // setuid survives the owner being set (chown clears it, so it comes first), and a
    // numeric owner is the same owner the next time.
    let tool = lab.temp_dir().join("tool");
    std::fs::write(&tool, "#!/bin/sh\n").expect("write");
    let copy_tool = || {
        run(fleet(&lab.inventory_path())
            .args([
                "copy",
                "--json",
                "--mode",
                "4755",
                "--owner",
                &format!("{nobody}"),
            ])
            .arg(&tool)
            .arg(lab.lab().private_dir()))
    };
    let o = copy_tool();
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(mode(&own(&lab, "h01").join("tool")), 0o4755);
    let o = copy_tool();
    assert_eq!(json_lines(&stdout(&o))[0]["unchanged"], 1, "{}", both(&o));
    // A symbolic link at the destination is not replaced by a file.
    std::os::unix::fs::symlink("/etc/hostname", own(&lab, "h01").join("link")).expect("symlink");
    let link = lab.temp_dir().join("link");
    std::fs::write(&link, "x").expect("write");
    let o = run(fleet(&lab.inventory_path())
        .args(["copy", "--json"])
        .arg(&link)
        .arg(lab.lab().private_dir()));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o).contains("is a symbolic link; not replacing it"),
        "{}",
        both(&o)
    );
    assert!(
        std::fs::symlink_metadata(own(&lab, "h01").join("link"))
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    let o = run(fleet(&lab.inventory_path())
        .args(["copy", "--owner", "bad;name"])
        .arg(src.join("f"))
        .arg("/tmp"));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
}

/// A host whose `cat` corrupts what it copies (same size, other bytes): the SHA-256 check on
/// the host catches it, the file already there keeps its content, no temporary file is
/// left, and the other hosts get the file.
#[test]
fn copy_catches_a_corrupt_upload_before_it_takes_the_name() {
    let mut lab = TestLab::with_private_dirs(2);
    let evil = lab.temp_dir().join("evil-bin");
    std::fs::create_dir_all(&evil).expect("mkdir");
    std::fs::write(evil.join("cat"), "#!/bin/sh\nexec tr a b\n").expect("write");
    set_mode(&evil.join("cat"), 0o755);
    lab.lab_mut()
        .put_first_on_path("h02", &evil)
        .expect("evil PATH");
    std::fs::write(own(&lab, "h02").join("app.conf"), "old\n").expect("write");
    let file = lab.temp_dir().join("app.conf");
    std::fs::write(&file, "banana\n").expect("write");
    let o = run(fleet(&lab.inventory_path())
        .args(["copy", "--json"])
        .arg(&file)
        .arg(lab.lab().private_dir()));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let v = json_lines(&stdout(&o));
    assert_eq!(v[0]["status"], "ok");
    assert_eq!(v[1]["status"], "failed");
    let why = v[1]["files"][0]["error"].as_str().expect("error");
    assert!(why.contains("SHA-256 mismatch"), "{why}");
    assert_eq!(
        std::fs::read_to_string(own(&lab, "h01").join("app.conf")).expect("read"),
        "banana\n"
    );
    assert_eq!(
        std::fs::read_to_string(own(&lab, "h02").join("app.conf")).expect("read"),
        "old\n"
    );
    assert_eq!(
        tree(&own(&lab, "h02")),
        ["app.conf"],
        "no temporary file left"
    );
}

/// An upload cut off by its timeout is never visible under its name: while it runs only a
/// temporary file grows beside the old one, and after it neither the temporary file nor a
/// partial file is there; the old file is untouched.
#[test]
fn copy_cut_off_leaves_the_old_file_and_no_partial_one() {
    let mut lab = TestLab::with_private_dirs(1);
    let slow = lab.temp_dir().join("slow-bin");
    std::fs::create_dir_all(&slow).expect("mkdir");
    // Takes the first megabyte, then stalls: the upload cannot finish.
    std::fs::write(slow.join("cat"), "#!/bin/sh\nhead -c 1048576\nsleep 300\n").expect("write");
    set_mode(&slow.join("cat"), 0o755);
    lab.lab_mut()
        .put_first_on_path("h01", &slow)
        .expect("slow PATH");
    let dir = own(&lab, "h01");
    std::fs::write(dir.join("big.bin"), "old\n").expect("write");
    let big = lab.temp_dir().join("big.bin");
    std::fs::write(&big, vec![7u8; 8 << 20]).expect("write");
    let mut child = fleet(&lab.inventory_path())
        .args(["copy", "--json", "-t", "3s"])
        .arg(&big)
        .arg(lab.lab().private_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    let mut saw_temp = false;
    while t0.elapsed() < Duration::from_secs(30) && child.try_wait().expect("wait").is_none() {
        let names = tree(&dir);
        if names.iter().any(|n| n.starts_with(".fleet-upload.")) {
            saw_temp = true;
        }
        assert_eq!(
            std::fs::read(dir.join("big.bin")).expect("read"),
            b"old\n",
            "the name changed mid-upload: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().expect("output");
    assert!(saw_temp, "the upload never showed its temporary file");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let v = json_lines(&stdout(&o));
    assert_eq!(v[0]["status"], "timeout", "{}", both(&o));
    assert!(
        v[0]["error"].as_str().expect("error").contains("timed out"),
        "{}",
        v[0]
    );
    assert_eq!(
        tree(&dir),
        ["big.bin"],
        "a temporary file was left: {}",
        both(&o)
    );
    assert_eq!(std::fs::read(dir.join("big.bin")).expect("read"), b"old\n");
}

/// Fetch writes `LOCAL_DIR/<host>/<name>` with each host's own file; a host without it
/// fails alone, and a host whose SHA-256 of the file is not that of the bytes sent leaves
/// no local file.
#[test]
fn fetch_saves_each_hosts_file_in_its_own_dir() {
    let mut lab = TestLab::with_private_dirs(3);
    let evil = lab.temp_dir().join("evil-bin");
    std::fs::create_dir_all(&evil).expect("mkdir");
    // A hash tool that lies: the bytes do not match what the host says they are.
    std::fs::write(
        evil.join("sha256sum"),
        format!("#!/bin/sh\ncat > /dev/null\necho '{}  -'\n", "0".repeat(64)),
    )
    .expect("write");
    set_mode(&evil.join("sha256sum"), 0o755);
    lab.lab_mut()
        .put_first_on_path("h03", &evil)
        .expect("evil PATH");
    for (h, text) in [("h01", "alpha one\n"), ("h03", "gamma\n")] {
        std::fs::write(own(&lab, h).join("app.log"), text).expect("write");
    }
    let out = lab.temp_dir().join("logs");
    let o = run(fleet(&lab.inventory_path())
        .args(["fetch", "--json"])
        .arg(lab.lab().private_dir().join("app.log"))
        .arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let v = json_lines(&stdout(&o));
    assert_eq!(v[0]["status"], "ok", "{}", v[0]);
    assert_eq!(
        std::fs::read_to_string(out.join("h01/app.log")).expect("read"),
        "alpha one\n"
    );
    assert_eq!(
        v[0]["files"][0]["path"],
        out.join("h01/app.log").display().to_string()
    );
    assert_eq!(v[1]["status"], "failed");
    assert!(
        v[1]["files"][0]["error"]
            .as_str()
            .expect("error")
            .contains("is not a regular file"),
        "{}",
        v[1]
    );
    assert_eq!(v[2]["status"], "failed");
    assert!(
        v[2]["files"][0]["error"]
            .as_str()
            .expect("error")
            .contains("SHA-256"),
        "{}",
        v[2]
    );
    assert!(tree(&out.join("h02")).is_empty());
    assert!(
        tree(&out.join("h03")).is_empty(),
        "a corrupt or temporary file was left"
    );

    let o = run(fleet(&lab.inventory_path())
        .args(["fetch", "-l", "h01"])
        .arg(lab.lab().private_dir().join("app.log"))
        .arg(&out));
    assert_eq!(stdout(&o), "==> h01: 1 fetched\n", "{}", both(&o));
}

/// `fleet upgrade` sends its release tarball through the same checked upload: a host whose
/// `cat` corrupts what it copies fails at the upload, before any of its sites is touched
/// (never in maintenance, code and database as they were), and the other host upgrades.
#[test]
fn upgrade_tarball_upload_is_checked_by_sha256() {
    use crate::upgrade::{FROM, TO, Upgrade, is_maintenance_on, prior_maintenance};
    let mut u = Upgrade::new(2, 1);
    let evil = u.lab.temp_dir().join("evil-bin");
    std::fs::create_dir_all(&evil).expect("mkdir");
    // Only a bare `cat` (stdin to stdout, as an upload uses it) corrupts; `cat FILE` is true.
    std::fs::write(
        evil.join("cat"),
        // Its first byte replaced, the size kept (a tarball starts with 0x1f, never `X`).
        "#!/bin/sh\nif [ $# -eq 0 ]; then printf X; exec tail -c +2; fi\nexec /bin/cat \"$@\"\n",
    )
    .expect("write");
    set_mode(&evil.join("cat"), 0o755);
    u.lab
        .lab_mut()
        .put_first_on_path("h02", &evil)
        .expect("evil PATH");
    let o = u.fleet(&["--batches", "100%"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(both(&o).contains("SHA-256 mismatch"), "{}", both(&o));
    for s in &u.sites {
        if s.host == "h02" {
            assert_eq!(s.code_version(), FROM);
            assert_eq!(s.db_version(), FROM);
            assert_eq!(s.maintenance(), prior_maintenance(s));
            assert!(
                !u.calls("h02").iter().any(is_maintenance_on),
                "h02's site went into maintenance"
            );
        } else {
            assert_eq!(s.db_version(), TO, "{}", s.host);
            // The run's directory beside the backups, with the tarball, is the operator's
            // alone.
            let run_dirs: Vec<_> = std::fs::read_dir(&s.backup_dir)
                .expect("backup dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("fleet-"))
                })
                .collect();
            assert!(!run_dirs.is_empty(), "{}", s.backup_dir.display());
            for d in run_dirs {
                assert_eq!(mode(&d), 0o700, "{}", d.display());
            }
        }
    }
}

/// Thousands of files with long names, in hundreds of directories: the commands that create
/// the directories and ask for the files already there fit no command line, and still work;
/// the second copy finds every file unchanged.
#[test]
fn copy_of_a_large_tree_fits_no_command_line_and_works() {
    let lab = TestLab::with_private_dirs(1);
    let src = lab.temp_dir().join("tree");
    let long = "d".repeat(100);
    // 600 paths of about 250 bytes: 150 KB, past Linux's 128 KiB for one argument.
    let (dirs, per_dir) = (150, 4);
    for d in 0..dirs {
        let dir = src.join(format!("{long}-{d:04}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..per_dir {
            std::fs::write(
                dir.join(format!("{long}-file-{f}.txt")),
                format!("{d}/{f}\n"),
            )
            .expect("write");
        }
    }
    let copy = || {
        run(fleet(&lab.inventory_path())
            .args(["copy", "--json", "-r"])
            .arg(&src)
            .arg(lab.lab().private_dir()))
    };
    let o = copy();
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(
        json_lines(&stdout(&o))[0]["written"],
        dirs * per_dir,
        "{}",
        both(&o)
    );
    assert_eq!(
        std::fs::read_to_string(
            own(&lab, "h01").join(format!("tree/{long}-0149/{long}-file-3.txt"))
        )
        .expect("read"),
        "149/3\n"
    );
    let o = copy();
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(
        json_lines(&stdout(&o))[0]["unchanged"],
        dirs * per_dir,
        "{}",
        both(&o)
    );
}

/// A log still being written is fetched as it was when asked: a whole prefix of the file,
/// checked, not refused because it grew.
#[test]
fn fetch_of_a_growing_log_takes_what_it_had() {
    use std::io::Write as _;
    let lab = TestLab::with_private_dirs(1);
    let log = own(&lab, "h01").join("app.log");
    std::fs::write(&log, "start\n".repeat(200_000)).expect("write");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open");
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                f.write_all(b"more\n").expect("append");
            }
        })
    };
    let out = lab.temp_dir().join("out");
    let o = run(fleet(&lab.inventory_path())
        .args(["fetch", "--json"])
        .arg(lab.lab().private_dir().join("app.log"))
        .arg(&out));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().expect("writer");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let got = std::fs::read(out.join("h01/app.log")).expect("fetched");
    let all = std::fs::read(&log).expect("log");
    assert!(
        got.len() >= 1_200_000 && all.starts_with(&got),
        "{} of {}",
        got.len(),
        all.len()
    );
}
