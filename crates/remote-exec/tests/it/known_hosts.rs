use std::io::Write;
use std::process::Command;

use fleet_lab::TestLab;
use fleet_remote_exec::{ExecError, HostKeyError, HostKeyPolicy};
use tokio_util::sync::CancellationToken;

use crate::{client, target};

fn fingerprint_of(public_key_line: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("k.pub");
    std::fs::write(&p, format!("{public_key_line}\n")).expect("write");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&p)
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}

async fn try_connect(t: &fleet_remote_exec::Target) -> Result<(), ExecError> {
    client()
        .connect(t, &CancellationToken::new())
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_accepts_plain_and_hashed_port_entries() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = dir.path().join("known_hosts");
    std::fs::write(
        &kh,
        format!(
            "[{}]:{} {}\n",
            host.address, host.port, host.host_public_key
        ),
    )
    .expect("write");
    let status = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .expect("ssh-keygen -H");
    assert!(status.status.success());
    assert!(
        std::fs::read_to_string(&kh)
            .expect("read")
            .starts_with("|1|")
    );
    let mut t = target(&lab, host);
    t.known_hosts_files = vec![kh];
    try_connect(&t).await.expect("hashed entry trusted");
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_rejects_unknown_and_changed_keys_with_fingerprint() {
    let lab = TestLab::start(2);
    let (a, b) = (&lab.hosts()[0], &lab.hosts()[1]);
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = dir.path().join("known_hosts");
    // a is recorded with b's key: changed. b is not recorded at all: unknown.
    std::fs::write(
        &kh,
        format!("[{}]:{} {}\n", a.address, a.port, b.host_public_key),
    )
    .expect("write");
    let mut ta = target(&lab, a);
    ta.known_hosts_files = vec![kh.clone()];
    match try_connect(&ta).await {
        Err(ExecError::HostKey(HostKeyError::Changed {
            fingerprint, known, ..
        })) => {
            assert_eq!(fingerprint, fingerprint_of(&a.host_public_key));
            assert!(
                known[0].contains(&fingerprint_of(&b.host_public_key)),
                "{known:?}"
            );
        }
        other => panic!("expected a changed key, got {other:?}"),
    }
    let mut tb = target(&lab, b);
    tb.known_hosts_files = vec![kh.clone()];
    match try_connect(&tb).await {
        Err(e @ ExecError::HostKey(HostKeyError::Unknown { .. })) => {
            assert!(
                e.to_string().contains(&fingerprint_of(&b.host_public_key)),
                "{e}"
            );
        }
        other => panic!("expected an unknown key, got {other:?}"),
    }
    // As OpenSSH: an entry without the port vouches for port != 22 only when nothing is
    // recorded with the port; a key recorded with the port is the one that counts.
    std::fs::write(&kh, format!("{} {}\n", b.address, b.host_public_key)).expect("write");
    let mut tb = target(&lab, b);
    tb.known_hosts_files = vec![kh.clone()];
    assert!(try_connect(&tb).await.is_ok(), "the bare entry vouches");
    std::fs::write(
        &kh,
        format!(
            "[{}]:{} {}\n{} {}\n",
            b.address, b.port, a.host_public_key, b.address, b.host_public_key
        ),
    )
    .expect("write");
    let mut tb = target(&lab, b);
    tb.known_hosts_files = vec![kh.clone()];
    assert!(matches!(
        try_connect(&tb).await,
        Err(ExecError::HostKey(HostKeyError::Changed { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_new_records_unknown_keys_once_and_still_rejects_changed() {
    let lab = TestLab::start(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let kh = dir.path().join("known_hosts");
    let c = client();
    let mut set = tokio::task::JoinSet::new();
    for h in lab.hosts() {
        let mut t = target(&lab, h);
        t.known_hosts_files = vec![kh.clone()];
        t.host_key_policy = HostKeyPolicy::AcceptNew;
        let c = c.clone();
        set.spawn(async move { c.connect(&t, &CancellationToken::new()).await.map(|_| ()) });
    }
    while let Some(r) = set.join_next().await {
        r.expect("join").expect("accept-new connects");
    }
    let text = std::fs::read_to_string(&kh).expect("read");
    assert_eq!(text.lines().count(), 3, "{text}");
    for h in lab.hosts() {
        assert!(
            text.contains(&format!("[{}]:{} {}", h.address, h.port, h.host_public_key)),
            "{text}"
        );
        // A fresh strict client trusts what was recorded.
        let mut t = target(&lab, h);
        t.known_hosts_files = vec![kh.clone()];
        try_connect(&t).await.expect("strict after accept-new");
    }
    // accept-new never overrides a changed key.
    let (a, b) = (&lab.hosts()[0], &lab.hosts()[1]);
    let kh2 = dir.path().join("known_hosts2");
    let mut f = std::fs::File::create(&kh2).expect("create");
    writeln!(f, "[{}]:{} {}", a.address, a.port, b.host_public_key).expect("write");
    let mut t = target(&lab, a);
    t.known_hosts_files = vec![kh2];
    t.host_key_policy = HostKeyPolicy::AcceptNew;
    assert!(matches!(
        try_connect(&t).await,
        Err(ExecError::HostKey(HostKeyError::Changed { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn pinned_fingerprint_wins_over_known_hosts() {
    let lab = TestLab::start(2);
    let (a, b) = (&lab.hosts()[0], &lab.hosts()[1]);
    let mut t = target(&lab, a);
    t.known_hosts_files = vec![];
    t.host_key_policy = HostKeyPolicy::Pinned(fingerprint_of(&a.host_public_key));
    try_connect(&t).await.expect("pinned match");
    t.host_key_policy = HostKeyPolicy::Pinned(fingerprint_of(&b.host_public_key));
    assert!(matches!(
        try_connect(&t).await,
        Err(ExecError::HostKey(HostKeyError::PinMismatch { .. }))
    ));
}
