//! One authenticated connection, reused for every command and upload a host needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::client::{Inner, SshHandle};
use crate::command::RemoteCommand;
use crate::error::ExecError;
use crate::escalate::{Become, Gate};
use crate::marker::PgidMarker;
use crate::output::{Capture, ExecOutput, ExitStatus, Push, Sink, Stream, Tee};

/// Bounds for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOptions {
    /// Wall-time limit; the remote process group is killed when it runs out.
    pub timeout: Duration,
    /// Bytes kept per stream (head and tail halves); the middle is counted and dropped.
    pub max_output: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(600),
            max_output: 1 << 20,
        }
    }
}

const KILL_GRACE_STEPS: u32 = 20;

/// An authenticated SSH connection to one host. Clones share the connection.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

struct Shared {
    handle: SshHandle,
    name: String,
    endpoint: String,
    slots: Semaphore,
    /// The client's shared state (hashes of local files).
    client: Arc<Inner>,
    // Keeps the jump-host connection alive as long as this one.
    _via: Option<Session>,
    // Likewise the ProxyCommand, killed when the session goes.
    _proxy: Option<crate::client::ProxyChild>,
    /// Every command runs as this user.
    escalation: Option<Become>,
}

pub(crate) enum Input<'a> {
    None,
    Bytes(&'a Bytes),
    /// A file to send, and who to tell of each chunk sent.
    File(tokio::fs::File, Option<Arc<dyn Fn(u64) + Send + Sync>>),
}

