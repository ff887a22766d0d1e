//! Running every command of a session as another user (`become`): the wrapper around each
//! script, and the gate on its stderr that answers the password prompt and opens stdin.
//!
//! The password never goes into a command line (where `ps` on the host would show it) nor
//! into any output: it is written on the channel's stdin, and only after the method asked for
//! it, so a method that does not ask (a `NOPASSWD` rule, a login user who already is root for
//! `su`) never gets it mixed into the command's own input. The script starts by printing an
//! "open" marker with a fresh nonce on stderr once it runs as the new user; until the gate
//! has seen that marker no input is sent, and the channel's end without it is a become
//! failure with the method's own words (`sudo: a password is required`,
//! `su: Authentication failure`), never a command result. A second prompt after the password
//! was sent means it was refused: stdin is closed at once, so the method gives up instead of
//! waiting at its prompt.
//!
//! `sudo` reads the password from stdin with `-S` and prints the prompt fleet chooses (`-p`),
//! which carries the nonce. util-linux `su` reads it from stdin too, with PAM's prompt, which
//! is `Password: ` under `LC_ALL=C`. `doas` reads a password only from a terminal, so it is
//! used with `-n`: the login user needs a `nopass` rule.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::command::quote;
#[cfg(test)]
use crate::output::Capture;
use crate::output::Push;

/// A password held in memory: zeroed when the last clone is dropped, never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Self(Arc::new(Zeroizing::new(value)))
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Eq for Secret {}

/// How commands are run as another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BecomeMethod {
    /// `sudo -S` (password on stdin) or `sudo -n` (none given).
    Sudo,
    /// `doas -n`: doas reads passwords only from a terminal.
    Doas,
    /// util-linux `su`, the target user's password on stdin.
    Su,
}

impl BecomeMethod {
    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BecomeMethod::Sudo => "sudo",
            BecomeMethod::Doas => "doas",
            BecomeMethod::Su => "su",
        }
    }
}

/// Run every command of a session as `user`, through `method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Become {
    /// The user to become.
    pub user: String,
    /// How.
    pub method: BecomeMethod,
    /// The password `method` asks for, if it asks.
    pub password: Option<Secret>,
}

impl Become {
    /// Why this cannot work at all, before anything is run: `doas` cannot take a password
    /// without a terminal.
    pub(crate) fn unusable(&self) -> Option<String> {
        (self.method == BecomeMethod::Doas && self.password.is_some()).then(|| {
            "doas reads a password only from a terminal: give the login user a `permit nopass` rule in doas.conf, or use become_method `sudo` or `su`".to_owned()
        })
    }

    /// `script` wrapped to run as the new user, opening with the gate's marker.
    pub(crate) fn wrap(&self, script: &str, gate: &Gate) -> String {
        let body = format!(
            "printf '\\036fleet-become-{} %s\\n' \"$$\" >&2; {script}",
            gate.nonce
        );
        let user = quote(&self.user);
        match (self.method, &self.password) {
            (BecomeMethod::Sudo, Some(_)) => format!(
                "sudo -S -p '[fleet-become:{}] ' -u {user} -- /bin/sh -c {}",
                gate.nonce,
                quote(&body)
            ),
            (BecomeMethod::Sudo, None) => {
                format!("sudo -n -u {user} -- /bin/sh -c {}", quote(&body))
            }
            (BecomeMethod::Doas, _) => {
                format!("doas -n -u {user} -- /bin/sh -c {}", quote(&body))
            }
            // `-s`: the web user's shell is often nologin. `LC_ALL=C` for PAM's prompt, then
            // unset again for the command.
            (BecomeMethod::Su, _) => format!(
                "LC_ALL=C su -s /bin/sh -c {} {user}",
                quote(&format!("unset LC_ALL; {body}"))
            ),
        }
    }

    /// The gate for one command run through [`Become::wrap`].
    pub(crate) fn gate(&self) -> Gate {
        Gate::new(self)
    }
}

/// Most stderr held while waiting for the open marker: a method's own messages are short;
/// past this, the oldest bytes are passed on (the search goes on in the rest).
const HOLD_LIMIT: usize = 64 * 1024;

