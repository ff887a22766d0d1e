//! Hosts for the procedure's unit tests: a lab laid out without daemons (`Lab::offline`),
//! whose hosts' commands run in this machine's own shell with the host's environment, the
//! fake `drush`/`cv` managing its sites. Faults go in between the engine and the host: a
//! command that fails, a task that panics, a controller that dies before a command is sent.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleet_inventory::Inventory;
use fleet_lab::{Lab, LabSite, SitesOptions};
use fleet_remote_exec::{
    Capture, ExecError, ExecOptions, ExecOutput, ExitStatus, RemoteCommand, Target,
};
use tokio_util::sync::CancellationToken;

use fleet_inventory::{Amount, Batches};

use crate::context::{HostJob, OnFailure};
use crate::event::{Event, Reporter};
use crate::remote::{BoxFut, Connect, Remote};
use crate::runner::UpgradeOptions;

pub(crate) const FROM: &str = "5.69.0";
pub(crate) const TO: &str = "5.70.0";

/// What goes wrong, counted over the commands sent to the faulty host (1-based; see
/// [`LocalLab::connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// The N-th command exits 1 without running.
    FailAt(usize),
    /// The N-th command panics in the host's task (a bug in fleet).
    PanicAt(usize),
    /// The controller dies just before sending the N-th command: `crashed` fires, the call
    /// never returns, and the test drops the run as a SIGKILL would end it.
    CrashAt(usize),
}

/// The offline lab and its sites.
pub(crate) struct LocalLab {
    pub(crate) lab: Lab,
    pub(crate) sites: Vec<LabSite>,
    _dir: tempfile::TempDir,
}

impl LocalLab {
    pub(crate) fn new(hosts: usize, per_host: usize) -> LocalLab {
        let dir = tempfile::tempdir().expect("lab dir");
        let lab = Lab::offline(&dir.path().join("lab"), hosts).expect("offline lab");
        let opts = SitesOptions::new(per_host, FROM);
        lab.add_sites(&opts).expect("sites");
        let sites = lab.sites(&opts);
        LocalLab {
            lab,
            sites,
            _dir: dir,
        }
    }

    /// One job per host, from the lab's own inventory.
    pub(crate) fn jobs(&self) -> Vec<HostJob> {
        let inv = Inventory::load(&self.lab.inventory_path()).expect("lab inventory");
        inv.hosts()
            .iter()
            .map(|h| HostJob {
                host: h.clone(),
                target: Target::new(h.name.clone(), "127.0.0.1", self.lab.user()),
            })
            .collect()
    }

    pub(crate) fn tarball(&self) -> PathBuf {
        self.lab.release_tarball(TO)
    }

    /// An upgrade of every job to [`TO`] in one batch, every failure tolerated (each host's
    /// end is what a test looks at), rolling back on failure.
    pub(crate) fn options(&self) -> UpgradeOptions {
        UpgradeOptions {
            tarball: self.tarball(),
            l10n: None,
            lost_translations: crate::OnLostTranslations::Refuse,
            target: TO.into(),
            batches: Batches(vec![Amount::Percent(100)]),
            max_fail: Amount::Percent(100),
            unreachable_counts: true,
            max_per: std::collections::BTreeMap::new(),
            forks: 4,
            on_failure: OnFailure::Rollback,
            step_timeout: std::time::Duration::from_secs(60),
            args: "unit test".into(),
            playbook: None,
            resume: None,
            break_lock: None,
            bake: None,
        }
    }

    /// Connections to this lab's hosts, with `fault` on the commands to host `faulty`.
    pub(crate) fn connect(&self, faulty: &str, fault: Fault) -> Arc<LocalConnect> {
        Arc::new(LocalConnect {
            hosts: self
                .lab
                .hosts()
                .iter()
                .map(|h| {
                    (
                        h.name.clone(),
                        h.root.clone(),
                        self.lab.dir().join("home").join(&h.name),
                    )
                })
                .collect(),
            faulty: faulty.to_owned(),
            fault,
            sent: Arc::new(AtomicUsize::new(0)),
            log: Arc::new(Mutex::new(Vec::new())),
            crashed: CancellationToken::new(),
        })
    }

