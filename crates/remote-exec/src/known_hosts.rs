//! OpenSSH known_hosts files: parsed once per run, matched the way OpenSSH matches them.
//!
//! russh ships a checker, but it ignores `@revoked`, wildcards, negation and TAB-separated
//! lines, and reports a changed key when a stale line precedes a good one. This module does the matching itself: `|1|salt|hash` hashed names,
//! `[host]:port` names for non-22 ports, `*`/`?` patterns, `!negation`, `@revoked`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

use crate::error::HostKeyError;

/// The name OpenSSH records for `address` on `port`: bare for port 22, else `[address]:port`.
pub(crate) fn lookup_name(address: &str, port: u16) -> String {
    let address = address.to_ascii_lowercase();
    if port == 22 {
        address
    } else {
        format!("[{address}]:{port}")
    }
}

/// Formats a key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:...`).
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

mod cert;
pub(crate) use cert::CertVerdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
enum Hosts {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Patterns(Vec<(bool, String)>),
}

#[derive(Debug)]
struct Entry {
    line: usize,
    marker: Marker,
    hosts: Hosts,
    key: PublicKey,
}

impl Entry {
    fn matches(&self, name: &str) -> bool {
        match &self.hosts {
            Hosts::Hashed { salt, hash } => {
                let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            Hosts::Patterns(list) => {
                let mut positive = false;
                for (negated, pattern) in list {
                    if glob_match(pattern, name) {
                        if *negated {
                            return false;
                        }
                        positive = true;
                    }
                }
                positive
            }
        }
    }
}

/// One parsed known_hosts file. Plain host names are indexed; hashed and pattern entries are
/// scanned, since each needs its own HMAC or glob.
#[derive(Debug, Default)]
struct KnownHostsFile {
    entries: Vec<Entry>,
    exact: HashMap<String, Vec<usize>>,
    scan: Vec<usize>,
}

impl KnownHostsFile {
    fn parse(text: &str) -> Self {
        let mut file = KnownHostsFile::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(entry) = parse_line(line, i + 1) else {
                tracing::debug!(line = i + 1, "skipping unparsable known_hosts line");
                continue;
            };
            let idx = file.entries.len();
            match &entry.hosts {
                Hosts::Patterns(list) if list.iter().all(|(neg, p)| !neg && !has_wildcard(p)) => {
                    for (_, p) in list {
                        file.exact.entry(p.clone()).or_default().push(idx);
                    }
                }
                _ => file.scan.push(idx),
            }
            file.entries.push(entry);
        }
        file
    }

    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let exact = self.exact.get(name).into_iter().flatten();
        let scanned = self.scan.iter().filter(|&&i| self.entries[i].matches(name));
        exact.chain(scanned).map(|&i| &self.entries[i])
    }
}

/// Parses `text` as a known_hosts file and returns the lines of the entries that `name` (a
/// host as [`lookup_name`] writes it) matches, in the order the checker reads them. For the
/// `fuzz/` targets and the fault suite's bad-input scenario only: connections read
/// known_hosts through [`Client`](crate::Client).
pub fn matching_lines(text: &str, name: &str) -> Vec<usize> {
    KnownHostsFile::parse(text)
        .matching(name)
        .map(|e| e.line)
        .collect()
}

fn parse_line(line: &str, number: usize) -> Option<Entry> {
    let mut fields = line.split_ascii_whitespace();
    let mut first = fields.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next()?;
    }
    let _key_type = fields.next()?;
    let key = russh::keys::parse_public_key_base64(fields.next()?).ok()?;
    let hosts = if let Some(rest) = first.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        Hosts::Hashed {
            salt: data_encoding::BASE64.decode(salt.as_bytes()).ok()?,
            hash: data_encoding::BASE64.decode(hash.as_bytes()).ok()?,
        }
    } else {
        Hosts::Patterns(
            first
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| match p.strip_prefix('!') {
                    Some(rest) => (true, rest.to_ascii_lowercase()),
                    None => (false, p.to_ascii_lowercase()),
                })
                .collect(),
        )
    };
    Some(Entry {
        line: number,
        marker,
        hosts,
        key: PublicKey::new(key.key_data().clone(), ""),
    })
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?'])
}

/// OpenSSH's `match_pattern`: `*` matches any run, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// What known_hosts says about a key offered by a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Trusted,
    Unknown,
    Changed(Vec<String>),
    Revoked { file: PathBuf, line: usize },
}

/// Every known_hosts file the run needs, each read and parsed once, plus keys accepted during
/// the run. Shared by all connections.
#[derive(Debug, Default)]
pub(crate) struct KnownHosts {
    files: Mutex<HashMap<PathBuf, Arc<KnownHostsFile>>>,
    learned: Mutex<Vec<(String, KeyData)>>,
    // One writer for accept-new, so 200 new hosts at once append 200 whole lines.
    write: tokio::sync::Mutex<()>,
}

