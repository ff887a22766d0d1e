//! `fleet migrate release` with a host down, killed mid-release or after the switch, or its
//! import hung.

use super::*;

/// `migrate release` with h03 down before connect and h02 killed once its old site is in
/// maintenance: h01 is released, h02 is reported still in maintenance, h03 unreachable and
/// untouched (still serving its old site, no tool called). Once both are back, `fleet resume`
/// ends every site on its new release, out of maintenance, and nothing is left to recover.
#[test]
fn release_with_a_host_down_and_a_host_killed_mid_release_ends_on_one_release_per_site() {
    let (mut u, run) = imported_lab(3, 1);
    u.lab.lab_mut().kill_host("h03").expect("kill h03");
    let h03_calls = u.calls("h03").len();
    u.inject("h02", "slow", Some("1"));
    let child = release(&u, &run, &["--batches", "100%", "--max-fail", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fleet migrate release");
    let h02 = u.sites_of("h02")[0].clone();
    wait_until("h02's old site in maintenance", secs(60), || {
        h02.maintenance() == "1"
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = finish_within(child, secs(60), "the release whose host died");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = site_lines(&o);
    assert_eq!(lines["h01/site1"].0, "upgraded", "{}", both(&o));
    let (status, detail) = &lines["h02/site1"];
    assert!(
        detail.contains("STILL IN MAINTENANCE"),
        "h02/site1 {status}: {detail}"
    );
    let (status, detail) = &lines["h03/site1"];
    assert_eq!(status, "unreachable", "{detail}");
    let h03 = u.sites_of("h03")[0].clone();
    assert_eq!(h03.served(), h03.root, "h03 was switched");
    assert_eq!(h03.maintenance(), prior_maintenance(&h03));
    assert_eq!(u.calls("h03").len(), h03_calls, "h03 was touched");
    assert_eq!(h02.maintenance(), "1");

    for h in ["h02", "h03"] {
        u.lab.lab_mut().start_host(h).expect("start");
    }
    clear(&u, "h02", "slow");
    nothing_running(&run, secs(5));
    // The resume finishes what the release left mid-way (h02); a site it never reached
    // (h03) is the phase's to run again, which leaves the released ones alone.
    let o = cmd(&u, &["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let h02_rel = h02
        .current
        .parent()
        .expect("base")
        .join("releases")
        .join(&run);
    assert_eq!(h02.served(), h02_rel, "{}", both(&o));
    assert_eq!(
        h03.served(),
        h03.root,
        "the resume released h03: {}",
        both(&o)
    );
    let o = crate::run(&mut release(&u, &run, &["--batches", "100%"]));
    trace("the release again", &o);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let lines = site_lines(&o);
    assert_eq!(lines["h03/site1"].0, "upgraded", "{}", both(&o));
    for h in ["h01/site1", "h02/site1"] {
        assert_eq!(lines[h].0, "skipped", "{h}: {}", both(&o));
    }
    for s in &u.sites {
        let rel = s
            .current
            .parent()
            .expect("base")
            .join("releases")
            .join(&run);
        assert_eq!(s.served(), rel, "{}: {}", s.uri_host(), both(&o));
        assert_eq!(new_maintenance(s), "0", "{}", s.uri_host());
        let a = u.lab.http_get(s, false).expect("http");
        assert!(
            a.body
                .contains(&format!("Drupal {}", fleet_lab::DRUPAL_RELEASE)),
            "{}: {a:?}",
            s.uri_host()
        );
    }
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    let down = u.sites.iter().filter(|s| new_maintenance(s) != "0").count() as u64;
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: down,
        ..Figures::default()
    }
    .save("network: release, host down + host killed");
}

/// h02 is killed right after its `current` was switched to the new release, before the new
/// site is made sure to be out of maintenance and probed: the run reports it still in
/// maintenance (its old site is, and the new one serves unprobed), h01 is released; once h02
/// is back, `fleet resume` goes on from the switch: the new site out of maintenance, probed,
/// answering.
#[test]
fn release_host_killed_right_after_the_switch_is_resumed_from_there() {
    let (mut u, run) = imported_lab(2, 1);
    u.inject("h02", "slow", Some("1"));
    let child = release(&u, &run, &["--batches", "100%", "--max-fail", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fleet migrate release");
    let h02 = u.sites_of("h02")[0].clone();
    let rel = h02
        .current
        .parent()
        .expect("base")
        .join("releases")
        .join(&run);
    wait_until("h02 switched to its release", secs(60), || {
        h02.served() == rel
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = finish_within(
        child,
        secs(60),
        "the release whose host died after the switch",
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = site_lines(&o);
    assert_eq!(lines["h01/site1"].0, "upgraded", "{}", both(&o));
    let (status, detail) = &lines["h02/site1"];
    assert!(
        detail.contains("STILL IN MAINTENANCE"),
        "h02/site1 {status}: {detail}"
    );
    assert_eq!(h02.served(), rel, "the kill came before the switch");
    assert_eq!(
        h02.maintenance(),
        "1",
        "the old site is not down: {}",
        both(&o)
    );

    u.lab.lab_mut().start_host("h02").expect("start h02");
    clear(&u, "h02", "slow");
    nothing_running(&run, secs(5));
    let o = cmd(&u, &["resume", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        let rel = s
            .current
            .parent()
            .expect("base")
            .join("releases")
            .join(&run);
        assert_eq!(s.served(), rel, "{}: {}", s.uri_host(), both(&o));
        assert_eq!(new_maintenance(s), "0", "{}", s.uri_host());
        let a = u.lab.http_get(s, false).expect("http");
        assert!(
            a.status == 200
                && a.body
                    .contains(&format!("Drupal {}", fleet_lab::DRUPAL_RELEASE)),
            "{}: {a:?}",
            s.uri_host()
        );
    }
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: u.sites.iter().filter(|s| new_maintenance(s) != "0").count() as u64,
        ..Figures::default()
    }
    .save("network: release, killed after the switch");
}

/// h02's last `migrate:import --update` (its old site already in maintenance) hangs past
/// `--step-timeout`: it is killed on the host, the old site is taken out of maintenance again
/// and still served, the run says it timed out; h01 is released; nothing to recover.
#[test]
fn release_import_hanging_past_the_step_timeout_is_killed_and_the_old_site_is_back_up() {
    let (u, run) = imported_lab(2, 1);
    u.inject("h02", "migrate.hang", None);
    let child = release(
        &u,
        &run,
        &[
            "--batches",
            "100%",
            "--max-fail",
            "1",
            "--step-timeout",
            "5s",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("spawn fleet migrate release");
    let o = finish_within(child, secs(90), "the release whose import hung");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    nothing_running(&run, secs(5));
    let lines = site_lines(&o);
    assert_eq!(lines["h01/site1"].0, "upgraded", "{}", both(&o));
    let (status, detail) = &lines["h02/site1"];
    assert!(detail.contains("timed out"), "{status}: {detail}");
    assert!(
        !detail.contains("STILL IN MAINTENANCE"),
        "{status}: {detail}"
    );
    let h02 = u.sites_of("h02")[0];
    assert_eq!(h02.served(), h02.root, "h02 was switched");
    assert_eq!(h02.maintenance(), prior_maintenance(h02));
    let a = u.lab.http_get(h02, false).expect("http");
    assert!(a.body.contains("Drupal 7.101"), "{a:?}");
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        left_down: u64::from(h02.maintenance() != prior_maintenance(h02)),
        ..Figures::default()
    }
    .save("network: release, import hung past timeout");
}
