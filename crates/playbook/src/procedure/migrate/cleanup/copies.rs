//! The cleanup's copies (a database's final dump, a directory's archive) and the database
//! drops they allow: a copy is taken and checked before anything goes, reused only while it
//! is newer than the site's last change and still has its recorded SHA-256, and verified
//! again on the host just before the drop.

use fleet_remote_exec::quote;

use super::script::{self, sha_line, sql_name};
use super::{SiteCleanup, Step, at, journal_err, stop};
use crate::engine::{HostRun, StepError};
use crate::procedure::civicrm::commands::{check_dump, verify_dump};
use crate::vocab::{ArtifactKind, BuiltinStep, Unit};

/// A database the cleanup may drop, and how it is reached, as shell.
pub(super) struct Db {
    pub(super) name: String,
    /// Succeeds when it exists, fails (1) when not; exits the script when it cannot tell.
    exists: String,
    /// Writes its dump to `$F`.
    dump: String,
    /// Drops it.
    drop: String,
}

/// `cd RELEASE && DRUSH` (a pipe into it needs parentheses: `x | ( ... )`).
pub(super) fn release_drush(release: &str, drush: &str) -> String {
    format!(
        "cd {} && {}",
        quote(release),
        quote(&format!("{release}/{drush}"))
    )
}

impl Db {
    /// A Drupal database: dumped over connection `key` of the release's settings, asked after
    /// and dropped over connection `server` (one that does not need it).
    pub(super) fn drupal(drush: &str, name: &str, key: &str, server: &str) -> Result<Db, String> {
        let name = sql_name(name)?.to_owned();
        Ok(Db {
            exists: format!(
                "o=$({drush} sql:query --database={k} \"SHOW DATABASES LIKE '{name}'\") || {{ echo \"cannot ask whether {name} exists\" >&2; exit 1; }}; printf '%s\\n' \"$o\" | grep -qx {nq}",
                k = quote(server),
                nq = quote(&name),
            ),
            dump: format!(
                "{drush} sql:dump --database={} --result-file=\"$F\"",
                quote(key)
            ),
            drop: format!(
                "{drush} sql:query --database={} 'DROP DATABASE `{name}`'",
                quote(server)
            ),
            name,
        })
    }

    /// A CiviCRM database: asked after and dropped through `cli` (a `civicrm-sql-cli` whose
    /// connection's own database stays: the old one for a copy, the copy for the old one;
    /// its last answer must come back, or nothing is known), dumped by `dump_with` (a
    /// `civicrm-sql-dump`, which writes to `--result-file`).
    pub(super) fn civicrm(cli: &str, name: &str, dump_with: &str) -> Result<Db, String> {
        let name = sql_name(name)?.to_owned();
        Ok(Db {
            exists: format!(
                "o=$(printf '%s\\n' \"SHOW DATABASES LIKE '{name}';\" \"SELECT 'fleet-probe-ok';\" | ( {cli} ) 2>&1); printf '%s\\n' \"$o\" | grep -qx fleet-probe-ok || {{ printf 'cannot ask whether {name} exists: %s\\n' \"$o\" >&2; exit 1; }}; printf '%s\\n' \"$o\" | grep -qix {nq}",
                nq = quote(&name),
            ),
            dump: format!("{dump_with} --result-file=\"$F\""),
            drop: format!("printf '%s\\n' 'DROP DATABASE `{name}`;' | ( {cli} )"),
            name,
        })
    }
}

