use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet_lab::{DRUPAL_RELEASE, WEB_PORT};

use crate::upgrade::Upgrade;
use crate::{both, fleet, redact, run, stderr, stdout};

mod civicrm;
mod cleanup;
pub(crate) mod rollout;

pub(crate) use rollout::{imported_lab, new_maintenance};

/// Every file, directory and link under `dir` (links as their targets, never followed),
/// the fakes' call logs aside.
pub(crate) fn tree(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.file_name()
            .is_some_and(|n| n == "calls.log" || n == "calls.lock")
        {
            continue;
        }
        let meta = std::fs::symlink_metadata(&p).expect("stat");
        if meta.is_symlink() {
            let to = std::fs::read_link(&p).expect("readlink");
            out.insert(p, format!("-> {}", to.display()));
        } else if meta.is_dir() {
            out.insert(p.clone(), "dir".into());
            tree(&p, out);
        } else {
            let bytes = std::fs::read(&p).expect("read");
            out.insert(p, String::from_utf8_lossy(&bytes).into_owned());
        }
    }
}

pub(super) fn hosts_tree(u: &Upgrade) -> BTreeMap<PathBuf, String> {
    let mut t = BTreeMap::new();
    for h in u.lab.hosts() {
        tree(&h.root, &mut t);
    }
    t
}

fn plan(u: &Upgrade, manifest: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["migrate", "plan", "--manifest"])
        .arg(manifest)
        .args(extra);
    run(&mut c)
}

#[test]
fn plan_names_each_sites_release_and_database_refuses_what_cannot_move_and_changes_nothing() {
    let u = Upgrade::new(2, 2);
    let release = u
        .lab
        .write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .expect("drupal release");
    // h02/site2: its docroot is a directory, not a link a release could replace.
    let h2s2 = u
        .sites
        .iter()
        .find(|s| s.host == "h02" && s.name == "site2")
        .unwrap();
    std::fs::remove_file(&h2s2.current).unwrap();
    std::fs::create_dir(&h2s2.current).unwrap();
    // h01/site2: `current` points somewhere else than the site's Drupal root.
    let h1s2 = u
        .sites
        .iter()
        .find(|s| s.host == "h01" && s.name == "site2")
        .unwrap();
    let elsewhere = h1s2.current.parent().unwrap().join("releases/old");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::remove_file(&h1s2.current).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &h1s2.current).unwrap();

    let before = hosts_tree(&u);
    let o = plan(&u, &release.manifest, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let text = redact(&stdout(&o), u.lab.dir());
    insta::assert_snapshot!(text);
    assert_eq!(
        hosts_tree(&u),
        before,
        "the plan changed files on the hosts"
    );
    // Only read-only commands ran: drush status, nothing else.
    for h in ["h01", "h02"] {
        for call in u.calls(h) {
            let argv = crate::upgrade::argv(&call);
            assert!(argv.iter().any(|a| a == "status"), "{h}: {argv:?}");
        }
    }

    let o = plan(&u, &release.manifest, &["--json", "-l", "h01"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2, "{}", stdout(&o));
    assert_eq!(rows[0]["action"], "build");
    assert_eq!(rows[0]["old_db"], "drupal_h01_1");
    assert_eq!(rows[0]["new_db"], "drupal_h01_1_d10");
    assert_eq!(rows[1]["action"], "refuse");
}

#[test]
fn a_manifest_whose_tarball_changed_is_refused_before_any_host_is_read() {
    let u = Upgrade::new(1, 1);
    let release = u
        .lab
        .write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .unwrap();
    std::fs::write(&release.contrib[0], b"not the tarball the manifest hashed").unwrap();
    let o = plan(&u, &release.manifest, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    let e = stderr(&o);
    assert!(e.contains("migrate.toml:"), "{e}");
    assert!(e.contains("a different or damaged file"), "{e}");
    assert!(u.calls("h01").is_empty(), "a host was contacted");
}

#[test]
fn upgrade_refuses_a_drupal_core_tarball_and_names_migrate() {
    let u = Upgrade::new(1, 1);
    let release = u
        .lab
        .write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .unwrap();
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .arg("upgrade")
        .arg("--tarball")
        .arg(&release.core);
    let o = run(&mut c);
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("it is a Drupal {DRUPAL_RELEASE} core release")),
        "{e}"
    );
    assert!(e.contains("fleet migrate --manifest FILE"), "{e}");
    let s = &u.sites[0];
    assert_eq!(s.code_version(), crate::upgrade::FROM);
    assert_eq!(s.maintenance(), "0");
    assert!(u.calls("h01").is_empty(), "a host was contacted");
}

