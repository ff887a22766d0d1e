//! What the command line and the environment say, resolved once for every command: how
//! chatty to be, whether to colour (a terminal, and `NO_COLOR` unset), and the one
//! cancellation every command that acts on hosts shares with its signal watcher.

use std::io::IsTerminal;
use std::sync::Arc;

use fleet_playbook::Reporter;

use crate::args::Cli;
use crate::render::upgrade::LineReporter;

pub(crate) struct Settings {
    /// `-v`: every step, not only the sites' ends.
    pub(crate) verbose: bool,
    /// `-q`: no progress bar, no notes.
    pub(crate) quiet: bool,
    /// Colour on stderr.
    pub(crate) color_stderr: bool,
    /// Colour on stdout.
    pub(crate) color_stdout: bool,
}

impl Settings {
    pub(crate) fn of(cli: &Cli) -> Settings {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Settings {
            verbose: cli.verbose > 0,
            quiet: cli.quiet,
            color_stderr: !no_color && std::io::stderr().is_terminal(),
            color_stdout: !no_color && std::io::stdout().is_terminal(),
        }
    }

    /// The line-per-event reporter of upgrade-like commands, on stderr.
    pub(crate) fn line_reporter(&self) -> Arc<dyn Reporter> {
        Arc::new(LineReporter::new(self.verbose, self.color_stderr))
    }
}

/// Cancellation for a command that acts on hosts, watching SIGINT, SIGTERM and SIGHUP: the
/// first drains (nothing new starts; `what` tells the operator what happens now), the second
/// aborts running steps. Abort the returned task when the work is done.
pub(crate) fn watched(
    what: &'static str,
) -> (
    fleet_playbook::Cancel,
    crate::signal::Cancel,
    tokio::task::JoinHandle<()>,
) {
    let cancel = fleet_playbook::Cancel::new();
    let shared = crate::signal::Cancel::from_tokens(cancel.drain.clone(), cancel.abort.clone());
    let watcher = shared.watch_signals(move || {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("interrupted: {what}; press Ctrl-C again to abort running steps");
        }
    });
    (cancel, shared, watcher)
}