/// Digits of a pid (`u32`): at most 10.
const MAX_PID_DIGITS: usize = 10;

/// Watches a wrapped command's stderr until it runs as the new user.
pub(crate) struct Gate {
    nonce: String,
    prompt: Vec<u8>,
    /// `\x1efleet-become-<nonce> `, followed on the wire by the inner shell's pid and `\n`.
    open_marker: Vec<u8>,
    held: Vec<u8>,
    /// Prompts seen so far, and how many of them were answered.
    pub(crate) prompts: usize,
    pub(crate) answered: usize,
    pub(crate) open: bool,
    /// The pid of the shell that runs as the new user: `su` starts a session of its own for
    /// it, so killing the command means killing that group too.
    pub(crate) inner_pid: Option<u32>,
    /// A prompt came and there was no password to give.
    pub(crate) none_given: bool,
}

impl Gate {
    fn new(b: &Become) -> Self {
        let nonce = crate::marker::nonce();
        let prompt = match b.method {
            BecomeMethod::Sudo => format!("[fleet-become:{nonce}] ").into_bytes(),
            BecomeMethod::Su => b"Password: ".to_vec(),
            BecomeMethod::Doas => Vec::new(),
        };
        let open_marker = format!("\x1efleet-become-{nonce} ").into_bytes();
        Self {
            nonce,
            prompt,
            open_marker,
            held: Vec::new(),
            prompts: 0,
            answered: 0,
            open: false,
            inner_pid: None,
            none_given: false,
        }
    }

