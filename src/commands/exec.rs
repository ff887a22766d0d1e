//! `fleet exec`: one command on every selected host, in parallel, folded output.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_remote_exec::{Client, ClientOptions, ExecError, ExecOptions, RemoteCommand, Target};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::args::{Cli, ExecArgs};
use crate::exit::ExitStatus;
use crate::prompt::TtyPrompter;
use crate::render::{self, HostReport, Outcome};
use crate::signal::Cancel;
use crate::targets::{TargetOverrides, target_for};

pub(crate) async fn run(cli: &Cli, args: &ExecArgs) -> anyhow::Result<ExitStatus> {
    let settings = crate::settings::Settings::of(cli);
    // Before anything else: a refused command line must not reach a single host.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command_line = args.remote_command(&argv).map_err(anyhow::Error::msg)?;
    let inventory = super::load_inventory(cli)?;
    let hosts = super::select(&inventory, &args.selection)?;
    if args.out_dir.is_some()
        && let Some(h) = hosts.iter().find(|h| !is_file_name(&h.name))
    {
        anyhow::bail!(
            "host name `{}` cannot name a file in `--out-dir`",
            h.name.escape_debug()
        );
    }
    let overrides = TargetOverrides {
        connect_timeout: args.connect_timeout,
    };
    let mut jobs: Vec<Job> = hosts
        .iter()
        .map(|h| {
            Ok(Job {
                target: target_for(&inventory, h, overrides)?,
                timeout: args.timeout.unwrap_or(h.command_timeout),
                lines: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }

    let command = match &args.script {
        None => RemoteCommand::shell(command_line),
        Some(path) => {
            let body = std::fs::read(path)
                .with_context(|| format!("cannot read the script `{}`", path.display()))?;
            RemoteCommand::local_script(body.into(), &args.command)
                .with_context(|| format!("cannot run the script `{}`", path.display()))?
        }
    };
    // Streaming is asked for, or it is what one host on a terminal wants: its output as it
    // comes, as plain ssh would show it.
    let streaming = args.stream
        || (!args.fold && !args.json && jobs.len() == 1 && std::io::stdout().is_terminal());
    let printer = streaming.then(|| {
        render::stream::Printer::new(
            jobs.iter().map(|j| j.target.name.as_str()),
            render::stream::StreamStyle {
                json: args.json,
                color_stdout: settings.color_stdout,
                color_stderr: settings.color_stderr,
            },
        )
    });
    if let Some(p) = &printer {
        for (i, j) in jobs.iter_mut().enumerate() {
            j.lines = Some(p.host(i, &j.target.name));
        }
    }
    // A bar redrawn between streamed lines would only get in their way.
    let progress = render::progress_bar(jobs.len() as u64, settings.quiet || streaming);
    let client = Client::new(ClientOptions {
        prompter: Arc::new(TtyPrompter::new(progress.clone())),
        max_handshakes: args.max_handshakes.map(|n| n as usize),
        ..ClientOptions::default()
    });
    let cancel = Cancel::new();
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watcher = {
        let (running, progress) = (running.clone(), progress.clone());
        cancel.watch_signals(move || {
            let n = running.load(std::sync::atomic::Ordering::SeqCst);
            // Not `eprintln!`: after a SIGHUP the terminal may be gone, and a write error
            // must not panic the signal task.
            progress.suspend(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "interrupted: starting no new hosts, waiting for {n} running; press Ctrl-C again to kill them"
                );
            });
        })
    };

    let started = Instant::now();
    let reports = fan_out(&client, jobs, &command, args, &cancel, &progress, &running).await;
    watcher.abort();
    progress.finish_and_clear();

    // The out-dir first: it is the durable record, and it must not be lost because stdout
    // failed (a terminal that hung up answers writes with an I/O error).
    if let Some(dir) = &args.out_dir {
        render::json::write_out_dir(dir, &reports)
            .with_context(|| format!("cannot write results to `{}`", dir.display()))?;
    }
    write_results(args.json, streaming, settings.color_stdout, &reports)?;
    if !settings.quiet {
        let mut stderr = render::stderr();
        render::human::write_summary(&mut stderr, &reports, started.elapsed())?;
    }
    Ok(if cancel.interrupted() {
        ExitStatus::Interrupted
    } else if reports.iter().all(|r| r.outcome.is_ok()) {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    })
}

/// Whether `name` is a single plain file name, so `DIR/<name>.stdout` stays inside `DIR`.
/// The inventory already refuses such host names at load; this is the last line of defence
/// before the out-dir writer joins the name onto a path.
fn is_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && std::path::Path::new(name).components().count() == 1
}

