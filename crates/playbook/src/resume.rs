//! `fleet resume` and `fleet recover` as library calls: both act on a run the journal knows,
//! with the options that run recorded when it started (procedure, playbook text, forks,
//! failure policy, step timeout, caps, translations), never with today's defaults or today's copy of a file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_inventory::{Amount, Batches};
use fleet_remote_exec::Client;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::{Cancel, HostJob, OnFailure};
use crate::error::PlaybookError;
use crate::event::{Event, Reporter};
use crate::journal::{Journal, RunRow};
use crate::outcome::{RunReport, SiteReport};
use crate::playbook::Playbook;
use crate::remote::Connect;
use crate::restore::{RestoreMode, RestoreOptions, needs_restore, restore_run_on};
use crate::runner::{UpgradeOptions, run_upgrade_on};
use crate::translations::OnLostTranslations;
use crate::vocab::{ArtifactKind, RunState, SiteTally, Unit};

/// What a run started with that resuming it must repeat, kept in the journal as TOML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Recorded {
    /// Hosts in flight at once.
    pub(crate) forks: usize,
    /// `rollback` or `hold`.
    pub(crate) on_failure: String,
    /// Bound on each remote step, in ms.
    pub(crate) step_timeout_ms: u64,
    /// Whether an unreachable host counts as failed.
    pub(crate) unreachable_counts: bool,
    /// `--max-per` caps.
    #[serde(default)]
    pub(crate) max_per: BTreeMap<String, usize>,
    /// The localization tarball, if any.
    #[serde(default)]
    pub(crate) l10n: Option<PathBuf>,
    /// `--drop-translations`: upgrade sites whose installed translations the run does not
    /// bring (absent, so false, in runs recorded before fleet looked at translations).
    #[serde(default)]
    pub(crate) drop_translations: bool,
    /// SHA-256 of the playbook text the run started with (the text is its own artifact).
    #[serde(default)]
    pub(crate) playbook_sha256: Option<String>,
}

impl Recorded {
    pub(crate) fn of(opts: &UpgradeOptions) -> Recorded {
        Recorded {
            forks: opts.forks,
            on_failure: match opts.on_failure {
                OnFailure::Rollback => "rollback",
                OnFailure::Hold => "hold",
            }
            .to_owned(),
            step_timeout_ms: u64::try_from(opts.step_timeout.as_millis()).unwrap_or(u64::MAX),
            unreachable_counts: opts.unreachable_counts,
            max_per: opts.max_per.clone(),
            l10n: opts.l10n.clone(),
            drop_translations: opts.lost_translations == OnLostTranslations::Drop,
            playbook_sha256: opts.playbook.as_ref().map(|p| sha256(&p.text)),
        }
    }

    /// Records `opts` (and the playbook text) for run `run`.
    pub(crate) fn record(
        journal: &Journal,
        run: &str,
        opts: &UpgradeOptions,
    ) -> Result<(), PlaybookError> {
        let text = toml::to_string(&Recorded::of(opts)).map_err(|e| {
            PlaybookError::Plan(format!("internal: cannot record the options: {e}"))
        })?;
        journal.set_artifact(run, "", &Unit::Run, ArtifactKind::Options, &text)?;
        if let Some(pb) = &opts.playbook {
            journal.set_artifact(run, "", &Unit::Run, ArtifactKind::Playbook, &pb.text)?;
        }
        Ok(())
    }

    /// What run `run` recorded; `None` for a run recorded before fleet kept its options.
    pub(crate) fn load(journal: &Journal, run: &str) -> Result<Option<Recorded>, PlaybookError> {
        let Some(text) = journal.artifact(run, "", &Unit::Run, ArtifactKind::Options)? else {
            return Ok(None);
        };
        toml::from_str(&text).map(Some).map_err(|e| {
            PlaybookError::Plan(format!(
                "run `{run}`: the journal's record of its options is unreadable: {e}"
            ))
        })
    }

    fn on_failure(&self) -> OnFailure {
        if self.on_failure == "hold" {
            OnFailure::Hold
        } else {
            OnFailure::Rollback
        }
    }

    fn lost_translations(&self) -> OnLostTranslations {
        if self.drop_translations {
            OnLostTranslations::Drop
        } else {
            OnLostTranslations::Refuse
        }
    }
}

fn sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the operator may change when resuming; everything else is the run's own.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// Bound on each remote step instead of the recorded one.
    pub step_timeout: Option<Duration>,
    /// Failed hosts tolerated (default 0: the first failure stops admitting hosts).
    pub max_fail: Option<Amount>,
}

/// Options for runs recorded before fleet kept them: the defaults of that release.
fn legacy() -> Recorded {
    Recorded {
        forks: 20,
        on_failure: "rollback".into(),
        step_timeout_ms: 30 * 60 * 1000,
        unreachable_counts: true,
        max_per: BTreeMap::new(),
        l10n: None,
        drop_translations: false,
        playbook_sha256: None,
    }
}

