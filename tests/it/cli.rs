//! What a packaged CLI ships: shell completions and man pages, from the parser's own
//! definitions.

use std::process::Command;

use crate::{both, run, stdout};

fn fleet_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleet"));
    c.env_remove("FLEET_INVENTORY").env("NO_COLOR", "1");
    c
}

/// The bash script parses, and completing `fleet mig` and `fleet exec --ti` in a real bash
/// gives what the parser takes.
#[test]
fn bash_completion_completes_commands_and_flags() {
    let o = run(fleet_bin().args(["completions", "bash"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let script = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(script.path(), &o.stdout).expect("write");
    let complete = |words: &str| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _fleet fleet \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.path().display()
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(probe)
            .output()
            .expect("bash");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let got = complete("fleet mig");
    assert_eq!(got.trim(), "migrate", "{got}");
    let got = complete("fleet exec --ti");
    assert!(got.lines().any(|l| l == "--timeout"), "{got}");
    for shell in ["zsh", "fish"] {
        let o = run(fleet_bin().args(["completions", shell]));
        assert_eq!(o.status.code(), Some(0), "{}", both(&o));
        assert!(stdout(&o).contains("migrate"), "{shell}: {}", stdout(&o));
    }
}

/// One page per command, each with its name, synopsis and options; rendered by groff
/// without a warning where groff is installed.
#[test]
fn man_pages_for_every_command() {
    let o = run(fleet_bin().arg("man"));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let page = stdout(&o);
    assert!(page.contains(".TH fleet 1"), "{page}");
    assert!(
        page.contains(".SH NAME") && page.contains(".SH SYNOPSIS"),
        "{page}"
    );

    let dir = tempfile::tempdir().expect("temp");
    let o = run(fleet_bin().arg("man").arg("--dir").arg(dir.path()));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for cmd in [
        "fleet",
        "fleet-exec",
        "fleet-upgrade",
        "fleet-migrate-release",
        "fleet-inventory-convert",
        "fleet-runs-show",
    ] {
        let p = dir.path().join(format!("{cmd}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.contains(&format!(".TH {cmd} 1")), "{text}");
    }
    let exec = std::fs::read_to_string(dir.path().join("fleet-exec.1")).expect("exec page");
    assert!(exec.contains("timeout"), "{exec}");
    if std::path::Path::new("/usr/bin/groff").exists() {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(dir.path().join("fleet-exec.1"))
            .output()
            .expect("groff");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
