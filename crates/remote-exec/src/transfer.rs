//! Files to and from a host over the session's own channels: uploads that appear whole or not
//! at all and are checked by size and SHA-256 on the host before they take the final name,
//! the state of files already there (to skip identical ones), and downloads checked the same
//! way before they take their local name.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::command::quote;
use crate::error::ExecError;
use crate::output::{ExecOutput, Sink, Stream};
use crate::session::{ExecOptions, Input, Session};

/// Shell functions every transfer script starts with: a SHA-256 of stdin with whatever tool
/// the host has (given a size past 1 MiB, OpenSSL's first: it uses the CPU's SHA
/// instructions, several times faster than coreutils' `sha256sum`, which starts faster), and
/// a file's mode and owner with GNU's or BSD's `stat`.
const SHELL_HELPERS: &str = "unset CDPATH; \
     fleet_sha256() { \
     if [ \"${1:-0}\" -gt 1048576 ] && command -v openssl >/dev/null 2>&1; then fleet_h='openssl dgst -sha256 -r'; \
     elif command -v sha256sum >/dev/null 2>&1; then fleet_h=sha256sum; \
     elif command -v shasum >/dev/null 2>&1; then fleet_h='shasum -a 256'; \
     elif command -v openssl >/dev/null 2>&1; then fleet_h='openssl dgst -sha256 -r'; \
     else echo 'fleet: the host has no SHA-256 tool (sha256sum, shasum or openssl)' >&2; return 1; \
     fi; $fleet_h | cut -c1-64; }; \
     fleet_stat() { stat -c '%a %U:%G %u:%g' -- \"$1\" 2>/dev/null || stat -f '%Lp %Su:%Sg %u:%g' -- \"$1\"; }; \
     fleet_ids() { stat -c '%u:%g' -- \"$1\" 2>/dev/null || stat -f '%u:%g' -- \"$1\"; }; ";

/// Paths asked about in one [`Session::stat_files`] command: each is hashed, so a batch must
/// fit one command's time limit.
const STAT_BATCH: usize = 64;

/// A local file to upload: its size and SHA-256, read once however many hosts get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes when it was hashed.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Its permission bits (`& 0o7777`).
    pub mode: u32,
}

impl LocalFile {
    /// Reads `path` to its end and hashes it, on a blocking thread.
    ///
    /// # Errors
    ///
    /// [`ExecError::LocalFile`] when it cannot be read, or is not a regular file.
    pub async fn hash(path: &Path) -> Result<LocalFile, ExecError> {
        let path = path.to_owned();
        let p = path.clone();
        tokio::task::spawn_blocking(move || hash_blocking(&p))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .map_err(|source| ExecError::LocalFile { path, source })
    }
}

