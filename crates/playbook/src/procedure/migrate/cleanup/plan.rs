//! What a cleanup removes of a site, decided once from what the host shows and journaled
//! before anything goes.

use super::script::Found;
use super::{SiteCleanup, Step, stop};
use crate::discovery::safe_path;
use crate::engine::{HostRun, StepError};
use crate::vocab::{ArtifactKind, BuiltinStep};

/// What a cleanup removes of a site, journaled before anything is: a cleanup run again
/// goes on with it, and the release, import and rollback refuse a site that has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The old side (the site is released) or the new one.
    pub(crate) old_side: bool,
    /// The Drupal database to drop (none: kept).
    pub(crate) drop: Option<String>,
    /// The CiviCRM database to drop (none: kept, or the site has none).
    pub(crate) drop_civi: Option<String>,
    /// The directory to remove (none: kept).
    pub(crate) code: Option<String>,
    /// What is kept, and why.
    pub(crate) kept: Vec<String>,
}

impl Plan {
    pub(super) fn to_text(&self) -> String {
        let mut t = format!(
            "side={}\ndrop={}\ndrop_civi={}\ncode={}\n",
            if self.old_side { "old" } else { "new" },
            self.drop.as_deref().unwrap_or(""),
            self.drop_civi.as_deref().unwrap_or(""),
            self.code.as_deref().unwrap_or("")
        );
        for k in &self.kept {
            t.push_str(&format!("kept={k}\n"));
        }
        t
    }

    pub(crate) fn parse(text: &str) -> Option<Plan> {
        let mut p = Plan {
            old_side: false,
            drop: None,
            drop_civi: None,
            code: None,
            kept: Vec::new(),
        };
        let mut side = None;
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            let v = (!v.is_empty()).then(|| v.to_owned());
            match k {
                "side" => side = v,
                "drop" => p.drop = v,
                "drop_civi" => p.drop_civi = v,
                "code" => p.code = v,
                "kept" => p.kept.extend(v),
                _ => return None,
            }
        }
        p.old_side = match side.as_deref()? {
            "old" => true,
            "new" => false,
            _ => return None,
        };
        Some(p)
    }
}

