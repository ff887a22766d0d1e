//! Two-stage interrupt: the first Ctrl-C (or SIGTERM, or SIGHUP) drains, the second aborts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;

/// Cancellation passed into the work: `drain` stops admitting new hosts, `abort` (which also
/// fires `drain`) kills running commands.
#[derive(Clone, Debug)]
pub(crate) struct Cancel {
    pub(crate) drain: CancellationToken,
    pub(crate) abort: CancellationToken,
    interrupted: Arc<AtomicBool>,
}

impl Cancel {
    pub(crate) fn new() -> Self {
        let abort = CancellationToken::new();
        Self {
            drain: abort.child_token(),
            abort,
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Wraps tokens created elsewhere (the playbook's own pair).
    pub(crate) fn from_tokens(drain: CancellationToken, abort: CancellationToken) -> Self {
        Self {
            drain,
            abort,
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Listens for SIGINT, SIGTERM and SIGHUP, which all mean the same: the first drains,
    /// any second one aborts. `on_drain` is called after the first signal, to tell the user
    /// what is still running. Abort the returned task when the work is done.
    ///
    /// SIGHUP is here because a closed terminal or a dropped SSH session to the controller
    /// sends it, and its default action would end fleet at once: no cleanup, remote commands
    /// left running, sites left in maintenance. It ends with the same exit code as Ctrl-C
    /// (130, "interrupted"): scripts check one code for "fleet was stopped", and which signal
    /// did it is no business of the exit status (the remote side was handled the same way).
    pub(crate) fn watch_signals(
        &self,
        on_drain: impl Fn() + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        use tokio::signal::unix::{SignalKind, signal};
        // Every stream is created once, up front, so a second signal that arrives while the
        // first is being handled is not lost.
        let (mut int, mut term, mut hup) = (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::hangup()).ok(),
        );
        let me = self.clone();
        tokio::spawn(async move {
            for stage in 0..2 {
                tokio::select! {
                    Some(()) = recv(&mut int) => {},
                    Some(()) = recv(&mut term) => {},
                    Some(()) = recv(&mut hup) => {},
                    else => return,
                }
                me.interrupted.store(true, Ordering::SeqCst);
                if stage == 0 {
                    me.drain.cancel();
                    // A panic here (say, `eprintln!` to a terminal that hung up) would end
                    // this task, and with it the second stage: once these handlers exist, a
                    // second signal does nothing unless this loop is alive to see it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&on_drain));
                } else {
                    me.abort.cancel();
                }
            }
        })
    }
}

async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => None,
    }
}
