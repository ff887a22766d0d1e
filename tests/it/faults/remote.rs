//! The hosts' own tools failing, every way the fakes can (see crates/lab/fakes): each host of
//! one rolling upgrade gets a failure of its own, at its own step, and each ends where that
//! failure must leave it. A failure before the database upgrade leaves the site untouched; one
//! during or after it restores the site from its verified dump; a restore that fails too keeps
//! the site in maintenance, named loudly, until `fleet recover` brings it back. No database
//! is upgraded twice, no data is lost, every failure is reported in the tools' own words.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Figures, databases};
use crate::upgrade::{FROM, TO, Upgrade, fleet_cmd, is_upgrade_call, prior_maintenance};
use crate::{both, stderr, stdout};

/// One host's failure: the fakes' points injected on it (`point`, `point=N` for the next N
/// calls only), the version its sites must end at, and words the report must give.
struct Case {
    host: &'static str,
    points: &'static [&'static str],
    ends_at: &'static str,
    says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        host: "h01",
        points: &[],
        ends_at: TO,
        says: "upgraded",
    },
    // The disk fills while the database is dumped: nothing else is touched.
    Case {
        host: "h02",
        points: &["dump.disk"],
        ends_at: FROM,
        says: "errno 28",
    },
    // A dump that lacks its trailer is caught before the code is touched.
    Case {
        host: "h03",
        points: &["dump.truncate"],
        ends_at: FROM,
        says: "Dump completed",
    },
    // CiviCRM's pre-upgrade check refuses: the database was never changed.
    Case {
        host: "h04",
        points: &["upgrade.blocker"],
        ends_at: FROM,
        says: "rolled-back",
    },
    // The upgrade dies half-way (`.upgrade` left, triggers dropped): restored from the dump.
    Case {
        host: "h05",
        points: &["upgrade.midway"],
        ends_at: FROM,
        says: "rolled-back",
    },
    // The core upgrade finished, an extension's failed after it: restored all the same.
    Case {
        host: "h06",
        points: &["upgrade.ext"],
        ends_at: FROM,
        says: "rolled-back",
    },
    // PHP dies (a fatal error, exit 255) on every call: the site is never touched.
    Case {
        host: "h07",
        points: &["php.oom"],
        ends_at: FROM,
        says: "PHP Fatal error",
    },
    // The cache flush after the upgrade fails.
    Case {
        host: "h08",
        points: &["cv.flush"],
        ends_at: FROM,
        says: "rolled-back",
    },
    // The upgrade fails and so does the restore: the site stays down, named, for recover.
    Case {
        host: "h09",
        points: &["upgrade.midway", "restore.fail"],
        ends_at: "down",
        says: "STILL IN MAINTENANCE",
    },
];

fn inject(u: &Upgrade, c: &Case) {
    for p in c.points {
        match p.split_once('=') {
            Some((point, n)) => {
                let dir = u.host_root(c.host).join("fake-civi/fail");
                std::fs::create_dir_all(&dir).expect("fail dir");
                std::fs::write(dir.join(point), n).expect("inject");
            }
            None => u.inject(c.host, p, None),
        }
    }
}

/// Per CiviCRM database, the versions the upgrades of the run began at: more than one
/// upgrade from `FROM` with no restore between would show as the same version twice.
fn upgrades_per_db(u: &Upgrade) -> BTreeMap<String, Vec<String>> {
    let mut per = BTreeMap::new();
    for s in &u.sites {
        for call in u.calls(&s.host) {
            if is_upgrade_call(&call)
                && call["site"].as_str() == Some(&s.site_dir.display().to_string())
            {
                per.entry(s.civi_db.clone())
                    .or_insert_with(Vec::new)
                    .push(call["db_before"].as_str().unwrap_or("?").to_owned());
            }
        }
    }
    per
}

