//! `fleet copy LOCAL... REMOTE_DIR`: local files (and with `-r` directory trees) onto every
//! selected host. Each file appears whole or not at all (a temporary file beside it, checked
//! by size and SHA-256 on the host, then renamed), and a file the host already has, with the
//! same content, mode and owner, is not sent again unless `--force`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleet_remote_exec::{ExecOptions, LocalFile, PutOptions, RemoteCommand, Session, quote};
use futures::StreamExt;

use super::transfer::{self, FileResult, FileState, HostEnd, TransferRun, Way};
use crate::args::{Cli, CopyArgs};
use crate::exit::ExitStatus;
use crate::signal::Cancel;

/// Files uploaded at once over one host's connection: enough to hide round trips for trees
/// of small files, few enough to leave channels for the rest.
const FILES_AT_ONCE: usize = 4;

/// What goes to every host: directories to create, then files, by path under REMOTE_DIR.
#[derive(Debug, Default)]
struct Plan {
    dest: String,
    dirs: Vec<(String, u32)>,
    files: Vec<(String, LocalFile)>,
    mode: Option<u32>,
    owner: Option<String>,
    force: bool,
    sync: bool,
}

pub(crate) async fn run(cli: &Cli, args: &CopyArgs) -> anyhow::Result<ExitStatus> {
    let (sources, dest) = args.paths.split_at(args.paths.len() - 1);
    let dest = dest[0]
        .to_str()
        .filter(|d| !d.is_empty())
        .context("REMOTE_DIR must be a UTF-8 path")?
        .to_owned();
    let (dirs, files) = walk(sources, args.recursive)?;
    let hashed = futures::future::try_join_all(files.iter().map(|(_, p)| LocalFile::hash(p)))
        .await
        .map_err(|e| anyhow::anyhow!("{}", crate::render::error_chain(&e)))?;
    let plan = Arc::new(Plan {
        dest,
        dirs,
        files: files.into_iter().map(|(rel, _)| rel).zip(hashed).collect(),
        mode: args.mode,
        owner: args.owner.clone(),
        force: args.force,
        sync: !args.no_sync,
    });
    let per_host: u64 = plan.files.iter().map(|(_, f)| f.size).sum();
    let run = TransferRun::new(cli, &args.selection, &args.run, Some(per_host), |_| Ok(()))?;
    let bytes_bar = run.bytes_bar.clone();
    let (reports, cancel, elapsed) = run
        .run(move |session, timeout, cancel| {
            let (plan, bar) = (plan.clone(), bytes_bar.clone());
            async move { copy_host(&session, &plan, timeout, &cancel, bar).await }
        })
        .await;
    transfer::finish(cli, args.json, Way::Copy, &reports, &cancel, elapsed)
}

/// The directories (path under REMOTE_DIR, mode) and files (path, local path) of the
/// sources, parents first and sorted, so every host gets the same plan in the same order.
#[allow(clippy::type_complexity)]
fn walk(
    sources: &[PathBuf],
    recursive: bool,
) -> anyhow::Result<(Vec<(String, u32)>, Vec<(String, PathBuf)>)> {
    use std::os::unix::fs::PermissionsExt;
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(PathBuf, String)> = Vec::new();
    for src in sources {
        // `DIR/.`, as for `cp -r`, and `.`, `..` or `/` (no name of their own): the
        // directory's contents go into REMOTE_DIR itself.
        let contents = {
            use std::os::unix::ffi::OsStrExt;
            let raw = src.as_os_str().as_bytes();
            raw == b"." || raw.ends_with(b"/.")
        };
        let rel = match src.file_name() {
            Some(n) if !contents => utf8(n, src)?.to_owned(),
            _ => String::new(),
        };
        stack.push((src.clone(), rel));
        while let Some((path, rel)) = stack.pop() {
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            if !rel.is_empty() && !seen.insert(rel.clone()) {
                anyhow::bail!("`{rel}` would be copied twice (two sources with the same name)");
            }
            let ft = meta.file_type();
            if ft.is_file() {
                if rel.is_empty() {
                    anyhow::bail!("`{}` names no file", path.display());
                }
                files.push((rel, path));
            } else if ft.is_dir() {
                if !recursive {
                    anyhow::bail!(
                        "`{}` is a directory: copy it with `--recursive`",
                        path.display()
                    );
                }
                if !rel.is_empty() {
                    dirs.push((rel.clone(), meta.permissions().mode() & 0o777));
                }
                let mut children: Vec<PathBuf> = std::fs::read_dir(&path)
                    .with_context(|| format!("cannot read the directory `{}`", path.display()))?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("cannot read the directory `{}`", path.display()))?;
                // Reversed onto the stack, so they come off in name order.
                children.sort();
                for child in children.into_iter().rev() {
                    let name = utf8(child.file_name().unwrap_or_default(), &child)?;
                    let child_rel = if rel.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((child, child_rel));
                }
            } else if ft.is_symlink() {
                anyhow::bail!(
                    "`{}` is a symbolic link: fleet copy sends regular files and directories",
                    path.display()
                );
            } else {
                anyhow::bail!("`{}` is not a regular file or directory", path.display());
            }
        }
    }
    Ok((dirs, files))
}

