//! Which way each step of a run went: forward through the procedure, or back (the undo
//! chain after a failure, a recovery, a rollback). The journal records steps, not their
//! direction; a step's name and what came before it on its host tell.

use std::collections::HashMap;

use fleet_playbook::{BuiltinStep, StepName, StepRow, StepState};

/// Which way a step went: the procedure forward, or its way back after a failure (the undo
/// chain, a recovery, a rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Forward,
    WayBack,
}

impl Phase {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::WayBack => "way-back",
        }
    }
}

/// What a step says about the way it is going.
enum Role {
    /// Only ever run to put something back.
    Undo,
    /// Run going forward and on the way back alike (modules on, maintenance back, unlock):
    /// it goes the way its host was going.
    Either,
    /// Only ever run going forward: the host goes forward again (its next group of sites).
    Forward,
}

fn role(step: &StepName) -> Role {
    use BuiltinStep as B;
    match step {
        StepName::Playbook(name) if name.ends_with("-undo") => Role::Undo,
        StepName::Playbook(_) => Role::Forward,
        StepName::Builtin(
            B::RestoreCode
            | B::RestoreDb
            | B::ClearTemplates
            | B::VerifyCodeBackup
            | B::VerifyDump
            | B::SafetyDump
            | B::RecoverProbe
            | B::Recover
            | B::Rollback
            | B::SwitchBack
            | B::PreviewUnlink,
        ) => Role::Undo,
        StepName::Builtin(
            B::EnableModules
            | B::MaintenanceRestore
            | B::Unlock
            | B::DatabaseDrop
            | B::ReleaseRemove,
        ) => Role::Either,
        StepName::Builtin(_) => Role::Forward,
    }
}

/// The phase of every step of `steps` (in journal order), host by host: an undo step, and
/// what follows a failed step, is the way back until a step that only goes forward.
pub(super) fn phases(steps: &[StepRow]) -> Vec<Phase> {
    let mut back: HashMap<&str, bool> = HashMap::new();
    steps
        .iter()
        .map(|s| {
            let going_back = back.entry(s.host.as_str()).or_default();
            let phase = match role(&s.step) {
                Role::Undo => {
                    *going_back = true;
                    Phase::WayBack
                }
                Role::Either if *going_back => Phase::WayBack,
                Role::Either => Phase::Forward,
                Role::Forward => {
                    *going_back = false;
                    Phase::Forward
                }
            };
            if s.state == StepState::Failed {
                *going_back = true;
            }
            phase
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use fleet_playbook::Unit;

    use super::*;

    use crate::render::html::tests::bar_step as step;

    #[test]
    fn what_follows_a_failure_is_the_way_back_until_the_host_goes_forward_again() {
        use StepState::{Done, Failed};
        let db = || Unit::database("civi");
        let site = || Unit::site("s1");
        let steps = [
            step(1, "h1", site(), "maintenance-on", Done),
            step(2, "h1", db(), "upgrade-db", Failed),
            step(3, "h2", site(), "enable-modules", Done),
            step(4, "h1", db(), "restore-db", Done),
            step(5, "h1", site(), "enable-modules", Done),
            step(6, "h1", site(), "unlock", Done),
            // The host's next group of sites goes forward again.
            step(7, "h1", Unit::site("s2"), "maintenance-on", Done),
            step(8, "h1", Unit::site("s2"), "maintenance-restore", Done),
            step(9, "h1", Unit::site("s2"), "migrate-undo", Done),
            step(10, "h1", Unit::site("s2"), "migrate-verify", Done),
        ];
        use Phase::{Forward as F, WayBack as B};
        assert_eq!(phases(&steps), [F, F, F, B, B, B, F, F, B, F]);
    }
}
