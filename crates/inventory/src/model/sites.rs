//! The `[hosts.X.sites.Y]` tables of one host: each site's name, Drupal root and URI
//! checked, and its site keys resolved over the host's.

use std::collections::BTreeMap;

use toml::Spanned;

use super::Site;
use super::settings::{SiteSettings, site_keys};
use super::source::Ctx;
use crate::error::{InventoryError, printable};

impl Ctx<'_> {
    /// Resolves the sites of host `host` in file order, each one's site keys over `base`.
    pub(super) fn sites(
        &self,
        host: &str,
        base: &SiteSettings,
        raw: &BTreeMap<Spanned<String>, crate::raw::RawSite>,
    ) -> Result<Vec<Site>, InventoryError> {
        let mut entries: Vec<_> = raw.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut out = Vec::with_capacity(entries.len());
        for (key, r) in entries {
            let name = key.get_ref();
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(self.err(
                    key.span(),
                    format!("invalid site name `{name}` on host `{host}`"),
                ));
            }
            let Some(root) = &r.root else {
                return Err(self.err(
                    key.span(),
                    format!("site `{name}` on host `{host}` has no `root` (the Drupal root)"),
                ));
            };
            let root = self.remote_path("root", root)?;
            let uri = match &r.uri {
                Some(u) => {
                    crate::uri::check(u.get_ref()).map_err(|why| {
                        self.err(
                            u.span(),
                            format!(
                                "invalid `uri` `{}` of site `{name}` on host `{host}`: {why}; expected `http(s)://host[:port][/path]` with only `A-Za-z0-9-._~/` and `%XX` in the path",
                                printable(u.get_ref())
                            ),
                        )
                    })?;
                    u.get_ref().clone()
                }
                None => {
                    return Err(self.err(
                        key.span(),
                        format!("site `{name}` on host `{host}` has no `uri` (passed as `--url`)"),
                    ));
                }
            };
            let s = self.site_overlay(base, site_keys!(r))?;
            if s.backup_dir == root || s.backup_dir.starts_with(&format!("{root}/")) {
                let at = r.backup_dir.as_ref().map_or(key.span(), Spanned::span);
                return Err(self.err(
                    at,
                    format!(
                        "`backup_dir` `{}` of site `{name}` is inside its Drupal root `{root}`; keep backups outside it (Drupal runs `.module` files it finds under `sites/all/modules`)",
                        s.backup_dir
                    ),
                ));
            }
            out.push(Site {
                name: name.clone(),
                root,
                uri,
                web_user: s.web_user,
                backup_dir: s.backup_dir,
                drush: s.drush,
                cv: s.cv,
                db_upgrade: s.db_upgrade,
                disable_modules: s.disable_modules,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::DbUpgradeTool;
    use crate::model::testkit::{error_at, load};

    /// Site values end up in shell commands on the hosts: the URI is strict, paths are
    /// absolute and free of control characters and `..`.
    #[test]
    fn site_uri_and_paths_are_strict() {
        let site =
            |uri: &str| format!("[hosts.web01.sites.main]\nroot = \"/var/www/d7\"\nuri = {uri}\n");
        let expected = "expected `http(s)://host[:port][/path]` with only `A-Za-z0-9-._~/` and `%XX` in the path";
        error_at(
            &site("\"https://x.org/$(touch${IFS}/tmp/p)\""),
            3,
            7,
            &format!(
                "invalid `uri` `https://x.org/$(touch${{IFS}}/tmp/p)` of site `main` on host `web01`: `$` is not allowed in the path; {expected}"
            ),
        );
        error_at(
            &site("\"https://x.org/`id`\""),
            3,
            7,
            "a backtick is not allowed",
        );
        error_at(&site("\"https://x.org/a;id\""), 3, 7, "`;` is not allowed");
        error_at(&site("\"https://x.org/'\""), 3, 7, "`'` is not allowed");
        error_at(&site("'https://x.org/\"'"), 3, 7, "`\"` is not allowed");
        error_at(
            &site("\"https://x.org/a\\nb\""),
            3,
            7,
            "`https://x.org/a\\nb`",
        );
        error_at(
            &site("\"https://x.org/a\\nb\""),
            3,
            7,
            "`\\n` is not allowed",
        );
        error_at(
            &site("\"https://x.org/a b\""),
            3,
            7,
            "a space is not allowed",
        );
        error_at(
            &site("\" https://x.org\""),
            3,
            7,
            "must start with `http://`",
        );
        error_at(&site("\"\""), 3, 7, "must start with `http://`");
        error_at(
            &site("\"www.example.org\""),
            3,
            7,
            "must start with `http://`",
        );
        error_at(&site("\"https://x.org:99999\""), 3, 7, "port `99999`");
        // A range host names each of its hosts.
        error_at(
            "[hosts.\"w[1:2]\".sites.s]\nroot = \"/r\"\nuri = \"https://a|b\"\n",
            3,
            7,
            "of site `s` on host `w1`: `|` is not allowed in the host",
        );

        let paths = |root: &str, backup: &str| {
            format!(
                "[hosts.a.sites.s]\nroot = {root}\nuri = \"https://a.org\"\nbackup_dir = {backup}\n"
            )
        };
        error_at(
            &paths("\"/var/www\\u0000x\"", "\"/b\""),
            2,
            8,
            "without control characters (`\\u{0}` found)",
        );
        error_at(
            &paths("\"/var/www\\nrm\"", "\"/b\""),
            2,
            8,
            "`root` `/var/www\\nrm` must be a path on the host without control characters (`\\n` found)",
        );
        error_at(
            &paths("\"/r\"", "\"/b\\n\""),
            4,
            14,
            "`backup_dir` `/b\\n` must be a path",
        );
        error_at(
            &paths("\"/r\"", "\"/b\\u0000\""),
            4,
            14,
            "control characters",
        );
        error_at(
            &paths("\"/r\"", "\"b\""),
            4,
            14,
            "`backup_dir` `b` must be an absolute path",
        );
        error_at(
            &paths("\"r\"", "\"/b\""),
            2,
            8,
            "`root` `r` must be an absolute path",
        );
        error_at(&paths("\"\"", "\"/b\""), 2, 8, "must be an absolute path");
        // `..` would slip a backup directory into the root past the text comparison.
        error_at(
            &paths(
                "\"/var/www/d7\"",
                "\"/var/www/x/../d7/sites/all/modules/bak\"",
            ),
            4,
            14,
            "without `.` or `..` components",
        );
        error_at(
            &paths("\"/var/www/./d7\"", "\"/b\""),
            2,
            8,
            "without `.` or `..`",
        );
        error_at(
            "[defaults]\nbackup_dir = \"/b\\nx\"\n",
            2,
            14,
            "control characters",
        );
        error_at("[hosts.a]\nbackup_dir = \"/b/..\"\n", 2, 14, "`..`");

        // What stays valid.
        let inv = load(
            "[hosts.a.sites.s]\nroot = \"/var/www/d7/\"\nuri = \"https://[2001:db8::1]:8443/civi/caf%C3%A9\"\nbackup_dir = \"/srv/fleet-backups/..x\"\n",
        )
        .unwrap();
        let s = &inv.host("a").unwrap().sites[0];
        assert_eq!(s.uri, "https://[2001:db8::1]:8443/civi/caf%C3%A9");
        assert_eq!(s.root, "/var/www/d7");
        assert_eq!(s.backup_dir, "/srv/fleet-backups/..x");
    }

    #[test]
    fn sites_inherit_site_keys() {
        let inv = load(
            r#"
[defaults]
backup_dir = "/srv/backups"
cv = "/usr/local/bin/cv"
[hosts."web[1:2]"]
web_user = "apache"
[hosts."web[1:2]".sites.main]
root = "/var/www/d7"
uri = "https://main.example.org"
[hosts."web[1:2]".sites.shop]
root = "/var/www/d7"
uri = "https://shop.example.org"
db_upgrade = "drush"
disable_modules = ["civicrm_rules"]
[rollout]
batches = "1,50%"
max_fail = "10%"
max_per = { db_server = 2 }
"#,
        )
        .unwrap();
        let web2 = inv.host("web2").unwrap();
        assert_eq!(web2.sites.len(), 2);
        let (main, shop) = (&web2.sites[0], &web2.sites[1]);
        assert_eq!(
            (main.name.as_str(), main.root.as_str()),
            ("main", "/var/www/d7")
        );
        assert_eq!(main.web_user.as_deref(), Some("apache"));
        assert_eq!(main.backup_dir, "/srv/backups");
        assert_eq!(main.cv, "/usr/local/bin/cv");
        assert_eq!(main.drush, "drush");
        assert_eq!(main.db_upgrade, DbUpgradeTool::Auto);
        assert_eq!(shop.db_upgrade, DbUpgradeTool::Drush);
        assert_eq!(shop.disable_modules, ["civicrm_rules"]);
        let r = inv.rollout();
        assert_eq!(r.batches.as_ref().unwrap().sizes(10), [1, 5, 4]);
        assert_eq!(r.max_fail, Some(crate::Amount::Percent(10)));
        assert_eq!(r.max_per["db_server"], 2);
    }
}
