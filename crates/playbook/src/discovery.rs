//! Read-only discovery of a host's sites: one script, one round trip, and the checks every
//! reported fact must pass before fleet uses it in a path, SQL or a command (a host's reply
//! is data: it can never become a key, a path outside where it belongs, or shell text).

use std::collections::BTreeMap;

use fleet_inventory::Site;
use fleet_remote_exec::{ExecOptions, RemoteCommand, quote};

use crate::engine::{error_text, last_line};

use crate::procedure::civicrm::commands::standalone;
use crate::translations::is_locale;

/// The facts discovered about one site on its host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `sites/<dir>` that holds the site's settings.
    pub site_dir: String,
    /// `$civicrm_root` from civicrm.settings.php (the codebase).
    pub civicrm_root: String,
    /// Database named by `CIVICRM_DSN`.
    pub civi_db: String,
    /// Database named by `CIVICRM_UF_DSN` (Drupal's).
    pub cms_db: String,
    /// `CIVICRM_TEMPLATE_COMPILEDIR`.
    pub templates_c: String,
    /// Code version (`xml/version.xml`).
    pub code_version: String,
    /// Locales the code dir has translations for: the directories under
    /// `<civicrm_root>/l10n/` holding `LC_MESSAGES/civicrm.mo`, each a locale name (a
    /// directory named otherwise is left out: CiviCRM would not load it).
    pub locales: Vec<String>,
    /// Database version (`civicrm_domain.version`).
    pub db_version: String,
    /// What the tool said when the database version could not be read (its last lines and
    /// exit code): for the operator, since an unreadable database is a state of its own (a
    /// restore brings it back), not a discovery failure.
    pub db_error: String,
    /// Drupal `maintenance_mode`: `0`, `1`, or `unset`.
    pub maintenance: String,
    /// Web-server user (inventory, else owner of templates_c).
    pub web_user: String,
    /// `cv` is installed.
    pub has_cv: bool,
    /// `drush` is installed.
    pub has_drush: bool,
    /// Enabled modules among the ones the inventory asks to disable.
    pub enabled_modules: Vec<String>,
    /// Free space where backups go, in KiB.
    pub free_kb: u64,
    /// The backup dir, or the nearest directory above it that exists (where it will be made).
    pub backup_at: String,
    /// That directory's permission bits.
    pub backup_mode: Option<u32>,
    /// Size of the code dir, in KiB.
    pub code_kb: u64,
    /// The directory holding the code dir is writable.
    pub code_parent_writable: bool,
    /// A discovery problem, when the site could not be read.
    pub error: Option<String>,
}

/// `kv KEY VALUE`: prints `KEY=<hex of VALUE's bytes>`, the one way discovery scripts
/// report a value (see [`discover_script`]).
pub(crate) const KV: &str = r#"kv() { printf '%s=' "$1"; printf '%s' "$2" | od -An -v -tx1 | tr -d ' \n'; echo; }
"#;

