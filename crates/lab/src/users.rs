//! Login users for the lab, so fleet can be run the way it is on real servers: log in as a
//! person, then become root.
//!
//! The lab's hosts share this machine's user database, so the users are created once per
//! machine (as root, idempotently, under a lock, since tests start labs in parallel) and
//! left there on purpose for later labs; `fleet-lab users --remove` deletes them:
//! - [`OPERATOR`], who logs in with the lab's key or with a password, and may `sudo` to any
//!   user with that password;
//! - [`NOPASSWD`], who logs in with the key only and may `sudo` without a password;
//! - a sudoers drop-in, [`SUDOERS`], giving them that, and keeping the lab's per-host
//!   environment (`FLEET_ROOT`, `FLEET_HOST`) across `sudo`, which resets it otherwise.
//!
//! The operator's password is random, made at creation, and kept in [`STATE`], which only
//! root can read: a password known in advance would let anyone in through this machine's
//! own sshd.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::LabError;

/// Logs in with a password or the key; `sudo` with its password.
pub const OPERATOR: &str = "fleet-op";
/// Logs in with the key; `sudo` without a password.
pub const NOPASSWD: &str = "fleet-np";
/// A web server's user: owns the sites of a lab laid out with
/// [`crate::SitesOptions::owned_by`]; no login, no home.
pub const WEB: &str = "fleet-web";
/// The sudoers drop-in.
pub const SUDOERS: &str = "/etc/sudoers.d/fleet-lab";
/// Where the operator's password is kept (root only).
pub const STATE: &str = "/var/lib/fleet-lab/users";
/// doas's rules: written only where none exist (or the lab's own), when doas is installed.
pub const DOAS_CONF: &str = "/etc/doas.conf";
/// The first line of the lab's `doas.conf`, by which it knows its own.
const DOAS_MARK: &str = "# fleet-lab: test rules (removed by `fleet-lab users --remove`)";

/// The lab's login users, as created.
#[derive(Clone)]
pub struct LabUsers {
    /// [`OPERATOR`]'s login and sudo password.
    pub operator_password: String,
    /// Whether [`NOPASSWD`] may `doas` (to root and to [`OPERATOR`], without a password,
    /// keeping the environment): doas is installed and this machine had no rules of its own.
    pub doas: bool,
}

impl std::fmt::Debug for LabUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabUsers")
            .field("operator_password", &"..")
            .finish()
    }
}

/// Creates the users and the sudoers drop-in when missing, and returns the operator's
/// password.
///
/// # Errors
///
/// [`LabError::Users`] when not run as root, when `sudo` is not installed, or when a
/// command fails.
pub fn ensure() -> Result<LabUsers, LabError> {
    if !rustix::process::getuid().is_root() {
        return Err(LabError::Users(
            "the lab's login users are created by root (run the tests as root, as CI does)".into(),
        ));
    }
    if !Path::new("/usr/bin/sudo").exists() {
        return Err(LabError::Users(
            "sudo is not installed: `apt-get install -y sudo` (or run `make deps`)".into(),
        ));
    }
    let dir = Path::new(STATE).parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| users_err("create", dir, &e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| users_err("chmod", dir, &e))?;
    let lock_path = dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| users_err("open", &lock_path, &e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| users_err("lock", &lock_path, &e.into()))?;

    let password = match std::fs::read_to_string(STATE) {
        Ok(text) if user_exists(OPERATOR) && user_exists(NOPASSWD) => text.trim().to_owned(),
        _ => {
            let password = random_password()?;
            for user in [OPERATOR, NOPASSWD] {
                if !user_exists(user) {
                    run(
                        "useradd",
                        &["--create-home", "--shell", "/bin/sh", user],
                        None,
                    )?;
                }
            }
            run(
                "chpasswd",
                &[],
                Some(format!("{OPERATOR}:{password}\n").as_bytes()),
            )?;
            // `*`: no password logs in, but the account is not locked (sshd refuses a
            // locked account even its keys).
            run("usermod", &["--password", "*", NOPASSWD], None)?;
            write_private(Path::new(STATE), &format!("{password}\n"))?;
            password
        }
    };
    if !user_exists(WEB) {
        run(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                WEB,
            ],
            None,
        )?;
    }
    let sudoers = format!(
        "# fleet-lab's login users (left on purpose for later labs; `fleet-lab users --remove`)\n\
         Defaults:{OPERATOR},{NOPASSWD} env_keep += \"FLEET_ROOT FLEET_HOST\"\n\
         Defaults:{OPERATOR},{NOPASSWD} !lecture\n\
         {OPERATOR} ALL=(ALL:ALL) ALL\n\
         {NOPASSWD} ALL=(ALL:ALL) NOPASSWD: ALL\n"
    );
    if std::fs::read_to_string(SUDOERS).ok().as_deref() != Some(sudoers.as_str()) {
        let tmp = format!("{SUDOERS}.fleet-lab-tmp");
        std::fs::write(&tmp, &sudoers).map_err(|e| users_err("write", Path::new(&tmp), &e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440))
            .map_err(|e| users_err("chmod", Path::new(&tmp), &e))?;
        if let Err(e) = run("visudo", &["-cf", &tmp], None) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, SUDOERS).map_err(|e| users_err("rename", Path::new(&tmp), &e))?;
    }
    let doas = doas_rules()?;
    Ok(LabUsers {
        operator_password: password,
        doas,
    })
}

