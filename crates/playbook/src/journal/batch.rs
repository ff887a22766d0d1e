//! Failure-budget decisions, one row per batch a command reached: whether the batch was
//! admitted (and if not, why), then how its failed hosts stood against its own budget and the
//! run's, and so whether later batches may start. The reporter's events say the same as the
//! run goes, but they are gone when it ends; `fleet runs show` reads these.

use std::fmt;

use rusqlite::params;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use super::Journal;
use crate::error::PlaybookError;
use crate::vocab::words;

words! {
    /// What the rollout decided about one batch.
    BatchVerdict, "batch verdict" {
        /// Started; not judged yet (a run that died mid-batch leaves it so).
        Admitted = "admitted",
        /// Never started: an earlier batch's verdict, the operator or an interrupt (the
        /// detail says which).
        NotAdmitted = "not-admitted",
        /// Ended within its budget and the run's: the next batch may start.
        WithinBudget = "within-budget",
        /// Ended with more failed hosts than its own budget: no later batch starts.
        OverBatchBudget = "over-batch-budget",
        /// Within its own budget, but the run's failed hosts exceed the run's budget.
        OverRunBudget = "over-run-budget",
        /// Within both budgets, but the operator aborted the run (a second Ctrl-C).
        Aborted = "aborted",
    }
}

impl BatchVerdict {
    /// Whether no batch after this one may start.
    pub fn stops(self) -> bool {
        !matches!(self, BatchVerdict::Admitted | BatchVerdict::WithinBudget)
    }
}

/// One batch and the budgets it runs under (what a decision is taken against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchBudget {
    /// 0-based index (0 = canary).
    pub batch: usize,
    /// Hosts in it.
    pub hosts: usize,
    /// Failed hosts it tolerates.
    pub budget: usize,
    /// Failed hosts the whole run tolerates.
    pub run_budget: usize,
}

/// How an ended batch stood against its budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchJudgement {
    /// The decision.
    pub verdict: BatchVerdict,
    /// Hosts of the batch that failed.
    pub failed: usize,
    /// Hosts of the run that failed so far, this batch's included.
    pub run_failed: usize,
}

impl BatchBudget {
    /// Judges the batch once it ended with `failed` failed hosts, `run_failed` in the run so
    /// far: its own budget is checked first, as that is the one an operator sets per batch.
    pub fn judge(&self, failed: usize, run_failed: usize) -> BatchJudgement {
        let verdict = if failed > self.budget {
            BatchVerdict::OverBatchBudget
        } else if run_failed > self.run_budget {
            BatchVerdict::OverRunBudget
        } else {
            BatchVerdict::WithinBudget
        };
        BatchJudgement {
            verdict,
            failed,
            run_failed,
        }
    }

    /// Why no further batch starts after `j`, in the operator's words; `None` when they may.
    pub fn stop_reason(&self, j: &BatchJudgement) -> Option<String> {
        match j.verdict {
            BatchVerdict::Admitted | BatchVerdict::WithinBudget => None,
            BatchVerdict::OverBatchBudget => Some(format!(
                "batch {} had {} failed host(s), more than its budget of {}",
                self.batch + 1,
                j.failed,
                self.budget
            )),
            BatchVerdict::OverRunBudget => Some(format!(
                "{} failed host(s) in the run, more than its budget of {}",
                j.run_failed, self.run_budget
            )),
            BatchVerdict::Aborted => Some("aborted".into()),
            // Only a batch that ran is judged; a refused one keeps the reason it was given.
            BatchVerdict::NotAdmitted => Some(format!("batch {} not admitted", self.batch + 1)),
        }
    }
}

