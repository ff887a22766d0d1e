//! Procedures: what runs on each group of sites. The engine (`engine.rs`) journals, probes
//! and cancels steps; a procedure says which steps, in which order, and how each is undone.
//! The built-in CiviCRM upgrade and a user's TOML playbook are the two there are.

use crate::engine::{Changes, HostRun, StepError};
use crate::outcome::SiteOutcome;
use crate::playbook::Playbook;
use crate::work::Work;

pub(crate) mod civicrm;
mod custom;

/// What a run does on each group of sites.
#[derive(Debug, Clone)]
pub(crate) enum Procedure {
    /// CiviCRM on Drupal 7, upgraded in place to the tarball's version.
    Civicrm,
    /// A user's playbook.
    Playbook(Playbook),
}

/// One step as `fleet upgrade --show-steps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// Its name in the journal.
    pub name: String,
    /// What it runs on: `host`, `site`, `codebase`, `database`.
    pub scope: String,
    /// What it does.
    pub what: String,
}

/// The steps a run with `playbook` (or the built-in procedure) goes through, in order.
pub fn procedure_steps(playbook: Option<&Playbook>) -> Vec<StepInfo> {
    let info = |(name, scope, what): &(&str, &str, &str)| StepInfo {
        name: (*name).to_owned(),
        scope: (*scope).to_owned(),
        what: (*what).to_owned(),
    };
    let Some(pb) = playbook else {
        return civicrm::STEPS.iter().map(info).collect();
    };
    let builtin = |name: &str| civicrm::STEPS.iter().find(|s| s.0 == name).map(info);
    let mut out: Vec<StepInfo> = ["preflight", "lock"]
        .into_iter()
        .filter_map(builtin)
        .collect();
    if pb.needs_tarball() {
        out.extend(builtin("upload"));
    }
    for step in &pb.steps {
        use crate::playbook::StepKind;
        let (scope, what) = match &step.kind {
            StepKind::Maintenance => (
                "site",
                "record the prior maintenance state, maintenance on; back as it was after the last step".to_owned(),
            ),
            StepKind::Backup => (
                "database",
                "dump every database of the group, verified complete; record path and sha256".to_owned(),
            ),
            StepKind::CodeSwap => (
                "codebase",
                "move the CiviCRM code out, unpack the release tarball in its place; verify".to_owned(),
            ),
            StepKind::Verify => ("site", "cv status: CiviCRM at the target, no pending upgrade".to_owned()),
            StepKind::Shell(sh) => (
                if sh.per_host { "host" } else { "site" },
                format!(
                    "{}{}{}{}",
                    sh.run.lines().next().unwrap_or(""),
                    if sh.as_web_user { " (as the web user)" } else { "" },
                    if sh.verify.is_some() { "; verified" } else { "" },
                    if sh.undo.is_some() { "; undone on failure" } else { "" },
                ),
            ),
        };
        out.push(StepInfo {
            name: step.name.clone(),
            scope: scope.to_owned(),
            what,
        });
    }
    out.extend(builtin("unlock"));
    out
}

impl Procedure {
    /// The procedure a run's options name.
    pub(crate) fn of(playbook: Option<&Playbook>) -> Procedure {
        playbook.map_or(Procedure::Civicrm, |p| Procedure::Playbook(p.clone()))
    }

    /// Its name in the journal (`runs.procedure`).
    pub(crate) fn name(&self) -> String {
        match self {
            Procedure::Civicrm => "civicrm-d7".to_owned(),
            Procedure::Playbook(p) => format!("playbook:{}", p.name),
        }
    }

    /// Whether it installs the release tarball (and so compares versions and uploads it).
    pub(crate) fn needs_tarball(&self) -> bool {
        match self {
            Procedure::Civicrm => true,
            Procedure::Playbook(p) => p.needs_tarball(),
        }
    }

    /// Runs it forward on group `g`; what it changed is in `ch` for the undo chain.
    pub(crate) async fn forward(
        &self,
        h: &HostRun<'_>,
        g: &[Work<'_>],
        tarball: &str,
        ch: &mut Changes,
    ) -> Result<(), (String, StepError)> {
        match self {
            Procedure::Civicrm => h.forward(g, tarball, ch).await,
            Procedure::Playbook(pb) => h.forward_playbook(g, pb, tarball, ch).await,
        }
    }

    /// A site's outcome once the procedure went through on it.
    pub(crate) fn success(&self, w: &Work<'_>, target: &str) -> SiteOutcome {
        match self {
            Procedure::Playbook(pb) if !pb.needs_tarball() => SiteOutcome::Completed {
                playbook: pb.name.clone(),
            },
            _ => SiteOutcome::Upgraded {
                from: w.facts.code_version.clone(),
                to: target.to_owned(),
                in_maintenance: w.facts.maintenance == "1",
            },
        }
    }
}
