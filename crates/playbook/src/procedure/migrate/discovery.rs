//! What `fleet migrate` reads of each site before it builds anything (one round trip per
//! host, read-only): the old site's Drupal version and settings, its database, where its
//! `current` symlink points, and whether a release can be built beside it.
//!
//! Values come back hex-encoded (`kv`, as in the upgrade's discovery), and every one is
//! checked here before it is used in a path, a name or a command.

use std::collections::BTreeMap;

use fleet_inventory::Site;
use fleet_remote_exec::quote;

use crate::discovery::{KV, safe_path, unhex};

/// What discovery found of one site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateFacts {
    /// The old site's Drupal version (`includes/bootstrap.inc`'s `VERSION`).
    pub drupal_version: String,
    /// `sites/<dir>` holding its settings.
    pub site_dir: String,
    /// Its database (`drush status`'s `db-name`).
    pub old_db: String,
    /// Where `current` points (resolved), and the Drupal root (resolved).
    pub current_target: String,
    /// The Drupal root, resolved.
    pub root_real: String,
    /// Release ids already in `releases/` beside `current`.
    pub releases: Vec<String>,
    /// `releases/` beside `current`, resolved (what a resolved `current` is compared with).
    pub releases_real: String,
    /// Free space where releases go, in KiB.
    pub free_kb: u64,
    /// A problem that stops this site, when there is one.
    pub error: Option<String>,
}

/// The discovery script for `sites` (those with `current` set; others are refused before).
pub(crate) fn discover_script(sites: &[Site]) -> String {
    let mut s = String::from(KV);
    s.push_str(
        r#"mdiscover() {
  R=$1; U=$2; C=$3; DRUSH=$4; W=$5
  h=${U#*://}; h=${h%%/*}; h=${h%%:*}
  if [ -d "$R/sites/$h" ]; then S="$R/sites/$h"; else S="$R/sites/default"; fi
  kv site_dir "$S"
  [ -f "$S/settings.php" ] || { kv error "no settings.php in $S"; return; }
  v=$(sed -n -E "s/.*define\(['\"]VERSION['\"],[[:space:]]*['\"]([^'\"]*)['\"].*/\1/p" "$R/includes/bootstrap.inc" 2>/dev/null | head -n1)
  kv drupal_version "$v"
  if [ ! -L "$C" ]; then
    if [ -e "$C" ]; then kv error "\`current\` $C is not a symlink: the web server must serve the site through a link a release can replace"
    else kv error "no \`current\` symlink at $C"; fi
    return
  fi
  kv current_target "$(readlink -f "$C")"
  kv root_real "$(readlink -f "$R")"
  B=$(dirname "$C")
  [ -w "$B" ] || { kv error "cannot write in $B (where releases go)"; return; }
  if [ -d "$B/releases" ]; then
    kv releases_real "$(readlink -f "$B/releases")"
    for r in "$B"/releases/*; do [ -e "$r" ] && kv release "${r##*/}"; done
  fi
  kv free_kb "$(df -Pk "$B" | awk 'NR==2 {print $4}')"
  command -v "$DRUSH" >/dev/null 2>&1 || { kv error "drush not found: $DRUSH"; return; }
  j=$(as_web "$W" "$DRUSH" -r "$R" -l "$U" status --format=json 2>/dev/null)
  kv status "$j"
  return 0
}
"#,
    );
    for site in sites {
        s.push_str(&format!(
            "echo '### site {name}'; mdiscover {r} {u} {c} {drush} {w}\n",
            name = site.name,
            r = quote(&site.root),
            u = quote(&site.uri),
            c = quote(site.current.as_deref().unwrap_or("")),
            drush = quote(&site.drush),
            w = quote(site.web_user.as_deref().unwrap_or("")),
        ));
    }
    s
}

