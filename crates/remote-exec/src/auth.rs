//! User authentication: ssh-agent, then identity files (each loaded once per run, encrypted
//! ones unlocked through a [`Prompter`]), then password / keyboard-interactive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::MethodKind;
use russh::client::{AuthResult, Handle, Handler, KeyboardInteractiveAuthResponse};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::private::KeypairData;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use tokio::sync::OnceCell;

use crate::target::home_dir;

/// Supplies secrets that only a person can give. The library never touches a terminal: the
/// application decides whether and how to ask (and must return `None` when it cannot, e.g.
/// without a TTY, so a host fails with a clear reason instead of blocking).
pub trait Prompter: Send + Sync {
    /// Returns the passphrase of the encrypted private key at `key`, or `None`.
    ///
    /// Called at most once per key file per [`crate::Client`], from a blocking thread.
    fn passphrase(&self, key: &Path) -> Option<String>;
}

/// A [`Prompter`] that never has an answer (for non-interactive use and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPrompt;

impl Prompter for NoPrompt {
    fn passphrase(&self, _key: &Path) -> Option<String> {
        None
    }
}

#[derive(Clone)]
enum Loaded {
    Key(Arc<LoadedKey>),
    Missing,
    /// Group or others may access the file; the mode is kept for the message.
    TooOpen(u32),
    Unusable(String),
}

/// The permission bits that make a private key file unusable: any for group or others.
/// OpenSSH refuses such a key ("UNPROTECTED PRIVATE KEY FILE!"), so a key that `ssh` will
/// not use is not used here either, and the user learns about it from fleet too.
const UNPROTECTED_MODE_BITS: u32 = 0o077;

/// A private key as loaded once per run, with what signing needs prepared up front.
struct LoadedKey {
    key: Arc<PrivateKey>,
    /// For an Ed25519 key, the expanded signing key. Building it from the file's keypair
    /// derives and checks the public key, a scalar multiplication that would otherwise be
    /// repeated for every host (a tenth of the client's CPU per connection).
    ed25519: Option<ed25519_dalek::SigningKey>,
}

impl LoadedKey {
    fn new(key: PrivateKey) -> Result<Self, String> {
        let ed25519 = match key.key_data() {
            KeypairData::Ed25519(pair) => Some(
                ed25519_dalek::SigningKey::try_from(pair)
                    .map_err(|e| format!("inconsistent Ed25519 key: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self {
            key: Arc::new(key),
            ed25519,
        })
    }
}

/// How long the agent has to list its keys.
const AGENT_ANSWER: std::time::Duration = std::time::Duration::from_secs(3);

/// Signs the publickey request with a prepared Ed25519 key, as an agent would: the signed
/// data comes back with the SSH signature blob appended.
struct Ed25519Signer<'a>(&'a ed25519_dalek::SigningKey);

/// The session went away while a signature was asked for.
#[derive(Debug)]
struct SignError;

impl From<russh::SendError> for SignError {
    fn from(_: russh::SendError) -> Self {
        SignError
    }
}

impl russh::Signer for Ed25519Signer<'_> {
    type Error = SignError;

    fn auth_sign(
        &mut self,
        _key: &russh::keys::agent::AgentIdentity,
        _hash_alg: Option<russh::keys::HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        use ed25519_dalek::Signer as _;
        let sig = self.0.sign(&to_sign).to_bytes();
        append_signature_blob(&mut to_sign, b"ssh-ed25519", &sig);
        std::future::ready(Ok(to_sign))
    }
}

/// Appends `string(string(algorithm) string(signature))` (RFC 4252 §7) to `out`.
fn append_signature_blob(out: &mut Vec<u8>, algorithm: &[u8], signature: &[u8]) {
    let put = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    out.extend_from_slice(&((8 + algorithm.len() + signature.len()) as u32).to_be_bytes());
    put(out, algorithm);
    put(out, signature);
}

/// Private keys loaded at most once per run, however many hosts use them.
#[derive(Default)]
pub(crate) struct KeyCache {
    keys: Mutex<HashMap<PathBuf, Arc<OnceCell<Loaded>>>>,
}

impl KeyCache {
    async fn get(&self, path: &Path, prompter: &Arc<dyn Prompter>) -> Loaded {
        let cell = {
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            keys.entry(path.to_owned()).or_default().clone()
        };
        cell.get_or_init(|| load_key(path.to_owned(), prompter.clone()))
            .await
            .clone()
    }
}

