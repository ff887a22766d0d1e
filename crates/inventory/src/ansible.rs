//! Ansible inventories (INI and YAML, with the `group_vars/` and `host_vars/` beside them)
//! converted to fleet's TOML inventory text, which [`Inventory::load`] then validates like
//! any other.
//!
//! # What is read
//!
//! | Ansible | fleet |
//! | --- | --- |
//! | INI `[g]`, `[g:children]`, `[g:vars]`; YAML `all: {hosts, vars, children}` | `[groups.g]` `hosts`, `children`, `vars` |
//! | hosts before the first INI section, YAML `all.hosts`, `[ungrouped]` | group `ungrouped` (hosts in no other group, as Ansible reconciles it) |
//! | `[all:vars]`, `all.vars`, `group_vars/all` | `[defaults]` |
//! | `web[01:20]` | fleet's range `web[01:20]`; `db-[a:f]`, steps (`[0:20:5]`) are expanded |
//! | `host:port`, `ansible_port`, `ansible_ssh_port` | `port` |
//! | `ansible_host`, `ansible_ssh_host` | `address` (per host: fleet has no group address) |
//! | `ansible_user`, `ansible_ssh_user` | `user` |
//! | `ansible_ssh_private_key_file`, `ansible_private_key_file` | `identity_file` |
//! | `ansible_ssh_common_args`, `ansible_ssh_extra_args`: `-J x`, `-o ProxyJump=x` | `jump` |
//! | `ansible_timeout`, `ansible_ssh_timeout` (seconds) | `connect_timeout` |
//! | `ansible_become` (`ansible_sudo`), `ansible_become_user`, `ansible_become_method` | `become`, `become_user`, `become_method` (`sudo`, `doas`, `su`) |
//! | any other variable | `vars` (strings, integers, floats, booleans, lists, tables) |
//!
//! Values are typed as Ansible types them: INI host-line values as Python literals (`22`,
//! `True`, `'quoted'`, `[1, 2]`; anything else stays text), INI `:vars` values as strings
//! (as Ansible documents; quotes removed, lists and dicts kept), YAML as PyYAML reads YAML
//! 1.1 (`yes`/`no`/`on`/`off` are booleans, `010` is octal, anchors and `<<` merges work).
//! Booleans and numbers given as text (`ansible_become=yes`, `ansible_port="22"`) are
//! converted as Ansible converts them.
//!
//! Every host gets the variables and settings Ansible would give it: all < groups (by depth,
//! `ansible_group_priority`, name) < `group_vars/all` < `group_vars/<group>` < host <
//! `host_vars/<host>`. Where fleet's simpler merge (`[defaults]` < groups, parents first <
//! host) would give another value, the host's table says Ansible's.
//!
//! # What is refused
//!
//! Each with the Ansible file, line and column: plaintext passwords (`ansible_password`,
//! `ansible_ssh_pass`, `ansible_become_pass`, `ansible_become_password`, `ansible_sudo_pass`,
//! ...), Ansible Vault (`!vault` values and `$ANSIBLE_VAULT` files), dynamic inventories (an
//! executable file, a `#!` script, a YAML `plugin:` configuration), `ansible_connection`
//! other than `ssh`/`smart`/`paramiko`, ssh arguments other than a jump host,
//! `ansible_ssh_executable`, `ansible_ssh_args`, `ansible_become_exe`/`_flags`,
//! `ansible_host_key_checking`, `ansible_shell_type` other than `sh`,
//! `ansible_shell_executable` other than `/bin/sh`, any other `ansible_*` variable fleet does
//! not know, a Jinja template (`{{ }}`) in a connection variable, names fleet cannot use
//! (see `model/names.rs`), an IPv6 address as a host name, a group cycle (or a group its own
//! child), two spellings of one setting with different values (`ansible_user` and
//! `ansible_ssh_user`), and a key written twice in one YAML mapping.
//!
//! # Choices where Ansible is loose
//!
//! - Variables Ansible's modules read but fleet never does (`ansible_python_interpreter`
//!   and the other `*_interpreter`, `ansible_pipelining`, `ansible_scp_extra_args`, ...) are
//!   kept as plain variables; `ansible_connection=ssh` and `ansible_shell_type=sh` are
//!   dropped, being what fleet does anyway; `ansible_group_priority` is used for the merge
//!   order and dropped.
//! - A null variable (YAML `x:` or `~`, INI `None`) is left out: TOML has no null. Where it
//!   would clear what a group sets, that is an error, since a fleet host cannot unset it.
//! - A Jinja template in a plain variable is kept as its text; fleet does not evaluate it.
//! - A relative `identity_file` is relative to the inventory's directory (fleet's rule), not
//!   to where Ansible runs.
//! - fleet lists hosts in the order the converted file first names them: group by group.
//!
//! Settings in `[groups.X]` tables (`user`, `port`, `jump`, `become`, ...) and the `become*`
//! keys anywhere need a loader that accepts them.

use std::path::Path;
use std::sync::Arc;

use crate::error::InventoryError;
use crate::model::Inventory;

mod connection;
mod emit;
mod ini;
mod literal;
mod model;
pub(crate) mod pattern;
mod resolve;
mod shlex;
mod vars_dirs;
pub(crate) mod yaml;

#[cfg(test)]
mod tests;

pub use vars_dirs::VarsDirs;

use emit::Converted;
use model::Origin;

/// How an inventory file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// fleet's own TOML.
    Toml,
    /// An Ansible INI inventory.
    AnsibleIni,
    /// An Ansible YAML (or JSON) inventory.
    AnsibleYaml,
}

