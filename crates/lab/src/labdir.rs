//! The lab directory: which paths sshd_config can hold, and making one ready for a new lab
//! without touching a running lab or a directory that is not a lab's.

use std::path::{Path, PathBuf};

use crate::error::io;
use crate::sshd::{self, SshdFiles};
use crate::{Lab, LabError, MARKER, proxy};

/// Refuses a lab directory whose path sshd_config cannot hold: its parser splits on
/// whitespace, treats quotes and `#` specially, and expands `%` tokens in
/// `AuthorizedKeysFile`.
pub(crate) fn check_dir_path(dir: &Path) -> Result<(), LabError> {
    let ok = dir.to_str().is_some_and(|s| {
        !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '#' | '%' | '\\')
        })
    });
    if ok {
        Ok(())
    } else {
        Err(LabError::Dir {
            dir: dir.to_owned(),
            reason: "path must be UTF-8 without whitespace, quotes, `#`, `%` or `\\` (sshd_config cannot hold it)",
        })
    }
}

/// Makes `dir` ready for a new lab: refuses a running lab or a foreign non-empty directory,
/// clears a stopped lab's per-host directories, marks it, and returns its canonical path.
pub(crate) fn prepare_dir(dir: &Path) -> Result<PathBuf, LabError> {
    if dir.exists() {
        if running_lab(dir) {
            return Err(LabError::Dir {
                dir: dir.to_owned(),
                reason: "a lab is still running there; stop it first with `fleet-lab down`",
            });
        }
        let empty = std::fs::read_dir(dir)
            .map_err(io("read", dir))?
            .next()
            .is_none();
        if !empty && !dir.join(MARKER).exists() {
            return Err(LabError::Dir {
                dir: dir.to_owned(),
                reason: "not empty and not a lab directory; refusing to touch it",
            });
        }
        for sub in ["sshd", "hosts", "home", "proxy"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(io("remove", &p))?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let marker = dir.join(MARKER);
    std::fs::write(
        &marker,
        "a fleet-lab directory: `fleet-lab up` may clear it\n",
    )
    .map_err(io("write", &marker))?;
    dir.canonicalize().map_err(io("resolve", dir))
}

/// Returns true when a daemon of the lab in `dir` still runs: a recorded pid, or one in a
/// host's pid file (should the record be missing or stale), running that host's config.
fn running_lab(dir: &Path) -> bool {
    if let Ok(lab) = Lab::open(dir)
        && (lab.proxy_running() || lab.hosts.iter().any(|h| lab.is_running(&h.name)))
    {
        return true;
    }
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    if sshd::read_pid(&proxy::pid_file(&dir)).is_some_and(|p| proxy::is_our_proxy(p, &dir)) {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(dir.join("sshd")) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let files = SshdFiles::new(&dir, &name.to_string_lossy());
        sshd::read_pid(&files.pid_file()).is_some_and(|p| sshd::is_our_sshd(p, &files.config()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_paths_sshd_cannot_hold_are_refused() {
        for bad in [
            "/tmp/a b",
            "/tmp/a%b",
            "/tmp/a#b",
            "/tmp/a\"b",
            "/tmp/a\\b",
            "/tmp/a\tb",
        ] {
            assert!(check_dir_path(Path::new(bad)).is_err(), "{bad}");
        }
        assert!(check_dir_path(Path::new("/tmp/fleet-lab.x_Y-1")).is_ok());
    }

    #[test]
    fn up_refuses_a_foreign_directory_before_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
        std::fs::create_dir(dir.path().join("hosts")).unwrap();
        let err = prepare_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a lab directory"), "{err}");
        assert!(dir.path().join("hosts").exists());
        assert!(!dir.path().join(MARKER).exists());
    }
}