fn hash_blocking(path: &Path) -> std::io::Result<LocalFile> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok(LocalFile {
        path: path.to_owned(),
        size,
        sha256: hex(&h.finalize()),
        mode: meta.permissions().mode() & 0o7777,
    })
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// What tells a changed file: its size and modification time.
type Stamp = (u64, SystemTime);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (
        meta.len(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// The hashes of the local files sessions upload by path ([`Session::upload`]), kept while
/// the file's size and modification time stay the same, so a release tarball is read once
/// for the whole fleet and not once per host.
#[derive(Default)]
pub(crate) struct Digests {
    known: Mutex<HashMap<PathBuf, Arc<Cell>>>,
}

/// One path's hash, with the size and time the file had just before it was read.
type Cell = tokio::sync::OnceCell<Result<(Stamp, LocalFile), String>>;

impl Digests {
    pub(crate) async fn of(&self, path: &Path) -> Result<LocalFile, ExecError> {
        let local_err = |source| ExecError::LocalFile {
            path: path.to_owned(),
            source,
        };
        // A file that keeps changing while it is read is refused after a few tries.
        for _ in 0..3 {
            let cell = self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(path.to_owned())
                .or_default()
                .clone();
            let got = cell
                .get_or_init(|| async {
                    let before = tokio::fs::metadata(path).await.map_err(|e| e.to_string())?;
                    let file = LocalFile::hash(path).await.map_err(|e| match e {
                        ExecError::LocalFile { source, .. } => source.to_string(),
                        other => other.to_string(),
                    })?;
                    Ok((stamp(&before), file))
                })
                .await
                .clone();
            let now = stamp(&tokio::fs::metadata(path).await.map_err(local_err)?);
            match got {
                Ok((then, file)) if then == now && file.size == now.0 => return Ok(file),
                Err(why) => return Err(local_err(std::io::Error::other(why))),
                // Changed since it was hashed: hash it again.
                Ok(_) => {
                    self.known
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(path);
                }
            }
        }
        Err(local_err(std::io::Error::other(
            "it kept changing while it was read",
        )))
    }
}

/// How an uploaded file is left on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// Its permission bits.
    pub mode: u32,
    /// `user` or `user:group` to give it to (the session's user must be allowed to);
    /// without it a file replaced keeps its owner and group where the session's user may
    /// give them.
    pub owner: Option<String>,
    /// Flush the file to the host's disk before it takes its name, so a crash of the host
    /// right after cannot leave an empty or partial file under the name.
    pub sync: bool,
    /// Variables the upload's processes on the host carry (exported first), e.g. a tag that
    /// tells them from others; each name must be a shell identifier.
    pub env: Vec<(String, String)>,
}

/// `export NAME='value'; ` for each of `env`, or why a name is no shell variable's.
fn exports(env: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    for (name, value) in env {
        let identifier = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            return Err(format!("`{}` is not a variable name", name.escape_debug()));
        }
        out.push_str(&format!("export {name}={}; ", quote(value)));
    }
    Ok(out)
}

/// A file already at a destination, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Permission bits.
    pub mode: u32,
    /// `user:group`, by name.
    pub owner: String,
    /// `uid:gid`.
    pub ids: String,
}

impl RemoteFile {
    /// Whether this is `file` left as `opts` says, so uploading it again would change
    /// nothing.
    pub fn is(&self, file: &LocalFile, opts: &PutOptions) -> bool {
        self.sha256 == file.sha256
            && self.mode == opts.mode
            && opts
                .owner
                .as_deref()
                .is_none_or(|o| owner_matches(&self.owner, o) || owner_matches(&self.ids, o))
    }
}

/// `user` matches any group; `user:group` must match both.
fn owner_matches(have: &str, want: &str) -> bool {
    match want.split_once(':') {
        Some(_) => have == want,
        None => have.split(':').next() == Some(want),
    }
}

/// A file saved by [`Session::download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// Their SHA-256, lowercase hex, the same as the host's.
    pub sha256: String,
}

