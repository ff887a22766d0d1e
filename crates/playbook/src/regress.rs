//! Regressions found by an adversarial review of the engine, each a scenario the sweeps do
//! not reach: faults by step name (`Ruled`: fail, crash, panic or delay the N-th command of a
//! step on a host, or make a host unreachable), then what the hosts and the journal say.

#![allow(clippy::print_stderr)] // what the tests saw, printed for a failing one

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_remote_exec::{ExecError, ExecOptions, ExecOutput, RemoteCommand, Target};
use tokio_util::sync::CancellationToken;

use crate::context::Cancel;
use crate::event::Reporter;
use crate::journal::Journal;
use crate::remote::{BoxFut, Connect, Remote};
use crate::restore::{RestoreMode, needs_restore};
use crate::runner::{UpgradeOptions, run_upgrade_on};
use crate::testkit::{Fault, LocalConnect, LocalLab, Quiet};

mod preflight;

#[derive(Clone, Debug)]
pub(crate) enum Act {
    Fail,
    Crash,
    Panic,
    Delay(u64),
    DelayPanic(u64),
    /// Writes the file (a fake database's state) before the command runs.
    Write(std::path::PathBuf, String),
}

/// (host, step name, nth occurrence (1-based), action)
type Rule = (String, String, usize, Act);

pub(crate) struct Ruled {
    inner: Arc<LocalConnect>,
    journal: Arc<Journal>,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<BTreeMap<(String, String), usize>>>,
    unreachable: Vec<String>,
    pub(crate) crashed: CancellationToken,
}

struct RuledHost {
    host: String,
    inner: Box<dyn Remote>,
    journal: Arc<Journal>,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<BTreeMap<(String, String), usize>>>,
    crashed: CancellationToken,
}

impl Connect for Ruled {
    fn connect<'a>(
        &'a self,
        target: &'a Target,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<Box<dyn Remote>, ExecError>> {
        Box::pin(async move {
            if self.unreachable.contains(&target.name) {
                return Err(ExecError::Connect {
                    endpoint: target.name.clone(),
                    source: std::io::Error::other("connection refused (injected)"),
                });
            }
            let inner = self.inner.connect(target, cancel).await?;
            Ok(Box::new(RuledHost {
                host: target.name.clone(),
                inner,
                journal: self.journal.clone(),
                rules: self.rules.clone(),
                seen: self.seen.clone(),
                crashed: self.crashed.clone(),
            }) as Box<dyn Remote>)
        })
    }
}

impl RuledHost {
    fn step_of(&self, script: &str) -> String {
        let Some(tag) = script
            .split("FLEET_RUN_STEP=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .map(|t| t.trim_matches('\'').to_owned())
        else {
            return "untagged".into();
        };
        let mut it = tag.rsplitn(3, '/');
        let id: i64 = it.next().and_then(|i| i.parse().ok()).unwrap_or(-1);
        let _host = it.next();
        let run = it.next().unwrap_or("");
        self.journal
            .steps(run)
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.id == id)
            .map_or("?".into(), |s| s.step.to_string())
    }
    async fn act(&self, step: &str) -> Option<ExecOutput> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let c = seen
                .entry((self.host.clone(), step.to_owned()))
                .or_default();
            *c += 1;
            *c
        };
        let rule = self
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|(h, s, k, _)| *h == self.host && s == step && *k == n)
            .cloned();
        match rule.map(|r| r.3) {
            Some(Act::Fail) => {
                let mut stderr = fleet_remote_exec::Capture::new(1024);
                stderr.push(b"injected failure\n");
                Some(ExecOutput {
                    status: fleet_remote_exec::ExitStatus::Code(1),
                    stdout: fleet_remote_exec::Capture::new(1024),
                    stderr,
                    duration: Duration::ZERO,
                })
            }
            Some(Act::Crash) => {
                self.crashed.cancel();
                std::future::pending::<()>().await;
                None
            }
            Some(Act::Panic) => panic!("injected panic at {step}"),
            Some(Act::DelayPanic(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                panic!("injected panic after delay at {step}")
            }
            Some(Act::Delay(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                None
            }
            Some(Act::Write(path, text)) => {
                std::fs::write(&path, format!("{text}\n")).expect("write the injected state");
                None
            }
            None => None,
        }
    }
}

