//! The release tarball and its localization tarball, checked on the controller before any
//! host is contacted: the layout of a Drupal release of CiviCRM (or of its translations), no
//! path outside `civicrm/`, no links, and the version each holds.

use super::commands::last_stderr_line;
use crate::error::PlaybookError;

/// Files a CiviCRM release for Drupal has: without them the tarball is another package (the
/// WordPress or Backdrop build, a source archive) and would break the sites it is unpacked on.
const TARBALL_MUST_HAVE: &[&str] = &[
    "civicrm/xml/version.xml",
    "civicrm/drupal/civicrm.module",
    "civicrm/CRM/Core/ClassLoader.php",
];

/// Checks a release tarball on the controller, before any site is touched, and returns its
/// version (`civicrm/xml/version.xml`): it must be a readable gzip tar whose every entry is
/// under `civicrm/` (no absolute path, no `..`), holding the files of a CiviCRM release for
/// Drupal.
///
/// # Errors
///
/// [`PlaybookError::Tarball`] saying what is wrong.
pub fn tarball_version(path: &std::path::Path) -> Result<String, PlaybookError> {
    let err = |reason: String| PlaybookError::Tarball {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(err("not a file".into()));
    }
    let list = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(path)
        .output()
        .map_err(|e| err(format!("cannot run tar: {e}")))?;
    if !list.status.success() {
        return Err(err(format!(
            "not a readable .tar.gz: {}",
            last_stderr_line(&list.stderr)
        )));
    }
    let names = String::from_utf8_lossy(&list.stdout);
    if let Some(core) = names.lines().find(|n| is_drupal_core_marker(n)) {
        let version = drupal_core_version(path, core).unwrap_or_default();
        return Err(err(format!(
            "it is a Drupal {}core release (`{}`), not a CiviCRM release: `fleet upgrade` upgrades CiviCRM in place; a major Drupal upgrade is a new site built beside the old one, with `fleet migrate --manifest FILE`",
            if version.is_empty() {
                String::new()
            } else {
                format!("{version} ")
            },
            core.escape_debug()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for name in names.lines() {
        let clean = name.trim_start_matches("./");
        if clean.starts_with('/') || clean.split('/').any(|c| c == "..") {
            return Err(err(format!(
                "entry `{}` would land outside the code dir",
                name.escape_debug()
            )));
        }
        if clean != "civicrm" && !clean.starts_with("civicrm/") {
            return Err(err(format!(
                "entry `{}` is not under `civicrm/`: not a CiviCRM release",
                name.escape_debug()
            )));
        }
        seen.insert(clean.trim_end_matches('/').to_owned());
    }
    if let Some(missing) = TARBALL_MUST_HAVE.iter().find(|f| !seen.contains(**f)) {
        return Err(err(format!(
            "no `{missing}` in it: not a CiviCRM release for Drupal"
        )));
    }
    let out = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(path)
        .arg("civicrm/xml/version.xml")
        .output()
        .map_err(|e| err(format!("cannot run tar: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "cannot read `civicrm/xml/version.xml`: {}",
            last_stderr_line(&out.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split("<version_no>")
        .nth(1)
        .and_then(|r| r.split("</version_no>").next())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| err("`civicrm/xml/version.xml` has no <version_no>".into()))?;
    if !version.starts_with(|c: char| c.is_ascii_digit())
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
    {
        return Err(err(format!(
            "`civicrm/xml/version.xml` says `{}`, not a version",
            version.escape_debug()
        )));
    }
    Ok(version)
}

/// Whether tarball entry `name` is Drupal 8+ core's version file (`[TOP/]core/lib/Drupal.php`).
fn is_drupal_core_marker(name: &str) -> bool {
    let clean = name.trim_start_matches("./");
    clean == "core/lib/Drupal.php"
        || clean
            .split_once('/')
            .is_some_and(|(top, rest)| !top.is_empty() && rest == "core/lib/Drupal.php")
}

/// The `const VERSION = '...'` of a Drupal core tarball's `core/lib/Drupal.php` at `entry`,
/// when it reads as a version.
fn drupal_core_version(path: &std::path::Path, entry: &str) -> Option<String> {
    let out = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(path)
        .arg(entry)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("const VERSION = '").nth(1)?.split('\'').next()?;
    (!v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    .then(|| v.to_owned())
}

/// Checks a localization tarball (`--l10n`, `civicrm-X.Y.Z-l10n.tar.gz`) on the controller
/// and returns its version. It is unpacked over the new code, so it must hold translations
/// and nothing else, laid out as CiviCRM builds it: a readable gzip tar whose entries are
/// only directories and regular files (no links) under `civicrm/l10n/`, and per-locale
/// `civicrm/sql/civicrm_<name>.<locale>.mysql` (never the release's own SQL; no absolute
/// path, no `..`), with at least one `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo`. Its version is the one its
/// `civicrm/sql/civicrm_data.<locale>.mysql` files set (`UPDATE civicrm_domain SET version
/// = 'X.Y.Z'`, the one place CiviCRM writes it into this tarball): there must be at least one
/// and they must agree. A file named `civicrm-<version>-l10n.tar.gz` must also say the same.
///
/// # Errors
///
/// [`PlaybookError::Plan`] naming the file and what is wrong.
pub(crate) fn l10n_version(path: &std::path::Path) -> Result<String, PlaybookError> {
    let err = |reason: String| {
        PlaybookError::Plan(format!(
            "localization tarball `{}`: {reason}",
            path.display()
        ))
    };
    if !path.is_file() {
        return Err(err("not a file".into()));
    }
    let tar = |args: &[&str]| {
        std::process::Command::new("tar")
            .env("LC_ALL", "C")
            .args(args)
            .arg(path)
            .output()
            .map_err(|e| err(format!("cannot run tar: {e}")))
            .and_then(|o| {
                if o.status.success() {
                    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
                } else {
                    Err(err(format!(
                        "not a readable .tar.gz: {}",
                        last_stderr_line(&o.stderr)
                    )))
                }
            })
    };
    let names = tar(&["-tzf"])?;
    // The long listing, in the same order, for each entry's type (its first character).
    let long = tar(&["-tvzf"])?;
    let names: Vec<&str> = names.lines().collect();
    let kinds: Vec<char> = long
        .lines()
        .map(|l| l.chars().next().unwrap_or('?'))
        .collect();
    if names.len() != kinds.len() {
        return Err(err("cannot list its entries".into()));
    }
    let mut catalogues = 0usize;
    let mut data_files = Vec::new();
    for (name, kind) in names.iter().zip(&kinds) {
        let clean = name.trim_start_matches("./").trim_end_matches('/');
        if clean.is_empty() || clean == "." {
            continue;
        }
        if clean.starts_with('/') || clean.split('/').any(|c| c == "..") {
            return Err(err(format!(
                "entry `{}` would land outside the code dir",
                name.escape_debug()
            )));
        }
        let inside = |dir: &str| clean == dir || clean.starts_with(&format!("{dir}/"));
        if !(clean == "civicrm" || inside("civicrm/l10n") || inside("civicrm/sql")) {
            return Err(err(format!(
                "entry `{}` is not under `civicrm/l10n/` or `civicrm/sql/`: not a CiviCRM localization tarball",
                name.escape_debug()
            )));
        }
        if !matches!(kind, '-' | 'd') {
            return Err(err(format!(
                "entry `{}` is not a plain file or directory",
                name.escape_debug()
            )));
        }
        let parts: Vec<&str> = clean.split('/').collect();
        // Only per-locale data next to the release's own SQL: `civicrm_data.mysql` and the
        // like are the release's, and must not be replaced.
        if let ["civicrm", "sql", f, ..] = parts.as_slice()
            && !(parts.len() == 3 && is_locale_sql(f))
        {
            return Err(err(format!(
                "entry `{}` is not a per-locale `civicrm/sql/civicrm_<name>.<locale>.mysql`",
                name.escape_debug()
            )));
        }
        match parts.as_slice() {
            ["civicrm", "l10n", _, "LC_MESSAGES", "civicrm.mo"] if *kind == '-' => catalogues += 1,
            ["civicrm", "sql", f]
                if *kind == '-' && f.starts_with("civicrm_data.") && f.ends_with(".mysql") =>
            {
                data_files.push(name.to_string());
            }
            _ => {}
        }
    }
    if catalogues == 0 {
        return Err(err(
            "no `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo` in it: not a CiviCRM localization tarball"
                .into(),
        ));
    }
    if data_files.is_empty() {
        return Err(err(
            "no `civicrm/sql/civicrm_data.<locale>.mysql` in it, so its version cannot be told"
                .into(),
        ));
    }
    let versions = l10n_data_versions(path, &data_files).map_err(err)?;
    if versions.len() != data_files.len() {
        return Err(err(format!(
            "{} of its {} `civicrm_data.<locale>.mysql` files set no version",
            data_files.len() - versions.len().min(data_files.len()),
            data_files.len()
        )));
    }
    let version = versions[0].clone();
    if let Some(other) = versions.iter().find(|v| **v != version) {
        return Err(err(format!(
            "its `civicrm_data.<locale>.mysql` files disagree on the version (`{version}`, `{other}`)"
        )));
    }
    if !version.starts_with(|c: char| c.is_ascii_digit())
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
    {
        return Err(err(format!(
            "`civicrm_data.<locale>.mysql` sets version `{}`, not a version",
            version.escape_debug()
        )));
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some(named) = file_name
        .as_deref()
        .and_then(|n| n.strip_prefix("civicrm-"))
        .and_then(|n| n.strip_suffix("-l10n.tar.gz"))
        && named != version
    {
        return Err(err(format!(
            "its name says {named} but its `civicrm_data.<locale>.mysql` files say {version}"
        )));
    }
    Ok(version)
}

/// `civicrm_<name>.<locale>.mysql` (what a localization tarball has in `civicrm/sql/`).
fn is_locale_sql(f: &str) -> bool {
    let parts: Vec<&str> = f.split('.').collect();
    matches!(parts.as_slice(), [name, locale, "mysql"]
        if name.len() > "civicrm_".len()
            && name.starts_with("civicrm_")
            && !locale.is_empty()
            && locale.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@'))
}

/// The versions set by `UPDATE civicrm_domain SET version = '...'` lines in `files` of the
/// tarball at `path`, read as a stream (the files are megabytes each).
fn l10n_data_versions(path: &std::path::Path, files: &[String]) -> Result<Vec<String>, String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new("tar")
        .env("LC_ALL", "C")
        .arg("-xzOf")
        .arg(path)
        .arg("--")
        .args(files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let mut versions = Vec::new();
    if let Some(out) = child.stdout.take() {
        let prefix = b"UPDATE civicrm_domain SET version = '";
        for line in std::io::BufReader::new(out).split(b'\n') {
            let line = line.map_err(|e| format!("cannot read it: {e}"))?;
            if let Some(rest) = line.trim_ascii().strip_prefix(&prefix[..])
                && let Some(end) = rest.iter().position(|&b| b == b'\'')
            {
                versions.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            }
        }
    }
    let done = child
        .wait_with_output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !done.status.success() {
        return Err(format!(
            "cannot read its `civicrm_data` files: {}",
            last_stderr_line(&done.stderr)
        ));
    }
    Ok(versions)
}

/// Refuses a localization tarball that is not one (see [`l10n_version`]) or is not of the
/// release's version `target`, in one line naming the file and both versions.
///
/// # Errors
///
/// [`PlaybookError::Plan`] saying why.
pub(crate) fn check_l10n(path: &std::path::Path, target: &str) -> Result<(), PlaybookError> {
    let version = l10n_version(path)?;
    if version == target {
        Ok(())
    } else {
        Err(PlaybookError::Plan(format!(
            "localization tarball `{}` is for CiviCRM {version}, but the release tarball is {target}: use civicrm-{target}-l10n.tar.gz",
            path.display()
        )))
    }
}

/// [`check_l10n`], done once per file (as it is now) and version in this process: every host
/// of a run uploads the same file, and reading a real one takes seconds.
///
/// # Errors
///
/// The reason, as [`check_l10n`] gives it.
pub(crate) fn check_l10n_once(path: &std::path::Path, target: &str) -> Result<(), String> {
    type Key = (
        std::path::PathBuf,
        u64,
        Option<std::time::SystemTime>,
        String,
    );
    static CHECKED: std::sync::Mutex<Vec<(Key, Result<(), String>)>> =
        std::sync::Mutex::new(Vec::new());
    let meta = std::fs::metadata(path).ok();
    let key: Key = (
        path.to_owned(),
        meta.as_ref().map_or(0, std::fs::Metadata::len),
        meta.and_then(|m| m.modified().ok()),
        target.to_owned(),
    );
    // A panic elsewhere while holding the lock leaves the list as valid as it was.
    let mut checked = CHECKED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, r)) = checked.iter().find(|(k, _)| *k == key) {
        return r.clone();
    }
    let r = check_l10n(path, target).map_err(|e| e.to_string());
    checked.push((key, r.clone()));
    r
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const MO: &str = "civicrm/l10n/fr_FR/LC_MESSAGES/civicrm.mo";
    pub(crate) const DATA: &str = "civicrm/sql/civicrm_data.fr_FR.mysql";
    pub(crate) const SETS_5_70: &str = "INSERT INTO civicrm_domain (name, version) VALUES ('x', '2.2');\nUPDATE civicrm_domain SET version = '5.70.0';\n";

    /// A gzip tar of `files` (`path`, content; a content of `-> target` makes a symlink),
    /// named `name` in `dir`.
    pub(crate) fn tarball(
        dir: &std::path::Path,
        name: &str,
        files: &[(&str, &str)],
    ) -> std::path::PathBuf {
        let stage = dir.join(format!("stage-{name}"));
        for (path, text) in files {
            let p = stage.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            match text.strip_prefix("-> ") {
                Some(to) => std::os::unix::fs::symlink(to, &p).unwrap(),
                None => std::fs::write(&p, text).unwrap(),
            }
        }
        let out = dir.join(name);
        let ok = std::process::Command::new("tar")
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(&stage)
            .args(files.iter().map(|(p, _)| *p))
            .status()
            .unwrap();
        assert!(ok.success());
        out
    }

    #[test]
    fn a_drupal_core_release_is_refused_naming_fleet_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let core = tarball(
            dir.path(),
            "drupal-10.3.1.tar.gz",
            &[
                ("drupal-10.3.1/index.php", "<?php"),
                (
                    "drupal-10.3.1/core/lib/Drupal.php",
                    "<?php\nclass Drupal {\n  const VERSION = '10.3.1';\n}\n",
                ),
            ],
        );
        let e = tarball_version(&core).unwrap_err().to_string();
        assert!(
            e.contains("it is a Drupal 10.3.1 core release (`drupal-10.3.1/core/lib/Drupal.php`)"),
            "{e}"
        );
        assert!(e.contains("`fleet migrate --manifest FILE`"), "{e}");
        assert!(is_drupal_core_marker("./core/lib/Drupal.php"));
        assert!(!is_drupal_core_marker(
            "civicrm/vendor/x/core/lib/Drupal.php"
        ));
    }

    #[test]
    fn l10n_tarballs_are_checked_for_layout_and_version() {
        let dir = tempfile::tempdir().unwrap();
        #[track_caller]
        fn case(
            dir: &std::path::Path,
            name: &str,
            files: &[(&str, &str)],
            want: Result<&str, &str>,
        ) {
            let got = l10n_version(&tarball(dir, name, files)).map_err(|e| e.to_string());
            match (&got, want) {
                (Ok(v), Ok(w)) => assert_eq!(v, w, "{name}"),
                (Err(e), Err(w)) => {
                    assert!(e.contains(w), "{name}: `{e}` does not say `{w}`");
                    assert!(e.contains(name), "{name}: `{e}` does not name the file");
                }
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        let good: &[(&str, &str)] = &[
            (MO, "fr"),
            ("civicrm/l10n/de_DE/LC_MESSAGES/civicrm.mo", "de"),
            (DATA, SETS_5_70),
            ("civicrm/sql/civicrm_data.de_DE.mysql", SETS_5_70),
            ("civicrm/sql/civicrm_acl.fr_FR.mysql", "-- acl\n"),
        ];
        case(dir.path(), "civicrm-5.70.0-l10n.tar.gz", good, Ok("5.70.0"));
        // Renamed: the contents decide, a name of the usual form must agree.
        case(dir.path(), "translations.tar.gz", good, Ok("5.70.0"));
        case(
            dir.path(),
            "civicrm-5.71.0-l10n.tar.gz",
            good,
            Err("its name says 5.71.0 but its `civicrm_data.<locale>.mysql` files say 5.70.0"),
        );
        // The release tarball (or anything with code in it) is not translations.
        case(
            dir.path(),
            "release.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                ("civicrm/xml/version.xml", "<version_no>5.70.0</version_no>"),
            ],
            Err("entry `civicrm/xml/version.xml` is not under `civicrm/l10n/` or `civicrm/sql/`"),
        );
        // Never the release's own SQL.
        case(
            dir.path(),
            "schema.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                ("civicrm/sql/civicrm.mysql", "DROP TABLE x;"),
            ],
            Err("entry `civicrm/sql/civicrm.mysql` is not a per-locale"),
        );
        case(
            dir.path(),
            "no-mo.tar.gz",
            &[("civicrm/l10n/fr_FR/README", "x"), (DATA, SETS_5_70)],
            Err("no `civicrm/l10n/<locale>/LC_MESSAGES/civicrm.mo` in it"),
        );
        case(
            dir.path(),
            "no-data.tar.gz",
            &[(MO, "fr"), ("civicrm/sql/civicrm_acl.fr_FR.mysql", "x")],
            Err("its version cannot be told"),
        );
        case(
            dir.path(),
            "no-version.tar.gz",
            &[(MO, "fr"), (DATA, "-- nothing\n")],
            Err("1 of its 1 `civicrm_data.<locale>.mysql` files set no version"),
        );
        case(
            dir.path(),
            "mixed.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                (
                    "civicrm/sql/civicrm_data.de_DE.mysql",
                    "UPDATE civicrm_domain SET version = '5.69.0';\n",
                ),
            ],
            Err("disagree on the version"),
        );
        case(
            dir.path(),
            "link.tar.gz",
            &[
                (MO, "fr"),
                (DATA, SETS_5_70),
                ("civicrm/l10n/de_DE", "-> /etc"),
            ],
            Err("entry `civicrm/l10n/de_DE` is not a plain file or directory"),
        );
        case(
            dir.path(),
            "bad-version.tar.gz",
            &[
                (MO, "fr"),
                (DATA, "UPDATE civicrm_domain SET version = '5.70; DROP';\n"),
            ],
            Err("not a version"),
        );
        let broken = dir.path().join("broken.tar.gz");
        std::fs::write(&broken, b"\x1f\x8b not gzip").unwrap();
        let e = l10n_version(&broken).unwrap_err().to_string();
        assert!(
            e.contains("not a readable .tar.gz") && e.contains("broken.tar.gz"),
            "{e}"
        );
        // An absolute entry would be unpacked outside the code dir.
        let abs = dir.path().join("abs-file");
        std::fs::write(&abs, "x").unwrap();
        let abs_tar = dir.path().join("abs.tar.gz");
        assert!(
            std::process::Command::new("tar")
                .arg("-czPf")
                .arg(&abs_tar)
                .arg(&abs)
                .status()
                .unwrap()
                .success()
        );
        let e = l10n_version(&abs_tar).unwrap_err().to_string();
        assert!(e.contains("would land outside the code dir"), "{e}");
    }

    #[test]
    fn an_l10n_tarball_of_another_version_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let t = tarball(
            dir.path(),
            "civicrm-5.70.0-l10n.tar.gz",
            &[(MO, "fr"), (DATA, SETS_5_70)],
        );
        assert!(check_l10n(&t, "5.70.0").is_ok());
        let e = check_l10n(&t, "5.71.0").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "localization tarball `{}` is for CiviCRM 5.70.0, but the release tarball is 5.71.0: use civicrm-5.71.0-l10n.tar.gz",
                t.display()
            )
        );
        assert!(!e.contains('\n'));
        // Remembered per file as it is: the same answer, and a replaced file is read again.
        assert_eq!(check_l10n_once(&t, "5.71.0").unwrap_err(), e);
        assert_eq!(check_l10n_once(&t, "5.71.0").unwrap_err(), e);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = tarball(
            dir.path(),
            "civicrm-5.70.0-l10n.tar.gz",
            &[
                (MO, "fr"),
                (DATA, "UPDATE civicrm_domain SET version = '5.71.0';\n"),
            ],
        );
        assert_eq!(again, t);
        // (its name now disagrees with its contents)
        assert!(
            check_l10n_once(&t, "5.71.0")
                .unwrap_err()
                .contains("its name says 5.70.0")
        );
    }
}
