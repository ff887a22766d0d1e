//! The validated inventory: hosts with every setting resolved, their sites, groups and
//! membership, and the queries on them. The submodules build it from the TOML text;
//! [`load`] drives them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rollout::Rollout;

mod graph;
mod load;
pub(crate) mod names;
mod settings;
mod sites;
mod source;
#[cfg(test)]
mod testkit;

/// How a host's SSH key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The key must be in a known_hosts file.
    Strict,
    /// Unknown keys are recorded on first use; changed keys still fail.
    AcceptNew,
    /// The key's fingerprint must be this `SHA256:...` value.
    Pinned(String),
}

/// One hop of a `jump` chain: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHop {
    /// User on the jump host; the target's settings when `None`.
    pub user: Option<String>,
    /// Host name, address, or the name of an inventory host.
    pub host: String,
    /// Port; 22 (or the inventory host's port) when `None`.
    pub port: Option<u16>,
    /// Keys for this hop (from its own block of an OpenSSH config); empty: the keys of the
    /// host it leads to (or of the inventory host it names).
    pub identity_files: Vec<PathBuf>,
}

/// Client options that only an OpenSSH config sets (the inventory has no key for them),
/// applied as `ssh` applies them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshOptions {
    /// `CertificateFile`s, expanded: offered with the identity file whose key they certify.
    pub certificate_files: Vec<PathBuf>,
    /// `IdentitiesOnly yes`: only agent keys that belong to an identity file.
    pub identities_only: bool,
    /// `IdentityAgent`, expanded: `none`, `SSH_AUTH_SOCK`, `$VAR`, or a socket path.
    pub identity_agent: Option<String>,
    /// `ServerAliveInterval` and `ServerAliveCountMax` (3 unless set).
    pub server_alive: Option<(Duration, u32)>,
    /// `HashKnownHosts yes`: keys learned under `accept-new` are written hashed.
    pub hash_known_hosts: bool,
}

/// How commands on a host are run as another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BecomeMethod {
    /// `sudo` (the password, if any, on its stdin with `-S`).
    Sudo,
    /// OpenBSD's `doas`.
    Doas,
    /// `su` (the target user's password, if asked).
    Su,
}

impl BecomeMethod {
    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BecomeMethod::Sudo => "sudo",
            BecomeMethod::Doas => "doas",
            BecomeMethod::Su => "su",
        }
    }
}

/// Where a password comes from. The inventory names the place, never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The first line of this file, which must be readable by its owner only.
    File(PathBuf),
    /// This environment variable of fleet's own process.
    Env(String),
}

/// Running a host's commands as another user (`become`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Become {
    /// The user to become.
    pub user: String,
    /// How.
    pub method: BecomeMethod,
    /// The password the method asks for, when it asks; `None`: it must not ask (or the
    /// command line gives one with `--ask-become-pass`).
    pub password: Option<SecretSource>,
}

/// Which tool runs the CiviCRM database upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbUpgradeTool {
    /// `cv` when the host has it, else `drush`.
    Auto,
    /// `cv upgrade:db -n`.
    Cv,
    /// `drush civicrm-upgrade-db -y`.
    Drush,
}

/// A Drupal site with CiviCRM on a host. Sites sharing `root` share a codebase; sites whose
/// CiviCRM DSN names the same database share a database (discovered on the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Name, unique on its host.
    pub name: String,
    /// Drupal root on the host (absolute).
    pub root: String,
    /// Site URI, passed as `--url`/`-l` (never left to the tools' `default` fallback).
    pub uri: String,
    /// The symlink the web server serves as this site's docroot, for `fleet migrate`: new
    /// releases are built in `releases/` beside it and switched in by replacing it. `None`:
    /// the site cannot be migrated.
    pub current: Option<String>,
    /// Web-server user; discovered from the owner of `templates_c` when `None`.
    pub web_user: Option<String>,
    /// Where this run's backups go on the host (absolute, outside the Drupal root).
    pub backup_dir: String,
    /// `drush` command on the host.
    pub drush: String,
    /// `cv` command on the host.
    pub cv: String,
    /// Tool for the database upgrade.
    pub db_upgrade: DbUpgradeTool,
    /// Integration modules to disable during the upgrade and enable again after.
    pub disable_modules: Vec<String>,
}

