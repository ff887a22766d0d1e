//! The arguments of `fleet migrate` and its phases.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::Selection;
use super::parse::*;

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    #[command(subcommand)]
    pub(crate) command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Say what a migration would do on each site, with read-only commands
    Plan(MigratePlanArgs),
    /// Build each site's new release beside the old one: core and contrib unpacked, its own
    /// database, installed, linked as `preview`; the old site is not touched
    Build(MigrateBuildArgs),
    /// Import the old sites' data into the new ones a build run made (again: with `--update`),
    /// then the QA gates; the old sites are only read
    Import(MigrateImportArgs),
    /// Switch the QA-passed sites of a run to their new release, in batches: the old site
    /// into maintenance, a last import, `current` switched, the new site up and probed (a
    /// failed probe switches back); again after a crash, every site ends on one release
    Release(MigrateReleaseArgs),
    /// Switch released sites back to their old site (kept by the release): the new site into
    /// maintenance, `current` back, the old site's maintenance as before
    Rollback(MigrateRollbackArgs),
    /// Remove what a run's sites no longer need once their last change is older than AGE: a
    /// released site's old database and code, an unreleased site's new release and database;
    /// each dumped or archived first, what `current` serves never
    Cleanup(MigrateCleanupArgs),
}

#[derive(Debug, Args)]
pub(crate) struct MigrateCleanupArgs {
    /// The run id (a unique prefix is enough)
    pub(crate) run: String,

    /// Only sites whose last change in the run is older than this (e.g. `14d`; `0s`: all)
    #[arg(long, value_parser = parse_age, value_name = "AGE")]
    pub(crate) older_than: Duration,

    /// Only this site (`site` or `host/site`; repeatable)
    #[arg(long = "site", value_name = "SITE")]
    pub(crate) sites: Vec<String>,

    /// Hosts at once
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Bound on each remote step (a dump or an archive of a large site takes a while)
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,

    /// Say what would be removed and kept, with read-only commands; change nothing
    #[arg(long)]
    pub(crate) plan: bool,

    /// JSON events on stdout (one object per line)
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateRollbackArgs {
    /// The run id (a unique prefix is enough)
    pub(crate) run: String,

    /// Only this site (`site` or `host/site`; repeatable)
    #[arg(long = "site", value_name = "SITE")]
    pub(crate) sites: Vec<String>,

    /// Hosts at once
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Bound on each remote step
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,

    /// JSON events on stdout (one object per line)
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateReleaseArgs {
    /// The run id (a unique prefix is enough)
    pub(crate) run: String,

    #[command(flatten)]
    pub(crate) selection: Selection,

    /// Batch sizes, canary first, e.g. `1,10%,100%` (default: the inventory's `[rollout]`,
    /// else `1,100%`)
    #[arg(long, value_name = "SPEC")]
    pub(crate) batches: Option<fleet_inventory::Batches>,

    /// Failed hosts tolerated per batch and for the whole run: `N` or `N%` (default 0)
    #[arg(long, value_name = "N|N%")]
    pub(crate) max_fail: Option<fleet_inventory::Amount>,

    /// Hosts to release on at once inside a batch
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Bound on each remote step
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,

    /// Say which sites would be released in which batch, from the run's journal; change
    /// nothing
    #[arg(long)]
    pub(crate) plan: bool,

    /// JSON events on stdout (one object per line)
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateImportArgs {
    /// The build's run id (a unique prefix is enough)
    pub(crate) run: String,

    #[command(flatten)]
    pub(crate) selection: Selection,

    /// Hosts to import on at once
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Bound on each remote step
    #[arg(long, default_value = "2h", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,

    /// Say which sites would be imported, from the run's journal; change nothing
    #[arg(long)]
    pub(crate) plan: bool,

    /// JSON events on stdout (one object per line)
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateBuildArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    /// The migration manifest (see `fleet migrate plan`)
    #[arg(long, value_name = "FILE")]
    pub(crate) manifest: PathBuf,

    /// Hosts to build on at once
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Bound on each remote step
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,

    /// JSON events on stdout (one object per line)
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MigratePlanArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    /// The migration manifest: the new major's core and contrib tarballs, the new site's
    /// install, the import and its checks
    #[arg(long, value_name = "FILE")]
    pub(crate) manifest: PathBuf,

    /// Hosts to read at once
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Bound on each host's discovery
    #[arg(long, default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,

    /// One JSON object per site on stdout
    #[arg(long)]
    pub(crate) json: bool,
}