    /// Takes the next stderr bytes (after the pgid marker is out): held until the open
    /// marker, then passed on. Prompts are counted and taken out.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut impl Push) {
        if self.open {
            out.push(data);
            return;
        }
        self.held.extend_from_slice(data);
        loop {
            let prompt = (!self.prompt.is_empty())
                .then(|| find(&self.held, &self.prompt))
                .flatten();
            let open = find(&self.held, &self.open_marker);
            match (prompt, open) {
                (Some(p), o) if o.is_none_or(|o| p < o) => {
                    self.held.drain(p..p + self.prompt.len());
                    self.prompts += 1;
                }
                (_, Some(o)) => {
                    let digits = o + self.open_marker.len();
                    let Some(nl) = self.held[digits..].iter().position(|&b| b == b'\n') else {
                        if self.held.len() - digits > MAX_PID_DIGITS {
                            // Not ours after all (no pid): output up to and with its first
                            // byte, and look further on.
                            out.push(&self.held[..=o]);
                            self.held.drain(..=o);
                            continue;
                        }
                        break;
                    };
                    let pid = std::str::from_utf8(&self.held[digits..digits + nl])
                        .ok()
                        .and_then(|s| s.parse().ok());
                    out.push(&self.held[..o]);
                    out.push(&self.held[digits + nl + 1..]);
                    self.held.clear();
                    self.inner_pid = pid;
                    self.open = true;
                    return;
                }
                _ => break,
            }
        }
        let keep = self.open_marker.len() + MAX_PID_DIGITS + self.prompt.len();
        if self.held.len() > HOLD_LIMIT + keep {
            let pass = self.held.len() - keep;
            out.push(&self.held[..pass]);
            self.held.drain(..pass);
        }
    }

    /// A prompt waits for its answer.
    pub(crate) fn wants_password(&self) -> bool {
        !self.open && self.prompts > self.answered
    }

    /// Why the command never ran as the new user, in the method's own words.
    pub(crate) fn failure(&self) -> String {
        let text = String::from_utf8_lossy(&self.held);
        let said: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let said = if said.is_empty() {
            "it exited without running the command".to_owned()
        } else {
            said.join("; ")
        };
        if self.none_given {
            format!("it asks for a password and none was given ({said})")
        } else if self.answered > 0 && self.prompts > 1 {
            format!("the password was refused ({said})")
        } else if self.answered > 0 {
            format!("after the password: {said}")
        } else {
            said
        }
    }

    /// Ends the stream: what was held is the command's stderr after all.
    pub(crate) fn finish(&mut self, out: &mut impl Push) {
        if !self.open {
            out.push(&self.held);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sudo(password: bool) -> Become {
        Become {
            user: "root".into(),
            method: BecomeMethod::Sudo,
            password: password.then(|| Secret::new("pw".into())),
        }
    }

    #[test]
    fn secrets_are_never_shown() {
        let b = sudo(true);
        assert!(!format!("{b:?}").contains("pw"), "{b:?}");
        let g = b.gate();
        let w = b.wrap("id -un", &g);
        assert!(!w.contains("pw"), "{w}");
        assert!(w.starts_with("sudo -S -p '[fleet-become:"), "{w}");
    }

    /// The script stays one quoted word, whatever quotes it holds: run through a stand-in
    /// for the method that only prints what `/bin/sh -c` would get.
    #[test]
    fn each_method_passes_the_script_as_one_word() {
        let script = "echo 'a b' \"$X\"";
        for method in [BecomeMethod::Sudo, BecomeMethod::Doas, BecomeMethod::Su] {
            let b = Become {
                user: "www-data".into(),
                method,
                password: None,
            };
            let g = b.gate();
            let w = b.wrap(script, &g);
            let stand_in = "sudo() { while [ \"$1\" != -c ]; do shift; done; printf %s \"$2\"; }; \
                doas() { sudo \"$@\"; }; su() { sudo \"$@\"; }";
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{stand_in}; {w}"))
                .output()
                .unwrap();
            let got = String::from_utf8(out.stdout).unwrap();
            let want = format!(
                "printf '\\036fleet-become-{} %s\\n' \"$$\" >&2; {script}",
                g.nonce
            );
            match method {
                BecomeMethod::Su => assert_eq!(got, format!("unset LC_ALL; {want}")),
                _ => assert_eq!(got, want),
            }
        }
    }

    #[test]
    fn gate_counts_prompts_and_opens_on_the_marker_split_anywhere() {
        let b = sudo(true);
        let mut g = b.gate();
        let mut out = Capture::new(1024);
        let stream = [
            g.prompt.clone(),
            b"Sorry, try again.\n".to_vec(),
            g.prompt.clone(),
            g.open_marker.clone(),
            b"4242\n".to_vec(),
            b"cmd err\n".to_vec(),
        ]
        .concat();
        for chunk in stream.chunks(3) {
            g.feed(chunk, &mut out);
            if g.wants_password() {
                g.answered += 1;
            }
        }
        g.finish(&mut out);
        assert!(g.open);
        assert_eq!(g.inner_pid, Some(4242));
        assert_eq!(g.prompts, 2);
        assert_eq!(out.to_string_lossy(), "Sorry, try again.\ncmd err\n");
    }

    #[test]
    fn failure_is_said_in_the_methods_words() {
        let b = sudo(true);
        let mut g = b.gate();
        let mut out = Capture::new(1024);
        let p = g.prompt.clone();
        g.feed(&p, &mut out);
        g.answered = 1;
        g.feed(
            &[
                b"Sorry, try again.\n".as_slice(),
                &p,
                b"sudo: no password was provided\nsudo: 1 incorrect password attempt\n",
            ]
            .concat(),
            &mut out,
        );
        // The second prompt wants an answer: the session ends stdin instead.
        assert!(!g.open && g.wants_password());
        g.answered = 2;
        assert_eq!(g.prompts, 2);
        assert_eq!(
            g.failure(),
            "the password was refused (Sorry, try again.; sudo: no password was provided; sudo: 1 incorrect password attempt)"
        );
        let mut g = sudo(false).gate();
        g.feed(b"sudo: a password is required\n", &mut out);
        assert_eq!(g.failure(), "sudo: a password is required");
    }

    #[test]
    fn doas_with_a_password_is_refused_up_front() {
        let b = Become {
            user: "root".into(),
            method: BecomeMethod::Doas,
            password: Some(Secret::new("x".into())),
        };
        assert!(b.unusable().unwrap().contains("permit nopass"));
        assert_eq!(sudo(true).unusable(), None);
    }
}
