//! `fleet migrate build` on one host: for each site, a new release beside the old one, its
//! own database, the new major installed in it, and `preview` pointed at it. The old site is
//! never touched (it keeps being served through `current`).
//!
//! Every side effect is journaled first: the release directory (an artifact recorded before
//! it is made), the new database (recorded once it is seen not to exist, before the install
//! creates it). A failure undoes what the journal says this run made, newest first, and only
//! that: a release `current` serves, or a database that existed before, is never removed.

use std::collections::BTreeMap;

use fleet_remote_exec::quote;

use super::discovery::MigrateFacts;
use super::manifest::{Manifest, database_name};
use super::settings::{NewSettings, SALT, settings_php};
use crate::discovery::Facts;
use crate::engine::{HostRun, StepError, failed, step_error_text};
use crate::outcome::{After, SiteOutcome};
use crate::vocab::{ArtifactKind, BuiltinStep, Unit};
use crate::work::Work;

/// One site's build, as far as it got.
struct SiteBuild<'a> {
    w: Work<'a>,
    /// `<base>` of `current`.
    base: String,
    /// `<base>/releases/<run>`.
    release: String,
    /// The new database.
    database: String,
    /// The old site's database (the import's source).
    old_db: String,
    /// What this run made (recorded in the journal before it was made).
    made_release: bool,
    made_database: bool,
    linked_preview: bool,
    /// Where `preview` pointed before (empty: there was none).
    prior_preview: Option<String>,
}

/// A probed step's script: `cmd`, and when it fails a line `failed: <its last lines of
/// output>` (so the judge can say why, where a probe alone would only see nothing), else
/// `then`'s output, the probe.
pub(crate) fn then_probe(cmd: &str, then: &str) -> String {
    format!(
        "if ! o=$({{ {cmd}; }} 2>&1); then printf 'failed: %s\\n' \"$(printf '%s' \"$o\" | tail -n 3 | tr '\\n' ' ')\"; exit 0; fi; {then}"
    )
}

/// What [`then_probe`]'s output says when its command failed.
pub(crate) fn failure(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("failed: "))
        .map(|l| l.trim().to_owned())
}

/// The file a build leaves in the release it made, naming the run and the site: the undo
/// removes a release only when it holds this run's own.
const MARKER: &str = ".fleet-release";

impl SiteBuild<'_> {
    fn drush(&self, m: &Manifest) -> String {
        quote(&format!("{}/{}", self.release, m.site.drush))
    }

    fn marker(&self, run: &str) -> String {
        format!("run={run} site={}", self.w.site.name)
    }
}

