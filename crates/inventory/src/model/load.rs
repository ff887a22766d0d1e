//! [`Inventory::load`] and [`Inventory::from_toml_str`]: the raw TOML parsed, every host and
//! group collected in file order, names and the group graph checked, and each host's
//! settings, address, groups and variables resolved.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::graph::{check_cycles, parents_first, transitive_members};
use super::names::is_host_name;
use super::settings::{conn_keys, site_keys, trim_spaces};
use super::source::Ctx;
use super::{Group, Host, Inventory, Site};
use crate::error::{InventoryError, printable};
use crate::range::expand;
use crate::raw::{RawHost, RawInventory, Vars};
use crate::rollout::Rollout;

/// A host as first seen, before groups are known.
struct Def<'r> {
    name: String,
    /// Byte offset of the first mention (inventory order), then position inside a range.
    order: (usize, usize),
    span: Range<usize>,
    /// The host's own table and its key, which it shares with the other hosts of a range.
    table: Option<(&'r str, &'r RawHost)>,
    address: Option<Spanned<String>>,
    vars: Vars,
    sites: Vec<Site>,
}

impl Inventory {
    /// Reads and validates the inventory at `path`: fleet TOML, or an Ansible inventory
    /// (see [`detect_format`](crate::detect_format)) converted to it first.
    ///
    /// # Errors
    ///
    /// [`InventoryError::Read`] when the file cannot be read, [`InventoryError::Invalid`]
    /// (with line and column, in the Ansible file for a converted one) when its content is
    /// not a valid inventory.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        match crate::ansible::detect_format(path, &text) {
            crate::ansible::Format::Toml => Self::from_toml_str(&text, path),
            format => crate::ansible::load(path, &text, format),
        }
    }

    /// Parses and validates inventory `text`; `origin` names it in errors and anchors
    /// relative paths.
    ///
    /// # Errors
    ///
    /// [`InventoryError::Invalid`], naming the line and column of the offending key.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Inventory, InventoryError> {
        let cx = Ctx::new(origin, text);
        let raw: RawInventory = toml::from_str(text).map_err(|e| {
            let message = e
                .message()
                .trim()
                .replace("unknown field", "unknown key")
                .replace('\n', " ");
            cx.err(e.span().unwrap_or(0..0), message)
        })?;
        let defaults = cx.defaults(&raw.defaults)?;
        let rollout = cx.rollout(raw.rollout.as_ref())?;

        let mut defs: Vec<Def> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut host_tables: Vec<_> = raw.hosts.iter().collect();
        host_tables.sort_by_key(|(k, _)| k.span().start);
        for (key, h) in host_tables {
            let names = expand(key.get_ref())
                .map_err(|why| cx.err(key.span(), format!("bad host range: {why}")))?;
            // Checked once here, so an error names the table even before groups are known;
            // the host's settings are built again below, over its groups'.
            let mut checked = defaults.clone();
            cx.host_overlay(&mut checked, key.get_ref(), h)?;
            let site = cx.site_overlay(&defaults.site, site_keys!(h))?;
            for (i, name) in names.into_iter().enumerate() {
                cx.check_name("host", &name, key)?;
                let sites = cx.sites(&name, &site, &h.sites)?;
                if by_name.contains_key(&name) {
                    return Err(cx.err(key.span(), format!("host `{name}` is defined twice")));
                }
                by_name.insert(name.clone(), defs.len());
                defs.push(Def {
                    name,
                    order: (key.span().start, i),
                    span: key.span(),
                    table: Some((key.get_ref().as_str(), h)),
                    address: h.address.clone(),
                    vars: h.vars.clone(),
                    sites,
                });
            }
        }

        let mut group_tables: Vec<_> = raw.groups.iter().collect();
        group_tables.sort_by_key(|(k, _)| k.span().start);
        let mut groups = Vec::with_capacity(group_tables.len());
        let mut group_index = HashMap::new();
        for (key, g) in &group_tables {
            let name = key.get_ref();
            if name == "all" {
                return Err(cx.err(
                    key.span(),
                    "`all` is a built-in group (every host) and cannot be declared",
                ));
            }
            cx.check_name("group", name, key)?;
            cx.conn_overlay(
                &mut defaults.clone(),
                conn_keys!(g),
                &super::Source::Group(name.clone()),
            )?;
            let mut hosts = Vec::new();
            for entry in &g.hosts {
                let names = expand(entry.get_ref())
                    .map_err(|why| cx.err(entry.span(), format!("bad host range: {why}")))?;
                for (i, n) in names.into_iter().enumerate() {
                    cx.check_name("host", &n, entry)?;
                    let order = (entry.span().start, i);
                    if let Some(&d) = by_name.get(&n) {
                        defs[d].order = defs[d].order.min(order);
                    } else {
                        by_name.insert(n.clone(), defs.len());
                        defs.push(Def {
                            name: n.clone(),
                            order,
                            span: entry.span(),
                            table: None,
                            address: None,
                            vars: Vars::new(),
                            sites: Vec::new(),
                        });
                    }
                    if !hosts.contains(&n) {
                        hosts.push(n);
                    }
                }
            }
            group_index.insert(name.clone(), groups.len());
            groups.push(Group {
                name: name.clone(),
                hosts,
                children: g.children.iter().map(|c| c.get_ref().clone()).collect(),
                vars: g.vars.clone(),
            });
        }
        // `-l NAME` looks up groups before hosts, so a host sharing a group's name could never
        // be selected on its own and would silently turn into the whole group.
        if let Some(&d) = by_name.get("all") {
            return Err(cx.err(
                defs[d].span.clone(),
                "`all` is the built-in group (every host) and cannot name a host",
            ));
        }
        for (key, _) in &group_tables {
            if let Some(&d) = by_name.get(key.get_ref()) {
                return Err(cx.err(
                    key.span(),
                    format!(
                        "group `{0}` and host `{0}` ({1}) have the same name, so `-l {0}` cannot tell them apart: rename one",
                        key.get_ref(),
                        cx.at(defs[d].span.clone()),
                    ),
                ));
            }
        }
        for (key, g) in &group_tables {
            for child in &g.children {
                if !group_index.contains_key(child.get_ref()) {
                    return Err(cx.err(
                        child.span(),
                        format!(
                            "unknown child group `{}` in group `{}`",
                            child.get_ref(),
                            key.get_ref()
                        ),
                    ));
                }
            }
        }
        check_cycles(&cx, &group_tables, &group_index)?;

        defs.sort_by_key(|d| d.order);
        let host_index: HashMap<String, usize> = defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        let members = transitive_members(&groups, &group_index, &host_index);
        let vars_order = parents_first(&groups, &group_index);

        let mut hosts = Vec::with_capacity(defs.len());
        for (hi, d) in defs.into_iter().enumerate() {
            let address = match &d.address {
                Some(a) => {
                    let v = trim_spaces(a.get_ref());
                    if v.is_empty() || v.contains(char::is_whitespace) {
                        return Err(cx.err(
                            a.span(),
                            format!(
                                "invalid `address` `{}` for host `{}`",
                                printable(a.get_ref()),
                                d.name
                            ),
                        ));
                    }
                    v.to_owned()
                }
                None if is_host_name(&d.name) => d.name.clone(),
                None => {
                    return Err(cx.err(
                        d.span,
                        format!("host `{}` has no `address` and its name is not a valid host name or IP address", d.name),
                    ));
                }
            };
            let mut vars = raw.defaults.vars.clone();
            for &gi in &vars_order {
                if members[gi].binary_search(&hi).is_ok() {
                    vars.extend(groups[gi].vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            vars.extend(d.vars);
            let mut s = defaults.clone();
            for &gi in &vars_order {
                if members[gi].binary_search(&hi).is_ok() {
                    let from = super::Source::Group(groups[gi].name.clone());
                    cx.conn_overlay(&mut s, conn_keys!(group_tables[gi].1), &from)?;
                }
            }
            if let Some((key, h)) = d.table {
                cx.host_overlay(&mut s, key, h)?;
            }
            let escalation = s.escalation();
            let mut sources = s.sources;
            if d.address.is_some() {
                sources.insert("address".into(), super::Source::Host);
            }
            hosts.push(Host {
                groups: (0..groups.len())
                    .filter(|&gi| members[gi].binary_search(&hi).is_ok())
                    .map(|gi| groups[gi].name.clone())
                    .collect(),
                name: d.name,
                address,
                port: s.port,
                user: s.user,
                identity_files: s.identity_files,
                known_hosts_files: s.known_hosts_files,
                host_key_policy: s.policy,
                connect_timeout: s.connect_timeout,
                command_timeout: s.command_timeout,
                jump: s.jump,
                proxy_command: None,
                ssh_options: super::SshOptions::default(),
                escalation,
                password: s.password,
                vars,
                sites: d.sites,
                sources,
            });
        }
        let ssh_config = cx.ssh_config(raw.defaults.ssh_config.as_ref())?;
        Ok(Inventory {
            path: origin.to_owned(),
            hosts,
            groups,
            host_index,
            group_index,
            members,
            rollout,
            ssh_config,
        })
    }
}

impl Ctx<'_> {
    /// `[defaults] ssh_config`: a file (relative to the inventory), or `false`.
    fn ssh_config(
        &self,
        v: Option<&toml::Spanned<toml::Value>>,
    ) -> Result<super::SshConfigChoice, InventoryError> {
        let Some(v) = v else {
            return Ok(super::SshConfigChoice::User);
        };
        match v.get_ref() {
            toml::Value::Boolean(false) => Ok(super::SshConfigChoice::Off),
            toml::Value::String(p) if p.trim().eq_ignore_ascii_case("none") => {
                Ok(super::SshConfigChoice::Off)
            }
            toml::Value::Boolean(true) => Ok(super::SshConfigChoice::User),
            toml::Value::String(p) if !p.trim().is_empty() => Ok(super::SshConfigChoice::File(
                super::settings::resolve_path(p, &self.base),
            )),
            _ => Err(self.err(
                v.span(),
                "`ssh_config` must be a file (`\"~/.ssh/config\"`) or `false` (read none)",
            )),
        }
    }

    /// The `[rollout]` table, checked; the default when the file has none.
    fn rollout(&self, r: Option<&crate::raw::RawRollout>) -> Result<Rollout, InventoryError> {
        let Some(r) = r else {
            return Ok(Rollout::default());
        };
        let mut out = Rollout::default();
        if let Some(b) = &r.batches {
            out.batches = Some(
                b.get_ref()
                    .parse()
                    .map_err(|e: String| self.err(b.span(), format!("invalid `batches`: {e}")))?,
            );
        }
        if let Some(m) = &r.max_fail {
            out.max_fail = Some(
                m.get_ref()
                    .parse()
                    .map_err(|e: String| self.err(m.span(), format!("invalid `max_fail`: {e}")))?,
            );
        }
        for (k, v) in &r.max_per {
            let n = usize::try_from(*v.get_ref())
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| self.err(v.span(), format!("`max_per.{k}` must be at least 1")))?;
            out.max_per.insert(k.clone(), n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::model::testkit::{error_at, load};
    use crate::{HostKeyPolicy, Inventory};

    #[test]
    fn error_table() {
        error_at(
            "[hosts.web01]\nadress = \"x\"\n",
            2,
            1,
            "unknown key `adress`",
        );
        error_at("[defaults]\nport = 70000\n", 2, 8, "invalid port `70000`");
        error_at("[defaults]\nport = \"22\"\n", 2, 8, "invalid type");
        error_at(
            "[defaults]\nconnect_timeout = \"soon\"\n",
            2,
            19,
            "invalid `connect_timeout` `soon`",
        );
        error_at(
            "[defaults]\ncommand_timeout = \"0s\"\n",
            2,
            19,
            "greater than zero",
        );
        error_at(
            "[defaults]\nhost_key_policy = \"yolo\"\n",
            2,
            19,
            "invalid `host_key_policy` `yolo`",
        );
        error_at(
            "[hosts.a]\nhost_key = \"MD5:aa\"\n",
            2,
            12,
            "invalid `host_key`",
        );
        error_at("[hosts.a]\njump = \"u@:22\"\n", 2, 8, "invalid `jump`");
        error_at(
            "[groups.web]\nhosts = [\"web[20:02]\"]\n",
            2,
            10,
            "goes backwards",
        );
        error_at(
            "[groups.a]\nchildren = [\"b\"]\n[groups.b]\nchildren = [\"a\"]\n",
            3,
            9,
            "group cycle: `a` -> `b` -> `a`",
        );
        error_at(
            "[groups.a]\nchildren = [\"nope\"]\n",
            2,
            13,
            "unknown child group `nope`",
        );
        error_at(
            "[hosts.\"web[01:03]\"]\n[hosts.web02]\n",
            2,
            8,
            "host `web02` is defined twice",
        );
        error_at("[hosts.\"web-\"]\n", 1, 8, "has no `address`");
        error_at("[hosts.a]\naddress = \"\"\n", 2, 11, "invalid `address`");
        error_at(
            "[hosts.a]\naddress = \"10.0.0.1\\n\"\n",
            2,
            11,
            "invalid `address` `10.0.0.1\\n` for host `a`",
        );
        error_at("[groups.all]\n", 1, 9, "built-in group");
        error_at("[defaults\n", 1, 10, "unclosed table, expected `]`");
        error_at(
            "[hosts.a.sites.s]\nroot = \"/var/www/d7\"\nuri = \"https://a.org\"\nbackup_dir = \"/var/www/d7/sites/all/modules/bak\"\n",
            4,
            14,
            "inside its Drupal root",
        );
        error_at(
            "[hosts.a.sites.s]\nuri = \"https://a.org\"\n",
            1,
            16,
            "has no `root`",
        );
        error_at(
            "[hosts.a.sites.s]\nroot = \"relative\"\nuri = \"x\"\n",
            2,
            8,
            "absolute path",
        );
        error_at("[hosts.a.sites.s]\nroot = \"/r\"\n", 1, 16, "has no `uri`");
        error_at(
            "[defaults]\ndb_upgrade = \"php\"\n",
            2,
            14,
            "invalid `db_upgrade`",
        );
        error_at("[rollout]\nbatches = \"1,0\"\n", 2, 11, "invalid `batches`");
    }

    /// `-l web` must not have to guess between a host and a group: both places are named.
    #[test]
    fn host_and_group_may_not_share_a_name() {
        error_at(
            "[hosts.web]\naddress = \"10.0.0.1\"\n\n[groups.web]\nhosts = [\"a\"]\n",
            4,
            9,
            "group `web` and host `web` (/etc/fleet/inv.toml:1:8) have the same name, so `-l web` cannot tell them apart: rename one",
        );
        // The host may come from a range in `[hosts]`, or only from a group's list (its own
        // or another group's).
        error_at(
            "[hosts.\"db[1:3]\"]\n[groups.db2]\n",
            2,
            9,
            "group `db2` and host `db2` (/etc/fleet/inv.toml:1:8)",
        );
        error_at(
            "[groups.web]\nhosts = [\"web\"]\n",
            1,
            9,
            "group `web` and host `web` (/etc/fleet/inv.toml:2:10)",
        );
        error_at(
            "[groups.a]\nhosts = [\"x\", \"b\"]\n[groups.b]\nhosts = [\"y\"]\n",
            3,
            9,
            "group `b` and host `b` (/etc/fleet/inv.toml:2:15)",
        );
        // `all` is the built-in group, so it cannot name a host either.
        error_at(
            "[hosts.all]\naddress = \"10.0.0.1\"\n",
            1,
            8,
            "cannot name a host",
        );
        error_at(
            "[groups.g]\nhosts = [\"all\"]\n",
            2,
            10,
            "cannot name a host",
        );
    }

    #[test]
    fn inventory_order_is_first_mention() {
        let inv = load("[groups.g]\nhosts = [\"b[1:2]\", \"a\"]\n[hosts.z]\n[hosts.b2]\n").unwrap();
        let names: Vec<&str> = inv.hosts().iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["b1", "b2", "a", "z"]);
    }

    #[test]
    fn settings_and_vars_merge_in_order() {
        let inv = load(
            r#"
[defaults]
user = "deploy"
port = 2200
vars = { a = "defaults", b = "defaults", c = "defaults", d = "defaults" }
[groups.child]
hosts = ["h1"]
vars = { b = "child", c = "child" }
[groups.parent]
children = ["child"]
vars = { a = "parent", b = "parent" }
[hosts.h1]
port = 22
vars = { c = "host" }
[hosts.h2]
"#,
        )
        .unwrap();
        let h1 = inv.host("h1").unwrap();
        assert_eq!(h1.user, "deploy");
        assert_eq!(h1.port, 22);
        assert_eq!(h1.var("a").as_deref(), Some("parent"));
        assert_eq!(h1.var("b").as_deref(), Some("child"));
        assert_eq!(h1.var("c").as_deref(), Some("host"));
        assert_eq!(h1.var("d").as_deref(), Some("defaults"));
        assert_eq!(h1.groups, ["child", "parent"]);
        let h2 = inv.host("h2").unwrap();
        assert_eq!(h2.port, 2200);
        assert!(h2.groups.is_empty());
        assert_eq!(h2.var("b").as_deref(), Some("defaults"));
    }

    #[test]
    fn example_file_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../inventory.example.toml"
        ));
        let inv = Inventory::load(path).unwrap();
        assert_eq!(inv.hosts().len(), 1 + 20 + 2);
        let web01 = inv.host("web01").unwrap();
        assert_eq!(web01.port, 2222);
        assert_eq!(web01.jump[0].host, "bastion");
        assert_eq!(web01.var("tier").as_deref(), Some("canary"));
        assert_eq!(web01.groups, ["web", "canary"]);
        let web07 = inv.host("web07").unwrap();
        assert_eq!(web07.address, "web07");
        assert_eq!(web07.var("tier").as_deref(), Some("frontend"));
        assert_eq!(
            inv.host("db2").unwrap().host_key_policy,
            HostKeyPolicy::AcceptNew
        );
        assert!(matches!(
            inv.host("bastion").unwrap().host_key_policy,
            HostKeyPolicy::Pinned(_)
        ));
    }

    /// The README's inventory sketch must load as it stands.
    #[test]
    fn readme_example_parses() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));
        let block = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("\n```").next())
            .expect("a ```toml block in README.md");
        let inv = Inventory::from_toml_str(block, Path::new("README.md")).unwrap();
        let web01 = inv.host("web01").unwrap();
        assert_eq!(web01.port, 2222);
        assert_eq!(web01.groups, ["web", "canary"]);
        assert_eq!(inv.hosts().len(), 20);
    }
}
