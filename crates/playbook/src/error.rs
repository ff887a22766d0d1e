//! Errors that stop a run before or outside any one host. One host's failure is a
//! [`crate::SiteOutcome`], not an error.

use std::path::{Path, PathBuf};

/// Why a run could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// The journal could not be opened, read or written. The cause is part of the message
    /// (not a separate source): a journal failure is often only logged, and must say why.
    #[error("run journal `{}`: {cause}", path.display())]
    Journal {
        /// The journal path.
        path: PathBuf,
        /// The cause.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The release tarball is unusable.
    #[error("release tarball `{}`: {reason}", path.display())]
    Tarball {
        /// The tarball.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Nothing to do or bad input.
    #[error("{0}")]
    Plan(String),
    /// No such run in the journal.
    #[error("no run `{0}` in the journal")]
    UnknownRun(String),
}

/// `origin:LINE:COL: msg` for byte `offset` of `text` (columns count characters).
pub(crate) fn located(origin: &Path, text: &str, offset: usize, msg: &str) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{}:{line}:{col}: {msg}", origin.display())
}

impl PlaybookError {
    pub(crate) fn journal(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        PlaybookError::Journal {
            path: path.to_owned(),
            cause: Box::new(e),
        }
    }
}
