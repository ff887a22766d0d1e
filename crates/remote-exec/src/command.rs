//! What to run on a host: a shell script, optional stdin, optional privilege escalation.

use bytes::Bytes;

/// A command to run on a remote host.
///
/// SSH executes one command *string* through the remote user's login shell, not an argv. Build
/// it either from raw shell text ([`RemoteCommand::shell`]) or from a program and arguments that
/// are quoted for you ([`RemoteCommand::new`] + [`RemoteCommand::arg`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    script: String,
    stdin: Option<Bytes>,
    env: Vec<(String, String)>,
    sudo: Option<Sudo>,
}

/// Runs a command as another user through `sudo -n` (never prompts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sudo {
    /// The user to become (`root` when `None`).
    pub user: Option<String>,
}

impl RemoteCommand {
    /// Creates a command from shell text, run as-is by the remote shell.
    pub fn shell(script: impl Into<String>) -> Self {
        Self {
            script: script.into(),
            stdin: None,
            env: Vec::new(),
            sudo: None,
        }
    }

    /// Creates a command running `program`; arguments added with [`RemoteCommand::arg`] are
    /// shell-quoted.
    pub fn new(program: &str) -> Self {
        Self::shell(quote(program))
    }

    /// Appends one shell-quoted argument.
    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.script.push(' ');
        self.script.push_str(&quote(arg.as_ref()));
        self
    }

    /// Appends several shell-quoted arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Sends `data` on the command's stdin, then end-of-file.
    #[must_use]
    pub fn stdin(mut self, data: impl Into<Bytes>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Sets an environment variable for the command (exported by the shell, so sshd's
    /// `AcceptEnv` does not matter).
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Runs the command through `sudo -n`, as `user` or root.
    #[must_use]
    pub fn sudo(mut self, user: Option<String>) -> Self {
        self.sudo = Some(Sudo { user });
        self
    }

    /// Returns the shell text as given, without environment or sudo wrapping.
    pub fn script(&self) -> &str {
        &self.script
    }

    pub(crate) fn stdin_data(&self) -> Option<&Bytes> {
        self.stdin.as_ref()
    }

    /// Renders the full shell text sent to the host: environment exports, then the script,
    /// wrapped in `sudo -n ... sh -c` when asked.
    pub(crate) fn render(&self) -> String {
        let mut body = String::new();
        for (k, v) in &self.env {
            body.push_str("export ");
            body.push_str(k);
            body.push('=');
            body.push_str(&quote(v));
            body.push_str("; ");
        }
        body.push_str(&self.script);
        match &self.sudo {
            None => body,
            Some(Sudo { user }) => {
                let mut s = String::from("sudo -n ");
                if let Some(u) = user {
                    s.push_str("-u ");
                    s.push_str(&quote(u));
                    s.push(' ');
                }
                s.push_str("-- /bin/sh -c ");
                s.push_str(&quote(&body));
                s
            }
        }
    }
}

/// Quotes `s` for a POSIX shell: returned unchanged when it only holds safe characters, else
/// wrapped in single quotes with embedded `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'@' | b'%' | b'+' | b'=' | b','
                )
        });
    if safe {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(input: &str, expected: &str) {
        assert_eq!(quote(input), expected, "quote({input:?})");
    }

    #[test]
    fn quote_table() {
        case("abc", "abc");
        case("/var/www/site-1", "/var/www/site-1");
        case("", "''");
        case("a b", "'a b'");
        case("it's", "'it'\\''s'");
        case("$HOME", "'$HOME'");
        case("a;rm -rf /", "'a;rm -rf /'");
        case("é", "'é'");
    }

    #[test]
    fn new_quotes_arguments() {
        let c = RemoteCommand::new("ls").arg("/tmp/a b").arg("x");
        assert_eq!(c.render(), "ls '/tmp/a b' x");
    }

    #[test]
    fn env_and_sudo_wrap() {
        let c = RemoteCommand::shell("echo $X")
            .env("X", "1 2")
            .sudo(Some("www-data".into()));
        assert_eq!(
            c.render(),
            "sudo -n -u www-data -- /bin/sh -c 'export X='\\''1 2'\\''; echo $X'"
        );
    }
}
