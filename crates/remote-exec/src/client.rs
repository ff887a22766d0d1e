//! The per-run SSH client: shared configuration, known_hosts and keys, and `connect`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::admission::{Admission, DEFAULT_CEILING};
use crate::auth::{AuthContext, KeyCache, NoPrompt, Offer, Prompter, authenticate};
use crate::error::{ExecError, HostKeyError};
use crate::known_hosts::{CertVerdict, KnownHosts, Verdict, fingerprint, lookup_name};
use crate::session::Session;
use crate::target::{AgentChoice, HostKeyPolicy, Target};

/// Read buffer of each direct TCP connection.
const READ_BUFFER: usize = 8 * 1024;

/// The ceiling of the adaptive handshake window ([`ClientOptions::max_handshakes`] `None`).
pub const DEFAULT_MAX_HANDSHAKES: usize = DEFAULT_CEILING;

/// Settings shared by every connection of a [`Client`].
pub struct ClientOptions {
    /// Asks for key passphrases; the default never asks.
    pub prompter: Arc<dyn Prompter>,
    /// The ssh-agent socket to try first; defaults to `$SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    /// Interval of keepalive probes on idle connections; three unanswered probes drop it.
    pub keepalive: Duration,
    /// Most commands run at once over one connection (sshd's `MaxSessions` defaults to 10).
    pub max_channels: usize,
    /// Handshakes (TCP connect, key exchange, authentication) in flight at once, across
    /// every target: `None` for a window that adapts to where the run is, up to
    /// [`DEFAULT_MAX_HANDSHAKES`] (it opens while the CPU has headroom and handshakes stay
    /// fast, as on a real network, and closes when they queue for the CPU, as on loopback;
    /// see `admission.rs`), `Some(n)` for exactly `n` whenever targets wait. Connections
    /// past it wait their turn before their connect timeout starts; commands already
    /// connected are not limited.
    pub max_handshakes: Option<usize>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            prompter: Arc::new(NoPrompt),
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            keepalive: Duration::from_secs(15),
            max_channels: 8,
            max_handshakes: None,
        }
    }
}

/// Connects to targets. Cheap to clone; one per run, shared by every host task, so
/// known_hosts files are parsed once, keys are loaded (and passphrases asked) once, and jump
/// hosts are connected once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// One jump-host connection, made once and shared by every target behind it.
type JumpSlot = Arc<OnceCell<Result<Session, Arc<ExecError>>>>;

pub(crate) struct Inner {
    known_hosts: KnownHosts,
    auth: AuthContext,
    keepalive: Duration,
    pub(crate) max_channels: usize,
    handshakes: Admission,
    jumps: Mutex<HashMap<String, JumpSlot>>,
    /// Local files uploaded by path, hashed once.
    pub(crate) digests: crate::transfer::Digests,
}