/// Writes the lab's doas rules unless the machine has rules of its own; whether the lab's
/// are in place.
fn doas_rules() -> Result<bool, LabError> {
    if !Path::new("/usr/bin/doas").exists() {
        return Ok(false);
    }
    let rules = format!(
        "{DOAS_MARK}\n\
         permit nopass keepenv {NOPASSWD} as root\n\
         permit nopass keepenv {NOPASSWD} as {OPERATOR}\n"
    );
    match std::fs::read_to_string(DOAS_CONF) {
        Ok(text) if text == rules => return Ok(true),
        Ok(text) if !text.starts_with(DOAS_MARK) => return Ok(false),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(users_err("read", Path::new(DOAS_CONF), &e));
        }
        _ => {}
    }
    let tmp = format!("{DOAS_CONF}.fleet-lab-tmp");
    write_private(Path::new(&tmp), &rules)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o400))
        .map_err(|e| users_err("chmod", Path::new(&tmp), &e))?;
    std::fs::rename(&tmp, DOAS_CONF).map_err(|e| users_err("rename", Path::new(&tmp), &e))?;
    Ok(true)
}

/// Deletes the users, their homes, the sudoers drop-in and the kept password.
///
/// # Errors
///
/// [`LabError::Users`] when not root or `userdel` fails.
pub fn remove() -> Result<(), LabError> {
    if !rustix::process::getuid().is_root() {
        return Err(LabError::Users(
            "only root can remove the lab's users".into(),
        ));
    }
    for user in [OPERATOR, NOPASSWD] {
        if user_exists(user) {
            run("userdel", &["--remove", user], None)?;
        }
    }
    if user_exists(WEB) {
        run("userdel", &[WEB], None)?;
    }
    if std::fs::read_to_string(DOAS_CONF).is_ok_and(|t| t.starts_with(DOAS_MARK)) {
        std::fs::remove_file(DOAS_CONF)
            .map_err(|e| users_err("remove", Path::new(DOAS_CONF), &e))?;
    }
    for f in [SUDOERS, STATE] {
        match std::fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(users_err("remove", Path::new(f), &e));
            }
            _ => {}
        }
    }
    Ok(())
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<(), LabError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Users(format!("cannot run `{program}`: {e}")))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .map_err(|e| LabError::Users(format!("`{program}`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::Users(format!("`{program}`: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Users(format!(
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn random_password() -> Result<String, LabError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| users_err("read", Path::new("/dev/urandom"), &e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, text: &str) -> Result<(), LabError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| users_err("write", path, &e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| users_err("write", path, &e))
}

fn users_err(action: &str, path: &Path, e: &std::io::Error) -> LabError {
    LabError::Users(format!("cannot {action} `{}`: {e}", path.display()))
}
