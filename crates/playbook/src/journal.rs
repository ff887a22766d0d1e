//! The run journal: every run, every (site, step) transition, and where each backup is, in an
//! SQLite database (WAL, `synchronous=FULL`), written *before* the side effect it guards and
//! after it.
//!
//! Intent rows are few per step and cost far less than the SSH round trip they guard, so they
//! are committed one by one; nothing is batched that a crash could need.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::PlaybookError;
use crate::vocab::{ArtifactKind, RunState, SiteStatus, StepState};

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started INTEGER NOT NULL,
    finished INTEGER,
    state TEXT NOT NULL,            -- running | finished | failed | interrupted
    operator TEXT NOT NULL,
    controller TEXT NOT NULL,
    pid INTEGER NOT NULL,
    procedure TEXT NOT NULL,
    target TEXT NOT NULL,
    args TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sites (
    run TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    site TEXT NOT NULL,
    batch INTEGER,
    unit_group TEXT,
    status TEXT NOT NULL,           -- pending | running | upgraded | skipped | failed | rolled-back | held | unreachable | interrupted | superseded
    step TEXT,
    from_version TEXT,
    to_version TEXT,
    in_maintenance INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    updated INTEGER NOT NULL,
    PRIMARY KEY (run, host, site)
);
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    unit TEXT NOT NULL,             -- site:<name> | codebase:<path> | database:<name> | host
    step TEXT NOT NULL,
    state TEXT NOT NULL,            -- started | done | failed | undone | undo-failed
    attempt INTEGER NOT NULL,
    started INTEGER NOT NULL,
    finished INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS steps_by_unit ON steps(run, host, unit, step);
CREATE TABLE IF NOT EXISTS artifacts (
    run TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    unit TEXT NOT NULL,
    kind TEXT NOT NULL,             -- prior-maintenance | db-dump | safety-dump | code-backup | disabled-modules | lock
    value TEXT NOT NULL,
    PRIMARY KEY (run, host, unit, kind)
);
";

/// What a run was started with.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Procedure name (`civicrm-d7`).
    pub procedure: String,
    /// Target version.
    pub target: String,
    /// The command line, for `fleet runs show`.
    pub args: String,
}

/// One row of `fleet runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Unix time started.
    pub started: i64,
    /// Unix time finished, if it did.
    pub finished: Option<i64>,
    /// Its state.
    pub state: RunState,
    /// Who ran it.
    pub operator: String,
    /// Controller host and pid.
    pub controller: String,
    /// Controller pid.
    pub pid: i64,
    /// Procedure name.
    pub procedure: String,
    /// Target version.
    pub target: String,
    /// Command line.
    pub args: String,
}

/// One site of a run, for `fleet runs show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRow {
    /// Host name.
    pub host: String,
    /// Site name.
    pub site: String,
    /// Batch number (0 = canary).
    pub batch: Option<i64>,
    /// Where the site stands.
    pub status: SiteStatus,
    /// Last step reached.
    pub step: Option<String>,
    /// Version before.
    pub from_version: Option<String>,
    /// Version after (or targeted).
    pub to_version: Option<String>,
    /// Whether the journal believes the site is in maintenance because of this run.
    pub in_maintenance: bool,
    /// Reason or note.
    pub detail: Option<String>,
    /// Unix time of the last change.
    pub updated: i64,
}

/// One artifact (backup path, recorded prior state) of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    /// Host name.
    pub host: String,
    /// Unit (`site:x`, `database:y`, `codebase:/path`).
    pub unit: String,
    /// Kind.
    pub kind: ArtifactKind,
    /// Value (a path, a recorded state).
    pub value: String,
}

/// A step row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    /// Host.
    pub host: String,
    /// Unit.
    pub unit: String,
    /// Step name.
    pub step: String,
    /// State.
    pub state: StepState,
    /// Attempt number.
    pub attempt: i64,
    /// Detail.
    pub detail: Option<String>,
}

/// Site fields to update; `None` leaves a column as it is.
#[derive(Debug, Clone, Default)]
pub struct SiteUpdate<'a> {
    /// Batch.
    pub batch: Option<i64>,
    /// Group of units the site belongs to.
    pub unit_group: Option<&'a str>,
    /// Where the site stands.
    pub status: Option<SiteStatus>,
    /// Step reached.
    pub step: Option<&'a str>,
    /// Version before.
    pub from_version: Option<&'a str>,
    /// Target version.
    pub to_version: Option<&'a str>,
    /// In maintenance because of this run.
    pub in_maintenance: Option<bool>,
    /// Reason or note.
    pub detail: Option<&'a str>,
}