impl Remote for RuledHost {
    fn exec<'a>(
        &'a self,
        cmd: &'a RemoteCommand,
        opts: &'a ExecOptions,
        cancel: &'a CancellationToken,
    ) -> BoxFut<'a, Result<ExecOutput, ExecError>> {
        Box::pin(async move {
            let step = self.step_of(cmd.script());
            if let Some(o) = self.act(&step).await {
                return Ok(o);
            }
            self.inner.exec(cmd, opts, cancel).await
        })
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
        self.inner.upload(local, dest, mode, env, opts, cancel)
    }
    fn close(&self) -> BoxFut<'_, ()> {
        self.inner.close()
    }
}

fn options(lab: &LocalLab) -> UpgradeOptions {
    lab.options()
}

fn ruled(
    lab: &LocalLab,
    journal: &Arc<Journal>,
    rules: Vec<Rule>,
    unreachable: &[&str],
) -> Arc<Ruled> {
    Arc::new(Ruled {
        inner: lab.connect("none", Fault::None),
        journal: journal.clone(),
        rules: Arc::new(Mutex::new(rules)),
        seen: Arc::new(Mutex::new(BTreeMap::new())),
        unreachable: unreachable.iter().map(|s| s.to_string()).collect(),
        crashed: CancellationToken::new(),
    })
}

fn quiet() -> Arc<dyn Reporter> {
    Arc::new(Quiet)
}

const HOST: &str = "h02";

fn setup() -> (LocalLab, Arc<Journal>, tempfile::TempDir) {
    let mut lab = LocalLab::new(2, 2);
    lab.sites.retain(|s| s.host == HOST);
    let state = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(state.path()).unwrap());
    (lab, journal, state)
}

fn jobs(lab: &LocalLab) -> Vec<crate::context::HostJob> {
    let mut j = lab.jobs();
    j.retain(|j| j.host.name == HOST);
    j
}

/// `fleet upgrade` of the swept host through `connect`, until `cancel`.
async fn upgrade(
    lab: &LocalLab,
    journal: &Arc<Journal>,
    connect: &Arc<dyn Connect>,
    cancel: &Cancel,
) -> crate::outcome::RunReport {
    run_upgrade_on(
        connect,
        jobs(lab),
        &options(lab),
        journal,
        &quiet(),
        None,
        cancel,
    )
    .await
    .expect("the run starts")
}

/// `fleet recover` of `run` on the swept host, through `connect`.
async fn recover(
    lab: &LocalLab,
    journal: &Arc<Journal>,
    connect: &Arc<dyn Connect>,
    run: &crate::journal::RunRow,
) -> Result<crate::outcome::RunReport, crate::error::PlaybookError> {
    crate::resume::recover_run_on(
        connect,
        &jobs(lab),
        journal,
        &quiet(),
        &Cancel::new(),
        run,
        None,
    )
    .await
}

/// `fleet resume` of `run` on the swept host, through `connect`.
async fn resume(
    lab: &LocalLab,
    journal: &Arc<Journal>,
    connect: &Arc<dyn Connect>,
    run: &crate::journal::RunRow,
) -> Result<crate::outcome::RunReport, crate::error::PlaybookError> {
    crate::resume::resume_run_on(
        connect,
        &jobs(lab),
        journal,
        &quiet(),
        &Cancel::new(),
        run,
        &Default::default(),
    )
    .await
}

/// Crashes the controller at `step` (SIGKILL-like), returns the run row.
async fn crash_at(lab: &LocalLab, journal: &Arc<Journal>, step: &str) -> crate::journal::RunRow {
    let c = ruled(
        lab,
        journal,
        vec![(HOST.into(), step.into(), 1, Act::Crash)],
        &[],
    );
    let crashed = c.crashed.clone();
    let connect: Arc<dyn Connect> = c;
    let (opts, reporter, cancel) = (options(lab), quiet(), Cancel::new());
    tokio::select! {
        r = run_upgrade_on(&connect, jobs(lab), &opts, journal, &reporter, None, &cancel) => panic!("ended before crash: {:?}", r.map(|r| r.sites)),
        () = crashed.cancelled() => {}
    }
    journal.runs().unwrap().into_iter().next().unwrap()
}

