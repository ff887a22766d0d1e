//! Process exit codes that scripts can rely on.

use std::process::ExitCode;

/// How `fleet` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Every selected host succeeded.
    Success,
    /// At least one host failed, timed out or was unreachable.
    HostsFailed,
    /// Bad usage, inventory or configuration.
    Usage,
    /// fleet itself failed: its journal could not be read or written, or an internal error.
    /// Not the operator's input: the same command may work once the cause is fixed, and a
    /// run it stopped may have sites to recover.
    Internal,
    /// Interrupted by Ctrl-C or SIGTERM.
    Interrupted,
}

impl ExitStatus {
    /// The code for a command that ended in `err`: internal when any cause is a journal
    /// failure, else usage (bad arguments, inventory, playbook, tarball, unknown run).
    pub(crate) fn of_error(err: &anyhow::Error) -> ExitStatus {
        let journal = err.chain().any(|c| {
            matches!(
                c.downcast_ref::<fleet_playbook::PlaybookError>(),
                Some(fleet_playbook::PlaybookError::Journal { .. })
            )
        });
        if journal {
            ExitStatus::Internal
        } else {
            ExitStatus::Usage
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::HostsFailed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Internal => 3,
            ExitStatus::Interrupted => 130,
        })
    }
}

/// Prints `err` once, as `error: ...` with its causes, and returns the internal exit code
/// (the process could not even start its runtime).
#[allow(clippy::print_stderr)]
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitStatus::Internal.into()
}
