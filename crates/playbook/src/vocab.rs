//! The journal's vocabulary: site statuses, run states, step states, artifact kinds, units
//! and step names as enums, turned into their words only at the SQL boundary (and for
//! people). A word the journal holds that this build does not know is an error naming it,
//! never a guess.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

macro_rules! words {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            /// The word the journal stores.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// The value a stored word names.
            pub fn parse(word: &str) -> Option<$name> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let word = value.as_str()?;
                $name::parse(word).ok_or_else(|| {
                    FromSqlError::Other(format!(concat!("unknown ", $what, " `{}` (written by a newer fleet?)"), word).into())
                })
            }
        }
    };
}

// Other modules keep their own journal words the same way (the batch verdicts).
pub(crate) use words;

words! {
    /// Where a site of a run stands.
    SiteStatus, "site status" {
        /// Recorded, not yet reached.
        Pending = "pending",
        /// The procedure is working on it (the step column says where).
        Running = "running",
        /// At the target version.
        Upgraded = "upgraded",
        /// A playbook that installs nothing went through on it.
        Done = "done",
        /// Already at the target.
        Skipped = "skipped",
        /// Failed without changing anything (or refused at preflight).
        Failed = "failed",
        /// Back on its old code and databases from the run's backups.
        RolledBack = "rolled-back",
        /// Restored, but kept in maintenance for a person to look at.
        Held = "held",
        /// The way back did not complete: the site may be half restored.
        RollbackFailed = "rollback-failed",
        /// `fleet rollback` refused it (a later run changed it, or it moved on).
        Refused = "refused",
        /// Could not be reached.
        Unreachable = "unreachable",
        /// Its batch was never admitted.
        NotStarted = "not-started",
        /// Stopped mid-way by the operator; remote state re-read on recovery.
        Interrupted = "interrupted",
        /// A later run took the site over (its lock and its way back).
        Superseded = "superseded",
    }
}

impl SiteStatus {
    /// The run is done with the site: it is at the target, or a later run owns it.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            SiteStatus::Upgraded | SiteStatus::Done | SiteStatus::Skipped | SiteStatus::Superseded
        )
    }

    /// The run changed the site (its backups describe what the site was before).
    pub fn touched(self) -> bool {
        matches!(
            self,
            SiteStatus::Upgraded
                | SiteStatus::Done
                | SiteStatus::RolledBack
                | SiteStatus::Held
                | SiteStatus::RollbackFailed
                | SiteStatus::Running
                | SiteStatus::Interrupted
        )
    }

    /// The run left the site between two safe ends: recovery must re-read and finish it.
    pub fn is_midway(self) -> bool {
        matches!(
            self,
            SiteStatus::Running
                | SiteStatus::Interrupted
                | SiteStatus::RollbackFailed
                | SiteStatus::Held
        )
    }
}

words! {
    /// A run as a whole.
    RunState, "run state" {
        /// A controller drives it (or did, until it died: see the pid).
        Running = "running",
        /// Every site is settled.
        Finished = "finished",
        /// Some site did not reach the target; none is left down by the run.
        Failed = "failed",
        /// Stopped with sites still to recover (in maintenance or mid-step).
        Interrupted = "interrupted",
        /// `fleet rollback` put every changed site back.
        RolledBack = "rolled-back",
    }
}

/// What the sites of a run say about the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct SiteTally {
    /// Sites recorded.
    pub sites: usize,
    /// Settled ones ([`SiteStatus::is_settled`]).
    pub settled: usize,
    /// Ones the journal believes are in maintenance because of this run, held ones aside
    /// (`--on-failure hold` keeps a site down on purpose, for a person to look at).
    pub in_maintenance: usize,
    /// Ones left mid-step ([`SiteStatus::is_midway`]), held ones aside.
    pub midway: usize,
}

impl SiteTally {
    /// Counts `rows`.
    pub fn of(rows: &[crate::journal::SiteRow]) -> SiteTally {
        let mut t = SiteTally {
            sites: rows.len(),
            ..SiteTally::default()
        };
        for r in rows {
            t.settled += usize::from(r.status.is_settled());
            let held = r.status == SiteStatus::Held;
            t.in_maintenance += usize::from(r.in_maintenance && !held);
            t.midway += usize::from(r.status.is_midway() && !held);
        }
        t
    }
}