impl Session {
    pub(crate) fn new(
        handle: SshHandle,
        name: String,
        endpoint: String,
        client: Arc<Inner>,
        via: Option<Session>,
        proxy: Option<crate::client::ProxyChild>,
        escalation: Option<Become>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                handle,
                name,
                endpoint,
                slots: Semaphore::new(client.max_channels),
                client,
                _via: via,
                _proxy: proxy,
                escalation,
            }),
        }
    }

    /// Returns the target name this session was opened for.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Returns `address:port` of the host.
    pub(crate) fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    pub(crate) fn digests(&self) -> &crate::transfer::Digests {
        &self.shared.client.digests
    }

    /// Returns true once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.handle.is_closed()
    }

    /// Runs `cmd` and collects its output and exit status.
    ///
    /// A non-zero exit, a signal, a timeout and a cancellation are all results, not errors:
    /// see [`ExitStatus`]. On timeout or cancellation the remote process group is killed
    /// (TERM, then KILL after 2 s) over a separate channel before this returns.
    ///
    /// # Errors
    ///
    /// [`ExecError::Refused`] when the server refuses the channel or the exec request, and
    /// [`ExecError::Disconnected`] when the connection drops.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future leaves the remote command running. Cancel through
    /// `cancel` instead and await the result.
    pub async fn exec(
        &self,
        cmd: &RemoteCommand,
        opts: &ExecOptions,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, ExecError> {
        let input = match cmd.stdin_data() {
            Some(b) => Input::Bytes(b),
            None => Input::None,
        };
        self.run(&cmd.render(), input, cmd_uses_sudo(cmd), opts, cancel, None)
            .await
    }

    /// Runs `cmd` as [`Session::exec`] does, and also hands its output to `sink` as it
    /// arrives.
    ///
    /// # Errors
    ///
    /// As [`Session::exec`].
    ///
    /// # Cancel safety
    ///
    /// As [`Session::exec`].
    pub async fn exec_streaming(
        &self,
        cmd: &RemoteCommand,
        opts: &ExecOptions,
        cancel: &CancellationToken,
        sink: &mut dyn Sink,
    ) -> Result<ExecOutput, ExecError> {
        let input = match cmd.stdin_data() {
            Some(b) => Input::Bytes(b),
            None => Input::None,
        };
        self.run(
            &cmd.render(),
            input,
            cmd_uses_sudo(cmd),
            opts,
            cancel,
            Some(sink),
        )
        .await
    }

    /// Opens a `direct-tcpip` tunnel to `address:port` through this connection (for jump
    /// hosts).
    pub(crate) async fn tunnel(
        &self,
        address: &str,
        port: u16,
    ) -> Result<russh::ChannelStream<Msg>, ExecError> {
        let ch = self
            .shared
            .handle
            .channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| {
                // Over a connection that is gone nothing was refused: say it is lost.
                if self.is_closed() {
                    ExecError::Disconnected {
                        endpoint: self.shared.endpoint.clone(),
                        source: Some(Box::new(e)),
                    }
                } else {
                    ExecError::Refused {
                        endpoint: self.shared.endpoint.clone(),
                        reason: format!("tunnel to `{address}:{port}` refused: {e}"),
                    }
                }
            })?;
        Ok(ch.into_stream())
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.shared
                .handle
                .disconnect(russh::Disconnect::ByApplication, "", "en"),
        )
        .await;
    }

    pub(crate) async fn run(
        &self,
        script: &str,
        input: Input<'_>,
        sudo: bool,
        opts: &ExecOptions,
        cancel: &CancellationToken,
        sink: Option<&mut dyn Sink>,
    ) -> Result<ExecOutput, ExecError> {
        let (mut out, stopped) = self.run_with(script, input, opts, cancel, sink).await?;
        if !stopped.is_empty() {
            let killed = self.kill_groups(&stopped, sudo).await;
            if let ExitStatus::TimedOut { killed: k } | ExitStatus::Cancelled { killed: k } =
                &mut out.status
            {
                *k = killed;
            }
        }
        Ok(out)
    }

    /// Runs `script` as the session's user (through its become, if any). A command that timed
    /// out or was cancelled comes back with the process groups to kill, when they are known:
    /// the login shell's, and with a become the new user's shell's (`su` gives it a session
    /// of its own).
    async fn run_with(
        &self,
        script: &str,
        input: Input<'_>,
        opts: &ExecOptions,
        cancel: &CancellationToken,
        sink: Option<&mut dyn Sink>,
    ) -> Result<(ExecOutput, Vec<u32>), ExecError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let _permit = self
            .shared
            .slots
            .acquire()
            .await
            .map_err(|_| self.disconnected(None))?;
        let channel = tokio::select! {
            r = self.open_channel() => r?,
            () = tokio::time::sleep_until(deadline) => return Ok((self.unstarted(ExitStatus::TimedOut { killed: false }, started, opts), Vec::new())),
            () = cancel.cancelled() => return Ok((self.unstarted(ExitStatus::Cancelled { killed: false }, started, opts), Vec::new())),
        };
        let (mut rx, tx) = channel.split();
        let escalation = self.shared.escalation.as_ref();
        let mut state = Collect::new(opts.max_output, escalation.map(Become::gate), sink);
        let mut full = state.marker.shell_prefix();
        match (escalation, &state.gate) {
            (Some(b), Some(gate)) => full.push_str(&b.wrap(script, gate)),
            _ => full.push_str(script),
        }
        tx.exec(true, full)
            .await
            .map_err(|e| self.disconnected(Some(e)))?;

        // Input waits until the command runs as the user to become: before that, stdin
        // belongs to the method's password prompt.
        let (open_tx, open_rx) = tokio::sync::oneshot::channel::<()>();
        let mut open_tx = Some(open_tx);
        let gated = state.gate.is_some();
        let send = async {
            if gated && open_rx.await.is_err() {
                return Ok(());
            }
            send_input(&tx, input).await
        };
        let password = escalation.and_then(|b| b.password.as_ref());
        let recv = async {
            let mut send_done = false;
            tokio::pin!(send);
            loop {
                tokio::select! {
                    r = &mut send, if !send_done => {
                        send_done = true;
                        // A failed send means the channel closed early (the command exited
                        // without reading its input); its status and stderr still follow.
                        let _ = r;
                    }
                    msg = rx.wait() => match msg {
                        Some(msg) => {
                            if let Err(reason) = state.on_message(msg) {
                                return Err(ExecError::Refused { endpoint: self.shared.endpoint.clone(), reason });
                            }
                            // A sink that cannot keep up holds this host's output back, but
                            // not its time limit or cancellation.
                            if let Some(sink) = state.sink.as_deref_mut() {
                                tokio::select! {
                                    () = sink.ready() => {}
                                    () = tokio::time::sleep_until(deadline) => return Ok(Some(Stop::Timeout)),
                                    () = cancel.cancelled() => return Ok(Some(Stop::Cancel)),
                                }
                            }
                            if let Some(gate) = &mut state.gate {
                                if gate.wants_password() {
                                    gate.answered += 1;
                                    match password.filter(|_| gate.answered == 1) {
                                        Some(pw) => {
                                            let line = zeroize::Zeroizing::new(format!("{}\n", pw.expose()));
                                            let _ = tx.data(line.as_bytes()).await;
                                        }
                                        // No password, or a second prompt (the first answer
                                        // was refused): end stdin, so the method gives up
                                        // now instead of waiting at its prompt.
                                        None => {
                                            gate.none_given = password.is_none();
                                            let _ = tx.eof().await;
                                        }
                                    }
                                }
                                if gate.open && let Some(t) = open_tx.take() {
                                    let _ = t.send(());
                                }
                            }
                        }
                        None => return Ok(None),
                    },
                    () = tokio::time::sleep_until(deadline) => return Ok(Some(Stop::Timeout)),
                    () = cancel.cancelled() => return Ok(Some(Stop::Cancel)),
                }
            }
        };
        let stopped = recv.await?;
        state.finish();
        let mut kill = Vec::new();
        let status = match stopped {
            None => state.status.take().unwrap_or(ExitStatus::Unknown),
            Some(stop) => {
                kill.extend(state.pgid);
                kill.extend(state.gate.as_ref().and_then(|g| g.inner_pid));
                let killed = false;
                // Abandon the channel: close, then drop without waiting. Waiting for the close to
                // be confirmed can hang when the peer never answers it.
                let _ = tx.close().await;
                drop(rx);
                match stop {
                    Stop::Timeout => ExitStatus::TimedOut { killed },
                    Stop::Cancel => ExitStatus::Cancelled { killed },
                }
            }
        };
        if state.status.is_none() && matches!(status, ExitStatus::Unknown) && self.is_closed() {
            return Err(self.disconnected(None));
        }
        // Never run as the new user: a become failure, whether the method gave up or sat at
        // a prompt fleet does not know (an expired password, a second factor) until the
        // command's time ran out. Nothing of the command ran, so nothing is to be killed.
        if let (Some(b), Some(gate)) = (escalation, &state.gate)
            && !gate.open
        {
            let reason = match stopped {
                None => gate.failure(),
                Some(_) => format!(
                    "no command ran: {} (the method waited for something fleet cannot answer)",
                    gate.failure()
                ),
            };
            return Err(ExecError::Become {
                endpoint: self.shared.endpoint.clone(),
                user: b.user.clone(),
                method: b.method.as_str(),
                reason,
            });
        }
        Ok((
            ExecOutput {
                status,
                stdout: state.stdout,
                stderr: state.stderr,
                duration: started.elapsed(),
            },
            kill,
        ))
    }

    /// Runs one command through the session's become, if it has one, so a wrong or missing
    /// password is found before any real command runs.
    pub(crate) async fn check_become(&self, limit: Duration) -> Result<(), ExecError> {
        let Some(b) = &self.shared.escalation else {
            return Ok(());
        };
        let opts = ExecOptions {
            timeout: limit,
            max_output: 64 * 1024,
        };
        let out = self
            .run(
                "id -un; id -u",
                Input::None,
                false,
                &opts,
                &CancellationToken::new(),
                None,
            )
            .await?;
        let who = out.stdout.to_string_lossy();
        let mut ids = who.lines().map(str::trim);
        let (name, uid) = (ids.next().unwrap_or(""), ids.next().unwrap_or(""));
        if out.status.success() && (name == b.user || uid == b.user) {
            return Ok(());
        }
        let reason = if out.status.success() {
            format!("the command ran as `{name}` instead")
        } else {
            format!(
                "the check `id -un` ended with {}: {}",
                out.status,
                out.stderr.to_string_lossy().trim()
            )
        };
        Err(ExecError::Become {
            endpoint: self.shared.endpoint.clone(),
            user: b.user.clone(),
            method: b.method.as_str(),
            reason,
        })
    }

    fn unstarted(&self, status: ExitStatus, started: Instant, opts: &ExecOptions) -> ExecOutput {
        ExecOutput {
            status,
            stdout: Capture::new(opts.max_output),
            stderr: Capture::new(opts.max_output),
            duration: started.elapsed(),
        }
    }

    /// Opens a session channel, retrying while sshd is still freeing the slots of channels
    /// that just closed (it answers `ConnectFailed` for a moment after a burst of closes).
    async fn open_channel(&self) -> Result<Channel<Msg>, ExecError> {
        let mut delay = Duration::from_millis(20);
        for _ in 0..6 {
            match self.shared.handle.channel_open_session().await {
                Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed)) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                r => return r.map_err(|e| self.channel_error(e)),
            }
        }
        self.shared
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.channel_error(e))
    }

    fn channel_error(&self, e: russh::Error) -> ExecError {
        match e {
            russh::Error::ChannelOpenFailure(f) => ExecError::Refused {
                endpoint: self.shared.endpoint.clone(),
                reason: format!("channel open failed: {f:?}"),
            },
            other => self.disconnected(Some(other)),
        }
    }

    fn disconnected(&self, e: Option<russh::Error>) -> ExecError {
        ExecError::Disconnected {
            endpoint: self.shared.endpoint.clone(),
            source: e.map(|e| Box::new(e) as _),
        }
    }

    /// Kills process groups `groups` on the host: TERM, then KILL if one is still there
    /// after 2 s. dash's `kill` takes `kill -TERM -PGID` but not `--`, bash's and most
    /// others' both, so the `--` form is only the fallback. Returns true when every group is confirmed gone (a group this user may not
    /// signal counts as gone: under a become to another user, the login shell's group holds
    /// only that shell and the method, which end with the command).
    ///
    /// After the KILL, a zombie counts as gone. `kill -0` still succeeds on one, and a
    /// process killed after its parent (a child that ignored the TERM its shell died of) is
    /// reaped by the host's init, which may take its time: the lab machines' init took a
    /// second, longer than the KILL's grace, so every such kill was reported as failed
    /// although nothing ran any more, and an init that never reaps (many containers) would
    /// make it so forever. `/proc` is read once, there only (it is slow on a host of
    /// thousands of processes); where it cannot tell, a group that answers `kill -0` is
    /// alive, as before.
    async fn kill_groups(&self, groups: &[u32], sudo: bool) -> bool {
        let k = if sudo { "sudo -n kill" } else { "kill" };
        let g: Vec<String> = groups.iter().map(|p| format!("-{p}")).collect();
        let g = g.join(" ");
        let script = format!(
            "k() {{ {k} \"$1\" \"$2\" 2>/dev/null || {k} \"$1\" -- \"$2\" 2>/dev/null; }}; \
             alive() {{ for p in {g}; do k -0 $p && return 0; done; return 1; }}; \
             live() {{ [ -r /proc/self/stat ] || return 0; for f in /proc/[0-9]*/stat; do \
             read -r l 2>/dev/null <\"$f\" || continue; set -- ${{l##*)}}; [ \"$1\" = Z ] && continue; \
             for p in {g}; do [ \"-$3\" = \"$p\" ] && return 0; done; done; return 1; }}; \
             for p in {g}; do k -TERM $p; done; i=0; \
             while alive; do i=$((i+1)); \
             if [ $i -gt {KILL_GRACE_STEPS} ]; then for p in {g}; do k -KILL $p; done; sleep 0.2; alive && live && exit 1; exit 0; fi; \
             sleep 0.1; done; exit 0"
        );
        if self.shared.escalation.is_some() {
            // The group runs as the user to become: so does its kill.
            let opts = ExecOptions {
                timeout: Duration::from_secs(10),
                max_output: 4096,
            };
            let never = CancellationToken::new();
            let run = self.run_with(&script, Input::None, &opts, &never, None);
            return matches!(run.await, Ok((out, _)) if out.status.success());
        }
        let attempt = async {
            let ch = self.open_channel().await.ok()?;
            let (mut rx, tx) = ch.split();
            tx.exec(true, script).await.ok()?;
            tx.eof().await.ok()?;
            let mut code = None;
            while let Some(msg) = rx.wait().await {
                if let ChannelMsg::ExitStatus { exit_status } = msg {
                    code = Some(exit_status);
                }
            }
            code
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(10), attempt).await,
            Ok(Some(0))
        )
    }
}