/// Parses [`discover_script`]'s output, then checks each site's facts (see [`validate`]).
pub(crate) fn parse_discovery(out: &str, sites: &[Site]) -> BTreeMap<String, MigrateFacts> {
    let mut map: BTreeMap<String, MigrateFacts> = BTreeMap::new();
    let mut cur: Option<String> = None;
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("### site ") {
            let name = name.trim().to_owned();
            map.entry(name.clone()).or_default();
            cur = Some(name);
            continue;
        }
        let (Some(site), Some((k, hex))) = (cur.as_ref(), line.split_once('=')) else {
            continue;
        };
        let (Some(v), Some(f)) = (unhex(hex), map.get_mut(site)) else {
            continue;
        };
        match k {
            "site_dir" => f.site_dir = v,
            "drupal_version" => f.drupal_version = v.trim().to_owned(),
            "current_target" => f.current_target = v,
            "root_real" => f.root_real = v,
            "release" => f.releases.push(v),
            "releases_real" => f.releases_real = v,
            "free_kb" => f.free_kb = v.trim().parse().unwrap_or(0),
            "status" => f.old_db = db_name(&v).unwrap_or_default(),
            "error" => f.error = Some(v),
            _ => {}
        }
    }
    for site in sites {
        let f = map
            .entry(site.name.clone())
            .or_insert_with(|| MigrateFacts {
                error: Some("discovery said nothing about this site".into()),
                ..MigrateFacts::default()
            });
        if f.error.is_none()
            && let Err(why) = validate(site, f)
        {
            f.error = Some(why);
        }
    }
    map
}

impl crate::engine::HostRun<'_> {
    /// [`discover_script`] for `sites` as the host's journaled `preflight` step, parsed and
    /// checked; `None` (every site failed, untouched, in `results`) when it cannot run.
    pub(crate) async fn discover_migrate(
        &self,
        sites: &[Site],
        results: &mut BTreeMap<String, crate::outcome::SiteOutcome>,
    ) -> Option<BTreeMap<String, MigrateFacts>> {
        use crate::vocab::{BuiltinStep, Unit};
        match self
            .exec(&Unit::Host, BuiltinStep::Preflight, &discover_script(sites))
            .await
        {
            Ok(out) => Some(parse_discovery(&out, sites)),
            Err(e) => {
                let why = crate::engine::step_error_text(&e);
                for s in sites {
                    results.insert(
                        s.name.clone(),
                        crate::engine::failed(
                            BuiltinStep::Preflight,
                            &why,
                            crate::outcome::After::Untouched,
                        ),
                    );
                }
                None
            }
        }
    }
}

/// `db-name` of `drush status --format=json`.
fn db_name(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    v.get("db-name")?.as_str().map(str::to_owned)
}