/// The journal database. Cheap to share (`&Journal` from many tasks): one connection behind a
/// mutex, each call a short transaction.
pub struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// The current unix time, in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` (`journal.sqlite`).
    ///
    /// # Errors
    ///
    /// [`PlaybookError::Journal`] when the directory or database cannot be created.
    pub fn open(dir: &Path) -> Result<Journal, PlaybookError> {
        std::fs::create_dir_all(dir).map_err(|e| PlaybookError::journal(dir, e))?;
        let path = dir.join("journal.sqlite");
        let conn = Connection::open(&path).map_err(|e| PlaybookError::journal(&path, e))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;")
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| PlaybookError::journal(&path, e))?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, PlaybookError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn).map_err(|e| PlaybookError::journal(&self.path, e))
    }

    /// Records a new run and returns its id (`YYYYMMDD-HHMMSS-xxxx`).
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn create_run(&self, info: &RunInfo) -> Result<String, PlaybookError> {
        let t = unix_now();
        let id = format!(
            "{}-{:04x}",
            timestamp_id(t),
            (std::process::id() ^ (t as u32).rotate_left(7)) & 0xffff
        );
        let operator = operator();
        let controller = hostname();
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (id, started, state, operator, controller, pid, procedure, target, args) VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, t, operator, controller, std::process::id(), info.procedure, info.target, info.args],
            )
        })?;
        Ok(id)
    }

    /// Marks a run as ended in `state`.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn finish_run(&self, run: &str, state: RunState) -> Result<(), PlaybookError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = ?2, finished = ?3 WHERE id = ?1",
                params![run, state, unix_now()],
            )
        })
        .map(|_| ())
    }

    /// Marks a run as running again (resume) under this process.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn reopen_run(&self, run: &str) -> Result<(), PlaybookError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'running', finished = NULL, pid = ?2, controller = ?3 WHERE id = ?1",
                params![run, std::process::id(), hostname()],
            )
        })
        .map(|_| ())
    }

    /// Takes run `seen` over for this process (`resume`, `rollback`, `recover`), only if the
    /// journal still holds it exactly as `seen` (same state and controller pid): two
    /// processes that both found the run idle cannot both act on it. Returns whether this
    /// process now holds it.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn claim_run(&self, seen: &RunRow) -> Result<bool, PlaybookError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = 'running', finished = NULL, pid = ?4, controller = ?5 WHERE id = ?1 AND state = ?2 AND pid = ?3",
                params![seen.id, seen.state, seen.pid, std::process::id(), hostname()],
            )
        })
        .map(|n| n == 1)
    }

    /// Puts a claimed run's row back as it was (`seen`): the command changed nothing.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn unclaim_run(&self, seen: &RunRow) -> Result<(), PlaybookError> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET state = ?2, finished = ?3, pid = ?4, controller = ?5 WHERE id = ?1",
                params![seen.id, seen.state, seen.finished, seen.pid, seen.controller],
            )
        })
        .map(|_| ())
    }

    /// Creates or updates a site row.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn site(
        &self,
        run: &str,
        host: &str,
        site: &str,
        u: &SiteUpdate<'_>,
    ) -> Result<(), PlaybookError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sites (run, host, site, batch, unit_group, status, step, from_version, to_version, in_maintenance, detail, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, 'pending'), ?7, ?8, ?9, COALESCE(?10, 0), ?11, ?12)
                 ON CONFLICT (run, host, site) DO UPDATE SET
                    batch = COALESCE(?4, batch), unit_group = COALESCE(?5, unit_group), status = COALESCE(?6, status),
                    step = COALESCE(?7, step), from_version = COALESCE(?8, from_version), to_version = COALESCE(?9, to_version),
                    in_maintenance = COALESCE(?10, in_maintenance), detail = COALESCE(?11, detail), updated = ?12",
                params![
                    run, host, site, u.batch, u.unit_group, u.status, u.step, u.from_version, u.to_version,
                    u.in_maintenance.map(i64::from), u.detail, unix_now()
                ],
            )
        })
        .map(|_| ())
    }

    /// Records that `step` is about to run on `unit`; returns the row id for
    /// [`Journal::step_end`]. Committed before the caller acts.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written: the caller must then not run the step.
    pub fn step_start(
        &self,
        run: &str,
        host: &str,
        unit: &str,
        step: &str,
        detail: &str,
    ) -> Result<i64, PlaybookError> {
        self.with(|c| {
            let attempt: i64 = c.query_row(
                "SELECT COUNT(*) FROM steps WHERE run = ?1 AND host = ?2 AND unit = ?3 AND step = ?4",
                params![run, host, unit, step],
                |r| r.get(0),
            )?;
            c.execute(
                "INSERT INTO steps (run, host, unit, step, state, attempt, started, detail) VALUES (?1, ?2, ?3, ?4, 'started', ?5, ?6, ?7)",
                params![run, host, unit, step, attempt + 1, unix_now(), detail],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records how a started step ended (`done`, `failed`, `undone`, `undo-failed`).
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn step_end(&self, id: i64, state: StepState, detail: &str) -> Result<(), PlaybookError> {
        self.with(|c| {
            c.execute(
                "UPDATE steps SET state = ?2, finished = ?3, detail = CASE WHEN ?4 = '' THEN detail ELSE ?4 END WHERE id = ?1",
                params![id, state, unix_now(), detail],
            )
        })
        .map(|_| ())
    }

    /// The latest state of `step` on `unit`, if it ever started.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn step_state(
        &self,
        run: &str,
        host: &str,
        unit: &str,
        step: &str,
    ) -> Result<Option<StepState>, PlaybookError> {
        self.with(|c| {
            c.query_row(
                "SELECT state FROM steps WHERE run = ?1 AND host = ?2 AND unit = ?3 AND step = ?4 ORDER BY id DESC LIMIT 1",
                params![run, host, unit, step],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Sets an artifact (a backup path, a recorded prior state).
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn set_artifact(
        &self,
        run: &str,
        host: &str,
        unit: &str,
        kind: ArtifactKind,
        value: &str,
    ) -> Result<(), PlaybookError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO artifacts (run, host, unit, kind, value) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run, host, unit, kind) DO UPDATE SET value = ?5",
                params![run, host, unit, kind, value],
            )
        })
        .map(|_| ())
    }

    /// Reads an artifact.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn artifact(
        &self,
        run: &str,
        host: &str,
        unit: &str,
        kind: ArtifactKind,
    ) -> Result<Option<String>, PlaybookError> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM artifacts WHERE run = ?1 AND host = ?2 AND unit = ?3 AND kind = ?4",
                params![run, host, unit, kind],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// When `step` last finished `done` on `unit` (unix time), e.g. when a dump was taken.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn step_done_at(
        &self,
        run: &str,
        host: &str,
        unit: &str,
        step: &str,
    ) -> Result<Option<i64>, PlaybookError> {
        self.with(|c| {
            c.query_row(
                "SELECT MAX(finished) FROM steps WHERE run = ?1 AND host = ?2 AND unit = ?3 AND step = ?4 AND state = 'done'",
                params![run, host, unit, step],
                |r| r.get(0),
            )
        })
    }

    /// Every run's row for one site, oldest run first: `(run id, run started, row)`.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn site_history(
        &self,
        host: &str,
        site: &str,
    ) -> Result<Vec<(String, i64, SiteRow)>, PlaybookError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT s.run, r.started, s.host, s.site, s.batch, s.status, s.step, s.from_version, s.to_version, s.in_maintenance, s.detail, s.updated
                 FROM sites s JOIN runs r ON r.id = s.run WHERE s.host = ?1 AND s.site = ?2 ORDER BY r.started, r.id",
            )?;
            let rows = s.query_map(params![host, site], |r| {
                Ok((r.get(0)?, r.get(1)?, site_row(r, 2)?))
            })?;
            rows.collect()
        })
    }

    /// Every run, newest first.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn runs(&self) -> Result<Vec<RunRow>, PlaybookError> {
        self.with(|c| {
            let mut s = c.prepare("SELECT id, started, finished, state, operator, controller, pid, procedure, target, args FROM runs ORDER BY started DESC, id DESC")?;
            let rows = s.query_map([], run_row)?;
            rows.collect()
        })
    }

    /// One run.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn run(&self, id: &str) -> Result<Option<RunRow>, PlaybookError> {
        self.with(|c| {
            c.query_row(
                "SELECT id, started, finished, state, operator, controller, pid, procedure, target, args FROM runs WHERE id = ?1",
                params![id],
                run_row,
            )
            .optional()
        })
    }

    /// The sites of a run, in the order they were recorded.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn sites(&self, run: &str) -> Result<Vec<SiteRow>, PlaybookError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT host, site, batch, status, step, from_version, to_version, in_maintenance, detail, updated FROM sites WHERE run = ?1 ORDER BY rowid",
            )?;
            let rows = s.query_map(params![run], |r| site_row(r, 0))?;
            rows.collect()
        })
    }

    /// The artifacts of a run.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn artifacts(&self, run: &str) -> Result<Vec<ArtifactRow>, PlaybookError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT host, unit, kind, value FROM artifacts WHERE run = ?1 ORDER BY rowid",
            )?;
            let rows = s.query_map(params![run], |r| {
                Ok(ArtifactRow {
                    host: r.get(0)?,
                    unit: r.get(1)?,
                    kind: r.get(2)?,
                    value: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The steps of a run, in order.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn steps(&self, run: &str) -> Result<Vec<StepRow>, PlaybookError> {
        self.with(|c| {
            let mut s = c.prepare("SELECT host, unit, step, state, attempt, detail FROM steps WHERE run = ?1 ORDER BY id")?;
            let rows = s.query_map(params![run], |r| {
                Ok(StepRow {
                    host: r.get(0)?,
                    unit: r.get(1)?,
                    step: r.get(2)?,
                    state: r.get(3)?,
                    attempt: r.get(4)?,
                    detail: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// A [`SiteRow`] from the columns `host, site, batch, status, step, from_version,
/// to_version, in_maintenance, detail, updated`, starting at column `at`.
fn site_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SiteRow> {
    Ok(SiteRow {
        host: r.get(at)?,
        site: r.get(at + 1)?,
        batch: r.get(at + 2)?,
        status: r.get(at + 3)?,
        step: r.get(at + 4)?,
        from_version: r.get(at + 5)?,
        to_version: r.get(at + 6)?,
        in_maintenance: r.get::<_, i64>(at + 7)? != 0,
        detail: r.get(at + 8)?,
        updated: r.get(at + 9)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        started: r.get(1)?,
        finished: r.get(2)?,
        state: r.get(3)?,
        operator: r.get(4)?,
        controller: r.get(5)?,
        pid: r.get(6)?,
        procedure: r.get(7)?,
        target: r.get(8)?,
        args: r.get(9)?,
    })
}

/// The login name running this process: `$USER`, `$LOGNAME`, else the passwd entry of the uid.
fn operator() -> String {
    for v in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(v)
            && !u.is_empty()
        {
            return u;
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .and_then(|r| r.split_whitespace().next().map(str::to_owned))
            })
        });
    let Some(uid) = uid else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid).then(|| f[0].to_owned())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `YYYYMMDD-HHMMSS` (UTC) for unix time `t`.
pub(crate) fn timestamp_id(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for unix time `t`.
pub fn format_time(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A duration as a person would say it: `42 s`, `1 min 30 s`, `3 h 12 min`, `2 d 3 h`.
pub fn format_age(secs: i64) -> String {
    let s = secs.max(0);
    match (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60) {
        (0, 0, 0, s) => format!("{s} s"),
        (0, 0, m, 0) => format!("{m} min"),
        (0, 0, m, s) => format!("{m} min {s} s"),
        (0, h, m, _) => format!("{h} h {m} min"),
        (d, h, _, _) => format!("{d} d {h} h"),
    }
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_wrote_them() {
        assert_eq!(format_age(42), "42 s");
        assert_eq!(format_age(90), "1 min 30 s");
        assert_eq!(format_age(600), "10 min");
        assert_eq!(format_age(11_525), "3 h 12 min");
        assert_eq!(format_age(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }

    #[test]
    fn dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(timestamp_id(951_782_400), "20000229-000000");
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
                .step_start(&run, "h01", "site:s1", "maintenance-on", "")
                .unwrap();
            j.set_artifact(&run, "h01", "site:s1", ArtifactKind::PriorMaintenance, "0")
                .unwrap();
            j.step_end(id, StepState::Done, "").unwrap();
            j.step_start(&run, "h01", "database:civi", "upgrade-db", "cv")
                .unwrap();
            j.site(
                &run,
                "h01",
                "s1",
                &SiteUpdate {
                    step: Some("upgrade-db"),
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
        assert_eq!(sites[0].step.as_deref(), Some("upgrade-db"));
        assert!(sites[0].in_maintenance);
        assert_eq!(sites[0].from_version.as_deref(), Some("5.69.0"));
        assert_eq!(
            j.step_state(&run, "h01", "database:civi", "upgrade-db")
                .unwrap(),
            Some(StepState::Started)
        );
        assert_eq!(
            j.artifact(&run, "h01", "site:s1", ArtifactKind::PriorMaintenance)
                .unwrap()
                .as_deref(),
            Some("0")
        );
        let again = j
            .step_start(&run, "h01", "site:s1", "maintenance-on", "")
            .unwrap();
        j.step_end(again, StepState::Done, "").unwrap();
        assert_eq!(
            j.steps(&run)
                .unwrap()
                .iter()
                .filter(|s| s.step == "maintenance-on")
                .map(|s| s.attempt)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        j.finish_run(&run, RunState::Finished).unwrap();
        assert!(j.run(&run).unwrap().unwrap().finished.is_some());
    }
}