impl Session {
    /// Uploads `local` to `remote` with permissions `mode`, as [`Session::put`] does; the
    /// file is hashed once per client, however many sessions upload it.
    ///
    /// # Errors
    ///
    /// As [`Session::put`].
    ///
    /// # Cancel safety
    ///
    /// As [`Session::put`].
    pub async fn upload(
        &self,
        local: &Path,
        remote: &str,
        mode: u32,
        env: &[(&str, &str)],
        opts: &ExecOptions,
        cancel: &CancellationToken,
    ) -> Result<ExecOutput, ExecError> {
        let file = self.digests().of(local).await?;
        let put = PutOptions {
            mode,
            owner: None,
            sync: true,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        self.put(&file, remote, &put, opts, cancel, None).await
    }

    /// Uploads `file` to the path `remote`: the data goes to a temporary file beside it,
    /// which takes the name `remote` only once its size and SHA-256 on the host are the
    /// file's and its mode and owner are set, so `remote` is never a partial or corrupt
    /// file. `sent` is told of every chunk sent.
    ///
    /// # Errors
    ///
    /// [`ExecError::LocalFile`] when `file` cannot be read; transport errors as for
    /// [`Session::exec`]. A failure on the host (no such directory, disk full, a size or
    /// SHA-256 mismatch, a refused `chown`) is a non-zero [`crate::ExitStatus`] with the
    /// reason on stderr.
    ///
    /// # Cancel safety
    ///
    /// As [`Session::exec`]; an interrupted upload leaves nothing at `remote`, and its
    /// temporary file is removed unless the shell itself was killed with KILL. (The shell
    /// ignores SIGPIPE: once a timed-out channel is closed, the shell's own report of its
    /// killed child would otherwise kill it before it removes the file.)
    pub async fn put(
        &self,
        file: &LocalFile,
        remote: &str,
        put: &PutOptions,
        opts: &ExecOptions,
        cancel: &CancellationToken,
        sent: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<ExecOutput, ExecError> {
        let local_err = |source| ExecError::LocalFile {
            path: file.path.clone(),
            source,
        };
        let f = tokio::fs::File::open(&file.path).await.map_err(local_err)?;
        // The owner before the mode: `chown` clears setuid and setgid bits.
        let chown = match &put.owner {
            Some(o) => format!("chown -- {} \"$t\" || exit 1; ", quote(o)),
            // Replacing a file keeps its owner and group, as `cp` onto it would, where the
            // session's user may give them.
            None => "if [ -e \"$d\" ]; then o=$(fleet_ids \"$d\") && chown -- \"$o\" \"$t\" 2>/dev/null; fi; ".into(),
        };
        let exports = exports(&put.env).map_err(|reason| ExecError::Refused {
            endpoint: self.endpoint().to_owned(),
            reason,
        })?;
        // coreutils' `sync FILE` (8.24+); where it is missing the rename still happens.
        let sync = if put.sync {
            "sync -- \"$t\" 2>/dev/null; "
        } else {
            ""
        };
        let script = format!(
            "{exports}{SHELL_HELPERS}d={dest}; \
             if [ -L \"$d\" ]; then echo \"fleet: $d is a symbolic link; not replacing it\" >&2; exit 1; fi; \
             if [ -d \"$d\" ]; then echo \"fleet: $d is a directory\" >&2; exit 1; fi; \
             t=$(mktemp \"$(dirname -- \"$d\")/.fleet-upload.XXXXXX\") || exit 1; \
             trap 'rm -f \"$t\"' EXIT; trap 'exit 1' HUP INT TERM; trap '' PIPE; \
             cat > \"$t\" || exit 1; \
             s=$(($(wc -c < \"$t\"))); \
             if [ \"$s\" != {size} ]; then echo \"fleet: upload truncated: $s of {size} bytes\" >&2; exit 1; fi; \
             h=$(fleet_sha256 {size} < \"$t\") || exit 1; \
             if [ \"$h\" != {sha} ]; then echo \"fleet: SHA-256 mismatch: sent {sha}, the host has $h\" >&2; exit 1; fi; \
             {chown}chmod -- {mode:o} \"$t\" || exit 1; {sync}mv -f -- \"$t\" \"$d\"",
            dest = quote(remote),
            size = file.size,
            sha = file.sha256,
            mode = put.mode,
        );
        self.run(&script, Input::File(f, sent), false, opts, cancel, None)
            .await
    }

    /// Reports each of `paths` that is a regular file: its SHA-256, mode and owner; `None`
    /// for one that is missing, a symbolic link, not a regular file, or unreadable. The
    /// paths go in batches, each one command whose script is sent on its stdin (so no
    /// number of paths makes a command line too long), each batch with `opts`' time limit.
    ///
    /// # Errors
    ///
    /// Transport errors as for [`Session::exec`], and [`ExecError::Refused`] when a batch
    /// fails or its answer does not have one line per path.
    pub async fn stat_files(
        &self,
        paths: &[String],
        opts: &ExecOptions,
        cancel: &CancellationToken,
    ) -> Result<Vec<Option<RemoteFile>>, ExecError> {
        let mut all = Vec::with_capacity(paths.len());
        for batch in paths.chunks(STAT_BATCH) {
            all.extend(self.stat_batch(batch, opts, cancel).await?);
        }
        Ok(all)
    }

    async fn stat_batch(
        &self,
        paths: &[String],
        opts: &ExecOptions,
        cancel: &CancellationToken,
    ) -> Result<Vec<Option<RemoteFile>>, ExecError> {
        // Only tagged lines are answers: a login script that prints on stdout adds none.
        let tag = format!("fleet-stat-{}", crate::marker::nonce());
        let mut script = format!(
            "{SHELL_HELPERS}fleet_one() {{ \
             if [ -f \"$1\" ] && [ ! -L \"$1\" ] && [ -r \"$1\" ]; then \
             a=$(fleet_stat \"$1\") && h=$(fleet_sha256 < \"$1\") && echo \"{tag} $a $h\" && return 0; fi; \
             echo \"{tag} -\"; }}\n"
        );
        for p in paths {
            script.push_str("fleet_one ");
            script.push_str(&quote(p));
            script.push('\n');
        }
        let cmd = crate::RemoteCommand::shell("exec /bin/sh -s").stdin(script.into_bytes());
        let out = self.exec(&cmd, opts, cancel).await?;
        let text = out.stdout.to_string_lossy();
        let lines: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&tag)?.strip_prefix(' '))
            .collect();
        if !out.status.success() || lines.len() != paths.len() {
            return Err(ExecError::Refused {
                endpoint: self.endpoint().to_owned(),
                reason: format!(
                    "checking the files already there ended with {} and {} of {} answers: {}",
                    out.status,
                    lines.len(),
                    paths.len(),
                    out.stderr.to_string_lossy().trim()
                ),
            });
        }
        Ok(lines.into_iter().map(parse_remote_file).collect())
    }