/// Checks what a host reported before any of it is used: the old site is Drupal 7 (the
/// major the Migrate API's `d7` migrations read), `current` points at the site's Drupal
/// root, and names and paths are of a safe alphabet.
pub(crate) fn validate(site: &Site, f: &MigrateFacts) -> Result<(), String> {
    safe_path("site dir", &f.site_dir)?;
    if !f
        .site_dir
        .starts_with(&format!("{}/sites/", site.root.trim_end_matches('/')))
    {
        return Err(format!(
            "site dir `{}` is not inside the Drupal root `{}`",
            f.site_dir.escape_debug(),
            site.root
        ));
    }
    if !f.drupal_version.starts_with("7.")
        || !f.drupal_version[2..].chars().all(|c| c.is_ascii_digit())
        || f.drupal_version.len() < 3
    {
        return Err(if f.drupal_version.is_empty() {
            format!(
                "`{}/includes/bootstrap.inc` names no Drupal version: not a Drupal 7 root",
                site.root
            )
        } else {
            format!(
                "the site runs Drupal `{}`; `fleet migrate` moves Drupal 7 sites to a new major",
                f.drupal_version.escape_debug()
            )
        });
    }
    safe_path("`current` target", &f.current_target)?;
    safe_path("Drupal root", &f.root_real)?;
    if f.current_target != f.root_real {
        return Err(format!(
            "`current` points at `{}`, not at the site's Drupal root `{}`: the web server must serve the old site through `current` before a release can replace it",
            f.current_target.escape_debug(),
            f.root_real.escape_debug()
        ));
    }
    if f.old_db.is_empty() {
        return Err(
            "drush status names no database (`db-name`): the site does not boot, so its data cannot be read"
                .into(),
        );
    }
    if !f
        .old_db
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || f.old_db.len() > 64
    {
        return Err(format!(
            "database name `{}` has characters fleet does not accept",
            f.old_db.escape_debug()
        ));
    }
    for r in &f.releases {
        if r.is_empty() || r.contains('/') || r.chars().any(char::is_control) {
            return Err(format!(
                "`releases/` holds an entry named `{}`",
                r.escape_debug()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            name: "s".into(),
            root: "/srv/www/d7".into(),
            uri: "https://s.test".into(),
            current: Some("/srv/s/current".into()),
            web_user: None,
            backup_dir: "/b".into(),
            drush: "drush".into(),
            cv: "cv".into(),
            db_upgrade: fleet_inventory::DbUpgradeTool::Auto,
            disable_modules: Vec::new(),
        }
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    fn out(pairs: &[(&str, &str)]) -> String {
        let mut o = String::from("### site s\n");
        for (k, v) in pairs {
            o.push_str(&format!("{k}={}\n", hex(v)));
        }
        o
    }

    const GOOD: &[(&str, &str)] = &[
        ("site_dir", "/srv/www/d7/sites/s.test"),
        ("drupal_version", "7.101"),
        ("current_target", "/srv/www/d7"),
        ("root_real", "/srv/www/d7"),
        ("release", "20261101-120000-abcd"),
        ("free_kb", "1048576"),
        (
            "status",
            "{\"drupal-version\": \"7.101\", \"db-name\": \"drupal_s\"}",
        ),
    ];

    fn with(k: &str, v: &str) -> String {
        let pairs: Vec<(&str, &str)> = GOOD
            .iter()
            .map(|&(a, b)| if a == k { (a, v) } else { (a, b) })
            .collect();
        out(&pairs)
    }

    #[test]
    fn a_good_site_reads_back_whole() {
        let m = parse_discovery(&out(GOOD), &[site()]);
        let f = &m["s"];
        assert_eq!(f.error, None);
        assert_eq!(f.old_db, "drupal_s");
        assert_eq!(f.drupal_version, "7.101");
        assert_eq!(f.releases, ["20261101-120000-abcd"]);
        assert_eq!(f.free_kb, 1_048_576);
    }

    #[test]
    fn what_a_host_says_is_checked_before_use() {
        for (k, v, want) in [
            ("drupal_version", "10.3.1", "runs Drupal `10.3.1`"),
            ("drupal_version", "", "names no Drupal version"),
            (
                "current_target",
                "/srv/s/releases/x",
                "`current` points at `/srv/s/releases/x`",
            ),
            (
                "status",
                "{\"db-name\": \"a`b\"}",
                "has characters fleet does not accept",
            ),
            ("status", "not json", "names no database"),
            (
                "site_dir",
                "/elsewhere/sites/s.test",
                "is not inside the Drupal root",
            ),
            ("site_dir", "/srv/www/d7/sites/../../x", "`..`"),
            ("release", "a\nb", "`releases/` holds an entry"),
        ] {
            let m = parse_discovery(&with(k, v), &[site()]);
            let e = m["s"].error.clone().unwrap_or_default();
            assert!(e.contains(want), "{k}={v:?}: `{e}` does not say `{want}`");
        }
        // A site the output never mentions is refused, never taken as empty facts.
        let m = parse_discovery("", &[site()]);
        assert!(m["s"].error.as_deref().unwrap().contains("said nothing"));
    }
}
