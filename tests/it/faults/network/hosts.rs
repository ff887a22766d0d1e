//! A host of an upgrade down before connect, killed in the DB step, accepting TCP and never
//! speaking SSH, its step hung past the timeout, or gone silent mid-step.

use super::*;

/// A host whose sshd is dead before the run: reported unreachable in the summary and the
/// journal, none of its sites touched (not one call of the fake tools), the other hosts
/// upgraded, exit 1; nothing to recover; once it is back a new run upgrades it.
#[test]
fn upgrade_host_down_before_connect_is_unreachable_untouched_and_the_others_go_on() {
    let mut u = Upgrade::new(3, 2);
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = upgrade(&u, &["--batches", "1,100%", "--max-fail", "1"], secs(90));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for s in &u.sites {
        if s.host == "h02" {
            assert!(
                row(&o, "h02", &s.name).contains("unreachable"),
                "{}",
                both(&o)
            );
            assert_eq!(s.code_version(), FROM);
            assert_eq!(s.db_version(), FROM);
            assert_eq!(s.maintenance(), prior_maintenance(s));
        } else {
            assert_eq!(s.code_version(), TO, "{}/{}: {}", s.host, s.name, both(&o));
            assert_eq!(s.db_version(), TO);
            assert_eq!(s.maintenance(), prior_maintenance(s));
        }
    }
    assert!(u.calls("h02").is_empty(), "h02 was touched");
    assert!(!stderr(&o).contains("STILL IN MAINTENANCE"), "{}", both(&o));
    let run = run_id(&u);
    let rows = journal_rows(&u, &run, "h02");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.contains("unreachable")), "{rows:?}");
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    let down = left_down(&u.sites);

    u.lab.lab_mut().start_host("h02").expect("start h02");
    let o = upgrade(&u, &[], secs(90));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        assert_eq!(s.db_version(), TO, "{}/{}", s.host, s.name);
        assert!(safe(s), "{}/{}", s.host, s.name);
    }
    Figures {
        sites: u.sites.len() as u64,
        left_down: down + left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, host down before connect");
}

