//! A local script run on a host: sent over the command's own channel, never left on disk.

use bytes::Bytes;

use crate::command::{RemoteCommand, quote};

/// Why a local script cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The `#!` line names no interpreter.
    #[error("its `#!` line names no interpreter")]
    NoInterpreter,
    /// The `#!` line is not UTF-8 text.
    #[error("its `#!` line is not UTF-8 text")]
    NotText,
}

impl RemoteCommand {
    /// Builds the command that runs the local script `body` with `args`.
    ///
    /// The script goes on the command's stdin into a temporary file that is unlinked as soon
    /// as it is open, so nothing is left behind, whether the script succeeds, fails or is
    /// killed. The interpreter comes from the script's `#!` line, as the kernel would read
    /// it (the path, then at most one argument), and `/bin/sh` when it has none; it reads
    /// the script from `/dev/fd/4` (its `$0`), so a `noexec` temporary directory does not
    /// matter. The script's stdin is empty. A script that arrives short is not run. Its
    /// size is checked through a descriptor of its own, since where `/dev/fd/N` is a `dup`
    /// (the BSDs, macOS) reading through fd 4 would leave the interpreter at its end.
    ///
    /// # Errors
    ///
    /// [`ScriptError`] when the `#!` line cannot be used.
    pub fn local_script(body: Bytes, args: &[String]) -> Result<Self, ScriptError> {
        let (interpreter, arg) = interpreter(&body)?;
        let size = body.len();
        let mut run = format!("exec {}", quote(&interpreter));
        if let Some(a) = arg {
            run.push(' ');
            run.push_str(&quote(&a));
        }
        run.push_str(" /dev/fd/4");
        for a in args {
            run.push(' ');
            run.push_str(&quote(a));
        }
        let script = format!(
            "t=$(umask 077 && mktemp \"${{TMPDIR:-/tmp}}/fleet-script.XXXXXX\") || \
             {{ echo 'fleet: cannot create a temporary file for the script' >&2; exit 126; }}; \
             exec 3>\"$t\" 4<\"$t\" 5<\"$t\"; rm -f \"$t\"; \
             head -c {size} >&3; exec 3>&-; \
             s=$(($(wc -c <&5))); exec 5<&-; \
             if [ \"$s\" != {size} ]; then echo \"fleet: the script arrived short ($s of {size} bytes), not run\" >&2; exit 126; fi; \
             {run}"
        );
        Ok(RemoteCommand::shell(script).stdin(body))
    }
}

/// The interpreter and its one optional argument from a `#!` line, or `/bin/sh`.
fn interpreter(body: &[u8]) -> Result<(String, Option<String>), ScriptError> {
    let Some(rest) = body.strip_prefix(b"#!") else {
        return Ok(("/bin/sh".into(), None));
    };
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| ScriptError::NotText)?;
    // A script saved with CRLF endings: the kernel would look for `sh\r`; the intent is `sh`.
    let line = line.trim_end_matches('\r').trim_matches([' ', '\t']);
    let (path, arg) = match line.find([' ', '\t']) {
        Some(i) => (&line[..i], Some(line[i..].trim_matches([' ', '\t']))),
        None => (line, None),
    };
    if path.is_empty() {
        return Err(ScriptError::NoInterpreter);
    }
    Ok((
        path.to_owned(),
        arg.filter(|a| !a.is_empty()).map(str::to_owned),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_is_read_as_the_kernel_reads_it() {
        type Case<'a> = (&'a [u8], (&'a str, Option<&'a str>));
        let cases: [Case<'_>; 6] = [
            (b"echo hi\n", ("/bin/sh", None)),
            (b"#!/bin/bash\necho", ("/bin/bash", None)),
            (
                b"#! /usr/bin/env python3 \n",
                ("/usr/bin/env", Some("python3")),
            ),
            (
                b"#!/usr/bin/env -S perl -w\r\n",
                ("/usr/bin/env", Some("-S perl -w")),
            ),
            (b"#!/bin/sh", ("/bin/sh", None)),
            (b"#!/bin/sh\t-eu\n", ("/bin/sh", Some("-eu"))),
        ];
        for (body, (path, arg)) in cases {
            let got = interpreter(body).unwrap();
            assert_eq!(
                (got.0.as_str(), got.1.as_deref()),
                (path, arg),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(interpreter(b"#!\n"), Err(ScriptError::NoInterpreter));
        assert_eq!(interpreter(b"#!  \t\n"), Err(ScriptError::NoInterpreter));
        assert_eq!(interpreter(b"#!/bin/\xff\n"), Err(ScriptError::NotText));
    }

    #[test]
    fn arguments_and_the_interpreter_are_quoted() {
        let cmd = RemoteCommand::local_script(
            Bytes::from_static(b"#!/bin/sh -e\n"),
            &["a b".into(), "$(touch x)".into()],
        )
        .unwrap();
        assert!(
            cmd.script()
                .ends_with("exec /bin/sh -e /dev/fd/4 'a b' '$(touch x)'"),
            "{}",
            cmd.script()
        );
        assert!(cmd.script().contains("head -c 13 "));
    }
}