    /// The fakes' call log of `host`: one JSON object per drush/cv call.
    pub(crate) fn calls(&self, host: &str) -> Vec<serde_json::Value> {
        let root = &self.lab.host(host).expect("host").root;
        std::fs::read_to_string(root.join("fake-civi/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("calls.log line"))
            .collect()
    }
}

pub(crate) struct LocalConnect {
    hosts: Vec<(String, PathBuf, PathBuf)>,
    faulty: String,
    fault: Fault,
    /// Commands sent to the faulty host so far.
    pub(crate) sent: Arc<AtomicUsize>,
    /// The scripts sent to the faulty host, in order.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
    /// Fires when a [`Fault::CrashAt`] is reached.
    pub(crate) crashed: CancellationToken,
}

impl Connect for LocalConnect {
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        _cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<Box<dyn Remote>, ExecError>> {
        Box::pin(async move {
            let (name, root, home) = self
                .hosts
                .iter()
                .find(|(n, _, _)| *n == target.name)
                .cloned()
                .ok_or_else(|| ExecError::Connect {
                    endpoint: target.name.clone(),
                    source: std::io::Error::other("no such lab host"),
                })?;
            let fault = if name == self.faulty {
                self.fault
            } else {
                Fault::None
            };
            let counted = name == self.faulty;
            Ok(Box::new(LocalHost {
                name,
                root,
                home,
                fault,
                counted,
                sent: self.sent.clone(),
                log: self.log.clone(),
                crashed: self.crashed.clone(),
            }) as Box<dyn Remote>)
        })
    }
}

struct LocalHost {
    name: String,
    root: PathBuf,
    home: PathBuf,
    fault: Fault,
    counted: bool,
    sent: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    crashed: CancellationToken,
}

impl LocalHost {
    async fn run(
        &self,
        script: &str,
        opts: &ExecOptions,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, ExecError> {
        let start = Instant::now();
        if !self.counted {
            return self.spawn(script, opts, cancel, start).await;
        }
        let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(script.to_owned());
        match self.fault {
            Fault::FailAt(at) if at == n => {
                let mut stderr = Capture::new(opts.max_output);
                stderr.push(b"injected failure\n");
                return Ok(ExecOutput {
                    status: ExitStatus::Code(1),
                    stdout: Capture::new(opts.max_output),
                    stderr,
                    duration: start.elapsed(),
                });
            }
            Fault::PanicAt(at) if at == n => panic!("injected panic at command {n}"),
            Fault::CrashAt(at) if at <= n => {
                self.crashed.cancel();
                std::future::pending::<()>().await;
            }
            _ => {}
        }
        self.spawn(script, opts, cancel, start).await
    }

    async fn spawn(
        &self,
        script: &str,
        opts: &ExecOptions,
        cancel: &CancellationToken,
        start: Instant,
    ) -> Result<ExecOutput, ExecError> {
        let mut c = tokio::process::Command::new("bash");
        c.arg("-c")
            .arg(script)
            .env("FLEET_ROOT", &self.root)
            .env("FLEET_HOST", &self.name)
            .env("HOME", &self.home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = c.spawn().map_err(|e| ExecError::Protocol {
            endpoint: self.name.clone(),
            source: Box::new(e),
        })?;
        let pgid = child.id();
        let kill = || {
            if let Some(p) = pgid {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{p}")])
                    .status();
            }
        };
        let status = tokio::select! {
            r = child.wait_with_output() => {
                let o = r.map_err(|e| ExecError::Protocol { endpoint: self.name.clone(), source: Box::new(e) })?;
                let mut stdout = Capture::new(opts.max_output);
                stdout.push(&o.stdout);
                let mut stderr = Capture::new(opts.max_output);
                stderr.push(&o.stderr);
                use std::os::unix::process::ExitStatusExt;
                let status = match (o.status.code(), o.status.signal()) {
                    (Some(c), _) => ExitStatus::Code(u32::try_from(c).unwrap_or(255)),
                    (None, Some(s)) => ExitStatus::Signal { name: format!("{s}"), core_dumped: o.status.core_dumped() },
                    (None, None) => ExitStatus::Code(255),
                };
                return Ok(ExecOutput { status, stdout, stderr, duration: start.elapsed() });
            }
            () = tokio::time::sleep(opts.timeout) => ExitStatus::TimedOut { killed: true },
            () = cancel.cancelled() => ExitStatus::Cancelled { killed: true },
        };
        kill();
        Ok(ExecOutput {
            status,
            stdout: Capture::new(opts.max_output),
            stderr: Capture::new(opts.max_output),
            duration: start.elapsed(),
        })
    }
}

impl Remote for LocalHost {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        opts: &'a ExecOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<ExecOutput, ExecError>> {
        Box::pin(self.run(cmd.script(), opts, cancel))
    }

    fn upload<'a>(
        &'a self,
        local: &'a Path,
        dest: &'a str,
        mode: u32,
        env: &'a [(&'a str, &'a str)],
        opts: &'a ExecOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<ExecOutput, ExecError>> {
        // Through the shell like any command (so faults count it), atomically as the SSH
        // upload does: a temp file, then a rename.
        let exports: String = env
            .iter()
            .map(|(k, v)| format!("export {k}={}; ", fleet_remote_exec::quote(v)))
            .collect();
        let script = format!(
            "{exports}cp {src} {dest}.part && chmod {mode:o} {dest}.part && mv {dest}.part {dest}",
            src = fleet_remote_exec::quote(&local.display().to_string()),
            dest = fleet_remote_exec::quote(dest),
        );
        Box::pin(async move { self.run(&script, opts, cancel).await })
    }

    fn close(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

/// The panics the faults inject are expected: not printed (with a backtrace each, they would
/// cost more than the runs). Every other panic, a failed assertion first, still is.
pub(crate) fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("injected"));
        if !injected {
            default(info);
        }
    }));
}

/// A reporter that keeps nothing.
pub(crate) struct Quiet;

impl Reporter for Quiet {
    fn on_event(&self, _: &Event) {}
}

/// Every `data.*` file of the lab's fake databases, with its content: a site's data.
pub(crate) fn data_of(site: &LabSite) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for db in [&site.civi_db, &site.cms_db] {
        let dir = site.db_dir(db);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("data.") {
                    out.push((
                        format!("{db}/{name}"),
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}