#[derive(Clone, Copy)]
enum Stop {
    Timeout,
    Cancel,
}

fn cmd_uses_sudo(cmd: &RemoteCommand) -> bool {
    cmd.render().starts_with("sudo -n ")
}

/// Bytes of a file read and sent at a time: a multiple of the 32 KiB packets OpenSSH takes,
/// so the data goes in full packets. (russh's `data` copies through an 8 KiB buffer, and
/// sshd reallocates its channel buffer for every packet: small packets cost the hosts
/// several times the CPU.)
const FILE_CHUNK: usize = 64 * 1024;

async fn send_input(tx: &ChannelWriteHalf<Msg>, input: Input<'_>) -> Result<(), russh::Error> {
    match input {
        Input::None => {}
        Input::Bytes(b) => tx.data_bytes(b.clone()).await?,
        Input::File(mut f, sent) => {
            use tokio::io::AsyncReadExt as _;
            let mut buf = bytes::BytesMut::with_capacity(FILE_CHUNK);
            loop {
                buf.reserve(FILE_CHUNK);
                let done = match f.read_buf(&mut buf).await {
                    Ok(0) => true,
                    Ok(_) if buf.len() < FILE_CHUNK => continue,
                    Ok(_) => false,
                    // The end of input all the same: the host's size check reports the
                    // file short, rather than waiting for the rest until its time is up.
                    Err(_) => true,
                };
                if !buf.is_empty() {
                    let chunk = buf.split().freeze();
                    if let Some(s) = &sent {
                        s(chunk.len() as u64);
                    }
                    tx.data_bytes(chunk).await?;
                }
                if done {
                    break;
                }
            }
        }
    }
    tx.eof().await
}