/// A host with every setting resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Inventory name.
    pub name: String,
    /// Address or DNS name to connect to.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// Private keys to offer; empty means the SSH defaults.
    pub identity_files: Vec<PathBuf>,
    /// known_hosts files to check.
    pub known_hosts_files: Vec<PathBuf>,
    /// Host-key trust policy.
    pub host_key_policy: HostKeyPolicy,
    /// Bound on connect and on authentication.
    pub connect_timeout: Duration,
    /// Default bound on each command.
    pub command_timeout: Duration,
    /// Jump hosts, outermost first.
    pub jump: Vec<JumpHop>,
    /// A local command whose stdin and stdout carry the SSH connection (an OpenSSH config's
    /// `ProxyCommand`, its tokens expanded), instead of a TCP connection or jump hosts.
    pub proxy_command: Option<String>,
    /// Options only an OpenSSH config sets.
    pub ssh_options: SshOptions,
    /// Every command run as another user, when set.
    pub escalation: Option<Become>,
    /// The SSH login password, when the host takes one (tried after keys).
    pub password: Option<SecretSource>,
    /// Every group containing the host (directly or through children), in declaration order.
    pub groups: Vec<String>,
    /// Merged variables: defaults < groups (parents before children) < host.
    pub vars: BTreeMap<String, toml::Value>,
    /// Drupal/CiviCRM sites on this host, in file order.
    pub sites: Vec<Site>,
    /// Where each connection setting came from, by its inventory key (`address`, `user`,
    /// `port`, `identity_file`, `known_hosts_file`, `host_key_policy`, `connect_timeout`,
    /// `jump`, `become`, `become_user`, `become_method`, `become_password`, `password`); what
    /// is not here is fleet's default.
    pub sources: BTreeMap<String, Source>,
}

impl Host {
    /// Where setting `key` came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Builtin)
    }

    /// Whether `key` was set by the inventory (or the command line), which an OpenSSH
    /// config does not override.
    pub fn set_by_inventory(&self, key: &str) -> bool {
        matches!(
            self.source(key),
            Source::Defaults | Source::Group(_) | Source::Host | Source::CommandLine
        )
    }
}

impl Host {
    /// Returns a variable rendered as text (strings without quotes), if set.
    pub fn var(&self, key: &str) -> Option<String> {
        self.vars.get(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// Where one of a host's connection settings came from (`fleet hosts --explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// fleet's own default.
    Builtin,
    /// The inventory's `[defaults]`.
    Defaults,
    /// A group's table (`[groups.NAME]`).
    Group(String),
    /// The host's own table (`[hosts.NAME]`).
    Host,
    /// An OpenSSH client config, at `file:line`.
    SshConfig(String),
    /// The command line.
    CommandLine,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => write!(f, "fleet's default"),
            Source::Defaults => write!(f, "inventory [defaults]"),
            Source::Group(g) => write!(f, "inventory group `{g}`"),
            Source::Host => write!(f, "inventory host"),
            Source::SshConfig(at) => write!(f, "ssh_config {at}"),
            Source::CommandLine => write!(f, "command line"),
        }
    }
}

/// The OpenSSH client config the inventory asks for (`[defaults] ssh_config`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SshConfigChoice {
    /// `~/.ssh/config` when it exists (the default).
    #[default]
    User,
    /// This file (`ssh_config = "path"`, relative to the inventory).
    File(PathBuf),
    /// None (`ssh_config = false`).
    Off,
}

/// A group of hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Direct members (ranges expanded).
    pub hosts: Vec<String>,
    /// Nested groups.
    pub children: Vec<String>,
    /// The group's own variables.
    pub vars: BTreeMap<String, toml::Value>,
}

/// A loaded, validated inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    path: PathBuf,
    hosts: Vec<Host>,
    groups: Vec<Group>,
    host_index: HashMap<String, usize>,
    group_index: HashMap<String, usize>,
    /// Every group's hosts (transitively), as sorted host indices.
    members: Vec<Vec<usize>>,
    rollout: Rollout,
    ssh_config: SshConfigChoice,
}

impl Inventory {
    /// The `[rollout]` table (empty when absent).
    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// The file this inventory came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every host, in inventory order (order of first mention in the file).
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Every host, to complete their settings from elsewhere (an OpenSSH config): names and
    /// order must stay as they are.
    pub fn hosts_mut(&mut self) -> &mut [Host] {
        &mut self.hosts
    }

    /// The OpenSSH client config `[defaults] ssh_config` asks for.
    pub fn ssh_config(&self) -> &SshConfigChoice {
        &self.ssh_config
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.host_index.get(name).map(|&i| &self.hosts[i])
    }

    /// Every group, in declaration order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub(crate) fn host_position(&self, name: &str) -> Option<usize> {
        self.host_index.get(name).copied()
    }

    /// Host indices of group `name` (transitively), sorted.
    pub(crate) fn group_members(&self, name: &str) -> Option<&[usize]> {
        self.group_index
            .get(name)
            .map(|&i| self.members[i].as_slice())
    }
}
