//! What a run does with each site, from its discovered facts alone (pure: no I/O), and which
//! sites must go through the procedure together because they share a codebase or a database.

use fleet_inventory::Site;

use crate::discovery::Facts;
use crate::procedure::AnyProcedure;
use crate::procedure::civicrm::commands::version_cmp;
use crate::translations::{OnLostTranslations, Translations};
use crate::work::Work;

pub(crate) enum Classified {
    Upgrade,
    Skip(String),
    Refuse(String),
}

/// What a run does with a site: the built-in procedure and playbooks that install the
/// tarball compare versions and look at the translations the code swap would leave behind;
/// other playbooks run on every site discovery could read.
pub(crate) fn verdict(
    procedure: &AnyProcedure,
    target: &str,
    translations: &Translations,
    site: &Site,
    f: &Facts,
) -> Classified {
    match procedure {
        _ if !procedure.needs_tarball() => match &f.error {
            Some(e) => Classified::Refuse(e.clone()),
            None => Classified::Upgrade,
        },
        _ => classify(site, f, target, translations),
    }
}

pub(crate) fn classify(
    site: &Site,
    f: &Facts,
    target: &str,
    translations: &Translations,
) -> Classified {
    use std::cmp::Ordering;
    if let Some(e) = &f.error {
        return Classified::Refuse(e.clone());
    }
    if f.code_version.is_empty() {
        return Classified::Refuse(format!(
            "no CiviCRM code version at `{}/xml/version.xml`",
            f.civicrm_root
        ));
    }
    if f.db_version.is_empty() {
        return Classified::Refuse(if f.db_error.is_empty() {
            "cannot read the CiviCRM database version".into()
        } else {
            format!("cannot read the CiviCRM database version: {}", f.db_error)
        });
    }
    if f.db_version.ends_with(".upgrade") {
        return Classified::Refuse(format!(
            "the database is partially upgraded (`{}`): restore it first",
            f.db_version
        ));
    }
    if f.db_version != f.code_version {
        return Classified::Refuse(format!(
            "code `{}` and database `{}` differ: finish or undo that first",
            f.code_version, f.db_version
        ));
    }
    if f.civi_db.is_empty() {
        // Its dump is the way back: a database fleet cannot name, it cannot dump.
        return Classified::Refuse(
            "cannot read the CiviCRM database's name from civicrm.settings.php (CIVICRM_DSN): fleet does not upgrade a database it cannot back up".into(),
        );
    }
    if f.web_user.is_empty() {
        return Classified::Refuse("cannot tell the web-server user (set `web_user`)".into());
    }
    match version_cmp(target, &f.code_version) {
        Ordering::Equal => return Classified::Skip(format!("already at {target}")),
        Ordering::Less => {
            return Classified::Refuse(format!(
                "refusing to downgrade {} to {target}",
                f.code_version
            ));
        }
        Ordering::Greater => {}
    }
    if let Some(why) = lost_translations(f, target, translations) {
        return Classified::Refuse(why);
    }
    if !f.code_parent_writable {
        return Classified::Refuse(format!(
            "cannot write next to the code dir `{}`",
            f.civicrm_root
        ));
    }
    let need = f.code_kb + 50 * 1024;
    if f.free_kb < need {
        return Classified::Refuse(format!(
            "only {} MiB free for backups in `{}`, need {} MiB",
            f.free_kb / 1024,
            site.backup_dir,
            need / 1024
        ));
    }
    // The dumps are the way back: in a directory others may write to, another user could
    // plant the run's directory first, or swap a dump for their own before it is restored.
    if let Some(mode) = f.backup_mode
        && mode & 0o022 != 0
    {
        return Classified::Refuse(format!(
            "backups would go under `{}`, which others may write to (mode {mode:04o}): `chmod go-w` it, or set `backup_dir` to a directory only its owner can write",
            f.backup_at
        ));
    }
    Classified::Upgrade
}