fn jobs_of(jobs: &[HostJob], hosts: &[String]) -> Vec<HostJob> {
    jobs.iter()
        .filter(|j| hosts.contains(&j.host.name))
        .cloned()
        .collect()
}

/// Ends a command on run `run`: its state by [`RunState::decide`], and the report.
fn conclude(
    journal: &Journal,
    run: &str,
    sites: Vec<SiteReport>,
    interrupted: bool,
) -> Result<RunReport, PlaybookError> {
    let tally = SiteTally::of(&journal.sites(run)?);
    journal.finish_run(run, RunState::decide(tally, interrupted))?;
    Ok(RunReport {
        run: run.to_owned(),
        sites,
        stopped: None,
        journal_failures: journal.write_failures(),
    })
}

/// Continues run `run` (which the caller has claimed): first every site left mid-step is
/// re-read and brought to a safe end (forward when its database already reached the target,
/// so no database upgrade runs twice; else back to the run's backups); then every site not
/// yet settled runs the run's own procedure from its start, with its recorded options.
/// `jobs` are the inventory's hosts; the run's hosts are taken from them.
///
/// # Errors
///
/// [`PlaybookError`] when the journal fails, the run's record is unusable (a playbook run
/// recorded without its text), or a run's host is no longer in the inventory.
///
/// # Cancel safety
///
/// Not cancel safe: cancel through `cancel` and await the report.
pub async fn resume_run(
    client: &Client,
    jobs: &[HostJob],
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
    run: &RunRow,
    ro: &ResumeOptions,
) -> Result<RunReport, PlaybookError> {
    let connect: Arc<dyn Connect> = Arc::new(client.clone());
    resume_run_on(&connect, jobs, journal, reporter, cancel, run, ro).await
}

/// [`resume_run`] over any [`Connect`] (the unit tests' local hosts).
pub(crate) async fn resume_run_on(
    connect: &Arc<dyn Connect>,
    jobs: &[HostJob],
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
    run: &RunRow,
    ro: &ResumeOptions,
) -> Result<RunReport, PlaybookError> {
    crate::procedure::migrate::refuse_upgrade_tools(run)?;
    let recorded = Recorded::load(journal, &run.id)?;
    if recorded.is_none() {
        reporter.on_event(&Event::Notice {
            host: String::new(),
            message: format!(
                "run `{}` was recorded before fleet kept its options: resuming with forks 20, on-failure rollback, step timeout 30 min",
                run.id
            ),
        });
    }
    let recorded = recorded.unwrap_or_else(legacy);
    let step_timeout = ro
        .step_timeout
        .unwrap_or(Duration::from_millis(recorded.step_timeout_ms));
    let rows = journal.sites(&run.id)?;
    missing_hosts(run, &rows, jobs)?;
    let mut reports: Vec<SiteReport> = Vec::new();
    let midway: Vec<String> = rows
        .iter()
        .filter(|r| needs_restore(r, RestoreMode::Recover))
        .map(|r| r.host.clone())
        .collect();
    if !midway.is_empty() {
        reports.extend(
            restore_run_on(
                connect,
                &jobs_of(jobs, &midway),
                journal,
                reporter,
                cancel,
                &run.id,
                &recovery(step_timeout, recorded.forks),
            )
            .await?
            .sites,
        );
    }
    // A site recovery could not bring to a safe end (its host unreachable, a restore that
    // failed part-way) stays as the journal says, down or mid-step, for `fleet recover`: the
    // procedure starting over on it would take its "in maintenance" for its prior state.
    let rows = journal.sites(&run.id)?;
    let todo: Vec<(String, String)> = rows
        .iter()
        .filter(|r| !r.status.is_settled() && !needs_restore(r, RestoreMode::Recover))
        .map(|r| (r.host.clone(), r.site.clone()))
        .collect();
    if !todo.is_empty() && !cancel.drain.is_cancelled() {
        let tarball = journal
            .artifact(&run.id, "", &Unit::Run, ArtifactKind::Tarball)?
            .ok_or_else(|| PlaybookError::Plan(format!("run `{}` recorded no tarball", run.id)))?;
        let playbook = recorded_playbook(journal, run, &recorded)?;
        let hosts: Vec<String> = todo.iter().map(|(h, _)| h.clone()).collect();
        let mut todo_jobs = jobs_of(jobs, &hosts);
        for j in &mut todo_jobs {
            j.host
                .sites
                .retain(|s| todo.iter().any(|(h, n)| *h == j.host.name && *n == s.name));
        }
        let opts = UpgradeOptions {
            tarball: tarball.into(),
            l10n: recorded.l10n.clone(),
            lost_translations: recorded.lost_translations(),
            target: run.target.clone(),
            batches: Batches(vec![Amount::Percent(100)]),
            max_fail: ro.max_fail.unwrap_or(Amount::Count(0)),
            unreachable_counts: recorded.unreachable_counts,
            max_per: recorded.max_per.clone(),
            forks: recorded.forks,
            on_failure: recorded.on_failure(),
            step_timeout,
            args: run.args.clone(),
            playbook,
            resume: Some(run.id.clone()),
            break_lock: None,
            bake: None,
        };
        let r = run_upgrade_on(connect, todo_jobs, &opts, journal, reporter, None, cancel).await?;
        reports.retain(|x| !r.sites.iter().any(|y| y.host == x.host && y.site == x.site));
        reports.extend(r.sites);
    }
    conclude(journal, &run.id, reports, cancel.drain.is_cancelled())
}