/// Asks every site for its front page over HTTP, over and over, until stopped; keeps every
/// answer that is not a 200 (or does not hold `want`, when given).
pub(super) struct Poller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Poller {
    pub(super) fn start(u: &Upgrade, want: Option<&'static str>) -> Poller {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, sites) = (stop.clone(), u.sites.clone());
        let lab_dir = u.lab.dir().to_owned();
        let thread = std::thread::spawn(move || {
            let lab = fleet_lab::Lab::open(&lab_dir).expect("open lab");
            let (mut answers, mut bad) = (0usize, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for s in &sites {
                    match lab.http_get(s, false) {
                        Ok(a) if a.status == 200 && want.is_none_or(|w| a.body.contains(w)) => {}
                        other => bad.push(format!("{}: {other:?}", s.uri_host())),
                    }
                    answers += 1;
                }
            }
            (answers, bad)
        });
        Poller { stop, thread }
    }

    /// Stops it; panics unless it asked every site at least once and all answered.
    pub(super) fn check(self, n_sites: usize, during: &str) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (answers, bad) = self.thread.join().expect("poller");
        assert!(answers >= n_sites, "the poller never ran during {during}");
        assert!(
            bad.is_empty(),
            "sites failed to answer during {during}: {bad:?}"
        );
    }
}

/// A lab of `hosts` x `per_host` sites served by nginx, with the Drupal 10 release.
/// Every site has its own CiviCRM database (a shared one is refused by the import: see
/// `civicrm.rs`).
pub(crate) fn migrate_lab(hosts: usize, per_host: usize) -> (Upgrade, fleet_lab::DrupalRelease) {
    let mut u = Upgrade::with(
        hosts,
        fleet_lab::SitesOptions::new(per_host, crate::upgrade::FROM).own_civicrm(),
    );
    let release = u
        .lab
        .write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .expect("drupal release");
    let sites = u.sites.clone();
    u.lab.start_web(&sites).expect("nginx");
    (u, release)
}

pub(crate) fn build(u: &Upgrade, manifest: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["migrate", "build", "--manifest"])
        .arg(manifest)
        .args(extra);
    run(&mut c)
}

/// The run id a `--json` build printed.
pub(crate) fn run_id(o: &std::process::Output) -> String {
    stdout(o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| (v["event"] == "run_started").then(|| v["run"].as_str().unwrap().to_owned()))
        .expect("a run_started event")
}

/// What a site's Drupal 7 database holds (every fact file), to show it unchanged.
pub(super) fn db_files(s: &fleet_lab::LabSite, db: &str) -> BTreeMap<PathBuf, String> {
    let mut t = BTreeMap::new();
    let dir = s.db_dir(db);
    if dir.exists() {
        tree(&dir, &mut t);
    }
    t
}

