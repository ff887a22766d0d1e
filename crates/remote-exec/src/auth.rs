//! User authentication: ssh-agent, then identity files (each loaded once per run, encrypted
//! ones unlocked through a [`Prompter`]), then password / keyboard-interactive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::MethodKind;
use russh::client::{AuthResult, Handle, Handler, KeyboardInteractiveAuthResponse};
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
    Unusable(String),
}

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
    let result =
        tokio::task::spawn_blocking(move || match russh::keys::load_secret_key(&path, None) {
            Ok(k) => loaded(k),
            Err(russh::keys::Error::KeyIsEncrypted) => match prompter.passphrase(&path) {
                None => Loaded::Unusable("encrypted, and no passphrase could be asked".into()),
                Some(pass) => match russh::keys::load_secret_key(&path, Some(&pass)) {
                    Ok(k) => loaded(k),
                    Err(_) => Loaded::Unusable("wrong passphrase".into()),
                },
            },
            Err(russh::keys::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Loaded::Missing
            }
            Err(e) => Loaded::Unusable(format!("cannot load: {e}")),
        })
        .await;
    result.unwrap_or_else(|e| Loaded::Unusable(format!("key loader panicked: {e}")))
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
    pub(crate) password: Option<String>,
    pub(crate) agent_socket: Option<PathBuf>,
}

/// Authenticates `user` on `handle`; on failure returns what was tried, for the report.
pub(crate) async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    user: &str,
    identity_files: &[PathBuf],
    ctx: &AuthContext,
) -> Result<(), Vec<String>> {
    let mut tried = Vec::new();
    let mut rejected: Vec<PublicKey> = Vec::new();
    let mut publickey_allowed = true;

    if let Some(sock) = &ctx.agent_socket {
        match AgentClient::connect_uds(sock).await {
            Err(e) => tried.push(format!("ssh-agent (unavailable: {e})")),
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                let mut n = 0;
                for id in ids {
                    let pk = id.public_key().into_owned();
                    let hash = rsa_hash(handle, &pk).await;
                    n += 1;
                    match handle
                        .authenticate_publickey_with(user, pk.clone(), hash, &mut agent)
                        .await
                    {
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
                tried.push(format!("ssh-agent ({n} keys rejected)"));
            }
        }
    }

    let explicit = !identity_files.is_empty();
    let defaults;
    let files = if explicit {
        identity_files
    } else {
        defaults = default_identity_files();
        &defaults[..]
    };
    for path in files.iter().filter(|_| publickey_allowed) {
        let key = match ctx.keys.get(path, &ctx.prompter).await {
            Loaded::Key(k) => k,
            Loaded::Missing if explicit => {
                tried.push(format!("`{}` (not found)", path.display()));
                continue;
            }
            Loaded::Missing => continue,
            Loaded::Unusable(why) => {
                tried.push(format!("`{}` ({why})", path.display()));
                continue;
            }
        };
        let public = key.key.public_key();
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
    if files.is_empty() || (!explicit && tried.is_empty() && ctx.agent_socket.is_none()) {
        tried.push("no identity file found in `~/.ssh`".into());
    }

    if let Some(password) = &ctx.password {
        match handle.authenticate_password(user, password.clone()).await {
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