async fn load_key(path: PathBuf, prompter: Arc<dyn Prompter>) -> Loaded {
    let result = tokio::task::spawn_blocking(move || {
        let text = match read_key_file(&path) {
            Ok(text) => text,
            Err(not_read) => return not_read,
        };
        match russh::keys::decode_secret_key(&text, None) {
            Ok(k) => loaded(k),
            Err(russh::keys::Error::KeyIsEncrypted) => match prompter.passphrase(&path) {
                None => Loaded::Unusable("encrypted, and no passphrase could be asked".into()),
                Some(pass) => match russh::keys::decode_secret_key(&text, Some(&pass)) {
                    Ok(k) => loaded(k),
                    Err(_) => Loaded::Unusable("wrong passphrase".into()),
                },
            },
            Err(e) => Loaded::Unusable(format!("cannot load: {e}")),
        }
    })
    .await;
    result.unwrap_or_else(|e| Loaded::Unusable(format!("key loader panicked: {e}")))
}

/// Reads a private key file, refusing it (before any passphrase is asked) when its mode lets
/// group or others access it. The mode is that of the open file, so it is the mode of the
/// key that is read.
fn read_key_file(path: &Path) -> Result<String, Loaded> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;

    let cannot = |e: std::io::Error| Loaded::Unusable(format!("cannot load: {e}"));
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Loaded::Missing),
        Err(e) => return Err(cannot(e)),
    };
    let meta = file.metadata().map_err(cannot)?;
    if meta.is_dir() {
        return Err(Loaded::Unusable("cannot load: is a directory".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & UNPROTECTED_MODE_BITS != 0 {
        return Err(Loaded::TooOpen(mode));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(cannot)?;
    Ok(text)
}

fn loaded(key: PrivateKey) -> Loaded {
    match LoadedKey::new(key) {
        Ok(k) => Loaded::Key(Arc::new(k)),
        Err(why) => Loaded::Unusable(why),
    }
}

/// What authentication may use, shared by every connection of a run.
pub(crate) struct AuthContext {
    pub(crate) keys: KeyCache,
    pub(crate) prompter: Arc<dyn Prompter>,
    pub(crate) agent_socket: Option<PathBuf>,
}

/// What one target offers the server, from its settings.
pub(crate) struct Offer<'a> {
    pub(crate) identity_files: &'a [PathBuf],
    pub(crate) certificate_files: &'a [PathBuf],
    pub(crate) password: Option<&'a crate::escalate::Secret>,
    pub(crate) agent_socket: Option<&'a Path>,
    pub(crate) identities_only: bool,
}

/// Authenticates `user` on `handle`; on failure returns what was tried, for the report.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    offer: &Offer<'_>,
    ctx: &AuthContext,
) -> Result<(), Vec<String>> {
    let Offer {
        identity_files,
        certificate_files,
        password,
        agent_socket,
        identities_only,
    } = *offer;
    let mut tried = Vec::new();
    let mut rejected: Vec<PublicKey> = Vec::new();
    let mut publickey_allowed = true;
    let explicit = !identity_files.is_empty();
    let defaults;
    let files = if explicit {
        identity_files
    } else {
        defaults = default_identity_files();
        &defaults[..]
    };
    // With IdentitiesOnly, the agent may sign only for an identity file's key, found by its
    // `.pub` beside it, as OpenSSH finds it.
    let allowed: Option<Vec<PublicKey>> = identities_only.then(|| {
        files
            .iter()
            .filter_map(|f| {
                let mut p = f.clone().into_os_string();
                p.push(".pub");
                if let Ok(text) = std::fs::read_to_string(p) {
                    return PublicKey::from_openssh(text.trim()).ok();
                }
                // No `.pub`: the private key file holds its public half in the clear, even
                // when encrypted.
                let text = std::fs::read_to_string(f).ok()?;
                PrivateKey::from_openssh(text.trim())
                    .ok()
                    .map(|k| k.public_key().clone())
            })
            .collect()
    });

    if let Some(sock) = agent_socket {
        // The agent is a local process: one that does not list its keys in a few seconds is
        // stuck (or not an agent), and is skipped for the key files rather than waited for
        // until the connection's time runs out.
        let listed = tokio::time::timeout(AGENT_ANSWER, async {
            let mut agent = AgentClient::connect_uds(sock).await?;
            let ids = agent.request_identities().await.unwrap_or_default();
            Ok::<_, russh::keys::Error>((agent, ids))
        })
        .await;
        match listed {
            Err(_) => tried.push(format!(
                "ssh-agent (no answer from `{}` within {}s: skipped)",
                sock.display(),
                AGENT_ANSWER.as_secs()
            )),
            Ok(Err(e)) => tried.push(format!("ssh-agent (unavailable: {e})")),
            Ok(Ok((mut agent, ids))) => {
                let (mut n, mut left_out) = (0, 0);
                for id in ids {
                    let pk = id.public_key().into_owned();
                    if let Some(allowed) = &allowed
                        && !allowed.iter().any(|a| a.key_data() == pk.key_data())
                    {
                        left_out += 1;
                        continue;
                    }
                    let hash = rsa_hash(handle, &pk).await;
                    n += 1;
                    let result = match id {
                        // A certificate the agent holds goes as one: the server may trust
                        // only its CA.
                        AgentIdentity::Certificate { certificate, .. } => {
                            handle
                                .authenticate_certificate_with(user, certificate, hash, &mut agent)
                                .await
                        }
                        AgentIdentity::PublicKey { .. } => {
                            handle
                                .authenticate_publickey_with(user, pk.clone(), hash, &mut agent)
                                .await
                        }
                    };
                    match result {
                        Ok(AuthResult::Success) => return Ok(()),
                        Ok(AuthResult::Failure {
                            remaining_methods,
                            partial_success,
                        }) => {
                            rejected.push(pk);
                            if partial_success {
                                break;
                            }
                            if !remaining_methods.contains(&MethodKind::PublicKey) {
                                publickey_allowed = false;
                                break;
                            }
                        }
                        Err(e) => tried.push(format!("ssh-agent key ({e})")),
                    }
                }
                if left_out > 0 {
                    tried.push(format!(
                        "ssh-agent ({n} keys rejected, {left_out} left out by IdentitiesOnly)"
                    ));
                } else {
                    tried.push(format!("ssh-agent ({n} keys rejected)"));
                }
            }
        }
    }

    for path in files.iter().filter(|_| publickey_allowed) {
        let key = match ctx.keys.get(path, &ctx.prompter).await {
            Loaded::Key(k) => k,
            Loaded::Missing if explicit => {
                tried.push(format!("`{}` (not found)", path.display()));
                continue;
            }
            Loaded::Missing => continue,
            // Refused for a default key too, as OpenSSH does; said so in case nothing else
            // works.
            Loaded::TooOpen(mode) => {
                tried.push(too_open(path, mode));
                continue;
            }
            Loaded::Unusable(why) => {
                tried.push(format!("`{}` ({why})", path.display()));
                continue;
            }
        };
        let public = key.key.public_key();
        // A certificate of this key first: a server that trusts the CA may know no key (and
        // may have refused the bare key the agent offered).
        for (cert_path, cert) in certificates(path, certificate_files, public) {
            match handle
                .authenticate_openssh_cert(user, key.key.clone(), cert)
                .await
            {
                Ok(AuthResult::Success) => return Ok(()),
                Ok(AuthResult::Failure { .. }) => {
                    tried.push(format!("certificate `{}` (rejected)", cert_path.display()));
                }
                Err(e) => tried.push(format!("certificate `{}` ({e})", cert_path.display())),
            }
        }
        if rejected.iter().any(|r| r.key_data() == public.key_data()) {
            continue;
        }
        let result = match &key.ed25519 {
            Some(signing) => handle
                .authenticate_publickey_with(
                    user,
                    public.clone(),
                    None,
                    &mut Ed25519Signer(signing),
                )
                .await
                .map_err(|SignError| russh::Error::SendError),
            None => {
                let hash = rsa_hash(handle, public).await;
                handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.key.clone(), hash))
                    .await
            }
        };
        match result {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure {
                remaining_methods, ..
            }) => {
                tried.push(format!("`{}` (rejected)", path.display()));
                if !remaining_methods.contains(&MethodKind::PublicKey) {
                    break;
                }
            }
            Err(e) => tried.push(format!("`{}` ({e})", path.display())),
        }
    }
    if files.is_empty() || (!explicit && tried.is_empty() && agent_socket.is_none()) {
        tried.push("no identity file found in `~/.ssh`".into());
    }

    if let Some(password) = password.map(crate::escalate::Secret::expose) {
        match handle.authenticate_password(user, password).await {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure { .. }) | Err(_) => {}
        }
        if keyboard_interactive(handle, user, password).await {
            return Ok(());
        }
        tried.push("password (rejected)".into());
    }
    Err(tried)
}