#[allow(clippy::print_stderr)]
fn dump(lab: &LocalLab, journal: &Journal, run: &str, what: &str) {
    eprintln!("==== {what}");
    eprintln!("run state: {}", journal.run(run).unwrap().unwrap().state);
    for r in journal.sites(run).unwrap() {
        eprintln!(
            "journal {}/{}: status={} step={:?} in_maintenance={} needs_recover={} detail={:?}",
            r.host,
            r.site,
            r.status,
            r.step,
            r.in_maintenance,
            needs_restore(&r, RestoreMode::Recover),
            r.detail
        );
    }
    for s in &lab.sites {
        eprintln!(
            "host {}/{}: code={} db={} maintenance={}",
            s.host,
            s.name,
            s.code_version(),
            s.db_version(),
            s.maintenance()
        );
    }
}

/// `fleet resume` while the host is still unreachable: the journal forgets the site is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_the_host_still_unreachable_keeps_the_sites_down_in_the_journal() {
    let (lab, journal, _s) = setup();
    let prior: Vec<String> = lab.sites.iter().map(|s| s.maintenance()).collect();
    let run = crash_at(&lab, &journal, "unpack").await;
    dump(&lab, &journal, &run.id, "after crash");
    let c: Arc<dyn Connect> = ruled(&lab, &journal, vec![], &[HOST]);
    let _ = resume(&lab, &journal, &c, &run).await;
    dump(
        &lab,
        &journal,
        &run.id,
        "after resume with host unreachable",
    );
    let rows = journal.sites(&run.id).unwrap();
    for (s, p) in lab.sites.iter().zip(&prior) {
        let row = rows.iter().find(|r| r.site == s.name).unwrap();
        if s.maintenance() != *p || s.code_version() != s.db_version() {
            assert!(
                needs_restore(row, RestoreMode::Recover),
                "{}: down/half-upgraded on the host (maintenance {}, code `{}`), but journal says {} in_maintenance={}: `fleet recover` will not find it",
                s.name,
                s.maintenance(),
                s.code_version(),
                row.status,
                row.in_maintenance
            );
        }
    }
}

/// `fleet resume` whose recovery of a site fails only at maintenance-restore: the re-run
/// records prior maintenance = 1 and leaves the site down for good, reported as upgraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_recovery_that_failed_part_way_never_takes_maintenance_for_the_prior_state()
{
    let (lab, journal, _s) = setup();
    let prior: Vec<String> = lab.sites.iter().map(|s| s.maintenance()).collect();
    eprintln!("prior maintenance: {prior:?}");
    let run = crash_at(&lab, &journal, "unpack").await;
    dump(&lab, &journal, &run.id, "after crash");
    let c: Arc<dyn Connect> = ruled(
        &lab,
        &journal,
        vec![(HOST.into(), "maintenance-restore".into(), 1, Act::Fail)],
        &[],
    );
    let rep = resume(&lab, &journal, &c, &run).await.unwrap();
    for r in &rep.sites {
        eprintln!("report {}/{}: {}", r.host, r.site, r.outcome);
    }
    dump(&lab, &journal, &run.id, "after resume");
    for a in journal.artifacts(&run.id).unwrap() {
        if a.kind == crate::vocab::ArtifactKind::PriorMaintenance {
            eprintln!("artifact {} {} = {}", a.unit, a.kind, a.value);
        }
    }
    // The site recovery could not bring up is still down, and the journal says so (not
    // "upgraded, in maintenance as before"), with its true prior state kept...
    let rows = journal.sites(&run.id).unwrap();
    for s in &lab.sites {
        let row = rows.iter().find(|r| r.site == s.name).unwrap();
        if s.maintenance() == "1" {
            assert!(
                needs_restore(row, RestoreMode::Recover),
                "{}: down on the host, journal says {}",
                s.name,
                row.status
            );
        }
        assert_ne!(row.status, crate::vocab::SiteStatus::Upgraded, "{}", s.name);
    }
    // ... so that `fleet recover` brings it back as it was.
    let run = journal.run(&run.id).unwrap().unwrap();
    let healthy: Arc<dyn Connect> = ruled(&lab, &journal, vec![], &[]);
    recover(&lab, &journal, &healthy, &run).await.unwrap();
    for (s, p) in lab.sites.iter().zip(&prior) {
        assert_eq!(
            s.maintenance(),
            *p,
            "{}: maintenance not as before the run",
            s.name
        );
    }
}