/// Why a site would lose translations it has installed, unless the operator said to drop
/// them: the new code dir has only what `--l10n` unpacks into it, and the old one, with
/// the site's catalogues, goes to the run's backup.
fn lost_translations(f: &Facts, target: &str, translations: &Translations) -> Option<String> {
    let lost = translations.lost(&f.locales);
    if lost.is_empty() || translations.on_lost == OnLostTranslations::Drop {
        return None;
    }
    let lost = lost.join(", ");
    Some(match &translations.l10n {
        None => format!(
            "site has translations ({lost}) and no --l10n was given: they would be lost with the old code; pass --l10n civicrm-{target}-l10n.tar.gz, or --drop-translations to upgrade without them"
        ),
        Some((file, _)) => format!(
            "site has translations ({lost}) that `{file}` does not have: they would be lost with the old code; pass a localization tarball that has them, or --drop-translations to upgrade without them"
        ),
    })
}

/// Groups sites that share a codebase (`$civicrm_root`) or a CiviCRM database.
pub(crate) fn group_units<'a>(work: &[Work<'a>]) -> Vec<Vec<Work<'a>>> {
    let n = work.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while p[r] != r {
            r = p[r];
        }
        p[i] = r;
        r
    }
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (&work[i].facts, &work[j].facts);
            if a.civicrm_root == b.civicrm_root || (!a.civi_db.is_empty() && a.civi_db == b.civi_db)
            {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                parent[rj] = ri;
            }
        }
    }
    let mut groups: Vec<(usize, Vec<Work<'a>>)> = Vec::new();
    for (i, w) in work.iter().enumerate() {
        let r = find(&mut parent, i);
        match groups.iter_mut().find(|(root, _)| *root == r) {
            Some((_, g)) => g.push(w.clone()),
            None => groups.push((r, vec![w.clone()])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

#[cfg(test)]
mod tests {
    use fleet_inventory::DbUpgradeTool;

    use super::*;

    fn site(name: &str) -> Site {
        Site {
            name: name.into(),
            root: "/var/www/d7".into(),
            uri: format!("https://{name}.example"),
            current: None,
            web_user: None,
            backup_dir: "/var/backups".into(),
            drush: "drush".into(),
            cv: "cv".into(),
            db_upgrade: DbUpgradeTool::Cv,
            disable_modules: Vec::new(),
        }
    }

    /// What discovery reports for a healthy site at 5.69.0 with room to work.
    fn healthy() -> Facts {
        Facts {
            site_dir: "/var/www/d7/sites/a".into(),
            civicrm_root: "/var/www/d7/sites/all/modules/civicrm".into(),
            civi_db: "civi_a".into(),
            cms_db: "drupal_a".into(),
            templates_c: "/var/www/d7/sites/a/files/civicrm/templates_c".into(),
            code_version: "5.69.0".into(),
            locales: Vec::new(),
            db_version: "5.69.0".into(),
            db_error: String::new(),
            maintenance: "0".into(),
            web_user: "www-data".into(),
            has_cv: true,
            has_drush: true,
            enabled_modules: Vec::new(),
            free_kb: 10 << 20,
            backup_at: "/var/backups/civicrm".into(),
            backup_mode: Some(0o700),
            code_kb: 100 << 10,
            code_parent_writable: true,
            error: None,
        }
    }

    /// A run without `--l10n` that refuses to lose translations (the default).
    fn keep() -> Translations {
        Translations::default()
    }

    fn why(c: Classified) -> String {
        match c {
            Classified::Upgrade => "upgrade".into(),
            Classified::Skip(w) => format!("skip: {w}"),
            Classified::Refuse(w) => format!("refuse: {w}"),
        }
    }

    #[test]
    fn a_healthy_older_site_is_upgraded_and_one_at_the_target_skipped() {
        assert_eq!(
            why(classify(&site("a"), &healthy(), "5.70.0", &keep())),
            "upgrade"
        );
        assert_eq!(
            why(classify(&site("a"), &healthy(), "5.69.0", &keep())),
            "skip: already at 5.69.0"
        );
    }

    #[test]
    fn every_unsafe_state_is_refused_with_its_reason() {
        type Change = Box<dyn Fn(&mut Facts)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "refuse: unreadable",
                Box::new(|f| f.error = Some("unreadable".into())),
            ),
            (
                "no CiviCRM code version",
                Box::new(|f| f.code_version.clear()),
            ),
            (
                "cannot read the CiviCRM database version",
                Box::new(|f| f.db_version.clear()),
            ),
            (
                "partially upgraded (`5.69.0.upgrade`)",
                Box::new(|f| f.db_version = "5.69.0.upgrade".into()),
            ),
            (
                "code `5.69.0` and database `5.68.0` differ",
                Box::new(|f| f.db_version = "5.68.0".into()),
            ),
            (
                "cannot read the CiviCRM database's name",
                Box::new(|f| f.civi_db.clear()),
            ),
            ("web-server user", Box::new(|f| f.web_user.clear())),
            (
                "cannot write next to the code dir",
                Box::new(|f| f.code_parent_writable = false),
            ),
            ("MiB free for backups", Box::new(|f| f.free_kb = 1024)),
            (
                "which others may write to (mode 1777)",
                Box::new(|f| f.backup_mode = Some(0o1777)),
            ),
            (
                "which others may write to (mode 0775)",
                Box::new(|f| f.backup_mode = Some(0o775)),
            ),
        ];
        for (want, change) in cases {
            let mut f = healthy();
            change(&mut f);
            let got = why(classify(&site("a"), &f, "5.70.0", &keep()));
            assert!(
                got.starts_with("refuse: ") && got.contains(want),
                "{want}: got {got}"
            );
        }
        assert_eq!(
            why(classify(&site("a"), &healthy(), "5.10.0", &keep())),
            "refuse: refusing to downgrade 5.69.0 to 5.10.0"
        );
    }

    #[test]
    fn a_site_whose_translations_the_run_would_not_bring_is_refused() {
        use std::collections::BTreeSet;
        let with = |locales: &[&str]| {
            let mut f = healthy();
            f.locales = locales.iter().map(|l| (*l).to_owned()).collect();
            f
        };
        let l10n = |locales: &[&str], on_lost| Translations {
            l10n: Some((
                "civicrm-5.70.0-l10n.tar.gz".into(),
                locales
                    .iter()
                    .map(|l| (*l).to_owned())
                    .collect::<BTreeSet<_>>(),
            )),
            on_lost,
        };
        let drop = Translations {
            l10n: None,
            on_lost: OnLostTranslations::Drop,
        };
        #[track_caller]
        fn case(f: &Facts, t: &Translations, want: &str) {
            assert_eq!(why(classify(&site("a"), f, "5.70.0", t)), want);
        }
        let no_l10n = "refuse: site has translations (de_DE, fr_FR) and no --l10n was given: they would be lost with the old code; pass --l10n civicrm-5.70.0-l10n.tar.gz, or --drop-translations to upgrade without them";
        case(&with(&["fr_FR", "de_DE"]), &keep(), no_l10n);
        // `en_US` is the language of the strings, not a translation to lose.
        case(&with(&["en_US", "de_DE", "fr_FR"]), &keep(), no_l10n);
        case(&with(&["en_US"]), &keep(), "upgrade");
        case(&with(&[]), &keep(), "upgrade");
        case(&with(&["fr_FR", "de_DE"]), &drop, "upgrade");
        // With --l10n: refused only for the locales its tarball does not have.
        case(
            &with(&["fr_FR", "de_DE"]),
            &l10n(&["fr_FR", "de_DE", "nl_NL"], OnLostTranslations::Refuse),
            "upgrade",
        );
        case(
            &with(&["fr_FR", "de_DE", "sr_Latn_RS"]),
            &l10n(&["fr_FR"], OnLostTranslations::Refuse),
            "refuse: site has translations (de_DE, sr_Latn_RS) that `civicrm-5.70.0-l10n.tar.gz` does not have: they would be lost with the old code; pass a localization tarball that has them, or --drop-translations to upgrade without them",
        );
        case(
            &with(&["de_DE"]),
            &l10n(&["fr_FR"], OnLostTranslations::Drop),
            "upgrade",
        );
        // Nothing is lost by a site the run does not upgrade: it keeps its code.
        let f = with(&["de_DE"]);
        assert_eq!(
            why(classify(&site("a"), &f, "5.69.0", &keep())),
            "skip: already at 5.69.0"
        );
        // A playbook that swaps no code leaves the translations where they are.
        let pb = crate::Playbook::parse(
            "name = \"cc\"\n[[steps]]\nname = \"cc\"\nkind = \"shell\"\nrun = \"true\"\n",
            std::path::Path::new("cc.toml"),
        )
        .expect("playbook");
        assert_eq!(
            why(verdict(
                &AnyProcedure::Playbook(pb),
                "5.70.0",
                &keep(),
                &site("a"),
                &f
            )),
            "upgrade"
        );
        assert!(
            why(verdict(
                &AnyProcedure::Civicrm,
                "5.70.0",
                &keep(),
                &site("a"),
                &f
            ))
            .starts_with("refuse: site has translations (de_DE)")
        );
    }

    #[test]
    fn a_playbook_without_the_tarball_runs_on_any_readable_site() {
        let pb = crate::Playbook::parse(
            "name = \"cc\"\n[[steps]]\nname = \"cc\"\nkind = \"shell\"\nrun = \"true\"\n",
            std::path::Path::new("cc.toml"),
        )
        .expect("playbook");
        let p = AnyProcedure::Playbook(pb);
        let mut f = healthy();
        f.db_version.clear();
        assert_eq!(
            why(verdict(&p, "5.69.0", &keep(), &site("a"), &f)),
            "upgrade"
        );
        f.error = Some("no settings".into());
        assert_eq!(
            why(verdict(&p, "5.69.0", &keep(), &site("a"), &f)),
            "refuse: no settings"
        );
        assert_eq!(
            why(verdict(
                &AnyProcedure::Civicrm,
                "5.69.0",
                &keep(),
                &site("a"),
                &healthy()
            )),
            "skip: already at 5.69.0"
        );
    }

    #[test]
    fn sites_sharing_a_codebase_or_a_database_form_one_unit_transitively() {
        let sites: Vec<Site> = ["a", "b", "c", "d"].iter().map(|n| site(n)).collect();
        let mut facts: Vec<Facts> = (0..4).map(|_| healthy()).collect();
        // a and b share a codebase; b and c a CiviCRM database; d stands alone.
        for (i, f) in facts.iter_mut().enumerate() {
            f.civicrm_root = format!("/code/{i}");
            f.civi_db = format!("civi_{i}");
        }
        facts[1].civicrm_root = "/code/0".into();
        facts[2].civi_db = "civi_1".into();
        let work: Vec<Work<'_>> = sites
            .iter()
            .zip(facts)
            .map(|(site, facts)| Work {
                site,
                facts,
                prior_from: None,
            })
            .collect();
        let groups: Vec<Vec<&str>> = group_units(&work)
            .iter()
            .map(|g| g.iter().map(|w| w.site.name.as_str()).collect())
            .collect();
        assert_eq!(groups, vec![vec!["a", "b", "c"], vec!["d"]]);
    }

    #[test]
    fn sites_without_a_civicrm_database_are_not_joined_by_it() {
        let sites: Vec<Site> = ["a", "b"].iter().map(|n| site(n)).collect();
        let work: Vec<Work<'_>> = sites
            .iter()
            .enumerate()
            .map(|(i, site)| {
                let mut facts = healthy();
                facts.civicrm_root = format!("/code/{i}");
                facts.civi_db.clear();
                Work {
                    site,
                    facts,
                    prior_from: None,
                }
            })
            .collect();
        assert_eq!(group_units(&work).len(), 2);
    }
}