fn too_open(path: &Path, mode: u32) -> String {
    format!(
        "permissions {mode:04o} for `{}` are too open: a private key must not be accessible by group or others (chmod 600)",
        path.display()
    )
}

/// Answers every keyboard-interactive prompt with the password (PAM's "Password:" prompt),
/// including the empty follow-up requests some servers send.
async fn keyboard_interactive<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    password: &str,
) -> bool {
    let mut reply = match handle
        .authenticate_keyboard_interactive_start(user, None::<String>)
        .await
    {
        Ok(r) => r,
        Err(_) => return false,
    };
    for _ in 0..5 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return true,
            KeyboardInteractiveAuthResponse::Failure { .. } => return false,
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| password.to_owned()).collect();
                reply = match handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                {
                    Ok(r) => r,
                    Err(_) => return false,
                };
            }
        }
    }
    false
}

/// RSA keys must be offered with a SHA-2 signature (OpenSSH >= 8.8 refuses `ssh-rsa`).
async fn rsa_hash<H: Handler>(handle: &Handle<H>, key: &PublicKey) -> Option<russh::keys::HashAlg> {
    if !key.algorithm().is_rsa() {
        return None;
    }
    match handle.best_supported_rsa_hash().await {
        Ok(Some(h)) => h,
        _ => Some(russh::keys::HashAlg::Sha256),
    }
}

