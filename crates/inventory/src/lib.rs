//! The `fleet` inventory: hosts, groups, ranges and variables from a TOML file, and the
//! selectors that pick hosts from it.
//!
//! # Overview
//!
//! [`Inventory::load`] parses and validates a file into [`Host`]s (every setting resolved:
//! defaults < host) and [`Group`]s (nested through `children`; variables merge defaults <
//! groups, parents before children < host). Errors name the file, line and column of the
//! offending key. [`Selector`]s (`-l/--limit` on the command line) choose hosts; see
//! [`select`](crate::Selector) for the grammar. [`compact_names`] prints host lists back in
//! range form. An Ansible inventory (INI or YAML, with the `group_vars/` and `host_vars/`
//! beside it) loads too: [`detect_format`] tells it apart and [`ansible_to_toml`] converts it
//! to this format first, its errors pointing at the Ansible lines.
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//! use fleet_inventory::{Inventory, Selector};
//!
//! let inv = Inventory::from_toml_str(
//!     r#"
//!     [defaults]
//!     user = "deploy"
//!     [groups.web]
//!     hosts = ["web[01:03]"]
//!     "#,
//!     Path::new("inventory.toml"),
//! )?;
//! let web = inv.select(&[Selector::parse("web,!web02")?])?;
//! let names: Vec<&str> = web.iter().map(|h| h.name.as_str()).collect();
//! assert_eq!(names, ["web01", "web03"]);
//! assert_eq!(fleet_inventory::compact_names(&names), "web[01,03]");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod ansible;
mod compact;
mod error;
mod model;
#[cfg(test)]
mod props;
mod range;
mod raw;
mod rollout;
mod select;
mod uri;

pub use ansible::{Format, VarsDirs, ansible_to_toml, ansible_to_toml_with, detect_format};
pub use compact::compact_names;
pub use error::{InventoryError, SelectError};
pub use model::{
    Become, BecomeMethod, DbUpgradeTool, Group, Host, HostKeyPolicy, Inventory, JumpHop,
    SecretSource, Site, Source, SshConfigChoice, SshOptions,
};
pub use rollout::{Amount, Batches, Rollout};
pub use select::Selector;