impl HostRun<'_> {
    /// Builds every site of the host: discovery, the tarballs uploaded once and checked by
    /// SHA-256, then each site's release in turn.
    pub(crate) async fn build(&self, m: &Manifest, results: &mut BTreeMap<String, SiteOutcome>) {
        let sites = &self.job.host.sites;
        let (with_current, without): (Vec<_>, Vec<_>) =
            sites.iter().partition(|s| s.current.is_some());
        for s in without {
            results.insert(
                s.name.clone(),
                failed(
                    BuiltinStep::Preflight,
                    "no `current` in the inventory: the symlink the web server serves, which a release replaces",
                    After::Untouched,
                ),
            );
        }
        if with_current.is_empty() {
            return;
        }
        let owned: Vec<_> = with_current.iter().map(|s| (*s).clone()).collect();
        let Some(facts) = self.discover_migrate(&owned, results).await else {
            return;
        };
        let needed_kb = super::plan::needed_kb(m);
        let base_of = |c: Option<&str>| {
            c.and_then(|c| c.rsplit_once('/'))
                .map(|(b, _)| b.to_owned())
        };
        let mut builds: Vec<SiteBuild<'_>> = Vec::new();
        for s in &with_current {
            let f: MigrateFacts = facts.get(&s.name).cloned().unwrap_or_default();
            if let Some(e) = &f.error {
                results.insert(
                    s.name.clone(),
                    failed(BuiltinStep::Preflight, e, After::Untouched),
                );
                continue;
            }
            // A release serves one site: sites whose `current` is in one directory (where the
            // releases go) cannot each get their own.
            if let Some(other) = with_current.iter().find(|o| {
                o.name != s.name && base_of(o.current.as_deref()) == base_of(s.current.as_deref())
            }) {
                let why = format!(
                    "site `{}` has its `current` in the same directory: each site needs its own (`<base>/current`, releases in `<base>/releases/`)",
                    other.name
                );
                results.insert(
                    s.name.clone(),
                    failed(BuiltinStep::Preflight, &why, After::Untouched),
                );
                continue;
            }
            if f.free_kb < needed_kb {
                let why = format!(
                    "{} MiB free beside `current`, a release needs about {} MiB",
                    f.free_kb / 1024,
                    needed_kb.div_ceil(1024)
                );
                results.insert(
                    s.name.clone(),
                    failed(BuiltinStep::Preflight, &why, After::Untouched),
                );
                continue;
            }
            if f.releases.contains(&self.ctx.run) {
                results.insert(
                    s.name.clone(),
                    failed(
                        BuiltinStep::Preflight,
                        &format!(
                            "`releases/{}` exists already beside `current`",
                            self.ctx.run
                        ),
                        After::Untouched,
                    ),
                );
                continue;
            }
            let Some(database) = database_name(&m.site.database, &f.old_db, &s.name, self.host)
            else {
                results.insert(
                    s.name.clone(),
                    failed(
                        BuiltinStep::Preflight,
                        &format!(
                            "`database` `{}` gives no usable database name for this site",
                            m.site.database
                        ),
                        After::Untouched,
                    ),
                );
                continue;
            };
            let current = s.current.clone().unwrap_or_default();
            let base = current
                .rsplit_once('/')
                .map_or(String::new(), |(b, _)| b.to_owned());
            builds.push(SiteBuild {
                w: Work {
                    site: s,
                    // The lock and the journal's site row read these of the old site.
                    facts: Facts {
                        site_dir: f.site_dir.clone(),
                        code_version: f.drupal_version.clone(),
                        ..Facts::default()
                    },
                    prior_from: None,
                },
                release: format!("{base}/releases/{}", self.ctx.run),
                base,
                database,
                old_db: f.old_db.clone(),
                made_release: false,
                made_database: false,
                linked_preview: false,
                prior_preview: None,
            });
        }
        if builds.is_empty() {
            return;
        }
        // The tarballs go once per host next to the first site's backups (outside every
        // Drupal root, never web-served), each checked by SHA-256 on the host.
        let dir = format!("{}/fleet-{}", builds[0].w.site.backup_dir, self.ctx.run);
        let mut uploaded: Vec<String> = Vec::new();
        for t in std::iter::once(&m.core).chain(m.modules.iter().map(|x| &x.tarball)) {
            let name = t
                .path
                .file_name()
                .map_or_else(|| "tarball".into(), |n| n.to_string_lossy().into_owned());
            // Numbered: two tarballs with one file name never overwrite each other.
            let dest = format!("{dir}/{}-{name}", uploaded.len());
            let r = match self.upload(&t.path, &dest).await {
                Ok(()) => self
                    .exec_probed(
                        &Unit::Host,
                        BuiltinStep::Upload,
                        &format!("sha256sum {} | cut -d' ' -f1", quote(&dest)),
                        &format!("sha256 {dest}"),
                        |out| {
                            if out.trim() == t.sha256 {
                                Ok(())
                            } else {
                                Err(format!(
                                    "`{dest}` has SHA-256 {} on the host, not {}: the copy is damaged",
                                    out.trim(),
                                    t.sha256
                                ))
                            }
                        },
                    )
                    .await
                    .map_err(|e| step_error_text(&e)),
                Err(why) => Err(why),
            };
            if let Err(why) = r {
                for b in &builds {
                    results.insert(
                        b.w.site.name.clone(),
                        failed(BuiltinStep::Upload, &why, After::Untouched),
                    );
                }
                return;
            }
            uploaded.push(dest);
        }
        for mut b in builds {
            // A first interrupt starts no further site; the one under way finishes or is undone.
            if self.ctx.cancel.drain.is_cancelled() {
                results.insert(
                    b.w.site.name.clone(),
                    SiteOutcome::NotStarted {
                        reason: "interrupted before this site's build".into(),
                    },
                );
                continue;
            }
            let g = std::slice::from_ref(&b.w);
            if let Err(why) = self.lock_group(g).await {
                results.insert(
                    b.w.site.name.clone(),
                    failed(BuiltinStep::Lock, &why, After::Untouched),
                );
                continue;
            }
            let outcome = match self.build_site(m, &mut b, &uploaded).await {
                Ok(()) => SiteOutcome::Built {
                    release: b.release.clone(),
                    database: b.database.clone(),
                },
                // The old site is untouched whatever happened here (it never left `current`):
                // what is said is whether the build's own leftovers are gone.
                Err((step, e)) => {
                    let why = step_error_text(&e);
                    let left = match e {
                        StepError::Aborted => Some(
                            "aborted mid-step: the release and database this run recorded may be left beside the old site".to_owned(),
                        ),
                        // A step that may still run on the host would race the undo.
                        StepError::Failed(w) if w.contains(crate::engine::MAY_STILL_RUN) => Some(
                            "its step may still be running on the host: nothing was undone; the release and database this run recorded may be left beside the old site".to_owned(),
                        ),
                        StepError::Failed(_) => self.unbuild(m, &b).await.err(),
                    };
                    SiteOutcome::Failed {
                        step: step.to_string(),
                        reason: match left {
                            None => {
                                format!("{why}; the build was undone, the old site is untouched")
                            }
                            Some(l) => format!("{why}; {l}; the old site is untouched"),
                        },
                        after: After::Untouched,
                    }
                }
            };
            results.insert(b.w.site.name.clone(), outcome);
            self.unlock_group(std::slice::from_ref(&b.w)).await;
        }
    }

    /// One site's steps, in order.
    async fn build_site(
        &self,
        m: &Manifest,
        b: &mut SiteBuild<'_>,
        tarballs: &[String],
    ) -> Result<(), (BuiltinStep, StepError)> {
        let unit = Unit::site(&b.w.site.name);
        let at = |step: BuiltinStep| move |e: StepError| (step, e);
        let mark = |step: BuiltinStep| {
            self.mark(&b.w, step, Some(false))
                .map_err(|(_, e)| (step, e))
        };

        // The release dir: recorded first, made under a temporary name, checked, renamed.
        mark(BuiltinStep::ReleaseUnpack)?;
        // What the new site is built from, for the later phases and the cleanup to name.
        self.record(
            BuiltinStep::ReleaseUnpack,
            &unit,
            ArtifactKind::OldDatabase,
            &b.old_db,
        )
        .map_err(|(_, e)| (BuiltinStep::ReleaseUnpack, e))?;
        self.record(
            BuiltinStep::ReleaseUnpack,
            &unit,
            ArtifactKind::Release,
            &b.release,
        )
        .map_err(|(_, e)| (BuiltinStep::ReleaseUnpack, e))?;
        b.made_release = true;
        let tmp = release_tmp(&b.base, &self.ctx.run);
        let mut script = format!(
            "set -e; REL={rel}; TMP={tmp}; [ ! -e \"$REL\" ] || {{ echo \"$REL exists already\" >&2; exit 1; }}\n\
             rm -rf \"$TMP\"; mkdir -p \"$TMP/modules/contrib\"\n\
             tar -xzf {core} --no-same-owner --strip-components=1 -C \"$TMP\"\n",
            rel = quote(&b.release),
            tmp = quote(&tmp),
            core = quote(&tarballs[0]),
        );
        for (t, module) in tarballs[1..].iter().zip(&m.modules) {
            script.push_str(&format!(
                "tar -xzf {t} --no-same-owner -C \"$TMP/modules/contrib\"\n\
                 [ -f \"$TMP/modules/contrib/{n}/{n}.info.yml\" ] || {{ echo \"module {n}: no {n}/{n}.info.yml in its tarball\" >&2; exit 1; }}\n",
                t = quote(t),
                n = module.name,
            ));
        }
        script.push_str(&format!(
            "v=$(sed -n -E \"s/.*const VERSION = '([^']*)'.*/\\1/p\" \"$TMP/core/lib/Drupal.php\" 2>/dev/null | head -n1)\n\
             [ \"$v\" = {want} ] || {{ echo \"the unpacked core says version '$v', not {want}\" >&2; exit 1; }}\n\
             [ -x \"$TMP\"/{drush} ] || {{ echo \"the release has no executable {drush}\" >&2; exit 1; }}\n\
             printf '%s\\n' {mark} > \"$TMP/{MARKER}\"\n\
             mv -T \"$TMP\" \"$REL\"\n",
            want = quote(&m.core.version),
            drush = quote(&m.site.drush),
            mark = quote(&b.marker(&self.ctx.run)),
        ));
        self.exec(&unit, BuiltinStep::ReleaseUnpack, &script)
            .await
            .map_err(at(BuiltinStep::ReleaseUnpack))?;

        // Its settings: the old site's connection read from the old site's own file.
        mark(BuiltinStep::ReleaseSettings)?;
        let hosts = {
            let h = super::uri_host(&b.w.site.uri);
            vec![h.clone(), format!("preview.{h}")]
        };
        let settings = settings_php(&NewSettings {
            run: &self.ctx.run,
            old_settings: &format!("{}/settings.php", b.w.facts.site_dir),
            legacy_key: &m.import.legacy_key,
            database: &b.database,
            hosts: &hosts,
        });
        let script = format!(
            "set -e; S={s}; umask 027; mkdir -p \"$S/files\"\n\
             salt=$(od -An -v -N 48 -tx1 /dev/urandom | tr -d ' \\n'); [ ${{#salt}} -eq 96 ]\n\
             printf '%s' {text} | sed \"s/{SALT}/$salt/\" > \"$S/settings.php.tmp\"\n\
             grep -q \"$salt\" \"$S/settings.php.tmp\"; mv \"$S/settings.php.tmp\" \"$S/settings.php\"\n",
            s = quote(&format!("{}/sites/default", b.release)),
            text = quote(&settings),
        );
        self.exec(&unit, BuiltinStep::ReleaseSettings, &script)
            .await
            .map_err(at(BuiltinStep::ReleaseSettings))?;

        // The new database must not exist: the installer would drop what it holds.
        mark(BuiltinStep::NewDatabaseCheck)?;
        let probe = then_probe(
            &format!(
                "cd {rel} && {drush} sql:query --database={key} \"SHOW DATABASES LIKE '{db}'\"",
                rel = quote(&b.release),
                drush = b.drush(m),
                key = m.import.legacy_key,
                db = b.database,
            ),
            "printf '%s\\n' \"$o\"",
        );
        let db = b.database.clone();
        self.exec_probed(&unit, BuiltinStep::NewDatabaseCheck, &probe, &db, |out| {
            if let Some(why) = failure(out) {
                return Err(format!("cannot ask the database server whether `{db}` exists: {why}"));
            }
            if out.lines().any(|l| l.trim() == db) {
                Err(format!(
                    "database `{db}` exists already: fleet never installs a site over a database it did not create"
                ))
            } else {
                Ok(())
            }
        })
        .await
        .map_err(at(BuiltinStep::NewDatabaseCheck))?;
        self.record(
            BuiltinStep::SiteInstall,
            &unit,
            ArtifactKind::NewDatabase,
            &b.database,
        )
        .map_err(|(_, e)| (BuiltinStep::SiteInstall, e))?;
        b.made_database = true;

        // The install, then its own check: the site boots on the new database.
        mark(BuiltinStep::SiteInstall)?;
        let site_name = hosts[0].clone();
        let script = then_probe(
            &format!(
                "cd {rel} && {drush} site:install {profile} --site-name={name} -y",
                rel = quote(&b.release),
                drush = b.drush(m),
                profile = m.site.profile,
                name = quote(&site_name),
            ),
            &format!(
                "cd {} && {} status --format=json",
                quote(&b.release),
                b.drush(m)
            ),
        );
        let db = b.database.clone();
        self.exec_probed(&unit, BuiltinStep::SiteInstall, &script, &db, |out| {
            if let Some(why) = failure(out) {
                return Err(format!("drush site:install failed: {why}"));
            }
            let v: serde_json::Value = serde_json::from_str(out.trim())
                .map_err(|_| "drush status printed no JSON after the install".to_owned())?;
            if v.get("bootstrap").and_then(|x| x.as_str()) != Some("Successful") {
                return Err("the new site does not boot after its install (drush status: no successful bootstrap)".into());
            }
            match v.get("db-name").and_then(|x| x.as_str()) {
                Some(n) if n == db => Ok(()),
                other => Err(format!(
                    "the new site runs on database `{}`, not `{db}`",
                    other.unwrap_or("").escape_debug()
                )),
            }
        })
        .await
        .map_err(at(BuiltinStep::SiteInstall))?;

        if !m.site.enable.is_empty() {
            mark(BuiltinStep::InstallModules)?;
            let script = then_probe(
                &format!(
                    "cd {rel} && {drush} pm:install -y {mods}",
                    rel = quote(&b.release),
                    drush = b.drush(m),
                    mods = m.site.enable.join(" "),
                ),
                &format!(
                    "cd {} && {} pm:list --status=enabled --field=name",
                    quote(&b.release),
                    b.drush(m)
                ),
            );
            let want = m.site.enable.clone();
            self.exec_probed(&unit, BuiltinStep::InstallModules, &script, "", |out| {
                if let Some(why) = failure(out) {
                    return Err(format!("drush pm:install failed: {why}"));
                }
                let on: Vec<&str> = out.lines().map(str::trim).collect();
                match want.iter().find(|w| !on.contains(&w.as_str())) {
                    None => Ok(()),
                    Some(missing) => Err(format!(
                        "module `{missing}` is not enabled after pm:install"
                    )),
                }
            })
            .await
            .map_err(at(BuiltinStep::InstallModules))?;
        }

        // `preview` points at the release: a new link renamed over the old one, whose target
        // (if any) is recorded first, for the undo to put back.
        mark(BuiltinStep::PreviewLink)?;
        let prior = self
            .exec(
                &unit,
                BuiltinStep::PreviewLink,
                &format!(
                    "p={}/preview; if [ -L \"$p\" ]; then readlink \"$p\"; elif [ -e \"$p\" ]; then echo \"$p is not a symlink\" >&2; exit 1; fi",
                    quote(&b.base)
                ),
            )
            .await
            .map_err(at(BuiltinStep::PreviewLink))?;
        let prior = prior.trim().to_owned();
        if prior.chars().any(char::is_control) {
            return Err((
                BuiltinStep::PreviewLink,
                StepError::Failed(
                    "the old `preview` link's target holds a control character".into(),
                ),
            ));
        }
        self.record(
            BuiltinStep::PreviewLink,
            &unit,
            ArtifactKind::PriorPreview,
            &prior,
        )
        .map_err(|(_, e)| (BuiltinStep::PreviewLink, e))?;
        b.prior_preview = Some(prior);
        b.linked_preview = true;
        let script = format!(
            "B={base}; ln -sfn {rel} \"$B/.preview.{run}\" && mv -T \"$B/.preview.{run}\" \"$B/preview\" && readlink \"$B/preview\"",
            base = quote(&b.base),
            rel = quote(&b.release),
            run = self.ctx.run,
        );
        let rel = b.release.clone();
        self.exec_probed(&unit, BuiltinStep::PreviewLink, &script, "", |out| {
            if out.trim() == rel {
                Ok(())
            } else {
                Err(if out.trim().is_empty() {
                    "`preview` could not be pointed at the release".to_owned()
                } else {
                    format!(
                        "`preview` points at `{}`, not at the release",
                        out.trim().escape_debug()
                    )
                })
            }
        })
        .await
        .map_err(at(BuiltinStep::PreviewLink))?;
        Ok(())
    }

    /// Undoes what this run made for one site, newest first: the preview link (only if it
    /// points at the run's release), the database (only the one it recorded as made), the
    /// release (never one `current` serves).
    async fn unbuild(&self, m: &Manifest, b: &SiteBuild<'_>) -> Result<(), String> {
        let unit = Unit::site(&b.w.site.name);
        let mut problems = Vec::new();
        if b.linked_preview {
            let script = preview_unlink_script(
                &b.base,
                &b.release,
                b.prior_preview.as_deref().unwrap_or(""),
                &self.ctx.run,
            );
            if let Err(e) = self.exec(&unit, BuiltinStep::PreviewUnlink, &script).await {
                problems.push(format!("preview link: {}", step_error_text(&e)));
            }
        }
        if b.made_database {
            let script = format!(
                "cd {rel} && o=$({drush} sql:query --database={key} \"SHOW DATABASES LIKE '{db}'\") || {{ echo \"cannot ask whether {db} exists\" >&2; exit 1; }}; if printf '%s\\n' \"$o\" | grep -qx {dbq}; then {drush} sql:query --database={key} 'DROP DATABASE `{db}`'; fi",
                rel = quote(&b.release),
                drush = b.drush(m),
                key = m.import.legacy_key,
                db = b.database,
                dbq = quote(&b.database),
            );
            if let Err(e) = self
                .exec(
                    &Unit::Database(b.database.clone()),
                    BuiltinStep::DatabaseDrop,
                    &script,
                )
                .await
            {
                problems.push(format!(
                    "database `{}`: {}",
                    b.database,
                    step_error_text(&e)
                ));
            }
        }
        if b.made_release {
            let script = release_remove_script(
                &b.release,
                &release_tmp(&b.base, &self.ctx.run),
                b.w.site.current.as_deref().unwrap_or(""),
                &b.marker(&self.ctx.run),
            );
            if let Err(e) = self.exec(&unit, BuiltinStep::ReleaseRemove, &script).await {
                problems.push(format!("release `{}`: {}", b.release, step_error_text(&e)));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the build could not be undone: {}",
                problems.join("; ")
            ))
        }
    }
}

