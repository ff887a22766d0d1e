//! The passwords a host's connection needs: its SSH login password and its become
//! password, from where the inventory says (a file only its owner can read, or an
//! environment variable), else asked once on the terminal when the command line says so
//! (`--ask-pass`, `--ask-become-pass`), and then given to every host that has no source of
//! its own.
//!
//! A password is read only for a host that is about to be reached, so a variable missing for
//! a host nobody selected is no error. It lives in a [`Secret`] (zeroed when dropped, never
//! shown by `Debug`) and goes nowhere but the SSH connection.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context as _, bail};
use fleet_inventory::{BecomeMethod, Host, SecretSource};
use fleet_remote_exec::{Become, BecomeMethod as Method, Secret};

/// What the command line asks for; set once by [`init`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Asks {
    /// `--ask-pass`.
    pub(crate) login: bool,
    /// `--ask-become-pass`.
    pub(crate) become_: bool,
}

struct Access {
    asks: Asks,
    /// Answers of the prompts, asked at the first host that needs them.
    asked_login: Mutex<Option<Secret>>,
    asked_become: Mutex<Option<Secret>>,
    /// Files read once, however many hosts name them.
    files: Mutex<HashMap<PathBuf, Secret>>,
}

static ACCESS: OnceLock<Access> = OnceLock::new();

/// Records what the command line asks for (the first call wins).
pub(crate) fn init(asks: Asks) {
    let _ = ACCESS.set(Access {
        asks,
        asked_login: Mutex::new(None),
        asked_become: Mutex::new(None),
        files: Mutex::new(HashMap::new()),
    });
}

fn access() -> &'static Access {
    ACCESS.get_or_init(|| Access {
        asks: Asks::default(),
        asked_login: Mutex::new(None),
        asked_become: Mutex::new(None),
        files: Mutex::new(HashMap::new()),
    })
}

/// The SSH login password of `host`, if it has one.
///
/// # Errors
///
/// The inventory's source cannot be read (naming the host, the key and the file or
/// variable), or `--ask-pass` has no terminal to ask on.
pub(crate) fn login_password(host: &Host) -> anyhow::Result<Option<Secret>> {
    let a = access();
    match &host.password {
        Some(src) => read(src, host, "password").map(Some),
        None if a.asks.login => asked(&a.asked_login, "--ask-pass", "ssh password: ").map(Some),
        None => Ok(None),
    }
}

/// The become of `host`, with its password, if it has one.
///
/// # Errors
///
/// As [`login_password`], for `become_password` and `--ask-become-pass`.
pub(crate) fn escalation(host: &Host) -> anyhow::Result<Option<Become>> {
    let Some(b) = &host.escalation else {
        return Ok(None);
    };
    let a = access();
    let password = match &b.password {
        Some(src) => Some(read(src, host, "become_password")?),
        // doas takes no password without a terminal: its hosts need a `nopass` rule, and
        // the answer is for the others.
        None if a.asks.become_ && b.method != BecomeMethod::Doas => Some(asked(
            &a.asked_become,
            "--ask-become-pass",
            "become password: ",
        )?),
        None => None,
    };
    Ok(Some(Become {
        user: b.user.clone(),
        method: match b.method {
            BecomeMethod::Sudo => Method::Sudo,
            BecomeMethod::Doas => Method::Doas,
            BecomeMethod::Su => Method::Su,
        },
        password,
    }))
}

fn asked(slot: &Mutex<Option<Secret>>, flag: &str, prompt: &str) -> anyhow::Result<Secret> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = &*slot {
        return Ok(s.clone());
    }
    // rpassword asks on /dev/tty, so stdin may well be a pipe.
    if std::fs::File::open("/dev/tty").is_err() {
        bail!("`{flag}` needs a terminal to ask on");
    }
    let s = Secret::new(rpassword::prompt_password(prompt)?);
    *slot = Some(s.clone());
    Ok(s)
}

fn read(src: &SecretSource, host: &Host, key: &str) -> anyhow::Result<Secret> {
    match src {
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            Ok(_) => bail!(
                "host `{}`: environment variable `{var}` (its `{key}_env`) is empty",
                host.name
            ),
            Err(std::env::VarError::NotUnicode(_)) => bail!(
                "host `{}`: environment variable `{var}` (its `{key}_env`) is not valid UTF-8",
                host.name
            ),
            Err(std::env::VarError::NotPresent) => bail!(
                "host `{}`: environment variable `{var}` (its `{key}_env`) is not set",
                host.name
            ),
        },
        SecretSource::File(path) => {
            let mut files = access().files.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = files.get(path) {
                return Ok(s.clone());
            }
            let s = read_file(path).with_context(|| {
                format!(
                    "host `{}`: cannot use `{}` (its `{key}_file`)",
                    host.name,
                    path.display()
                )
            })?;
            files.insert(path.clone(), s.clone());
            Ok(s)
        }
    }
}

/// The first line of `path`, which must be a file of ours that nobody else can read.
fn read_file(path: &Path) -> anyhow::Result<Secret> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        bail!("not a file");
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "its mode is {mode:04o}: a password file must be readable by its owner only (chmod 600)"
        );
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "it belongs to uid {}, not to the user fleet runs as (uid {me})",
            meta.uid()
        );
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path)?);
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        bail!("its first line is empty");
    }
    Ok(Secret::new(line.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn password_files_are_ours_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_file(&f).unwrap_err().to_string();
        assert_eq!(
            e,
            "its mode is 0640: a password file must be readable by its owner only (chmod 600)"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_file(&f).unwrap().expose(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(
            read_file(&f).unwrap_err().to_string(),
            "its first line is empty"
        );
        assert_eq!(read_file(dir.path()).unwrap_err().to_string(), "not a file");
    }
}