impl KnownHosts {
    fn file(&self, path: &Path) -> Arc<KnownHostsFile> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(path) {
            return f.clone();
        }
        let parsed = Arc::new(match std::fs::read_to_string(path) {
            Ok(text) => KnownHostsFile::parse(&text),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read known_hosts");
                }
                KnownHostsFile::default()
            }
        });
        files.insert(path.to_owned(), parsed.clone());
        parsed
    }

    /// Returns the key algorithms known_hosts holds for `name`, so the handshake can ask the
    /// server for a key type we can verify (what OpenSSH does).
    pub(crate) fn known_algorithms(&self, name: &str, paths: &[PathBuf]) -> Vec<Algorithm> {
        let mut algos = Vec::new();
        for path in paths {
            for e in self.file(path).matching(name) {
                if e.marker == Marker::None && !algos.contains(&e.key.algorithm()) {
                    algos.push(e.key.algorithm());
                }
            }
        }
        algos
    }

    /// Checks `key` offered for `name` against `paths` (and keys accepted earlier in the run).
    pub(crate) fn check(&self, name: &str, key: &PublicKey, paths: &[PathBuf]) -> Verdict {
        let mut known = Vec::new();
        let mut trusted = false;
        for path in paths {
            let file = self.file(path);
            for e in file.matching(name) {
                match e.marker {
                    Marker::Revoked if e.key.key_data() == key.key_data() => {
                        return Verdict::Revoked {
                            file: path.clone(),
                            line: e.line,
                        };
                    }
                    Marker::None if e.key.key_data() == key.key_data() => trusted = true,
                    // A key of another type says nothing of this one (OpenSSH: the host is
                    // new for this type).
                    Marker::None if e.key.algorithm() != key.algorithm() => {}
                    Marker::None => known.push(format!(
                        "{} {} (`{}`:{})",
                        e.key.algorithm(),
                        fingerprint(&e.key),
                        path.display(),
                        e.line
                    )),
                    Marker::Revoked | Marker::CertAuthority => {}
                }
            }
        }
        if trusted {
            return Verdict::Trusted;
        }
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        if learned
            .iter()
            .any(|(n, k)| n == name && k == key.key_data())
        {
            return Verdict::Trusted;
        }
        if known.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Changed(known)
        }
    }

    /// Appends `name key` to `path` (accept-new), holding both an in-process and a file lock so
    /// concurrent connections and concurrent `fleet` processes never interleave lines.
    pub(crate) async fn learn(
        &self,
        name: &str,
        key: &PublicKey,
        path: &Path,
        hashed: bool,
    ) -> Result<(), HostKeyError> {
        let _guard = self.write.lock().await;
        // Another connection may have learned this host while we waited.
        if self.check(name, key, &[]) == Verdict::Trusted {
            return Ok(());
        }
        let written = if hashed {
            hash_name(name)
        } else {
            name.to_owned()
        };
        let line = format!(
            "{written} {}\n",
            PublicKey::new(key.key_data().clone(), "")
                .to_openssh()
                .map_err(|e| record_error(name, path, e.to_string()))?
        );
        let (path_owned, name_owned, data) =
            (path.to_owned(), name.to_owned(), key.key_data().clone());
        tokio::task::spawn_blocking(move || {
            append_locked(&path_owned, line.as_bytes(), |text| {
                // Another fleet process may have recorded it while we waited for the lock.
                KnownHostsFile::parse(text)
                    .matching(&name_owned)
                    .any(|e| e.marker == Marker::None && *e.key.key_data() == data)
            })
        })
        .await
        .map_err(|e| record_error(name, path, e.to_string()))?
        .map_err(|e| record_error(name, path, e.to_string()))?;
        self.learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_owned(), key.key_data().clone()));
        Ok(())
    }
}

/// `name` as `HashKnownHosts` writes it: `|1|SALT|HMAC-SHA1(SALT, name)`, both base64, with
/// a fresh 20-byte salt.
fn hash_name(name: &str) -> String {
    use russh::keys::ssh_key::rand_core::Rng as _;
    let mut salt = [0u8; 20];
    russh::keys::key::safe_rng().fill_bytes(&mut salt);
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(name.as_bytes());
    format!(
        "|1|{}|{}",
        data_encoding::BASE64.encode(&salt),
        data_encoding::BASE64.encode(&mac.finalize().into_bytes())
    )
}

fn record_error(host: &str, file: &Path, reason: String) -> HostKeyError {
    HostKeyError::Record {
        host: host.to_owned(),
        file: file.to_owned(),
        reason,
    }
}

