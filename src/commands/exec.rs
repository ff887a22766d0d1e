//! `fleet exec`: one command on every selected host, in parallel, folded output.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_remote_exec::{Client, ClientOptions, ExecOptions, RemoteCommand, Target};

use crate::args::{Cli, ExecArgs};
use crate::exit::ExitStatus;
use crate::fanout::{self, NoSession, Ran, Running};
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
        && let Some(h) = hosts.iter().find(|h| !super::is_file_name(&h.name))
    {
        anyhow::bail!(
            "host name `{}` cannot name a file in `--out-dir`",
            h.name.escape_debug()
        );
    }
    let overrides = TargetOverrides {
        connect_timeout: args.run.connect_timeout,
    };
    let mut jobs: Vec<Job> = hosts
        .iter()
        .map(|h| {
            Ok(Job {
                target: target_for(&inventory, h, overrides)?,
                timeout: args.run.timeout.unwrap_or(h.command_timeout),
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
                escape_stdout: std::io::stdout().is_terminal(),
                escape_stderr: std::io::stderr().is_terminal(),
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
        max_handshakes: args.run.max_handshakes.map(|n| n as usize),
        ..ClientOptions::default()
    });
    let cancel = Cancel::new();
    let running = Running::default();
    let watcher = fanout::watch(&cancel, &running, &progress);

    let started = Instant::now();
    let names: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (j.target.name.clone(), j.target.endpoint()))
        .collect();
    let max_output = args.max_output;
    let ran = {
        let (client, command, cancel2) = (client.clone(), Arc::new(command), cancel.clone());
        let bar = progress.clone();
        fanout::fan_out(
            jobs,
            args.run.forks as usize,
            &cancel,
            &running,
            move || bar.inc(1),
            move |job: Job| {
                let (client, command, cancel) = (client.clone(), command.clone(), cancel2.clone());
                async move {
                    let opts = ExecOptions {
                        timeout: job.timeout,
                        max_output,
                    };
                    run_host(&client, &job.target, &command, &opts, job.lines, &cancel).await
                }
            },
        )
        .await
    };
    let reports: Vec<HostReport> = ran
        .into_iter()
        .zip(names)
        .map(|(r, (name, endpoint))| {
            let outcome = match r {
                Ran::Done(report) => return report,
                Ran::NotStarted => Outcome::NotStarted,
                Ran::Panicked => Outcome::Internal("the host's task panicked".into()),
            };
            HostReport {
                name,
                endpoint,
                outcome,
                connect: None,
                total: Duration::ZERO,
            }
        })
        .collect();
    watcher.abort();
    progress.finish_and_clear();
    // Every streamed line is out before the statuses.
    if let Some(p) = &printer {
        p.close();
    }

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

/// Writes every host's result; after streamed lines, the statuses without the output again.
fn write_results(
    json: bool,
    streamed: bool,
    color: bool,
    reports: &[HostReport],
) -> std::io::Result<()> {
    // What hosts printed reaches a terminal escaped, never as its control sequences.
    let escape = std::io::stdout().is_terminal();
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
        render::human::write_statuses(&mut stdout, reports, color, escape)?;
    } else {
        render::human::write_folded(&mut stdout, reports, color, escape)?;
    }
    stdout.flush()
}

struct Job {
    target: Target,
    timeout: Duration,
    /// Where its lines go as they come, when streaming.
    lines: Option<render::stream::HostLines>,
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
    let (session, connected) = fanout::connect(client, target, cancel).await;
    let session = match session {
        Ok(s) => s,
        Err(NoSession::NotStarted) => {
            return HostReport::new(target, Outcome::NotStarted, None, t0.elapsed());
        }
        Err(NoSession::Cancelled) => {
            return HostReport::new(target, Outcome::Cancelled, None, t0.elapsed());
        }
        Err(NoSession::Unreachable(e)) => {
            return HostReport::new(target, Outcome::Unreachable(e), None, t0.elapsed());
        }
    };
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