/// Mixed binaries: a run written by the previous release (times in seconds) after the
/// journal was migrated is invisible to `later_runs`.
#[test]
fn seconds_written_by_the_previous_release_still_order_runs() {
    let state = tempfile::tempdir().unwrap();
    let journal = Journal::open(state.path()).unwrap();
    let info = crate::journal::RunInfo {
        procedure: "civicrm-d7".into(),
        target: "5.70.0".into(),
        args: "x".into(),
    };
    let r1 = journal.create_run(&info).unwrap();
    journal
        .site(
            &r1,
            "web01",
            "main",
            &crate::journal::SiteUpdate {
                status: Some(crate::vocab::SiteStatus::Upgraded),
                from_version: Some("5.69.0"),
                to_version: Some("5.70.0"),
                ..Default::default()
            },
        )
        .unwrap();
    // The old binary: same SQL as before, `started` in seconds.
    let conn = rusqlite::Connection::open(state.path().join("journal.sqlite")).unwrap();
    let secs = crate::journal::unix_now() + 3600;
    conn.execute("INSERT INTO runs (id, started, state, operator, controller, pid, procedure, target, args) VALUES ('20991231-000000-old1', ?1, 'finished', 'op', 'c', 1, 'civicrm-d7', '5.70.0', 'old')", [secs]).unwrap();
    conn.execute("INSERT INTO sites (run, host, site, status, from_version, to_version, in_maintenance, updated) VALUES ('20991231-000000-old1', 'web01', 'main', 'upgraded', '5.70.0', '5.70.0', 0, ?1)", [secs]).unwrap();
    let later = crate::restore::later_runs(&journal, &r1, "web01", "main").unwrap();
    let runs = journal.runs().unwrap();
    eprintln!(
        "runs newest first: {:?}",
        runs.iter()
            .map(|r| (&r.id, crate::journal::format_time(r.started_ms)))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        later,
        vec!["20991231-000000-old1".to_owned()],
        "a later run by the old binary is not seen"
    );
}

/// A host whose task panics before touching anything, while another host of the batch has
/// a site of the same name mid-step: the panicked host's untouched site is reported and
/// journaled as rolled back, from the other host's report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_host_takes_only_its_own_sites_recovery_reports() {
    let lab = LocalLab::new(2, 2);
    let state = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(state.path()).unwrap());
    let rules = vec![
        (
            "h01".to_owned(),
            "preflight".to_owned(),
            1,
            Act::Delay(2000),
        ),
        ("h01".to_owned(), "lock".to_owned(), 1, Act::Panic),
        (
            "h02".to_owned(),
            "upgrade-db".to_owned(),
            1,
            Act::Delay(6000),
        ),
    ];
    let c: Arc<dyn Connect> = ruled(&lab, &journal, rules, &[]);
    crate::testkit::quiet_injected_panics();
    let rep = run_upgrade_on(
        &c,
        lab.jobs(),
        &options(&lab),
        &journal,
        &quiet(),
        None,
        &Cancel::new(),
    )
    .await
    .unwrap();
    for r in &rep.sites {
        eprintln!(
            "report {}/{}: {} [{}]",
            r.host,
            r.site,
            r.outcome,
            r.outcome.status()
        );
    }
    dump(&lab, &journal, &rep.run, "after run");
    for r in rep.sites.iter().filter(|r| r.host == "h01") {
        assert_ne!(
            r.outcome.status(),
            crate::vocab::SiteStatus::RolledBack,
            "{}/{}: untouched but reported `{}`",
            r.host,
            r.site,
            r.outcome
        );
    }
}

/// A host task that panics after the first Ctrl-C (drain): host_lost's recovery does
/// nothing (restore_run_on skips every host once drain is set) and the sites that are down
/// are journaled "failed, nothing was changed", not in maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_the_first_ctrl_c_still_recovers_the_sites_down() {
    let (lab, journal, _s) = setup();
    crate::testkit::quiet_injected_panics();
    let c: Arc<dyn Connect> = ruled(
        &lab,
        &journal,
        vec![(HOST.into(), "backup-db".into(), 1, Act::DelayPanic(1500))],
        &[],
    );
    let cancel = Cancel::new();
    let drain = cancel.drain.clone();
    let j2 = journal.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started = j2
                .runs()
                .unwrap_or_default()
                .first()
                .map(|r| {
                    j2.steps(&r.id)
                        .unwrap_or_default()
                        .iter()
                        .any(|s| s.step == crate::vocab::BuiltinStep::BackupDb)
                })
                .unwrap_or(false);
            if started {
                break;
            }
        }
        drain.cancel();
    });
    let rep = upgrade(&lab, &journal, &c, &cancel).await;
    for r in &rep.sites {
        eprintln!("report {}/{}: {}", r.host, r.site, r.outcome);
    }
    dump(&lab, &journal, &rep.run, "after run");
    let rows = journal.sites(&rep.run).unwrap();
    for s in &lab.sites {
        let row = rows.iter().find(|r| r.site == s.name).unwrap();
        if s.maintenance() == "1" {
            assert!(
                needs_restore(row, RestoreMode::Recover),
                "{}: in maintenance on the host, journal says {} in_maintenance={}",
                s.name,
                row.status,
                row.in_maintenance
            );
        }
    }
}