/// The certificates of identity file `path`'s key: `path-cert.pub` if there, then the
/// configured certificate files that certify that key (others are for other keys).
fn certificates(
    path: &Path,
    configured: &[PathBuf],
    key: &PublicKey,
) -> Vec<(PathBuf, russh::keys::Certificate)> {
    let mut beside = path.to_owned().into_os_string();
    beside.push("-cert.pub");
    let beside = PathBuf::from(beside);
    std::iter::once(beside)
        .chain(configured.iter().cloned())
        .filter_map(|p| {
            let cert = russh::keys::load_openssh_certificate(&p).ok()?;
            (cert.public_key() == key.key_data()).then_some((p, cert))
        })
        .fold(Vec::new(), |mut out, (p, c)| {
            if !out.iter().any(|(q, _): &(PathBuf, _)| *q == p) {
                out.push((p, c));
            }
            out
        })
}

fn default_identity_files() -> Vec<PathBuf> {
    home_dir()
        .map(|h| {
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|n| h.join(".ssh").join(n))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use russh::Signer as _;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use russh::keys::ssh_key::{Algorithm, Signature};

    use super::*;

    fn read_string(buf: &[u8]) -> (&[u8], &[u8]) {
        let (len, rest) = buf.split_at(4);
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        rest.split_at(len)
    }

    /// What loading a key file of mode `mode` gives, in words.
    async fn load_with_mode(mode: Option<u32>) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        if let Some(mode) = mode {
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&[9; 32]));
            let text = key
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .unwrap();
            std::fs::write(&path, text.as_bytes()).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        match load_key(path.clone(), Arc::new(NoPrompt)).await {
            Loaded::Key(_) => "key".into(),
            Loaded::Missing => "missing".into(),
            Loaded::TooOpen(mode) => too_open(&path, mode).replace(&*path.to_string_lossy(), "K"),
            Loaded::Unusable(why) => why,
        }
    }

    #[tokio::test]
    async fn key_files_open_to_group_or_others_are_refused() {
        let too_open = |m: &str| {
            format!(
                "permissions {m} for `K` are too open: a private key must not be accessible by group or others (chmod 600)"
            )
        };
        for (mode, expected) in [
            (Some(0o600), "key".to_owned()),
            (Some(0o400), "key".to_owned()),
            (Some(0o700), "key".to_owned()),
            (Some(0o644), too_open("0644")),
            (Some(0o640), too_open("0640")),
            (Some(0o604), too_open("0604")),
            (Some(0o620), too_open("0620")),
            (Some(0o666), too_open("0666")),
            (None, "missing".to_owned()),
        ] {
            assert_eq!(
                load_with_mode(mode).await,
                expected,
                "mode {:?}",
                mode.map(|m| format!("{m:04o}"))
            );
        }
    }

    #[tokio::test]
    async fn prepared_ed25519_signer_appends_a_blob_the_public_key_verifies() {
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]));
        let loaded = LoadedKey::new(key.clone()).unwrap();
        let signing = loaded.ed25519.as_ref().expect("an Ed25519 key is prepared");
        let identity = russh::keys::agent::AgentIdentity::PublicKey {
            key: key.public_key().clone(),
            comment: String::new(),
        };
        let data = b"session id and userauth request".to_vec();

        let out = Ed25519Signer(signing)
            .auth_sign(&identity, None, data.clone())
            .await
            .unwrap();

        assert_eq!(
            &out[..data.len()],
            &data[..],
            "the signed data is kept in front"
        );
        let (blob, rest) = read_string(&out[data.len()..]);
        assert!(rest.is_empty());
        let (algorithm, blob) = read_string(blob);
        let (sig, blob) = read_string(blob);
        assert_eq!(algorithm, b"ssh-ed25519");
        assert!(blob.is_empty());
        let sig = Signature::new(Algorithm::Ed25519, sig.to_vec()).unwrap();
        ed25519_dalek::Verifier::verify(key.public_key(), &data, &sig).expect("a valid signature");
        let tampered = b"session id and userauth requesT";
        assert!(ed25519_dalek::Verifier::verify(key.public_key(), tampered, &sig).is_err());
    }
}
