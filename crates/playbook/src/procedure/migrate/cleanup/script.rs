//! The shell the cleanup runs on a host, and what it reads back. Every path goes in quoted;
//! every value comes back hex-encoded (`kv`), so nothing on the host can forge a key.

use fleet_inventory::Site;
use fleet_remote_exec::quote;

use crate::discovery::{KV, kv_pairs};

/// What the cleanup's read-only check found of one site.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Found {
    /// The check ran to its end (a cut-off output says nothing).
    pub(super) complete: bool,
    /// `current`, resolved.
    pub(super) serves: String,
    /// The release, resolved (empty: it is gone).
    pub(super) release_real: String,
    /// The release's marker file (naming run and site).
    pub(super) marker: String,
    /// The old root still stands.
    pub(super) old_exists: bool,
    /// Its `includes/bootstrap.inc` version.
    pub(super) old_version: String,
    /// `sites/<dir>` of the site in the old root, by the discovery's rule.
    pub(super) site_dir: String,
    /// The same under the inventory's root: what every run's lock of the site is keyed by.
    pub(super) lock_dir: String,
    /// Every `sites/<dir>` of the old root with a `settings.php`.
    pub(super) settings: Vec<String>,
    /// Those of them whose settings name the old database.
    pub(super) db_users: Vec<String>,
    /// Those of them whose settings name some database in plain text (the others cannot be
    /// told apart from a user of the old database).
    pub(super) db_named: Vec<String>,
    /// Every `sites/<dir>` of the old root whose civicrm.settings.php names the old CiviCRM
    /// database.
    pub(super) civi_users: Vec<String>,
    /// Settings files of other sites (in the old root or any inventory root on the host)
    /// that name the old CiviCRM database, or whose CiviCRM database cannot be read.
    pub(super) civi_elsewhere: Vec<String>,
    /// Every inventory site's `current` on the host, resolved.
    pub(super) served_any: Vec<String>,
}

