//! What `fleet copy` and `fleet fetch` share: the run over the hosts (sessions, progress in
//! hosts and bytes, interrupts), one report per host, and its folded text or JSON.

use std::collections::HashMap;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_inventory::compact_names;
use fleet_remote_exec::{Client, ClientOptions, ExecError, Session, Target};
use serde_json::json;

use crate::args::{Cli, FanOutArgs, Selection};
use crate::exit::ExitStatus;
use crate::fanout::{self, NoSession, Ran, Running};
use crate::prompt::TtyPrompter;
use crate::render::{self, Status};
use crate::signal::Cancel;
use crate::targets::{TargetOverrides, target_for};

/// Which way the files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    /// To the hosts.
    Copy,
    /// From the hosts.
    Fetch,
}

impl Way {
    /// What `written` means.
    fn verb(self) -> &'static str {
        match self {
            Way::Copy => "copied",
            Way::Fetch => "fetched",
        }
    }

    /// The file a failure is about: the one on the host.
    fn subject(self, f: &FileResult) -> &str {
        match self {
            Way::Copy => &f.path,
            Way::Fetch => &f.source,
        }
    }
}

/// One host of a transfer run: where to reach it and how long each file may take.
pub(crate) struct HostJob {
    pub(crate) target: Target,
    pub(crate) timeout: Duration,
}

/// What happened to one file on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileState {
    /// Sent and checked.
    Written,
    /// Already there, the same (not sent).
    Unchanged,
    /// Its content was there; its mode or owner was set.
    Fixed,
    /// Not done, and why.
    Failed(String),
}

impl FileState {
    fn as_str(&self) -> &'static str {
        match self {
            FileState::Written => "written",
            FileState::Unchanged => "unchanged",
            FileState::Fixed => "fixed",
            FileState::Failed(_) => "failed",
        }
    }
}

/// One file's result: where it came from and went (on the host for copy, local for fetch)
/// and the bytes moved.
#[derive(Debug, Clone)]
pub(crate) struct FileResult {
    pub(crate) source: String,
    pub(crate) path: String,
    pub(crate) state: FileState,
    pub(crate) bytes: u64,
}

/// How a host's part ended.
#[derive(Debug)]
pub(crate) enum HostEnd {
    /// Every file was tried; their results say which failed.
    Files(Vec<FileResult>),
    /// Nothing was tried past this: the reason (a missing destination directory, a lost
    /// connection), with the files done before it.
    Stopped {
        reason: String,
        kind: &'static str,
        files: Vec<FileResult>,
    },
    Unreachable(ExecError),
    Cancelled,
    NotStarted,
    Internal(String),
}

/// One host's report.
#[derive(Debug)]
pub(crate) struct TransferReport {
    pub(crate) name: String,
    pub(crate) endpoint: String,
    pub(crate) end: HostEnd,
    pub(crate) total: Duration,
}

impl TransferReport {
    fn files(&self) -> &[FileResult] {
        match &self.end {
            HostEnd::Files(f) | HostEnd::Stopped { files: f, .. } => f,
            _ => &[],
        }
    }

    pub(crate) fn status(&self) -> Status {
        match &self.end {
            HostEnd::Files(f) if f.iter().all(|f| !matches!(f.state, FileState::Failed(_))) => {
                Status::Ok
            }
            HostEnd::Files(_) | HostEnd::Internal(_) => Status::Failed,
            HostEnd::Stopped { kind, .. } if *kind == "timeout" => Status::Timeout,
            HostEnd::Stopped { kind, .. } if *kind == "cancelled" => Status::Cancelled,
            HostEnd::Stopped { .. } => Status::Failed,
            HostEnd::Unreachable(_) => Status::Unreachable,
            HostEnd::Cancelled => Status::Cancelled,
            HostEnd::NotStarted => Status::Skipped,
        }
    }

    fn count(&self, state: &str) -> usize {
        self.files()
            .iter()
            .filter(|f| f.state.as_str() == state)
            .count()
    }

    fn bytes(&self) -> u64 {
        self.files().iter().map(|f| f.bytes).sum()
    }

