use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fleet_lab::{TestAgent, TestLab, generate_client_key};
use fleet_remote_exec::{Client, ClientOptions, ExecError, Prompter};
use tokio_util::sync::CancellationToken;

use crate::{client, target};

fn authorize(lab: &fleet_lab::Lab, key: &Path) {
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub key");
    let path = lab.dir().join("authorized_keys");
    let mut text = std::fs::read_to_string(&path).expect("authorized_keys");
    text.push_str(&public);
    std::fs::write(path, text).expect("write authorized_keys");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_file_authenticates() {
    let lab = TestLab::start(1);
    client()
        .connect(&target(&lab, &lab.hosts()[0]), &CancellationToken::new())
        .await
        .expect("key file auth");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_authenticates_without_key_files() {
    let lab = TestLab::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = TestAgent::start(dir.path(), &[&lab.client_key()]).expect("agent");
    let mut t = target(&lab, &lab.hosts()[0]);
    t.identity_files = vec![dir.path().join("no-such-key")];
    let c = Client::new(ClientOptions {
        agent_socket: Some(agent.socket().to_owned()),
        ..ClientOptions::default()
    });
    c.connect(&t, &CancellationToken::new())
        .await
        .expect("agent auth");
    // Without the agent, the same target fails and says what it tried.
    let err = client()
        .connect(&t, &CancellationToken::new())
        .await
        .err()
        .expect("fails");
    assert!(
        err.to_string().contains("no-such-key` (not found)"),
        "{err}"
    );
}

/// An agent socket that accepts and never answers (a stuck agent, a stale forwarded socket):
/// skipped after a few seconds for the key files, and named when nothing else works; never a
/// wait until the connection's time runs out.
#[tokio::test(flavor = "multi_thread")]
async fn a_mute_agent_is_skipped_for_the_key_files() {
    let lab = TestLab::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("mute.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let c = Client::new(ClientOptions {
        agent_socket: Some(sock.clone()),
        ..ClientOptions::default()
    });
    let mut t = target(&lab, &lab.hosts()[0]);
    t.connect_timeout = std::time::Duration::from_secs(30);
    let start = std::time::Instant::now();
    c.connect(&t, &CancellationToken::new())
        .await
        .expect("the key file after the mute agent");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    t.identity_files = vec![dir.path().join("no-such-key")];
    let err = c
        .connect(&t, &CancellationToken::new())
        .await
        .err()
        .expect("nothing left to try");
    assert!(
        err.to_string().contains("ssh-agent (no answer from"),
        "{err}"
    );
    held.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_key_fails_with_what_was_tried() {
    let lab = TestLab::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = generate_client_key(&dir.path().join("wrong")).expect("key");
    let mut t = target(&lab, &lab.hosts()[0]);
    t.identity_files = vec![wrong.clone()];
    match client().connect(&t, &CancellationToken::new()).await {
        Err(e @ ExecError::Auth { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&format!("`{}` (rejected)", wrong.display())),
                "{text}"
            );
            assert_eq!(e.kind(), "auth");
        }
        other => panic!("expected auth failure, got {:?}", other.err()),
    }
}

struct CountingPrompter {
    answer: Option<String>,
    asked: AtomicUsize,
}

impl Prompter for CountingPrompter {
    fn passphrase(&self, _key: &Path) -> Option<String> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.answer.clone()
    }
}

fn keygen(path: &Path, args: &[&str]) -> PathBuf {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-C", "fleet-test"])
        .args(args)
        .arg("-f")
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    path.to_owned()
}

fn encrypted_key(dir: &Path) -> PathBuf {
    keygen(&dir.join("enc_key"), &["-t", "ed25519", "-N", "s3cret"])
}

/// Ed25519 keys sign through a signer prepared once per run; RSA (with the SHA-2 hash the
/// server asks for) and ECDSA keys sign through russh's own path. All must log in.
#[tokio::test(flavor = "multi_thread")]
async fn rsa_ecdsa_and_ed25519_key_files_authenticate() {
    let lab = TestLab::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = [
        keygen(
            &dir.path().join("rsa"),
            &["-t", "rsa", "-b", "2048", "-N", ""],
        ),
        keygen(&dir.path().join("ecdsa"), &["-t", "ecdsa", "-N", ""]),
        keygen(&dir.path().join("ed25519"), &["-t", "ed25519", "-N", ""]),
    ];
    let c = client();
    for key in &keys {
        let mut t = target(&lab, &lab.hosts()[0]);
        t.identity_files = vec![key.clone()];
        // Not yet authorized: rejected, and said so.
        let err = c
            .connect(&t, &CancellationToken::new())
            .await
            .err()
            .expect("not authorized yet");
        assert_eq!(err.kind(), "auth", "{}: {err}", key.display());
        authorize(&lab, key);
        c.connect(&t, &CancellationToken::new())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_key_asks_once_for_many_hosts() {
    let lab = TestLab::start(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = encrypted_key(dir.path());
    authorize(&lab, &key);
    let prompter = Arc::new(CountingPrompter {
        answer: Some("s3cret".into()),
        asked: AtomicUsize::new(0),
    });
    let c = Client::new(ClientOptions {
        agent_socket: None,
        prompter: prompter.clone(),
        ..ClientOptions::default()
    });
    let mut set = tokio::task::JoinSet::new();
    for h in lab.hosts() {
        let mut t = target(&lab, h);
        t.identity_files = vec![key.clone()];
        let c = c.clone();
        set.spawn(async move { c.connect(&t, &CancellationToken::new()).await.map(|_| ()) });
    }
    while let Some(r) = set.join_next().await {
        r.expect("join").expect("encrypted key auth");
    }
    assert_eq!(prompter.asked.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_key_without_a_prompt_fails_clearly() {
    let lab = TestLab::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = encrypted_key(dir.path());
    authorize(&lab, &key);
    let mut t = target(&lab, &lab.hosts()[0]);
    t.identity_files = vec![key];
    let err = client()
        .connect(&t, &CancellationToken::new())
        .await
        .err()
        .expect("fails");
    assert!(
        err.to_string()
            .contains("encrypted, and no passphrase could be asked"),
        "{err}"
    );
}

/// As OpenSSH, a key file that group or others may access is not used: the host fails and
/// says which file and why. The same key at 0600 logs in.
#[tokio::test(flavor = "multi_thread")]
async fn key_file_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let lab = TestLab::start(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("open_key");
    std::fs::copy(lab.client_key(), &key).expect("copy the lab key");
    let chmod = |mode| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    let mut t = target(&lab, &lab.hosts()[0]);
    t.identity_files = vec![key.clone()];
    for mode in [0o644, 0o640] {
        chmod(mode);
        // A new client each time: a client loads each key file once.
        match client().connect(&t, &CancellationToken::new()).await {
            Err(e @ ExecError::Auth { .. }) => {
                let text = e.to_string();
                let why = format!(
                    "permissions {mode:04o} for `{}` are too open: a private key must not be \
                     accessible by group or others (chmod 600)",
                    key.display()
                );
                assert!(text.contains(&why), "{text}");
            }
            other => panic!(
                "mode {mode:04o}: expected auth failure, got {:?}",
                other.err()
            ),
        }
    }
    chmod(0o600);
    client()
        .connect(&t, &CancellationToken::new())
        .await
        .expect("the same key at 0600 logs in");
}
