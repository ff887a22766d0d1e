//! Procedures: what runs on each group of sites. The engine (`engine.rs`) journals, probes
//! and cancels steps, and runs a group forward or, on failure, back; a procedure says which
//! steps, in which order, what each changed ([`Procedure::Changes`]) and how that is put back
//! ([`Procedure::undo`]). The built-in CiviCRM upgrade and a user's TOML playbook are the two
//! there are; [`AnyProcedure`] is the one a run chose.

use std::future::Future;

use crate::engine::{HostRun, StepResult};
use crate::outcome::SiteOutcome;
use crate::playbook::Playbook;
use crate::vocab::{BuiltinStep, Scope, StepName};
use crate::work::Work;

pub(crate) mod civicrm;
mod custom;
pub(crate) mod migrate;

pub(crate) use civicrm::Civicrm;

/// What a group has changed so far, as the engine needs to know it. The procedure keeps the
/// details (which modules, which dumps) for its own undo chain.
pub(crate) trait Changed: Default + Send {
    /// Whether a site went down or code moved: a failure then ends in a rollback (or a
    /// hold), else the group is reported untouched.
    fn any(&self) -> bool;
    /// Whether this run holds `site` down (in maintenance).
    fn holds_down(&self, site: &str) -> bool;
    /// Past the point of no easy return (a database upgrade began): from there a first
    /// interrupt lets the group go forward instead of turning it back.
    fn past_no_return(&self) -> bool;
}

/// A procedure: its steps forward over one group of sites, and the undo chain that puts
/// back what they changed. Its steps go through [`HostRun`]'s journaled `exec`, and each
/// re-reads the state it changed (the probe) before the next one runs.
pub(crate) trait Procedure: Sync {
    /// What a group changed, filled in as the steps go (before each side effect).
    type Changes: Changed;

    /// Read-only checks of group `g` once its sites are locked, before anything is uploaded
    /// or taken down: a failure leaves the group untouched.
    fn preflight(
        &self,
        _h: &HostRun<'_>,
        _g: &[Work<'_>],
    ) -> impl Future<Output = StepResult> + Send {
        std::future::ready(Ok(()))
    }

    /// Runs the steps in order on group `g`; the failing step's name on error.
    fn forward(
        &self,
        h: &HostRun<'_>,
        g: &[Work<'_>],
        tarball: &str,
        ch: &mut Self::Changes,
    ) -> impl Future<Output = StepResult> + Send;

    /// Puts back what `ch` says was changed, newest first, each source verified before it
    /// is used; sites come back up only once everything else is back.
    fn undo(
        &self,
        h: &HostRun<'_>,
        g: &[Work<'_>],
        ch: &mut Self::Changes,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// A site's outcome once the steps went through on it.
    fn success(&self, w: &Work<'_>, target: &str) -> SiteOutcome;
}

/// The procedure a run chose.
#[derive(Debug, Clone)]
pub(crate) enum AnyProcedure {
    /// CiviCRM on Drupal 7, upgraded in place to the tarball's version.
    Civicrm,
    /// A user's playbook.
    Playbook(Playbook),
    /// A `fleet migrate` phase, with the run's manifest.
    Migrate(std::sync::Arc<migrate::manifest::Manifest>, migrate::Phase),
}

/// One built-in step, as data: its name, what it acts on, and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepDef {
    /// Its name in the journal.
    pub step: BuiltinStep,
    /// What it runs on, once per each.
    pub scope: Scope,
    /// What it does, and how it is checked.
    pub what: &'static str,
}

/// One step as `fleet upgrade --show-steps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// Its name in the journal.
    pub name: StepName,
    /// What it runs on, once per each.
    pub scope: Scope,
    /// What it does.
    pub what: String,
}

/// The steps a run with `playbook` (or the built-in procedure) goes through, in order.
pub fn procedure_steps(playbook: Option<&Playbook>) -> Vec<StepInfo> {
    let info = |d: &StepDef| StepInfo {
        name: d.step.into(),
        scope: d.scope,
        what: d.what.to_owned(),
    };
    let Some(pb) = playbook else {
        return civicrm::STEPS.iter().map(info).collect();
    };
    let builtin = |step: BuiltinStep| civicrm::STEPS.iter().find(|s| s.step == step).map(info);
    let mut out: Vec<StepInfo> = [BuiltinStep::Preflight, BuiltinStep::Lock]
        .into_iter()
        .filter_map(builtin)
        .collect();
    if pb.needs_tarball() {
        out.extend(builtin(BuiltinStep::Upload));
    }
    for step in &pb.steps {
        use crate::playbook::StepKind;
        let (scope, what) = match &step.kind {
            StepKind::Maintenance => (
                Scope::Site,
                "record the prior maintenance state, maintenance on; back as it was after the last step".to_owned(),
            ),
            StepKind::Backup => (
                Scope::Database,
                "dump every database of the group, verified complete; record path and sha256".to_owned(),
            ),
            StepKind::CodeSwap => (
                Scope::Codebase,
                "move the CiviCRM code out, unpack the release tarball in its place; verify".to_owned(),
            ),
            StepKind::Verify => (Scope::Site, "cv status: CiviCRM at the target, no pending upgrade".to_owned()),
            StepKind::Shell(sh) => (
                if sh.per_host { Scope::Host } else { Scope::Site },
                format!(
                    "{}{}{}{}",
                    sh.run.lines().next().unwrap_or(""),
                    match (&sh.become_user, sh.as_web_user) {
                        (Some(u), _) => format!(" (as {u})"),
                        (None, true) => " (as the web user)".to_owned(),
                        (None, false) => String::new(),
                    },
                    if sh.verify.is_some() { "; verified" } else { "" },
                    if sh.undo.is_some() { "; undone on failure" } else { "" },
                ),
            ),
        };
        out.push(StepInfo {
            name: StepName::Playbook(step.name.clone()),
            scope,
            what,
        });
    }
    out.extend(builtin(BuiltinStep::Unlock));
    out
}

impl AnyProcedure {
    /// The procedure a run's options name.
    pub(crate) fn of(playbook: Option<&Playbook>) -> AnyProcedure {
        playbook.map_or(AnyProcedure::Civicrm, |p| AnyProcedure::Playbook(p.clone()))
    }

    /// Its name in the journal (`runs.procedure`).
    pub(crate) fn name(&self) -> String {
        match self {
            AnyProcedure::Civicrm => "civicrm-d7".to_owned(),
            AnyProcedure::Playbook(p) => format!("playbook:{}", p.name),
            AnyProcedure::Migrate(..) => "migrate".to_owned(),
        }
    }

    /// Whether it installs the release tarball (and so compares versions and uploads it).
    pub(crate) fn needs_tarball(&self) -> bool {
        match self {
            AnyProcedure::Civicrm => true,
            AnyProcedure::Playbook(p) => p.needs_tarball(),
            // Its tarballs are the manifest's, uploaded by its own step.
            AnyProcedure::Migrate(..) => false,
        }
    }
}
