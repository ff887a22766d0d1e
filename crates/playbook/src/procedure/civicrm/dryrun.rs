//! What `cv upgrade:db --dry-run` says, read and judged: the pending upgrade tasks, and
//! whether the dry run shows the upgrade the step is about to run.

/// What `cv upgrade:db --dry-run` said, as [`SiteCmds::dry_run_db`] prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DryRun {
    /// cv's exit status (empty when the script did not get that far).
    pub(crate) rc: String,
    /// `Found CiviCRM database version X.`
    pub(crate) db: String,
    /// `Found CiviCRM code version X.`
    pub(crate) code: String,
    /// cv planned a core upgrade (`Executing upgrade...`), not only extension upgrades.
    pub(crate) core: bool,
    /// The tasks it walked, in order (titles, as `-v` prints them).
    pub(crate) tasks: Vec<String>,
    /// The DB version re-read after it.
    pub(crate) db_after: String,
    /// cv's last line (its error, when it failed).
    pub(crate) last: String,
}

/// Parses what [`SiteCmds::dry_run_db`] printed. Anything shown to the operator later has its
/// control characters replaced: it is the host's text.
pub(crate) fn parse_dry_run(out: &str) -> DryRun {
    let clean = |s: &str| -> String {
        s.trim()
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    };
    let mut d = DryRun::default();
    let lines: Vec<&str> = out.lines().collect();
    // Our own two lines come last; cv's output is everything before them.
    let mut end = lines.len();
    for key in ["db=", "rc="] {
        if let Some(i) = lines[..end].iter().rposition(|l| l.starts_with(key)) {
            let v = clean(&lines[i][key.len()..]);
            if key == "db=" {
                d.db_after = v;
            } else {
                d.rc = v;
            }
            end = i;
        }
    }
    let mut in_tasks = false;
    for line in &lines[..end] {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Found CiviCRM database version ") {
            d.db = clean(v.trim_end_matches('.'));
        } else if let Some(v) = l.strip_prefix("Found CiviCRM code version ") {
            d.code = clean(v.trim_end_matches('.'));
        } else if l == "Executing upgrade..." {
            d.core = true;
            in_tasks = true;
        } else if l == "Preparing extension upgrade..." {
            in_tasks = true;
        } else if l == "Finishing upgrade..." || l == "Have a nice day." {
            in_tasks = false;
        } else if in_tasks && !l.is_empty() && !l.chars().all(|c| c == '.') {
            d.tasks.push(clean(l));
        }
        if !l.is_empty() {
            d.last = clean(l);
        }
    }
    d
}

impl DryRun {
    /// The tasks, if the dry run holds for a database at `db` under code at `code`: it
    /// exited 0, cv saw the same two versions (not another site's: cv falls back to
    /// `sites/default` without a word), the database is unchanged after it, and, with
    /// `need_core`, cv planned a core upgrade (in extension mode it would "upgrade"
    /// without changing the schema, and exit 0).
    ///
    /// # Errors
    ///
    /// Why it does not hold, in one line.
    pub(crate) fn judge(
        &self,
        db: &str,
        code: &str,
        need_core: bool,
    ) -> Result<Vec<String>, String> {
        if !self.db_after.is_empty() && self.db_after != db {
            return Err(format!(
                "the database is at `{}` after the dry run, it was at `{db}`: the dry run changed it",
                self.db_after
            ));
        }
        if self.rc != "0" {
            return Err(format!(
                "cv upgrade:db --dry-run exited {}: {}",
                if self.rc.is_empty() { "?" } else { &self.rc },
                self.last
            ));
        }
        if self.db_after.is_empty() {
            return Err("the database version cannot be re-read after the dry run".into());
        }
        if self.db != db || self.code != code {
            return Err(format!(
                "cv sees database `{}` and code `{}`, not `{db}` and `{code}`: it is not looking at this site",
                self.db, self.code
            ));
        }
        if need_core && !self.core {
            return Err(format!(
                "cv plans no core upgrade from `{db}` to `{code}` (extension mode): the upgrade would change nothing"
            ));
        }
        Ok(self.tasks.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_runs_are_read_and_judged() {
        let full = "Found CiviCRM database version 5.69.0.\nFound CiviCRM code version 5.70.0.\nChecking pre-upgrade messages...\n(No messages)\nDropping SQL triggers...\nPreparing upgrade...\nExecuting upgrade...\nCleanup old files\nUpgrade DB to 5.70.0\nFinishing upgrade...\nUpgrade to 5.70.0 completed.\nChecking post-upgrade messages...\n(No messages)\nHave a nice day.\nrc=0\ndb=5.69.0\n";
        let d = parse_dry_run(full);
        assert_eq!(
            (d.db.as_str(), d.code.as_str(), d.core),
            ("5.69.0", "5.70.0", true)
        );
        assert_eq!(d.tasks, ["Cleanup old files", "Upgrade DB to 5.70.0"]);
        assert_eq!(d.judge("5.69.0", "5.70.0", true).unwrap(), d.tasks);
        // Dots (normal verbosity) are no tasks.
        let dots = full.replace("Cleanup old files\nUpgrade DB to 5.70.0\n", "..\n");
        assert!(parse_dry_run(&dots).tasks.is_empty());
        let ext = "Found CiviCRM database version 5.69.0.\nFound CiviCRM code version 5.69.0.\nPreparing extension upgrade...\n\nHave a nice day.\nrc=0\ndb=5.69.0\n";
        let e = parse_dry_run(ext);
        assert!(!e.core && e.tasks.is_empty());
        assert_eq!(
            e.judge("5.69.0", "5.69.0", false).unwrap(),
            Vec::<String>::new()
        );
        #[track_caller]
        fn refused(out: &str, db: &str, code: &str, core: bool, says: &str) {
            let why = parse_dry_run(out).judge(db, code, core).unwrap_err();
            assert!(why.contains(says), "`{why}` does not say `{says}`");
        }
        // Extension mode where a core upgrade is due: the real upgrade would do nothing.
        let ext_new = ext.replace("code version 5.69.0", "code version 5.70.0");
        refused(
            &ext_new,
            "5.69.0",
            "5.70.0",
            true,
            "plans no core upgrade from `5.69.0` to `5.70.0`",
        );
        refused(
            full,
            "5.68.0",
            "5.70.0",
            true,
            "the database is at `5.69.0` after the dry run, it was at `5.68.0`",
        );
        refused(
            full,
            "5.69.0",
            "5.71.0",
            true,
            "cv sees database `5.69.0` and code `5.70.0`, not `5.69.0` and `5.71.0`",
        );
        let failed = "Found CiviCRM database version 5.69.0.\nFound CiviCRM code version 5.69.0.\n\n  [Exception]\n  DB Error: connect \x1b[31mfailed\n\nrc=1\ndb=5.69.0\n";
        refused(
            failed,
            "5.69.0",
            "5.69.0",
            false,
            "cv upgrade:db --dry-run exited 1: DB Error: connect ?[31mfailed",
        );
        refused(
            "rc=0\ndb=\n",
            "5.69.0",
            "5.69.0",
            false,
            "cannot be re-read",
        );
        refused("", "5.69.0", "5.69.0", false, "exited ?");
    }
}
