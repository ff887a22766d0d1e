//! Two-stage interrupt: the first Ctrl-C (or SIGTERM) drains, the second aborts.

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

    /// Listens for SIGINT and SIGTERM. `on_drain` is called after the first signal, to tell
    /// the user what is still running. Abort the returned task when the work is done.
    pub(crate) fn watch_signals(
        &self,
        on_drain: impl Fn() + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        use tokio::signal::unix::{SignalKind, signal};
        // Both streams are created once, up front, so a second signal that arrives while the
        // first is being handled is not lost.
        let (mut int, mut term) = (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        );
        let me = self.clone();
        tokio::spawn(async move {
            for stage in 0..2 {
                tokio::select! {
                    Some(()) = recv(&mut int) => {},
                    Some(()) = recv(&mut term) => {},
                    else => return,
                }
                me.interrupted.store(true, Ordering::SeqCst);
                if stage == 0 {
                    me.drain.cancel();
                    on_drain();
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