impl RunState {
    /// The one rule for the state a run ends a command in (upgrade, resume, recover): every
    /// site settled is `finished`; a site left down or mid-step (or an interrupt that left
    /// work undone) is `interrupted`, so `fleet recover` finds it; otherwise `failed`.
    pub fn decide(t: SiteTally, interrupted: bool) -> RunState {
        if t.settled == t.sites {
            RunState::Finished
        } else if t.in_maintenance > 0 || t.midway > 0 || interrupted {
            RunState::Interrupted
        } else {
            RunState::Failed
        }
    }
}

words! {
    /// One attempt of a step.
    StepState, "step state" {
        /// Recorded before the command was sent: it may have run, partly or fully.
        Started = "started",
        /// Ended and judged successful.
        Done = "done",
        /// Ended and judged failed (or never sent: the detail says why).
        Failed = "failed",
        /// Undone by the undo chain.
        Undone = "undone",
        /// Its undo failed.
        UndoFailed = "undo-failed",
    }
}

words! {
    /// What a run recorded so that the way back and a resume can find it.
    ArtifactKind, "artifact kind" {
        /// A site's `maintenance_mode` before the run (`0`, `1`, `unset`).
        PriorMaintenance = "prior-maintenance",
        /// A database dump: `PATH sha256:HEX`.
        DbDump = "db-dump",
        /// A dump `fleet rollback` took before replacing a database: `PATH sha256:HEX`.
        SafetyDump = "safety-dump",
        /// Where the old code was moved.
        CodeBackup = "code-backup",
        /// The integration modules the run disabled, space-separated.
        DisabledModules = "disabled-modules",
        /// The on-host lock directory the run holds.
        Lock = "lock",
        /// The local release tarball (run-wide).
        Tarball = "tarball",
        /// The text of the playbook the run started with (run-wide).
        Playbook = "playbook",
        /// The options the run started with, as TOML (run-wide).
        Options = "options",
        /// The text of the migration manifest the run started with (run-wide).
        Manifest = "manifest",
        /// A release directory the run creates (`fleet migrate build`), recorded before it
        /// is made: the run's own, to remove on the way back.
        Release = "release",
        /// A database the run creates for a new site, recorded once fleet has seen it does
        /// not exist and before the install creates it: the run's own, to drop on the way back.
        NewDatabase = "new-database",
        /// Where a site's `current` link pointed before a release switched it: the old site.
        PriorCurrent = "prior-current",
        /// Where a site's `preview` link pointed before a build repointed it (empty: none).
        PriorPreview = "prior-preview",
        /// The old site's database a new site is built from (never changed by the run).
        OldDatabase = "old-database",
        /// A new site passed every QA gate of its last import (what they found); emptied when
        /// an import starts, so a release only ever follows a passed QA of the data it has.
        QaPassed = "qa-passed",
        /// `fleet migrate cleanup`: where a site's own directory in the old Drupal root was
        /// (recorded before anything is removed, so a cleanup run again finds it).
        OldSiteDir = "old-site-dir",
        /// A database's last dump before `fleet migrate cleanup` dropped it: `PATH` once
        /// recorded, `PATH sha256:HEX` once taken and checked.
        FinalDump = "final-dump",
        /// A directory's archive before `fleet migrate cleanup` removed it: `PATH` once
        /// recorded, `PATH sha256:HEX` once written and checked.
        Archive = "archive",
        /// What `fleet migrate cleanup` removes of a site (its side, database, directory),
        /// recorded before anything is: from then on the site's way back is closed.
        CleanupPlan = "cleanup-plan",
        /// `fleet migrate cleanup` finished with the site: what it removed and archived.
        CleanedUp = "cleaned-up",
        /// The copy of the old site's CiviCRM database the new site runs on, recorded once
        /// fleet has seen it does not exist and before it is made: the run's own.
        NewCivicrmDatabase = "new-civicrm-database",
        /// The old site's CiviCRM database the copy is taken from (never changed by the run).
        OldCivicrmDatabase = "old-civicrm-database",
    }
}