/// Writes every host's result; after streamed lines, the statuses without the output again.
fn write_results(
    json: bool,
    streamed: bool,
    color: bool,
    reports: &[HostReport],
) -> std::io::Result<()> {
    let mut stdout = render::stdout();
    if json {
        for r in reports {
            let mut line = render::json::host_line(r);
            if streamed {
                // Its lines were objects of their own already.
                line["stdout"] = serde_json::json!(null);
                line["stderr"] = serde_json::json!(null);
            }
            writeln!(stdout, "{line}")?;
        }
    } else if streamed {
        render::human::write_statuses(&mut stdout, reports, color)?;
    } else {
        render::human::write_folded(&mut stdout, reports, color)?;
    }
    stdout.flush()
}

struct Job {
    target: Target,
    timeout: Duration,
    /// Where its lines go as they come, when streaming.
    lines: Option<render::stream::HostLines>,
}

/// Runs every job, at most `forks` at once, each in its own task so handshakes use every
/// core. Returns one report per job, in job (inventory) order.
async fn fan_out(
    client: &Client,
    jobs: Vec<Job>,
    command: &RemoteCommand,
    args: &ExecArgs,
    cancel: &Cancel,
    progress: &indicatif::ProgressBar,
    running: &Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<HostReport> {
    let forks = Arc::new(Semaphore::new(args.forks as usize));
    let mut set = JoinSet::new();
    let names: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (j.target.name.clone(), j.target.endpoint()))
        .collect();
    // Hosts are admitted in inventory order: each task joins the semaphore's queue (which
    // is fair) only once the task before it has, because spawned tasks are first polled in
    // no set order. So `-f 1` goes through the hosts one by one, as listed.
    let mut turn: Option<tokio::sync::oneshot::Receiver<()>> = None;
    for (index, job) in jobs.into_iter().enumerate() {
        let (client, command, cancel, forks, progress, running) = (
            client.clone(),
            command.clone(),
            cancel.clone(),
            forks.clone(),
            progress.clone(),
            running.clone(),
        );
        let opts = ExecOptions {
            timeout: job.timeout,
            max_output: args.max_output,
        };
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
            let report = match permit {
                // Drain may have fired while we waited for the permit.
                Some(_permit) if !cancel.drain.is_cancelled() => {
                    running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let r =
                        run_host(&client, &job.target, &command, &opts, job.lines, &cancel).await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    r
                }
                _ => HostReport::new(&job.target, Outcome::NotStarted, None, Duration::ZERO),
            };
            progress.inc(1);
            (index, report)
        });
    }
    let mut reports: Vec<Option<HostReport>> = (0..names.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => reports[i] = Some(r),
            Err(e) => tracing::error!("host task failed: {e}"),
        }
    }
    reports
        .into_iter()
        .zip(names)
        .map(|(r, (name, endpoint))| {
            r.unwrap_or_else(|| HostReport {
                name,
                endpoint,
                outcome: Outcome::Internal("the host's task panicked".into()),
                connect: None,
                total: Duration::ZERO,
            })
        })
        .collect()
}

async fn run_host(
    client: &Client,
    target: &Target,
    command: &RemoteCommand,
    opts: &ExecOptions,
    lines: Option<render::stream::HostLines>,
    cancel: &Cancel,
) -> HostReport {
    let t0 = Instant::now();
    let session = match client
        .connect_unless_stopped(target, &cancel.abort, Some(&cancel.drain))
        .await
    {
        Ok(s) => s,
        // Drained while queued for a handshake slot: this host never started.
        Err(ExecError::Cancelled) if !cancel.abort.is_cancelled() => {
            return HostReport::new(target, Outcome::NotStarted, None, t0.elapsed());
        }
        Err(ExecError::Cancelled) => {
            return HostReport::new(target, Outcome::Cancelled, None, t0.elapsed());
        }
        Err(e) => return HostReport::new(target, Outcome::Unreachable(e), None, t0.elapsed()),
    };
    let connected = t0.elapsed();
    let result = match lines {
        Some(mut lines) => {
            let r = session
                .exec_streaming(command, opts, &cancel.abort, &mut lines)
                .await;
            lines.finish();
            r
        }
        None => session.exec(command, opts, &cancel.abort).await,
    };
    let outcome = match result {
        Ok(out) => Outcome::Done(out),
        Err(e) => Outcome::Lost(e),
    };
    session.close().await;
    HostReport::new(target, outcome, Some(connected), t0.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_dir_names_stay_inside_the_dir() {
        for ok in ["h01", "web01.example.com", "db_2-a"] {
            assert!(is_file_name(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "../../X", "/tmp/X", "a/b", ".hidden", "a\\b", "a\0b",
        ] {
            assert!(!is_file_name(bad), "{bad:?}");
        }
    }
}
