//! The fault suite's kill switch: the controller dies by SIGKILL at an exact journal write, so
//! that a sweep over write numbers hits every kind of moment a crash can come (before a side
//! effect, after it, between a host's steps, inside the journal's own commit) and finds the
//! same moment again from its number.
//!
//! Off unless `FLEET_FAULT_KILL_AT` is set: `N` kills right after the N-th write of this
//! process has committed, `N:in` kills inside it (the statement ran, the commit did not).
//! `FLEET_FAULT_TRACE=FILE` appends one line per write to FILE, which is how a sweep learns how
//! many writes a whole run makes.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// When to die, and where to count.
#[derive(Debug, Default)]
pub(super) struct KillSwitch {
    at: Option<(u64, bool)>,
    trace: Option<PathBuf>,
    writes: AtomicU64,
}

/// Where a write stands when the switch is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Moment {
    /// The statement ran in an open transaction; nothing is committed.
    Inside,
    /// The write is committed.
    Committed,
}

impl KillSwitch {
    /// The switch as the environment sets it (off when it does not, or says nothing valid).
    pub(super) fn from_env() -> KillSwitch {
        let at = std::env::var("FLEET_FAULT_KILL_AT")
            .ok()
            .and_then(|v| parse(&v));
        let trace = std::env::var_os("FLEET_FAULT_TRACE").map(PathBuf::from);
        KillSwitch {
            at,
            trace,
            writes: AtomicU64::new(0),
        }
    }

    /// Whether the next write must run in an explicit transaction (so that the switch can
    /// kill between its statement and its commit).
    pub(super) fn wants_inside(&self) -> bool {
        matches!(self.at, Some((n, true)) if self.writes.load(Ordering::SeqCst) + 1 == n)
    }

    /// Counts a write at `moment` (once per write, at [`Moment::Committed`]) and dies if this
    /// is the write and moment asked for.
    pub(super) fn at(&self, moment: Moment) {
        let n = match moment {
            Moment::Inside => self.writes.load(Ordering::SeqCst) + 1,
            Moment::Committed => {
                let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(path) = &self.trace
                    && let Ok(mut f) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                {
                    let _ = writeln!(f, "{n}");
                }
                n
            }
        };
        if self.at == Some((n, moment == Moment::Inside)) {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
            // SIGKILL cannot be caught; should it not be delivered at once, nothing of this
            // process may run on.
            std::process::abort();
        }
    }
}

fn parse(v: &str) -> Option<(u64, bool)> {
    let (n, inside) = match v.trim().strip_suffix(":in") {
        Some(n) => (n, true),
        None => (v.trim(), false),
    };
    n.parse().ok().filter(|n| *n > 0).map(|n| (n, inside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_write_number_and_the_inside_mark() {
        assert_eq!(parse("12"), Some((12, false)));
        assert_eq!(parse(" 3:in "), Some((3, true)));
        assert_eq!(parse("0"), None);
        assert_eq!(parse("x"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn counts_committed_writes_only() {
        let k = KillSwitch {
            at: Some((3, true)),
            ..KillSwitch::default()
        };
        assert!(!k.wants_inside());
        k.at(Moment::Committed);
        k.at(Moment::Inside);
        k.at(Moment::Committed);
        assert!(
            k.wants_inside(),
            "the third write is the one to kill inside"
        );
    }
}
