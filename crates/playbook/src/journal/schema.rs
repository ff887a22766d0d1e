//! The journal's tables, and the migrations that bring a journal written by an earlier fleet
//! to the current schema. The version lives in `schema_version`; a journal from before that
//! table existed (it has `runs` but no version) is version 1.

use rusqlite::{Connection, OptionalExtension};

/// The schema this build writes.
pub(crate) const CURRENT: i64 = 3;

/// The latest schema, for a new journal.
const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started INTEGER NOT NULL,       -- unix time in ms, like every time column
    finished INTEGER,
    state TEXT NOT NULL,            -- running | finished | failed | interrupted | rolled-back
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

/// The failure-budget decisions (schema 3), one row per batch a command reached.
const BATCHES: &str = r"
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    run TEXT NOT NULL REFERENCES runs(id),
    batch INTEGER NOT NULL,         -- 0 = canary
    hosts INTEGER NOT NULL,
    budget INTEGER NOT NULL,        -- failed hosts the batch tolerates
    run_budget INTEGER NOT NULL,    -- failed hosts the run tolerates
    verdict TEXT NOT NULL,          -- admitted | not-admitted | within-budget | over-batch-budget | over-run-budget | aborted
    failed INTEGER,                 -- the batch's failed hosts, once judged
    run_failed INTEGER,             -- the run's failed hosts so far, once judged
    started INTEGER NOT NULL,
    finished INTEGER,
    detail TEXT
);
";

/// `(version it brings the journal to, SQL)`, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        2,
        // Times were whole seconds; they are milliseconds now (steps a second apart sort).
        "UPDATE runs SET started = started * 1000, finished = finished * 1000;
     UPDATE sites SET updated = updated * 1000;
     UPDATE steps SET started = started * 1000, finished = finished * 1000;",
    ),
    // Runs journaled before it recorded no budget decision: they have no rows, and
    // `fleet runs show` says so rather than guess them.
    (3, BATCHES),
];

/// Why a journal cannot be brought to [`CURRENT`].
#[derive(Debug)]
pub(crate) enum SchemaError {
    /// Written by a newer fleet.
    Newer(i64),
    /// SQLite failed.
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(e: rusqlite::Error) -> Self {
        SchemaError::Sql(e)
    }
}

/// Creates the tables of a new journal or migrates an older one, in one transaction: a
/// migration that fails leaves the journal as it was.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    // Immediate: two processes opening an old journal at once migrate it once, in turn,
    // instead of the second failing on a stale snapshot.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let has_runs: bool = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")?;
    let recorded: Option<i64> =
        tx.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?;
    let from = match recorded {
        Some(v) => v,
        None if has_runs => 1,
        None => 0,
    };
    if from > CURRENT {
        return Err(SchemaError::Newer(from));
    }
    if from == 0 {
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(BATCHES)?;
    } else {
        for (to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > from) {
            tx.execute_batch(sql)?;
            tracing::info!(to, "journal schema migrated");
        }
    }
    if from != CURRENT {
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [CURRENT],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The version-1 schema (times in seconds, no version table), to test the migration.
#[cfg(test)]
pub(crate) const V1: &str = SCHEMA;
