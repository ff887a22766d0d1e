//! The parallel run over hosts shared by `exec`, `copy` and `fetch`: at most `forks` hosts
//! at once, admitted in inventory order, nothing new started once the operator interrupts,
//! and one result per host in inventory order, whatever happened to its task.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fleet_remote_exec::{Client, ExecError, Session, Target};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::signal::Cancel;

/// What became of one host's job.
#[derive(Debug)]
pub(crate) enum Ran<R> {
    /// The job ran; its result.
    Done(R),
    /// Never started: the run was interrupted first.
    NotStarted,
    /// A bug: the host's task panicked.
    Panicked,
}

/// Why a host's session did not open.
#[derive(Debug)]
pub(crate) enum NoSession {
    /// Drained while it waited for a handshake slot: it never started.
    NotStarted,
    /// Aborted while connecting.
    Cancelled,
    /// Could not connect, verify or authenticate.
    Unreachable(ExecError),
}

/// Opens `target`'s session, honouring the run's interrupts; also returns the time it took.
pub(crate) async fn connect(
    client: &Client,
    target: &Target,
    cancel: &Cancel,
) -> (Result<Session, NoSession>, Duration) {
    let t0 = Instant::now();
    let r = match client
        .connect_unless_stopped(target, &cancel.abort, Some(&cancel.drain))
        .await
    {
        Ok(s) => Ok(s),
        Err(ExecError::Cancelled) if !cancel.abort.is_cancelled() => Err(NoSession::NotStarted),
        Err(ExecError::Cancelled) => Err(NoSession::Cancelled),
        Err(e) => Err(NoSession::Unreachable(e)),
    };
    (r, t0.elapsed())
}

/// Hosts running now, for the interrupt message.
#[derive(Clone, Default)]
pub(crate) struct Running(Arc<AtomicUsize>);

impl Running {
    pub(crate) fn now(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Watches INT, TERM and HUP for `cancel`: the first drains and says so above the progress
/// bar, with how many hosts are still running. Abort the task when the run is over.
pub(crate) fn watch(
    cancel: &Cancel,
    running: &Running,
    progress: &indicatif::ProgressBar,
) -> tokio::task::JoinHandle<()> {
    let (running, progress) = (running.clone(), progress.clone());
    cancel.watch_signals(move || {
        let n = running.now();
        // Not `eprintln!`: after a SIGHUP the terminal may be gone, and a write error must
        // not panic the signal task.
        progress.suspend(|| {
            let _ = writeln!(
                std::io::stderr(),
                "interrupted: starting no new hosts, waiting for {n} running; press Ctrl-C again to kill them"
            );
        });
    })
}

/// Runs `job` for every item of `jobs`, at most `forks` at once, each in its own task so
/// handshakes use every core; `done` is called as each host ends. Returns one result per
/// job, in job (inventory) order.
pub(crate) async fn fan_out<J, R, F, Fut>(
    jobs: Vec<J>,
    forks: usize,
    cancel: &Cancel,
    running: &Running,
    done: impl Fn() + Clone + Send + 'static,
    job: F,
) -> Vec<Ran<R>>
where
    J: Send + 'static,
    R: Send + 'static,
    F: Fn(J) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + Send,
{
    let forks = Arc::new(Semaphore::new(forks.max(1)));
    let mut set = JoinSet::new();
    let n = jobs.len();
    // Hosts are admitted in inventory order: each task joins the semaphore's queue (which
    // is fair) only once the task before it has, because spawned tasks are first polled in
    // no set order. So `-f 1` goes through the hosts one by one, as listed.
    let mut turn: Option<tokio::sync::oneshot::Receiver<()>> = None;
    for (index, item) in jobs.into_iter().enumerate() {
        let (cancel, forks, running, done, job) = (
            cancel.clone(),
            forks.clone(),
            running.clone(),
            done.clone(),
            job.clone(),
        );
        let (next, mine) = tokio::sync::oneshot::channel::<()>();
        let my_turn = turn.replace(mine);
        set.spawn(async move {
            if let Some(t) = my_turn {
                tokio::select! {
                    biased;
                    () = cancel.drain.cancelled() => {}
                    _ = t => {}
                }
            }
            let mut acquire = Box::pin(forks.acquire_owned());
            // The first poll takes this task's place in the queue; then the next may queue.
            let first = futures::poll!(&mut acquire);
            // The next task is gone only if it finished already (drained): nothing to tell.
            let _ = next.send(());
            let permit = match first {
                std::task::Poll::Ready(p) => p.ok(),
                std::task::Poll::Pending => tokio::select! {
                    biased;
                    () = cancel.drain.cancelled() => None,
                    p = acquire => p.ok(),
                },
            };
            let ran = match permit {
                // Drain may have fired while we waited for the permit.
                Some(_permit) if !cancel.drain.is_cancelled() => {
                    running.0.fetch_add(1, Ordering::SeqCst);
                    let r = job(item).await;
                    running.0.fetch_sub(1, Ordering::SeqCst);
                    Ran::Done(r)
                }
                _ => Ran::NotStarted,
            };
            done();
            (index, ran)
        });
    }
    let mut results: Vec<Ran<R>> = (0..n).map(|_| Ran::Panicked).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => results[i] = r,
            Err(e) => tracing::error!("host task failed: {e}"),
        }
    }
    results
}
