//! What `fleet migrate` stands on in the lab: the web server follows each site's `current`
//! symlink, a Drupal 10 release from the lab's tarballs installs and imports a site's data
//! with the fake Drush 12 run over SSH, and the fake answers as Drush 12 does.

use std::path::Path;

use fleet_lab::{DRUPAL_RELEASE, LabSite, SitesOptions, TestLab, WEB_PORT, site_counts};

use super::{ssh, stdout_ok};

/// `s` as one POSIX shell word.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn qp(p: &Path) -> String {
    q(&p.display().to_string())
}

/// Runs `cmd` on `site`'s host; (exit code, stdout, stderr).
fn on(lab: &TestLab, site: &LabSite, cmd: &str) -> (i32, String, String) {
    let o = ssh(lab, lab.host(&site.host).unwrap(), cmd);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Builds release `id` of `site` the way `fleet migrate build` does: core and contrib
/// unpacked, settings reading the old site's connection, installed, modules enabled. Returns
/// the release dir.
fn build(lab: &TestLab, site: &LabSite, id: &str) -> std::path::PathBuf {
    let base = site.current.parent().unwrap();
    let release = base.join("releases").join(id);
    let core = lab.dir().join(format!("drupal-{DRUPAL_RELEASE}.tar.gz"));
    let old_settings = site.site_dir.join("settings.php");
    let settings = format!(
        "<?php\n$databases['migrate']['default'] = (function () {{ $databases = []; include {}; return $databases['default']['default']; }})();\n$databases['default']['default'] = ['database' => '{}_d10'] + $databases['migrate']['default'];\n",
        q(&old_settings.display().to_string()),
        site.cms_db
    );
    let mut cmd = format!(
        "set -e; mkdir -p {r}/modules/contrib; tar -xzf {c} --strip-components=1 -C {r}; ",
        r = qp(&release),
        c = qp(&core)
    );
    for (m, v) in fleet_lab::CONTRIB {
        let t = lab.dir().join(format!("{m}-{v}.tar.gz"));
        cmd += &format!("tar -xzf {} -C {}/modules/contrib; ", qp(&t), qp(&release));
    }
    cmd += &format!(
        "printf %s {s} > {r}/sites/default/settings.php; cd {r}; vendor/bin/drush site:install minimal --site-name={n} -y; vendor/bin/drush pm:install migrate migrate_drupal migrate_plus migrate_upgrade",
        s = q(&settings),
        r = qp(&release),
        n = q(site.uri_host()),
    );
    let (code, out, err) = on(lab, site, &cmd);
    assert_eq!(code, 0, "build: {out}\n{err}");
    release
}

fn drush(lab: &TestLab, site: &LabSite, release: &Path, args: &str) -> (i32, String, String) {
    on(
        lab,
        site,
        &format!("cd {} && vendor/bin/drush {args}", qp(release)),
    )
}

fn lab_with_web() -> (TestLab, Vec<LabSite>) {
    let mut lab = TestLab::with_sites(2, 2, "5.69.0");
    let sites = lab.sites(&SitesOptions::new(2, "5.69.0"));
    lab.write_drupal_release(DRUPAL_RELEASE, WEB_PORT)
        .expect("drupal release");
    lab.start_web(&sites).expect("nginx");
    (lab, sites)
}

#[test]
fn the_web_server_follows_current_and_preview() {
    let (lab, sites) = lab_with_web();
    for s in &sites {
        let a = lab.http_get(s, false).unwrap();
        assert_eq!(a.status, 200, "{}: {a:?}", s.uri_host());
        assert!(
            a.body.contains(&format!("<h1>{}</h1>", s.uri_host())),
            "{a:?}"
        );
        assert!(a.body.contains("Drupal 7.101"), "{a:?}");
        assert_eq!(lab.http_get(s, true).unwrap().status, 404, "no preview yet");
    }
    let s = &sites[0];
    let release = build(&lab, s, "r1");
    let base = s.current.parent().unwrap();
    std::os::unix::fs::symlink(&release, base.join("preview")).unwrap();
    let p = lab.http_get(s, true).unwrap();
    assert_eq!(p.status, 200, "{p:?}");
    assert!(
        p.body.contains(&format!("Drupal {DRUPAL_RELEASE}")),
        "{p:?}"
    );
    assert!(
        lab.http_get(s, false)
            .unwrap()
            .body
            .contains("Drupal 7.101")
    );
    // The switch: a new link renamed over `current`, seen by the next request.
    std::os::unix::fs::symlink(&release, base.join("current.new")).unwrap();
    std::fs::rename(base.join("current.new"), &s.current).unwrap();
    assert_eq!(s.served(), release);
    let now = lab.http_get(s, false).unwrap();
    assert!(
        now.body.contains(&format!("Drupal {DRUPAL_RELEASE}")),
        "{now:?}"
    );
    // The host's other site still serves its Drupal 7 page from the shared root.
    let other = lab.http_get(&sites[1], false).unwrap();
    assert!(other.body.contains("Drupal 7.101"), "{other:?}");
    // `down` stops nginx too.
    assert_eq!(lab.web_port(), Some(WEB_PORT));
    let address = lab.host(&s.host).unwrap().address;
    drop(lab);
    assert!(std::net::TcpStream::connect((address, WEB_PORT)).is_err());
}

#[test]
fn the_fake_drush12_installs_imports_and_checks_as_drush_does() {
    let lab = TestLab::with_sites(1, 1, "5.69.0");
    let sites = lab.sites(&SitesOptions::new(1, "5.69.0"));
    lab.write_drupal_release(DRUPAL_RELEASE, WEB_PORT).unwrap();
    let s = &sites[0];
    let counts = site_counts(s);
    let count = |t: &str| counts.iter().find(|(n, _)| *n == t).unwrap().1;

    // Before the install the site does not boot: no db-status, no bootstrap.
    let base = s.current.parent().unwrap();
    let bare = base.join("releases/bare");
    let core = lab.dir().join(format!("drupal-{DRUPAL_RELEASE}.tar.gz"));
    stdout_ok(&ssh(
        &lab,
        lab.host(&s.host).unwrap(),
        &format!(
            "mkdir -p {r} && tar -xzf {} --strip-components=1 -C {r}",
            qp(&core),
            r = qp(&bare)
        ),
    ));
    let (code, out, _) = drush(&lab, s, &bare, "status --format=json");
    assert_eq!(code, 0);
    assert!(out.contains("\"drupal-version\": \"10.3.1\""), "{out}");
    assert!(!out.contains("bootstrap"), "{out}");

    let r = build(&lab, s, "r1");
    let (_, out, _) = drush(&lab, s, &r, "status --format=json");
    assert!(out.contains("\"bootstrap\": \"Successful\""), "{out}");
    assert!(
        out.contains(&format!("\"db-name\": \"{}_d10\"", s.cms_db)),
        "{out}"
    );

    // migrate:upgrade needs a source, migrate:import a selector.
    let (code, _, err) = drush(&lab, s, &r, "migrate:upgrade --configure-only");
    assert_eq!(code, 1);
    assert!(
        err.contains("You must provide either a --legacy-db-url or --legacy-db-key."),
        "{err}"
    );
    let (code, out, err) = drush(
        &lab,
        s,
        &r,
        "migrate:upgrade --legacy-db-key=migrate --configure-only",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("upgrade_d7_node_article"), "{out}");
    let (code, _, err) = drush(&lab, s, &r, "migrate:import");
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "You must specify --all, --tag or one or more migration names separated by commas"
        ),
        "{err}"
    );

    // Two bad source rows: the node migration fails, its messages say which.
    let bad = s.db_dir(&s.cms_db).join("bad_rows.node");
    std::fs::write(&bad, "2\n").unwrap();
    let (code, _, err) = drush(&lab, s, &r, "migrate:import --all");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("upgrade_d7_node_article migration: 2 failed."),
        "{err}"
    );
    let nodes = count("node");
    assert!(
        err.contains(&format!("Processed {nodes} items ({} created, 0 updated, 2 failed, 0 ignored) - done with 'upgrade_d7_node_article'", nodes - 2)),
        "{err}"
    );
    let (_, out, _) = drush(
        &lab,
        s,
        &r,
        "migrate:messages upgrade_d7_node_article --format=json",
    );
    assert_eq!(out.matches("\"level\":\"error\"").count(), 2, "{out}");
    let (_, out, _) = drush(&lab, s, &r, "migrate:status --format=json");
    assert!(out.contains(&format!("\"id\":\"upgrade_d7_user\",\"status\":\"Idle\",\"total\":{u},\"imported\":\"{u} (100%)\",\"unprocessed\":0", u = count("users"))), "{out}");

    // New content on the old site, then `--update`: new rows created, old ones updated.
    std::fs::remove_file(&bad).unwrap();
    let users = count("users");
    std::fs::write(
        s.db_dir(&s.cms_db).join("count.users"),
        format!("{}\n", users + 2),
    )
    .unwrap();
    let (code, _, err) = drush(&lab, s, &r, "migrate:import --all --update");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("Processed {} items (2 created, {users} updated, 0 failed, 0 ignored) - done with 'upgrade_d7_user'", users + 2)), "{err}");
    let (_, out, _) = drush(
        &lab,
        s,
        &r,
        "sql:query 'SELECT COUNT(*) FROM users_field_data WHERE uid > 0'",
    );
    assert_eq!(out.trim(), (users + 2).to_string());
    let (_, out, _) = on(
        &lab,
        s,
        &format!(
            "{} -r {} -l {} sqlq 'SELECT COUNT(*) FROM users WHERE uid > 0'",
            qp(&lab.dir().join("bin/drush")),
            qp(&s.root),
            q(&s.uri)
        ),
    );
    assert_eq!(
        out.trim(),
        (users + 2).to_string(),
        "the old site's own count"
    );

    // A crash mid-import leaves the migration Importing until it is reset.
    std::fs::create_dir_all(s.state.join("fail")).unwrap();
    std::fs::write(s.state.join("fail/migrate.crash"), "1").unwrap();
    let (code, _, _) = drush(&lab, s, &r, "migrate:import --all");
    assert_eq!(code, 255);
    let (code, _, err) = drush(&lab, s, &r, "migrate:import --all");
    assert_eq!(code, 1);
    assert!(
        err.contains("is busy with another operation: Importing"),
        "{err}"
    );
    let (code, _, err) = drush(&lab, s, &r, "migrate:reset-status upgrade_d7_user_role");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Migration upgrade_d7_user_role reset to Idle"),
        "{err}"
    );
    assert_eq!(drush(&lab, s, &r, "migrate:import --all").0, 0);

    // Maintenance on Drupal 10: state:set, and maint:status exits 3 while on.
    assert_eq!(drush(&lab, s, &r, "maint:status").0, 0);
    assert_eq!(
        drush(
            &lab,
            s,
            &r,
            "state:set system.maintenance_mode 1 --input-format=integer"
        )
        .0,
        0
    );
    assert_eq!(drush(&lab, s, &r, "maint:status").0, 3);

    // The database checks fleet makes through the old site's connection.
    let (_, out, _) = drush(
        &lab,
        s,
        &r,
        &format!(
            "sql:query --database=migrate \"SHOW DATABASES LIKE '{}_d10'\"",
            s.cms_db
        ),
    );
    assert_eq!(out.trim(), format!("{}_d10", s.cms_db));
    let (_, out, _) = drush(
        &lab,
        s,
        &r,
        "sql:query --database=migrate \"SHOW DATABASES LIKE 'nope'\"",
    );
    assert_eq!(out.trim(), "");
}
