//! Steps of a crashed run that are still running on a host.
//!
//! When the controller dies (SIGKILL, power loss, a lost network), sshd closes the channel
//! but does not kill the command: a `cv upgrade:db` goes on for minutes. Undoing it then
//! (restoring the code under it, loading a dump while it writes) leaves a site with old code
//! on a newer database. So before `fleet recover`/`resume`/`rollback` touches a host, it looks
//! for processes of the run there and waits for them to end, killing their process groups
//! only once the wait is over.
//!
//! Every journaled step exports `FLEET_RUN_STEP=<run>/<host>/<step id>` (see
//! `HostRun::exec`), inherited by everything the step starts; the check below reads
//! `/proc/*/environ` for it. The check itself does not carry the variable, so it never finds
//! itself. A process that dropped its environment (`sudo` resets it) is still found through
//! its parent shell, which keeps the variable and waits for it.

use std::time::Duration;

use fleet_remote_exec::{ExecOptions, RemoteCommand, quote};

use crate::remote::Remote;

use crate::context::Ctx;
use crate::event::Event;

/// Lists the pids of `run`'s steps on `host` (`none`, or `found <pids>`); with `wait`, then
/// waits that long for them to end and kills the process groups of those still there
/// (`gone <pids>` or `killed <pids>`).
fn script(run: &str, host: &str, wait: Option<Duration>) -> String {
    format!(
        r#"tag={tag}; me=$$
inflight() {{ for e in /proc/[0-9]*/environ; do p=${{e#/proc/}}; p=${{p%/environ}}; [ "$p" = "$me" ] && continue; tr '\000' '\n' <"$e" 2>/dev/null | grep -q "$tag" && printf '%s ' "$p"; done; }}
p=$(inflight); if [ -z "$p" ]; then echo none; exit 0; fi
echo "found $p"
{list_only}
i=0; while [ -n "$(inflight)" ] && [ "$i" -lt {secs} ]; do sleep 1; i=$((i + 1)); done
left=$(inflight); if [ -z "$left" ]; then echo "gone $p"; exit 0; fi
for x in $left; do g=$(sed 's/.*) //' /proc/$x/stat 2>/dev/null | cut -d' ' -f3); [ -n "$g" ] && kill -TERM -- "-$g" 2>/dev/null; done
sleep 2
for x in $(inflight); do g=$(sed 's/.*) //' /proc/$x/stat 2>/dev/null | cut -d' ' -f3); [ -n "$g" ] && kill -KILL -- "-$g" 2>/dev/null; done
sleep 1
still=$(inflight); if [ -n "$still" ]; then echo "survived $still"; exit 0; fi
echo "killed $left""#,
        // A regex anchored on the whole prefix, with the run id and host name escaped: a
        // `.` in a host name must not match another host sharing /proc (the lab's hosts do).
        tag = quote(&format!(
            "^FLEET_RUN_STEP={}/",
            format!("{run}/{host}")
                .chars()
                .flat_map(|c| match c {
                    '.' | '[' | ']' | '*' | '^' | '$' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect::<String>()
        )),
        list_only = if wait.is_none() { "exit 0" } else { "" },
        secs = wait.unwrap_or_default().as_secs().max(1),
    )
}

/// Makes sure no step of run `run` is still running on the host before anything is undone
/// or taken over: waits for them (saying so), and kills what is still there after the step
/// timeout.
///
/// # Errors
///
/// When the check cannot run; the caller then must not touch the host.
pub(crate) async fn settle(
    ctx: &Ctx,
    session: &dyn Remote,
    host: &str,
    run: &str,
) -> Result<(), String> {
    // The wait is bounded by the step timeout, less the time the kill itself takes.
    let wait = ctx
        .settings
        .step_timeout
        .saturating_sub(Duration::from_secs(10))
        .max(Duration::from_secs(1));
    let opts = ExecOptions {
        timeout: ctx.settings.step_timeout,
        max_output: 64 * 1024,
    };
    // Announce the wait before it starts: ask first without waiting.
    let probe = RemoteCommand::shell(script(run, host, None));
    let first = exec(session, &probe, &opts, ctx).await?;
    if first.trim() == "none" {
        return Ok(());
    }
    let pids = first
        .lines()
        .find_map(|l| l.strip_prefix("found "))
        .unwrap_or("")
        .trim()
        .to_owned();
    ctx.reporter.on_event(&Event::Notice {
        host: host.to_owned(),
        message: format!(
            "a step of run {run} is still running on the host (pid {pids}); waiting up to {} for it to end before anything is undone",
            humanize(wait)
        ),
    });
    let out = exec(
        session,
        &RemoteCommand::shell(script(run, host, Some(wait))),
        &opts,
        ctx,
    )
    .await?;
    let last = out.lines().last().unwrap_or("").trim().to_owned();
    if let Some(p) = last.strip_prefix("survived ") {
        return Err(format!(
            "a step of run {run} is still running on the host (pid {}) even after it was killed; nothing was touched",
            p.trim()
        ));
    }
    let message = if let Some(p) = last.strip_prefix("killed ") {
        format!(
            "the step (pid {}) was still running after {}: its process group was killed",
            p.trim(),
            humanize(wait)
        )
    } else {
        format!("the step (pid {pids}) has ended")
    };
    ctx.reporter.on_event(&Event::Notice {
        host: host.to_owned(),
        message,
    });
    Ok(())
}

/// The pids of run `run`'s steps still running on the host, if any (read-only: `--plan`).
///
/// # Errors
///
/// When the check cannot run.
pub(crate) async fn running(
    ctx: &Ctx,
    session: &dyn Remote,
    host: &str,
    run: &str,
) -> Result<Option<String>, String> {
    let opts = ExecOptions {
        timeout: ctx.settings.step_timeout,
        max_output: 64 * 1024,
    };
    let out = exec(
        session,
        &RemoteCommand::shell(script(run, host, None)),
        &opts,
        ctx,
    )
    .await?;
    Ok(out
        .lines()
        .find_map(|l| l.strip_prefix("found "))
        .map(|p| p.trim().to_owned()))
}

async fn exec(
    session: &dyn Remote,
    cmd: &RemoteCommand,
    opts: &ExecOptions,
    ctx: &Ctx,
) -> Result<String, String> {
    match session.exec(cmd, opts, &ctx.cancel.abort).await {
        Ok(o) if o.status.success() => Ok(o.stdout.to_string_lossy()),
        Ok(o) => Err(format!(
            "cannot check for steps still running: {}: {}",
            o.status,
            crate::engine::last_line(&o.stderr.to_string_lossy())
        )),
        Err(e) => Err(format!(
            "cannot check for steps still running: {}",
            crate::engine::error_text(&e)
        )),
    }
}

fn humanize(d: Duration) -> String {
    crate::journal::format_age(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check runs for real on this machine: a process tagged like a step is found and
    /// waited for; an untagged one is not.
    #[test]
    fn finds_tagged_processes_and_waits_for_them() {
        let mut tagged = std::process::Command::new("sleep")
            .arg("3")
            .env("FLEET_RUN_STEP", "R1/h01/7")
            .spawn()
            .unwrap();
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .env("FLEET_RUN_STEP", "R2/h01/7")
            .spawn()
            .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script("R1", "h01", Some(Duration::from_secs(20))))
            .env_remove("FLEET_RUN_STEP")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("found {} ", tagged.id())), "{text}");
        assert!(text.contains("gone"), "{text}");
        assert!(tagged.try_wait().unwrap().is_some());
        assert!(
            other.try_wait().unwrap().is_none(),
            "another run's step was touched"
        );
        // A `.` in a host name is not a wildcard: host `h01.7` is not host `h01x7`.
        let mut lookalike = std::process::Command::new("sleep")
            .arg("30")
            .env("FLEET_RUN_STEP", "R3/h01x7/9")
            .spawn()
            .unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script("R3", "h01.7", None))
            .env_remove("FLEET_RUN_STEP")
            .output()
            .unwrap();
        let _ = lookalike.kill();
        let _ = lookalike.wait();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "none");
        let _ = other.kill();
        let _ = other.wait();
    }
}
