use fleet_lab::TestLab;

use crate::{fleet, redact, run, stderr, stdout};

#[test]
fn hosts_lists_selection_in_inventory_order() {
    let lab = TestLab::start(3);
    let o = run(fleet(&lab.inventory_path()).args(["hosts"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let user = lab.user().to_owned();
    // Column widths depend on the addresses; compare the cells.
    let text = redact(&stdout(&o), lab.dir()).replace(&user, "[USER]");
    let cells: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        cells,
        [
            vec!["NAME", "ADDRESS", "USER", "GROUPS"],
            vec!["h01", "[ADDR]", "[USER]", "lab,canary,odd"],
            vec!["h02", "[ADDR]", "[USER]", "lab,even"],
            vec!["h03", "[ADDR]", "[USER]", "lab,odd"],
        ]
    );
    let o = run(fleet(&lab.inventory_path()).args(["hosts", "-l", "lab,!odd", "--json"]));
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["name"], "h02");
    assert_eq!(lines[0]["port"], lab.hosts()[1].port);
}

#[test]
fn selector_matching_nothing_is_a_usage_error() {
    let lab = TestLab::start(1);
    let o = run(fleet(&lab.inventory_path()).args(["hosts", "-l", "web*"]));
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert!(err.starts_with("error: ") && err.contains("web*"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn bad_inventory_names_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("inventory.toml");
    std::fs::write(
        &inv,
        "[defaults]\nuser = \"deploy\"\n\n[hosts.web01]\nadress = \"10.0.0.1\"\n",
    )
    .expect("write");
    let o = run(fleet(&inv).args(["exec", "--", "true"]));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o).replace(&dir.path().display().to_string(), "[DIR]");
    assert!(
        err.starts_with("error: [DIR]/inventory.toml:5:1: "),
        "{err}"
    );
    assert!(err.contains("adress"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn missing_inventory_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(fleet(&dir.path().join("nope.toml")).args(["hosts"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nope.toml"), "{}", stderr(&o));
}

#[test]
fn help_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(fleet(&dir.path().join("x.toml")).args(["exec", "--help"]));
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!(stdout(&o));
}

/// An inventory without hosts made `fleet exec -- true` succeed on "0 hosts". Every command
/// that selects hosts now refuses it, naming the file, and connects to nothing.
#[test]
fn inventory_without_hosts_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("x.toml");
    std::fs::write(&inv, "[defaults]\nuser = \"deploy\"\n\n[groups.web]\n").expect("write");
    for args in [
        &["exec", "--", "true"][..],
        &["exec", "-l", "all", "--", "true"],
        &["hosts"],
        &["upgrade", "--tarball", "civicrm-5.70.0-drupal.tar.gz"],
    ] {
        let o = run(crate::exec::pinned(fleet(&inv), dir.path()).args(args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o).replace(&dir.path().display().to_string(), "[DIR]");
        assert_eq!(
            err, "error: inventory `[DIR]/x.toml` defines no hosts\n",
            "{args:?}"
        );
    }
}
