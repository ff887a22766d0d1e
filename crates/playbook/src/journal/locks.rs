//! The site locks a run may still hold on its hosts, as the journal knows them: each lock is
//! recorded (its directory on the host) before it is taken, so a controller killed at any
//! moment leaves the journal naming every lock it might have left behind.

use rusqlite::params;

use super::Journal;
use crate::error::PlaybookError;
use crate::vocab::Unit;

/// A site lock run `run` recorded and never released afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// Host name.
    pub host: String,
    /// Site name.
    pub site: String,
    /// The lock's directory on the host.
    pub dir: String,
}

impl Journal {
    /// The site locks of `run` recorded and not released by a later `unlock` of the same run:
    /// held, or possibly held (the controller died between the record and the `mkdir`; the
    /// release only removes a lock that names the run, so asking is harmless).
    ///
    /// # Errors
    ///
    /// When the journal cannot be read.
    pub fn held_locks(&self, run: &str) -> Result<Vec<HeldLock>, PlaybookError> {
        self.with(|c| {
            let mut s = c.prepare(
                "SELECT a.host, a.unit, a.value FROM artifacts a
                 WHERE a.run = ?1 AND a.kind = 'lock' AND NOT EXISTS (
                   SELECT 1 FROM steps u
                   WHERE u.run = a.run AND u.host = a.host AND u.unit = a.unit
                     AND u.step = 'unlock' AND u.state = 'done'
                     AND u.id > COALESCE((SELECT MAX(l.id) FROM steps l
                       WHERE l.run = a.run AND l.host = a.host AND l.unit = a.unit
                         AND l.step = 'lock'), 0))
                 ORDER BY a.host, a.unit",
            )?;
            let rows = s.query_map(params![run], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Unit>(1)?, r.get(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (host, unit, dir) = row?;
                if let Unit::Site(site) = unit {
                    out.push(HeldLock { host, site, dir });
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{ArtifactKind, StepName, StepState};

    #[test]
    fn a_lock_is_held_from_its_record_until_a_later_unlock() {
        let dir = tempfile::tempdir().unwrap();
        let (j, run) = crate::journal::tests::with_run(dir.path());
        let step = |site: &str, name: &str, state: StepState| {
            let id = j
                .step_start(&run, "h01", &Unit::site(site), &StepName::parse(name), "")
                .unwrap();
            j.step_end(id, state, "").unwrap();
        };
        let record = |site: &str| {
            j.set_artifact(
                &run,
                "h01",
                &Unit::site(site),
                ArtifactKind::Lock,
                &format!("/b/.fleet-locks/{site}"),
            )
            .unwrap();
        };
        let held = || -> Vec<String> {
            j.held_locks(&run)
                .unwrap()
                .into_iter()
                .map(|l| l.site)
                .collect()
        };
        // Recorded, the controller dead before the mkdir: possibly held.
        record("s1");
        assert_eq!(held(), ["s1"]);
        step("s1", "lock", StepState::Done);
        record("s2");
        step("s2", "lock", StepState::Done);
        // A failed unlock releases nothing.
        step("s1", "unlock", StepState::Failed);
        assert_eq!(held(), ["s1", "s2"]);
        step("s1", "unlock", StepState::Done);
        assert_eq!(held(), ["s2"]);
        // Taken again (a resume): held again until its own unlock.
        step("s1", "lock", StepState::Done);
        assert_eq!(held(), ["s1", "s2"]);
        step("s1", "unlock", StepState::Done);
        step("s2", "unlock", StepState::Done);
        assert!(held().is_empty());
        // Another run's locks are its own.
        assert!(j.held_locks("other").unwrap().is_empty());
    }
}
