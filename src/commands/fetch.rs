//! `fleet fetch REMOTE_PATH... LOCAL_DIR`: a file from every selected host into
//! `LOCAL_DIR/<host>/<file name>`, each checked against the size and SHA-256 the host
//! reports before it takes its name.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use fleet_remote_exec::ExecOptions;

use super::transfer::{self, FileResult, FileState, HostEnd, TransferRun, Way};
use crate::args::{Cli, FetchArgs};
use crate::exit::ExitStatus;

pub(crate) async fn run(cli: &Cli, args: &FetchArgs) -> anyhow::Result<ExitStatus> {
    let (sources, dir) = args.paths.split_at(args.paths.len() - 1);
    let dir = dir[0].clone();
    // Local names come from the operator's paths, never from a host.
    let mut files: Vec<(String, String)> = Vec::new();
    for src in sources {
        let remote = src
            .to_str()
            .context("REMOTE_PATH must be a UTF-8 path")?
            .to_owned();
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .with_context(|| format!("`{remote}` names no file"))?
            .to_owned();
        if files.iter().any(|(_, n)| *n == name) {
            anyhow::bail!("two of the files to fetch are called `{name}`");
        }
        files.push((remote, name));
    }
    let run = TransferRun::new(cli, &args.selection, &args.run, None, |h| {
        anyhow::ensure!(
            super::is_file_name(&h.name),
            "host name `{}` cannot name a directory in `{}`",
            h.name.escape_debug(),
            dir.display()
        );
        Ok(())
    })?;
    for job in &run.jobs {
        let d = dir.join(&job.target.name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create `{}`", d.display()))?;
    }
    let files = Arc::new(files);
    let bytes_bar = run.bytes_bar.clone();
    let (reports, cancel, elapsed) = run
        .run(move |session, timeout, cancel| {
            let (files, bar) = (files.clone(), bytes_bar.clone());
            let host_dir: PathBuf = dir.join(session.name());
            async move {
                let opts = ExecOptions {
                    timeout,
                    max_output: 64 * 1024,
                };
                let mut done = Vec::with_capacity(files.len());
                for (remote, name) in files.iter() {
                    let local = host_dir.join(name);
                    let bar = bar.clone();
                    let received: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |n| bar.inc(n));
                    let r = session
                        .download(remote, &local, &opts, &cancel.abort, Some(received))
                        .await;
                    let path = local.display().to_string();
                    match r {
                        Ok(Ok(d)) => done.push(FileResult {
                            source: remote.clone(),
                            path,
                            state: FileState::Written,
                            bytes: d.size,
                        }),
                        Ok(Err(why)) => done.push(FileResult {
                            source: remote.clone(),
                            path,
                            state: FileState::Failed(why),
                            bytes: 0,
                        }),
                        Err(e) => return transfer::stopped(&e, done),
                    }
                }
                HostEnd::Files(done)
            }
        })
        .await;
    transfer::finish(cli, args.json, Way::Fetch, &reports, &cancel, elapsed)
}
