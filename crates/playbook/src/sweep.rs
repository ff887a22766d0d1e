//! The procedure against faults at every command it sends, on local hosts (`testkit.rs`):
//! each step's failure undone, a panic in each step recovered, a controller dying before each
//! command resumed to the end. What must hold on the hosts is the same every time: every site
//! at one version (code = database), out of maintenance as it was before, its data intact,
//! each database upgraded at most once, and the journal saying so.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::context::Cancel;
use crate::event::Reporter;
use crate::journal::Journal;
use crate::remote::Connect;
use crate::runner::{UpgradeOptions, run_upgrade_on};
use crate::testkit::{FROM, Fault, LocalLab, Quiet, TO, data_of};
use crate::vocab::{RunState, SiteStatus};

fn options(lab: &LocalLab) -> UpgradeOptions {
    lab.options()
}

struct Case {
    lab: LocalLab,
    journal: Arc<Journal>,
    _state: tempfile::TempDir,
    /// Each site's data before the run.
    data: Vec<Vec<(String, String)>>,
    prior: Vec<String>,
}

/// The host swept: two sites sharing a codebase, each with its own CiviCRM database (the
/// lab's even hosts), so a run can stop between two databases' upgrades.
const HOST: &str = "h02";

fn case() -> Case {
    let mut lab = LocalLab::new(2, 2);
    lab.sites.retain(|s| s.host == HOST);
    for s in &lab.sites {
        for db in [&s.civi_db, &s.cms_db] {
            let f = s.db_dir(db).join(format!("data.{}", s.name));
            std::fs::write(&f, format!("contacts of {}/{}\n", s.host, s.name)).expect("data");
        }
    }
    let data = lab.sites.iter().map(data_of).collect();
    let prior = lab.sites.iter().map(|s| s.maintenance()).collect();
    // The journal on tmpfs when there is one: its fsyncs (one per record, by design) are what
    // a sweep of dozens of runs would otherwise spend its time on.
    let state = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm"),
        false => tempfile::tempdir(),
    }
    .expect("state");
    let journal = Arc::new(Journal::open(state.path()).expect("journal"));
    Case {
        lab,
        journal,
        _state: state,
        data,
        prior,
    }
}

fn quiet() -> Arc<dyn Reporter> {
    Arc::new(Quiet)
}

impl Case {
    fn jobs(&self) -> Vec<crate::context::HostJob> {
        let mut jobs = self.lab.jobs();
        jobs.retain(|j| j.host.name == HOST);
        jobs
    }

    async fn upgrade(&self, connect: Arc<dyn Connect>) -> String {
        let report = run_upgrade_on(
            &connect,
            self.jobs(),
            &options(&self.lab),
            &self.journal,
            &quiet(),
            None,
            &Cancel::new(),
        )
        .await
        .expect("run");
        report.run
    }

    /// What must hold after any fault, once the run (and its recovery) ended. With
    /// `finished`, every site must have reached the target.
    fn check(&self, run: &str, what: &str, finished: bool) {
        let rows = self.journal.sites(run).expect("rows");
        for (i, s) in self.lab.sites.iter().enumerate() {
            let at = format!("{what}: {}/{}", s.host, s.name);
            let (code, db) = (s.code_version(), s.db_version());
            assert_eq!(code, db, "{at}: code and database differ");
            assert!(code == FROM || code == TO, "{at}: at `{code}`");
            if finished {
                assert_eq!(code, TO, "{at}: not at the target");
            }
            assert_eq!(s.maintenance(), self.prior[i], "{at}: maintenance");
            assert_eq!(data_of(s), self.data[i], "{at}: data");
            let row = rows
                .iter()
                .find(|r| r.host == s.host && r.site == s.name)
                .unwrap_or_else(|| panic!("{at}: no journal row"));
            assert!(!row.in_maintenance, "{at}: journal says in maintenance");
            assert_eq!(
                row.status == SiteStatus::Upgraded,
                code == TO,
                "{at}: journal says {} at {code}",
                row.status
            );
        }
        for h in [HOST] {
            let mut per_db: BTreeMap<String, usize> = BTreeMap::new();
            for c in self.lab.calls(h) {
                let argv: Vec<&str> = c["argv"]
                    .as_array()
                    .expect("argv")
                    .iter()
                    .filter_map(|a| a.as_str())
                    .collect();
                if argv.contains(&"upgrade:db") && !argv.contains(&"--dry-run") {
                    *per_db
                        .entry(c["site"].as_str().unwrap_or("").to_owned())
                        .or_default() += 1;
                }
            }
            let dbs: std::collections::BTreeSet<&str> = self
                .lab
                .sites
                .iter()
                .filter(|s| s.host == h)
                .map(|s| s.civi_db.as_str())
                .collect();
            let upgrades: usize = per_db.values().sum();
            assert!(
                upgrades <= dbs.len(),
                "{what}: {h} ran {upgrades} database upgrades for {} databases",
                dbs.len()
            );
        }
    }
}

