//! The translations a site has installed, and what a run brings of them: an upgrade puts a
//! new code dir in place of the old one (kept as a backup), so the catalogues under the old
//! `<civicrm_root>/l10n/` stay behind unless the `--l10n` tarball brings them again.

use std::collections::BTreeSet;
use std::path::Path;

/// What to do with a site whose installed translations the run would not bring back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLostTranslations {
    /// Refuse the site before anything touches it, saying which locales and how to keep them.
    #[default]
    Refuse,
    /// Upgrade it anyway (`--drop-translations`): the new code has only what `--l10n`
    /// brings, and the old catalogues stay with the old code in the run's backup.
    Drop,
}

/// What a run brings of each site's translations, and what it does about the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Translations {
    /// The `--l10n` tarball, if any: its file name and the locales it has a catalogue for.
    pub(crate) l10n: Option<(String, BTreeSet<String>)>,
    /// What to do with a site that has translations the run does not bring.
    pub(crate) on_lost: OnLostTranslations,
}

impl Translations {
    /// Reads the locales of the localization tarball `l10n` (already checked to be one)
    /// on the controller.
    ///
    /// # Errors
    ///
    /// The reason, naming the file, when it cannot be listed.
    pub(crate) fn of(l10n: Option<&Path>, on_lost: OnLostTranslations) -> Result<Self, String> {
        let l10n = match l10n {
            Some(path) => {
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                Some((name, tarball_locales(path)?))
            }
            None => None,
        };
        Ok(Self { l10n, on_lost })
    }

    /// The locales of `installed` that the run does not bring, sorted: every one without
    /// `--l10n`, else those the localization tarball has no catalogue for. `en_US` is never
    /// lost: it is the language CiviCRM's strings are written in, not a translation.
    pub(crate) fn lost<'a>(&self, installed: &'a [String]) -> Vec<&'a str> {
        let mut lost: Vec<&str> = installed
            .iter()
            .map(String::as_str)
            .filter(|l| *l != "en_US")
            .filter(|l| self.l10n.as_ref().is_none_or(|(_, has)| !has.contains(*l)))
            .collect();
        lost.sort_unstable();
        lost.dedup();
        lost
    }
}

/// Whether `name` may be a locale directory's name: 1 to 64 ASCII letters, digits, `_`, `-`
/// and `@` (`de_DE`, `sr_Latn_RS`, `ca_ES@valencia`). CiviCRM names its catalogue
/// directories by locale, so a directory named otherwise is not one it loads.
pub(crate) fn is_locale(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@'))
}