    /// Saves the host's regular file `remote` as `local`: the bytes go to a temporary file
    /// beside `local`, which takes its name only once their size and SHA-256 are the ones the
    /// host reported for the file before sending it. `received` is told of every chunk.
    ///
    /// Returns the file saved, or why it was not (the host's words, or the mismatch); the
    /// temporary file is removed either way.
    ///
    /// # Errors
    ///
    /// Transport errors as for [`Session::exec`], and [`ExecError::LocalFile`] when the
    /// local file cannot be created or written.
    pub async fn download(
        &self,
        remote: &str,
        local: &Path,
        opts: &ExecOptions,
        cancel: &CancellationToken,
        received: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    ) -> Result<Result<Downloaded, String>, ExecError> {
        let tag = format!("fleet-fetch-{}", crate::marker::nonce());
        // The size first, then the hash and the bytes of that many: a log still being
        // written is fetched as it was when asked, not refused. A file replaced meanwhile
        // (rotated) shows as a mismatch, since the bytes come from the file opened first.
        let script = format!(
            "{SHELL_HELPERS}f={src}; \
             if [ ! -f \"$f\" ]; then echo \"fleet: $f is not a regular file\" >&2; exit 1; fi; \
             exec 3< \"$f\" || exit 1; \
             s=$(($(wc -c < \"$f\"))); \
             h=$(head -c \"$s\" < \"$f\" | fleet_sha256 \"$s\") || exit 1; \
             echo \"{tag} $s $h\" >&2; exec head -c \"$s\" <&3",
            src = quote(remote),
        );
        let dir = local.parent().unwrap_or(Path::new("."));
        let local_err = |source| ExecError::LocalFile {
            path: local.to_owned(),
            source,
        };
        let tmp = tempfile::Builder::new()
            .prefix(".fleet-fetch.")
            .tempfile_in(dir)
            .map_err(local_err)?;
        let mut sink = FileSink {
            file: std::io::BufWriter::with_capacity(
                256 * 1024,
                tmp.as_file().try_clone().map_err(local_err)?,
            ),
            hash: Sha256::new(),
            size: 0,
            error: None,
            received,
        };
        let mut opts = *opts;
        // The file is in the sink; the capture only needs the host's words.
        opts.max_output = opts.max_output.min(64 * 1024);
        let out = self
            .run(&script, Input::None, false, &opts, cancel, Some(&mut sink))
            .await?;
        let FileSink {
            file,
            hash,
            size,
            error,
            ..
        } = sink;
        let flushed = file.into_inner().map(drop).map_err(|e| e.into_error());
        if let Some(e) = error.or(flushed.err()) {
            return Err(local_err(e));
        }
        let stderr = out.stderr.to_string_lossy();
        if !out.status.success() {
            let said: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with(&tag))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Ok(Err(format!("{}: {}", out.status, said.join("; "))));
        }
        let Some((want_size, want_hash)) = stderr.lines().find_map(|l| parse_tag(l, &tag)) else {
            return Ok(Err("the host sent no size and SHA-256 for the file".into()));
        };
        let got = hex(&hash.finalize());
        if size != want_size || got != want_hash {
            return Ok(Err(format!(
                "received {size} bytes with SHA-256 {got}, the host reported {want_size} bytes with {want_hash} (the file changed while it was read?)"
            )));
        }
        tmp.as_file().sync_all().map_err(local_err)?;
        tmp.persist(local).map_err(|e| local_err(e.error))?;
        Ok(Ok(Downloaded { size, sha256: got }))
    }
}

