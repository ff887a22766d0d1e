//! The journal against a real SQLite file: round trips, migrations, unknown words.

use super::*;
use crate::vocab::BuiltinStep;

/// A journal in `dir` with one upgrade run recorded: the journal and the run's id.
pub(super) fn with_run(dir: &Path) -> (Journal, String) {
    let j = Journal::open(dir).unwrap();
    let run = j
        .create_run(&RunInfo {
            procedure: "civicrm-d7".into(),
            target: "5.70.0".into(),
            args: "fleet upgrade".into(),
        })
        .unwrap();
    (j, run)
}

#[test]
fn journal_round_trip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let run = {
        let j = Journal::open(dir.path()).unwrap();
        let run = j
            .create_run(&RunInfo {
                procedure: "civicrm-d7".into(),
                target: "5.70.0".into(),
                args: "fleet upgrade".into(),
            })
            .unwrap();
        j.site(
            &run,
            "h01",
            "s1",
            &SiteUpdate {
                status: Some(SiteStatus::Running),
                from_version: Some("5.69.0"),
                ..Default::default()
            },
        )
        .unwrap();
        let id = j
            .step_start(
                &run,
                "h01",
                &Unit::site("s1"),
                &StepName::parse("maintenance-on"),
                "",
            )
            .unwrap();
        j.set_artifact(
            &run,
            "h01",
            &Unit::site("s1"),
            ArtifactKind::PriorMaintenance,
            "0",
        )
        .unwrap();
        j.step_end(id, StepState::Done, "").unwrap();
        j.step_start(
            &run,
            "h01",
            &Unit::database("civi"),
            &StepName::parse("upgrade-db"),
            "cv",
        )
        .unwrap();
        j.site(
            &run,
            "h01",
            "s1",
            &SiteUpdate {
                step: Some(&BuiltinStep::UpgradeDb.into()),
                in_maintenance: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        run
    };
    // A new process reads the same state back.
    let j = Journal::open(dir.path()).unwrap();
    let runs = j.runs().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, RunState::Running);
    let sites = j.sites(&run).unwrap();
    assert_eq!(sites[0].status, SiteStatus::Running);
    assert_eq!(sites[0].step, Some(BuiltinStep::UpgradeDb.into()));
    assert!(sites[0].in_maintenance);
    assert_eq!(sites[0].from_version.as_deref(), Some("5.69.0"));
    assert_eq!(
        j.step_state(
            &run,
            "h01",
            &Unit::database("civi"),
            &StepName::parse("upgrade-db")
        )
        .unwrap(),
        Some(StepState::Started)
    );
    assert_eq!(
        j.artifact(
            &run,
            "h01",
            &Unit::site("s1"),
            ArtifactKind::PriorMaintenance
        )
        .unwrap()
        .as_deref(),
        Some("0")
    );
    let again = j
        .step_start(
            &run,
            "h01",
            &Unit::site("s1"),
            &StepName::parse("maintenance-on"),
            "",
        )
        .unwrap();
    j.step_end(again, StepState::Done, "").unwrap();
    assert_eq!(
        j.steps(&run)
            .unwrap()
            .iter()
            .filter(|s| s.step == BuiltinStep::MaintenanceOn)
            .map(|s| s.attempt)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    j.finish_run(&run, RunState::Finished).unwrap();
    assert!(j.run(&run).unwrap().unwrap().finished_ms.is_some());
}

fn chain(e: &PlaybookError) -> String {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// A journal written by the release before schema versions (times in seconds, no
/// `schema_version`) opens, reads, and its times become milliseconds.
#[test]
fn a_version_1_journal_is_migrated_and_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join("journal.sqlite")).unwrap();
        c.execute_batch(schema::V1).unwrap();
        c.execute_batch(
            "INSERT INTO runs VALUES ('20261101-120000-abcd', 1795000000, 1795000060, 'finished', 'ops', 'ctl', 42, 'civicrm-d7', '5.70.0', 'fleet upgrade');
             INSERT INTO sites VALUES ('20261101-120000-abcd', 'h01', 's1', 0, NULL, 'upgraded', 'verify', '5.69.0', '5.70.0', 0, 'ok', 1795000059);
             INSERT INTO steps VALUES (1, '20261101-120000-abcd', 'h01', 'database:civi', 'backup-db', 'done', 1, 1795000010, 1795000020, '');
             INSERT INTO artifacts VALUES ('20261101-120000-abcd', 'h01', 'database:civi', 'db-dump', '/b/civi.sql sha256:00');",
        )
        .unwrap();
    }
    let j = Journal::open(dir.path()).unwrap();
    let run = j.run("20261101-120000-abcd").unwrap().unwrap();
    assert_eq!(run.state, RunState::Finished);
    assert_eq!(run.started_ms, 1_795_000_000_000);
    assert_eq!(run.finished_ms, Some(1_795_000_060_000));
    let sites = j.sites(&run.id).unwrap();
    assert_eq!(sites[0].status, SiteStatus::Upgraded);
    assert_eq!(sites[0].updated_ms, 1_795_000_059_000);
    assert_eq!(
        j.step_done_at(
            &run.id,
            "h01",
            &Unit::database("civi"),
            &StepName::parse("backup-db")
        )
        .unwrap(),
        Some(1_795_000_020_000)
    );
    assert_eq!(j.artifacts(&run.id).unwrap()[0].kind, ArtifactKind::DbDump);
    let steps = j.steps(&run.id).unwrap();
    assert_eq!(
        (steps[0].started_ms, steps[0].finished_ms),
        (1_795_000_010_000, Some(1_795_000_020_000))
    );
    // Its runs took budget decisions that nobody recorded: none are made up.
    assert!(j.batches(&run.id).unwrap().is_empty());
    drop(j);
    // Opening again migrates nothing twice.
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(
        j.run(&run.id).unwrap().unwrap().started_ms,
        1_795_000_000_000
    );
}

