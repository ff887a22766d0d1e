//! User authentication: ssh-agent, then identity files (each loaded once per run, encrypted
//! ones unlocked through a [`Prompter`]), then password / keyboard-interactive.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::MethodKind;
use russh::client::{AuthResult, Handle, Handler, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
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

#[derive(Debug, Clone)]
enum Loaded {
    Key(Arc<PrivateKey>),
    Missing,
    Unusable(String),
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
            Ok(k) => Loaded::Key(Arc::new(k)),
            Err(russh::keys::Error::KeyIsEncrypted) => match prompter.passphrase(&path) {
                None => Loaded::Unusable("encrypted, and no passphrase could be asked".into()),
                Some(pass) => match russh::keys::load_secret_key(&path, Some(&pass)) {
                    Ok(k) => Loaded::Key(Arc::new(k)),
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
        if rejected
            .iter()
            .any(|r| r.key_data() == key.public_key().key_data())
        {
            continue;
        }
        let hash = rsa_hash(handle, key.public_key()).await;
        match handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
            .await
        {
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
