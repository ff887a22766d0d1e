//! Throwaway ed25519 keys, generated in-process (no `ssh-keygen` per host).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey};

use crate::LabError;
use crate::error::io;

/// Writes a fresh ed25519 key pair to `path` (OpenSSH format, mode 0600) and `path.pub`;
/// returns the public key line (`ssh-ed25519 AAAA... comment`).
pub(crate) fn write_key_pair(path: &Path, comment: &str) -> Result<String, LabError> {
    let key_error = |e: russh::keys::ssh_key::Error| LabError::Key {
        path: path.to_owned(),
        source: Box::new(e),
    };
    let mut key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .map_err(key_error)?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF).map_err(key_error)?;
    let public = key.public_key().to_openssh().map_err(key_error)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))?;
    // `mode` applies only to a new file: an old one keeps its bits, so set them explicitly
    // (ssh refuses a private key readable by others).
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io("set permissions of", path))?;
    f.write_all(private.as_bytes()).map_err(io("write", path))?;
    let pub_path = pub_path(path);
    std::fs::write(&pub_path, format!("{public}\n")).map_err(io("write", &pub_path))?;
    Ok(public)
}

/// `path` with `.pub` appended, where OpenSSH tools look for the public half.
pub(crate) fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// Generates an extra throwaway ed25519 key pair at `path` (e.g. a "wrong key" for auth
/// tests) and returns the private key path.
///
/// The public key goes to `path.pub`; the key is not authorized anywhere (append it to
/// `lab.dir().join("authorized_keys")` to authorize it on every host of a lab).
///
/// # Errors
///
/// When the files cannot be written.
pub fn generate_client_key(path: &Path) -> Result<PathBuf, LabError> {
    write_key_pair(path, "fleet-lab-extra")?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pair_is_openssh_ed25519_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate_client_key(&dir.path().join("k")).unwrap();
        let private = std::fs::read_to_string(&path).unwrap();
        assert!(private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let public = std::fs::read_to_string(pub_path(&path)).unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second key at the same path replaces the first.
        generate_client_key(&path).unwrap();
        assert_ne!(std::fs::read_to_string(pub_path(&path)).unwrap(), public);
    }
}
