//! Command-line arguments (raw, as clap parses them; resolved in `commands`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

mod migrate;
mod parse;

pub(crate) use migrate::*;
use parse::*;

/// Run commands and staged application upgrades across many servers over SSH.
#[derive(Debug, Parser)]
#[command(name = "fleet", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    /// Inventory file
    #[arg(
        short = 'i',
        long,
        global = true,
        env = "FLEET_INVENTORY",
        default_value = "inventory.toml",
        value_name = "PATH"
    )]
    pub(crate) inventory: PathBuf,

    /// More diagnostics on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    /// Where the run journal lives (default: `$XDG_STATE_HOME/fleet`, else
    /// `~/.local/state/fleet`)
    #[arg(long, global = true, env = "FLEET_STATE_DIR", value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,

    /// OpenSSH client config for the hosts (`none`: none; default: the inventory's
    /// `ssh_config`, else `~/.ssh/config`)
    #[arg(short = 'F', long, global = true, value_name = "FILE")]
    pub(crate) ssh_config: Option<PathBuf>,

    /// Ask once for the SSH login password of hosts whose inventory names no
    /// `password_file`/`password_env` (tried after keys)
    #[arg(long, global = true)]
    pub(crate) ask_pass: bool,

    /// Ask once for the become password of hosts with `become` whose inventory names no
    /// `become_password_file`/`become_password_env`
    #[arg(long, global = true)]
    pub(crate) ask_become_pass: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List the selected hosts of the inventory
    Hosts(HostsArgs),
    /// Run a shell command on every selected host, in parallel
    Exec(ExecArgs),
    /// Copy local files to every selected host, atomically and checked by SHA-256
    Copy(CopyArgs),
    /// Fetch files from every selected host into LOCAL_DIR/<host>/
    Fetch(FetchArgs),
    /// Upgrade CiviCRM on Drupal 7 sites in rolling batches, with maintenance gating
    Upgrade(UpgradeArgs),
    /// List recorded runs, or show one
    Runs(RunsArgs),
    /// Continue an interrupted or crashed run where each site stopped
    Resume(ResumeArgs),
    /// Put a run's sites back on their old code and database, from that run's backups
    Rollback(RollbackArgs),
    /// Find sites left in maintenance or mid-step by any run and bring them to a safe end
    Recover(RecoverArgs),
    /// Major Drupal upgrades: a new site built beside each old one, then switched in
    Migrate(MigrateArgs),
    /// Inventory tools: `convert` an Ansible inventory to fleet's TOML
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Print a completion script for a shell (`fleet completions bash > /etc/bash_completion.d/fleet`)
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into DIR
    Man {
        /// Write `fleet.1`, `fleet-exec.1`, ... here instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InventoryCommand {
    /// Print the TOML inventory equivalent to an Ansible INI or YAML inventory (with its
    /// group_vars/ and host_vars/), as `fleet -i FILE` reads it
    Convert {
        /// The Ansible inventory (default: `-i`)
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    /// Run id (a unique prefix is enough)
    pub(crate) run: String,

    /// Bound on each remote step (default: the one an upgrade run started with; 30 min for a
    /// migrate run)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Option<Duration>,

    /// Failed hosts tolerated per batch and for the whole run: `N` or `N%` (default 0)
    #[arg(long, value_name = "N|N%")]
    pub(crate) max_fail: Option<fleet_inventory::Amount>,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// Run id (a unique prefix is enough)
    pub(crate) run: String,

    /// Only this site (`site` or `host/site`; repeatable); sites sharing its codebase or
    /// database go with it
    #[arg(long = "site", value_name = "SITE")]
    pub(crate) sites: Vec<String>,

    /// Verify the backups on the hosts and print what would be restored, with the age of
    /// each dump; change nothing
    #[arg(long)]
    pub(crate) plan: bool,

    /// Do it without asking (needed without a terminal)
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    /// Also roll back sites a later run changed, or that are no longer at this run's target
    #[arg(long)]
    pub(crate) force: bool,

    /// Hosts rolled back at once
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Bound on each remote step
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct RecoverArgs {
    /// Act without asking
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,

    /// Bound on each remote step (default: the one each run started with)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct UpgradeArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    /// Release tarball (`civicrm-X.Y.Z-drupal.tar.gz`), uploaded once per host
    #[arg(long, value_name = "FILE")]
    pub(crate) tarball: Option<PathBuf>,

    /// Localization tarball of the same version (`civicrm-X.Y.Z-l10n.tar.gz`), uploaded with
    /// the release and unpacked over the new code before it goes into place
    #[arg(long, value_name = "FILE", requires = "tarball")]
    pub(crate) l10n: Option<PathBuf>,

    /// Upgrade sites whose installed translations (`l10n/<locale>/`) the run does not bring
    /// (without `--l10n`, all of them) instead of refusing them; the old ones stay in the
    /// code backup
    #[arg(long)]
    pub(crate) drop_translations: bool,

    /// Run this TOML playbook (shell steps and built-in steps) instead of the built-in
    /// CiviCRM procedure
    #[arg(long, value_name = "FILE")]
    pub(crate) playbook: Option<PathBuf>,

    /// Batch sizes, canary first, e.g. `1,10%,50%,100%` (default: the inventory's
    /// `[rollout]`, else `1,100%`)
    #[arg(long, value_name = "SPEC")]
    pub(crate) batches: Option<fleet_inventory::Batches>,

    /// Failed hosts tolerated per batch and for the whole run: `N` or `N%` (default 0)
    #[arg(long, value_name = "N|N%")]
    pub(crate) max_fail: Option<fleet_inventory::Amount>,

    /// Do not count unreachable hosts as failed
    #[arg(long)]
    pub(crate) unreachable_ok: bool,

    /// At most N hosts in flight that share a value of inventory var KEY (repeatable)
    #[arg(long, value_name = "KEY=N", value_parser = parse_key_n)]
    pub(crate) max_per: Vec<(String, usize)>,

    /// Hosts in flight at once inside a batch
    #[arg(short = 'f', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// After a failed step: `rollback` (restore code and DB, maintenance back as it was) or
    /// `hold` (restore, but keep the site in maintenance)
    #[arg(long, value_enum, default_value = "rollback")]
    pub(crate) on_failure: OnFailureArg,

    /// Bound on each remote step
    #[arg(long, default_value = "30m", value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) step_timeout: Duration,

    /// Ask before each batch after the canary
    #[arg(long)]
    pub(crate) pause: bool,

    /// After each batch but the last, wait this long, then re-verify its sites before the
    /// next batch (a failed re-verify counts against the budget)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) bake: Option<Duration>,

    /// Take over site locks held by this run (a run on another controller that died)
    #[arg(long, value_name = "RUN")]
    pub(crate) break_lock: Option<String>,

    /// Print every site, its versions, its batch and the steps it would run; change nothing
    #[arg(long)]
    pub(crate) plan: bool,

    /// Print the procedure's steps and exit
    #[arg(long)]
    pub(crate) show_steps: bool,

    /// JSON events on stdout, one per line
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnFailureArg {
    Rollback,
    Hold,
}

#[derive(Debug, Args)]
pub(crate) struct RunsArgs {
    #[command(subcommand)]
    pub(crate) command: Option<RunsCommand>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// Per site: step reached, status, backup paths, time
    Show {
        /// Run id (a unique prefix is enough)
        run: String,
        /// Write the run as one self-contained HTML page to FILE instead (`-`: stdout)
        #[arg(long, value_name = "FILE")]
        html: Option<std::path::PathBuf>,
    },
}

fn parse_key_n(s: &str) -> Result<(String, usize), String> {
    let (k, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=N"))?;
    let n: usize = n.parse().map_err(|_| format!("`{n}` is not a number"))?;
    if k.is_empty() || n == 0 {
        return Err(format!("`{s}`: KEY must be set and N at least 1"));
    }
    Ok((k.to_owned(), n))
}

/// Host selection, shared by every subcommand.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// Select hosts: name, group, glob (`web*`), range (`web[01:05]`), `a,b` union,
    /// `&grp` intersection, `!grp` exclusion, `@FILE` (repeatable)
    #[arg(short = 'l', long = "limit", value_name = "SELECTOR")]
    pub(crate) limit: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct HostsArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    /// Every connection setting of one host, and where it came from (inventory, ssh_config
    /// file:line, fleet's default)
    #[arg(long, value_name = "HOST")]
    pub(crate) explain: Option<String>,

    /// One JSON object per host on stdout
    #[arg(long)]
    pub(crate) json: bool,
}

/// How a command that acts on every selected host runs: how many at once, and its time
/// limits.
#[derive(Debug, Args)]
pub(crate) struct FanOutArgs {
    /// Hosts to run at once
    #[arg(short = 'f', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) forks: u32,

    /// Time limit of each command per host (for copy and fetch, of each file), e.g. `30s`,
    /// `10m` (default: the inventory's `command_timeout`)
    #[arg(short = 't', long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) timeout: Option<Duration>,

    /// Connect and authentication timeout (default: the inventory's `connect_timeout`)
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub(crate) connect_timeout: Option<Duration>,

    /// Handshakes in flight at once [default: adaptive, up to 1024: it grows while the CPU has
    /// headroom and handshakes stay fast (a real network), and shrinks when they queue for the
    /// CPU (loopback, a small controller)]. Hosts past it wait their turn before their
    /// connect timeout starts; commands already running are not limited
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub(crate) max_handshakes: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    #[command(flatten)]
    pub(crate) run: FanOutArgs,

    /// Permissions of every file copied, in octal (`0644`) [default: the local file's]
    #[arg(long, value_parser = parse_mode, value_name = "MODE")]
    pub(crate) mode: Option<u32>,

    /// Give every file and directory copied to USER or USER:GROUP (needs a session user
    /// allowed to, e.g. `become = true`)
    #[arg(long, value_parser = parse_owner, value_name = "USER[:GROUP]")]
    pub(crate) owner: Option<String>,

    /// Copy directories and everything under them
    #[arg(short = 'r', long)]
    pub(crate) recursive: bool,

    /// Send every file even where the host has it already (same SHA-256, mode and owner)
    #[arg(long)]
    pub(crate) force: bool,

    /// Do not flush each file to the host's disk before it takes its name (faster; a host
    /// that crashes right after may be left with an empty or partial file under the name)
    #[arg(long)]
    pub(crate) no_sync: bool,

    /// One JSON object per host on stdout instead of folded text
    #[arg(long)]
    pub(crate) json: bool,

    /// Local files (and with `-r` directories), then the directory on the hosts to copy
    /// them into (it must exist)
    #[arg(required = true, num_args = 2.., value_name = "LOCAL... REMOTE_DIR")]
    pub(crate) paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    #[command(flatten)]
    pub(crate) run: FanOutArgs,

    /// One JSON object per host on stdout instead of folded text
    #[arg(long)]
    pub(crate) json: bool,

    /// Files on the hosts, then the local directory to save them under, as
    /// `LOCAL_DIR/<host>/<file name>` (created when missing)
    #[arg(required = true, num_args = 2.., value_name = "REMOTE_PATH... LOCAL_DIR")]
    pub(crate) paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    #[command(flatten)]
    pub(crate) selection: Selection,

    #[command(flatten)]
    pub(crate) run: FanOutArgs,

    /// One JSON object per host on stdout instead of folded text (with `--stream`, one per
    /// line as it arrives, then one per host)
    #[arg(long)]
    pub(crate) json: bool,

    /// Print every line as it arrives, as `host: line` (stderr as `host! line`, on stderr),
    /// then the hosts' statuses, folded [default when one host is selected and stdout is a
    /// terminal]
    #[arg(long, conflicts_with = "fold")]
    pub(crate) stream: bool,

    /// Fold the output when every host is done, even for one host on a terminal
    #[arg(long)]
    pub(crate) fold: bool,

    /// Also write `DIR/<host>.stdout`, `DIR/<host>.stderr` and `DIR/summary.json`
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: Option<PathBuf>,

    /// Bytes of stdout and of stderr kept per host (head and tail; the middle is dropped)
    #[arg(long, default_value = "1MiB", value_parser = parse_size, value_name = "SIZE")]
    pub(crate) max_output: usize,

    /// Run this local script on every host instead of a command, with the words after `--`
    /// as its arguments; the interpreter comes from its `#!` line (`/bin/sh` without one).
    /// It is sent over the connection and nothing of it is left on the host
    #[arg(long, value_name = "FILE")]
    pub(crate) script: Option<PathBuf>,

    /// The command, run by each host's login shell (put fleet options before it); with
    /// `--script`, the script's arguments
    // No `allow_hyphen_values`: with it, a mistyped option (`--timout 5s`) became the start
    // of the command and was run on every host. See `ExecArgs::remote_command` for options
    // after the command.
    #[arg(
        required_unless_present = "script",
        trailing_var_arg = true,
        value_name = "CMD"
    )]
    pub(crate) command: Vec<String>,
}

impl ExecArgs {
    /// Returns the command line for the hosts' shells, or why it is refused.
    ///
    /// The command starts after `--` or at the first word that is not an option, and clap
    /// gives it every word after that. Without `--`, a word that is one of fleet's own exec
    /// options (`-l`, `--limit`, `--limit=web`, `-t`, `--json`, ..., exactly, so `ls -la` is
    /// still `ls -la`) is refused: `fleet exec 'echo RAN' -l h01` is someone limiting the run,
    /// and sending `-l h01` to the hosts would run it on every host instead. After `--`,
    /// everything goes to the hosts verbatim.
    ///
    /// `argv` is the process's command line: clap does not say whether `--` was given, but
    /// the command is always its last words, so the word before them tells.
    pub(crate) fn remote_command(&self, argv: &[OsString]) -> Result<String, String> {
        if !after_dashes(argv, &self.command) {
            let (shorts, longs) = exec_options();
            let is_option = |w: &str| match w.strip_prefix("--") {
                Some(long) => longs
                    .iter()
                    .any(|l| l == long.split('=').next().unwrap_or("")),
                None => w.strip_prefix('-').is_some_and(|short| {
                    let mut c = short.chars();
                    c.next().is_some_and(|c| shorts.contains(&c))
                        && matches!(c.next(), None | Some('='))
                }),
            };
            // A command's first word is the command; a script's arguments are all arguments.
            let skip = usize::from(self.script.is_none());
            if let Some(word) = self.command.iter().skip(skip).find(|w| is_option(w)) {
                return Err(format!(
                    "`{word}` after the command: put fleet options before the command, or use `--` before the command to send it all to the hosts"
                ));
            }
        }
        Ok(self.command.join(" "))
    }
}

/// Whether `command` (the last words of `argv`) came right after a `--`. An option's value
/// cannot be a bare `--` (clap refuses it), so a `--` just before them is the separator.
fn after_dashes(argv: &[OsString], command: &[String]) -> bool {
    let n = command.len();
    argv.len() > n
        && argv[argv.len() - n..]
            .iter()
            .zip(command)
            .all(|(a, c)| a == c.as_str())
        && argv[argv.len() - n - 1] == "--"
}

/// The short and long names of every option `fleet exec` takes, global ones and `--help`
/// included, read from the parser so a new option is covered without a list to maintain.
fn exec_options() -> (Vec<char>, Vec<String>) {
    let mut cli = Cli::command();
    cli.build();
    let (mut shorts, mut longs) = (Vec::new(), Vec::new());
    if let Some(exec) = cli.find_subcommand("exec") {
        for a in exec.get_arguments().filter(|a| !a.is_positional()) {
            shorts.extend(a.get_short_and_visible_aliases().unwrap_or_default());
            shorts.extend(a.get_all_short_aliases().unwrap_or_default());
            longs.extend(
                a.get_long_and_visible_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_owned),
            );
            longs.extend(
                a.get_all_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_owned),
            );
        }
    }
    (shorts, longs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("10"), Ok(10));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    /// Parses `argv` and returns the remote command line, or the error (clap's or ours).
    fn exec_command(argv: &[&str]) -> Result<String, String> {
        let cli = Cli::try_parse_from(argv).map_err(|e| format!("clap: {:?}", e.kind()))?;
        let Command::Exec(e) = cli.command else {
            panic!("not exec")
        };
        let raw: Vec<OsString> = argv.iter().map(OsString::from).collect();
        e.remote_command(&raw)
    }

    #[track_caller]
    fn runs(argv: &[&str], expected: &str) {
        assert_eq!(exec_command(argv).as_deref(), Ok(expected), "{argv:?}");
    }

    #[track_caller]
    fn refused(argv: &[&str], needle: &str) {
        let e = exec_command(argv).expect_err(&format!("{argv:?} must be refused"));
        assert!(e.contains(needle), "{argv:?}: {e} lacks {needle}");
    }

    /// Fleet options after the command are refused rather than sent to every host; after
    /// `--`, every word is the command's; unknown options before the command are errors.
    #[test]
    fn exec_command_words_table() {
        // The command's own words, options included, after its first word.
        runs(&["fleet", "exec", "ls", "-la"], "ls -la");
        runs(&["fleet", "exec", "--", "ls", "-l"], "ls -l");
        runs(
            &["fleet", "exec", "echo", "--limitless", "-lx"],
            "echo --limitless -lx",
        );
        runs(&["fleet", "exec", "df", "-k", "--", "/"], "df -k -- /");
        runs(&["fleet", "exec", "echo", "a", "--"], "echo a --");
        // Fleet options before the command, then `--` and anything at all.
        runs(
            &[
                "fleet", "exec", "-l", "web", "-t", "5s", "--", "echo", "-l", "h01", "--json", "--",
            ],
            "echo -l h01 --json --",
        );
        runs(
            &["fleet", "-i", "x.toml", "exec", "--json", "--", "--", "x"],
            "-- x",
        );
        runs(&["fleet", "exec", "--limit=web", "uptime"], "uptime");
        runs(&["fleet", "exec", "echo RAN; b"], "echo RAN; b");

        // Fleet's own options after the command, in every spelling clap would accept.
        let hint = "after the command: put fleet options before the command, or use `--` before the command";
        refused(
            &["fleet", "exec", "echo RAN", "-l", "h01"],
            &format!("`-l` {hint}"),
        );
        refused(
            &["fleet", "exec", "echo", "RAN", "--limit", "h01"],
            "`--limit` after",
        );
        refused(
            &["fleet", "exec", "echo", "--limit=h01"],
            "`--limit=h01` after",
        );
        refused(&["fleet", "exec", "echo", "-l=h01"], "`-l=h01` after");
        for opt in [
            "-t",
            "--timeout",
            "-f",
            "--forks",
            "--json",
            "--out-dir",
            "--connect-timeout",
            "--max-handshakes",
            "--ask-pass",
            "--max-output",
            "-h",
            "--help",
            // Global options too.
            "-i",
            "--inventory",
            "-v",
            "--verbose",
            "-q",
            "--quiet",
            "--state-dir",
        ] {
            refused(
                &["fleet", "exec", "sleep", "1", opt, "x"],
                &format!("`{opt}` after"),
            );
        }
        // A `--` after the command's first word is the command's, not the separator.
        refused(&["fleet", "exec", "ls", "--", "-l"], "`-l` after");

        // Unknown options before the command are clap's usage errors, never a command.
        refused(
            &["fleet", "exec", "--timout", "5s", "--", "cmd"],
            "UnknownArgument",
        );
        refused(&["fleet", "exec", "-x", "cmd"], "UnknownArgument");
        refused(&["fleet", "exec", "--"], "MissingRequiredArgument");
    }

    #[test]
    fn exec_takes_command_after_dashes() {
        let cli = Cli::try_parse_from(["fleet", "exec", "-l", "web", "--", "ls", "-la"]).unwrap();
        let Command::Exec(e) = cli.command else {
            panic!()
        };
        assert_eq!(e.command, ["ls", "-la"]);
        assert_eq!(e.selection.limit, ["web"]);
    }
}
