//! Terminal prompts for secrets, only when a terminal is there to answer.

use std::io::IsTerminal;
use std::path::Path;

use fleet_remote_exec::Prompter;

/// Asks for key passphrases on the controlling terminal; without one it answers `None`, so
/// the host fails with a clear reason instead of hanging.
pub(crate) struct TtyPrompter {
    progress: indicatif::ProgressBar,
}

impl TtyPrompter {
    pub(crate) fn new(progress: indicatif::ProgressBar) -> Self {
        Self { progress }
    }
}

pub(crate) fn have_tty() -> bool {
    std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_ok()
}

impl Prompter for TtyPrompter {
    fn passphrase(&self, key: &Path) -> Option<String> {
        if !have_tty() {
            return None;
        }
        self.progress.suspend(|| {
            rpassword::prompt_password(format!("passphrase for `{}`: ", key.display())).ok()
        })
    }
}

/// Asks `question [y/N]` on stderr and reads the answer from stdin; only `y`/`yes` is yes.
pub(crate) fn confirm(err: &mut dyn std::io::Write, question: &str) -> std::io::Result<bool> {
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES"))
}