    /// The one line that says what happened, the same for hosts that fold together.
    fn line(&self, way: Way) -> String {
        let failed: Vec<String> = self
            .files()
            .iter()
            .filter_map(|f| match &f.state {
                FileState::Failed(why) => Some(format!("{}: {why}", way.subject(f))),
                _ => None,
            })
            .collect();
        let mut parts = Vec::new();
        for (state, word) in [
            ("written", way.verb()),
            ("fixed", "mode/owner set"),
            ("unchanged", "unchanged"),
        ] {
            let n = self.count(state);
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        let done = if parts.is_empty() {
            "nothing to do (no files)".to_owned()
        } else {
            parts.join(", ")
        };
        match &self.end {
            HostEnd::Files(_) if failed.is_empty() => done,
            HostEnd::Files(_) => format!("{} failed: {}", failed.len(), failed.join("; ")),
            HostEnd::Stopped { reason, .. } => reason.clone(),
            HostEnd::Unreachable(e) => format!("unreachable: {}", render::error_chain(e)),
            HostEnd::Cancelled => "cancelled before it started".into(),
            HostEnd::NotStarted => "not started: interrupted".into(),
            HostEnd::Internal(why) => format!("internal error: {why}"),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let (error, kind) = match &self.end {
            HostEnd::Stopped { reason, kind, .. } => (Some(reason.clone()), Some(*kind)),
            HostEnd::Unreachable(e) => (Some(render::error_chain(e)), Some(e.kind())),
            HostEnd::Files(_) => (None, None),
            other => (
                Some(match other {
                    HostEnd::Cancelled => "cancelled before it started".to_owned(),
                    HostEnd::NotStarted => "not started: interrupted".to_owned(),
                    HostEnd::Internal(w) => format!("internal error: {w}"),
                    _ => String::new(),
                }),
                None,
            ),
        };
        let files: Vec<serde_json::Value> = self
            .files()
            .iter()
            .map(|f| {
                json!({
                    "source": f.source,
                    "path": f.path,
                    "state": f.state.as_str(),
                    "bytes": f.bytes,
                    "error": match &f.state { FileState::Failed(w) => Some(w), _ => None },
                })
            })
            .collect();
        json!({
            "host": self.name,
            "endpoint": self.endpoint,
            "status": self.status().as_str(),
            "error": error,
            "error_kind": kind,
            "written": self.count("written"),
            "fixed": self.count("fixed"),
            "unchanged": self.count("unchanged"),
            "failed": self.count("failed"),
            "bytes": self.bytes(),
            "duration_ms": self.total.as_millis() as u64,
            "files": files,
        })
    }
}

/// The hosts of a transfer, their targets, and the run's shared parts.
pub(crate) struct TransferRun {
    pub(crate) jobs: Vec<HostJob>,
    pub(crate) client: Client,
    pub(crate) cancel: Cancel,
    pub(crate) hosts_bar: indicatif::ProgressBar,
    pub(crate) bytes_bar: indicatif::ProgressBar,
    _bars: indicatif::MultiProgress,
    forks: usize,
}

impl TransferRun {
    /// Loads the inventory and selection, and prepares the client and progress bars;
    /// `bytes` is what each host is to get, when known. `check` refuses hosts before any connects.
    pub(crate) fn new(
        cli: &Cli,
        selection: &Selection,
        run: &FanOutArgs,
        bytes: Option<u64>,
        check: impl Fn(&fleet_inventory::Host) -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let settings = crate::settings::Settings::of(cli);
        let inventory = super::load_inventory(cli)?;
        let hosts = super::select(&inventory, selection)?;
        let overrides = TargetOverrides {
            connect_timeout: run.connect_timeout,
        };
        let jobs: Vec<HostJob> = hosts
            .iter()
            .map(|h| {
                check(h)?;
                Ok(HostJob {
                    target: target_for(&inventory, h, overrides)?,
                    timeout: run.timeout.unwrap_or(h.command_timeout),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let bytes = bytes.map(|b| b * jobs.len() as u64);
        let bars = indicatif::MultiProgress::new();
        let hidden = settings.quiet
            || !std::io::stderr().is_terminal()
            || std::env::var_os("FLEET_NO_PROGRESS").is_some();
        let (hosts_bar, bytes_bar) = if hidden {
            (
                indicatif::ProgressBar::hidden(),
                indicatif::ProgressBar::hidden(),
            )
        } else {
            let style = |t: &str| indicatif::ProgressStyle::with_template(t).ok();
            let h = bars.add(indicatif::ProgressBar::new(jobs.len() as u64));
            if let Some(s) = style("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} hosts") {
                h.set_style(s);
            }
            let b = bars.add(match bytes {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::no_length(),
            });
            let t = if bytes.is_some() {
                "  {binary_bytes_per_sec:>12} {bar:30} {binary_bytes}/{binary_total_bytes}"
            } else {
                "  {binary_bytes_per_sec:>12} {binary_bytes}"
            };
            if let Some(s) = style(t) {
                b.set_style(s);
            }
            h.enable_steady_tick(Duration::from_millis(120));
            (h, b)
        };
        let client = Client::new(ClientOptions {
            prompter: Arc::new(TtyPrompter::new(hosts_bar.clone())),
            max_handshakes: run.max_handshakes.map(|n| n as usize),
            ..ClientOptions::default()
        });
        Ok(Self {
            jobs,
            client,
            cancel: Cancel::new(),
            hosts_bar,
            bytes_bar,
            _bars: bars,
            forks: run.forks as usize,
        })
    }

    /// Runs `work` on every host's session, `forks` at a time; one report per host, in
    /// inventory order.
    pub(crate) async fn run<F, Fut>(self, work: F) -> (Vec<TransferReport>, Cancel, Duration)
    where
        F: Fn(Session, Duration, Cancel) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = HostEnd> + Send,
    {
        let running = Running::default();
        let watcher = fanout::watch(&self.cancel, &running, &self.hosts_bar);
        let names: Vec<(String, String)> = self
            .jobs
            .iter()
            .map(|j| (j.target.name.clone(), j.target.endpoint()))
            .collect();
        let started = Instant::now();
        let (client, cancel) = (self.client.clone(), self.cancel.clone());
        let bar = self.hosts_bar.clone();
        let ran = fanout::fan_out(
            self.jobs,
            self.forks,
            &self.cancel,
            &running,
            move || bar.inc(1),
            move |job: HostJob| {
                let (client, cancel, work) = (client.clone(), cancel.clone(), work.clone());
                async move {
                    let t0 = Instant::now();
                    let (session, _) = fanout::connect(&client, &job.target, &cancel).await;
                    let end = match session {
                        Ok(s) => {
                            let end = work(s.clone(), job.timeout, cancel.clone()).await;
                            s.close().await;
                            end
                        }
                        Err(NoSession::NotStarted) => HostEnd::NotStarted,
                        Err(NoSession::Cancelled) => HostEnd::Cancelled,
                        Err(NoSession::Unreachable(e)) => HostEnd::Unreachable(e),
                    };
                    (end, t0.elapsed())
                }
            },
        )
        .await;
        watcher.abort();
        self.hosts_bar.finish_and_clear();
        self.bytes_bar.finish_and_clear();
        let reports = ran
            .into_iter()
            .zip(names)
            .map(|(r, (name, endpoint))| {
                let (end, total) = match r {
                    Ran::Done(done) => done,
                    Ran::NotStarted => (HostEnd::NotStarted, Duration::ZERO),
                    Ran::Panicked => (
                        HostEnd::Internal("the host's task panicked".into()),
                        Duration::ZERO,
                    ),
                };
                TransferReport {
                    name,
                    endpoint,
                    end,
                    total,
                }
            })
            .collect();
        (reports, self.cancel, started.elapsed())
    }
}

/// Prints the reports (folded text, or one JSON object per host), the summary line on
/// stderr, and returns the exit status.
pub(crate) fn finish(
    cli: &Cli,
    json: bool,
    way: Way,
    reports: &[TransferReport],
    cancel: &Cancel,
    elapsed: Duration,
) -> anyhow::Result<ExitStatus> {
    let settings = crate::settings::Settings::of(cli);
    let mut stdout = render::stdout();
    if json {
        for r in reports {
            writeln!(stdout, "{}", r.json())?;
        }
    } else {
        write_folded(
            &mut stdout,
            reports,
            way,
            settings.color_stdout,
            std::io::stdout().is_terminal(),
        )?;
    }
    stdout.flush()?;
    if !settings.quiet {
        let statuses: Vec<(&str, Status)> = reports
            .iter()
            .map(|r| (r.name.as_str(), r.status()))
            .collect();
        let bytes: u64 = reports.iter().map(TransferReport::bytes).sum();
        let mut stderr = render::stderr();
        render::human::write_summary_of(
            &mut stderr,
            &statuses,
            elapsed,
            &format!(", {}", human_bytes(bytes)),
        )?;
    }
    Ok(if cancel.interrupted() {
        ExitStatus::Interrupted
    } else if reports.iter().all(|r| r.status() == Status::Ok) {
        ExitStatus::Success
    } else {
        ExitStatus::HostsFailed
    })
}

/// One line per distinct result, hosts folded into ranges: successes first, in inventory
/// order of their first host.
fn write_folded(
    w: &mut dyn Write,
    reports: &[TransferReport],
    way: Way,
    color: bool,
    escape: bool,
) -> std::io::Result<()> {
    let mut blocks: Vec<(Status, String, Vec<&str>)> = Vec::new();
    let mut index: HashMap<(Status, String), usize> = HashMap::new();
    for r in reports {
        let key = (r.status(), r.line(way));
        match index.get(&key) {
            Some(&i) => blocks[i].2.push(&r.name),
            None => {
                index.insert(key.clone(), blocks.len());
                blocks.push((key.0, key.1, vec![&r.name]));
            }
        }
    }
    blocks.sort_by_key(|b| b.0 != Status::Ok);
    for (status, line, hosts) in blocks {
        let count = if hosts.len() > 1 {
            format!(" ({} hosts)", hosts.len())
        } else {
            String::new()
        };
        let text = format!("==> {}{count}: {line}", compact_names(&hosts));
        let code = if status == Status::Ok { "1;32" } else { "1;31" };
        // The reasons hold hosts' words: on a terminal they cannot drive it.
        let text = if escape { render::escaped(&text) } else { text };
        if color {
            writeln!(w, "\x1b[{code}m{text}\x1b[0m")?;
        } else {
            writeln!(w, "{text}")?;
        }
    }
    Ok(())
}

/// `30.0 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The reason of a transport error for a host's report, and its kind.
pub(crate) fn stopped(e: &ExecError, files: Vec<FileResult>) -> HostEnd {
    HostEnd::Stopped {
        reason: render::error_chain(e),
        kind: e.kind(),
        files,
    }
}

/// The last non-empty line of a host's stderr: its reason for a failed file.
pub(crate) fn reason(out: &fleet_remote_exec::ExecOutput) -> String {
    let err = out.stderr.to_string_lossy();
    let last = err
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    if last.is_empty() {
        out.status.to_string()
    } else {
        format!("{}: {last}", out.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_read_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(30 << 20), "30.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn hosts_fold_by_what_happened() {
        let files = |states: &[FileState]| {
            states
                .iter()
                .enumerate()
                .map(|(i, s)| FileResult {
                    source: format!("f{i}"),
                    path: format!("/d/f{i}"),
                    state: s.clone(),
                    bytes: 10,
                })
                .collect::<Vec<_>>()
        };
        let report = |name: &str, end| TransferReport {
            name: name.into(),
            endpoint: "e".into(),
            end,
            total: Duration::ZERO,
        };
        let reports = [
            report(
                "h1",
                HostEnd::Files(files(&[FileState::Written, FileState::Unchanged])),
            ),
            report(
                "h2",
                HostEnd::Files(files(&[FileState::Failed("disk full".into())])),
            ),
            report(
                "h3",
                HostEnd::Files(files(&[FileState::Written, FileState::Unchanged])),
            ),
            report("h4", HostEnd::NotStarted),
        ];
        let mut out = Vec::new();
        write_folded(&mut out, &reports, Way::Copy, false, false).unwrap();
        insta::assert_snapshot!(String::from_utf8(out).unwrap(), @r"
        ==> h[1,3] (2 hosts): 1 copied, 1 unchanged
        ==> h2: 1 failed: /d/f0: disk full
        ==> h4: not started: interrupted
        ");
        assert_eq!(reports[1].json()["status"], "failed");
        assert_eq!(reports[1].json()["files"][0]["error"], "disk full");
        assert_eq!(reports[0].json()["bytes"], 20);
    }
}
