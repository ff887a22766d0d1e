//! Inventory and selector errors.

use std::path::PathBuf;

/// Why an inventory could not be loaded. Every content error names the file, line and column.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("cannot read inventory `{}`", path.display())]
    Read {
        /// The inventory path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid inventory.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The inventory path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong, naming the offending key or value.
        message: String,
    },
}

impl InventoryError {
    /// Returns the 1-based (line, column) of a content error.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            InventoryError::Invalid { line, column, .. } => Some((*line, *column)),
            InventoryError::Read { .. } => None,
        }
    }
}

/// Why a host selection failed. The selector text is shown with control characters escaped,
/// so that an error stays one line and a terminal never receives them raw.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The selector text itself is malformed.
    #[error("bad selector `{}`: {}", printable(selector), printable(reason))]
    Syntax {
        /// The selector.
        selector: String,
        /// What is wrong.
        reason: String,
    },
    /// An `@FILE` could not be read.
    #[error("cannot read host list `{}`: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error text.
        reason: String,
    },
    /// The inventory has no host at all, so any selection would be an empty run.
    #[error("inventory `{}` defines no hosts", .0.display())]
    NoHosts(PathBuf),
    /// A term matched no host or group.
    #[error("no host or group matches `{}`", printable(.0))]
    NoMatch(String),
    /// The whole selection is empty.
    #[error("selection `{}` matches no host", printable(.0))]
    Empty(String),
}

/// `s` with control characters escaped, so an error quoting a value stays on one line.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A character as an error message names it: in backticks, escaped when it is invisible.
pub(crate) fn shown(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '`' => "a backtick".into(),
        c if c.is_control() || c.is_whitespace() => format!("`{}`", c.escape_default()),
        c => format!("`{c}`"),
    }
}