fn utf8<'a>(name: &'a std::ffi::OsStr, path: &Path) -> anyhow::Result<&'a str> {
    name.to_str().with_context(|| {
        format!(
            "`{}`: file names sent to hosts must be UTF-8",
            path.display()
        )
    })
}

fn remote_path(dest: &str, rel: &str) -> String {
    format!("{}/{rel}", dest.trim_end_matches('/'))
}

async fn copy_host(
    session: &Session,
    plan: &Plan,
    timeout: Duration,
    cancel: &Cancel,
    bar: indicatif::ProgressBar,
) -> HostEnd {
    let opts = ExecOptions {
        timeout,
        max_output: 64 * 1024,
    };
    let abort = &cancel.abort;
    // The destination must be there already, as for `cp`: a typo must not create a tree.
    // Only the directories this creates get the local mode and the owner: one that is
    // there already is the host's. The script goes on stdin, so no number of directories
    // makes the command line too long.
    let mut prep = format!(
        "unset CDPATH; d={}; if [ ! -d \"$d\" ]; then echo \"fleet: $d is not a directory on the host\" >&2; exit 1; fi; cd -P -- \"$d\" || exit 1\n\
         fleet_dir() {{ [ -d \"$1\" ] && return 0; mkdir -- \"$1\" || return 1; {}chmod -- \"$2\" \"$1\"; }}\n",
        quote(&plan.dest),
        match &plan.owner {
            Some(o) => format!("chown -- {} \"$1\" || return 1; ", quote(o)),
            None => String::new(),
        }
    );
    for (rel, mode) in &plan.dirs {
        prep.push_str(&format!("fleet_dir {} {mode:o} || exit 1\n", quote(rel)));
    }
    let prep = RemoteCommand::shell("exec /bin/sh -s").stdin(prep.into_bytes());
    match session.exec(&prep, &opts, abort).await {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return HostEnd::Stopped {
                reason: transfer::reason(&o),
                kind: kind_of(&o.status),
                files: Vec::new(),
            };
        }
        Err(e) => return transfer::stopped(&e, Vec::new()),
    }
    let paths: Vec<String> = plan
        .files
        .iter()
        .map(|(rel, _)| remote_path(&plan.dest, rel))
        .collect();
    let there = if plan.force {
        vec![None; paths.len()]
    } else {
        match session.stat_files(&paths, &opts, abort).await {
            Ok(t) => t,
            Err(e) => return transfer::stopped(&e, Vec::new()),
        }
    };
    let results: Vec<Result<FileResult, Stop>> =
        // By index, not by reference: the item type must not carry a lifetime for the
        // future to be `Send` (a higher-ranked closure signature otherwise).
        futures::stream::iter(paths.into_iter().zip(there).enumerate())
            .map(|(i, (path, there))| {
                let bar = bar.clone();
                let file = &plan.files[i].1;
                async move {
                    let put = PutOptions {
                        mode: plan.mode.unwrap_or(file.mode & 0o777),
                        owner: plan.owner.clone(),
                        sync: plan.sync,
                        env: Vec::new(),
                    };
                    let state = match there {
                        Some(t) if t.is(file, &put) => {
                            bar.dec_length(file.size);
                            FileState::Unchanged
                        }
                        Some(t) if t.sha256 == file.sha256 => {
                            bar.dec_length(file.size);
                            fix(session, &path, &put, &opts, abort).await?
                        }
                        _ => {
                            let sent: Arc<dyn Fn(u64) + Send + Sync> =
                                Arc::new(move |n| bar.inc(n));
                            let o = session
                                .put(file, &path, &put, &opts, abort, Some(sent))
                                .await
                                .map_err(Stop::Transport)?;
                            match &o.status {
                                s if s.success() => FileState::Written,
                                fleet_remote_exec::ExitStatus::TimedOut { .. }
                                | fleet_remote_exec::ExitStatus::Cancelled { .. } => {
                                    return Err(Stop::Ended(
                                        kind_of(&o.status),
                                        format!("{path}: {}", o.status),
                                    ));
                                }
                                _ => FileState::Failed(transfer::reason(&o)),
                            }
                        }
                    };
                    let bytes = if state == FileState::Written {
                        file.size
                    } else {
                        0
                    };
                    Ok(FileResult {
                        source: file.path.display().to_string(),
                        path,
                        state,
                        bytes,
                    })
                }
            })
            .buffered(FILES_AT_ONCE)
            .collect()
            .await;
    // Every file that got through is reported, also when another stopped the host.
    let mut files = Vec::with_capacity(results.len());
    let mut stop = None;
    for r in results {
        match r {
            Ok(f) => files.push(f),
            Err(s) => {
                stop.get_or_insert(s);
            }
        }
    }
    match stop {
        None => HostEnd::Files(files),
        Some(Stop::Transport(e)) => transfer::stopped(&e, files),
        Some(Stop::Ended(kind, reason)) => HostEnd::Stopped {
            reason,
            kind,
            files,
        },
    }
}

