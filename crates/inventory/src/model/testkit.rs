//! Helpers for the loading tests: an inventory parsed from text as if read from
//! `/etc/fleet/inv.toml`, and an assertion on where and why one fails to load.

use std::path::Path;

use crate::{Inventory, InventoryError};

pub(super) fn load(text: &str) -> Result<Inventory, InventoryError> {
    Inventory::from_toml_str(text, Path::new("/etc/fleet/inv.toml"))
}

#[track_caller]
pub(super) fn error_at(text: &str, line: usize, column: usize, needle: &str) {
    let e = load(text).expect_err("must fail");
    let msg = e.to_string();
    assert_eq!(e.location(), Some((line, column)), "{msg}");
    assert!(
        msg.starts_with(&format!("/etc/fleet/inv.toml:{line}:{column}: ")),
        "{msg}"
    );
    assert!(msg.contains(needle), "{msg} lacks {needle}");
    assert!(!msg.contains('\n'), "{msg}");
}
