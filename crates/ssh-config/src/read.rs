//! Reading config files for one host as `ssh` does: lines in order, `Host`/`Match` switching
//! whether the lines that follow apply, `Include` read in place, the first value obtained
//! for each option kept, and a second pass when `Match final` asks for one.

use std::path::{Path, PathBuf};

use crate::lex;
use crate::pattern;
use crate::{ConfigError, Context, Origin, Resolved, StrictHostKeyChecking, Value};

/// How deep `Include` may nest, as in OpenSSH.
const MAX_DEPTH: usize = 16;

pub(crate) struct Reader<'a> {
    pub(crate) ctx: &'a Context,
    pub(crate) host_arg: String,
    pub(crate) out: Resolved,
    pub(crate) final_pass: bool,
    pub(crate) want_final: bool,
    /// `IgnoreUnknown` patterns obtained so far.
    pub(crate) ignore_unknown: Vec<String>,
    /// Reading the system-wide file: relative `Include`s are under `/etc/ssh`, and a keyword
    /// this reader does not know is let through (distributions patch ssh with options of
    /// their own, which their ssh knows).
    pub(crate) system: bool,
}

fn err(origin: &Origin, msg: impl Into<String>) -> ConfigError {
    ConfigError::Bad {
        file: origin.file.clone(),
        line: origin.line,
        msg: msg.into(),
    }
}