impl Client {
    /// Creates a client.
    pub fn new(options: ClientOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                known_hosts: KnownHosts::default(),
                auth: AuthContext {
                    keys: KeyCache::default(),
                    prompter: options.prompter,
                    agent_socket: options.agent_socket,
                },
                keepalive: options.keepalive,
                max_channels: options.max_channels.max(1),
                handshakes: match options.max_handshakes {
                    Some(n) => Admission::new(n.max(1), true),
                    None => Admission::new(DEFAULT_MAX_HANDSHAKES, false),
                },
                jumps: Mutex::new(HashMap::new()),
                digests: crate::transfer::Digests::default(),
            }),
        }
    }

    /// The most handshakes that were in flight at once so far (never above
    /// [`ClientOptions::max_handshakes`]).
    pub fn peak_handshakes(&self) -> usize {
        self.inner.handshakes.peak()
    }

    /// Opens an authenticated connection to `target`, through its jump hosts if any. With
    /// a [`Target::escalation`], one command is run through it first, so a wrong or missing
    /// password fails the connection, before any real command.
    ///
    /// # Errors
    ///
    /// Any [`ExecError`] from TCP, handshake, host-key check, authentication or become; each
    /// phase is bounded by `target.connect_timeout`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future or cancelling `cancel` drops the half-open connection.
    pub async fn connect(
        &self,
        target: &Target,
        cancel: &CancellationToken,
    ) -> Result<Session, ExecError> {
        self.connect_unless_stopped(target, cancel, None).await
    }

    /// Like [`connect`](Self::connect), and also gives up with [`ExecError::Cancelled`] when
    /// `stop_queued` fires while the target still waits for a handshake slot (see
    /// [`ClientOptions::max_handshakes`]): "start no new hosts" reaches hosts that are queued
    /// but leaves handshakes under way alone.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_unless_stopped(
        &self,
        target: &Target,
        cancel: &CancellationToken,
        stop_queued: Option<&CancellationToken>,
    ) -> Result<Session, ExecError> {
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ExecError::Cancelled),
            r = self.connect_chain(target, stop_queued) => r,
        }
    }

    async fn connect_chain(
        &self,
        target: &Target,
        stop_queued: Option<&CancellationToken>,
    ) -> Result<Session, ExecError> {
        if let Some(b) = &target.escalation
            && b.user != target.user
            && let Some(reason) = b.unusable()
        {
            return Err(ExecError::Become {
                endpoint: target.endpoint(),
                user: b.user.clone(),
                method: b.method.as_str(),
                reason,
            });
        }
        let mut via: Option<Session> = None;
        let hops = if target.proxy_command.is_some() {
            &[][..]
        } else {
            &target.jump[..]
        };
        for (i, hop) in hops.iter().enumerate() {
            let key = target.jump[..=i]
                .iter()
                .map(|h| format!("{}@{}", h.user, h.endpoint()))
                .collect::<Vec<_>>()
                .join(">");
            let cell = {
                let mut jumps = self.inner.jumps.lock().unwrap_or_else(|e| e.into_inner());
                let slot = jumps.entry(key).or_default();
                // A kept connection that has died since (the bastion restarted, the network
                // dropped it) is no way to the hosts behind it: the next target makes a new
                // one. A failed connect stays kept, so every host behind a dead bastion gets
                // that one error rather than an attempt each.
                if slot
                    .get()
                    .is_some_and(|r| r.as_ref().is_ok_and(Session::is_closed))
                {
                    *slot = JumpSlot::default();
                }
                slot.clone()
            };
            let prev = via.clone();
            let session = cell
                .get_or_init(
                    || async move { self.connect_one(hop, prev, None).await.map_err(Arc::new) },
                )
                .await
                .clone()
                .map_err(|e| ExecError::Jump {
                    jump: hop.name.clone(),
                    source: e,
                })?;
            via = Some(session);
        }
        self.connect_one(target, via, stop_queued).await
    }

    async fn connect_one(
        &self,
        target: &Target,
        via: Option<Session>,
        stop_queued: Option<&CancellationToken>,
    ) -> Result<Session, ExecError> {
        let endpoint = target.endpoint();
        let name = lookup_name(&target.address, target.port);
        let limit = target.connect_timeout;
        let verifier = Verifier {
            inner: self.inner.clone(),
            target_name: target.name.clone(),
            address: target.address.to_ascii_lowercase(),
            lookup: name.clone(),
            bare: (target.port != 22).then(|| lookup_name(&target.address, 22)),
            policy: target.host_key_policy.clone(),
            files: target.known_hosts_files.clone(),
            hashed: target.hash_known_hosts,
        };
        let config = Arc::new(self.config_for(&name, target));
        // Wait for a handshake slot first: the timeouts below start once it is ours.
        let stopped = async {
            match stop_queued {
                Some(t) => t.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let slot = tokio::select! {
            biased;
            () = stopped => return Err(ExecError::Cancelled),
            slot = self.inner.handshakes.acquire() => slot,
        };
        let mut proxy = None;
        let handshake = async {
            let stream: Box<dyn Stream> = match (&via, &target.proxy_command) {
                (None, Some(command)) => {
                    let (child, stream) = ProxyChild::spawn(command, &endpoint)?;
                    proxy = Some(child);
                    stream
                }
                (None, None) => {
                    let tcp =
                        tokio::net::TcpStream::connect((target.address.as_str(), target.port))
                            .await
                            .map_err(|source| ExecError::Connect {
                                endpoint: endpoint.clone(),
                                source,
                            })?;
                    let _ = tcp.set_nodelay(true);
                    // russh reads a packet's length, then its body: buffering turns the
                    // dozens of small reads of a handshake into one per arrival.
                    Box::new(tokio::io::BufReader::with_capacity(READ_BUFFER, tcp))
                }
                (Some(jump), _) => Box::new(jump.tunnel(&target.address, target.port).await?),
            };
            client::connect_stream(config, stream, verifier)
                .await
                .map_err(|e| match e {
                    HandshakeError::HostKey(k) => ExecError::HostKey(k),
                    HandshakeError::Ssh(e) => ExecError::Protocol {
                        endpoint: endpoint.clone(),
                        source: Box::new(e),
                    },
                })
        };
        let handshake =
            tokio::time::timeout(limit, handshake)
                .await
                .map_err(|_| ExecError::ConnectTimeout {
                    endpoint: endpoint.clone(),
                    after: limit,
                });
        let mut handle = match (handshake, &proxy, &target.proxy_command) {
            (Ok(Ok(h)), _, _) => h,
            // A proxy that failed says why on its stderr; the SSH error is only its echo. A
            // silent one that ran out of time stays a timeout.
            (Ok(Err(ExecError::Protocol { .. })), Some(p), Some(command)) => {
                let said = p.said().await;
                return Err(ExecError::Proxy {
                    endpoint,
                    command: command.clone(),
                    reason: if said.is_empty() {
                        "the connection through it ended".into()
                    } else {
                        said
                    },
                });
            }
            (Err(timeout), Some(p), Some(command)) => {
                let said = p.said().await;
                if said.is_empty() {
                    return Err(timeout);
                }
                return Err(ExecError::Proxy {
                    endpoint,
                    command: command.clone(),
                    reason: format!("{timeout}: {said}"),
                });
            }
            (Ok(Err(e)), _, _) | (Err(e), _, _) => return Err(e),
        };
        let agent = match &target.identity_agent {
            AgentChoice::ClientDefault => self.inner.auth.agent_socket.as_deref(),
            AgentChoice::Off => None,
            AgentChoice::Socket(p) => Some(p.as_path()),
        };
        let offer = Offer {
            identity_files: &target.identity_files,
            certificate_files: &target.certificate_files,
            password: target.password.as_ref(),
            agent_socket: agent,
            identities_only: target.identities_only,
        };
        let auth = authenticate(&mut handle, &target.user, &offer, &self.inner.auth);
        match tokio::time::timeout(limit, auth).await {
            Err(_) => Err(ExecError::AuthTimeout {
                endpoint,
                after: limit,
            }),
            Ok(Err(tried)) => Err(ExecError::Auth {
                user: target.user.clone(),
                endpoint,
                tried,
            }),
            Ok(Ok(())) => {
                slot.done();
                let escalation = target.escalation.clone().filter(|b| b.user != target.user);
                let session = Session::new(
                    handle,
                    target.name.clone(),
                    endpoint,
                    self.inner.clone(),
                    via,
                    proxy,
                    escalation,
                );
                session.check_become(limit).await?;
                Ok(session)
            }
        }
    }

    /// Builds the per-connection config. Host-key algorithms that known_hosts already holds
    /// for this host go first, as OpenSSH does, so a host known by its ECDSA key is not
    /// reported as changed because it also has an Ed25519 key.
    fn config_for(&self, name: &str, target: &Target) -> client::Config {
        let mut preferred = russh::Preferred::default();
        if !matches!(target.host_key_policy, HostKeyPolicy::Pinned(_)) {
            let known = self
                .inner
                .known_hosts
                .known_algorithms(name, &target.known_hosts_files);
            if !known.is_empty() {
                let mut order = known.clone();
                order.extend(preferred.key.iter().filter(|a| !known.contains(a)).cloned());
                preferred.key = order.into();
            }
            // A certificate only when an authority is trusted for the host (OpenSSH puts the
            // certificate algorithms first then, too).
            let mut names = vec![name.to_owned()];
            if target.port != 22 {
                names.push(lookup_name(&target.address, 22));
            }
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            if self
                .inner
                .known_hosts
                .has_authority(&names, &target.known_hosts_files)
            {
                preferred.host_key_certificates = preferred.key.clone();
            }
        }
        let (interval, max) = target.keepalive.unwrap_or((self.inner.keepalive, 3));
        client::Config {
            preferred,
            keepalive_interval: (!interval.is_zero()).then_some(interval),
            keepalive_max: max,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        }
    }
}

/// A `ProxyCommand` child: its stdout and stdin are the connection's transport; what it says
/// on stderr is kept (the first few KiB) for the error when the connection fails.
pub(crate) struct ProxyChild {
    /// In a process group of its own, killed whole when the session (or the failed attempt)
    /// drops it: a compound command or a helper it forks goes too.
    child: tokio::process::Child,
    said: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        }
        self.reader.abort();
    }
}

