//! End-to-end tests of the `fleet` binary against real sshd hosts started by fleet-lab.

mod access; // log in as a person, become root: sudo/su with and without passwords, password logins
mod ansible; // Ansible INI and YAML inventories: the same hosts as their TOML conversion, reaching the lab
mod bastion; // hosts behind a bastion: reached only through it, one connection, one error when it is dead
mod cli; // shell completions and man pages
mod copy; // fleet copy and fetch: per-host delivery, modes, owners, idempotence, SHA-256 checks, no partial files
mod exec; // fleet exec: folding, JSON, out-dir, exit codes, unreachable hosts, timeouts
mod faults; // the fault suite (make test-faults, not make test): seeded controller kills, failing hosts and networks, hostile input, load
mod hosts; // fleet hosts and inventory/selector errors
mod interrupt; // Ctrl-C: drain, then abort
mod journal; // the journal failing mid-run: steps refused before their side effect, recover after
mod known_hosts; // host keys decided as OpenSSH decides them, with ssh itself the oracle, over every known_hosts form
mod l10n; // fleet upgrade --l10n, and the dry runs of the database upgrade (plan, preflight, after the unpack)
mod migrate; // fleet migrate: build, import (CiviCRM), release, rollback, cleanup, the plans
mod report; // fleet runs show --html: a real run's report rendered by headless Chromium, checked in its DOM
mod resume; // fleet resume: the run's own options, Ctrl-C during it
mod safety; // data safety: verified restores, rollback guards, hostile host values, crashed runs
mod ssh_config; // hosts completed from the OpenSSH client config: precedence, --explain, refusals
mod stream; // fleet exec --stream and --script: whole prefixed lines as they come, scripts that leave nothing
mod upgrade; // fleet upgrade against lab sites with fake drush/cv: batches, budgets, rollback, plan

use std::path::Path;
use std::process::{Command, Output};

/// A `fleet` command with the lab's inventory, no progress bar and no developer agent, and
/// its HOME and state dir beside the inventory (a temporary dir), never the developer's.
pub(crate) fn fleet(inventory: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleet"));
    let home = inventory
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("controller-home");
    std::fs::create_dir_all(&home).expect("controller HOME for the test");
    c.arg("-i").arg(inventory);
    c.env("HOME", &home)
        .env("XDG_STATE_HOME", home.join(".local/state"));
    c.env_remove("SSH_AUTH_SOCK")
        .env_remove("FLEET_INVENTORY")
        .env_remove("FLEET_STATE_DIR")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("FLEET_NO_PROGRESS", "1");
    c
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run fleet")
}

/// Both streams, for an assertion's message.
pub(crate) fn both(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o))
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Replaces what changes from run to run (temp dirs, addresses, ports, timings).
pub(crate) fn redact(text: &str, lab_dir: &Path) -> String {
    let text = text.replace(&lab_dir.display().to_string(), "[LAB]");
    let re = |pattern: &str, with: &str, t: &str| {
        regex_lite::Regex::new(pattern)
            .expect("regex")
            .replace_all(t, with)
            .into_owned()
    };
    let text = re(r"127\.\d+\.\d+\.\d+:\d+", "[ADDR]", &text);
    re(r"in \d+\.\d+s", "in [ELAPSED]", &text)
}
