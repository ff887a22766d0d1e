//! The bastion of an upgrade dying, going silent, or coming back between batches.

use super::*;

/// The bastion dies (sshd and sessions killed) while the hosts behind it are mid-upgrade:
/// h02 in its DB upgrade (which outlives its connection, as PHP does, and ends on its own),
/// h03 in maintenance. Both are reported still in maintenance; `recover` while the bastion
/// is down says why and changes nothing; once it is back, `recover` brings both to a safe
/// end (code and database the same version, maintenance as before) without running a DB
/// upgrade again.
#[test]
fn upgrade_bastion_dying_mid_run_reports_the_hosts_behind_and_recover_ends_them_safely() {
    let mut u = bastion_upgrade(3);
    u.inject("h02", "upgrade.slow", Some("8"));
    u.inject("h03", "slow", Some("1"));
    let child = spawn_upgrade(
        &u,
        &[
            "-F",
            "none",
            "-l",
            "lab,!h01",
            "--batches",
            "100%",
            "--max-fail",
            "2",
        ],
    );
    let (h02, h03) = (u.sites_of("h02")[0].clone(), u.sites_of("h03")[0].clone());
    wait_until(
        "h02 in its DB upgrade, h03 in maintenance",
        secs(60),
        || h02.db_version().ends_with(".upgrade") && h03.maintenance() == "1",
    );
    u.lab.lab_mut().kill_host("h01").expect("kill the bastion");
    let o = finish_within(child, secs(60), "the upgrade whose bastion died");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for h in ["h02", "h03"] {
        assert!(
            stderr(&o).contains("STILL IN MAINTENANCE")
                && stderr(&o).contains(&format!("{h}/site1")),
            "{h}: {}",
            both(&o)
        );
    }
    let run = run_id(&u);
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains("unreachable"), "{}", both(&o));
    assert!(
        stdout(&o).contains("h01"),
        "the bastion is not named: {}",
        both(&o)
    );
    // Half back: the bastion's address answers TCP and no SSH. `recover` gives up on it
    // within the connect timeout, for both hosts behind it, and forgets nothing.
    connect_timeout(&u, "2s");
    let m = mute(&u, "h01", None);
    let o = finish_within(
        spawn_cmd(&u, &["-F", "none", "recover", "--yes"]),
        secs(30),
        "recover through a mute bastion",
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for h in ["h02", "h03"] {
        let r = row(&o, h, "site1");
        assert!(
            r.contains("through jump host `h01`") && r.contains("timed out"),
            "{r}"
        );
    }
    given_up_in_time(&m, "h01");
    drop(m);
    for s in [&h02, &h03] {
        assert_eq!(s.maintenance(), "1", "{}", s.host);
    }

    u.lab
        .lab_mut()
        .start_host("h01")
        .expect("start the bastion");
    clear(&u, "h03", "slow");
    // h02's DB upgrade, cut off from fleet, goes on to its end on the host.
    nothing_running(&run, secs(20));
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in [&h02, &h03] {
        assert!(
            safe(s),
            "{}: code {} db {} maintenance {}: {}",
            s.host,
            s.code_version(),
            s.db_version(),
            s.maintenance(),
            both(&o)
        );
    }
    assert_eq!(db_upgrades(&u, "h02"), 1, "h02's DB upgrade ran again");
    assert!(db_upgrades(&u, "h03") <= 1);
    nothing_running(&run, secs(5));
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
    Figures {
        sites: 2,
        recovered: 2,
        left_down: left_down(&[h02, h03]),
        ..Figures::default()
    }
    .save("network: upgrade, bastion dying mid-run");
}

/// The bastion dies and comes back between two batches (during the canary's bake): the next
/// connections through it are made over a new connection to the bastion, not over the dead
/// one fleet had kept for the hosts behind it, so the canary's re-verify and the second
/// batch reach their hosts and the run finishes.
#[test]
fn upgrade_bastion_back_between_batches_is_reconnected_for_the_next_batch() {
    let u = bastion_upgrade(3);
    let child = spawn_upgrade(
        &u,
        &[
            "-F",
            "none",
            "-l",
            "lab,!h01",
            "--batches",
            "1,100%",
            "--bake",
            "3s",
        ],
    );
    let canary = u.sites_of("h02")[0].clone();
    let locks = canary.backup_dir.join(".fleet-locks");
    wait_until("the canary upgraded and unlocked", secs(60), || {
        safe(&canary)
            && canary.db_version() == TO
            && std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_none())
    });
    let mut u = u;
    u.lab.lab_mut().kill_host("h01").expect("kill the bastion");
    u.lab
        .lab_mut()
        .start_host("h01")
        .expect("start the bastion");
    let o = finish_within(child, secs(60), "the upgrade whose bastion came back");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for h in ["h02", "h03"] {
        let s = u.sites_of(h)[0];
        assert_eq!(s.db_version(), TO, "{h}: {}", both(&o));
        assert!(safe(s), "{h}");
    }
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    let o = cmd(&u, &["-F", "none", "recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
    Figures {
        sites: 2,
        left_down: left_down(&u.sites[1..]),
        ..Figures::default()
    }
    .save("network: upgrade, bastion back for batch 2");
}

/// The bastion goes silent (its sshd frozen: the connections stay open and nothing more
/// comes back) while h02 behind it is in its DB upgrade: fleet gives up the connections
/// through it once their keepalives go unanswered, says h02/site1 is still in maintenance,
/// and does not hang; once the bastion is heard again, `recover` ends the site safely.
#[test]
fn upgrade_bastion_gone_silent_mid_run_is_given_up_by_keepalive_then_recovered() {
    let u = bastion_upgrade(2);
    let cfg = quick_keepalive(&u);
    u.inject("h02", "upgrade.slow", Some("4"));
    let child = spawn_upgrade(&u, &["-F", &cfg, "-l", "h02", "--batches", "100%"]);
    let s = u.sites_of("h02")[0].clone();
    wait_until("h02's DB upgrade under way", secs(60), || {
        s.db_version().ends_with(".upgrade")
    });
    u.lab.freeze_host("h01").expect("freeze the bastion");
    let frozen = Instant::now();
    let o = finish_within(child, secs(40), "the upgrade whose bastion went silent");
    let took = frozen.elapsed();
    u.lab.thaw_host("h01").expect("thaw the bastion");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        took < secs(20),
        "given up {took:?} after the bastion went silent: {}",
        both(&o)
    );
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h02/site1"),
        "{}",
        both(&o)
    );
    let run = run_id(&u);
    nothing_running(&run, secs(15));
    clear(&u, "h02", "upgrade.slow");
    let o = cmd(&u, &["-F", &cfg, "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(safe(&s), "{}", both(&o));
    assert_eq!(db_upgrades(&u, "h02"), 1, "the DB upgrade ran again");
    let o = cmd(&u, &["-F", &cfg, "recover", "--yes"]);
    assert!(stderr(&o).contains("nothing to recover"), "{}", both(&o));
    Figures {
        sites: 1,
        recovered: 1,
        left_down: left_down(&[s]),
        ..Figures::default()
    }
    .save("network: upgrade, silent bastion");
}

/// A lab of `hosts` hosts, one CiviCRM site each, the first the bastion of the others.
fn bastion_upgrade(hosts: usize) -> Upgrade {
    let lab = TestLab::with_bastion(hosts);
    let opts = SitesOptions::new(1, FROM);
    lab.add_sites(&opts).expect("sites");
    let sites = lab.sites(&opts);
    Upgrade {
        lab,
        state: tempfile::tempdir().expect("state dir"),
        sites,
    }
}