#[test]
fn build_puts_a_release_and_a_database_beside_every_site_while_the_old_sites_keep_answering() {
    let (u, release) = migrate_lab(3, 2);
    let old_dbs: Vec<_> = u.sites.iter().map(|s| db_files(s, &s.cms_db)).collect();
    // Poll every old site over HTTP for as long as the build runs.
    let poller = Poller::start(&u, Some("Drupal 7.101"));
    let o = build(&u, &release.manifest, &["--json"]);
    poller.check(u.sites.len(), "the build");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let run_id_ = run_id(&o);

    for (s, old_db) in u.sites.iter().zip(&old_dbs) {
        let base = s.current.parent().unwrap();
        let rel = base.join("releases").join(&run_id_);
        assert!(
            rel.join("core/lib/Drupal.php").is_file(),
            "{}",
            rel.display()
        );
        for (m, _) in fleet_lab::CONTRIB {
            assert!(
                rel.join(format!("modules/contrib/{m}/{m}.info.yml"))
                    .is_file()
            );
        }
        let settings = std::fs::read_to_string(rel.join("sites/default/settings.php")).unwrap();
        assert!(
            settings.contains(&format!("include '{}/settings.php'", s.site_dir.display())),
            "{settings}"
        );
        assert!(
            !settings.contains("secret"),
            "a password was copied: {settings}"
        );
        // The old site: still what `current` serves, its database unchanged.
        assert_eq!(s.served(), s.root, "{}", s.uri_host());
        assert_eq!(
            &db_files(s, &s.cms_db),
            old_db,
            "{}: old database changed",
            s.uri_host()
        );
        assert_eq!(
            s.maintenance(),
            if s.name == "site1" { "0" } else { "unset" }
        );
        // The new site: its own database, installed, linked as `preview` and served there.
        let new_db = s.db_dir(&format!("{}_d10", s.cms_db));
        assert_eq!(
            std::fs::read_to_string(new_db.join("installed"))
                .unwrap()
                .trim(),
            "minimal"
        );
        assert_eq!(std::fs::read_link(base.join("preview")).unwrap(), rel);
        let p = u.lab.http_get(s, true).unwrap();
        assert_eq!(p.status, 200, "{p:?}");
        assert!(
            p.body.contains(&format!("<h1>{}</h1>", s.uri_host())),
            "{p:?}"
        );
        assert!(
            p.body.contains(&format!("Drupal {DRUPAL_RELEASE}")),
            "{p:?}"
        );
    }
    // The journal lists what the run made, for the way back and the cleanup.
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["runs", "show", &run_id_]);
    let shown = run(&mut c);
    let text = stdout(&shown);
    assert!(
        text.contains("manifest: the journal keeps its text"),
        "{text}"
    );
    assert_eq!(text.matches(" release ").count(), u.sites.len(), "{text}");
    assert_eq!(
        text.matches(" new-database ").count(),
        u.sites.len(),
        "{text}"
    );
}

#[test]
fn a_failed_install_undoes_that_sites_build_and_the_others_are_built() {
    let (u, release) = migrate_lab(2, 2);
    // h02's first install runs out of disk (the fake leaves a half-made database behind).
    let fail = u.host_root("h02").join("fake-civi/fail");
    std::fs::create_dir_all(&fail).unwrap();
    std::fs::write(fail.join("install.disk"), "1").unwrap();
    let o = build(&u, &release.manifest, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let run_id_ = run_id(&o);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["event"] == "site")
        .collect();
    for s in &u.sites {
        let base = s.current.parent().unwrap();
        let rel = base.join("releases").join(&run_id_);
        let row = lines
            .iter()
            .find(|v| v["host"] == s.host.as_str() && v["site"] == s.name.as_str())
            .expect("a site line");
        let new_db = s.db_dir(&format!("{}_d10", s.cms_db));
        if s.host == "h02" && s.name == "site1" {
            assert_eq!(row["status"], "failed", "{row}");
            let detail = row["detail"].as_str().unwrap();
            assert!(detail.contains("No space left on device"), "{detail}");
            assert!(
                detail.contains("the build was undone, the old site is untouched"),
                "{detail}"
            );
            assert!(
                !rel.exists(),
                "the failed release is left: {}",
                rel.display()
            );
            assert!(!new_db.exists(), "the failed site's database is left");
            assert!(
                std::fs::symlink_metadata(base.join("preview")).is_err(),
                "a preview link is left"
            );
        } else {
            assert_eq!(row["status"], "done", "{row}");
            assert!(rel.join("core/lib/Drupal.php").is_file());
            assert!(new_db.join("installed").is_file());
        }
        assert_eq!(s.served(), s.root, "current moved on {}", s.uri_host());
        let a = u.lab.http_get(s, false).unwrap();
        assert!(a.body.contains("Drupal 7.101"), "{a:?}");
    }
}

