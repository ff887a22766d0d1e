//! What a cleanup removes of a site, decided once from what the host shows and journaled
//! before anything goes.

use std::time::Duration;

use super::CHANGES;
use super::script::{Found, sql_name};
use crate::discovery::safe_path;
use crate::journal::Journal;
use crate::vocab::{ArtifactKind, Unit};

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

/// What the journal recorded of a site, for the cleanup and its plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Recorded {
    pub(super) release: String,
    /// Where `current` pointed before the release switched it (empty: never switched).
    pub(super) old_root: String,
    pub(super) old_db: String,
    pub(super) old_civi: String,
    pub(super) new_db: Option<String>,
    pub(super) new_civi: Option<String>,
    /// The plan an earlier cleanup journaled (`Some(None)`: one that cannot be read).
    pub(super) planned: Option<Option<Plan>>,
    /// When the site last changed in the run (unix ms).
    pub(super) changed: i64,
}

/// What the journal says of a site before any host is read: what it recorded, or why the
/// cleanup leaves the site (cleaned up, mid-phase, no release, too young).
pub(super) fn precheck(
    journal: &Journal,
    run: &str,
    host: &str,
    site: &str,
    older_than: Duration,
) -> Result<Recorded, String> {
    let unit = Unit::site(site);
    let art = |kind| {
        journal
            .artifact(run, host, &unit, kind)
            .ok()
            .flatten()
            .filter(|v: &String| !v.is_empty())
    };
    if let Some(done) = art(ArtifactKind::CleanedUp) {
        return Err(format!("cleaned up already: {done}"));
    }
    let row = match journal.site_row(run, host, site) {
        Ok(Some(r)) => r,
        Ok(None) => return Err("not a site of this run".into()),
        Err(e) => return Err(format!("the journal cannot be read ({e}): nothing removed")),
    };
    if row.in_maintenance || row.status.is_midway() {
        return Err(format!(
            "its last phase did not end (`{}`{}): finish it first (`fleet migrate release` or `fleet migrate rollback`); nothing removed",
            row.status.as_str(),
            if row.in_maintenance {
                ", in maintenance"
            } else {
                ""
            }
        ));
    }
    let Some(release) = art(ArtifactKind::Release) else {
        return Err("this run made no release for it: nothing to clean up".into());
    };
    let mut changed = 0;
    for st in CHANGES {
        match journal.step_done_at(run, host, &unit, &st.into()) {
            Ok(t) => changed = changed.max(t.unwrap_or(0)),
            Err(_) => {
                return Err(
                    "the journal cannot say when the site last changed: nothing removed".into(),
                );
            }
        }
    }
    let planned = art(ArtifactKind::CleanupPlan).map(|t| Plan::parse(&t));
    let age_ms = crate::journal::now_ms().saturating_sub(changed);
    // A cleanup that began goes on whatever its age now.
    if planned.is_none() && u128::try_from(age_ms).unwrap_or(0) < older_than.as_millis() {
        return Err(format!(
            "its last change was {} ago, not older than {}: kept",
            crate::journal::format_age(age_ms / 1000),
            crate::journal::format_age(i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX))
        ));
    }
    let name = |kind| art(kind).filter(|d| sql_name(d).is_ok());
    Ok(Recorded {
        release,
        old_root: art(ArtifactKind::PriorCurrent).unwrap_or_default(),
        old_db: name(ArtifactKind::OldDatabase).unwrap_or_default(),
        old_civi: name(ArtifactKind::OldCivicrmDatabase).unwrap_or_default(),
        new_db: art(ArtifactKind::NewDatabase),
        new_civi: art(ArtifactKind::NewCivicrmDatabase),
        planned,
        changed,
    })
}

/// What goes of site `site` of run `run`, decided once from what the host shows.
pub(super) fn decide(run: &str, site: &str, rec: &Recorded, found: &Found) -> Result<Plan, String> {
    let (old_root, old_db) = (rec.old_root.as_str(), rec.old_db.as_str());
    let live = !found.release_real.is_empty() && found.serves == found.release_real;
    if !live {
        if !old_root.is_empty() && found.serves != old_root {
            return Err(format!(
                "`current` serves `{}`, neither this run's release nor the old site: something else moved it; nothing removed",
                found.serves.escape_debug()
            ));
        }
        let mine = format!("run={run} site={site}");
        if !found.release_real.is_empty() && found.marker != mine {
            return Err(format!(
                "`{}` is not this run's build of the site: nothing removed",
                rec.release
            ));
        }
        return Ok(Plan {
            old_side: false,
            drop: rec.new_db.clone(),
            drop_civi: rec.new_civi.clone(),
            code: Some(rec.release.clone()),
            kept: Vec::new(),
        });
    }
    let mut kept = Vec::new();
    let keep_all = |kept: Vec<String>| Plan {
        old_side: true,
        drop: None,
        drop_civi: None,
        code: None,
        kept,
    };
    if old_root.is_empty() {
        return Err("the journal has no record of the old site's root".into());
    }
    if !found.old_exists {
        kept.push(format!("`{old_root}`: gone already"));
        return Ok(keep_all(kept));
    }
    check_old_root(old_root, found)?;
    let site_dir = found.site_dir.as_str();
    // The site's own settings must name its database: else the directory found by the
    // discovery's rule may not be its own (a `sites.php` alias), and nothing of it goes.
    let own = !old_db.is_empty() && found.db_users.iter().any(|d| d == site_dir);
    if !own {
        kept.push(format!(
            "`{site_dir}` and database `{old_db}`: the settings there do not name the site's database"
        ));
        return Ok(keep_all(kept));
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
    // Its CiviCRM database (when the new site has a copy): only when its own
    // civicrm.settings.php names it and no other site's does.
    // Fail closed as for the Drupal one, and more: one database can be both (CiviCRM's
    // tables in Drupal's), and other roots on the host may name it.
    let drop_civi = if rec.old_civi.is_empty() || rec.new_civi.is_none() {
        None
    } else {
        let why = if rec.old_civi.eq_ignore_ascii_case(old_db) {
            Some("it is the site's Drupal database too".to_owned())
        } else if found.civi_users != [site_dir.to_owned()] {
            Some(
                if found.civi_users.iter().any(|d| d == site_dir) {
                    "another site's civicrm.settings.php names it too"
                } else {
                    "the site's civicrm.settings.php does not name it"
                }
                .to_owned(),
            )
        } else if !found.civi_elsewhere.is_empty() {
            Some(format!(
                "{} may use it (names it, or hides its CiviCRM database)",
                found
                    .civi_elsewhere
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            None
        };
        match why {
            None => Some(rec.old_civi.clone()),
            Some(why) => {
                kept.push(format!("CiviCRM database `{}`: {why}", rec.old_civi));
                None
            }
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