words! {
    /// What a step acts on.
    Scope, "scope" {
        /// The host as a whole (discovery, the tarball upload).
        Host = "host",
        /// One site.
        Site = "site",
        /// A code directory shared by the sites installed from it.
        Codebase = "codebase",
        /// A database (shared by the sites that use it).
        Database = "database",
        /// The run itself (its recorded options).
        Run = "run",
    }
}

/// What one step or artifact of the journal is about: a [`Scope`] and, below the host, the
/// thing's name (`site:NAME`, `codebase:PATH`, `database:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// The run's own records (options, playbook, tarball).
    Run,
    /// A host as a whole.
    Host,
    /// A site, by its inventory name.
    Site(String),
    /// A codebase, by its path on the host.
    Codebase(String),
    /// A database, by its name.
    Database(String),
}

impl Unit {
    /// Site `name`.
    pub fn site(name: &str) -> Unit {
        Unit::Site(name.to_owned())
    }

    /// Codebase `path`.
    pub fn codebase(path: &str) -> Unit {
        Unit::Codebase(path.to_owned())
    }

    /// Database `name`.
    pub fn database(name: &str) -> Unit {
        Unit::Database(name.to_owned())
    }

    /// What kind of thing it is.
    pub fn scope(&self) -> Scope {
        match self {
            Unit::Run => Scope::Run,
            Unit::Host => Scope::Host,
            Unit::Site(_) => Scope::Site,
            Unit::Codebase(_) => Scope::Codebase,
            Unit::Database(_) => Scope::Database,
        }
    }

    /// The name below the scope (empty for the run and the host).
    pub fn name(&self) -> &str {
        match self {
            Unit::Run | Unit::Host => "",
            Unit::Site(n) | Unit::Codebase(n) | Unit::Database(n) => n,
        }
    }

    /// The unit a stored word names.
    pub fn parse(word: &str) -> Option<Unit> {
        match word.split_once(':') {
            None => match Scope::parse(word)? {
                Scope::Run => Some(Unit::Run),
                Scope::Host => Some(Unit::Host),
                _ => None,
            },
            // An empty name is read as written: the previous release journaled
            // `database:` for a site whose database name it could not read.
            Some((scope, name)) => match Scope::parse(scope)? {
                Scope::Site => Some(Unit::Site(name.to_owned())),
                Scope::Codebase => Some(Unit::Codebase(name.to_owned())),
                Scope::Database => Some(Unit::Database(name.to_owned())),
                Scope::Run | Scope::Host => None,
            },
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Run | Unit::Host => f.pad(self.scope().as_str()),
            _ => f.pad(&format!("{}:{}", self.scope(), self.name())),
        }
    }
}

impl ToSql for Unit {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_string()))
    }
}

impl FromSql for Unit {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let word = value.as_str()?;
        Unit::parse(word).ok_or_else(|| {
            FromSqlError::Other(format!("unknown unit `{word}` (written by a newer fleet?)").into())
        })
    }
}