impl HostRun<'_> {
    /// What goes, decided once from what the host shows.
    pub(super) fn plan(
        &self,
        work: &SiteCleanup<'_>,
        found: &Found,
        old_root: &str,
        old_db: &str,
    ) -> Step<Plan> {
        let live = !found.release_real.is_empty() && found.serves == found.release_real;
        if !live {
            if !old_root.is_empty() && found.serves != old_root {
                return stop(
                    BuiltinStep::CleanupCheck,
                    format!(
                        "`current` serves `{}`, neither this run's release nor the old site: something else moved it; nothing removed",
                        found.serves.escape_debug()
                    ),
                );
            }
            let mine = format!("run={} site={}", self.ctx.run, work.w.site.name);
            if !found.release_real.is_empty() && found.marker != mine {
                return stop(
                    BuiltinStep::CleanupCheck,
                    format!(
                        "`{}` is not this run's build of the site: nothing removed",
                        work.release
                    ),
                );
            }
            return Ok(Plan {
                old_side: false,
                drop: self.site_artifact(&work.w.site.name, ArtifactKind::NewDatabase),
                drop_civi: self.site_artifact(&work.w.site.name, ArtifactKind::NewCivicrmDatabase),
                code: Some(work.release.clone()),
                kept: Vec::new(),
            });
        }
        let mut kept = Vec::new();
        if old_root.is_empty() {
            return stop(
                BuiltinStep::CleanupCheck,
                "the journal has no record of the old site's root",
            );
        }
        if !found.old_exists {
            kept.push(format!("`{old_root}`: gone already"));
            return Ok(Plan {
                old_side: true,
                drop: None,
                drop_civi: None,
                code: None,
                kept,
            });
        }
        check_old_root(old_root, found)
            .map_err(|e| (BuiltinStep::CleanupCheck, StepError::Failed(e)))?;
        let site_dir = found.site_dir.as_str();
        // The site's own settings must name its database: else the directory found by the
        // discovery's rule may not be its own (a `sites.php` alias), and nothing of it goes.
        let own = !old_db.is_empty() && found.db_users.iter().any(|d| d == site_dir);
        if !own {
            kept.push(format!(
                "`{site_dir}` and database `{old_db}`: the settings there do not name the site's database"
            ));
            return Ok(Plan {
                old_side: true,
                drop: None,
                drop_civi: None,
                code: None,
                kept,
            });
        }
        let others: Vec<&String> = found.settings.iter().filter(|d| *d != site_dir).collect();
        let sharing: Vec<&&String> = others
            .iter()
            .filter(|d| found.db_users.contains(d) || !found.db_named.contains(d))
            .collect();
        let drop = if sharing.is_empty() {
            Some(old_db.to_owned())
        } else {
            kept.push(format!(
                "database `{old_db}`: {} may use it too",
                sharing
                    .iter()
                    .map(|d| format!("`{d}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            None
        };
        // Its CiviCRM database (it has a copy in the new site): only when its own
        // civicrm.settings.php names it and no other site's does.
        let drop_civi = match self
            .site_artifact(&work.w.site.name, ArtifactKind::OldCivicrmDatabase)
            .filter(|_| {
                self.site_artifact(&work.w.site.name, ArtifactKind::NewCivicrmDatabase)
                    .is_some()
            }) {
            None => None,
            Some(civi) if found.civi_users == [site_dir.to_owned()] => Some(civi),
            Some(civi) => {
                kept.push(format!(
                    "CiviCRM database `{civi}`: {}",
                    if found.civi_users.iter().any(|d| d == site_dir) {
                        "another site's civicrm.settings.php names it too"
                    } else {
                        "the site's civicrm.settings.php does not name it"
                    }
                ));
                None
            }
        };
        let served = found.served_any.iter().any(|c| c == old_root);
        let code = if others.is_empty() && !served {
            old_root.to_owned()
        } else {
            kept.push(format!(
                "`{old_root}`: {}",
                if served {
                    "another site is served from it"
                } else {
                    "other sites are in it"
                }
            ));
            site_dir.to_owned()
        };
        Ok(Plan {
            old_side: true,
            drop,
            drop_civi,
            code: Some(code),
            kept,
        })
    }
}

fn check_old_root(old_root: &str, found: &Found) -> Result<(), String> {
    safe_path("old root", old_root)?;
    safe_path("site dir", &found.site_dir)?;
    if old_root.trim_end_matches('/').matches('/').count() < 2 {
        return Err(format!(
            "the old root `{old_root}` is too near `/` to be removed"
        ));
    }
    if !found.old_version.starts_with("7.") {
        return Err(format!(
            "`{old_root}` is no Drupal 7 root (version `{}`): nothing removed",
            found.old_version.escape_debug()
        ));
    }
    let Some(dir) = found.site_dir.strip_prefix(&format!("{old_root}/sites/")) else {
        return Err(format!(
            "site dir `{}` is not inside `{old_root}/sites/`",
            found.site_dir
        ));
    };
    if dir.is_empty() || dir.contains('/') || dir == "all" || dir.starts_with('.') {
        return Err(format!(
            "site dir `{}` is not a site's own directory",
            found.site_dir
        ));
    }
    if !found.release_real.is_empty() && found.release_real.starts_with(&format!("{old_root}/")) {
        return Err(format!(
            "the release is inside the old root `{old_root}`: nothing removed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_as_it_was_written_and_anything_else_is_refused() {
        let p = Plan {
            old_side: true,
            drop: Some("drupal_h01_1".into()),
            drop_civi: Some("civicrm_h01_1".into()),
            code: Some("/w/drupal 7/sites/a".into()),
            kept: vec!["`/w/drupal 7`: other sites are in it".into()],
        };
        assert_eq!(Plan::parse(&p.to_text()), Some(p));
        let n = Plan {
            old_side: false,
            drop: None,
            drop_civi: None,
            code: None,
            kept: vec![],
        };
        assert_eq!(Plan::parse(&n.to_text()), Some(n));
        assert_eq!(Plan::parse("side=sideways\n"), None);
        assert_eq!(Plan::parse("drop=x\n"), None);
        assert_eq!(Plan::parse("side=old\nevil=1\n"), None);
    }
}