/// One script that discovers every site of a host (one round trip), read-only: it reads
/// files and asks drush, never cv (cv writes compiled templates when it boots).
///
/// Every value goes out as `key=<hex of its bytes>` (`kv`), so nothing a host or a site's
/// admin controls (a Drupal variable holding a newline, a path) can forge another key: the
/// only newlines in the output are the ones the script itself writes.
pub(crate) fn discover_script(sites: &[Site]) -> String {
    let mut s = String::from(KV);
    s.push_str(
        r#"get() { sed -n -E "s/^[[:space:]]*(define\([\"']$1[\"'],[[:space:]]*|\\\$$1[[:space:]]*=[[:space:]]*)[\"']([^\"']*)[\"'].*/\2/p" "$F" | head -n1; }
discover() {
  R=$1; U=$2; DRUSH=$3; CV=$4; B=$5; W=$6; MODS=$7
  h=${U#*://}; h=${h%%/*}; h=${h%%:*}
  if [ -d "$R/sites/$h" ]; then S="$R/sites/$h"; else S="$R/sites/default"; fi
  kv site_dir "$S"
  F="$S/civicrm.settings.php"
  if [ ! -f "$F" ]; then kv error "no civicrm.settings.php in $S"; return; fi
  root=$(get civicrm_root); root=${root%/}; kv civicrm_root "$root"
  d=$(get CIVICRM_DSN); d=${d##*/}; kv civi_db "${d%%\?*}"
  d=$(get CIVICRM_UF_DSN); d=${d##*/}; kv cms_db "${d%%\?*}"
  t=$(get CIVICRM_TEMPLATE_COMPILEDIR); t=${t%/}; kv templates_c "$t"
  kv code_version "$(codever "$root")"
  if [ -n "$root" ]; then for mo in "$root"/l10n/*/LC_MESSAGES/civicrm.mo; do
    [ -f "$mo" ] || continue; l=${mo%/LC_MESSAGES/civicrm.mo}; kv locale "${l##*/}"
  done; fi
  [ -n "$W" ] || W=$(stat -c %U "$t" 2>/dev/null); kv web_user "$W"
  command -v "$CV" >/dev/null 2>&1 && kv has_cv 1
  command -v "$DRUSH" >/dev/null 2>&1 || { kv error "drush not found: $DRUSH"; return; }
  kv has_drush 1
  v=$(as_web "$W" "$DRUSH" -r "$R" -l "$U" civicrm-sql-query "SELECT version FROM civicrm_domain WHERE id = 1" 2>/dev/null | tail -n1)
  if [ -z "$v" ]; then
    # Asked again for the tool's own words (a PHP fatal error, a refused connection).
    why=$(as_web "$W" "$DRUSH" -r "$R" -l "$U" civicrm-sql-query "SELECT version FROM civicrm_domain WHERE id = 1" 2>&1 >/dev/null; echo "(exit $?)")
    kv db_error "$(printf '%s' "$why" | tail -n 3 | tr '\n' ' ' | cut -c1-400)"
  fi
  kv db_version "$v"
  if m=$(as_web "$W" "$DRUSH" -r "$R" -l "$U" vget maintenance_mode --exact 2>&1); then kv maintenance "$m"
  elif printf '%s' "$m" | grep -q "No matching variable"; then kv maintenance unset
  else kv error "cannot read maintenance_mode: $(printf '%s' "$m" | tr '\n' ' ')"; fi
  if [ -n "$MODS" ]; then
    en=$(as_web "$W" "$DRUSH" -r "$R" -l "$U" pm-list --status=enabled --type=module --pipe 2>/dev/null)
    for mod in $MODS; do printf '%s\n' "$en" | grep -qx "$mod" && kv module "$mod"; done
  fi
  bd=$B; while [ ! -d "$bd" ]; do bd=$(dirname "$bd"); done
  kv free_kb "$(df -Pk "$bd" | awk 'NR==2 {print $4}')"
  kv backup_at "$bd"; kv backup_mode "$(stat -c %a "$bd" 2>/dev/null)"
  kv code_kb "$(du -sk "$root" 2>/dev/null | cut -f1)"
  [ -w "$(dirname "$root")" ] && kv code_parent_writable 1
  return 0
}
"#,
    );
    for site in sites {
        s.push_str(&format!(
            "echo '### site {name}'; discover {r} {u} {drush} {cv} {b} {w} {mods}\n",
            name = site.name,
            r = quote(&site.root),
            u = quote(&site.uri),
            drush = quote(&site.drush),
            cv = quote(&site.cv),
            b = quote(&site.backup_dir),
            w = quote(site.web_user.as_deref().unwrap_or("")),
            mods = quote(&site.disable_modules.join(" ")),
        ));
    }
    s
}

/// Parses [`discover_script`]'s output into facts per site name, then checks every fact
/// against what it may be (see [`validate`]): a site whose facts do not hold gets an error
/// and is refused before anything touches it.
pub(crate) fn parse_discovery(out: &str, sites: &[Site]) -> BTreeMap<String, Facts> {
    let mut map = BTreeMap::new();
    let mut cur: Option<(String, Facts)> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("### site ") {
            if let Some((n, f)) = cur.take() {
                map.insert(n, f);
            }
            cur = Some((name.trim().to_owned(), Facts::default()));
            continue;
        }
        // Anything else (a login shell's noise on stdout) is not ours and is ignored.
        let (Some((site, f)), Some((k, hex))) = (cur.as_mut(), line.split_once('=')) else {
            continue;
        };
        let Some(v) = unhex(hex) else { continue };
        match k {
            "site_dir" => f.site_dir = v,
            "civicrm_root" => f.civicrm_root = v,
            "civi_db" => f.civi_db = v,
            "cms_db" => f.cms_db = v,
            "templates_c" => f.templates_c = v,
            "code_version" => f.code_version = v,
            // A directory named outside the locale alphabet is no catalogue CiviCRM loads:
            // left out, so nothing a host made up reaches a message.
            "locale" if is_locale(&v) => f.locales.push(v),
            "locale" => tracing::warn!(
                "site `{site}`: ignoring translation directory `{}`: not a locale name",
                v.escape_debug()
            ),
            "db_version" => f.db_version = v.trim().to_owned(),
            "db_error" => f.db_error = v.trim().to_owned(),
            "maintenance" => f.maintenance = v.trim().to_owned(),
            "web_user" => f.web_user = v,
            "has_cv" => f.has_cv = true,
            "has_drush" => f.has_drush = true,
            "module" => f.enabled_modules.push(v),
            "free_kb" => f.free_kb = v.trim().parse().unwrap_or(0),
            "backup_at" => f.backup_at = v,
            "backup_mode" => f.backup_mode = u32::from_str_radix(v.trim(), 8).ok(),
            "code_kb" => f.code_kb = v.trim().parse().unwrap_or(0),
            "code_parent_writable" => f.code_parent_writable = true,
            "error" => f.error = Some(v),
            _ => {}
        }
    }
    if let Some((n, f)) = cur {
        map.insert(n, f);
    }
    for site in sites {
        if let Some(f) = map.get_mut(&site.name)
            && f.error.is_none()
            && let Err(why) = validate(site, f)
        {
            f.error = Some(why);
        }
    }
    map
}

/// Decodes `kv`'s hex; `None` for anything that is not whole hex bytes of UTF-8.
/// The `key=<hex>` lines of a script's output (`kv`), decoded; any other line, or a value
/// that is not hex of UTF-8, is skipped.
pub(crate) fn kv_pairs(out: &str) -> impl Iterator<Item = (&str, String)> {
    out.lines().filter_map(|line| {
        let (k, hex) = line.split_once('=')?;
        Some((k, unhex(hex)?))
    })
}

pub(crate) fn unhex(hex: &str) -> Option<String> {
    let hex = hex.trim_end_matches('\r');
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Checks the facts a host reported before any of them is used in a path, a file name, SQL
/// or a command: paths absolute, free of `..` and control characters, and inside the site's
/// Drupal root where they must be (the code, the site dir); names and versions of a safe
/// alphabet; maintenance one of the three values Drupal has.
pub(crate) fn validate(site: &Site, f: &Facts) -> Result<(), String> {
    let root = site.root.trim_end_matches('/');
    // The part of a path the host chose: after the Drupal root (which the inventory gave)
    // when inside it, else all of it. It must not hold what a shell reads as syntax, so that
    // even a script that hands it to another shell cannot run any of it.
    let path = |what: &str, p: &str, must_be_inside: bool| -> Result<(), String> {
        safe_path(what, p)?;
        let rest = p.strip_prefix(root).filter(|r| r.starts_with('/'));
        if must_be_inside && rest.is_none() {
            return Err(format!(
                "{what} `{}` is not inside the Drupal root `{root}`",
                p.escape_debug()
            ));
        }
        if let Some(c) = rest
            .unwrap_or(p)
            .chars()
            .find(|c| SHELL_SYNTAX.contains(*c))
        {
            return Err(format!(
                "{what} `{}` holds `{c}`, which a shell reads as syntax",
                p.escape_debug()
            ));
        }
        Ok(())
    };
    path("site dir", &f.site_dir, true)?;
    path("`$civicrm_root`", &f.civicrm_root, true)?;
    if !f.templates_c.is_empty() {
        path("`CIVICRM_TEMPLATE_COMPILEDIR`", &f.templates_c, false)?;
        // Emptied on every rollback: it must be a compile dir, never any directory.
        if !f.templates_c.ends_with("/templates_c") {
            return Err(format!(
                "`CIVICRM_TEMPLATE_COMPILEDIR` `{}` is not a `templates_c` directory",
                f.templates_c.escape_debug()
            ));
        }
    }
    for (what, v) in [
        ("CiviCRM database", &f.civi_db),
        ("Drupal database", &f.cms_db),
    ] {
        if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "{what} name `{}` has characters fleet does not accept",
                v.escape_debug()
            ));
        }
    }
    for (what, v) in [
        ("code version", &f.code_version),
        ("database version", &f.db_version),
    ] {
        if !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
        {
            return Err(format!("{what} `{}` is not a version", v.escape_debug()));
        }
    }
    if !matches!(f.maintenance.as_str(), "0" | "1" | "unset") {
        return Err(format!(
            "`maintenance_mode` is `{}`, not 0, 1 or unset",
            f.maintenance.escape_debug()
        ));
    }
    let name_ok = |v: &str| {
        v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    if !name_ok(&f.web_user) || f.web_user.starts_with('-') {
        return Err(format!(
            "web user `{}` is not a user name",
            f.web_user.escape_debug()
        ));
    }
    if let Some(m) = f.enabled_modules.iter().find(|m| !name_ok(m)) {
        return Err(format!(
            "module `{}` is not a module name",
            m.escape_debug()
        ));
    }
    Ok(())
}