words! {
    /// The built-in steps: the host job's, the CiviCRM procedure's, and the way back's.
    BuiltinStep, "step" {
        /// Read-only discovery of every site of the host.
        Preflight = "preflight",
        /// The per-site lock taken on the host.
        Lock = "lock",
        /// The release tarball (and the localization tarball) copied to the host.
        Upload = "upload",
        /// `cv upgrade:db --dry-run` against the code still in place.
        PreflightDryRun = "preflight-dry-run",
        /// The prior maintenance state recorded.
        RecordMaintenance = "record-maintenance",
        /// Maintenance on.
        MaintenanceOn = "maintenance-on",
        /// Integration modules disabled.
        DisableModules = "disable-modules",
        /// A database dumped, verified complete.
        BackupDb = "backup-db",
        /// The old code moved into the run's backup dir.
        MoveCodeOut = "move-code-out",
        /// The release unpacked in its place.
        Unpack = "unpack",
        /// The files dir given back to the web user.
        FixPermissions = "fix-permissions",
        /// `cv upgrade:db --dry-run` against the new code.
        UpgradeDbDryRun = "upgrade-db-dry-run",
        /// The database upgrade.
        UpgradeDb = "upgrade-db",
        /// Caches emptied.
        Flush = "flush",
        /// The disabled modules enabled again.
        EnableModules = "enable-modules",
        /// Maintenance back to its prior value.
        MaintenanceRestore = "maintenance-restore",
        /// The final check.
        Verify = "verify",
        /// The per-site lock released.
        Unlock = "unlock",
        /// The old code put back (undo).
        RestoreCode = "restore-code",
        /// A database loaded from its dump (undo).
        RestoreDb = "restore-db",
        /// Compiled templates emptied (undo).
        ClearTemplates = "clear-templates",
        /// The code backup's version checked before a restore.
        VerifyCodeBackup = "verify-code-backup",
        /// A dump checked before it is loaded.
        VerifyDump = "verify-dump",
        /// What a rollback replaces, dumped first.
        SafetyDump = "safety-dump",
        /// `fleet recover` re-reading a site.
        RecoverProbe = "recover-probe",
        /// `fleet recover` as a whole, for a site it could not finish.
        Recover = "recover",
        /// `fleet rollback` as a whole, for a site it could not finish.
        Rollback = "rollback",
        /// A new release unpacked beside the old site (core and contrib), its version checked.
        ReleaseUnpack = "release-unpack",
        /// The new release's settings written.
        ReleaseSettings = "release-settings",
        /// The new site's database name checked free.
        NewDatabaseCheck = "new-database-check",
        /// `drush site:install` of the new site.
        SiteInstall = "site-install",
        /// The manifest's modules installed in the new site.
        InstallModules = "install-modules",
        /// The `preview` symlink pointed at the new release.
        PreviewLink = "preview-link",
        /// The `preview` symlink taken back (undo).
        PreviewUnlink = "preview-unlink",
        /// A new site's database dropped (the build's undo), or a database the cleanup drops
        /// once its final dump is checked.
        DatabaseDrop = "database-drop",
        /// The new release removed (the build's undo, or the cleanup of a release that is
        /// not served).
        ReleaseRemove = "release-remove",
        /// The built release checked before an import: there, booting on its database.
        ReleaseVerify = "release-verify",
        /// `drush migrate:upgrade --configure-only`: the migrations from the old site.
        MigrateConfigure = "migrate-configure",
        /// Migrations a crashed import left busy set back to Idle.
        MigrateReset = "migrate-reset",
        /// `drush migrate:import`.
        MigrateImport = "migrate-import",
        /// QA: `migrate:status` shows nothing failed, busy or unprocessed.
        QaMigrateStatus = "qa-migrate-status",
        /// QA: `migrate:messages` has no error-level row.
        QaMigrateMessages = "qa-migrate-messages",
        /// QA: the new site boots.
        QaBoot = "qa-boot",
        /// QA: users and nodes of old and new agree within the tolerance.
        QaCounts = "qa-counts",
        /// QA: the preview answers 200 with the marker.
        QaProbe = "qa-probe",
        /// QA: one of the manifest's own checks.
        QaCheck = "qa-check",
        /// `current` pointed at the new release.
        Switch = "switch",
        /// `current` pointed back at the old site.
        SwitchBack = "switch-back",
        /// `fleet migrate cleanup` reading what a site serves and what it no longer needs.
        CleanupCheck = "cleanup-check",
        /// A database dumped (and the dump checked) before the cleanup drops it.
        FinalDump = "final-dump",
        /// A directory archived (and the archive checked) before the cleanup removes it.
        Archive = "archive",
        /// An old site's code removed by the cleanup (its archive checked first).
        CodeRemove = "code-remove",
        /// Whether the old site runs CiviCRM, on which database, and the release's CiviCRM.
        CivicrmCheck = "civicrm-check",
        /// The old site's CiviCRM database dumped and loaded into the new site's copy.
        CivicrmCopy = "civicrm-copy",
        /// The new site's `civicrm.settings.php`, made from the old one for the copy.
        CivicrmSettings = "civicrm-settings",
        /// `cv upgrade:db` of the copy with the release's CiviCRM, then its versions checked.
        CivicrmUpgrade = "civicrm-upgrade",
        /// The new site's settings made to read the old site's connection from a copy in the
        /// release, before the cleanup removes the old site's own settings file.
        SettingsDetach = "settings-detach",
    }
}

