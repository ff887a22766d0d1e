//! The one error type of the lab.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a lab could not be started, read or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab's login users could not be made or removed.
    #[error("lab users: {0}")]
    Users(String),

    /// The OpenSSH server is not installed.
    #[error("sshd not found at `{}`: install it with `apt-get install -y openssh-server`", .0.display())]
    SshdMissing(PathBuf),

    /// A file or directory operation failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was being done (`write`, `create`, ...).
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The lab directory cannot be used (foreign files, a running lab, no record, ...).
    #[error("lab directory `{}`: {reason}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why not.
        reason: &'static str,
    },

    /// A lab needs at least one host.
    #[error("a lab needs at least one host")]
    NoHosts,

    /// An address outside 127.0.0.0/8 was asked for: a lab never listens anywhere else.
    #[error("address `{0}` is outside 127.0.0.0/8")]
    NotLoopback(Ipv4Addr),

    /// The first address of a block must end in 1..=250 (the lab never uses .0 or .251-.255).
    #[error("first address `{0}` must end in 1..=250")]
    BadFirstAddress(Ipv4Addr),

    /// A block of consecutive addresses would run past 127.255.255.250.
    #[error("{count} addresses from `{first}` do not fit in 127.0.0.0/8")]
    BlockTooLarge {
        /// The first address.
        first: Ipv4Addr,
        /// How many addresses were asked for.
        count: usize,
    },

    /// Some address of the chosen block is already in use on the port.
    #[error("`{address}:{port}` is already in use")]
    AddressInUse {
        /// The busy address.
        address: Ipv4Addr,
        /// The port.
        port: u16,
    },

    /// Every random block tried had an address in use.
    #[error("no free block of {count} loopback addresses on port {port} after {attempts} attempts")]
    NoFreeBlock {
        /// How many addresses were asked for.
        count: usize,
        /// The port.
        port: u16,
        /// How many blocks were tried.
        attempts: usize,
    },

    /// Key generation or encoding failed.
    #[error("cannot generate key `{}`", path.display())]
    Key {
        /// The private key file being written.
        path: PathBuf,
        /// The key library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The web server is not installed.
    #[error("nginx not found at `{}`: install it with `apt-get install -y nginx-light` (or run `make deps`)", .0.display())]
    NginxMissing(PathBuf),

    /// The web server did not start or did not answer.
    #[error("web server: {0}")]
    Web(String),

    /// A program the lab runs (`sshd`, `ssh-agent`, `ssh-add`) could not be run at all.
    #[error("cannot run `{program}`")]
    Run {
        /// The program.
        program: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },

    /// `sshd -t` rejected a generated configuration.
    #[error("sshd rejected its configuration `{}`: {stderr}", config.display())]
    SshdConfig {
        /// The configuration file.
        config: PathBuf,
        /// What `sshd -t` printed.
        stderr: String,
    },

    /// An sshd exited with an error instead of starting.
    #[error("sshd for host `{host}` did not start: {message}")]
    SshdFailed {
        /// The lab host.
        host: String,
        /// sshd's stderr and log.
        message: String,
    },

    /// An sshd started but did not write its pid file or answer with an SSH banner in time.
    #[error("sshd for host `{host}` not ready on `{address}:{port}` after {:.1} s: {detail}", .waited.as_secs_f64())]
    SshdNotReady {
        /// The lab host.
        host: String,
        /// Its address.
        address: Ipv4Addr,
        /// Its port.
        port: u16,
        /// How long it was waited for.
        waited: Duration,
        /// What was missing, and the end of its log.
        detail: String,
    },

    /// The throwaway ssh-agent did not come up or refused a key.
    #[error("ssh-agent: {0}")]
    Agent(String),

    /// No such host in this lab.
    #[error("no host `{0}` in this lab")]
    UnknownHost(String),

    /// A loss that is not a fraction of 0..=1 was asked for.
    #[error("loss must be between 0 and 1 (0% and 100%), not {0}")]
    BadLoss(f64),

    /// A proxy was asked of a lab that has no latency.
    #[error("this lab has no latency, so no proxy")]
    NoLatency,

    /// The `fleet-lab` binary that runs the latency proxy was not found.
    #[error(
        "cannot find the `fleet-lab` binary to run the latency proxy (tried {}); build it with `cargo build -p fleet-lab` or name it in `$FLEET_LAB_BIN`",
        tried.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    ProxyProgramMissing {
        /// The paths looked at.
        tried: Vec<PathBuf>,
    },

    /// The latency proxy did not come up.
    #[error("latency proxy did not start: {message}")]
    ProxyFailed {
        /// What it said, and the end of its log.
        message: String,
    },

    /// The lab record (`lab.toml`) is unreadable.
    #[error("bad lab record `{}`", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: toml::de::Error,
    },
}

/// Maps an I/O error to [`LabError::Io`] with what was done on which path.
impl LabError {
    /// The error and its causes on one line (`a: b: c`).
    pub fn chain(&self) -> String {
        let mut msg = self.to_string();
        let mut src = std::error::Error::source(self);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        msg
    }
}

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> LabError {
    let path = path.into();
    move |source| LabError::Io {
        action,
        path,
        source,
    }
}
