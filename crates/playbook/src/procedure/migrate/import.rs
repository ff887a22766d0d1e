//! `fleet migrate import RUN` on one host: each built site gets the old site's data through
//! Drupal's Migrate API, then the QA gates, every one a journaled step with its verdict.
//! Re-runnable: a site imported before is imported again with `--update` (new content of the
//! old site comes across; imported rows are updated), and migrations a crashed import left
//! busy are reset first. Nothing here touches the old site: it is read, never written.
//!
//! A site passes only when every gate does; its `qa-passed` artifact (emptied when an import
//! starts) is what the release phase requires.

use std::collections::BTreeMap;

use fleet_remote_exec::quote;
use serde_json::Value;

use super::build::{failure, then_probe};
use super::manifest::Manifest;
use crate::discovery::Facts;
use crate::engine::{HostRun, StepError, step_error_text};
use crate::outcome::{After, SiteOutcome};
use crate::vocab::{ArtifactKind, BuiltinStep, Unit};
use crate::work::Work;

type Step<T = ()> = Result<T, (BuiltinStep, StepError)>;

/// One site's import, with what the build recorded.
struct SiteImport<'a> {
    w: Work<'a>,
    release: String,
    database: String,
}

impl SiteImport<'_> {
    /// `cd RELEASE && DRUSH ARGS`.
    fn drush(&self, m: &Manifest, args: &str) -> String {
        format!(
            "cd {} && {} {args}",
            quote(&self.release),
            quote(&format!("{}/{}", self.release, m.site.drush))
        )
    }
}

/// A migration id as `migrate:status` names it: what may go back into a command.
fn migration_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The leading integer of a `migrate:status` number (`12`, `"12 (100%)"`, `"N/A"` = none).
fn count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.split_whitespace().next()?.parse().ok(),
        _ => None,
    }
}

/// `migrate:status --format=json`: its rows, or why they cannot be read.
pub(crate) fn status_rows(out: &str) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_str(out.trim())
        .map_err(|_| "migrate:status printed no JSON".to_owned())?;
    v.as_array()
        .cloned()
        .ok_or_else(|| "migrate:status printed no list".to_owned())
}

/// The gate on `migrate:status`: every migration Idle, none unprocessed, all imported.
pub(crate) fn judge_status(rows: &[Value]) -> Result<String, String> {
    if rows.is_empty() {
        return Err("migrate:status lists no migration".into());
    }
    let mut problems = Vec::new();
    let mut imported = 0;
    for r in rows {
        let id = r.get("id").and_then(Value::as_str).unwrap_or("?");
        let status = r.get("status").and_then(Value::as_str).unwrap_or("?");
        let total = r.get("total").and_then(count);
        let done = r.get("imported").and_then(count).unwrap_or(0);
        let left = r.get("unprocessed").and_then(count);
        imported += done;
        if status != "Idle" {
            problems.push(format!("{id} is {status}"));
        }
        match (total, left) {
            (Some(t), Some(0)) if done < t => {
                problems.push(format!("{id} imported {done} of {t} (the rest failed)"));
            }
            (_, Some(0)) => {}
            (_, Some(n)) => problems.push(format!("{id} has {n} unprocessed")),
            (_, None) => problems.push(format!("{id}: its source cannot be counted")),
        }
    }
    if problems.is_empty() {
        Ok(format!("{} migrations, {imported} rows", rows.len()))
    } else {
        Err(problems.join("; "))
    }
}