const PROXY_STDERR_KEPT: usize = 4096;

impl ProxyChild {
    fn spawn(command: &str, endpoint: &str) -> Result<(ProxyChild, Box<dyn Stream>), ExecError> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExecError::Proxy {
                endpoint: endpoint.to_owned(),
                command: command.to_owned(),
                reason: format!("cannot start it: {e}"),
            })?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ExecError::Proxy {
                endpoint: endpoint.to_owned(),
                command: command.to_owned(),
                reason: "its pipes are missing".into(),
            });
        };
        let said = Arc::new(Mutex::new(Vec::new()));
        let keep = said.clone();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut kept = keep.lock().unwrap_or_else(|e| e.into_inner());
                let room = PROXY_STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        let stream = tokio::io::join(
            tokio::io::BufReader::with_capacity(READ_BUFFER, stdout),
            stdin,
        );
        Ok((
            ProxyChild {
                child,
                said,
                reader,
            },
            Box::new(stream),
        ))
    }

    /// What the command said on stderr so far, on one line.
    async fn said(&self) -> String {
        // Its last words may still be in the pipe when the connection fails.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&said);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines.join("; ")
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Handshake failures: a rejected host key keeps its typed reason.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    HostKey(HostKeyError),
    Ssh(russh::Error),
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Ssh(e)
    }
}