/// Brings every site of run `run` (claimed by the caller) left in maintenance or mid-step to
/// its nearest safe end, with the run's recorded step timeout unless `step_timeout` is given.
///
/// # Errors
///
/// [`PlaybookError`] when the journal fails or a run's host is no longer in the inventory.
///
/// # Cancel safety
///
/// Not cancel safe: cancel through `cancel` and await the report.
pub async fn recover_run(
    client: &Client,
    jobs: &[HostJob],
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
    run: &RunRow,
    step_timeout: Option<Duration>,
) -> Result<RunReport, PlaybookError> {
    let connect: Arc<dyn Connect> = Arc::new(client.clone());
    recover_run_on(&connect, jobs, journal, reporter, cancel, run, step_timeout).await
}

/// [`recover_run`] over any [`Connect`] (the unit tests' local hosts).
pub(crate) async fn recover_run_on(
    connect: &Arc<dyn Connect>,
    jobs: &[HostJob],
    journal: &Arc<Journal>,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
    run: &RunRow,
    step_timeout: Option<Duration>,
) -> Result<RunReport, PlaybookError> {
    crate::procedure::migrate::refuse_upgrade_tools(run)?;
    let recorded = Recorded::load(journal, &run.id)?.unwrap_or_else(legacy);
    let step_timeout = step_timeout.unwrap_or(Duration::from_millis(recorded.step_timeout_ms));
    let rows: Vec<_> = journal
        .sites(&run.id)?
        .into_iter()
        .filter(|r| needs_restore(r, RestoreMode::Recover))
        .collect();
    missing_hosts(run, &rows, jobs)?;
    let mut hosts: Vec<String> = rows.iter().map(|r| r.host.clone()).collect();
    hosts.extend(
        crate::restore::locks_left(journal, &run.id, &rows)?
            .into_iter()
            .map(|l| l.host),
    );
    let sites = restore_run_on(
        connect,
        &jobs_of(jobs, &hosts),
        journal,
        reporter,
        cancel,
        &run.id,
        &recovery(step_timeout, recorded.forks),
    )
    .await?
    .sites;
    conclude(journal, &run.id, sites, cancel.drain.is_cancelled())
}

/// A run's host that needs work but is gone from the inventory cannot be reached: say so
/// before anything starts, rather than leave its sites silently behind.
fn missing_hosts(
    run: &RunRow,
    rows: &[crate::journal::SiteRow],
    jobs: &[HostJob],
) -> Result<(), PlaybookError> {
    let mut gone: Vec<&str> = rows
        .iter()
        .filter(|r| !r.status.is_settled())
        .map(|r| r.host.as_str())
        .filter(|h| !jobs.iter().any(|j| j.host.name == *h))
        .collect();
    gone.dedup();
    if gone.is_empty() {
        Ok(())
    } else {
        Err(PlaybookError::Plan(format!(
            "run `{}` has unfinished sites on host(s) no longer in the inventory: {}",
            run.id,
            gone.join(", ")
        )))
    }
}

/// The procedure run `run` started with: its playbook from the journal's copy (checked
/// against the recorded hash), never the file as it may have been edited since, and never
/// the built-in procedure for a playbook run.
fn recorded_playbook(
    journal: &Journal,
    run: &RunRow,
    recorded: &Recorded,
) -> Result<Option<Playbook>, PlaybookError> {
    let origin = PathBuf::from(format!("playbook of run {}", run.id));
    let Some(text) = journal.artifact(&run.id, "", &Unit::Run, ArtifactKind::Playbook)? else {
        if run.procedure.starts_with("playbook:") {
            return Err(PlaybookError::Plan(format!(
                "run `{}` ran {} but its journal has no copy of it (recorded before fleet kept one); run that playbook again with `fleet upgrade --playbook FILE`",
                run.id, run.procedure
            )));
        }
        return Ok(None);
    };
    if let Some(want) = &recorded.playbook_sha256
        && *want != sha256(&text)
    {
        return Err(PlaybookError::Plan(format!(
            "run `{}`: the journal's copy of its playbook does not match the SHA-256 recorded when it started; not resuming",
            run.id
        )));
    }
    Playbook::parse_recorded(&text, &origin).map(Some)
}

