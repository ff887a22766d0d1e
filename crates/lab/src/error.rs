//! Lab errors.

use std::path::PathBuf;

/// Why a lab could not be started, read or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// OpenSSH server is not installed.
    #[error("sshd not found at `{}`: install it with `apt-get install -y openssh-server`", .0.display())]
    SshdMissing(PathBuf),
    /// A file or directory operation failed.
    #[error("cannot {action} `{}`", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The lab directory cannot be used.
    #[error("lab directory `{}`: {reason}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why not.
        reason: String,
    },
    /// An address outside 127.0.0.0/8 was asked for, or no free block was found.
    #[error("address: {0}")]
    Address(String),
    /// sshd rejected its configuration or did not come up.
    #[error("sshd for `{host}`: {reason}")]
    Sshd {
        /// The lab host.
        host: String,
        /// What happened (with sshd's own message when there is one).
        reason: String,
    },
    /// Key generation failed.
    #[error("key generation: {0}")]
    Key(String),
    /// No such host in this lab.
    #[error("no host `{0}` in this lab")]
    UnknownHost(String),
    /// The lab record is unreadable.
    #[error("bad lab record `{}` line {line}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// The bad line.
        line: usize,
    },
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