/// One batch decision as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    /// The batch and its budgets.
    pub budget: BatchBudget,
    /// The decision (the latest: `admitted` until the batch is judged).
    pub verdict: BatchVerdict,
    /// Failed hosts of the batch, once judged.
    pub failed: Option<usize>,
    /// Failed hosts of the run so far, once judged.
    pub run_failed: Option<usize>,
    /// When the batch was admitted or refused (unix ms).
    pub started_ms: i64,
    /// When it was judged (unix ms); a refused batch's equals its `started_ms`.
    pub finished_ms: Option<i64>,
    /// Why it was refused, or why it stopped the run.
    pub detail: Option<String>,
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uncount(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

impl Journal {
    /// Records that batch `b` of `run` is admitted; returns the row for
    /// [`Journal::batch_judged`]. Committed before any of its hosts is.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn batch_admitted(&self, run: &str, b: &BatchBudget) -> Result<i64, PlaybookError> {
        self.insert_batch(run, b, BatchVerdict::Admitted, None)
    }

    /// Records that batch `b` of `run` is not admitted, and `why`.
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn batch_not_admitted(
        &self,
        run: &str,
        b: &BatchBudget,
        why: &str,
    ) -> Result<(), PlaybookError> {
        self.insert_batch(run, b, BatchVerdict::NotAdmitted, Some(why))
            .map(|_| ())
    }

    fn insert_batch(
        &self,
        run: &str,
        b: &BatchBudget,
        verdict: BatchVerdict,
        why: Option<&str>,
    ) -> Result<i64, PlaybookError> {
        let now = super::now_ms();
        // A refused batch is decided at once: it ends when it is recorded.
        let finished = why.map(|_| now);
        self.write(|c| {
            c.execute(
                "INSERT INTO batches (run, batch, hosts, budget, run_budget, verdict, started, finished, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![run, count(b.batch), count(b.hosts), count(b.budget), count(b.run_budget), verdict, now, finished, why],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records how admitted batch `id` ended against its budgets, and `why` it stops the run
    /// (empty when it does not).
    ///
    /// # Errors
    ///
    /// When the journal cannot be written.
    pub fn batch_judged(
        &self,
        id: i64,
        j: &BatchJudgement,
        why: &str,
    ) -> Result<(), PlaybookError> {
        self.write(|c| {
            c.execute(
                "UPDATE batches SET verdict = ?2, failed = ?3, run_failed = ?4, finished = ?5, detail = NULLIF(?6, '') WHERE id = ?1",
                params![id, j.verdict, count(j.failed), count(j.run_failed), super::now_ms(), why],
            )
        })
        .map(|_| ())
    }

    /// The batch decisions of a run, in the order they were taken (a resumed run's come
    /// after its first pass's).
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn batches(&self, run: &str) -> Result<Vec<BatchRow>, PlaybookError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT batch, hosts, budget, run_budget, verdict, failed, run_failed, started, finished, detail FROM batches WHERE run = ?1 ORDER BY id",
            )?;
            let rows = s.query_map(params![run], |r| {
                Ok(BatchRow {
                    budget: BatchBudget {
                        batch: uncount(r.get(0)?),
                        hosts: uncount(r.get(1)?),
                        budget: uncount(r.get(2)?),
                        run_budget: uncount(r.get(3)?),
                    },
                    verdict: r.get(4)?,
                    failed: r.get::<_, Option<i64>>(5)?.map(uncount),
                    run_failed: r.get::<_, Option<i64>>(6)?.map(uncount),
                    started_ms: r.get(7)?,
                    finished_ms: r.get(8)?,
                    detail: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(batch: usize, hosts: usize, budget: usize, run_budget: usize) -> BatchBudget {
        BatchBudget {
            batch,
            hosts,
            budget,
            run_budget,
        }
    }

    #[test]
    fn a_batch_is_judged_against_its_own_budget_first_then_the_runs() {
        #[track_caller]
        fn case(b: BatchBudget, failed: usize, run_failed: usize, want: BatchVerdict) {
            assert_eq!(b.judge(failed, run_failed).verdict, want);
        }
        case(budget(0, 1, 0, 1), 0, 0, BatchVerdict::WithinBudget);
        case(budget(0, 1, 0, 1), 1, 1, BatchVerdict::OverBatchBudget);
        case(budget(1, 4, 1, 1), 1, 1, BatchVerdict::WithinBudget);
        case(budget(2, 4, 1, 1), 1, 2, BatchVerdict::OverRunBudget);
        case(budget(2, 4, 1, 1), 2, 3, BatchVerdict::OverBatchBudget);
    }

    #[test]
    fn stop_reasons_are_the_operators_words() {
        let b = budget(1, 4, 1, 2);
        assert_eq!(b.stop_reason(&b.judge(1, 1)), None);
        assert_eq!(
            b.stop_reason(&b.judge(2, 2)).as_deref(),
            Some("batch 2 had 2 failed host(s), more than its budget of 1")
        );
        assert_eq!(
            b.stop_reason(&b.judge(1, 3)).as_deref(),
            Some("3 failed host(s) in the run, more than its budget of 2")
        );
        assert!(BatchVerdict::OverRunBudget.stops());
        assert!(!BatchVerdict::WithinBudget.stops());
    }

    #[test]
    fn decisions_read_back_in_the_order_they_were_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (j, run) = crate::journal::tests::with_run(dir.path());
        let canary = budget(0, 1, 0, 1);
        let id = j.batch_admitted(&run, &canary).unwrap();
        assert_eq!(j.batches(&run).unwrap()[0].verdict, BatchVerdict::Admitted);
        assert_eq!(j.batches(&run).unwrap()[0].finished_ms, None);
        let verdict = canary.judge(1, 1);
        let why = canary.stop_reason(&verdict).unwrap();
        j.batch_judged(id, &verdict, &why).unwrap();
        j.batch_not_admitted(&run, &budget(1, 3, 0, 1), &why)
            .unwrap();
        let rows = j.batches(&run).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].budget, canary);
        assert_eq!(rows[0].verdict, BatchVerdict::OverBatchBudget);
        assert_eq!((rows[0].failed, rows[0].run_failed), (Some(1), Some(1)));
        assert_eq!(rows[0].detail.as_deref(), Some(why.as_str()));
        assert!(rows[0].finished_ms >= Some(rows[0].started_ms));
        assert_eq!(rows[1].budget.batch, 1);
        assert_eq!(rows[1].verdict, BatchVerdict::NotAdmitted);
        assert_eq!(rows[1].failed, None);
        assert_eq!(rows[1].finished_ms, Some(rows[1].started_ms));
        assert_eq!(rows[1].detail.as_deref(), Some(why.as_str()));
        // A batch within its budgets keeps no detail.
        let id = j.batch_admitted(&run, &canary).unwrap();
        j.batch_judged(id, &canary.judge(0, 0), "").unwrap();
        assert_eq!(j.batches(&run).unwrap()[2].detail, None);
        for v in BatchVerdict::ALL {
            assert_eq!(BatchVerdict::parse(v.as_str()), Some(*v));
        }
    }
}
