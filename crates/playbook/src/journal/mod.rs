//! The run journal: every run, every (site, step) transition, and where each backup is, in an
//! SQLite database (WAL, `synchronous=FULL`), written *before* the side effect it guards and
//! after it.
//!
//! Intent rows are few per step and cost far less than the SSH round trip they guard, so they
//! are committed one by one; nothing is batched that a crash could need.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::PlaybookError;

// Times are unix milliseconds since schema 2. A release before it, still run against a
// migrated journal, writes seconds: every read takes a value below 10^11 (year 5138 in
// seconds, 1973 in milliseconds) for seconds, so ordering and ages stay right either way.
mod batch;
mod fault;
mod locks;
mod schema;
mod time;

use crate::vocab::{ArtifactKind, RunState, SiteStatus, StepName, StepState, Unit};
pub use batch::{BatchBudget, BatchJudgement, BatchRow, BatchVerdict};
use fault::{KillSwitch, Moment};
pub use locks::HeldLock;
pub(crate) use time::timestamp_id;
pub use time::{age_of, format_age, format_time, now_ms, unix_now};

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
    /// When it started (unix ms).
    pub started_ms: i64,
    /// When it ended, if it did (unix ms).
    pub finished_ms: Option<i64>,
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
    pub step: Option<StepName>,
    /// Version before.
    pub from_version: Option<String>,
    /// Version after (or targeted).
    pub to_version: Option<String>,
    /// Whether the journal believes the site is in maintenance because of this run.
    pub in_maintenance: bool,
    /// Reason or note.
    pub detail: Option<String>,
    /// When it last changed (unix ms).
    pub updated_ms: i64,
}

/// One artifact (backup path, recorded prior state) of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    /// Host name.
    pub host: String,
    /// Unit (`site:x`, `database:y`, `codebase:/path`).
    pub unit: Unit,
    /// Kind.
    pub kind: ArtifactKind,
    /// Value (a path, a recorded state).
    pub value: String,
}