/// Why a host's files stopped: the connection failed, or a file ran out of time or was
/// cancelled (the rest would fare no better).
enum Stop {
    Transport(fleet_remote_exec::ExecError),
    Ended(&'static str, String),
}

/// Sets the owner and mode of a file whose content is right already (owner first: `chown`
/// clears setuid and setgid bits).
async fn fix(
    session: &Session,
    path: &str,
    put: &PutOptions,
    opts: &ExecOptions,
    abort: &tokio_util::sync::CancellationToken,
) -> Result<FileState, Stop> {
    let q = quote(path);
    let mut script = String::new();
    if let Some(o) = &put.owner {
        script.push_str(&format!("chown -- {} {q} && ", quote(o)));
    }
    script.push_str(&format!("chmod -- {:o} {q}", put.mode));
    let o = session
        .exec(&RemoteCommand::shell(script), opts, abort)
        .await
        .map_err(Stop::Transport)?;
    Ok(if o.status.success() {
        FileState::Fixed
    } else {
        FileState::Failed(transfer::reason(&o))
    })
}

fn kind_of(status: &fleet_remote_exec::ExitStatus) -> &'static str {
    match status {
        fleet_remote_exec::ExitStatus::TimedOut { .. } => "timeout",
        fleet_remote_exec::ExitStatus::Cancelled { .. } => "cancelled",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_walks_trees_parents_first_in_name_order() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("b/c")).unwrap();
        std::fs::write(root.join("z.txt"), "z").unwrap();
        std::fs::write(root.join("b/c/x"), "x").unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::set_permissions(root.join("b"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let one = dir.path().join("one.conf");
        std::fs::write(&one, "1").unwrap();
        let (dirs, files) = walk(&[root.clone(), one.clone()], true).unwrap();
        let dirs: Vec<&str> = dirs.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(dirs, ["site", "site/b", "site/b/c"]);
        let files: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            files,
            ["site/a.txt", "site/b/c/x", "site/z.txt", "one.conf"]
        );
        let (d, _) = walk(std::slice::from_ref(&root), true).unwrap();
        assert_eq!(d[1], ("site/b".to_owned(), 0o750));
        // Contents of `.` go into REMOTE_DIR itself.
        let (d, f) = walk(&[root.join(".")], true).unwrap();
        assert_eq!(d[0].0, "b");
        assert_eq!(f[0].0, "a.txt");
    }

    #[test]
    fn the_plan_refuses_what_it_cannot_copy_faithfully() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("f"), "f").unwrap();
        let err = |paths: &[PathBuf], r: bool| walk(paths, r).unwrap_err().to_string();
        assert!(
            err(std::slice::from_ref(&sub), false)
                .contains("is a directory: copy it with `--recursive`")
        );
        std::os::unix::fs::symlink("f", sub.join("link")).unwrap();
        assert!(err(std::slice::from_ref(&sub), true).contains("is a symbolic link"));
        std::fs::remove_file(sub.join("link")).unwrap();
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("f"), "g").unwrap();
        assert!(
            err(&[sub.join("f"), other.join("f")], false).contains("`f` would be copied twice")
        );
        assert!(err(&[dir.path().join("missing")], false).contains("cannot read"));
    }

    #[test]
    fn remote_paths_join_once() {
        assert_eq!(remote_path("/srv/x/", "a/b"), "/srv/x/a/b");
        assert_eq!(remote_path("/", "a"), "/a");
        assert_eq!(remote_path("rel", "a"), "rel/a");
    }
}