/// B's upgrade fails in the run, the undo chain fails to restore code and A: `fleet recover`
/// goes "forward part-way" and runs B's failed upgrade again in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_never_retries_a_database_upgrade_that_failed_in_the_run() {
    let (lab, journal, _s) = setup();
    let rules = vec![
        (HOST.to_owned(), "upgrade-db".to_owned(), 2, Act::Fail),
        (HOST.to_owned(), "restore-code".to_owned(), 1, Act::Fail),
        (HOST.to_owned(), "restore-db".to_owned(), 1, Act::Fail),
    ];
    let c: Arc<dyn Connect> = ruled(&lab, &journal, rules, &[]);
    let rep = upgrade(&lab, &journal, &c, &Cancel::new()).await;
    for r in &rep.sites {
        eprintln!("report {}/{}: {}", r.host, r.site, r.outcome);
    }
    dump(&lab, &journal, &rep.run, "after run");
    let run = journal.run(&rep.run).unwrap().unwrap();
    let healthy: Arc<dyn Connect> = ruled(&lab, &journal, vec![], &[]);
    let r = recover(&lab, &journal, &healthy, &run).await.unwrap();
    for r in &r.sites {
        eprintln!("recover report {}/{}: {}", r.host, r.site, r.outcome);
    }
    dump(&lab, &journal, &rep.run, "after recover");
    let ups: Vec<_> = journal
        .steps(&rep.run)
        .unwrap()
        .into_iter()
        .filter(|s| s.step == crate::vocab::BuiltinStep::UpgradeDb)
        .map(|s| (s.unit, s.attempt, s.state))
        .collect();
    eprintln!("upgrade-db steps: {ups:?}");
    let mut per = BTreeMap::new();
    for (u, _, _) in &ups {
        *per.entry(u.clone()).or_insert(0) += 1;
    }
    assert!(
        per.values().all(|n| *n <= 1),
        "a database's upgrade ran more than once in the run: {ups:?}"
    );
}

/// A panic while `fleet recover` works on a host ends that host's recovery only: its sites
/// keep their rows (down, mid-step) and a second recover brings them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_during_recovery_leaves_the_rows_for_the_next_recover() {
    let (lab, journal, _s) = setup();
    crate::testkit::quiet_injected_panics();
    let prior: Vec<String> = lab.sites.iter().map(|s| s.maintenance()).collect();
    let run = crash_at(&lab, &journal, "unpack").await;
    let panicking: Arc<dyn Connect> = ruled(
        &lab,
        &journal,
        vec![(HOST.into(), "recover-probe".into(), 1, Act::Panic)],
        &[],
    );
    let r = recover(&lab, &journal, &panicking, &run)
        .await
        .expect("recover reports the panic as the host's failure");
    assert!(
        r.sites.iter().all(|s| s.outcome.left_in_maintenance()),
        "{:?}",
        r.sites
    );
    let rows = journal.sites(&run.id).unwrap();
    assert!(
        rows.iter()
            .all(|row| needs_restore(row, RestoreMode::Recover)),
        "the rows must still say the sites need recovery"
    );
    let run = journal.run(&run.id).unwrap().unwrap();
    let healthy: Arc<dyn Connect> = ruled(&lab, &journal, vec![], &[]);
    recover(&lab, &journal, &healthy, &run).await.unwrap();
    for (s, p) in lab.sites.iter().zip(&prior) {
        assert_eq!(s.maintenance(), *p, "{}", s.name);
        assert_eq!(s.code_version(), s.db_version(), "{}", s.name);
    }
}