/// A host killed (sshd and every session) in the middle of its DB upgrade: the run says
/// loudly that its site is still in maintenance, the others finish; `recover` while the host
/// is down changes nothing and forgets nothing; once it is back, `recover` restores the site
/// (the DB upgrade died midway: code and database back to the old version, from this run's
/// dump), maintenance as before, and the DB upgrade was run once, never again.
#[test]
fn upgrade_host_killed_during_the_db_step_is_reported_down_then_recovered() {
    let mut u = Upgrade::new(3, 1);
    u.inject("h02", "upgrade.slow", Some("30"));
    let child = spawn_upgrade(&u, &["--batches", "1,100%", "--max-fail", "1"]);
    let s = u.sites_of("h02")[0].clone();
    wait_until("h02's DB upgrade under way", secs(60), || {
        s.db_version().ends_with(".upgrade")
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02");
    let o = finish_within(child, secs(60), "the upgrade whose host died");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h02/site1"),
        "{}",
        both(&o)
    );
    for h in ["h01", "h03"] {
        let t = u.sites_of(h)[0];
        assert_eq!(t.db_version(), TO, "{h}: {}", both(&o));
        assert!(safe(t), "{h}");
    }
    // What the crash left: the journal knows it, the host is as the kill left it.
    assert_eq!(s.maintenance(), "1");
    assert_eq!(s.db_version(), format!("{TO}.upgrade"));
    let run = run_id(&u);
    let o = cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stdout(&o).contains("unreachable"), "{}", both(&o));
    assert_eq!(s.maintenance(), "1");
    // Half back: its address answers TCP and no SSH. `recover` gives up within the connect
    // timeout, and forgets nothing.
    connect_timeout(&u, "2s");
    let m = mute(&u, "h02", None);
    let o = finish_within(spawn_cmd(&u, &["recover", "--yes"]), secs(30), "recover");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        row(&o, "h02", "site1").contains("timed out"),
        "{}",
        both(&o)
    );
    given_up_in_time(&m, "h02");
    drop(m);
    assert_eq!(s.maintenance(), "1");

    // Back, and killed again in the middle of the recovery (each tool call slow): the
    // recovery's own steps are journaled, the site is still named, nothing is lost.
    u.lab.lab_mut().start_host("h02").expect("start h02");
    clear(&u, "h02", "upgrade.slow");
    u.inject("h02", "slow", Some("1"));
    let before = u.calls("h02").len();
    let child = spawn_cmd(&u, &["recover", "--yes"]);
    wait_until("the recovery under way", secs(60), || {
        u.calls("h02").len() >= before + 2
    });
    u.lab.lab_mut().kill_host("h02").expect("kill h02 again");
    let o = finish_within(child, secs(60), "the recovery whose host died");
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    assert!(stderr(&o).contains("h02/site1"), "{}", both(&o));
    let o = cmd(&u, &["hosts"]);
    assert!(
        stderr(&o).contains("left 1 site(s) in maintenance or mid-step"),
        "{}",
        both(&o)
    );
    assert_eq!(s.maintenance(), "1");

    u.lab.lab_mut().start_host("h02").expect("start h02");
    clear(&u, "h02", "slow");
    let o = cmd(&u, &["recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(s.code_version(), FROM, "{}", both(&o));
    assert_eq!(s.db_version(), FROM, "{}", both(&o));
    assert_eq!(s.maintenance(), prior_maintenance(&s));
    // The killed upgrade never logged its end (the fake logs a call when it ends): any
    // upgrade in the log ran during the recovery.
    assert_eq!(db_upgrades(&u, "h02"), 0, "the recovery ran a DB upgrade");
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, host killed in DB step");
}

/// Two hosts answer TCP and never finish an SSH handshake (one is silent, one sends its
/// banner and stops): each is refused within the connect timeout (the connection given up,
/// not held), reported unreachable, its site untouched; the third host is upgraded and the
/// run does not hang.
#[test]
fn upgrade_host_that_never_speaks_ssh_is_refused_within_the_connect_timeout() {
    let mut u = Upgrade::new(3, 1);
    connect_timeout(&u, "2s");
    let mut mutes = Vec::new();
    for (h, banner) in [
        ("h02", None),
        (
            "h03",
            Some(&b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n"[..]),
        ),
    ] {
        u.lab.lab_mut().stop_host(h).expect("stop");
        mutes.push((h, mute(&u, h, banner)));
    }
    let t = Instant::now();
    let o = upgrade(&u, &["--batches", "100%", "--max-fail", "2"], secs(60));
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert_eq!(u.sites_of("h01")[0].db_version(), TO, "{}", both(&o));
    for (h, m) in &mutes {
        let r = row(&o, h, "site1");
        assert!(r.contains("unreachable"), "{r}");
        assert!(r.contains("timed out"), "{r}");
        let s = u.sites_of(h)[0];
        assert!(safe(s) && s.code_version() == FROM, "{h}");
        given_up_in_time(m, h);
    }
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    let _ = writeln!(
        std::io::stderr(),
        "two mute hosts and one upgraded in {took:?}"
    );
    Figures {
        sites: u.sites.len() as u64,
        left_down: left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, host never speaks SSH");
}

/// Commands that hang past `--step-timeout`: h02's DB upgrade (it ignores SIGPIPE, as PHP
/// does) and every tool call of h03. Each is killed on the host (no process of the run left),
/// h02's site is rolled back (old code, old database from the dump, maintenance as before),
/// h03's was never touched; h01 is upgraded. With `--on-failure hold`, the site is restored
/// and kept in maintenance, said so, and `recover` brings it back up.
#[test]
fn upgrade_step_hanging_past_the_step_timeout_is_killed_and_the_site_restored_or_held() {
    let u = Upgrade::new(3, 1);
    u.inject("h02", "upgrade.slow", Some("600"));
    u.inject("h03", "hang", None);
    let o = upgrade(
        &u,
        &[
            "--batches",
            "1,100%",
            "--max-fail",
            "2",
            "--step-timeout",
            "5s",
        ],
        secs(120),
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    assert_eq!(u.sites_of("h01")[0].db_version(), TO, "{}", both(&o));
    let r = row(&o, "h02", "site1");
    assert!(r.contains("rolled-back") && r.contains("timed out"), "{r}");
    let h02 = u.sites_of("h02")[0];
    assert_eq!(h02.code_version(), FROM);
    assert_eq!(h02.db_version(), FROM);
    assert_eq!(h02.maintenance(), prior_maintenance(h02));
    let r = row(&o, "h03", "site1");
    assert!(r.contains("timed out"), "{r}");
    let h03 = u.sites_of("h03")[0];
    assert!(safe(h03) && h03.code_version() == FROM);
    assert!(!u.calls("h03").iter().any(is_maintenance_on));
    assert!(!stderr(&o).contains("STILL IN MAINTENANCE"), "{}", both(&o));
    nothing_to_recover(&u);
    let mut figures = Figures {
        sites: u.sites.len() as u64,
        left_down: left_down(&u.sites),
        ..Figures::default()
    };
    drop(u);

    let u = Upgrade::new(1, 1);
    u.inject("h01", "upgrade.slow", Some("600"));
    let o = upgrade(
        &u,
        &["--on-failure", "hold", "--step-timeout", "5s"],
        secs(90),
    );
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let run = run_id(&u);
    nothing_running(&run, secs(5));
    let s = u.sites_of("h01")[0];
    assert!(row(&o, "h01", "site1").contains("held"), "{}", both(&o));
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h01/site1"),
        "{}",
        both(&o)
    );
    assert_eq!(s.maintenance(), "1");
    assert_eq!(s.code_version(), FROM);
    assert_eq!(s.db_version(), FROM);
    clear(&u, "h01", "upgrade.slow");
    let before = u.calls("h01").len();
    let o = cmd(&u, &["recover", "--yes"]);
    // The hold restored code and database already: the recovery restores nothing again
    // (what the operator changed while the site was held stays), it brings the site up.
    let restores: Vec<Vec<String>> = u.calls("h01")[before..]
        .iter()
        .map(crate::upgrade::argv)
        .filter(|a| a.iter().any(|x| x == "sql-cli" || x == "sqlc"))
        .collect();
    assert!(restores.is_empty(), "restored again: {restores:?}");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(safe(s), "{}", both(&o));
    // The killed upgrade never logged its end: any in the log ran during the recovery.
    assert_eq!(db_upgrades(&u, "h01"), 0, "the recovery ran a DB upgrade");
    nothing_to_recover(&u);
    figures.sites += 1;
    figures.recovered += 1;
    figures.left_down += left_down(&u.sites);
    figures.save("network: upgrade, step hung past timeout");
}

/// h02 goes silent in the middle of its DB upgrade (its sshd frozen: no RST, no FIN, nothing
/// more heard, as when the network drops every packet), while the upgrade goes on on the
/// host. fleet gives the connection up after its keepalives go unanswered (not after the
/// 30 min step timeout), says the site is still in maintenance, and h01 finishes. Once h02
/// is heard again, `recover` finds the DB upgrade done on the host and takes the site
/// forward, maintenance as before, without running the DB upgrade again.
#[test]
fn upgrade_host_gone_silent_mid_db_step_is_given_up_by_keepalive_then_recovered() {
    let u = Upgrade::new(2, 1);
    let cfg = quick_keepalive(&u);
    u.inject("h02", "upgrade.slow", Some("4"));
    let child = spawn_upgrade(&u, &["-F", &cfg, "--batches", "100%", "--max-fail", "1"]);
    let s = u.sites_of("h02")[0].clone();
    wait_until("h02's DB upgrade under way", secs(60), || {
        s.db_version().ends_with(".upgrade")
    });
    u.lab.freeze_host("h02").expect("freeze h02");
    let frozen = Instant::now();
    let o = finish_within(child, secs(40), "the upgrade whose host went silent");
    let took = frozen.elapsed();
    u.lab.thaw_host("h02").expect("thaw h02");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        took < secs(20),
        "h02 given up {took:?} after it went silent: {}",
        both(&o)
    );
    assert!(
        stderr(&o).contains("STILL IN MAINTENANCE: h02/site1"),
        "{}",
        both(&o)
    );
    let h01 = u.sites_of("h01")[0];
    assert_eq!(h01.db_version(), TO);
    assert!(safe(h01));
    let run = run_id(&u);
    // The upgrade on the host ends on its own; the sessions of the dead connection go.
    nothing_running(&run, secs(15));
    clear(&u, "h02", "upgrade.slow");
    let o = cmd(&u, &["-F", &cfg, "recover", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(safe(&s), "{}", both(&o));
    assert_eq!(s.db_version(), TO, "{}", both(&o));
    assert_eq!(db_upgrades(&u, "h02"), 1, "the DB upgrade ran again");
    nothing_running(&run, secs(5));
    nothing_to_recover(&u);
    Figures {
        sites: u.sites.len() as u64,
        recovered: 1,
        left_down: left_down(&u.sites),
        ..Figures::default()
    }
    .save("network: upgrade, silent host in DB step");
}

// ---- migrate release --------------------------------------------------------------------