/// The locales with a `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo` in the tarball at
/// `path`.
fn tarball_locales(path: &Path) -> Result<BTreeSet<String>, String> {
    let err = |why: String| format!("localization tarball `{}`: {why}", path.display());
    let out = std::process::Command::new("tar")
        .env("LC_ALL", "C")
        .arg("-tzf")
        .arg(path)
        .output()
        .map_err(|e| err(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(err(format!(
            "cannot list it: {}",
            stderr.lines().last().unwrap_or("tar failed").trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|entry| {
            let entry = entry.trim_start_matches("./");
            let locale = entry
                .strip_prefix("civicrm/l10n/")?
                .strip_suffix("/LC_MESSAGES/civicrm.mo")?;
            is_locale(locale).then(|| locale.to_owned())
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedure::civicrm::tarball::tests::{DATA, MO, SETS_5_70, tarball};

    #[test]
    fn locale_names_use_a_safe_alphabet() {
        #[track_caller]
        fn case(name: &str, ok: bool) {
            assert_eq!(is_locale(name), ok, "{name:?}");
        }
        for good in [
            "de_DE",
            "fr_FR",
            "sr_Latn_RS",
            "ca_ES@valencia",
            "es-419",
            "x",
        ] {
            case(good, true);
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "de DE",
            "de_DE.UTF-8",
            "../etc",
            "a/b",
            "$(id)",
            "`id`",
            "a;b",
            "a\nb",
            "*",
            "ü",
            &long,
        ] {
            case(bad, false);
        }
    }

    #[test]
    fn the_locales_lost_are_those_the_run_does_not_bring() {
        let installed: Vec<String> = ["fr_FR", "en_US", "de_DE", "fr_FR"]
            .map(String::from)
            .to_vec();
        let none = Translations::default();
        assert_eq!(none.lost(&installed), ["de_DE", "fr_FR"]);
        let some = Translations {
            l10n: Some(("l.tar.gz".into(), BTreeSet::from(["fr_FR".to_owned()]))),
            on_lost: OnLostTranslations::Refuse,
        };
        assert_eq!(some.lost(&installed), ["de_DE"]);
        assert!(some.lost(&["en_US".to_owned()]).is_empty());
        assert!(none.lost(&[]).is_empty());
    }

    #[test]
    fn a_tarballs_locales_are_its_catalogues() {
        let dir = tempfile::tempdir().unwrap();
        let t = tarball(
            dir.path(),
            "civicrm-5.70.0-l10n.tar.gz",
            &[
                (MO, "fr"),
                ("civicrm/l10n/de_DE/LC_MESSAGES/civicrm.mo", "de"),
                // Not a catalogue: a locale dir without one, another file name.
                ("civicrm/l10n/nl_NL/LC_MESSAGES/other.mo", "nl"),
                ("civicrm/l10n/it_IT/README", "it"),
                (DATA, SETS_5_70),
            ],
        );
        let got = Translations::of(Some(&t), OnLostTranslations::Drop).unwrap();
        assert_eq!(
            got,
            Translations {
                l10n: Some((
                    "civicrm-5.70.0-l10n.tar.gz".into(),
                    BTreeSet::from(["de_DE".to_owned(), "fr_FR".to_owned()])
                )),
                on_lost: OnLostTranslations::Drop,
            }
        );
        let e = Translations::of(
            Some(&dir.path().join("missing.tar.gz")),
            OnLostTranslations::Refuse,
        )
        .unwrap_err();
        assert!(
            e.contains("missing.tar.gz") && e.contains("cannot list it"),
            "{e}"
        );
    }

    /// On local hosts, through discovery and the whole run: a site with translations and no
    /// `--l10n` is refused before anything touches it while the other host upgrades; with
    /// `--drop-translations` it upgrades, and its old catalogues are in the code backup.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_refuses_to_strip_a_site_of_its_translations_unless_told() {
        use std::sync::Arc;

        use crate::context::Cancel;
        use crate::event::Reporter;
        use crate::journal::Journal;
        use crate::outcome::{After, SiteOutcome};
        use crate::remote::Connect;
        use crate::runner::run_upgrade_on;
        use crate::testkit::{FROM, Fault, LocalLab, Quiet, TO};

        let lab = LocalLab::new(2, 2);
        let translated: Vec<_> = lab.sites.iter().filter(|s| s.host == "h01").collect();
        translated[0]
            .install_translations(FROM, &["fr_FR", "en_US", "de_DE"])
            .unwrap();
        // Not a locale name: not a catalogue CiviCRM loads, and never named in a message.
        let odd = translated[0].code_dir().join("l10n/x$(id)/LC_MESSAGES");
        std::fs::create_dir_all(&odd).unwrap();
        std::fs::write(odd.join("civicrm.mo"), "odd").unwrap();
        let before = translated[0].translations();
        let state = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(state.path()).unwrap());
        let connect: Arc<dyn Connect> = lab.connect("none", Fault::None);
        let quiet: Arc<dyn Reporter> = Arc::new(Quiet);
        let run = |opts| {
            let (connect, journal, quiet, jobs) = (&connect, &journal, &quiet, lab.jobs());
            async move {
                run_upgrade_on(connect, jobs, &opts, journal, quiet, None, &Cancel::new())
                    .await
                    .unwrap()
            }
        };

        let report = run(lab.options()).await;
        for r in &report.sites {
            match (r.host.as_str(), &r.outcome) {
                (
                    "h01",
                    SiteOutcome::Failed {
                        step,
                        reason,
                        after,
                    },
                ) => {
                    assert_eq!((step.as_str(), after), ("preflight", &After::Untouched));
                    assert_eq!(
                        reason,
                        "site has translations (de_DE, fr_FR) and no --l10n was given: they would be lost with the old code; pass --l10n civicrm-5.70.0-l10n.tar.gz, or --drop-translations to upgrade without them"
                    );
                }
                ("h02", SiteOutcome::Upgraded { .. }) => {}
                _ => panic!("{}/{}: {}", r.host, r.site, r.outcome),
            }
        }
        for s in &translated {
            assert_eq!(
                (s.code_version(), s.db_version()),
                (FROM.into(), FROM.into())
            );
            assert_eq!(
                s.maintenance(),
                if s.name == "site1" { "0" } else { "unset" }
            );
            assert_eq!(s.translations(), before);
        }
        assert!(
            !lab.calls("h01").iter().any(|c| c["argv"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "vset"))),
            "a refused site's maintenance mode was touched"
        );

        let mut opts = lab.options();
        opts.lost_translations = OnLostTranslations::Drop;
        let report = run(opts).await;
        let run_id = report.run.clone();
        for r in report.sites.iter().filter(|r| r.host == "h01") {
            assert!(
                matches!(r.outcome, SiteOutcome::Upgraded { .. }),
                "{}/{}: {}",
                r.host,
                r.site,
                r.outcome
            );
        }
        for s in &translated {
            assert_eq!((s.code_version(), s.db_version()), (TO.into(), TO.into()));
            assert!(s.translations().is_empty(), "{:?}", s.translations());
        }
        let backup = translated[0].backup_dir.join(format!(
            "fleet-{run_id}/code/civicrm/l10n/de_DE/LC_MESSAGES/civicrm.mo"
        ));
        assert_eq!(
            std::fs::read_to_string(&backup).unwrap_or_default(),
            fleet_lab::l10n_mo_text("de_DE", FROM),
            "{}",
            backup.display()
        );
    }
}