/// Recovery as the operator asks for it (`fleet recover`, the first pass of `fleet resume`):
/// sites brought to a safe end come out of maintenance, whatever the run's failure policy (a
/// site held by `--on-failure hold` is recovered to be brought back); one whose restore fails
/// stays down either way.
fn recovery(step_timeout: Duration, forks: usize) -> RestoreOptions {
    RestoreOptions {
        forks,
        mode: RestoreMode::Recover,
        sites: Vec::new(),
        step_timeout,
        on_failure: OnFailure::Rollback,
        force: false,
        plan: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_options_read_back_and_old_runs_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let run = j
            .create_run(&crate::journal::RunInfo {
                procedure: "civicrm-d7".into(),
                target: "5.70.0".into(),
                args: String::new(),
            })
            .unwrap();
        assert_eq!(Recorded::load(&j, &run).unwrap(), None);
        let mut r = legacy();
        r.forks = 7;
        r.on_failure = "hold".into();
        r.max_per.insert("dc".into(), 2);
        r.drop_translations = true;
        r.playbook_sha256 = Some(sha256("x"));
        let text = toml::to_string(&r).unwrap();
        j.set_artifact(&run, "", &Unit::Run, ArtifactKind::Options, &text)
            .unwrap();
        let back = Recorded::load(&j, &run).unwrap().unwrap();
        assert_eq!(back, r);
        assert_eq!(back.on_failure(), OnFailure::Hold);
        assert_eq!(back.lost_translations(), OnLostTranslations::Drop);
        // A record from before fleet looked at translations refuses to lose them.
        let old = "forks = 3\non_failure = \"rollback\"\nstep_timeout_ms = 1000\nunreachable_counts = true\n";
        j.set_artifact(&run, "", &Unit::Run, ArtifactKind::Options, old)
            .unwrap();
        let back = Recorded::load(&j, &run).unwrap().unwrap();
        assert_eq!(back.lost_translations(), OnLostTranslations::Refuse);
        j.set_artifact(
            &run,
            "",
            &Unit::Run,
            ArtifactKind::Options,
            "forks = \"many\"",
        )
        .unwrap();
        let e = Recorded::load(&j, &run).unwrap_err().to_string();
        assert!(e.contains("unreadable"), "{e}");
    }

    #[test]
    fn a_playbook_copy_that_no_longer_matches_its_hash_is_refused() {
        let (_dir, j, run_id, run) = playbook_run();
        let text = "name = \"cc\"\n[[steps]]\nname = \"cc\"\nkind = \"shell\"\nrun = \"true\"\n";
        let mut r = legacy();
        r.playbook_sha256 = Some(sha256(text));
        assert!(matches!(
            recorded_playbook(&j, &run, &r),
            Err(PlaybookError::Plan(e)) if e.contains("no copy")
        ));
        j.set_artifact(&run_id, "", &Unit::Run, ArtifactKind::Playbook, text)
            .unwrap();
        assert_eq!(
            recorded_playbook(&j, &run, &r).unwrap().map(|p| p.name),
            Some("cc".to_owned())
        );
        j.set_artifact(
            &run_id,
            "",
            &Unit::Run,
            ArtifactKind::Playbook,
            &text.replace("true", "rm -rf /"),
        )
        .unwrap();
        let e = recorded_playbook(&j, &run, &r).unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
    }

    /// A journal in a temp dir with one playbook run in it.
    fn playbook_run() -> (tempfile::TempDir, Journal, String, RunRow) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let run_id = j
            .create_run(&crate::journal::RunInfo {
                procedure: "playbook:cc".into(),
                target: String::new(),
                args: String::new(),
            })
            .unwrap();
        let run = j.run(&run_id).unwrap().unwrap();
        (dir, j, run_id, run)
    }

    /// A run started by a release that let a shell step take a built-in step's name goes
    /// on with that playbook; a new one is refused it.
    #[test]
    fn a_recorded_playbook_keeps_a_step_named_like_a_builtin() {
        let (_dir, j, run_id, run) = playbook_run();
        let text = "name = \"cc\"\n[[steps]]\nname = \"flush\"\nkind = \"shell\"\nrun = \"true\"\n";
        assert!(Playbook::parse(text, std::path::Path::new("pb.toml")).is_err());
        let mut r = legacy();
        r.playbook_sha256 = Some(sha256(text));
        j.set_artifact(&run_id, "", &Unit::Run, ArtifactKind::Playbook, text)
            .unwrap();
        let pb = recorded_playbook(&j, &run, &r).unwrap().unwrap();
        assert_eq!(pb.steps[0].name, "flush");
    }
}