/// Appends `line` to `path` under an exclusive lock on the file, unless `present` says the
/// file (read under that lock) holds it already.
fn append_locked(
    path: &Path,
    line: &[u8],
    present: impl FnOnce(&str) -> bool,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.lock()?;
    let text = std::fs::read(path)?;
    if present(&String::from_utf8_lossy(&text)) {
        return f.unlock();
    }
    // A file that does not end in a newline would glue our entry onto its last line.
    if text.last().is_some_and(|&b| b != b'\n') {
        f.write_all(b"\n")?;
    }
    f.write_all(line)?;
    f.sync_data()?;
    f.unlock()
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::PrivateKey;

    fn key() -> PublicKey {
        let k = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
            .expect("keygen");
        PublicKey::new(k.public_key().key_data().clone(), "")
    }

    fn line(hosts: &str, k: &PublicKey) -> String {
        format!("{hosts} {}\n", k.to_openssh().expect("encode"))
    }

    fn hashed(name: &str) -> String {
        let salt = [7u8; 20];
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt).expect("hmac");
        mac.update(name.as_bytes());
        let hash = mac.finalize().into_bytes();
        format!(
            "|1|{}|{}",
            data_encoding::BASE64.encode(&salt),
            data_encoding::BASE64.encode(&hash)
        )
    }

    fn store(text: &str) -> (KnownHosts, Vec<PathBuf>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).expect("write");
        (KnownHosts::default(), vec![path], dir)
    }

    #[track_caller]
    fn case(text: &str, name: &str, k: &PublicKey, want: fn(&Verdict) -> bool) {
        let (kh, paths, _dir) = store(text);
        let got = kh.check(name, k, &paths);
        assert!(want(&got), "{name}: got {got:?} for\n{text}");
    }

    #[test]
    fn verdict_table() {
        let good = key();
        let other = key();
        let trusted = |v: &Verdict| *v == Verdict::Trusted;
        let unknown = |v: &Verdict| *v == Verdict::Unknown;
        let changed = |v: &Verdict| matches!(v, Verdict::Changed(_));
        let revoked = |v: &Verdict| matches!(v, Verdict::Revoked { line: 1, .. });
        let n = "[127.0.0.1]:2222";
        case(&line(n, &good), n, &good, trusted);
        case(&line(&hashed(n), &good), n, &good, trusted);
        case(&line(&format!("web1,{n}"), &good), n, &good, trusted);
        case(&line(n, &good).replacen(' ', "\t", 1), n, &good, trusted);
        case(&line("[127.0.0.*]:2222", &good), n, &good, trusted);
        case(
            &line("[127.0.0.*]:2222,![127.0.0.1]:2222", &good),
            n,
            &good,
            unknown,
        );
        case(&line("127.0.0.1", &good), n, &good, unknown);
        case(&line(n, &other), n, &good, changed);
        case(&line(&hashed(n), &other), n, &good, changed);
        // A stale line before the right one: OpenSSH accepts, so do we.
        case(&(line(n, &other) + &line(n, &good)), n, &good, trusted);
        case(
            &(format!("@revoked {}", line(n, &good)) + &line(n, &good)),
            n,
            &good,
            revoked,
        );
        case(
            &format!("# comment\n\n{}", line(n, &good)),
            n,
            &good,
            trusted,
        );
        case("garbage line\n", n, &good, unknown);
        case(
            &line("WEB1.example.com", &good),
            "web1.example.com",
            &good,
            trusted,
        );
    }

    #[test]
    fn missing_file_is_unknown() {
        let kh = KnownHosts::default();
        let k = key();
        assert_eq!(
            kh.check("h", &k, &[PathBuf::from("/nonexistent/known_hosts")]),
            Verdict::Unknown
        );
    }

    #[tokio::test]
    async fn learn_appends_once_and_trusts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/known_hosts");
        let kh = Arc::new(KnownHosts::default());
        let k = key();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..50 {
            let (kh, k, path) = (kh.clone(), k.clone(), path.clone());
            set.spawn(async move {
                kh.learn(&format!("[10.0.0.{i}]:22"), &k, &path, i % 2 == 1)
                    .await
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("join").expect("learn");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 50);
        // Odd ones were written hashed (HashKnownHosts): no name in clear, still found.
        assert_eq!(text.lines().filter(|l| l.starts_with("|1|")).count(), 25);
        assert!(!text.contains("10.0.0.7"), "{text}");
        assert!(text.contains("[10.0.0.6]:22"), "{text}");
        let fresh = KnownHosts::default();
        for n in ["[10.0.0.7]:22", "[10.0.0.6]:22"] {
            assert_eq!(
                fresh.check(n, &k, std::slice::from_ref(&path)),
                Verdict::Trusted
            );
        }
    }

    #[test]
    fn glob() {
        assert!(glob_match("*.example.com", "a.example.com"));
        assert!(glob_match("web?", "web1"));
        assert!(!glob_match("web?", "web10"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
    }
}
