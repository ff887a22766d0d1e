//! Writing sshd configs, starting daemons and stopping exactly the ones we started.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::LabError;
use crate::error::io;

pub(crate) const SSHD: &str = "/usr/sbin/sshd";

/// Paths of one lab host's sshd.
pub(crate) struct SshdFiles {
    pub(crate) dir: PathBuf,
}

impl SshdFiles {
    pub(crate) fn new(lab_dir: &Path, name: &str) -> Self {
        Self {
            dir: lab_dir.join("sshd").join(name),
        }
    }
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join("sshd_config")
    }
    pub(crate) fn host_key(&self) -> PathBuf {
        self.dir.join("ssh_host_ed25519_key")
    }
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("sshd.pid")
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }
}

pub(crate) struct ConfigInput<'a> {
    pub(crate) name: &'a str,
    pub(crate) address: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) lab_dir: &'a Path,
    pub(crate) per_source_penalties: bool,
}

pub(crate) fn config_text(c: &ConfigInput<'_>) -> String {
    let files = SshdFiles::new(c.lab_dir, c.name);
    let dir = c.lab_dir.display();
    let sftp = [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/libexec/sftp-server",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("internal-sftp");
    let penalties = if c.per_source_penalties {
        // OpenSSH >= 9.8 would penalise 127.x after the auth-failure tests.
        "PerSourcePenalties no\n"
    } else {
        ""
    };
    format!(
        "# sshd for fleet-lab host {name} ({addr}:{port})\n\
         ListenAddress {addr}\n\
         Port {port}\n\
         AddressFamily inet\n\
         HostKey {key}\n\
         PidFile {pid}\n\
         LogLevel ERROR\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         StrictModes no\n\
         UsePAM no\n\
         UseDNS no\n\
         MaxStartups 2000\n\
         MaxSessions 100\n\
         MaxAuthTries 20\n\
         LoginGraceTime 60\n\
         X11Forwarding no\n\
         AllowTcpForwarding yes\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         PermitUserRC no\n\
         {penalties}\
         SetEnv HOME={dir}/home/{name} FLEET_HOST={name} FLEET_ROOT={dir}/hosts/{name}\n\
         Subsystem sftp {sftp}\n",
        name = c.name,
        addr = c.address,
        port = c.port,
        key = files.host_key().display(),
        pid = files.pid_file().display(),
    )
}

/// Checks a config with `sshd -t`; returns sshd's complaint on failure.
pub(crate) fn check_config(config: &Path) -> Result<(), String> {
    let out = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(config)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Starts the daemon for `files` (sshd forks into the background and writes its pid file).
pub(crate) fn spawn(name: &str, files: &SshdFiles) -> Result<(), LabError> {
    let _ = std::fs::remove_file(files.pid_file());
    let out = Command::new(SSHD)
        .arg("-f")
        .arg(files.config())
        .arg("-E")
        .arg(files.log())
        .output()
        .map_err(|e| LabError::Sshd {
            host: name.to_owned(),
            reason: format!("cannot run `{SSHD}`: {e}"),
        })?;
    if !out.status.success() {
        let log = std::fs::read_to_string(files.log()).unwrap_or_default();
        return Err(LabError::Sshd {
            host: name.to_owned(),
            reason: format!(
                "exited with {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                log.trim()
            ),
        });
    }
    Ok(())
}

/// Waits for the pid file of a started daemon.
pub(crate) fn wait_pid(name: &str, files: &SshdFiles, deadline: Instant) -> Result<u32, LabError> {
    loop {
        if let Ok(text) = std::fs::read_to_string(files.pid_file())
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(files.log()).unwrap_or_default();
            return Err(LabError::Sshd {
                host: name.to_owned(),
                reason: format!("no pid file after start: {}", log.trim()),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Returns true when `pid` is alive and runs the sshd of `config` (never trust a bare pid:
/// it may have been reused by an unrelated process).
pub(crate) fn is_our_sshd(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    // sshd rewrites its title ("sshd: /usr/sbin/sshd -f CFG ... [listener]"), so look for the
    // config path as a whole word rather than as an exact argv element.
    let needle = config.as_os_str().as_encoded_bytes();
    let found = cmdline.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle && matches!(cmdline.get(i + needle.len()), None | Some(0 | b' '))
    });
    found && !is_zombie(pid)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Stops the daemon `pid` if it is still ours: TERM, then KILL after 3 s. Returns whether a
/// process was stopped.
pub(crate) fn stop(pid: u32, config: &Path) -> bool {
    if !is_our_sshd(pid, config) {
        return false;
    }
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    let _ = kill_process(p, Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_our_sshd(pid, config) {
        if Instant::now() > deadline {
            let _ = kill_process(p, Signal::KILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

pub(crate) fn ensure_privsep_dir() -> Result<(), LabError> {
    if rustix::process::getuid().is_root() {
        let d = Path::new("/run/sshd");
        std::fs::create_dir_all(d).map_err(io("create", d))?;
    }
    Ok(())
}