/// Where to put the faults: the first command of each step of a clean run, and of each
/// database step on each database (`upgrade-db` on the first database and on the second are
/// two points: a run can stop between them), so that every step, and every undo it needs,
/// is reached.
async fn fault_points() -> Vec<(usize, String)> {
    crate::testkit::quiet_injected_panics();
    let c = case();
    let connect = c.lab.connect(HOST, Fault::None);
    let run = c.upgrade(connect.clone()).await;
    c.check(&run, "clean run", true);
    assert_eq!(
        c.journal.run(&run).unwrap().unwrap().state,
        RunState::Finished
    );
    let steps = c.journal.steps(&run).expect("steps");
    let scripts = connect.log.lock().unwrap().clone();
    let mut points: Vec<(usize, String)> = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        // `export FLEET_RUN_STEP=RUN/HOST/ID; ...`: the journal's step row of this command.
        let name = script
            .split("FLEET_RUN_STEP=")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .map(|t| t.trim_matches('\''))
            .and_then(|t| t.rsplit('/').next())
            .and_then(|id| id.parse::<i64>().ok())
            .and_then(|id| steps.iter().find(|s| s.id == id))
            .map_or_else(
                || "upload".to_owned(),
                |s| format!("{} on {}", s.step, s.unit),
            );
        if !points.iter().any(|(_, n)| *n == name) {
            points.push((i + 1, name));
        }
    }
    assert!(points.len() > 12, "a clean run reached only {points:?}");
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_steps_failure_is_undone_or_harmless() {
    for (n, step) in fault_points().await {
        let c = case();
        let run = c.upgrade(c.lab.connect(HOST, Fault::FailAt(n))).await;
        c.check(&run, &format!("`{step}` (command {n}) failed"), false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_each_step_ends_that_host_only_and_its_sites_are_recovered() {
    for (n, step) in fault_points().await {
        let c = case();
        let run = c.upgrade(c.lab.connect(HOST, Fault::PanicAt(n))).await;
        c.check(&run, &format!("panic in `{step}` (command {n})"), false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_dying_before_each_step_is_resumed_to_the_target() {
    for (n, step) in fault_points().await {
        let c = case();
        let crashing = c.lab.connect(HOST, Fault::CrashAt(n));
        let crashed = crashing.crashed.clone();
        let connect: Arc<dyn Connect> = crashing;
        let (opts, reporter, cancel) = (options(&c.lab), quiet(), Cancel::new());
        // Dropping the run mid-way ends it as a SIGKILL would: nothing more is recorded.
        tokio::select! {
            r = run_upgrade_on(
                &connect,
                c.jobs(),
                &opts,
                &c.journal,
                &reporter,
                None,
                &cancel,
            ) => panic!("the run ended before its crash in `{step}`: {:?}", r.map(|r| r.sites)),
            () = crashed.cancelled() => {}
        }
        let runs = c.journal.runs().expect("runs");
        let run = runs.first().expect("the run was recorded");
        let healthy: Arc<dyn Connect> = c.lab.connect(HOST, Fault::None);
        let report = crate::resume::resume_run_on(
            &healthy,
            &c.jobs(),
            &c.journal,
            &quiet(),
            &Cancel::new(),
            run,
            &crate::resume::ResumeOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("resume after a crash in `{step}`: {e}"));
        let what = format!("crash before `{step}` (command {n}), resumed");
        c.check(&run.id, &what, true);
        assert!(report.journal_failures.is_empty(), "{what}");
        assert_eq!(
            c.journal.run(&run.id).unwrap().unwrap().state,
            RunState::Finished,
            "{what}"
        );
    }
}