/// A step's name in the journal: a built-in [`BuiltinStep`], or a user playbook's own step (whose
/// names can never be a built-in's: the playbook loader refuses them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepName {
    /// A built-in step.
    Builtin(BuiltinStep),
    /// A playbook's shell step, its `-verify` probe or its `-undo`.
    Playbook(String),
}

impl StepName {
    /// The name a stored word is.
    pub fn parse(word: &str) -> StepName {
        BuiltinStep::parse(word)
            .map_or_else(|| StepName::Playbook(word.to_owned()), StepName::Builtin)
    }

    /// The word the journal stores.
    pub fn as_str(&self) -> &str {
        match self {
            StepName::Builtin(s) => s.as_str(),
            StepName::Playbook(n) => n,
        }
    }
}

impl From<BuiltinStep> for StepName {
    fn from(s: BuiltinStep) -> StepName {
        StepName::Builtin(s)
    }
}

impl PartialEq<BuiltinStep> for StepName {
    fn eq(&self, other: &BuiltinStep) -> bool {
        *self == StepName::Builtin(*other)
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl ToSql for StepName {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for StepName {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Ok(StepName::parse(value.as_str()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_itself() {
        for s in SiteStatus::ALL {
            assert_eq!(SiteStatus::parse(s.as_str()), Some(*s));
        }
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(*s));
        }
        for s in StepState::ALL {
            assert_eq!(StepState::parse(s.as_str()), Some(*s));
        }
        for s in ArtifactKind::ALL {
            assert_eq!(ArtifactKind::parse(s.as_str()), Some(*s));
        }
        for s in BuiltinStep::ALL {
            assert_eq!(StepName::parse(s.as_str()), StepName::Builtin(*s));
        }
        assert_eq!(SiteStatus::parse("upgraded "), None);
    }

    #[test]
    fn units_read_back_as_themselves_and_bad_ones_are_refused() {
        for u in [
            Unit::Run,
            Unit::Host,
            Unit::site("a"),
            Unit::codebase("/srv/x:y/civicrm"),
            Unit::database("civi_1"),
        ] {
            assert_eq!(Unit::parse(&u.to_string()), Some(u));
        }
        assert_eq!(Unit::site("a").to_string(), "site:a");
        // Names line up in tables like any string.
        assert_eq!(format!("{:<8}|", Unit::site("a")), "site:a  |");
        assert_eq!(
            format!("{:<6}|", StepName::from(BuiltinStep::Lock)),
            "lock  |"
        );
        assert_eq!(format!("{:>6}", Scope::Host), "  host");
        assert_eq!(Unit::parse("codebase:/a:b"), Some(Unit::codebase("/a:b")));
        assert_eq!(Unit::parse("database:"), Some(Unit::database("")));
        for bad in ["", "site", "host:x", "run:x", "table:x", "Site:a"] {
            assert_eq!(Unit::parse(bad), None, "{bad}");
        }
        assert_eq!(
            StepName::parse("drush-updb"),
            StepName::Playbook("drush-updb".into())
        );
    }

    #[test]
    fn a_run_is_finished_only_when_every_site_is_settled() {
        let t = |sites, settled, in_maintenance, midway| SiteTally {
            sites,
            settled,
            in_maintenance,
            midway,
        };
        assert_eq!(RunState::decide(t(3, 3, 0, 0), false), RunState::Finished);
        assert_eq!(RunState::decide(t(3, 3, 0, 0), true), RunState::Finished);
        assert_eq!(RunState::decide(t(3, 2, 0, 0), false), RunState::Failed);
        assert_eq!(RunState::decide(t(3, 2, 0, 0), true), RunState::Interrupted);
        assert_eq!(
            RunState::decide(t(3, 2, 1, 0), false),
            RunState::Interrupted
        );
        assert_eq!(
            RunState::decide(t(3, 2, 0, 1), false),
            RunState::Interrupted
        );
    }
}
