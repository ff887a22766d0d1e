use sha2::{Digest, Sha256};

use super::*;

/// A directory with the tarballs `names` (each holding its own name) and a manifest `text`
/// in it; returns the directory and the manifest's path.
fn with_files(names: &[&str], text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::write(dir.path().join(n), n.as_bytes()).unwrap();
    }
    let path = dir.path().join("migrate.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const CORE: &str = "[core]\nversion = \"10.3.1\"\ntarball = \"drupal-10.3.1.tar.gz\"\n";
const SITE: &str = "[site]\nprofile = \"minimal\"\ndatabase = \"{old_db}_d10\"\n";

fn load(text: &str) -> Result<Manifest, PlaybookError> {
    let (_d, path) = with_files(&["drupal-10.3.1.tar.gz", "mu.tar.gz"], text);
    Manifest::load(&path)
}

fn err(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn a_full_manifest_reads_with_its_tarballs_hashed() {
    let text = format!(
        "{CORE}sha256 = \"{}\"\n[[module]]\nname = \"migrate_upgrade\"\nversion = \"4.0.2\"\ntarball = \"mu.tar.gz\"\n{SITE}enable = [\"migrate\", \"migrate_upgrade\"]\n[import]\ntag = \"Drupal 7\"\n[qa]\ncount_tolerance = \"2%\"\nprobe = \"http://{{address}}:8080/\"\nmarker = \"Drupal 10\"\n[[qa.check]]\nname = \"front\"\nrun = \"test -f index.php\"\n",
        hash("drupal-10.3.1.tar.gz").to_uppercase()
    );
    let (dir, path) = with_files(&["drupal-10.3.1.tar.gz", "mu.tar.gz"], &text);
    let m = Manifest::load(&path).unwrap();
    assert_eq!(m.major(), 10);
    assert_eq!(m.core.path, dir.path().join("drupal-10.3.1.tar.gz"));
    assert_eq!(m.core.sha256, hash("drupal-10.3.1.tar.gz"));
    assert_eq!(m.modules.len(), 1);
    assert_eq!(m.modules[0].name, "migrate_upgrade");
    assert_eq!(m.modules[0].tarball.sha256, hash("mu.tar.gz"));
    assert_eq!(m.site.drush, "vendor/bin/drush");
    assert_eq!(m.site.enable, ["migrate", "migrate_upgrade"]);
    assert_eq!(m.import.legacy_key, "migrate");
    assert_eq!(m.import.tag.as_deref(), Some("Drupal 7"));
    assert_eq!(m.qa.count_tolerance, Tolerance::Percent(2.0));
    assert_eq!(m.qa.checks[0].name, "front");
    assert_eq!(m.text, text);
}

#[test]
fn a_tarball_whose_hash_differs_is_refused_at_its_sha256() {
    let e = err(&format!(
        "{CORE}sha256 = \"{}\"\n{SITE}",
        hash("something else")
    ));
    assert!(e.contains("migrate.toml:4:10: tarball `"), "{e}");
    assert!(e.contains("a different or damaged file"), "{e}");
    assert!(err(&format!("{CORE}sha256 = \"abc\"\n{SITE}")).contains("is not 64 hex digits"));
}

#[test]
fn a_missing_tarball_is_named_at_its_key() {
    let e = err(&format!(
        "[core]\nversion = \"10.3.1\"\ntarball = \"nope.tar.gz\"\n{SITE}"
    ));
    assert!(
        e.contains("migrate.toml:3:11: cannot read tarball `"),
        "{e}"
    );
    assert!(e.contains("nope.tar.gz"), "{e}");
}

#[test]
fn the_core_must_be_a_migrate_api_major() {
    let e = err(&format!(
        "[core]\nversion = \"7.101\"\ntarball = \"drupal-10.3.1.tar.gz\"\n{SITE}"
    ));
    assert!(e.contains("migrate.toml:2:11:"), "{e}");
    assert!(e.contains("not a Drupal 8 or later release"), "{e}");
    for v in ["10", "10.x", "10.3.1.4", ""] {
        assert_eq!(major(v), None, "{v}");
    }
    assert_eq!(major("11.0"), Some(11));
}

#[test]
fn names_and_paths_are_checked() {
    let cases = [
        (
            format!(
                "{CORE}[[module]]\nname = \"Bad-Name\"\nversion = \"1\"\ntarball = \"mu.tar.gz\"\n{SITE}"
            ),
            "is not a Drupal machine name",
        ),
        (
            format!(
                "{CORE}[[module]]\nname = \"m\"\nversion = \"1\"\ntarball = \"mu.tar.gz\"\n[[module]]\nname = \"m\"\nversion = \"1\"\ntarball = \"mu.tar.gz\"\n{SITE}"
            ),
            "module `m` is listed twice",
        ),
        (
            format!(
                "{CORE}[[module]]\nname = \"m\"\nversion = \"1; rm\"\ntarball = \"mu.tar.gz\"\n{SITE}"
            ),
            "may hold only `A-Za-z0-9._+-`",
        ),
        (
            format!("{CORE}[site]\nprofile = \"minimal\"\ndatabase = \"d10\"\n"),
            "could name one database for two sites",
        ),
        (
            format!("{CORE}[site]\nprofile = \"minimal\"\ndatabase = \"{{site}}_d10\"\n"),
            "include `{old_db}` or `{host}`",
        ),
        (
            format!("{CORE}[site]\nprofile = \"minimal\"\ndatabase = \"{{old_db}}-new\"\n"),
            "may hold only `A-Za-z0-9_`",
        ),
        (
            format!("{CORE}[site]\nprofile = \"minimal\"\ndatabase = \"{{uri}}_x\"\n"),
            "unknown placeholder `{uri}`",
        ),
        (
            format!("{CORE}{SITE}drush = \"../bin/drush\"\n"),
            "must be a path inside the release",
        ),
        (
            format!("{CORE}{SITE}drush = \"/usr/bin/drush\"\n"),
            "must be a path inside the release",
        ),
        (
            format!("{CORE}{SITE}[import]\nlegacy_key = \"default\"\n"),
            "cannot be `default`",
        ),
        (
            format!("{CORE}{SITE}[import]\nlegacy_key = \"a b\"\n"),
            "settings.php connection key",
        ),
        (
            format!("{CORE}{SITE}[import]\ntag = \"a\\nb\"\n"),
            "without control characters",
        ),
        (
            format!("{CORE}{SITE}[qa]\ncount_tolerance = -1\n"),
            "`count_tolerance` must be",
        ),
        (
            format!("{CORE}{SITE}[qa]\ncount_tolerance = \"200%\"\n"),
            "`count_tolerance` must be",
        ),
        (
            format!("{CORE}{SITE}[qa]\nprobe = \"ftp://x/\"\n"),
            "must be an `http://` or `https://` URL",
        ),
        (
            format!("{CORE}{SITE}[qa]\nprobe = \"http://x/$(id)\"\n"),
            "must be an `http://` or `https://` URL",
        ),
        (
            format!("{CORE}{SITE}[qa]\nmarker = \"x\"\n"),
            "`marker` needs a `probe`",
        ),
        (
            format!("{CORE}{SITE}[[qa.check]]\nname = \"c\"\nrun = \" \"\n"),
            "a check needs a `run` command",
        ),
        (format!("{CORE}{SITE}colour = 1\n"), "unknown key `colour`"),
    ];
    for (text, want) in cases {
        let e = err(&text);
        assert!(e.contains(want), "{text}\n=> {e}");
        assert!(e.contains("migrate.toml:"), "no file:line:col in {e}");
    }
}

#[test]
fn tolerance_accepts_rows_or_a_share_of_the_old_count() {
    assert!(Tolerance::Rows(0).accepts(5, 5));
    assert!(!Tolerance::Rows(0).accepts(5, 4));
    assert!(Tolerance::Rows(2).accepts(5, 7));
    assert!(Tolerance::Percent(10.0).accepts(100, 90));
    assert!(!Tolerance::Percent(10.0).accepts(100, 89));
    assert!(Tolerance::Percent(0.0).accepts(0, 0));
}

#[test]
fn database_names_are_filled_in_and_checked() {
    assert_eq!(
        database_name("{old_db}_d10", "drupal_h01_1", "site1", "h01").as_deref(),
        Some("drupal_h01_1_d10")
    );
    assert_eq!(
        database_name("d10_{host}_{site}", "x", "site1", "h01").as_deref(),
        Some("d10_h01_site1")
    );
    // A value read from the host is data: it never makes a name with other characters.
    assert_eq!(database_name("{old_db}_d10", "a`; DROP", "s", "h"), None);
    assert_eq!(database_name("{old_db}", "same", "s", "h"), None);
    assert_eq!(
        database_name("{site}", &"x".repeat(70), &"y".repeat(70), "h"),
        None
    );
}
