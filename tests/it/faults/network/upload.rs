//! The release tarball's upload cut mid-way: the partial file never becomes the code.

use super::*;

/// Every file under `dir` with its SHA-256, computed on the host.
fn tree_sha256(dir: &Path) -> String {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -type f -print0 | sort -z | xargs -0 sha256sum")
        .arg("sh")
        .arg(dir)
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sha256(file: &Path) -> String {
    let o = std::process::Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Rewrites the release tarball at `path` with `bytes` of random data added under
/// `civicrm/`, so that its upload outlasts what the pipes and sshd's buffers on the way hold:
/// a connection cut mid-way then leaves the host a partial file.
fn pad_tarball(path: &Path, bytes: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let sh = |script: &str| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(dir.path())
            .arg(path)
            .arg(bytes.to_string())
            .output()
            .expect("sh");
        assert!(o.status.success(), "{script}: {o:?}");
    };
    sh(
        "cd \"$1\" && tar -xzf \"$2\" && head -c \"$3\" /dev/urandom > civicrm/fleet-test-padding.bin \
        && tar -czf \"$2\" civicrm",
    );
}

/// The connection to h02 drops (its sshd's connection processes killed, the host up) while
/// the release tarball is being written there: the run says the upload failed and why, the
/// partial file never takes the tarball's name and is removed, nothing of it reaches the code
/// (every file of the site's code has the SHA-256 it had), the site never went into
/// maintenance; h01 is upgraded. Once the network is back, a new run upgrades h02.
#[test]
fn upgrade_connection_dropped_mid_upload_leaves_the_site_untouched_and_says_why() {
    let mut u = Upgrade::new(2, 1);
    let tarball = u.lab.release_tarball(TO);
    pad_tarball(&tarball, 4 << 20);
    let want = sha256(&tarball);
    let size = std::fs::metadata(&tarball).expect("tarball").len();
    // Where the cut falls: after a seeded number of bytes (`FLEET_FAULT_SEED`), within the
    // first three quarters of the tarball.
    let at = Rng::new(seed(), "network: upload cut").range(1, (size * 3 / 4).max(1));
    // A slow disk, while `$FLEET_ROOT/slow-disk` exists: a bare `cat` (stdin to stdout, as the
    // upload uses it) copies a 64th of the tarball every 50 ms (3 s for all of it), to the end
    // of its input, so that the cut comes well before the end.
    let slow = u.lab.temp_dir().join("slow-disk");
    std::fs::create_dir_all(&slow).expect("mkdir");
    std::fs::write(
        slow.join("cat"),
        format!(
            "#!/bin/sh\n[ $# -eq 0 ] && [ -e \"$FLEET_ROOT/slow-disk\" ] || exec /bin/cat \"$@\"\n\
             exec perl -e 'while (sysread(STDIN, my $b, {})) {{ syswrite(STDOUT, $b); select(undef, undef, undef, 0.05) }}'\n",
            (size / 64).max(1)
        ),
    )
    .expect("write");
    std::fs::set_permissions(
        slow.join("cat"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    u.lab
        .lab_mut()
        .put_first_on_path("h02", &slow)
        .expect("slow PATH");
    std::fs::write(u.host_root("h02").join("slow-disk"), "").expect("slow disk");
    let s = u.sites_of("h02")[0].clone();
    let code_before = tree_sha256(&s.code_dir());

    let child = spawn_upgrade(&u, &["--batches", "100%", "--max-fail", "1"]);
    let partial = || {
        files_under(&s.backup_dir).into_iter().find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".fleet-upload."))
                && std::fs::metadata(p).is_ok_and(|m| m.len() >= at)
        })
    };
    wait_until(&format!("{at} of {size} bytes on h02"), secs(60), || {
        partial().is_some()
    });
    let cut = u
        .lab
        .drop_connections("h02")
        .expect("drop h02's connections");
    assert!(cut > 0, "no connection of h02 to drop");
    let _ = writeln!(std::io::stderr(), "cut after {at} of {size} bytes");
    let o = finish_within(child, secs(60), "the upgrade whose connection dropped");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let r = row(&o, "h02", "site1");
    assert!(r.contains("upload"), "the run does not say which step: {r}");
    assert!(r.contains("nothing was changed"), "{r}");
    let run = run_id(&u);
    // The upload's shell on the host (a process of the run, tagged as every step is) reads
    // what reached it, finds it short, removes it and ends.
    nothing_running(&run, secs(20));
    let left = files_under(&s.backup_dir);
    assert!(
        !left.iter().any(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".fleet-upload."))),
        "a partial upload was left: {left:?}"
    );
    // What reached the host was short: nothing took the tarball's name (a complete copy
    // would have, once its SHA-256 was checked).
    let named: Vec<&PathBuf> = left
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".tar.gz"))
        })
        .collect();
    assert!(
        named.iter().all(|p| sha256(p) == want),
        "a partial tarball under its name: {named:?}"
    );
    assert!(named.is_empty(), "the cut upload completed: {named:?}");
    let rows = journal_rows(&u, &run, "h02");
    assert!(rows.iter().all(|r| r.contains("failed")), "{rows:?}");
    assert_eq!(
        tree_sha256(&s.code_dir()),
        code_before,
        "h02's code changed"
    );
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.db_version(), FROM);
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    assert!(!u.calls("h02").iter().any(is_maintenance_on));
    assert_eq!(u.sites_of("h01")[0].db_version(), TO, "{}", both(&o));
    // The cut came before the run could release h02/site1's lock on the host: the journal
    // knows, and `recover` releases it (and touches nothing else), then has nothing left.
    let locks = s.backup_dir.join(".fleet-locks");
    let held = || std::fs::read_dir(&locks).map_or(0, Iterator::count);
    assert_eq!(held(), 1, "the lock the cut left");
    let o = cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(
        stderr(&o).contains("released the lock") && stderr(&o).contains("`site1`"),
        "{}",
        both(&o)
    );
    assert_eq!(held(), 0, "the lock is still there: {}", both(&o));
    assert!(safe(&s) && s.code_version() == FROM);
    nothing_to_recover(&u);
    let down = left_down(&u.sites);

    std::fs::remove_file(u.host_root("h02").join("slow-disk")).expect("fast disk");
    let o = upgrade(&u, &[], secs(90));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.code_version(), TO);
    assert!(safe(&s));
    Figures {
        sites: u.sites.len() as u64,
        left_down: down + left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, cut mid-upload");
}