/// Output collection for one channel, taking the pgid marker out of stderr.
struct Collect<'s> {
    stdout: Capture,
    stderr: Capture,
    status: Option<ExitStatus>,
    pgid: Option<u32>,
    marker: PgidMarker,
    /// Holds stderr back until a become's command runs as the new user.
    gate: Option<Gate>,
    /// Sees the output as it arrives, beside the captures.
    sink: Option<&'s mut dyn Sink>,
}

/// Stderr after the pgid marker: through the become gate, if any, into the capture.
struct Stderr<'a> {
    gate: Option<&'a mut Gate>,
    out: Tee<'a>,
}

impl Push for Stderr<'_> {
    fn push(&mut self, data: &[u8]) {
        match &mut self.gate {
            Some(g) => g.feed(data, &mut self.out),
            None => self.out.push(data),
        }
    }
}

impl<'s> Collect<'s> {
    fn new(limit: usize, gate: Option<Gate>, sink: Option<&'s mut dyn Sink>) -> Self {
        Self {
            stdout: Capture::new(limit),
            stderr: Capture::new(limit),
            status: None,
            pgid: None,
            marker: PgidMarker::new(),
            gate,
            sink,
        }
    }

    fn on_message(&mut self, msg: ChannelMsg) -> Result<(), String> {
        match msg {
            ChannelMsg::Data { data } => Tee {
                capture: &mut self.stdout,
                sink: reborrow(&mut self.sink),
                stream: Stream::Stdout,
            }
            .push(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let mut out = Stderr {
                    gate: self.gate.as_mut(),
                    out: Tee {
                        capture: &mut self.stderr,
                        sink: reborrow(&mut self.sink),
                        stream: Stream::Stderr,
                    },
                };
                if let Some(pgid) = self.marker.feed(&data, &mut out) {
                    self.pgid = Some(pgid);
                }
            }
            ChannelMsg::ExitStatus { exit_status } => {
                self.status = Some(ExitStatus::Code(exit_status))
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                ..
            } => {
                self.status = Some(ExitStatus::Signal {
                    name: signal_label(&signal_name),
                    core_dumped,
                });
            }
            ChannelMsg::Failure => return Err("exec request refused".into()),
            _ => {}
        }
        Ok(())
    }