/// The russh handler of one connection: checks the server's host key.
pub(crate) struct Verifier {
    inner: Arc<Inner>,
    target_name: String,
    /// What the host was connected to as: what a host certificate's principals must match.
    address: String,
    lookup: String,
    /// Off port 22, the name without the port: OpenSSH trusts a key recorded under it when
    /// nothing at all is recorded under `[name]:port`.
    bare: Option<String>,
    policy: HostKeyPolicy,
    files: Vec<PathBuf>,
    hashed: bool,
}

impl Verifier {
    async fn verify(&self, key: &PublicKey) -> Result<(), HostKeyError> {
        let fp = fingerprint(key);
        if let HostKeyPolicy::Pinned(expected) = &self.policy {
            return if *expected == fp {
                Ok(())
            } else {
                Err(HostKeyError::PinMismatch {
                    host: self.target_name.clone(),
                    fingerprint: fp,
                    expected: expected.clone(),
                })
            };
        }
        let known = &self.inner.known_hosts;
        let verdict = match (known.check(&self.lookup, key, &self.files), &self.bare) {
            // As OpenSSH does ("checking without port identifier"): only a match counts, a
            // different key under the bare name does not make the host's key changed.
            (Verdict::Unknown, Some(bare)) => match known.check(bare, key, &self.files) {
                v @ (Verdict::Trusted | Verdict::Revoked { .. }) => v,
                _ => Verdict::Unknown,
            },
            (v, _) => v,
        };
        match verdict {
            Verdict::Trusted => Ok(()),
            Verdict::Revoked { file, line } => Err(HostKeyError::Revoked {
                host: self.lookup.clone(),
                fingerprint: fp,
                file,
                line,
            }),
            Verdict::Changed(known) => Err(HostKeyError::Changed {
                host: self.lookup.clone(),
                key_type: key.algorithm().to_string(),
                fingerprint: fp,
                known,
            }),
            Verdict::Unknown => match (&self.policy, self.files.first()) {
                (HostKeyPolicy::AcceptNew, Some(file)) => {
                    self.inner
                        .known_hosts
                        .learn(&self.lookup, key, file, self.hashed)
                        .await?;
                    tracing::info!(host = %self.lookup, fingerprint = %fp, file = %file.display(), "recorded new host key");
                    Ok(())
                }
                _ => Err(HostKeyError::Unknown {
                    host: self.lookup.clone(),
                    key_type: key.algorithm().to_string(),
                    fingerprint: fp,
                    files: self.files.clone(),
                }),
            },
        }
    }
}

impl client::Handler for Verifier {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let plain = key.public_key();
        if let Some(cert) = key.certificate()
            && !matches!(self.policy, HostKeyPolicy::Pinned(_))
        {
            let mut names = vec![self.lookup.as_str()];
            names.extend(self.bare.as_deref());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let verdict = self.inner.known_hosts.check_certificate(
                &names,
                &self.address,
                cert,
                &self.files,
                now,
            );
            match verdict {
                CertVerdict::Trusted => return Ok(true),
                CertVerdict::Revoked { file, line } => {
                    return Err(HandshakeError::HostKey(HostKeyError::Revoked {
                        host: self.lookup.clone(),
                        fingerprint: fingerprint(&plain),
                        file,
                        line,
                    }));
                }
                // As OpenSSH: a certificate not trusted leaves the key inside it, checked as
                // any host key; when that fails too, the certificate's fault is the one told.
                CertVerdict::Invalid(reason) => {
                    return match self.verify(&plain).await {
                        Ok(()) => Ok(true),
                        Err(HostKeyError::Unknown { .. }) => {
                            Err(HandshakeError::HostKey(HostKeyError::Certificate {
                                host: self.lookup.clone(),
                                reason,
                            }))
                        }
                        Err(e) => Err(HandshakeError::HostKey(e)),
                    };
                }
                CertVerdict::NoAuthority => {}
            }
        }
        self.verify(&plain).await.map_err(HandshakeError::HostKey)?;
        Ok(true)
    }
}

pub(crate) type SshHandle = Handle<Verifier>;