/// A journal of schema 2 (before budget decisions were kept) gains their table, and its runs
/// read on as they were.
#[test]
fn a_version_2_journal_gains_the_batch_decisions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = Connection::open(dir.path().join("journal.sqlite")).unwrap();
        c.execute_batch(schema::V1).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version VALUES (2);
             INSERT INTO runs VALUES ('20261101-120000-abcd', 1795000000000, NULL, 'failed', 'ops', 'ctl', 42, 'civicrm-d7', '5.70.0', 'fleet upgrade');",
        )
        .unwrap();
    }
    let j = Journal::open(dir.path()).unwrap();
    let run = j.run("20261101-120000-abcd").unwrap().unwrap();
    assert_eq!(run.started_ms, 1_795_000_000_000);
    assert!(j.batches(&run.id).unwrap().is_empty());
    let id = j
        .batch_admitted(
            &run.id,
            &BatchBudget {
                batch: 0,
                hosts: 1,
                budget: 0,
                run_budget: 0,
            },
        )
        .unwrap();
    assert!(id > 0);
    let v: i64 = j
        .with(|c| c.query_row("SELECT version FROM schema_version", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(v, schema::CURRENT);
}

#[test]
fn a_journal_from_a_newer_fleet_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(Journal::open(dir.path()).unwrap());
    {
        let c = Connection::open(dir.path().join("journal.sqlite")).unwrap();
        c.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
    }
    let Err(e) = Journal::open(dir.path()) else {
        panic!("a newer journal was opened");
    };
    let e = chain(&e);
    assert!(e.contains("newer fleet (schema 99"), "{e}");
    let c = Connection::open(dir.path().join("journal.sqlite")).unwrap();
    let v: i64 = c
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);
}