/// Guesses how the inventory at `path` holding `text` is written: by its extension
/// (`.toml`; `.yml`, `.yaml`, `.json`; `.ini`, `.cfg`), else TOML when `text` parses as
/// TOML, else Ansible INI (which is what Ansible reads a file without an extension as).
pub fn detect_format(path: &Path, text: &str) -> Format {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("toml") => Format::Toml,
        Some("yml" | "yaml" | "json") => Format::AnsibleYaml,
        Some("ini" | "cfg") => Format::AnsibleIni,
        _ if text.parse::<toml::Table>().is_ok() => Format::Toml,
        _ => Format::AnsibleIni,
    }
}

/// Converts the Ansible inventory at `path` (its content `text`, written as `format`), with
/// the `group_vars/` and `host_vars/` directories beside it, to a complete fleet TOML
/// inventory. [`Format::Toml`] text is returned as it is.
///
/// # Errors
///
/// [`InventoryError::Invalid`] naming the Ansible file (the inventory or a vars file), line
/// and column of what fleet cannot read or refuses (the `ansible` module's docs list it);
/// [`InventoryError::Read`] when a vars directory or a file it needs cannot be read.
pub fn ansible_to_toml(path: &Path, text: &str, format: Format) -> Result<String, InventoryError> {
    if format == Format::Toml {
        return Ok(text.to_owned());
    }
    let dirs = VarsDirs::read(path)?;
    ansible_to_toml_with(path, text, format, &dirs)
}

/// Converts like [`ansible_to_toml`], with the vars directories already read (or
/// [`VarsDirs::default`] for none).
///
/// # Errors
///
/// As [`ansible_to_toml`].
pub fn ansible_to_toml_with(
    path: &Path,
    text: &str,
    format: Format,
    dirs: &VarsDirs,
) -> Result<String, InventoryError> {
    if format == Format::Toml {
        return Ok(text.to_owned());
    }
    Ok(convert(path, text, format, dirs)?.text)
}

/// Converts, keeping where each line came from.
fn convert(
    path: &Path,
    text: &str,
    format: Format,
    dirs: &VarsDirs,
) -> Result<Converted, InventoryError> {
    let file: Arc<Path> = Arc::from(path);
    let head = Origin::new(&file, 1, 1);
    // Python reads a leading byte-order mark as part of the first line; editors write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    refuse_script(path, text, &head)?;
    let parsed = match format {
        Format::AnsibleYaml => yaml::parse_inventory(&file, text)?,
        Format::AnsibleIni | Format::Toml => {
            yaml::refuse_vault_file(&file, text)?;
            ini::parse(&file, text)?
        }
    };
    let plan = resolve::plan(parsed, dirs)?;
    Ok(emit::emit(path, &plan, &head))
}

/// Refuses a dynamic inventory script: Ansible runs an executable inventory file (and a
/// `#!` line says the file is one) for its JSON output, which fleet does not do.
fn refuse_script(path: &Path, text: &str, head: &Origin) -> Result<(), InventoryError> {
    let save = "save its hosts as a static inventory (`ansible-inventory -i FILE --list --yaml --export > inventory.yml`) and convert that";
    if text.starts_with("#!") {
        return Err(head.err(format!(
            "the inventory starts with `#!`: it is a dynamic inventory script, which fleet does not run; {save}"
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Err(head.err(format!(
                "the inventory is executable, so Ansible would run it as a dynamic inventory script, which fleet does not do; {save} (or `chmod -x` it if it is a static file)"
            )));
        }
    }
    Ok(())
}

/// Loads the Ansible inventory at `path`: converted, then validated as fleet TOML. An error
/// the loader finds in the converted text points at the Ansible line it came from.
pub(crate) fn load(path: &Path, text: &str, format: Format) -> Result<Inventory, InventoryError> {
    let dirs = VarsDirs::read(path)?;
    let conv = convert(path, text, format, &dirs)?;
    Inventory::from_toml_str(&conv.text, path).map_err(|e| locate(e, path, &conv))
}

/// `e`, found in the converted text, moved to the Ansible line behind it.
fn locate(e: InventoryError, path: &Path, conv: &Converted) -> InventoryError {
    let InventoryError::Invalid { line, message, .. } = e else {
        return e;
    };
    let message = relocate(&message, path, conv);
    let written = conv
        .text
        .lines()
        .nth(line.wrapping_sub(1))
        .unwrap_or("")
        .trim();
    match conv.lines.get(line.wrapping_sub(1)) {
        Some(info) => info.at.err(format!(
            "{message} (in the TOML converted from Ansible: `{written}` in `{}`)",
            info.table
        )),
        None => InventoryError::Invalid {
            path: path.to_owned(),
            line: 1,
            column: 1,
            message: format!("{message} (in the TOML converted from Ansible)"),
        },
    }
}

/// `message` with every `PATH:LINE:COL` of the converted text (a second place the loader
/// names) replaced by the Ansible place behind that line.
fn relocate(message: &str, path: &Path, conv: &Converted) -> String {
    let prefix = format!("{}:", path.display());
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(&prefix) {
        out.push_str(&rest[..i]);
        let after = &rest[i + prefix.len()..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let l = digits(after);
        let c = after
            .get(l..)
            .and_then(|s| s.strip_prefix(':'))
            .map_or(0, digits);
        let mapped = after[..l]
            .parse::<usize>()
            .ok()
            .filter(|_| c > 0)
            .and_then(|line| conv.lines.get(line.wrapping_sub(1)));
        match mapped {
            Some(info) => {
                out.push_str(&info.at.to_string());
                rest = &after[l + 1 + c..];
            }
            None => {
                out.push_str(&prefix);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}