impl HostRun<'_> {
    /// Imports every site of the host the run built, then its QA gates.
    pub(crate) async fn import(&self, m: &Manifest, results: &mut BTreeMap<String, SiteOutcome>) {
        let mut built = self.built_sites(
            false,
            "this run built no release for the site: nothing to import into",
            results,
        );
        // A site the release has reached is the release's (its import is the release's
        // own last one): an import here would clear its records while it may be down.
        built.retain(|(s, _, _)| {
            let released = self.site_artifact(&s.name, ArtifactKind::PriorMaintenance).is_some();
            if released {
                results.insert(
                    s.name.clone(),
                    crate::engine::failed(
                        BuiltinStep::ReleaseVerify,
                        "the release has reached this site: `fleet migrate release` (or `rollback`) goes on with it, not an import",
                        After::Untouched,
                    ),
                );
            }
            !released
        });
        if built.is_empty() {
            return;
        }
        // The old sites read again: still Drupal 7, still what `current` serves.
        let owned: Vec<_> = built.iter().map(|(s, _, _)| (*s).clone()).collect();
        let Some(facts) = self.discover_migrate(&owned, results).await else {
            return;
        };
        for (s, release, database) in built {
            if self.ctx.cancel.drain.is_cancelled() {
                results.insert(
                    s.name.clone(),
                    SiteOutcome::NotStarted {
                        reason: "interrupted before this site's import".into(),
                    },
                );
                continue;
            }
            let f = facts.get(&s.name).cloned().unwrap_or_default();
            if let Some(e) = &f.error {
                results.insert(
                    s.name.clone(),
                    crate::engine::failed(BuiltinStep::Preflight, e, After::Untouched),
                );
                continue;
            }
            let si = SiteImport {
                w: Work {
                    site: s,
                    // The same lock as the build's and an upgrade's (keyed by site dir and URI).
                    facts: Facts {
                        site_dir: f.site_dir.clone(),
                        code_version: f.drupal_version.clone(),
                        ..Facts::default()
                    },
                    prior_from: None,
                },
                release,
                database,
            };
            if let Err(why) = self.lock_group(std::slice::from_ref(&si.w)).await {
                results.insert(
                    s.name.clone(),
                    crate::engine::failed(BuiltinStep::Lock, &why, After::Untouched),
                );
                continue;
            }
            let outcome = match self.import_site(m, &si).await {
                Ok(summary) => SiteOutcome::Imported { summary },
                Err((step, e)) => SiteOutcome::Failed {
                    step: step.to_string(),
                    reason: format!(
                        "{}; the site is not released, the old site is untouched",
                        step_error_text(&e)
                    ),
                    after: After::Untouched,
                },
            };
            results.insert(s.name.clone(), outcome);
            self.unlock_group(std::slice::from_ref(&si.w)).await;
        }
    }

    async fn import_site(&self, m: &Manifest, si: &SiteImport<'_>) -> Step<String> {
        let unit = Unit::site(&si.w.site.name);
        let at = |step: BuiltinStep| move |e: StepError| (step, e);
        let mark = |step: BuiltinStep| {
            self.mark(&si.w, step, Some(false))
                .map_err(|(_, e)| (step, e))
        };
        // A new import: any earlier pass no longer speaks for the data.
        self.record(
            BuiltinStep::MigrateImport,
            &unit,
            ArtifactKind::QaPassed,
            "",
        )
        .map_err(|(_, e)| (BuiltinStep::MigrateImport, e))?;

        mark(BuiltinStep::ReleaseVerify)?;
        let db = si.database.clone();
        self.exec_probed(
            &unit,
            BuiltinStep::ReleaseVerify,
            &si.drush(m, "status --format=json"),
            &si.release,
            |out| boots_on(out, &db),
        )
        .await
        .map_err(at(BuiltinStep::ReleaseVerify))?;

        mark(BuiltinStep::MigrateConfigure)?;
        let script = then_probe(
            &si.drush(
                m,
                // The old root, for the file migrations to copy the old site's files from.
                &format!(
                    "migrate:upgrade --legacy-db-key={} --legacy-root={} --configure-only",
                    m.import.legacy_key,
                    quote(&si.w.site.root)
                ),
            ),
            &si.drush(m, "migrate:status --format=json"),
        );
        let rows = self
            .exec_probed(&unit, BuiltinStep::MigrateConfigure, &script, "", |out| {
                if let Some(why) = failure(out) {
                    return Err(format!("drush migrate:upgrade failed: {why}"));
                }
                status_rows(out)
            })
            .await
            .map_err(at(BuiltinStep::MigrateConfigure))?;

        // Migrations a crashed import left busy refuse to run until reset.
        let busy: Vec<String> = rows
            .iter()
            .filter(|r| r.get("status").and_then(Value::as_str) != Some("Idle"))
            .filter_map(|r| r.get("id").and_then(Value::as_str))
            .filter(|id| migration_id(id))
            .map(str::to_owned)
            .collect();
        if !busy.is_empty() {
            mark(BuiltinStep::MigrateReset)?;
            let script = busy
                .iter()
                .map(|id| si.drush(m, &format!("migrate:reset-status {id}")))
                .collect::<Vec<_>>()
                .join(" && ");
            self.exec(&unit, BuiltinStep::MigrateReset, &script)
                .await
                .map_err(at(BuiltinStep::MigrateReset))?;
        }

        // Imported before (this run's journal says so): again with --update.
        let again = self
            .ctx
            .journal
            .step_done_at(
                &self.ctx.run,
                self.host,
                &unit,
                &BuiltinStep::MigrateImport.into(),
            )
            .ok()
            .flatten()
            .is_some();
        mark(BuiltinStep::MigrateImport)?;
        let select = match &m.import.tag {
            Some(t) => format!("--tag={}", quote(t)),
            None => "--all".to_owned(),
        };
        let script = then_probe(
            &si.drush(
                m,
                &format!(
                    "migrate:import {select}{}",
                    if again { " --update" } else { "" }
                ),
            ),
            "echo imported",
        );
        self.exec_probed(
            &unit,
            BuiltinStep::MigrateImport,
            &script,
            &select,
            |out| match failure(out) {
                Some(why) => Err(format!("drush migrate:import failed: {why}")),
                None => Ok(()),
            },
        )
        .await
        .map_err(at(BuiltinStep::MigrateImport))?;

        // CiviCRM: a copy of the old site's database, upgraded with the release's code.
        mark(BuiltinStep::CivicrmCheck)?;
        let civicrm = self
            .civicrm_copy(
                m,
                &super::civicrm::CiviTarget {
                    site: si.w.site,
                    old_site_dir: &si.w.facts.site_dir,
                    release: &si.release,
                    new_db: &si.database,
                    drush: &m.site.drush,
                },
            )
            .await?;

        // The gates.
        mark(BuiltinStep::QaMigrateStatus)?;
        let (rows, migrated) = self
            .exec_probed(
                &unit,
                BuiltinStep::QaMigrateStatus,
                &si.drush(m, "migrate:status --format=json"),
                "",
                |out| {
                    let rows = status_rows(out)?;
                    let summary = judge_status(&rows)?;
                    Ok((rows, summary))
                },
            )
            .await
            .map_err(at(BuiltinStep::QaMigrateStatus))?;

        mark(BuiltinStep::QaMigrateMessages)?;
        let ids: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_str))
            .filter(|id| migration_id(id))
            .map(str::to_owned)
            .collect();
        // Every migration's messages, each section whole (Drush prints JSON over several
        // lines); a section whose command failed counts as a failed gate, and so does a
        // migration whose id could not be put into a command.
        let all_ids: Vec<&str> = rows
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_str))
            .collect();
        if let Some(bad) = all_ids.iter().find(|id| !migration_id(id)) {
            return Err((
                BuiltinStep::QaMigrateMessages,
                StepError::Failed(format!(
                    "migration `{}` has an id fleet does not pass to a command: its messages cannot be checked",
                    bad.escape_debug()
                )),
            ));
        }
        let script = ids
            .iter()
            .map(|id| {
                format!(
                    "echo '### {id}'; {} || echo '### FAILED {id}'",
                    si.drush(m, &format!("migrate:messages {id} --format=json"))
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let want = ids.clone();
        self.exec_probed(&unit, BuiltinStep::QaMigrateMessages, &script, "", |out| {
            judge_messages(out, &want)
        })
        .await
        .map_err(at(BuiltinStep::QaMigrateMessages))?;

        mark(BuiltinStep::QaBoot)?;
        let db = si.database.clone();
        self.exec_probed(
            &unit,
            BuiltinStep::QaBoot,
            &si.drush(m, "status --format=json"),
            "",
            |out| boots_on(out, &db),
        )
        .await
        .map_err(at(BuiltinStep::QaBoot))?;

        mark(BuiltinStep::QaCounts)?;
        let s = si.w.site;
        let old = |q: &str| {
            format!(
                "as_web {} {} -r {} -l {} sqlq {}",
                quote(s.web_user.as_deref().unwrap_or("")),
                quote(&s.drush),
                quote(&s.root),
                quote(&s.uri),
                quote(q)
            )
        };
        let script = format!(
            "printf 'old_users=%s\\n' \"$({})\"; printf 'old_nodes=%s\\n' \"$({})\"; printf 'new_users=%s\\n' \"$({})\"; printf 'new_nodes=%s\\n' \"$({})\"",
            old("SELECT COUNT(*) FROM users WHERE uid > 0"),
            old("SELECT COUNT(*) FROM node"),
            si.drush(
                m,
                "sql:query 'SELECT COUNT(*) FROM users_field_data WHERE uid > 0'"
            ),
            si.drush(m, "sql:query 'SELECT COUNT(*) FROM node_field_data'"),
        );
        let tolerance = m.qa.count_tolerance;
        let counts = self
            .exec_probed(&unit, BuiltinStep::QaCounts, &script, "", |out| {
                let get = |k: &str| -> Result<u64, String> {
                    out.lines()
                        .find_map(|l| l.strip_prefix(&format!("{k}=")))
                        .and_then(|v| v.trim().lines().last()?.trim().parse().ok())
                        .ok_or_else(|| format!("no count for {k}"))
                };
                let (ou, on, nu, nn) = (
                    get("old_users")?,
                    get("old_nodes")?,
                    get("new_users")?,
                    get("new_nodes")?,
                );
                let summary = format!("users {ou} -> {nu}, nodes {on} -> {nn}");
                if tolerance.accepts(ou, nu) && tolerance.accepts(on, nn) {
                    Ok(summary)
                } else {
                    Err(format!("{summary}: outside the manifest's tolerance"))
                }
            })
            .await
            .map_err(at(BuiltinStep::QaCounts))?;

        let mut summary = vec![migrated, counts];
        summary.extend(civicrm);
        if m.qa.probe.is_some() {
            mark(BuiltinStep::QaProbe)?;
            let preview = format!("preview.{}", super::uri_host(&s.uri));
            self.probe_page(&unit, m, &preview, m.qa.marker.as_deref())
                .await
                .map_err(at(BuiltinStep::QaProbe))?;
            summary.push(format!(
                "preview 200{}",
                if m.qa.marker.is_some() {
                    " with its marker"
                } else {
                    ""
                }
            ));
        }
        for c in &m.qa.checks {
            mark(BuiltinStep::QaCheck)?;
            let script = format!(
                "cd {} && FLEET_RELEASE={} FLEET_SITE={} FLEET_URI={} sh -c {}",
                quote(&si.release),
                quote(&si.release),
                quote(&s.name),
                quote(&s.uri),
                quote(&c.run)
            );
            self.exec_probed(
                &unit,
                BuiltinStep::QaCheck,
                &then_probe(&script, "echo passed"),
                &c.name,
                |out| match failure(out) {
                    Some(why) => Err(format!("check `{}` failed: {why}", c.name)),
                    None => Ok(()),
                },
            )
            .await
            .map_err(at(BuiltinStep::QaCheck))?;
        }
        let summary = summary.join("; ");
        self.record(
            BuiltinStep::QaCheck,
            &unit,
            ArtifactKind::QaPassed,
            &summary,
        )
        .map_err(|(_, e)| (BuiltinStep::QaCheck, e))?;
        Ok(summary)
    }
}

/// The gate on `migrate:messages` sections (`### ID` then its JSON): no error-level message
/// (Drupal's level 1, or `error`), every migration's section there, none failed.
fn judge_messages(out: &str, ids: &[String]) -> Result<(), String> {
    let mut sections: Vec<(String, String)> = Vec::new();
    let mut problems = Vec::new();
    for line in out.lines() {
        if let Some(id) = line.strip_prefix("### FAILED ") {
            problems.push(format!("{}: migrate:messages failed", id.trim()));
        } else if let Some(id) = line.strip_prefix("### ") {
            sections.push((id.trim().to_owned(), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    for id in ids {
        let Some((_, text)) = sections.iter().find(|(s, _)| s == id) else {
            problems.push(format!("{id}: no messages were read"));
            continue;
        };
        let msgs = match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Array(m)) => m,
            Ok(_) | Err(_) if text.trim().is_empty() => Vec::new(),
            _ => {
                problems.push(format!("{id}: migrate:messages printed no JSON list"));
                continue;
            }
        };
        let errors = msgs
            .iter()
            .filter(|x| match x.get("level") {
                Some(Value::String(l)) => l == "error" || l == "1",
                Some(Value::Number(n)) => n.as_u64() == Some(1),
                _ => false,
            })
            .count();
        if errors > 0 {
            problems.push(format!("{id}: {errors} error message(s)"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// What `curl -o - -w '\n%{http_code}'` printed: a 200 whose page holds `marker`.
pub(crate) fn judge_page(out: &str, marker: Option<&str>) -> Result<(), String> {
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out));
    let code = code.trim();
    if code != "200" {
        return Err(format!("HTTP {code}, not 200"));
    }
    match marker {
        Some(mk) if !body.contains(mk) => Err(format!("the page has no `{mk}`")),
        _ => Ok(()),
    }
}

/// `drush status --format=json` says the site boots on database `db`.
fn boots_on(out: &str, db: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(out.trim())
        .map_err(|_| "drush status printed no JSON: the release is gone or broken".to_owned())?;
    if v.get("bootstrap").and_then(Value::as_str) != Some("Successful") {
        return Err("the new site does not boot (drush status: no successful bootstrap)".into());
    }
    match v.get("db-name").and_then(Value::as_str) {
        Some(n) if n == db => Ok(()),
        other => Err(format!(
            "the new site runs on database `{}`, not `{db}`",
            other.unwrap_or("").escape_debug()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_gate_wants_everything_idle_processed_and_imported() {
        let rows: Vec<Value> = serde_json::from_str(
            r#"[{"id":"a","status":"Idle","total":3,"imported":"3 (100%)","unprocessed":0},
                {"id":"b","status":"Idle","total":0,"imported":0,"unprocessed":0}]"#,
        )
        .unwrap();
        assert_eq!(judge_status(&rows).unwrap(), "2 migrations, 3 rows");
        let rows: Vec<Value> = serde_json::from_str(
            r#"[{"id":"a","status":"Importing","total":3,"imported":"1 (33.3%)","unprocessed":2},
                {"id":"b","status":"Idle","total":5,"imported":"3 (60%)","unprocessed":0},
                {"id":"c","status":"Idle","total":"N/A","imported":0,"unprocessed":"N/A"}]"#,
        )
        .unwrap();
        let e = judge_status(&rows).unwrap_err();
        assert!(e.contains("a is Importing"), "{e}");
        assert!(e.contains("a has 2 unprocessed"), "{e}");
        assert!(e.contains("b imported 3 of 5 (the rest failed)"), "{e}");
        assert!(e.contains("c: its source cannot be counted"), "{e}");
        assert!(judge_status(&[]).is_err());
    }

    #[test]
    fn the_messages_gate_reads_whole_sections_and_both_level_forms() {
        let ids = vec!["a".to_owned(), "b".to_owned()];
        let out = "### a\n[\n    {\n        \"level\": 1,\n        \"message\": \"x\"\n    }\n]\n### b\n[]\n";
        assert_eq!(
            judge_messages(out, &ids).unwrap_err(),
            "a: 1 error message(s)"
        );
        let out = "### a\n[{\"level\":\"error\"}]\n### b\n[{\"level\":2}]\n";
        assert_eq!(
            judge_messages(out, &ids).unwrap_err(),
            "a: 1 error message(s)"
        );
        assert!(judge_messages("### a\n[]\n### b\n[]\n", &ids).is_ok());
        let e = judge_messages("### a\n### FAILED a\n", &ids).unwrap_err();
        assert!(
            e.contains("a: migrate:messages failed") && e.contains("b: no messages were read"),
            "{e}"
        );
    }

    #[test]
    fn migration_ids_read_from_a_host_are_checked_before_use() {
        assert!(migration_id("upgrade_d7_node_article"));
        for bad in ["", "a b", "a;rm", "A", "x'y", &"a".repeat(200)] {
            assert!(!migration_id(bad), "{bad}");
        }
    }
}