impl HostRun<'_> {
    /// A copy's recorded file when it was taken after the site's last change and still has
    /// its recorded SHA-256.
    async fn fresh_copy(
        &self,
        work: &SiteCleanup<'_>,
        unit: &Unit,
        kind: ArtifactKind,
        step: BuiltinStep,
    ) -> Option<String> {
        let v = self
            .ctx
            .journal
            .artifact(&self.ctx.run, self.host, unit, kind)
            .ok()
            .flatten()?;
        let (file, sha) = v.split_once(" sha256:")?;
        let taken = self
            .ctx
            .journal
            .step_done_at(&self.ctx.run, self.host, unit, &step.into())
            .ok()
            .flatten()?;
        if taken < work.changed {
            return None;
        }
        let out = self
            .exec(unit, step, &script::same_file(file, sha))
            .await
            .ok()?;
        (out.trim() == "ok").then(|| file.to_owned())
    }

    /// `db` dumped into the keep dir (checked, SHA-256 recorded) unless a fresh dump is
    /// there; nothing when it is gone.
    pub(super) async fn final_dump(&self, work: &mut SiteCleanup<'_>, db: &Db) -> Step {
        let dunit = Unit::Database(db.name.clone());
        if let Some(file) = self
            .fresh_copy(
                work,
                &dunit,
                ArtifactKind::FinalDump,
                BuiltinStep::FinalDump,
            )
            .await
        {
            work.archives.push(file);
            return Ok(());
        }
        let file = format!("{}/{}.sql", work.keep_dir, db.name);
        self.record(
            BuiltinStep::FinalDump,
            &dunit,
            ArtifactKind::FinalDump,
            &file,
        )
        .map_err(journal_err(BuiltinStep::FinalDump))?;
        let script = format!(
            "if ! {{ {exists}; }}; then echo gone; exit 0; fi\n\
             F={f}; umask 077 && mkdir -p {dir} && {dump} && {check}",
            exists = db.exists,
            f = quote(&file),
            dir = quote(&work.keep_dir),
            dump = db.dump,
            check = check_dump(&file, &db.name),
        );
        let out = self
            .exec(&dunit, BuiltinStep::FinalDump, &script)
            .await
            .map_err(at(BuiltinStep::FinalDump))?;
        if out.trim().lines().last() == Some("gone") {
            return Ok(());
        }
        let Some(sha) = sha_line(&out) else {
            return stop(
                BuiltinStep::FinalDump,
                format!("the dump of `{}` gave no SHA-256", db.name),
            );
        };
        self.record(
            BuiltinStep::FinalDump,
            &dunit,
            ArtifactKind::FinalDump,
            &format!("{file} sha256:{sha}"),
        )
        .map_err(journal_err(BuiltinStep::FinalDump))?;
        work.archives.push(file);
        Ok(())
    }

    /// `db` dropped once its recorded dump is verified again and `guard` holds; nothing when
    /// it is gone.
    pub(super) async fn drop_database(
        &self,
        work: &mut SiteCleanup<'_>,
        db: &Db,
        guard: &str,
    ) -> Step {
        let dunit = Unit::Database(db.name.clone());
        let recorded = self
            .ctx
            .journal
            .artifact(&self.ctx.run, self.host, &dunit, ArtifactKind::FinalDump)
            .ok()
            .flatten();
        let script = match recorded.as_deref().and_then(|v| v.split_once(" sha256:")) {
            Some((file, sha)) => format!(
                "if ! {{ {exists}; }}; then exit 0; fi\n{guard}\n{verify} >/dev/null && {drop}",
                exists = db.exists,
                verify = verify_dump(file, &db.name, sha),
                drop = db.drop,
            ),
            // No dump taken: the database was gone when the dump was to be taken.
            None => format!(
                "if ! {{ {exists}; }}; then exit 0; fi\necho 'database {name} has no checked dump: kept' >&2; exit 1",
                exists = db.exists,
                name = db.name,
            ),
        };
        self.exec(&dunit, BuiltinStep::DatabaseDrop, &script)
            .await
            .map_err(at(BuiltinStep::DatabaseDrop))?;
        work.removed.push(format!("database `{}`", db.name));
        Ok(())
    }

    /// `dir` archived into the keep dir as `name` (read back, SHA-256 recorded) unless a
    /// fresh archive is there; nothing when `dir` is gone.
    pub(super) async fn archive(&self, work: &mut SiteCleanup<'_>, dir: &str, name: &str) -> Step {
        let cunit = Unit::Codebase(dir.to_owned());
        if let Some(file) = self
            .fresh_copy(work, &cunit, ArtifactKind::Archive, BuiltinStep::Archive)
            .await
        {
            work.archives.push(file);
            return Ok(());
        }
        let file = format!("{}/{name}", work.keep_dir);
        self.record(BuiltinStep::Archive, &cunit, ArtifactKind::Archive, &file)
            .map_err(journal_err(BuiltinStep::Archive))?;
        let out = self
            .exec(
                &cunit,
                BuiltinStep::Archive,
                &script::archive(dir, &file, &work.keep_dir),
            )
            .await
            .map_err(at(BuiltinStep::Archive))?;
        if out.trim().lines().last() == Some("gone") {
            return Ok(());
        }
        let Some(sha) = sha_line(&out) else {
            return Err((
                BuiltinStep::Archive,
                StepError::Failed(format!("the archive of `{dir}` gave no SHA-256")),
            ));
        };
        self.record(
            BuiltinStep::Archive,
            &cunit,
            ArtifactKind::Archive,
            &format!("{file} sha256:{sha}"),
        )
        .map_err(journal_err(BuiltinStep::Archive))?;
        work.archives.push(file);
        Ok(())
    }
}