    /// Ends stderr: bytes held back as a possible marker belong to the output after all.
    fn finish(&mut self) {
        self.marker.finish(&mut Stderr {
            gate: self.gate.as_mut(),
            out: Tee {
                capture: &mut self.stderr,
                sink: reborrow(&mut self.sink),
                stream: Stream::Stderr,
            },
        });
        if let Some(g) = self.gate.as_mut() {
            g.finish(&mut Tee {
                capture: &mut self.stderr,
                sink: reborrow(&mut self.sink),
                stream: Stream::Stderr,
            });
        }
    }
}

/// Lends the sink for one write (shortening the trait object's lifetime, which `as_deref_mut`
/// alone does not).
fn reborrow<'a>(sink: &'a mut Option<&mut dyn Sink>) -> Option<&'a mut dyn Sink> {
    match sink {
        Some(s) => Some(&mut **s),
        None => None,
    }
}

fn signal_label(sig: &russh::Sig) -> String {
    let s = format!("{sig:?}");
    match s.strip_prefix("Custom(\"") {
        Some(rest) => rest.trim_end_matches("\")").to_owned(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_takes_the_marker_out_of_stderr_only() {
        let mut c = Collect::new(1024, None, None);
        let marker = c.marker.line(4242);
        c.on_message(ChannelMsg::Data {
            data: marker.clone().into_bytes().into(),
        })
        .unwrap();
        for chunk in [
            &b"noise\n"[..],
            &marker.as_bytes()[..9],
            &marker.as_bytes()[9..],
            b"oops\n",
        ] {
            c.on_message(ChannelMsg::ExtendedData {
                data: chunk.to_vec().into(),
                ext: 1,
            })
            .unwrap();
        }
        c.finish();
        assert_eq!(c.pgid, Some(4242));
        assert_eq!(c.stderr.to_string_lossy(), "noise\noops\n");
        assert_eq!(
            c.stdout.to_string_lossy(),
            marker,
            "stdout is never searched"
        );
    }

    #[test]
    fn the_sink_sees_both_streams_without_the_marker() {
        struct Seen(Vec<(Stream, Vec<u8>)>);
        impl Sink for Seen {
            fn output(&mut self, stream: Stream, data: &[u8]) {
                self.0.push((stream, data.to_vec()));
            }
        }
        let mut seen = Seen(Vec::new());
        let mut c = Collect::new(4, None, Some(&mut seen));
        let marker = c.marker.line(77);
        for (ext, chunk) in [
            (0, b"out\n".to_vec()),
            (1, format!("{marker}err").into_bytes()),
            (0, b"more than the capture keeps".to_vec()),
        ] {
            let data = chunk.into();
            c.on_message(if ext == 0 {
                ChannelMsg::Data { data }
            } else {
                ChannelMsg::ExtendedData { data, ext: 1 }
            })
            .unwrap();
        }
        c.finish();
        assert_eq!(c.pgid, Some(77));
        let got: Vec<(Stream, String)> = seen
            .0
            .into_iter()
            .map(|(s, d)| (s, String::from_utf8(d).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (Stream::Stdout, "out\n".to_owned()),
                (Stream::Stderr, "err".to_owned()),
                (Stream::Stdout, "more than the capture keeps".to_owned()),
            ]
        );
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_label(&russh::Sig::TERM), "TERM");
        assert_eq!(signal_label(&russh::Sig::Custom("XCPU".into())), "XCPU");
    }
}
