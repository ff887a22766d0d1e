//! Regressions of the preflight, found by a review of the procedure trait: what the read-only
//! checks before the upload may and may not do to a live site.

use std::sync::Arc;

use super::{Act, HOST, dump, resume, ruled, setup, upgrade};
use crate::context::Cancel;
use crate::remote::Connect;
use crate::testkit::FROM;
use crate::vocab::{BuiltinStep, Unit};

/// A resumed run whose preflight dry run finds the database changed (here by something
/// else on the host; it could be the dry run itself). The site is live, and the only dump
/// of it is the first attempt's, older than what the site wrote since: loading it would
/// lose that. Nothing is loaded; the site stops there, up, with a reason that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_changed_before_maintenance_is_never_loaded_from_an_older_dump() {
    let (lab, journal, _s) = setup();
    let site = lab.sites[0].clone();
    let prior = site.maintenance();
    // First attempt: fails after the dumps, is rolled back; a dump of each DB is recorded.
    let c: Arc<dyn Connect> = ruled(
        &lab,
        &journal,
        vec![(HOST.into(), "move-code-out".into(), 1, Act::Fail)],
        &[],
    );
    let first = upgrade(&lab, &journal, &c, &Cancel::new()).await;
    assert_eq!(site.db_version(), FROM);
    let run = journal.run(&first.run).unwrap().unwrap();
    let before = journal.steps(&run.id).unwrap().len();
    // The resume's first dry run meets a database that moved on.
    let version_file = site.db_dir(&site.civi_db).join("civicrm_domain.version");
    let c: Arc<dyn Connect> = ruled(
        &lab,
        &journal,
        vec![(
            HOST.into(),
            "preflight-dry-run".into(),
            1,
            Act::Write(version_file, "5.69.1".into()),
        )],
        &[],
    );
    let again = resume(&lab, &journal, &c, &run).await.unwrap();
    dump(&lab, &journal, &run.id, "after resume");
    assert_eq!(site.db_version(), "5.69.1", "an older dump was loaded");
    assert_eq!(site.code_version(), FROM);
    assert_eq!(site.maintenance(), prior);
    let loaded: Vec<_> = journal.steps(&run.id).unwrap()[before..]
        .iter()
        .filter(|s| s.step == BuiltinStep::RestoreDb && s.unit == Unit::database(&site.civi_db))
        .cloned()
        .collect();
    assert!(loaded.is_empty(), "{loaded:?}");
    let outcome = again
        .sites
        .iter()
        .find(|r| r.site == site.name)
        .map(|r| r.outcome.to_string())
        .unwrap_or_default();
    assert!(
        outcome.contains("preflight-dry-run") && outcome.contains("look at the database"),
        "{outcome}"
    );
}

/// A site whose CiviCRM database discovery cannot name (a DSN read from the environment,
/// say) cannot be dumped, so it is not upgraded: refused before anything, and the journal of
/// the run reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_cannot_be_named_is_never_upgraded() {
    let (lab, journal, _s) = setup();
    let site = lab.sites[0].clone();
    let prior = site.maintenance();
    let settings = site.site_dir.join("civicrm.settings.php");
    let text = std::fs::read_to_string(&settings).unwrap();
    std::fs::write(
        &settings,
        text.replacen(
            "<?php\n",
            "<?php\ndefine(\"CIVICRM_DSN\", \"mysql://u:p@localhost/\");\n",
            1,
        ),
    )
    .unwrap();
    let c: Arc<dyn Connect> = ruled(&lab, &journal, vec![], &[]);
    let rep = upgrade(&lab, &journal, &c, &Cancel::new()).await;
    dump(&lab, &journal, &rep.run, "after the run");
    let outcome = rep
        .sites
        .iter()
        .find(|r| r.site == site.name)
        .map(|r| r.outcome.to_string())
        .unwrap_or_default();
    assert!(
        outcome.contains("cannot read the CiviCRM database's name"),
        "{outcome}"
    );
    assert_eq!(site.code_version(), FROM);
    assert_eq!(site.db_version(), FROM);
    assert_eq!(site.maintenance(), prior);
    journal
        .steps(&rep.run)
        .expect("every unit the run wrote reads back");
}