/// Where a build unpacks a release before renaming it into place.
pub(crate) fn release_tmp(base: &str, run: &str) -> String {
    format!("{base}/releases/.{run}.tmp")
}

/// Takes `preview` (in `base`) back from `release`: to `prior` (where it pointed before the
/// build), or gone when there was none. A link showing anything else is left alone.
pub(crate) fn preview_unlink_script(base: &str, release: &str, prior: &str, run: &str) -> String {
    let back = if prior.is_empty() {
        "rm -f \"$B/preview\"".to_owned()
    } else {
        format!(
            "ln -sfn {p} \"$B/.preview.{run}\" && mv -T \"$B/.preview.{run}\" \"$B/preview\"",
            p = quote(prior),
        )
    };
    format!(
        "B={base}; if [ \"$(readlink \"$B/preview\")\" = {rel} ]; then {back}; fi; rm -f \"$B/.preview.{run}\"",
        base = quote(base),
        rel = quote(release),
    )
}

/// Removes `release` (and a build's leftover `tmp`), never one `current` serves nor one
/// without the marker `mark` (another run's build). Drupal's installer makes `sites/default`
/// read-only: writable again before the removal.
pub(crate) fn release_remove_script(release: &str, tmp: &str, current: &str, mark: &str) -> String {
    format!(
        "REL={rel}; TMP={tmp}; rm -rf \"$TMP\"; [ -e \"$REL\" ] || exit 0\n\
         if [ \"$(readlink -f {cur})\" = \"$(readlink -f \"$REL\")\" ]; then echo \"current serves $REL: kept\" >&2; exit 1; fi\n\
         if [ \"$(cat \"$REL/{MARKER}\" 2>/dev/null)\" != {mark} ]; then echo \"$REL is not this run's build of the site: kept\" >&2; exit 1; fi\n\
         chmod -R u+w \"$REL\" && rm -rf \"$REL\"",
        rel = quote(release),
        cur = quote(current),
        tmp = quote(tmp),
        mark = quote(mark),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> String {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    #[test]
    fn a_probed_command_that_fails_says_why_and_its_probe_does_not_run() {
        let out = sh(&then_probe(
            "echo one; echo 'No space left on device' >&2; exit 1",
            "echo probed",
        ));
        assert_eq!(
            failure(&out).as_deref(),
            Some("one No space left on device")
        );
        assert!(!out.contains("probed"), "{out}");
        let out = sh(&then_probe("echo noise >&2", "echo '{\"ok\": 1}'"));
        assert_eq!(failure(&out), None);
        assert_eq!(out.trim(), "{\"ok\": 1}");
    }
}