#[test]
fn a_word_this_build_does_not_know_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (j, run) = with_run(dir.path());
    j.with(|c| c.execute("UPDATE runs SET state = 'paused' WHERE id = ?1", [&run]))
        .unwrap();
    let e = chain(&j.run(&run).expect_err("unknown state"));
    assert!(e.contains("unknown run state `paused`"), "{e}");
}

/// The journal is the operator's alone: its directory is made 0700 and its file 0600 (an
/// existing file loses others' access); a directory others may write to is refused, naming
/// it and its mode.
#[test]
fn the_journal_is_private_and_refuses_a_directory_others_may_write() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/state");
    let j = Journal::open(&dir).unwrap();
    j.create_run(&RunInfo {
        procedure: "civicrm-d7".into(),
        target: "5.70.0".into(),
        args: "fleet upgrade".into(),
    })
    .unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("journal.sqlite")), 0o600);
    drop(j);
    std::fs::set_permissions(
        dir.join("journal.sqlite"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    Journal::open(&dir).unwrap();
    assert_eq!(mode(&dir.join("journal.sqlite")), 0o600, "tightened");
    for open in [0o777, 0o775, 0o757] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(open)).unwrap();
        let err = Journal::open(&dir).err().expect("refused").to_string();
        assert!(
            err.contains(&dir.display().to_string())
                && err.contains(&format!("writable by others (mode {open:04o})")),
            "{err}"
        );
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    Journal::open(&dir).expect("0755 is the operator's to write");
}

/// With `FLEET_TEST_JOURNAL_WRITER=DIR`, writes step records into the journal in DIR as fast
/// as it can, each a start and an end, until killed (the test below runs this test's binary
/// for it). Otherwise it does nothing.
#[test]
fn journal_writer_until_killed() {
    let Some(dir) = std::env::var_os("FLEET_TEST_JOURNAL_WRITER") else {
        return;
    };
    let j = Journal::open(Path::new(&dir)).unwrap();
    let run = j.runs().unwrap().first().map(|r| r.id.clone()).unwrap();
    for i in 0.. {
        let id = j
            .step_start(
                &run,
                "h01",
                &Unit::site("s1"),
                &StepName::parse("maintenance-on"),
                &format!("attempt {i}"),
            )
            .unwrap();
        j.step_end(id, StepState::Done, &"x".repeat(i % 5000))
            .unwrap();
    }
}

/// SIGKILL lands while the journal writes (the writer does nothing else, so most kills fall
/// inside a commit's WAL append or its fsync): every time, the journal opens, SQLite finds it
/// whole, and no step is half-written (a row is there with its start, or not at all; an end is
/// there with its state).
#[test]
fn a_journal_killed_mid_write_opens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    with_run(&state);
    let exe = std::env::current_exe().unwrap();
    let mut rows_seen = 0;
    for round in 0..12u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "journal::tests::journal_writer_until_killed",
                "--nocapture",
            ])
            .env("FLEET_TEST_JOURNAL_WRITER", &state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed at a different moment each round (a few ms to a few hundred into it).
        std::thread::sleep(std::time::Duration::from_millis(40 + round * round * 3));
        child.kill().unwrap();
        child.wait().unwrap();
        let j = Journal::open(&state).expect("the journal opens after a kill mid-write");
        let ok: String = j
            .with(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(ok, "ok", "round {round}");
        let run = j.runs().unwrap()[0].id.clone();
        let steps = j.steps(&run).unwrap();
        for s in &steps {
            assert!(s.detail.as_deref().is_some_and(|d| !d.is_empty()), "{s:?}");
            assert!(
                matches!(s.state, StepState::Started | StepState::Done),
                "{s:?}"
            );
            assert_eq!(s.finished_ms.is_some(), s.state == StepState::Done, "{s:?}");
        }
        assert!(
            steps.len() >= rows_seen,
            "committed rows were lost: round {round}"
        );
        rows_seen = steps.len();
    }
    assert!(rows_seen > 0, "the writer never wrote");
}
