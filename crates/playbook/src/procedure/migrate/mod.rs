//! `fleet migrate`: a major Drupal upgrade done as a new site built beside the old one (a
//! new release directory, a new database, the data imported with Drupal's Migrate API),
//! QA-gated, then switched in by replacing the `current` symlink the web server serves,
//! with the old release and database kept for the way back.

mod build;
mod civicrm;
pub(crate) mod cleanup;
pub(crate) mod discovery;
mod import;
pub(crate) mod manifest;
pub(crate) mod phase_plan;
pub(crate) mod plan;
mod release;
pub(crate) mod run;
mod settings;

use crate::error::PlaybookError;
use crate::journal::RunRow;

/// Whether run `procedure` (its journal name) is a `fleet migrate` run.
pub fn is_migrate_run(procedure: &str) -> bool {
    procedure == "migrate" || procedure.starts_with("migrate-")
}

/// The host name of a site's URI (`https://a.example.org:8443/x` -> `a.example.org`,
/// `https://[2001:db8::1]/` -> `[2001:db8::1]`): what the web server and Drupal see as the
/// site's name.
pub(crate) fn uri_host(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    if authority.starts_with('[') {
        authority
            .split_inclusive(']')
            .next()
            .unwrap_or(authority)
            .to_owned()
    } else {
        authority.split(':').next().unwrap_or("").to_owned()
    }
}

#[cfg(test)]
#[test]
fn uri_hosts_are_the_names_without_port_or_path() {
    assert_eq!(uri_host("https://a.example.org:8443/x"), "a.example.org");
    assert_eq!(uri_host("https://s.test"), "s.test");
    assert_eq!(uri_host("https://[2001:db8::1]:8443/civi"), "[2001:db8::1]");
}

/// The old (Drupal 7) site's drush with its root and URI, run as the SSH user (the
/// backup dir where its dumps go is not the web user's to write).
pub(crate) fn old_drush(site: &fleet_inventory::Site) -> String {
    format!(
        "{} -r {} -l {}",
        fleet_remote_exec::quote(&site.drush),
        fleet_remote_exec::quote(&site.root),
        fleet_remote_exec::quote(&site.uri)
    )
}

/// Shell: `dsndb FILE` prints the database named by a civicrm.settings.php's
/// `CIVICRM_DSN` literal (nothing when it has none in single quotes).
pub(crate) const DSNDB: &str = r#"dsndb() { sed -n "s/^[[:space:]]*define[[:space:]]*([[:space:]]*'CIVICRM_DSN'[[:space:]]*,[[:space:]]*'\([^']*\)'.*/\1/p" "$1" | head -n1 | sed 's/[?].*//; s#.*/##'; }
"#;

impl crate::engine::HostRun<'_> {
    /// A site's non-empty artifact of `kind` in this run, if any.
    pub(crate) fn site_artifact(
        &self,
        site: &str,
        kind: crate::vocab::ArtifactKind,
    ) -> Option<String> {
        self.ctx
            .journal
            .artifact(
                &self.ctx.run,
                self.host,
                &crate::vocab::Unit::site(site),
                kind,
            )
            .ok()
            .flatten()
            .filter(|v| !v.is_empty())
    }

    /// Fetches the manifest's `probe` URL on the host (curl, `Host: name`) as a journaled
    /// `qa-probe` step: a 200 whose page holds `marker`. Nothing to do without a probe URL.
    pub(crate) async fn probe_page(
        &self,
        unit: &crate::vocab::Unit,
        m: &manifest::Manifest,
        name: &str,
        marker: Option<&str>,
    ) -> Result<(), crate::engine::StepError> {
        let Some(url) = &m.qa.probe else {
            return Ok(());
        };
        let url = url.replace("{address}", &self.job.host.address);
        let script = format!(
            "curl -sS -m 20 -o - -w '\\n%{{http_code}}' -H {} {}",
            fleet_remote_exec::quote(&format!("Host: {name}")),
            fleet_remote_exec::quote(&url)
        );
        self.exec_probed(
            unit,
            crate::vocab::BuiltinStep::QaProbe,
            &script,
            &url,
            |out| import::judge_page(out, marker),
        )
        .await
    }

    /// The host's sites this run built (with their release dir and database) and, with
    /// `passed`, whose new site passed QA; each other site gets `why_not` (not started, with
    /// `passed`; else a failure).
    pub(crate) fn built_sites(
        &self,
        passed: bool,
        why_not: &str,
        results: &mut std::collections::BTreeMap<String, crate::outcome::SiteOutcome>,
    ) -> Vec<(&fleet_inventory::Site, String, String)> {
        use crate::vocab::{ArtifactKind, BuiltinStep};
        let mut out = Vec::new();
        for s in &self.job.host.sites {
            // A cleanup has begun on the site: its way back (or forward) is closed. Refused,
            // which leaves the journal's row saying where the site stands.
            if self
                .site_artifact(&s.name, ArtifactKind::CleanupPlan)
                .is_some()
            {
                results.insert(
                    s.name.clone(),
                    crate::outcome::SiteOutcome::Refused {
                        reason: "`fleet migrate cleanup` has removed (or begun removing) what this run made for the site".into(),
                    },
                );
                continue;
            }
            let release = self.site_artifact(&s.name, ArtifactKind::Release);
            let database = self.site_artifact(&s.name, ArtifactKind::NewDatabase);
            let qa = !passed
                || self
                    .site_artifact(&s.name, ArtifactKind::QaPassed)
                    .is_some();
            match (release, database, qa) {
                (Some(r), Some(d), true) => out.push((s, r, d)),
                // Not for the release: a site whose new site did not pass QA is not started (it
                // stays on its old site and costs no failure budget); for an import a site
                // without a build is a failure.
                _ if passed => {
                    results.insert(
                        s.name.clone(),
                        crate::outcome::SiteOutcome::NotStarted {
                            reason: why_not.to_owned(),
                        },
                    );
                }
                _ => {
                    results.insert(
                        s.name.clone(),
                        crate::engine::failed(
                            BuiltinStep::ReleaseVerify,
                            why_not,
                            crate::outcome::After::Untouched,
                        ),
                    );
                }
            }
        }
        out
    }
}

/// The phases of a migrate run, each run separately on the same run id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A new release and database beside each old site (`fleet migrate build`).
    Build,
    /// The old site's data imported into the new one, then the QA gates
    /// (`fleet migrate import RUN`).
    Import,
    /// The QA-passed sites switched to their new release in batches (`fleet migrate release
    /// RUN`).
    Release,
    /// Released sites switched back to their old site (`fleet migrate rollback RUN`).
    Rollback,
    /// What the sites no longer need removed, archived first (`fleet migrate cleanup RUN`).
    Cleanup(std::sync::Arc<cleanup::Cleanup>),
}

/// Stops the in-place upgrade's way back (`recover`, `resume`, `rollback`) at a migrate run:
/// its steps restore CiviCRM code and dumps, and a migrate run never changes the old site.
pub(crate) fn refuse_upgrade_tools(run: &RunRow) -> Result<(), PlaybookError> {
    if is_migrate_run(&run.procedure) {
        return Err(PlaybookError::Plan(format!(
            "run `{}` is a `fleet migrate` run ({}): it never changed the old sites, and `fleet recover`, `resume` and `rollback` undo in-place upgrades only; what it made (releases, databases) is listed by `fleet runs show {}`",
            run.id, run.procedure, run.id
        )));
    }
    Ok(())
}
