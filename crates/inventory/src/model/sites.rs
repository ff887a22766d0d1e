//! The `[hosts.X.sites.Y]` tables of one host: each site's name, Drupal root and URI
//! checked, and its site keys resolved over the host's.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::Site;
use super::names::{NAME_RULE, name_problem};
use super::settings::{SiteSettings, is_within, site_keys};
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
        // Where each site's `backup_dir` is written (its site key when inherited).
        let mut backup_at = Vec::with_capacity(entries.len());
        for (key, r) in entries {
            let name = key.get_ref();
            if let Some(why) = name_problem(name) {
                return Err(self.err(
                    key.span(),
                    format!(
                        "invalid site name `{}` on host `{host}`: {why}; {NAME_RULE}",
                        printable(name)
                    ),
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
            let current = match &r.current {
                Some(c) => {
                    let path = self.remote_path("current", c)?;
                    if path == "/" || is_within(&path, &root) {
                        return Err(self.err(
                            c.span(),
                            format!(
                                "`current` `{}` of site `{name}` on host `{host}` is inside its Drupal root `{}`; `current` is the symlink the web server serves, beside the releases it points at",
                                printable(&path),
                                printable(&root)
                            ),
                        ));
                    }
                    Some(path)
                }
                None => None,
            };
            let s = self.site_overlay(base, site_keys!(r))?;
            let at = r.backup_dir.as_ref().map_or(key.span(), Spanned::span);
            let site = Site {
                name: name.clone(),
                root,
                uri,
                current,
                web_user: s.web_user,
                backup_dir: s.backup_dir,
                drush: s.drush,
                cv: s.cv,
                db_upgrade: s.db_upgrade,
                disable_modules: s.disable_modules,
            };
            if is_within(&site.backup_dir, &site.root) {
                return Err(self.backup_inside(&site, &site, at));
            }
            out.push(site);
            backup_at.push(at);
        }
        self.check_backup_dirs(&out, &backup_at)?;
        Ok(out)
    }

    /// Refuses a site whose backups would land in a Drupal root of its host, its own
    /// (checked as each site is read) or another site's (checked once all are): the root is
    /// web-served (the dumps hold all of a site's data), Drupal runs `.module` files it finds
    /// under `sites/all/modules`, and the code move would carry the backups along. Paths
    /// compare by components ([`is_within`]), as the host would see them; `at[i]` is where
    /// site `i`'s `backup_dir` is written (its site key when inherited).
    fn check_backup_dirs(&self, sites: &[Site], at: &[Range<usize>]) -> Result<(), InventoryError> {
        for (s, at) in sites.iter().zip(at) {
            if let Some(owner) = sites.iter().find(|o| is_within(&s.backup_dir, &o.root)) {
                return Err(self.backup_inside(s, owner, at.clone()));
            }
        }
        Ok(())
    }

    fn backup_inside(&self, s: &Site, owner: &Site, at: Range<usize>) -> InventoryError {
        let whose = if owner.root == s.root {
            "its Drupal root".to_owned()
        } else {
            format!("the Drupal root of site `{}`", owner.name)
        };
        self.err(
            at,
            format!(
                "`backup_dir` `{}` of site `{}` is inside {whose} `{}`; keep backups outside every Drupal root of the host (Drupal runs `.module` files it finds under `sites/all/modules`, and the root is web-served)",
                printable(&s.backup_dir),
                s.name,
                printable(&owner.root)
            ),
        )
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

    /// A backup directory is inside a Drupal root when the host would see it there, however
    /// the paths are spelled: `//` and trailing `/` do not hide it, and `/` holds everything.
    #[test]
    fn backup_dir_inside_a_root_is_found_by_components() {
        let site = |root: &str, backup: &str| {
            format!(
                "[hosts.a.sites.s]\nroot = \"{root}\"\nuri = \"https://a.org\"\nbackup_dir = \"{backup}\"\n"
            )
        };
        #[track_caller]
        fn inside(text: &str, needle: &str) {
            error_at(text, 4, 14, needle);
        }
        inside(
            &site("/var/www/d7", "/var/www//d7/sites/all/modules/bak"),
            "`backup_dir` `/var/www/d7/sites/all/modules/bak` of site `s` is inside its Drupal root `/var/www/d7`; keep backups outside every Drupal root of the host",
        );
        inside(
            &site("/var/www//d7/", "/var/www/d7/bak"),
            "inside its Drupal root",
        );
        inside(
            &site("/var/www/d7", "//var/www/d7//"),
            "inside its Drupal root",
        );
        inside(
            &site("/var/www/d7", "/var/www/d7"),
            "inside its Drupal root",
        );
        inside(&site("/", "/var/backups"), "inside its Drupal root `/`");
        // `.` and `..` stay refused, never resolved: only the host knows where `..` leads.
        inside(
            &site("/var/www/d7", "/var/www/d7/./bak"),
            "without `.` or `..`",
        );
        inside(
            &site("/var/www/d7", "/var/www/x/../d7/bak"),
            "without `.` or `..`",
        );
        // An inherited `backup_dir` is reported at the site that inherits it.
        error_at(
            "[hosts.a]\nbackup_dir = \"/srv//www/b\"\n[hosts.a.sites.s]\nroot = \"/srv/www\"\nuri = \"https://a.org\"\n",
            3,
            16,
            "`backup_dir` `/srv/www/b` of site `s` is inside its Drupal root `/srv/www`",
        );
        // Another site's root on the same host is web-served too.
        error_at(
            "[hosts.a.sites.s]\nroot = \"/var/www/a\"\nuri = \"https://a.org\"\n[hosts.a.sites.t]\nroot = \"/var/www/b\"\nuri = \"https://b.org\"\nbackup_dir = \"/var/www//a/bak\"\n",
            7,
            14,
            "`backup_dir` `/var/www/a/bak` of site `t` is inside the Drupal root of site `s` `/var/www/a`",
        );
        error_at(
            "[hosts.a]\nbackup_dir = \"/var/www/b/bak\"\n[hosts.a.sites.s]\nroot = \"/var/www/a\"\nuri = \"https://a.org\"\n[hosts.a.sites.t]\nroot = \"/var/www/b\"\nuri = \"https://b.org\"\nbackup_dir = \"/srv/b\"\n",
            3,
            16,
            "of site `s` is inside the Drupal root of site `t`",
        );

        // Outside, even when the text shares a prefix; paths come back normalized, so two
        // spellings of one root are one codebase.
        let inv = load(
            "[hosts.a.sites.s]\nroot = \"/var/www//d7/\"\nuri = \"https://a.org\"\nbackup_dir = \"/var/www/d7-backups//x/\"\n[hosts.a.sites.t]\nroot = \"/var/www/d7\"\nuri = \"https://b.org\"\nbackup_dir = \"//var/www/d7x\"\n",
        )
        .unwrap();
        let [s, t] = &inv.host("a").unwrap().sites[..] else {
            panic!("two sites")
        };
        assert_eq!(
            (s.root.as_str(), t.root.as_str()),
            ("/var/www/d7", "/var/www/d7")
        );
        assert_eq!(s.backup_dir, "/var/www/d7-backups/x");
        assert_eq!(t.backup_dir, "/var/www/d7x");
        // Backups of another host's sites are on another machine.
        load("[hosts.a.sites.s]\nroot = \"/var/www/a\"\nuri = \"https://a.org\"\n[hosts.b.sites.s]\nroot = \"/var/www/b\"\nuri = \"https://b.org\"\nbackup_dir = \"/var/www/a/bak\"\n").unwrap();
    }

    /// Site names become journal keys (`site:NAME`), lock directory names on the hosts and
    /// parts of paths: the host-name rule, nothing that could climb out of a directory.
    #[test]
    fn site_names_follow_the_host_name_rule() {
        let site = |name: &str| {
            format!("[hosts.web01.sites.{name}]\nroot = \"/r\"\nuri = \"https://a.org\"\n")
        };
        error_at(
            &site("\"..\""),
            1,
            20,
            "invalid site name `..` on host `web01`: it starts with `.`; use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`",
        );
        error_at(&site("\".hidden\""), 1, 20, "it starts with `.`");
        error_at(&site("\"-rf\""), 1, 20, "it starts with `-`");
        error_at(
            &site("\"\""),
            1,
            20,
            "invalid site name `` on host `web01`: it is empty",
        );
        error_at(&site("\"a/b\""), 1, 20, "`/` is not allowed");
        error_at(&site("\"a:b\""), 1, 20, "`:` is not allowed");
        error_at(&site("\"a\\tb\""), 1, 20, "invalid site name `a\\tb`");
        let inv = load(&site("\"shop_2.example-org\"")).unwrap();
        assert_eq!(
            inv.host("web01").unwrap().sites[0].name,
            "shop_2.example-org"
        );
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