impl Reader<'_> {
    /// Reads `path`. `never_match`: an Include inside a block that does not apply, whose
    /// own `Host`/`Match` lines never apply either. `active`: whether lines apply at the
    /// start (an included file starts as its Include line stood).
    pub(crate) fn read_file(
        &mut self,
        path: &Path,
        never_match: bool,
        active: bool,
        depth: usize,
        check_owner: bool,
    ) -> Result<(), ConfigError> {
        if depth > MAX_DEPTH {
            return Err(ConfigError::Io {
                file: path.to_owned(),
                msg: format!("Include nested deeper than {MAX_DEPTH}"),
            });
        }
        let io = |e: std::io::Error| ConfigError::Io {
            file: path.to_owned(),
            msg: e.to_string(),
        };
        if check_owner {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path).map_err(io)?;
            if (m.uid() != 0 && m.uid() != self.ctx.uid) || m.mode() & 0o022 != 0 {
                return Err(ConfigError::Io {
                    file: path.to_owned(),
                    msg: "bad owner or permissions (as ssh: it must be yours or root's, and not writable by others)".into(),
                });
            }
        }
        let text = String::from_utf8_lossy(&std::fs::read(path).map_err(io)?).into_owned();
        let mut active = active;
        for (i, raw) in text.lines().enumerate() {
            let Some(l) = lex::line(raw) else { continue };
            let origin = Origin {
                file: path.to_owned(),
                line: i + 1,
            };
            match l.keyword.as_str() {
                "host" => {
                    let pats = lex::args(&l.rest).map_err(|e| err(&origin, e))?;
                    if pats.is_empty() {
                        return Err(err(&origin, "Host needs a pattern"));
                    }
                    active = !never_match && pattern::host_line(&self.host_for_match(), &pats);
                }
                "match" => {
                    let a = lex::args(&l.rest).map_err(|e| err(&origin, e))?;
                    let m = self.match_line(&a, &origin, never_match)?;
                    active = !never_match && m;
                }
                "include" => {
                    let a = lex::args(&l.rest).map_err(|e| err(&origin, e))?;
                    if a.is_empty() {
                        return Err(err(&origin, "Include needs a file"));
                    }
                    for arg in a {
                        for f in self.include_files(&arg) {
                            self.read_file(&f, never_match || !active, active, depth + 1, true)?;
                        }
                    }
                }
                _ if active => self.set(&l, &origin)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// What `Host` patterns are matched against: the name given, and in the final pass the
    /// name resolved (`HostName`, lowercased).
    fn host_for_match(&self) -> String {
        if self.final_pass {
            self.out.effective_hostname()
        } else {
            self.host_arg.clone()
        }
    }

    /// Whether keyword `k` may be unknown (`IgnoreUnknown`).
    fn may_ignore(&self, k: &str) -> bool {
        self.system
            || self
                .ignore_unknown
                .iter()
                .any(|p| pattern::list(k, p, true))
    }

    /// `Include ARG`: `~` is the home, a relative path is under `~/.ssh` (for the user's
    /// config, as ssh does even with `-F`), globs expand, in sorted order; none is no error.
    fn include_files(&self, arg: &str) -> Vec<PathBuf> {
        let home = self.ctx.home.display().to_string();
        let p = crate::expand::tilde(arg, &home);
        let p = if p.starts_with('/') {
            p
        } else if self.system {
            format!("/etc/ssh/{p}")
        } else {
            format!("{}/.ssh/{p}", home.trim_end_matches('/'))
        };
        glob_paths(&p)
    }

    /// A `Match` line: every criterion must hold (`!` negates one).
    fn match_line(
        &mut self,
        a: &[String],
        origin: &Origin,
        never_match: bool,
    ) -> Result<bool, ConfigError> {
        if a.is_empty() {
            return Err(err(origin, "Match needs a criterion"));
        }
        let mut result = true;
        let mut i = 0;
        while i < a.len() {
            let (neg, word) = match a[i].strip_prefix('!') {
                Some(w) => (true, w),
                None => (false, a[i].as_str()),
            };
            // `host=x` (OpenSSH 9.9) is `host x`.
            let (word, inline) = match word.split_once('=') {
                Some((w, v)) => (w.to_ascii_lowercase(), Some(v.to_owned())),
                None => (word.to_ascii_lowercase(), None),
            };
            i += 1;
            let hit = match word.as_str() {
                "all" => true,
                "canonical" => self.final_pass,
                "final" => {
                    if !neg {
                        self.want_final = true;
                    }
                    self.final_pass
                }
                "host" | "originalhost" | "user" | "localuser" => {
                    let list = match inline {
                        Some(v) => v,
                        None => {
                            let v = a.get(i).cloned().ok_or_else(|| {
                                err(origin, format!("Match {word} needs an argument"))
                            })?;
                            i += 1;
                            v
                        }
                    };
                    match word.as_str() {
                        "host" => pattern::list(&self.out.effective_hostname(), &list, true),
                        "originalhost" => pattern::list(&self.host_arg, &list, true),
                        "user" => {
                            let u = self
                                .out
                                .user
                                .as_ref()
                                .map_or(self.ctx.local_user.clone(), |v| v.value.clone());
                            pattern::list(&u, &list, false)
                        }
                        _ => pattern::list(&self.ctx.local_user, &list, false),
                    }
                }
                // What fails already needs no command run (ssh skips it too).
                "exec" if !result || never_match => {
                    if inline.is_none() {
                        i += 1;
                    }
                    false
                }
                "exec" | "localnetwork" | "tagged" | "version" | "command" | "sessiontype" => {
                    return Err(err(
                        origin,
                        format!(
                            "Match {word} is not supported by fleet (it would run or ask what only ssh knows)"
                        ),
                    ));
                }
                other => return Err(err(origin, format!("unknown Match criterion `{other}`"))),
            };
            if hit == neg {
                result = false;
            }
        }
        Ok(result)
    }

    /// An option line that applies: the first value obtained stands.
    fn set(&mut self, l: &lex::Line, origin: &Origin) -> Result<(), ConfigError> {
        let ignorable = self.may_ignore(&l.keyword);
        let o = &mut self.out;
        macro_rules! at {
            ($v:expr) => {
                Value {
                    value: $v,
                    origin: origin.clone(),
                }
            };
        }
        let args = || lex::args(&l.rest).map_err(|e| err(origin, e));
        let one = || -> Result<String, ConfigError> {
            let a = args()?;
            a.into_iter()
                .next()
                .ok_or_else(|| err(origin, format!("{} needs a value", l.keyword)))
        };
        let number = |s: &str| -> Result<u64, ConfigError> {
            seconds(s).ok_or_else(|| {
                err(
                    origin,
                    format!("{}: `{s}` is not a time (`30`, `30s`, `1m`)", l.keyword),
                )
            })
        };
        let flag = |s: &str| -> Result<bool, ConfigError> {
            match s.to_ascii_lowercase().as_str() {
                "yes" | "true" => Ok(true),
                "no" | "false" => Ok(false),
                _ => Err(err(
                    origin,
                    format!("{}: `{s}` is not yes or no", l.keyword),
                )),
            }
        };
        match l.keyword.as_str() {
            "hostname" => {
                let v = one()?;
                o.hostname.get_or_insert(at!(v));
            }
            "user" => {
                let v = one()?;
                o.user.get_or_insert(at!(v));
            }
            "port" => {
                let v = one()?;
                let p: u16 = if v == "ssh" {
                    22
                } else {
                    v.parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| err(origin, format!("Port: `{v}` is not a port")))?
                };
                o.port.get_or_insert(at!(p));
            }
            "identityfile" => {
                let v = one()?;
                if !o.identity_files.iter().any(|x| x.value == v) {
                    o.identity_files.push(at!(v));
                }
            }
            "certificatefile" => {
                let v = one()?;
                if !o.certificate_files.iter().any(|x| x.value == v) {
                    o.certificate_files.push(at!(v));
                }
            }
            "identitiesonly" => {
                let v = flag(&one()?)?;
                o.identities_only.get_or_insert(at!(v));
            }
            "identityagent" => {
                let v = one()?;
                o.identity_agent.get_or_insert(at!(v));
            }
            "userknownhostsfile" => {
                let v = args()?;
                if v.is_empty() {
                    return Err(err(origin, "UserKnownHostsFile needs a file"));
                }
                if v.len() > 1 && v.iter().any(|x| x.eq_ignore_ascii_case("none")) {
                    return Err(err(origin, "UserKnownHostsFile none must stand alone"));
                }
                o.user_known_hosts_files.get_or_insert(at!(v));
            }
            "stricthostkeychecking" => {
                let v = one()?;
                let s = match v.to_ascii_lowercase().as_str() {
                    "yes" | "true" => StrictHostKeyChecking::Yes,
                    "no" | "false" | "off" => StrictHostKeyChecking::No,
                    "ask" => StrictHostKeyChecking::Ask,
                    "accept-new" => StrictHostKeyChecking::AcceptNew,
                    _ => {
                        return Err(err(
                            origin,
                            format!(
                                "StrictHostKeyChecking: `{v}` is not yes, no, ask or accept-new"
                            ),
                        ));
                    }
                };
                o.strict_host_key_checking.get_or_insert(at!(s));
            }
            "hashknownhosts" => {
                let v = flag(&one()?)?;
                o.hash_known_hosts.get_or_insert(at!(v));
            }
            "proxyjump" => {
                let v = one()?;
                // A ProxyCommand obtained first wins over a later ProxyJump; a real ProxyJump
                // stands for ProxyCommand too.
                if o.proxy_jump.is_none() && o.proxy_command.is_none() {
                    if !v.eq_ignore_ascii_case("none") {
                        o.proxy_command = Some(at!("none".to_owned()));
                    }
                    o.proxy_jump = Some(at!(v));
                }
            }
            "proxycommand" => {
                if l.rest.is_empty() {
                    return Err(err(origin, "ProxyCommand needs a command"));
                }
                o.proxy_command.get_or_insert(at!(l.rest.clone()));
            }
            "connecttimeout" => {
                let v = one()?;
                let t = if v.eq_ignore_ascii_case("none") {
                    0
                } else {
                    number(&v)?
                };
                o.connect_timeout.get_or_insert(at!(t));
            }
            "serveraliveinterval" => {
                let v = number(&one()?)?;
                o.server_alive_interval.get_or_insert(at!(v));
            }
            "serveralivecountmax" => {
                let s = one()?;
                let v: u64 = s.parse().map_err(|_| {
                    err(
                        origin,
                        format!("ServerAliveCountMax: `{s}` is not a number"),
                    )
                })?;
                o.server_alive_count_max.get_or_insert(at!(v));
            }
            "hostkeyalias" => {
                let v = one()?;
                o.host_key_alias.get_or_insert(at!(v));
            }
            "canonicalizehostname" => {
                let v = one()?;
                if !v.eq_ignore_ascii_case("no") {
                    o.canonicalize.get_or_insert(at!(v));
                }
            }
            "ignoreunknown" => {
                let v = one()?;
                if self.ignore_unknown.is_empty() {
                    self.ignore_unknown.push(v);
                }
            }
            k if crate::keywords::KNOWN.contains(&k) => {}
            k if ignorable => o.ignored.push((origin.clone(), k.to_owned())),
            k => return Err(err(origin, format!("Bad configuration option: {k}"))),
        }
        Ok(())
    }
}

/// A time as OpenSSH's `convtime` reads it: seconds, or numbers with `s`, `m`, `h`, `d`, `w`
/// run together (`1h30m`).
fn seconds(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mult = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(num.parse::<u64>().ok()?.checked_mul(mult)?)?;
        num.clear();
    }
    if !num.is_empty() {
        total = total.checked_add(num.parse().ok()?)?;
    }
    Some(total)
}

/// Every existing path matching `pattern` (`*`, `?` in any component), sorted whole.
pub(crate) fn glob_paths(pattern: &str) -> Vec<PathBuf> {
    let wild = |s: &str| s.contains('*') || s.contains('?');
    if !wild(pattern) {
        let p = PathBuf::from(pattern);
        return if p.is_file() { vec![p] } else { Vec::new() };
    }
    let mut found = vec![PathBuf::from(if pattern.starts_with('/') {
        "/"
    } else {
        "."
    })];
    let parts: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &found {
            if wild(part) {
                let Ok(rd) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                    .filter(|n| pattern::glob(n, part))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            } else {
                next.push(dir.join(part));
            }
        }
        found = next
            .into_iter()
            .filter(|p| if last { p.is_file() } else { p.is_dir() })
            .collect();
    }
    found.sort();
    found
}