/// `MODE USER:GROUP UID:GID SHA256`, as [`Session::stat_files`]'s script prints it;
/// anything else is no usable file.
fn parse_remote_file(line: &str) -> Option<RemoteFile> {
    let mut w = line.split(' ');
    let (mode, owner, ids, sha) = (w.next()?, w.next()?, w.next()?, w.next()?);
    let numeric = |s: &str| {
        s.split_once(':').is_some_and(|(u, g)| {
            !u.is_empty()
                && !g.is_empty()
                && u.bytes().all(|b| b.is_ascii_digit())
                && g.bytes().all(|b| b.is_ascii_digit())
        })
    };
    if w.next().is_some()
        || sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        || !owner.contains(':')
        || !numeric(ids)
    {
        return None;
    }
    Some(RemoteFile {
        sha256: sha.to_owned(),
        mode: u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777)?,
        owner: owner.to_owned(),
        ids: ids.to_owned(),
    })
}

/// `TAG SIZE SHA256` on the download's stderr.
fn parse_tag(line: &str, tag: &str) -> Option<(u64, String)> {
    let rest = line.strip_prefix(tag)?.strip_prefix(' ')?;
    let (size, sha) = rest.trim_end().split_once(' ')?;
    let sha = sha.trim();
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Some((size.parse().ok()?, sha.to_ascii_lowercase())))
        .flatten()
}

