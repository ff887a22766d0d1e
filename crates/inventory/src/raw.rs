//! The inventory file as written: serde structs with spans, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string or a list of strings (`identity_file = "a"` or `["a", "b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

pub(crate) type Vars = BTreeMap<String, toml::Value>;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInventory {
    #[serde(default)]
    pub(crate) defaults: RawDefaults,
    #[serde(default)]
    pub(crate) hosts: BTreeMap<Spanned<String>, RawHost>,
    #[serde(default)]
    pub(crate) groups: BTreeMap<Spanned<String>, RawGroup>,
    pub(crate) rollout: Option<RawRollout>,
}

/// `[defaults]`: settings every host inherits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaults {
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) port: Option<Spanned<i64>>,
    pub(crate) identity_file: Option<Spanned<OneOrMany>>,
    pub(crate) known_hosts_file: Option<Spanned<OneOrMany>>,
    pub(crate) host_key_policy: Option<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) command_timeout: Option<Spanned<String>>,
    pub(crate) jump: Option<Spanned<String>>,
    #[serde(rename = "become")]
    pub(crate) become_: Option<Spanned<toml::Value>>,
    pub(crate) become_user: Option<Spanned<String>>,
    pub(crate) become_method: Option<Spanned<String>>,
    pub(crate) become_password_file: Option<Spanned<String>>,
    pub(crate) become_password_env: Option<Spanned<String>>,
    pub(crate) password_file: Option<Spanned<String>>,
    pub(crate) password_env: Option<Spanned<String>>,
    pub(crate) web_user: Option<Spanned<String>>,
    pub(crate) backup_dir: Option<Spanned<String>>,
    pub(crate) drush: Option<Spanned<String>>,
    pub(crate) cv: Option<Spanned<String>>,
    pub(crate) db_upgrade: Option<Spanned<String>>,
    pub(crate) disable_modules: Option<Spanned<Vec<String>>>,
    pub(crate) ssh_config: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub(crate) vars: Vars,
}

/// `[hosts.NAME]`: one host (or a range of hosts) and its overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHost {
    pub(crate) address: Option<Spanned<String>>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) port: Option<Spanned<i64>>,
    pub(crate) identity_file: Option<Spanned<OneOrMany>>,
    pub(crate) known_hosts_file: Option<Spanned<OneOrMany>>,
    pub(crate) host_key_policy: Option<Spanned<String>>,
    pub(crate) host_key: Option<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) command_timeout: Option<Spanned<String>>,
    pub(crate) jump: Option<Spanned<String>>,
    #[serde(rename = "become")]
    pub(crate) become_: Option<Spanned<toml::Value>>,
    pub(crate) become_user: Option<Spanned<String>>,
    pub(crate) become_method: Option<Spanned<String>>,
    pub(crate) become_password_file: Option<Spanned<String>>,
    pub(crate) become_password_env: Option<Spanned<String>>,
    pub(crate) password_file: Option<Spanned<String>>,
    pub(crate) password_env: Option<Spanned<String>>,
    pub(crate) web_user: Option<Spanned<String>>,
    pub(crate) backup_dir: Option<Spanned<String>>,
    pub(crate) drush: Option<Spanned<String>>,
    pub(crate) cv: Option<Spanned<String>>,
    pub(crate) db_upgrade: Option<Spanned<String>>,
    pub(crate) disable_modules: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(crate) vars: Vars,
    #[serde(default)]
    pub(crate) sites: BTreeMap<Spanned<String>, RawSite>,
}

/// `[hosts.NAME.sites.SITE]`: one Drupal site with CiviCRM on that host.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSite {
    pub(crate) root: Option<Spanned<String>>,
    pub(crate) uri: Option<Spanned<String>>,
    pub(crate) current: Option<Spanned<String>>,
    pub(crate) web_user: Option<Spanned<String>>,
    pub(crate) backup_dir: Option<Spanned<String>>,
    pub(crate) drush: Option<Spanned<String>>,
    pub(crate) cv: Option<Spanned<String>>,
    pub(crate) db_upgrade: Option<Spanned<String>>,
    pub(crate) disable_modules: Option<Spanned<Vec<String>>>,
}

/// `[rollout]`: how `fleet upgrade` batches hosts unless the command line says otherwise.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRollout {
    pub(crate) batches: Option<Spanned<String>>,
    pub(crate) max_fail: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) max_per: BTreeMap<String, Spanned<i64>>,
}

/// `[groups.NAME]`: members, and the connection settings and vars they get (defaults <
/// groups, parents before children < host).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    #[serde(default)]
    pub(crate) hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) children: Vec<Spanned<String>>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) port: Option<Spanned<i64>>,
    pub(crate) identity_file: Option<Spanned<OneOrMany>>,
    pub(crate) known_hosts_file: Option<Spanned<OneOrMany>>,
    pub(crate) host_key_policy: Option<Spanned<String>>,
    pub(crate) connect_timeout: Option<Spanned<String>>,
    pub(crate) command_timeout: Option<Spanned<String>>,
    pub(crate) jump: Option<Spanned<String>>,
    #[serde(rename = "become")]
    pub(crate) become_: Option<Spanned<toml::Value>>,
    pub(crate) become_user: Option<Spanned<String>>,
    pub(crate) become_method: Option<Spanned<String>>,
    pub(crate) become_password_file: Option<Spanned<String>>,
    pub(crate) become_password_env: Option<Spanned<String>>,
    pub(crate) password_file: Option<Spanned<String>>,
    pub(crate) password_env: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) vars: Vars,
}
