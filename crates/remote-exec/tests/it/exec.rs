use std::time::{Duration, Instant};

use fleet_lab::{LabHost, TestLab};
use fleet_remote_exec::{
    Client, ClientOptions, ExecError, ExecOptions, ExitStatus, RemoteCommand, Target,
};
use tokio_util::sync::CancellationToken;

use crate::{client, connect, pid_alive, target};

fn opts(timeout: Duration) -> ExecOptions {
    ExecOptions {
        timeout,
        max_output: 1 << 20,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_reports_streams_status_and_host_env() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    let s = connect(&lab, host).await;
    let out = s
        .exec(
            &RemoteCommand::shell("echo \"$FLEET_HOST $FLEET_ROOT\"; echo oops >&2; exit 3"),
            &opts(Duration::from_secs(20)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(
        out.stdout.to_string_lossy(),
        format!("{} {}\n", host.name, host.root.display())
    );
    assert_eq!(out.stderr.to_string_lossy(), "oops\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_reports_signal_and_quotes_arguments() {
    let lab = TestLab::start(1);
    let s = connect(&lab, &lab.hosts()[0]).await;
    let cancel = CancellationToken::new();
    let out = s
        .exec(
            &RemoteCommand::shell("kill -TERM $$"),
            &opts(Duration::from_secs(20)),
            &cancel,
        )
        .await
        .expect("exec");
    assert!(
        matches!(out.status, ExitStatus::Signal { ref name, .. } if name == "TERM"),
        "{:?}",
        out.status
    );
    let weird = "it's a \"test\" $HOME `x` ;";
    let out = s
        .exec(
            &RemoteCommand::new("printf").arg("%s").arg(weird),
            &opts(Duration::from_secs(20)),
            &cancel,
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout.to_string_lossy(), weird);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_carries_many_concurrent_commands() {
    let lab = TestLab::start(1);
    let s = connect(&lab, &lab.hosts()[0]).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..30 {
        let s = s.clone();
        set.spawn(async move {
            let out = s
                .exec(
                    &RemoteCommand::shell(format!("echo {i}")),
                    &opts(Duration::from_secs(30)),
                    &CancellationToken::new(),
                )
                .await
                .expect("exec");
            assert_eq!(out.stdout.to_string_lossy(), format!("{i}\n"));
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_bounded_with_head_and_tail() {
    let lab = TestLab::start(1);
    let s = connect(&lab, &lab.hosts()[0]).await;
    let out = s
        .exec(
            &RemoteCommand::shell(
                "echo first; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo last",
            ),
            &ExecOptions {
                timeout: Duration::from_secs(30),
                max_output: 1000,
            },
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert!(out.status.success());
    let text = out.stdout.to_string_lossy();
    assert!(text.starts_with("first\n"), "{text}");
    assert!(text.ends_with("x\nlast\n"), "{text}");
    assert_eq!(out.stdout.total_len(), 6 + 5_000_000 + 1 + 5);
    assert!(out.stdout.dropped() > 4_990_000);
}

/// The command runs a background child and waits; after the timeout both the shell and the
/// child must be gone (sshd and the lab run on this machine, so /proc tells).
#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_the_remote_process_group() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    let s = connect(&lab, host).await;
    let started = Instant::now();
    let out = s
        .exec(
            &RemoteCommand::shell(
                "sleep 300 & echo $! > \"$FLEET_ROOT/child\"; echo $$ > \"$FLEET_ROOT/shell\"; echo started; wait",
            ),
            &opts(Duration::from_secs(2)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::TimedOut { killed: true });
    assert_eq!(out.stdout.to_string_lossy(), "started\n");
    assert!(started.elapsed() < Duration::from_secs(15));
    for f in ["child", "shell"] {
        let pid: u32 = std::fs::read_to_string(host.root.join(f))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        assert!(
            !pid_alive(pid),
            "remote {f} process {pid} survived the timeout"
        );
    }
    // The connection is still usable afterwards.
    let out = s
        .exec(
            &RemoteCommand::shell("echo ok"),
            &opts(Duration::from_secs(20)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout.to_string_lossy(), "ok\n");
}

/// A child that ignores SIGTERM outlives its shell: only the KILL that follows ends it, and
/// the host's init then reaps it, in its own time (the lab machines' init takes about a
/// second, longer than the KILL's grace). Its zombie runs nothing: the kill is reported done.
#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_a_child_that_ignores_term_and_says_so() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    let s = connect(&lab, host).await;
    let out = s
        .exec(
            &RemoteCommand::shell(
                r#"(trap '' TERM HUP; exec sleep 300) & echo $! > "$FLEET_ROOT/child"; echo started; wait"#,
            ),
            &opts(Duration::from_secs(1)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout.to_string_lossy(), "started\n");
    assert_gone(host, "child");
    assert_eq!(out.status, ExitStatus::TimedOut { killed: true });
}

/// Makes the login shell of lab host `host` print `rc-stdout` and `rc-stderr` before every
/// command, as a noisy `~/.bashrc` does (the lab's sshd sets `HOME` to `DIR/home/<name>`,
/// and bash reads `~/.bashrc` for ssh commands).
fn noisy_bashrc(lab: &TestLab, host: &LabHost) {
    let rc = lab.dir().join("home").join(&host.name).join(".bashrc");
    std::fs::write(&rc, "echo rc-stdout\necho rc-stderr >&2\n").expect("write .bashrc");
}

/// Reads the pid the remote command wrote to `$FLEET_ROOT/<file>` and checks it is gone; a
/// survivor is killed before failing, so a failed run leaves no `sleep 300` behind.
#[track_caller]
fn assert_gone(host: &LabHost, file: &str) {
    let pid: u32 = std::fs::read_to_string(host.root.join(file))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    if pid_alive(pid) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("remote {file} process {pid} survived the timeout");
    }
}

/// Output from the host's rc file comes before the pgid marker on stderr: it stays the
/// command's output (on both streams), and the marker does not show.
#[tokio::test(flavor = "multi_thread")]
async fn shell_rc_output_is_kept_and_the_marker_stripped() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    noisy_bashrc(&lab, host);
    let s = connect(&lab, host).await;
    let out = s
        .exec(
            &RemoteCommand::shell("echo ok; echo oops >&2"),
            &opts(Duration::from_secs(20)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::Code(0));
    assert_eq!(out.stdout.to_string_lossy(), "rc-stdout\nok\n");
    assert_eq!(out.stderr.to_string_lossy(), "rc-stderr\noops\n");
}

/// The pgid marker comes after the rc file's output on stderr; the timeout must still find
/// it and kill the process group.
#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_despite_shell_rc_output() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    noisy_bashrc(&lab, host);
    let s = connect(&lab, host).await;
    let started = Instant::now();
    let out = s
        .exec(
            &RemoteCommand::shell(
                "sleep 300 & echo $! > \"$FLEET_ROOT/rc-child\"; echo $$ > \"$FLEET_ROOT/rc-shell\"; wait",
            ),
            &opts(Duration::from_secs(2)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    for f in ["rc-child", "rc-shell"] {
        assert_gone(host, f);
    }
    assert_eq!(out.status, ExitStatus::TimedOut { killed: true });
    assert_eq!(out.stdout.to_string_lossy(), "rc-stdout\n");
    assert_eq!(out.stderr.to_string_lossy(), "rc-stderr\n");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_kills_the_remote_process() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    let s = connect(&lab, host).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let marker = host.root.join("cancel-shell");
    let watch = marker.clone();
    tokio::spawn(async move {
        while !watch.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        trigger.cancel();
    });
    let out = s
        .exec(
            &RemoteCommand::shell("echo $$ > \"$FLEET_ROOT/cancel-shell.tmp\"; mv \"$FLEET_ROOT/cancel-shell.tmp\" \"$FLEET_ROOT/cancel-shell\"; sleep 300"),
            &opts(Duration::from_secs(60)),
            &cancel,
        )
        .await
        .expect("exec");
    assert_eq!(out.status, ExitStatus::Cancelled { killed: true });
    let pid: u32 = std::fs::read_to_string(&marker)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(!pid_alive(pid));
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_host_is_a_connect_error() {
    let mut lab = TestLab::start(2);
    let name = lab.hosts()[1].name.clone();
    lab.lab_mut().stop_host(&name).expect("stop");
    let t = target(&lab, lab.host(&name).expect("host"));
    let err = client()
        .connect(&t, &CancellationToken::new())
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, ExecError::Connect { .. }), "{err:?}");
    assert_eq!(err.kind(), "connect");
}

/// A target whose TCP listener accepts and never speaks (keep the listener alive).
fn silent_target(lab: &TestLab, connect_timeout: Duration) -> (std::net::TcpListener, Target) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut t = target(lab, &lab.hosts()[0]);
    t.address = "127.0.0.1".into();
    t.port = listener.local_addr().expect("addr").port();
    t.connect_timeout = connect_timeout;
    (listener, t)
}

/// A peer that accepts TCP and never speaks must not hang the connect (russh has no
/// handshake timeout of its own).
#[tokio::test(flavor = "multi_thread")]
async fn silent_server_times_out() {
    let lab = TestLab::start(1);
    let (_listener, t) = silent_target(&lab, Duration::from_millis(700));
    let started = Instant::now();
    let err = client()
        .connect(&t, &CancellationToken::new())
        .await
        .err()
        .expect("must time out");
    assert!(matches!(err, ExecError::ConnectTimeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// With one handshake slot, a host queued behind a silent one waits for the slot, and its
/// connect timeout starts only then: it connects instead of timing out in the queue.
#[tokio::test(flavor = "multi_thread")]
async fn queued_handshakes_start_their_timeout_when_admitted() {
    let lab = TestLab::start(1);
    let (_listener, silent) = silent_target(&lab, Duration::from_millis(800));
    let mut real = target(&lab, &lab.hosts()[0]);
    real.connect_timeout = Duration::from_millis(800);
    let c = Client::new(ClientOptions {
        agent_socket: None,
        max_handshakes: Some(1),
        ..ClientOptions::default()
    });
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let first = c.connect(&silent, &cancel);
    let second = async {
        // Let the silent host take the only slot first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = c.connect(&real, &cancel).await;
        (r, started.elapsed())
    };
    let (first, (second, second_done)) = tokio::join!(first, second);
    assert!(
        matches!(first, Err(ExecError::ConnectTimeout { .. })),
        "{:?}",
        first.err()
    );
    second.expect("the queued host connects once admitted");
    assert!(
        second_done >= Duration::from_millis(800),
        "the queued handshake waited for the slot: {second_done:?}"
    );
}

/// "Start no new hosts" reaches a host queued for a handshake slot, not one under way.
#[tokio::test(flavor = "multi_thread")]
async fn stop_queued_gives_up_only_while_waiting_for_a_slot() {
    let lab = TestLab::start(1);
    let (_listener, silent) = silent_target(&lab, Duration::from_secs(3));
    let real = target(&lab, &lab.hosts()[0]);
    let c = Client::new(ClientOptions {
        agent_socket: None,
        max_handshakes: Some(1),
        ..ClientOptions::default()
    });
    let (cancel, stop) = (CancellationToken::new(), CancellationToken::new());
    let started = Instant::now();
    let holder = c.connect_unless_stopped(&silent, &cancel, Some(&stop));
    let queued = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = c.connect_unless_stopped(&real, &cancel, Some(&stop));
        let fire = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.cancel();
        };
        let (r, ()) = tokio::join!(waiting, fire);
        (r, started.elapsed())
    };
    let (held, (queued, queued_done)) = tokio::join!(holder, queued);
    assert!(
        matches!(queued, Err(ExecError::Cancelled)),
        "{:?}",
        queued.err()
    );
    assert!(
        queued_done < Duration::from_secs(2),
        "gave up while queued: {queued_done:?}"
    );
    // The handshake under way was not stopped: it ran into its own timeout.
    assert!(
        matches!(held, Err(ExecError::ConnectTimeout { .. })),
        "{:?}",
        held.err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jump_host_reaches_the_target() {
    let lab = TestLab::start(2);
    let (bastion, inner) = (&lab.hosts()[0], &lab.hosts()[1]);
    let mut t = target(&lab, inner);
    t.jump = vec![target(&lab, bastion)];
    let c = client();
    let s = c
        .connect(&t, &CancellationToken::new())
        .await
        .expect("connect via jump");
    let out = s
        .exec(
            &RemoteCommand::shell("echo $FLEET_HOST"),
            &opts(Duration::from_secs(20)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout.to_string_lossy(), format!("{}\n", inner.name));
    // A broken jump host is reported as such.
    let mut bad = target(&lab, inner);
    let mut hop = target(&lab, bastion);
    hop.port = 1;
    hop.name = "nowhere".into();
    bad.jump = vec![hop];
    let err = c
        .connect(&bad, &CancellationToken::new())
        .await
        .err()
        .expect("fails");
    assert!(
        matches!(err, ExecError::Jump { ref jump, .. } if jump == "nowhere"),
        "{err:?}"
    );
}

/// The jump host's connection, kept for every target behind it, dies (the bastion stays up):
/// the next target behind it gets a new connection to the bastion, not the dead one.
#[tokio::test(flavor = "multi_thread")]
async fn a_jump_connection_that_died_is_made_again() {
    let lab = TestLab::start(2);
    let (bastion, inner) = (&lab.hosts()[0], &lab.hosts()[1]);
    let mut t = target(&lab, inner);
    t.jump = vec![target(&lab, bastion)];
    let c = client();
    let echo = RemoteCommand::shell("echo $FLEET_HOST");
    let first = c
        .connect(&t, &CancellationToken::new())
        .await
        .expect("connect via jump");
    first.close().await;
    drop(first);
    let cut = lab.drop_connections(&bastion.name).expect("drop");
    assert!(cut > 0, "no connection to the bastion to drop");
    // The client hears the connection end at once (the kernel closes the socket).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = c
        .connect(&t, &CancellationToken::new())
        .await
        .expect("connect via the bastion again");
    let out = again
        .exec(
            &echo,
            &opts(Duration::from_secs(20)),
            &CancellationToken::new(),
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout.to_string_lossy(), format!("{}\n", inner.name));
}

/// However fast the hosts answer and however idle the CPU, admission never exceeds an
/// explicit ceiling; every host still connects.
#[tokio::test(flavor = "multi_thread")]
async fn admission_never_exceeds_an_explicit_ceiling() {
    let lab = TestLab::start(12);
    for ceiling in [1, 3] {
        let c = Client::new(ClientOptions {
            agent_socket: None,
            max_handshakes: Some(ceiling),
            ..ClientOptions::default()
        });
        let cancel = CancellationToken::new();
        let all = lab.hosts().iter().map(|h| {
            let (c, cancel, t) = (&c, &cancel, target(&lab, h));
            async move { c.connect(&t, cancel).await }
        });
        let sessions = futures::future::join_all(all).await;
        assert!(sessions.iter().all(Result::is_ok), "every host connects");
        assert!(
            (1..=ceiling).contains(&c.peak_handshakes()),
            "peak {} with ceiling {ceiling}",
            c.peak_handshakes()
        );
        for s in sessions.into_iter().flatten() {
            s.close().await;
        }
    }
}