/// The download's stdout: into the temporary file and the hash as it comes.
struct FileSink {
    file: std::io::BufWriter<std::fs::File>,
    hash: Sha256,
    size: u64,
    /// The first write error; nothing more is written after it.
    error: Option<std::io::Error>,
    received: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl Sink for FileSink {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        if stream != Stream::Stdout || self.error.is_some() {
            return;
        }
        use std::io::Write;
        if let Err(e) = self.file.write_all(data) {
            self.error = Some(e);
            return;
        }
        self.hash.update(data);
        self.size += data.len() as u64;
        if let Some(r) = &self.received {
            r(data.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_file_lines_are_read_strictly() {
        let sha = "a".repeat(64);
        assert_eq!(
            parse_remote_file(&format!("644 www-data:www-data 33:33 {sha}")),
            Some(RemoteFile {
                sha256: sha.clone(),
                mode: 0o644,
                owner: "www-data:www-data".into(),
                ids: "33:33".into(),
            })
        );
        assert_eq!(
            parse_remote_file(&format!("4755 root:root 0:0 {sha}")).map(|f| f.mode),
            Some(0o4755)
        );
        for bad in [
            "-".to_owned(),
            format!("644 root 0:0 {sha}"),
            format!("644 root:root {sha}"),
            format!("644 root:root root:0 {sha}"),
            format!("999 root:root 0:0 {sha}"),
            format!("644 root:root 0:0 {}", "A".repeat(64)),
            format!("644 root:root 0:0 {sha} extra"),
            format!("644 root:root 0:0 {}", &sha[..63]),
        ] {
            assert_eq!(parse_remote_file(&bad), None, "{bad}");
        }
    }

    #[test]
    fn identical_means_content_mode_and_asked_owner() {
        let local = LocalFile {
            path: "x".into(),
            size: 1,
            sha256: "b".repeat(64),
            mode: 0o600,
        };
        let there = RemoteFile {
            sha256: "b".repeat(64),
            mode: 0o644,
            owner: "web:staff".into(),
            ids: "33:50".into(),
        };
        let opts = |owner: Option<&str>| PutOptions {
            mode: 0o644,
            owner: owner.map(str::to_owned),
            sync: true,
            env: Vec::new(),
        };
        assert!(there.is(&local, &opts(None)));
        assert!(there.is(&local, &opts(Some("web"))));
        assert!(there.is(&local, &opts(Some("web:staff"))));
        assert!(!there.is(&local, &opts(Some("web:web"))));
        assert!(!there.is(&local, &opts(Some("root"))));
        assert!(there.is(&local, &opts(Some("33"))));
        assert!(there.is(&local, &opts(Some("33:50"))));
        assert!(!there.is(&local, &opts(Some("33:33"))));
        assert!(!there.is(
            &local,
            &PutOptions {
                mode: 0o600,
                owner: None,
                sync: true,
                env: Vec::new(),
            }
        ));
        let other = RemoteFile {
            sha256: "c".repeat(64),
            ..there
        };
        assert!(!other.is(&local, &opts(None)));
    }

    #[test]
    fn upload_variables_are_exported_quoted_and_names_checked() {
        #[track_caller]
        fn case(name: &str, value: &str, want: Result<&str, &str>) {
            let got = exports(&[(name.to_owned(), value.to_owned())]);
            assert_eq!(got.as_deref(), want.map_err(str::to_owned).as_deref());
        }
        case(
            "FLEET_RUN_STEP",
            "r/h01/7",
            Ok("export FLEET_RUN_STEP=r/h01/7; "),
        );
        case("_x1", "a'b", Ok("export _x1='a'\\''b'; "));
        case("1X", "v", Err("`1X` is not a variable name"));
        case("A;rm", "v", Err("`A;rm` is not a variable name"));
        case("", "v", Err("`` is not a variable name"));
        assert_eq!(exports(&[]).as_deref(), Ok(""));
    }

    #[test]
    fn the_download_tag_is_read_strictly() {
        let sha = "0f".repeat(32);
        assert_eq!(
            parse_tag(&format!("fleet-fetch-1 12 {sha}"), "fleet-fetch-1"),
            Some((12, sha.clone()))
        );
        assert_eq!(
            parse_tag(&format!("fleet-fetch-2 12 {sha}"), "fleet-fetch-1"),
            None
        );
        assert_eq!(parse_tag("fleet-fetch-1 x y", "fleet-fetch-1"), None);
        assert_eq!(
            parse_tag(&format!("fleet-fetch-1 -1 {sha}"), "fleet-fetch-1"),
            None
        );
    }

    #[tokio::test]
    async fn a_local_file_is_hashed_once_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let d = Digests::default();
        let first = d.of(&p).await.unwrap();
        assert_eq!(
            first.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(first.size, 3);
        std::fs::write(&p, b"abcd").unwrap();
        assert_eq!(d.of(&p).await.unwrap().size, 4);
        assert!(matches!(
            d.of(&dir.path().join("missing")).await,
            Err(ExecError::LocalFile { .. })
        ));
        assert!(d.of(dir.path()).await.is_err(), "a directory is no file");
    }
}