/// A step row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    /// Its id (what a step's processes carry on the host in `FLEET_RUN_STEP`).
    pub id: i64,
    /// Host.
    pub host: String,
    /// Unit.
    pub unit: Unit,
    /// Step name.
    pub step: StepName,
    /// State.
    pub state: StepState,
    /// Attempt number.
    pub attempt: i64,
    /// When it was recorded as started (unix ms).
    pub started_ms: i64,
    /// When it ended (unix ms); `None` while it runs, or when its controller died first.
    pub finished_ms: Option<i64>,
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
    pub step: Option<&'a StepName>,
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
    /// Every write that failed since the journal was opened: the caller refused the side
    /// effect it guarded, and the operator must hear of it even when the caller carried on.
    failures: Mutex<Vec<String>>,
    /// The fault suite's kill switch (off unless its environment variable is set).
    kill: KillSwitch,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` (`journal.sqlite`): the directory
    /// the operator's alone (0700 when created), the file readable by the operator only.
    ///
    /// # Errors
    ///
    /// [`PlaybookError::Journal`] when the directory or database cannot be created, or the
    /// directory is writable by others or not the operator's.
    pub fn open(dir: &Path) -> Result<Journal, PlaybookError> {
        let path = dir.join("journal.sqlite");
        private_dir(dir).map_err(|e| PlaybookError::journal(dir, e))?;
        private_file(&path).map_err(|e| PlaybookError::journal(&path, e))?;
        let mut conn = Connection::open(&path).map_err(|e| PlaybookError::journal(&path, e))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;")
            .map_err(|e| PlaybookError::journal(&path, e))?;
        schema::migrate(&mut conn).map_err(|e| match e {
            schema::SchemaError::Sql(e) => PlaybookError::journal(&path, e),
            schema::SchemaError::Newer(v) => PlaybookError::journal(
                &path,
                std::io::Error::other(format!(
                    "written by a newer fleet (schema {v}; this fleet reads up to {}): upgrade fleet",
                    schema::CURRENT
                )),
            ),
        })?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
            failures: Mutex::new(Vec::new()),
            kill: KillSwitch::from_env(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writes that failed since the journal was opened, oldest first.
    pub fn write_failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// [`Journal::with`] for a write: a failure is also kept for [`Journal::write_failures`].
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, PlaybookError> {
        // The kill switch counts under the connection's lock, so that the N-th write is the
        // N-th to commit even when hosts write at once.
        self.with(|c| {
            if !self.kill.wants_inside() {
                let out = f(c)?;
                self.kill.at(Moment::Committed);
                return Ok(out);
            }
            // The fault suite's kill inside a write: the statement runs in a transaction of
            // its own and the process dies before the commit.
            c.execute_batch("BEGIN IMMEDIATE")?;
            let out = f(c)?;
            self.kill.at(Moment::Inside);
            c.execute_batch("COMMIT")?;
            self.kill.at(Moment::Committed);
            Ok(out)
        })
        .inspect_err(|e| {
            let mut text = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(c) = cur {
                text.push_str(&format!(": {c}"));
                cur = c.source();
            }
            self.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(text);
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, PlaybookError> {
        let call = || {
            let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn).map_err(|e| PlaybookError::journal(&self.path, e))
        };
        // SQLite waits for the disk (an fsync per commit) and for other processes' locks:
        // on a worker of the multi-threaded runtime, that wait is handed off so that the
        // other hosts' tasks go on meanwhile. Elsewhere (a test's runtime, no runtime) the
        // call simply runs.
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(call)
            }
            _ => call(),
        }
    }

    /// Records a new run and returns its id (`YYYYMMDD-HHMMSS-xxxx`).
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn create_run(&self, info: &RunInfo) -> Result<String, PlaybookError> {
        let t = now_ms();
        let secs = t / 1000;
        let id = format!(
            "{}-{:04x}",
            timestamp_id(secs),
            (std::process::id() ^ (secs as u32).rotate_left(7)) & 0xffff
        );
        let operator = operator();
        let controller = hostname();
        self.write(|c| {
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
        self.write(|c| {
            c.execute(
                "UPDATE runs SET state = ?2, finished = ?3 WHERE id = ?1",
                params![run, state, now_ms()],
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
        self.write(|c| {
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
        self.write(|c| {
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
        self.write(|c| {
            c.execute(
                "UPDATE runs SET state = ?2, finished = ?3, pid = ?4, controller = ?5 WHERE id = ?1",
                params![seen.id, seen.state, seen.finished_ms, seen.pid, seen.controller],
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
        self.write(|c| {
            c.execute(
                "INSERT INTO sites (run, host, site, batch, unit_group, status, step, from_version, to_version, in_maintenance, detail, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, 'pending'), ?7, ?8, ?9, COALESCE(?10, 0), ?11, ?12)
                 ON CONFLICT (run, host, site) DO UPDATE SET
                    batch = COALESCE(?4, batch), unit_group = COALESCE(?5, unit_group), status = COALESCE(?6, status),
                    step = COALESCE(?7, step), from_version = COALESCE(?8, from_version), to_version = COALESCE(?9, to_version),
                    in_maintenance = COALESCE(?10, in_maintenance), detail = COALESCE(?11, detail), updated = ?12",
                params![
                    run, host, site, u.batch, u.unit_group, u.status, u.step, u.from_version, u.to_version,
                    u.in_maintenance.map(i64::from), u.detail, now_ms()
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
        unit: &Unit,
        step: &StepName,
        detail: &str,
    ) -> Result<i64, PlaybookError> {
        self.write(|c| {
            let attempt: i64 = c.query_row(
                "SELECT COUNT(*) FROM steps WHERE run = ?1 AND host = ?2 AND unit = ?3 AND step = ?4",
                params![run, host, unit, step],
                |r| r.get(0),
            )?;
            c.execute(
                "INSERT INTO steps (run, host, unit, step, state, attempt, started, detail) VALUES (?1, ?2, ?3, ?4, 'started', ?5, ?6, ?7)",
                params![run, host, unit, step, attempt + 1, now_ms(), detail],
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
        self.write(|c| {
            c.execute(
                "UPDATE steps SET state = ?2, finished = ?3, detail = CASE WHEN ?4 = '' THEN detail ELSE ?4 END WHERE id = ?1",
                params![id, state, now_ms(), detail],
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
        unit: &Unit,
        step: &StepName,
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
        unit: &Unit,
        kind: ArtifactKind,
        value: &str,
    ) -> Result<(), PlaybookError> {
        self.write(|c| {
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
        unit: &Unit,
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

    /// When `step` last finished `done` on `unit` (unix ms), e.g. when a dump was taken.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn step_done_at(
        &self,
        run: &str,
        host: &str,
        unit: &Unit,
        step: &StepName,
    ) -> Result<Option<i64>, PlaybookError> {
        self.with(|c| {
            c.query_row(
                "SELECT MAX((CASE WHEN finished < 100000000000 THEN finished * 1000 ELSE finished END)) FROM steps WHERE run = ?1 AND host = ?2 AND unit = ?3 AND step = ?4 AND state = 'done'",
                params![run, host, unit, step],
                |r| r.get(0),
            )
        })
    }

    /// Every run's row for one site, oldest run first: `(run id, run started (unix ms), row)`.
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
                "SELECT s.run, (CASE WHEN r.started < 100000000000 THEN r.started * 1000 ELSE r.started END), s.host, s.site, s.batch, s.status, s.step, s.from_version, s.to_version, s.in_maintenance, s.detail, (CASE WHEN s.updated < 100000000000 THEN s.updated * 1000 ELSE s.updated END)
                 FROM sites s JOIN runs r ON r.id = s.run WHERE s.host = ?1 AND s.site = ?2 ORDER BY (CASE WHEN r.started < 100000000000 THEN r.started * 1000 ELSE r.started END), r.id",
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
            let mut s = c.prepare("SELECT id, (CASE WHEN started < 100000000000 THEN started * 1000 ELSE started END), (CASE WHEN finished < 100000000000 THEN finished * 1000 ELSE finished END), state, operator, controller, pid, procedure, target, args FROM runs ORDER BY (CASE WHEN started < 100000000000 THEN started * 1000 ELSE started END) DESC, id DESC")?;
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
                "SELECT id, (CASE WHEN started < 100000000000 THEN started * 1000 ELSE started END), (CASE WHEN finished < 100000000000 THEN finished * 1000 ELSE finished END), state, operator, controller, pid, procedure, target, args FROM runs WHERE id = ?1",
                params![id],
                run_row,
            )
            .optional()
        })
    }

    /// One site's row of a run, if the run has it.
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn site_row(
        &self,
        run: &str,
        host: &str,
        site: &str,
    ) -> Result<Option<SiteRow>, PlaybookError> {
        self.with(|c| {
            c.query_row(
                "SELECT host, site, batch, status, step, from_version, to_version, in_maintenance, detail, (CASE WHEN updated < 100000000000 THEN updated * 1000 ELSE updated END) FROM sites WHERE run = ?1 AND host = ?2 AND site = ?3",
                params![run, host, site],
                |r| site_row(r, 0),
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
                "SELECT host, site, batch, status, step, from_version, to_version, in_maintenance, detail, (CASE WHEN updated < 100000000000 THEN updated * 1000 ELSE updated END) FROM sites WHERE run = ?1 ORDER BY rowid",
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
            let mut s = c.prepare("SELECT id, host, unit, step, state, attempt, detail, (CASE WHEN started < 100000000000 THEN started * 1000 ELSE started END), (CASE WHEN finished < 100000000000 THEN finished * 1000 ELSE finished END) FROM steps WHERE run = ?1 ORDER BY id")?;
            let rows = s.query_map(params![run], |r| {
                Ok(StepRow {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    unit: r.get(2)?,
                    step: r.get(3)?,
                    state: r.get(4)?,
                    attempt: r.get(5)?,
                    detail: r.get(6)?,
                    started_ms: r.get(7)?,
                    finished_ms: r.get(8)?,
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
        updated_ms: r.get(at + 9)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        started_ms: r.get(1)?,
        finished_ms: r.get(2)?,
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

/// Creates `dir` for the operator alone (0700) when missing, and refuses one others may
/// write to or that is not the operator's: whoever can write there can rewrite the record
/// of what was done to the sites, or swap the journal for one of their own.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let meta = std::fs::metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "the directory is owned by uid {}, not by you (uid {me}): use a state dir of your own (`--state-dir`)",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "the directory is writable by others (mode {mode:04o}): `chmod go-w {}`, or use another `--state-dir`",
            dir.display()
        )));
    }
    Ok(())
}

/// Creates the journal file readable by the operator alone (0600), and takes others' access
/// from an existing one (SQLite gives its WAL and shared-memory files the same mode).
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
