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
    /// Interrupted by Ctrl-C or SIGTERM.
    Interrupted,
}

impl From<ExitStatus> for ExitCode {
    fn from(s: ExitStatus) -> Self {
        ExitCode::from(match s {
            ExitStatus::Success => 0,
            ExitStatus::HostsFailed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Interrupted => 130,
        })
    }
}

/// Prints `err` once, as `error: ...` with its causes, and returns the usage exit code.
#[allow(clippy::print_stderr)]
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitStatus::Usage.into()
}
