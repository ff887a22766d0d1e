//! Throwaway ed25519 keys, generated in-process (no `ssh-keygen` per host).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

use crate::LabError;
use crate::error::io;

/// Writes an ed25519 key pair to `path` (0600) and `path.pub`; returns the public key line
/// (`ssh-ed25519 AAAA... comment`).
pub(crate) fn write_key_pair(path: &Path, comment: &str) -> Result<String, LabError> {
    let mut key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .map_err(|e| LabError::Key(e.to_string()))?;
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| LabError::Key(e.to_string()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| LabError::Key(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    f.write_all(private.as_bytes()).map_err(io("write", path))?;
    let pub_path = pub_path(path);
    std::fs::write(&pub_path, format!("{public}\n")).map_err(io("write", &pub_path))?;
    Ok(public)
}

pub(crate) fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generates an extra throwaway ed25519 key pair at `path` (e.g. a "wrong key" for auth
/// tests) and returns the private key path.
///
/// # Errors
///
/// When the files cannot be written.
pub fn generate_client_key(path: &Path) -> Result<PathBuf, LabError> {
    write_key_pair(path, "fleet-lab-extra")?;
    Ok(path.to_owned())
}