/// What a shell reads as syntax (quotes, expansions, operators, globs, comments).
pub(crate) const SHELL_SYNTAX: &str = "$`;'\"\\|&<>()*?[]{}!#~";

pub(crate) fn safe_path(what: &str, p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!(
            "{what} `{}` is not an absolute path",
            p.escape_debug()
        ));
    }
    if p.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{}` holds a control character",
            p.escape_debug()
        ));
    }
    // Compared as text with the Drupal root: every component must be a real name, or
    // `/r/.` and `/r/x/..` would pass for paths inside it.
    if let Some(c) = p[1..]
        .split('/')
        .find(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(format!(
            "{what} `{}` has a `{c}` component",
            p.escape_debug()
        ));
    }
    Ok(())
}

/// Why a read-only discovery gave no facts.
pub(crate) enum Discovery {
    /// Could not connect or the connection dropped.
    Unreachable(String),
    /// The discovery script failed on the host.
    Failed(String),
}

/// Connects, runs the read-only discovery script for `sites`, and closes: what `--plan` and
/// `--bake` need (no journal, no locks).
pub(crate) async fn discover(
    client: &dyn crate::remote::Connect,
    target: &fleet_remote_exec::Target,
    sites: &[Site],
    timeout: std::time::Duration,
    cancel: &crate::context::Cancel,
) -> Result<BTreeMap<String, Facts>, Discovery> {
    let session = client
        .connect(target, &cancel.abort)
        .await
        .map_err(|e| Discovery::Unreachable(error_text(&e)))?;
    let opts = ExecOptions {
        timeout,
        max_output: 1 << 20,
    };
    let out = session
        .exec(
            &RemoteCommand::shell(standalone(&discover_script(sites))),
            &opts,
            &cancel.abort,
        )
        .await;
    session.close().await;
    match out {
        Ok(o) if o.status.success() => Ok(parse_discovery(&o.stdout.to_string_lossy(), sites)),
        Ok(o) => Err(Discovery::Failed(last_line(&o.stderr.to_string_lossy()))),
        Err(e) => Err(Discovery::Unreachable(error_text(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_inventory::DbUpgradeTool;

    fn site(name: &str) -> Site {
        Site {
            name: name.into(),
            root: "/r".into(),
            uri: format!("https://{name}.test"),
            current: None,
            web_user: None,
            backup_dir: "/b".into(),
            drush: "drush".into(),
            cv: "cv".into(),
            db_upgrade: DbUpgradeTool::Auto,
            disable_modules: Vec::new(),
        }
    }

    /// What `kv` prints: `key=` and the value's bytes in hex.
    fn kv(k: &str, v: &str) -> String {
        let hex: String = v.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{k}={hex}\n")
    }

    fn good(name: &str) -> String {
        format!(
            "### site {name}\n{}{}{}{}{}{}{}{}{}",
            kv("site_dir", &format!("/r/sites/{name}")),
            kv("civicrm_root", "/r/sites/all/modules/civicrm"),
            kv("civi_db", "civi"),
            kv(
                "templates_c",
                &format!("/r/sites/{name}/files/civicrm/templates_c")
            ),
            kv("code_version", "5.69.0"),
            kv("db_version", "5.69.0"),
            kv("web_user", "www-data"),
            kv("has_cv", "1"),
            kv("free_kb", "100"),
        )
    }

    #[test]
    fn discovery_output_parses() {
        let out = format!(
            "{}{}{}### site b\n{}",
            good("a"),
            kv("maintenance", "unset"),
            kv("module", "x"),
            kv("error", "no civicrm.settings.php in /r/sites/default")
        );
        let m = parse_discovery(&out, &[site("a"), site("b")]);
        assert_eq!(m["a"].error, None);
        assert_eq!(m["a"].civi_db, "civi");
        assert_eq!(m["a"].maintenance, "unset");
        assert!(m["a"].has_cv && !m["a"].has_drush);
        assert_eq!(m["a"].enabled_modules, ["x"]);
        assert_eq!(m["a"].free_kb, 100);
        assert_eq!(
            m["b"].error.as_deref(),
            Some("no civicrm.settings.php in /r/sites/default")
        );
    }

    #[test]
    fn locales_are_kept_only_when_they_are_locale_names() {
        let out = format!(
            "{}{}{}{}{}{}",
            good("a"),
            kv("maintenance", "0"),
            kv("locale", "de_DE"),
            kv("locale", "x$(id)"),
            kv("locale", "../../etc\nlocale=fr_FR"),
            kv("locale", "ca_ES@valencia"),
        );
        let m = parse_discovery(&out, &[site("a")]);
        assert_eq!(m["a"].error, None);
        assert_eq!(m["a"].locales, ["de_DE", "ca_ES@valencia"]);
    }

    #[test]
    fn a_value_cannot_forge_another_key() {
        // A Drupal variable holding a newline and a fake key, as a site admin could set it.
        let out = format!(
            "{}{}",
            good("a"),
            kv("maintenance", "0\ncivicrm_root=/some/other/dir")
        );
        let m = parse_discovery(&out, &[site("a")]);
        assert_eq!(m["a"].civicrm_root, "/r/sites/all/modules/civicrm");
        let err = m["a"].error.as_deref().unwrap_or("");
        assert!(
            err.contains("`maintenance_mode` is `0\\ncivicrm_root"),
            "{err}"
        );
        // Plain `key=value` lines (an rc file's noise, an old-style forgery) are not hex.
        let out = format!("{}{}civicrm_root=/etc\n", good("a"), kv("maintenance", "0"));
        let m = parse_discovery(&out, &[site("a")]);
        assert_eq!(m["a"].civicrm_root, "/r/sites/all/modules/civicrm");
        assert_eq!(m["a"].error, None);
    }

    #[test]
    fn facts_that_do_not_hold_refuse_the_site() {
        #[track_caller]
        fn case(key: &str, value: &str, want: &str) {
            let out = format!("{}{}{}", good("a"), kv("maintenance", "0"), kv(key, value));
            let m = parse_discovery(&out, &[site("a")]);
            let err = m["a"].error.clone().unwrap_or_default();
            assert!(err.contains(want), "{key}={value:?}: {err}");
        }
        case(
            "civicrm_root",
            "/some/other/dir",
            "not inside the Drupal root `/r`",
        );
        case("civicrm_root", "/rx/civicrm", "not inside the Drupal root");
        case("civicrm_root", "/r/../etc", "`..` component");
        case("civicrm_root", "/r/.", "`.` component");
        case("civicrm_root", "/r//x", "`` component");
        case("civicrm_root", "/r/sites/civi$(id)", "holds `$`");
        case(
            "civicrm_root",
            "/r/sites/civi`id`",
            "which a shell reads as syntax",
        );
        case(
            "templates_c",
            "/r/sites/default",
            "not a `templates_c` directory",
        );
        case("templates_c", "/r/sites/x/./templates_c", "`.` component");
        case(
            "civicrm_root",
            "sites/all/modules/civicrm",
            "not an absolute path",
        );
        case("site_dir", "/r/sites/a\n/x", "control character");
        case("templates_c", "/etc", "not a `templates_c` directory");
        case("civi_db", "../../x", "CiviCRM database name");
        case("cms_db", "d`b", "Drupal database name");
        case("db_version", "5.69.0; rm", "is not a version");
        case("web_user", "-rf", "not a user name");
        case("module", "a b", "not a module name");
        // Outside the root but a compile dir: allowed.
        let out = format!(
            "{}{}{}",
            good("a"),
            kv("maintenance", "1"),
            kv("templates_c", "/var/lib/civicrm/templates_c")
        );
        assert_eq!(parse_discovery(&out, &[site("a")])["a"].error, None);
    }
}
