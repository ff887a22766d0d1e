//! Transport errors. A non-zero exit status is not an error (see [`crate::ExitStatus`]).

use std::path::PathBuf;
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a host could not be reached, authenticated or talked to.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// TCP connection failed (refused, unreachable, no route, DNS).
    #[error("cannot connect to `{endpoint}`")]
    Connect {
        /// `address:port`.
        endpoint: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect plus SSH handshake did not finish in time.
    #[error("connection to `{endpoint}` timed out after {}", humantime(*after))]
    ConnectTimeout {
        /// `address:port`.
        endpoint: String,
        /// The bound that ran out.
        after: Duration,
    },
    /// SSH protocol failure during the handshake or later.
    #[error("ssh error with `{endpoint}`")]
    Protocol {
        /// `address:port`.
        endpoint: String,
        /// The protocol error.
        #[source]
        source: BoxError,
    },
    /// The host key was not accepted.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// No authentication method succeeded.
    #[error("authentication failed for `{user}@{endpoint}`: tried {}", tried.join(", "))]
    Auth {
        /// Remote user.
        user: String,
        /// `address:port`.
        endpoint: String,
        /// What was tried, in order, each with its outcome.
        tried: Vec<String>,
    },
    /// Authentication did not finish in time.
    #[error("authentication with `{endpoint}` timed out after {}", humantime(*after))]
    AuthTimeout {
        /// `address:port`.
        endpoint: String,
        /// The bound that ran out.
        after: Duration,
    },
    /// A jump host could not be used.
    #[error("through jump host `{jump}`")]
    Jump {
        /// The jump host's name.
        jump: String,
        /// What went wrong there.
        #[source]
        source: std::sync::Arc<ExecError>,
    },
    /// The `ProxyCommand` that carries the connection failed.
    #[error("through ProxyCommand `{command}` to `{endpoint}`: {reason}")]
    Proxy {
        /// `address:port` of the target.
        endpoint: String,
        /// The command.
        command: String,
        /// What it said on stderr, or what went wrong.
        reason: String,
    },
    /// The command could not be run as the user to become.
    #[error("cannot become `{user}` with {method} on `{endpoint}`: {reason}")]
    Become {
        /// `address:port`.
        endpoint: String,
        /// The user to become.
        user: String,
        /// `sudo`, `doas` or `su`.
        method: &'static str,
        /// What the method said (never the password).
        reason: String,
    },
    /// The server refused to open a channel or run the command.
    #[error("`{endpoint}` refused the command: {reason}")]
    Refused {
        /// `address:port`.
        endpoint: String,
        /// What the server said.
        reason: String,
    },
    /// The connection dropped while a command or upload was running.
    #[error("connection to `{endpoint}` lost")]
    Disconnected {
        /// `address:port`.
        endpoint: String,
        /// The underlying error, when known.
        #[source]
        source: Option<BoxError>,
    },
    /// A local file could not be read for upload.
    #[error("cannot read `{}`", path.display())]
    LocalFile {
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The caller cancelled before the operation finished.
    #[error("cancelled")]
    Cancelled,
}

impl ExecError {
    /// Returns a short machine-friendly kind: `connect`, `timeout`, `host-key`, `auth`,
    /// `protocol`, `proxy`, `become`, `refused`, `disconnected`, `local-file`, `cancelled`.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::Connect { .. } => "connect",
            ExecError::ConnectTimeout { .. } | ExecError::AuthTimeout { .. } => "timeout",
            ExecError::Protocol { .. } => "protocol",
            ExecError::HostKey(_) => "host-key",
            ExecError::Auth { .. } => "auth",
            ExecError::Jump { source, .. } => source.kind(),
            ExecError::Become { .. } => "become",
            ExecError::Proxy { .. } => "proxy",
            ExecError::Refused { .. } => "refused",
            ExecError::Disconnected { .. } => "disconnected",
            ExecError::LocalFile { .. } => "local-file",
            ExecError::Cancelled => "cancelled",
        }
    }
}

/// Why a host key was rejected. Fingerprints are `SHA256:...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    /// No known_hosts entry for this host under the strict policy.
    #[error(
        "host key for `{host}` is not known ({key_type} {fingerprint}); checked {}",
        files.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
    )]
    Unknown {
        /// The known_hosts lookup name (`[addr]:port` or `addr`).
        host: String,
        /// The key type the server offered.
        key_type: String,
        /// The offered key's fingerprint.
        fingerprint: String,
        /// The files that were checked.
        files: Vec<PathBuf>,
    },
    /// The host showed a certificate from an authority known_hosts trusts for it, but the
    /// certificate is not valid for it (expired, another host's, ...), and its key is not
    /// known otherwise.
    #[error("host `{host}` is not trusted: {reason}")]
    Certificate {
        /// The known_hosts lookup name.
        host: String,
        /// Why the certificate was not accepted, naming the authority's line.
        reason: String,
    },
    /// known_hosts holds a different key for this host: possible man-in-the-middle.
    #[error(
        "HOST KEY CHANGED for `{host}`: server offered {key_type} {fingerprint}, known_hosts has {}",
        known.join(", ")
    )]
    Changed {
        /// The known_hosts lookup name.
        host: String,
        /// The key type the server offered.
        key_type: String,
        /// The offered key's fingerprint.
        fingerprint: String,
        /// The known entries, each as `TYPE FINGERPRINT (FILE:LINE)`.
        known: Vec<String>,
    },
    /// The key is marked `@revoked` in a known_hosts file.
    #[error("host key {fingerprint} of `{host}` is revoked (`{}`:{line})", file.display())]
    Revoked {
        /// The known_hosts lookup name.
        host: String,
        /// The offered key's fingerprint.
        fingerprint: String,
        /// The file with the `@revoked` line.
        file: PathBuf,
        /// Its line number.
        line: usize,
    },
    /// The key does not match the pinned fingerprint.
    #[error("host key of `{host}` is {fingerprint}, expected pinned {expected}")]
    PinMismatch {
        /// The target name.
        host: String,
        /// The offered key's fingerprint.
        fingerprint: String,
        /// The pinned fingerprint.
        expected: String,
    },
    /// An accepted new key could not be recorded.
    #[error("cannot record the host key of `{host}` in `{}`: {reason}", file.display())]
    Record {
        /// The known_hosts lookup name.
        host: String,
        /// The file that could not be written.
        file: PathBuf,
        /// The I/O error text.
        reason: String,
    },
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