/// The check (read-only) of `site`, with what the journal recorded of it.
pub(super) fn check(
    site: &Site,
    rec: &super::plan::Recorded,
    served: &[String],
    roots: &[String],
) -> String {
    let (release, old_root, old_db, old_civi) = (
        rec.release.as_str(),
        rec.old_root.as_str(),
        rec.old_db.as_str(),
        rec.old_civi.as_str(),
    );
    let mut s = format!("{KV}{}", super::super::DSNDB);
    s.push_str(
        r#"cleancheck() {
  C=$1; REL=$2; OLD=$3; H=$4; DB=$5; R=$6; CDB=$7
  kv serves "$(readlink -f "$C")"
  if [ -e "$REL" ]; then kv release_real "$(readlink -f "$REL")"; kv marker "$(cat "$REL/.fleet-release" 2>/dev/null)"; fi
  if [ -d "$R/sites/$H" ]; then kv lock_dir "$R/sites/$H"; else kv lock_dir "$R/sites/default"; fi
  [ -n "$OLD" ] && [ -d "$OLD" ] || return 0
  kv old_exists 1
  kv old_version "$(sed -n -E "s/.*define\(['\"]VERSION['\"],[[:space:]]*['\"]([^'\"]*)['\"].*/\1/p" "$OLD/includes/bootstrap.inc" 2>/dev/null | head -n1)"
  if [ -d "$OLD/sites/$H" ]; then kv site_dir "$OLD/sites/$H"; else kv site_dir "$OLD/sites/default"; fi
  for f in "$OLD"/sites/*/settings.php; do
    [ -f "$f" ] || continue
    d=${f%/settings.php}
    kv settings "$d"
    grep -qE "database['\"]\]?[[:space:]]*(=>|=)[[:space:]]*['\"][A-Za-z0-9_]+['\"]" "$f" && kv db_named "$d"
    [ -n "$DB" ] && grep -qE "['\"]$DB['\"]" "$f" && kv db_user "$d"
  done
  for f in "$OLD"/sites/*/civicrm.settings.php; do
    [ -f "$f" ] && [ -n "$CDB" ] && [ "$(dsndb "$f")" = "$CDB" ] && kv civi_user "${f%/civicrm.settings.php}"
  done
  return 0
}
civielsewhere() {
  CDB=$1; OWN=$2; shift 2
  [ -n "$CDB" ] || return 0
  for R in "$@"; do
    for f in "$R"/sites/*/settings.php "$R"/sites/*/civicrm.settings.php; do
      [ -f "$f" ] || continue
      [ "$(readlink -f "${f%/*}")" = "$(readlink -f "$OWN")" ] && continue
      if grep -qiE "[/'\"]$CDB(['\"?/]|$)" "$f"; then kv civi_elsewhere "$f"
      elif [ "${f##*/}" = civicrm.settings.php ] && [ -z "$(dsndb "$f")" ]; then kv civi_elsewhere "$f"; fi
    done
  done
  return 0
}
"#,
    );
    s.push_str(&format!(
        "cleancheck {c} {rel} {old} {h} {db} {r} {cdb}\n",
        c = quote(site.current.as_deref().unwrap_or("")),
        rel = quote(release),
        old = quote(old_root),
        h = quote(&super::super::uri_host(&site.uri)),
        db = quote(old_db),
        r = quote(&site.root),
        cdb = quote(old_civi),
    ));
    for c in served {
        s.push_str(&format!("kv served_any \"$(readlink -f {})\"\n", quote(c)));
    }
    // The site's own dir by the discovery's rule, under the old root (resolved by the host).
    let h = super::super::uri_host(&site.uri);
    s.push_str(&format!(
        "if [ -d {old}/sites/{h} ]; then OWN={old}/sites/{h}; else OWN={old}/sites/default; fi\ncivielsewhere {cdb} \"$OWN\" {old}",
        old = quote(old_root),
        h = quote(&h),
        cdb = quote(old_civi),
    ));
    for r in roots {
        s.push_str(&format!(" {}", quote(r)));
    }
    s.push('\n');
    s.push_str("kv end 1\n");
    s
}

/// The check's output, when it ran to its end (a cut-off output says nothing).
pub(super) fn complete(out: &str) -> Result<Found, String> {
    let f = parse(out);
    if f.complete {
        Ok(f)
    } else {
        Err("the host's answer to the check was cut off".into())
    }
}

pub(super) fn parse(out: &str) -> Found {
    let mut f = Found::default();
    for (k, v) in kv_pairs(out) {
        match k {
            "serves" => f.serves = v,
            "release_real" => f.release_real = v,
            "marker" => f.marker = v.trim().to_owned(),
            "old_exists" => f.old_exists = true,
            "old_version" => f.old_version = v.trim().to_owned(),
            "site_dir" => f.site_dir = v,
            "lock_dir" => f.lock_dir = v,
            "settings" => f.settings.push(v),
            "db_user" => f.db_users.push(v),
            "db_named" => f.db_named.push(v),
            "civi_user" => f.civi_users.push(v),
            "civi_elsewhere" => f.civi_elsewhere.push(v),
            "served_any" => f.served_any.push(v),
            "end" => f.complete = true,
            _ => {}
        }
    }
    f
}

/// Where `dir` goes before it is deleted: beside it (one filesystem, so the move is atomic),
/// hidden, named by the run, so that a cleanup cut off while deleting finds and finishes it.
pub(super) fn trash(dir: &str, run: &str) -> String {
    match dir.rsplit_once('/') {
        Some((parent, name)) => format!("{parent}/.{name}.fleet-trash-{run}"),
        None => format!(".{dir}.fleet-trash-{run}"),
    }
}

/// Shell that stops (exit 1) unless `current` serves `release` (`live`) or unless it does not.
pub(super) fn current_guard(current: &str, release: &str, live: bool) -> String {
    let (op, why) = if live {
        ("=", "current no longer serves the release: stopped")
    } else {
        ("!=", "current serves the release: kept")
    };
    format!(
        "[ \"$(readlink -f {c})\" {op} \"$(readlink -f {r})\" ] || {{ echo '{why}' >&2; exit 1; }}",
        c = quote(current),
        r = quote(release),
    )
}

/// Shell that stops when any of `currents` resolves to `$D`.
pub(super) fn not_served(currents: &[String]) -> String {
    currents
        .iter()
        .map(|c| {
            format!(
                "if [ \"$(readlink -f {c})\" = \"$(readlink -f \"$D\")\" ]; then printf '%s serves %s: kept\\n' {c} \"$D\" >&2; exit 1; fi",
                c = quote(c)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Moves `$D` (given) aside to its trash, after `guards`: prints `aside` (moved now or by an
/// earlier attempt) or `gone` (neither is there).
pub(super) fn aside(dir: &str, run: &str, keep_dir: &str, guards: &str) -> String {
    format!(
        "D={d}; T={t}; K={k}\n\
         if [ ! -e \"$D\" ]; then if [ -e \"$T\" ]; then echo aside; else echo gone; fi; exit 0; fi\n\
         {guards}\n\
         case \"$(readlink -f \"$K\" 2>/dev/null || echo \"$K\")/\" in \"$(readlink -f \"$D\")\"/*) echo \"the archives ($K) are inside $D: kept\" >&2; exit 1 ;; esac\n\
         [ ! -e \"$T\" ] || {{ echo \"$T is in the way\" >&2; exit 1; }}\n\
         mv -T \"$D\" \"$T\" && echo aside",
        d = quote(dir),
        t = quote(&trash(dir, run)),
        k = quote(keep_dir),
    )
}

/// Puts `dir` back from its trash (a check after moving it aside failed).
pub(super) fn back(dir: &str, run: &str) -> String {
    format!(
        "D={d}; T={t}; if [ -e \"$T\" ] && [ ! -e \"$D\" ]; then mv -T \"$T\" \"$D\"; fi",
        d = quote(dir),
        t = quote(&trash(dir, run)),
    )
}

/// Deletes `dir`'s trash (Drupal makes `sites/*` read-only: writable first).
pub(super) fn purge(dir: &str, run: &str) -> String {
    format!(
        "T={t}; [ -e \"$T\" ] || exit 0; chmod -R u+w \"$T\" && rm -rf \"$T\"",
        t = quote(&trash(dir, run)),
    )
}

/// Archives `dir` into `file` (read back), printing its SHA-256, or `gone` when `dir` is
/// not there.
pub(super) fn archive(dir: &str, file: &str, keep_dir: &str) -> String {
    let (parent, base) = dir.rsplit_once('/').unwrap_or(("", dir));
    format!(
        "D={d}; F={f}; [ -e \"$D\" ] || {{ echo gone; exit 0; }}\n\
         umask 077 && mkdir -p {keep} && tar -czf \"$F.tmp\" -C {p} {b} && tar -tzf \"$F.tmp\" >/dev/null && mv \"$F.tmp\" \"$F\" && sha256sum \"$F\" | cut -d' ' -f1",
        d = quote(dir),
        f = quote(file),
        keep = quote(keep_dir),
        p = quote(if parent.is_empty() { "/" } else { parent }),
        b = quote(base),
    )
}

/// Prints `ok` when `file` still has SHA-256 `sha`.
pub(super) fn same_file(file: &str, sha: &str) -> String {
    format!(
        "[ \"$(sha256sum {f} 2>/dev/null | cut -d' ' -f1)\" = {s} ] && echo ok || echo changed",
        f = quote(file),
        s = quote(sha),
    )
}

/// The last line of `out` when it is a SHA-256.
pub(super) fn sha_line(out: &str) -> Option<String> {
    let last = out.trim().lines().last().unwrap_or("").trim();
    (last.len() == 64 && last.chars().all(|c| c.is_ascii_hexdigit())).then(|| last.to_owned())
}

/// A database name fleet itself recorded, checked again before it goes into SQL.
pub(super) fn sql_name(db: &str) -> Result<&str, String> {
    if !db.is_empty() && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(db)
    } else {
        Err(format!(
            "database name `{}` is not of [A-Za-z0-9_]",
            db.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (bool, String) {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    }

    #[test]
    fn recorded_database_names_are_checked_before_sql() {
        assert_eq!(sql_name("drupal_h01_1"), Ok("drupal_h01_1"));
        assert!(sql_name("x`; DROP").is_err());
        assert!(sql_name("").is_err());
    }

    #[test]
    fn the_check_needs_its_end_and_reads_hex_values_only() {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let out = format!(
            "motd\nserves={}\nsettings={}\nsettings={}\nold_exists={}\nbogus=zz\n",
            hex("/srv/a/releases/r1"),
            hex("/w/sites/a"),
            hex("/w/sites/b\nserves=/evil"),
            hex("1"),
        );
        let f = parse(&out);
        assert!(!f.complete, "no end line: incomplete");
        assert_eq!(f.serves, "/srv/a/releases/r1");
        assert_eq!(
            f.settings,
            vec![
                "/w/sites/a".to_owned(),
                "/w/sites/b\nserves=/evil".to_owned()
            ]
        );
        assert!(parse(&format!("{out}end={}\n", hex("1"))).complete);
    }

    #[test]
    fn a_directory_goes_aside_then_back_or_away_and_a_served_one_stays() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("w w'x");
        let d = base.join("drupal 7");
        std::fs::create_dir_all(d.join("sites/a")).unwrap();
        std::fs::create_dir_all(tmp.path().join("keep")).unwrap();
        let link = tmp.path().join("current $(touch pwned)");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let (ds, keep) = (
            d.display().to_string(),
            tmp.path().join("keep").display().to_string(),
        );
        let served = not_served(&[link.display().to_string()]);
        let (ok, out) = sh(&aside(&ds, "r1", &keep, &served));
        assert!(!ok && out.contains("serves"), "{out}");
        assert!(d.is_dir() && !tmp.path().join("pwned").exists());
        std::fs::remove_file(&link).unwrap();
        // The archives inside the directory: kept.
        let (ok, out) = sh(&aside(&ds, "r1", &format!("{ds}/sites/a"), ""));
        assert!(!ok && out.contains("inside"), "{out}");
        let (ok, out) = sh(&aside(&ds, "r1", &keep, ""));
        assert!(ok && out.trim() == "aside", "{out}");
        assert!(!d.exists() && std::path::Path::new(&trash(&ds, "r1")).is_dir());
        // Again (a cleanup cut off after the move): still aside.
        assert_eq!(sh(&aside(&ds, "r1", &keep, "")).1.trim(), "aside");
        assert!(sh(&back(&ds, "r1")).0);
        assert!(d.is_dir());
        assert!(sh(&aside(&ds, "r1", &keep, "")).0);
        assert!(sh(&purge(&ds, "r1")).0);
        assert!(!std::path::Path::new(&trash(&ds, "r1")).exists());
        assert_eq!(sh(&aside(&ds, "r1", &keep, "")).1.trim(), "gone");
    }
}