#[test]
fn a_database_that_exists_is_never_installed_over() {
    let (u, release) = migrate_lab(1, 1);
    let s = &u.sites[0];
    let taken = s.db_dir(&format!("{}_d10", s.cms_db));
    std::fs::create_dir_all(&taken).unwrap();
    std::fs::write(taken.join("data.node"), "someone's data\n").unwrap();
    let o = build(&u, &release.manifest, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let text = stdout(&o);
    assert!(
        text.contains(
            "exists already: fleet never installs a site over a database it did not create"
        ),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(taken.join("data.node")).unwrap(),
        "someone's data\n"
    );
    let releases: Vec<_> = std::fs::read_dir(s.current.parent().unwrap().join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(releases.is_empty(), "a release is left: {releases:?}");
    // No install ran anywhere.
    assert!(
        !u.calls("h01")
            .iter()
            .any(|c| crate::upgrade::argv(c).iter().any(|a| a == "site:install")),
        "site:install ran"
    );
}

pub(crate) fn import(u: &Upgrade, run: &str, extra: &[&str]) -> std::process::Output {
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["migrate", "import", run, "--json"])
        .args(extra);
    crate::run(&mut c)
}

/// The `site` lines of a `--json` phase: (host/site, status, detail).
pub(crate) fn site_lines(o: &std::process::Output) -> BTreeMap<String, (String, String)> {
    stdout(o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "site")
        .map(|v| {
            (
                format!(
                    "{}/{}",
                    v["host"].as_str().unwrap(),
                    v["site"].as_str().unwrap()
                ),
                (
                    v["status"].as_str().unwrap().to_owned(),
                    v["detail"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

pub(crate) fn count_in(s: &fleet_lab::LabSite, db: &str, table: &str) -> u64 {
    std::fs::read_to_string(s.db_dir(db).join(format!("count.{table}")))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn import_brings_each_sites_data_across_passes_qa_and_picks_up_new_content_again() {
    let (u, release) = migrate_lab(2, 2);
    let b = build(&u, &release.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let run = run_id(&b);
    let old_dbs: Vec<_> = u.sites.iter().map(|s| db_files(s, &s.cms_db)).collect();

    let poller = Poller::start(&u, Some("Drupal 7.101"));
    let o = import(&u, &run, &[]);
    poller.check(u.sites.len(), "the import");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let lines = site_lines(&o);
    for (s, old_db) in u.sites.iter().zip(&old_dbs) {
        let (status, detail) = &lines[&format!("{}/{}", s.host, s.name)];
        assert_eq!(status, "done", "{detail}");
        assert!(detail.contains("imported, QA passed"), "{detail}");
        assert!(detail.contains("preview 200 with its marker"), "{detail}");
        let new = format!("{}_d10", s.cms_db);
        for t in ["users", "node"] {
            assert_eq!(
                count_in(s, &new, t),
                count_in(s, &s.cms_db, t),
                "{} {t}",
                s.uri_host()
            );
        }
        assert_eq!(
            &db_files(s, &s.cms_db),
            old_db,
            "{}: the import wrote to the old database",
            s.uri_host()
        );
        assert_eq!(s.served(), s.root);
    }

    // New content on one old site, then the import again: it comes across with --update.
    let s = &u.sites[0];
    let nodes = count_in(s, &s.cms_db, "node");
    std::fs::write(
        s.db_dir(&s.cms_db).join("count.node"),
        format!("{}\n", nodes + 3),
    )
    .unwrap();
    let o = import(&u, &run, &["-l", &s.host]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(count_in(s, &format!("{}_d10", s.cms_db), "node"), nodes + 3);
    let imports: Vec<Vec<String>> = u
        .calls(&s.host)
        .iter()
        .map(crate::upgrade::argv)
        .filter(|a| a.first().is_some_and(|c| c == "migrate:import"))
        .collect();
    assert_eq!(
        imports.len(),
        2 * 2,
        "two imports per site of {}: {imports:?}",
        s.host
    );
    assert!(
        imports[2..]
            .iter()
            .all(|a| a.contains(&"--update".to_owned())),
        "{imports:?}"
    );
    assert!(!imports[0].contains(&"--update".to_owned()), "{imports:?}");

    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["runs", "show", &run]);
    let shown = stdout(&crate::run(&mut c));
    assert_eq!(
        shown.matches(" qa-passed ").count(),
        u.sites.len(),
        "{shown}"
    );
}

#[test]
fn a_site_that_fails_its_import_or_a_gate_is_not_passed_and_the_others_are() {
    let (u, release) = migrate_lab(2, 2);
    let b = build(&u, &release.manifest, &["--json"]);
    assert_eq!(b.status.code(), Some(0), "{}", both(&b));
    let run = run_id(&b);
    // h01/site2: two of its old nodes cannot be imported.
    let bad = u
        .sites
        .iter()
        .find(|s| s.host == "h01" && s.name == "site2")
        .unwrap();
    std::fs::write(bad.db_dir(&bad.cms_db).join("bad_rows.node"), "2\n").unwrap();
    // h02/site1: its preview is gone, so the HTTP gate cannot pass.
    let gone = u
        .sites
        .iter()
        .find(|s| s.host == "h02" && s.name == "site1")
        .unwrap();
    std::fs::remove_file(gone.current.parent().unwrap().join("preview")).unwrap();

    let o = import(&u, &run, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = site_lines(&o);
    let (status, detail) = &lines["h01/site2"];
    assert_eq!(status, "failed");
    assert!(detail.contains("failed at `migrate-import`"), "{detail}");
    assert!(
        detail.contains("upgrade_d7_node_article migration: 2 failed."),
        "{detail}"
    );
    assert!(detail.contains("the site is not released"), "{detail}");
    let (status, detail) = &lines["h02/site1"];
    assert_eq!(status, "failed");
    assert!(detail.contains("failed at `qa-probe`"), "{detail}");
    assert!(detail.contains("HTTP 404"), "{detail}");
    for ok in ["h01/site1", "h02/site2"] {
        assert_eq!(lines[ok].0, "done", "{ok}: {}", lines[ok].1);
    }
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["runs", "show", &run]);
    let shown = stdout(&crate::run(&mut c));
    // The failed sites' gate stays empty (emptied when their import began).
    let passed: Vec<&str> = shown.lines().filter(|l| l.contains(" qa-passed")).collect();
    assert_eq!(passed.len(), 4, "{shown}");
    for (who, site) in [("h01", "site2"), ("h02", "site1")] {
        let line = passed
            .iter()
            .find(|l| l.starts_with(who) && l.contains(&format!("site:{site}")))
            .unwrap_or_else(|| panic!("no qa-passed row of {who}/{site}: {shown}"));
        assert!(line.trim_end().ends_with("qa-passed"), "{line}");
    }
    for s in &u.sites {
        assert_eq!(s.served(), s.root, "{}", s.uri_host());
    }
    // The release takes the passed sites only; the failed ones stay on their old site.
    std::fs::write(bad.db_dir(&bad.cms_db).join("bad_rows.node"), "0\n").unwrap();
    let o = crate::run(&mut rollout::release(
        &u,
        &run,
        &["--batches", "100%", "--max-fail", "100%"],
    ));
    let lines = site_lines(&o);
    for s in &u.sites {
        let who = format!("{}/{}", s.host, s.name);
        let rel = s.current.parent().unwrap().join("releases").join(&run);
        if who == "h01/site2" || who == "h02/site1" {
            assert_eq!(lines[&who].0, "not-started", "{who}: {}", lines[&who].1);
            assert!(
                lines[&who].1.contains("has not passed QA"),
                "{who}: {}",
                lines[&who].1
            );
            assert_eq!(s.served(), s.root, "{who} was released");
        } else {
            assert_eq!(lines[&who].0, "upgraded", "{who}: {}", lines[&who].1);
            assert_eq!(s.served(), rel, "{who}");
        }
    }
}

#[test]
fn a_migrate_run_is_not_for_the_upgrades_way_back() {
    let (u, release) = migrate_lab(1, 1);
    let b = build(&u, &release.manifest, &["--json"]);
    let run = run_id(&b);
    for (cmd, says) in [
        (vec!["rollback", run.as_str()], "is a `fleet migrate` run"),
        // A build is not a release caught mid-way: resume names the phases to run instead.
        (
            vec!["resume", run.as_str()],
            "was not caught mid-release: go on with `fleet migrate import",
        ),
    ] {
        let mut c = fleet(&u.lab.inventory_path());
        c.arg("--state-dir").arg(u.state.path()).args(&cmd);
        let o = crate::run(&mut c);
        assert_ne!(o.status.code(), Some(0), "{cmd:?}: {}", both(&o));
        assert!(stderr(&o).contains(says), "{cmd:?}: {}", both(&o));
    }
    let mut c = fleet(&u.lab.inventory_path());
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["recover", "-y"]);
    let o = crate::run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let s = &u.sites[0];
    assert!(
        s.current
            .parent()
            .unwrap()
            .join("releases")
            .join(&run)
            .is_dir(),
        "recover removed the build"
    );
}

#[test]
fn sites_sharing_a_current_directory_are_refused_and_a_failed_build_leaves_an_earlier_preview_as_it_was()
 {
    let (u, release) = migrate_lab(2, 2);
    // h01/site2 keeps its docroot link beside site1's: one releases/ for two sites.
    let s1 = u
        .sites
        .iter()
        .find(|s| s.host == "h01" && s.name == "site1")
        .unwrap();
    let s2 = u
        .sites
        .iter()
        .find(|s| s.host == "h01" && s.name == "site2")
        .unwrap();
    let shared = s1.current.parent().unwrap().join("current2");
    std::os::unix::fs::symlink(&s2.root, &shared).unwrap();
    let inv = u.lab.inventory_path();
    let text = std::fs::read_to_string(&inv).unwrap();
    let text = text.replace(
        &format!("current = \"{}\"", s2.current.display()),
        &format!("current = \"{}\"", shared.display()),
    );
    std::fs::write(&inv, text).unwrap();
    // h02/site1 has a preview from an earlier build; its install now fails.
    let h2 = u
        .sites
        .iter()
        .find(|s| s.host == "h02" && s.name == "site1")
        .unwrap();
    let earlier = h2.current.parent().unwrap().join("releases/earlier");
    std::fs::create_dir_all(&earlier).unwrap();
    std::os::unix::fs::symlink(&earlier, h2.current.parent().unwrap().join("preview")).unwrap();
    let fail = u.host_root("h02").join("fake-civi/fail");
    std::fs::create_dir_all(&fail).unwrap();
    std::fs::write(fail.join("install.disk"), "1").unwrap();

    let o = build(&u, &release.manifest, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = site_lines(&o);
    for who in ["h01/site1", "h01/site2"] {
        let (status, detail) = &lines[who];
        assert_eq!(status, "failed", "{who}: {detail}");
        assert!(
            detail.contains("has its `current` in the same directory"),
            "{who}: {detail}"
        );
    }
    assert!(
        std::fs::read_dir(s1.current.parent().unwrap().join("releases"))
            .unwrap()
            .next()
            .is_none(),
        "a release was made for a refused site"
    );
    let (status, detail) = &lines["h02/site1"];
    assert_eq!(status, "failed", "{detail}");
    assert_eq!(
        std::fs::read_link(h2.current.parent().unwrap().join("preview")).unwrap(),
        earlier,
        "the earlier preview was changed"
    );
    assert!(earlier.is_dir(), "the earlier release was removed");
    assert_eq!(lines["h02/site2"].0, "done");
}
