//! The inventory text being loaded: where a byte offset is as file, line and column, and
//! the [`InventoryError::Invalid`] anchored there.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::InventoryError;

/// The text being loaded and the file it came from. Every check of the file's content is a
/// method on it (in this module's siblings), so each error names the file, line and column
/// of the value it refuses.
pub(super) struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    /// Directory that relative paths in the file are resolved against.
    pub(super) base: PathBuf,
}

impl<'a> Ctx<'a> {
    /// Wraps `text`, read from `origin`; relative paths resolve against `origin`'s directory
    /// (`.` when it names none).
    pub(super) fn new(origin: &'a Path, text: &'a str) -> Self {
        let base = origin
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        Ctx {
            path: origin,
            text,
            base,
        }
    }

    /// An [`InventoryError::Invalid`] at the start of `span`.
    pub(super) fn err(&self, span: Range<usize>, message: impl Into<String>) -> InventoryError {
        let (line, column) = line_col(self.text, span.start);
        InventoryError::Invalid {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// `file:line:column` of `span`, for an error that names a second place.
    pub(super) fn at(&self, span: Range<usize>) -> String {
        let (line, column) = line_col(self.text, span.start);
        format!("{}:{line}:{column}", self.path.display())
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
