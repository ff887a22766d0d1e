//! What a run reports as it goes. The binary renders these (progress bars, timestamped lines,
//! JSON); tests record them.

use crate::outcome::SiteOutcome;

/// A progress event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The run is about to start: batch sizes and failure budgets.
    RunStarted {
        /// Run id (empty for `--plan`).
        run: String,
        /// Hosts in the run.
        hosts: usize,
        /// Sites in the run.
        sites: usize,
        /// Size of every batch, in order.
        batches: Vec<usize>,
        /// Failed hosts tolerated in each batch.
        batch_budget: Vec<usize>,
        /// Failed hosts tolerated over the whole run.
        run_budget: usize,
    },
    /// A batch starts.
    BatchStarted {
        /// 0-based index (0 = canary).
        index: usize,
        /// Its hosts.
        hosts: Vec<String>,
    },
    /// A step starts on a unit of a host.
    StepStarted {
        /// Host.
        host: String,
        /// Unit (`site:x`, `database:y`, `codebase:/p`, `host`).
        unit: String,
        /// Step name.
        step: String,
    },
    /// A step ended.
    StepFinished {
        /// Host.
        host: String,
        /// Unit.
        unit: String,
        /// Step name.
        step: String,
        /// Whether it succeeded (including its verification).
        ok: bool,
        /// What was verified, or why it failed.
        detail: String,
    },
    /// A site reached its end state.
    SiteFinished {
        /// Host.
        host: String,
        /// Site.
        site: String,
        /// How it ended.
        outcome: SiteOutcome,
    },
    /// A batch ended.
    BatchFinished {
        /// Index.
        index: usize,
        /// Hosts that failed in it.
        failed: usize,
        /// Failed hosts it tolerated.
        allowed: usize,
    },
    /// `--bake`: the batch's sites were checked again after the wait.
    Baked {
        /// Batch index.
        index: usize,
        /// What no longer verified (`host/site: why`); empty when all is well.
        problems: Vec<String>,
    },
    /// Something the operator must know that is not a step's result: waiting for a step of a
    /// crashed run still running on a host, a process killed, a safety dump taken.
    Notice {
        /// Host.
        host: String,
        /// What happened, one line.
        message: String,
    },
    /// No further batch will start.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// Receives events. Called from many tasks at once; implementations must be quick.
pub trait Reporter: Send + Sync {
    /// Handles one event.
    fn on_event(&self, event: &Event);
}

/// Asked before each batch after the first (`--pause`).
pub trait Gate: Send + Sync {
    /// Returns whether batch `index` may start.
    fn proceed(&self, index: usize, hosts: &[String]) -> bool;
}