#[test]
fn every_remote_failure_ends_where_it_must() {
    let u = Upgrade::new(CASES.len(), 1);
    let before = databases(&u);
    for c in CASES {
        inject(&u, c);
    }
    let o = u.fleet(&["--batches", "100%", "--max-fail", "100%", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let events: Vec<Value> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let said = |host: &str| -> String {
        events
            .iter()
            .filter(|e| e["host"] == host)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
            + &stderr(&o)
                .lines()
                .filter(|l| l.contains(host))
                .collect::<Vec<_>>()
                .join("\n")
    };
    let now = databases(&u);
    let mut fig = Figures::default();
    let mut problems = Vec::new();
    for c in CASES {
        let s = u.sites_of(c.host)[0];
        fig.sites += 1;
        let (code, db, m) = (s.code_version(), s.db_version(), s.maintenance());
        let text = said(c.host);
        if !text.contains(c.says) {
            problems.push(format!(
                "{}: the report does not say `{}`:\n{text}",
                c.host, c.says
            ));
        }
        if c.ends_at == "down" {
            if m != "1" {
                problems.push(format!(
                    "{}: a failed restore must keep the site down, it is `{m}`",
                    c.host
                ));
            }
            continue;
        }
        if (code.as_str(), db.as_str()) != (c.ends_at, c.ends_at) || m != prior_maintenance(s) {
            fig.left_down += u64::from(m == "1");
            problems.push(format!(
                "{}: code {code}, database {db}, maintenance {m}; want {} and `{}`:\n{text}",
                c.host,
                c.ends_at,
                prior_maintenance(s)
            ));
        }
        if c.ends_at == FROM {
            let dbs = [s.civi_db.as_str(), s.cms_db.as_str()];
            let dirs: Vec<_> = dbs.iter().map(|d| s.db_dir(d)).collect();
            let of =
                |t: &BTreeMap<std::path::PathBuf, String>| -> Vec<(std::path::PathBuf, String)> {
                    t.iter()
                        .filter(|(p, _)| dirs.iter().any(|d| p.starts_with(d)))
                        .map(|(p, v)| (p.clone(), v.clone()))
                        .collect()
                };
            if of(&now) != of(&before) {
                problems.push(format!(
                    "{}: its databases are not as before the run",
                    c.host
                ));
            }
        }
    }
    // The failed restore's site comes back once the host lets it.
    let h09 = u.sites_of("h09")[0];
    std::fs::remove_file(u.host_root("h09").join("fake-civi/fail/restore.fail")).expect("clear");
    std::fs::remove_file(u.host_root("h09").join("fake-civi/fail/upgrade.midway")).expect("clear");
    let r = fleet_cmd(&u, &["recover", "--yes"]);
    if r.status.code() != Some(0)
        || h09.maintenance() != prior_maintenance(h09)
        || h09.db_version() != FROM
    {
        problems.push(format!(
            "h09: recover left maintenance {}, database {}: {}",
            h09.maintenance(),
            h09.db_version(),
            both(&r)
        ));
    } else {
        fig.recovered += 1;
    }
    for (db, began) in upgrades_per_db(&u) {
        // After a restore the database is at FROM again, so a second upgrade would be a new
        // attempt; none runs here, so each database shows at most one.
        if began.len() > 1 || began.iter().any(|v| v != FROM) {
            fig.repeated += 1;
            problems.push(format!("{db}: upgrades began at {began:?}"));
        }
    }
    let again = fleet_cmd(&u, &["recover", "--yes"]);
    if !stderr(&again).contains("nothing to recover") {
        problems.push(format!("a second recover found work: {}", both(&again)));
    }
    fig.inputs = CASES.iter().map(|c| c.points.len() as u64).sum();
    fig.save("remote faults: upgrade");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// A migration's import dies half-way (PHP runs out of memory; Drupal leaves the migration
/// `Importing`): that site fails with PHP's own words and is not released; the next import
/// picks it up where it stopped, and the site's content arrives whole, once.
#[test]
fn an_import_that_dies_half_way_is_picked_up_again() {
    let (u, release) = crate::migrate::migrate_lab(2, 1);
    let b = crate::migrate::build(&u, &release.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let run = crate::migrate::run_id(&b);
    let fail = u.host_root("h01").join("fake-civi/fail");
    std::fs::create_dir_all(&fail).expect("fail dir");
    std::fs::write(fail.join("migrate.crash"), "1").expect("inject");
    let o = crate::migrate::import(&u, &run, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = crate::migrate::site_lines(&o);
    let (status, detail) = &lines["h01/site1"];
    assert_eq!(status, "failed", "{detail}");
    assert!(detail.contains("PHP Fatal error"), "{detail}");
    assert_eq!(lines["h02/site1"].0, "done", "{}", lines["h02/site1"].1);
    let o = crate::migrate::import(&u, &run, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let s = u.sites_of("h01")[0];
    let new_db = format!("{}_d10", s.cms_db);
    for table in ["node", "users"] {
        assert_eq!(
            crate::migrate::count_in(s, &new_db, table),
            crate::migrate::count_in(s, &s.cms_db, table),
            "{table}: {}",
            both(&o)
        );
    }
    Figures {
        sites: 2,
        recovered: 1,
        inputs: 1,
        ..Figures::default()
    }
    .save("remote faults: migrate import");
}
