//! User-written procedures: a TOML file of shell steps and built-in steps, run with the same
//! batches, maintenance gating, journal, locks and undo chain as the built-in procedure.
//!
//! ```toml
//! name = "security update"
//!
//! [[steps]]
//! kind = "maintenance"        # record the prior state, maintenance on; restored at the end
//!
//! [[steps]]
//! kind = "backup"             # dump every database of the site group, verified
//!
//! [[steps]]
//! name = "drush-updb"
//! kind = "shell"
//! scope = "site"              # site (default): once per site; host: once per host
//! run = "{drush} -r {root} -l {uri} updb -y"
//! verify = "{drush} -r {root} -l {uri} updb-status | grep -q 'No database updates'"
//! undo = ""                   # optional: run when a later step fails
//! as_web_user = true          # run as the site's web user (or `become = "USER"`: as USER,
//!                             # any scope; through runuser when the host's own `become` made
//!                             # the session root, else `sudo -n -u USER`)
//! touches_db = true           # on failure, restore the site's databases from the backup
//!
//! [[steps]]
//! kind = "code-swap"          # move the CiviCRM code out, unpack --tarball, check the version
//!
//! [[steps]]
//! kind = "verify"             # cv status shows the tarball's version
//! ```
//!
//! Placeholders in `run`, `verify` and `undo`: `{root}`, `{uri}`, `{site}`, `{host}`,
//! `{web_user}`, `{backup_dir}`, `{run_dir}`, `{drush}`, `{cv}`, `{civicrm_root}`,
//! `{civi_db}`, `{target}`. `{{` and `}}` are literal braces. No value is ever spliced raw:
//! outside quotes a placeholder is the value as one word; inside quotes or a here-document
//! it is the value shell-quoted, so a shell that reads that text again (`sh -c '...'`,
//! `su -c "..."`) also gets one word (see `placeholder.rs`).

use std::path::Path;

use serde::Deserialize;

use crate::error::PlaybookError;

/// A procedure read from a TOML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playbook {
    /// Its name (for the journal and messages).
    pub name: String,
    /// The file it was read from.
    pub source: std::path::PathBuf,
    /// Its text, recorded in the run's journal: `fleet resume` goes on with exactly the
    /// procedure the run started with, even if the file changed or is gone since.
    pub text: String,
    /// Steps in order.
    pub steps: Vec<Step>,
}

/// One step of a [`Playbook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Name (journal, messages).
    pub name: String,
    /// What it does.
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// Record the prior maintenance state and turn maintenance on; it is restored after the
    /// last step, and by the undo chain on failure.
    Maintenance,
    /// Dump every database of the site group, verified complete.
    Backup,
    /// Move the CiviCRM code out and unpack the release tarball in its place.
    CodeSwap,
    /// Check that `cv status` shows the tarball's version with no pending upgrade.
    Verify,
    /// A shell command.
    Shell(ShellStep),
}

/// A shell step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellStep {
    /// Once per site or once per host.
    pub per_host: bool,
    /// The command (with placeholders).
    pub run: String,
    /// A probe that must exit 0 afterwards.
    pub verify: Option<String>,
    /// Run when a later step fails.
    pub undo: Option<String>,
    /// Run as the site's web user.
    pub as_web_user: bool,
    /// Run as this user (`become = "USER"`).
    pub become_user: Option<String>,
    /// Whether it changes the databases (then a failure restores them from the backup).
    pub touches_db: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    name: Option<String>,
    #[serde(default)]
    steps: Vec<toml::Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    kind: String,
    scope: Option<String>,
    run: Option<String>,
    verify: Option<String>,
    undo: Option<String>,
    #[serde(default)]
    as_web_user: bool,
    #[serde(rename = "become")]
    become_: Option<String>,
    #[serde(default)]
    touches_db: bool,
}

/// Why `u` is not a user name a step may become: the portable set (letters, digits, `.`,
/// `_`, `-`), no leading `-` (runuser and sudo would read an option), at most 32 characters.
fn bad_user(u: &str) -> Option<&'static str> {
    if u.is_empty() || u.len() > 32 {
        Some("a user name has 1 to 32 characters")
    } else if u.starts_with('-') {
        Some("a user name does not start with `-`")
    } else if !u
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("a user name has only ASCII letters, digits, `.`, `_` and `-`")
    } else {
        None
    }
}

impl Playbook {
    /// Reads and checks a playbook file.
    ///
    /// # Errors
    ///
    /// [`PlaybookError::Plan`] naming the file, line and column of what is wrong.
    pub fn load(path: &Path) -> Result<Playbook, PlaybookError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PlaybookError::Plan(format!("cannot read playbook `{}`: {e}", path.display()))
        })?;
        Self::parse(&text, path)
    }

    /// Parses playbook `text`; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// As [`Playbook::load`].
    pub fn parse(text: &str, origin: &Path) -> Result<Playbook, PlaybookError> {
        Playbook::parse_with(text, origin, true)
    }

    /// A playbook a run recorded, for `fleet resume`: read as [`Playbook::parse`] does,
    /// except that a shell step may keep a built-in step's name, which releases before the
    /// rule allowed; such a run goes on with the playbook it started with.
    pub(crate) fn parse_recorded(text: &str, origin: &Path) -> Result<Playbook, PlaybookError> {
        Playbook::parse_with(text, origin, false)
    }

    fn parse_with(text: &str, origin: &Path, own_names: bool) -> Result<Playbook, PlaybookError> {
        let at = |offset: usize, msg: String| {
            PlaybookError::Plan(crate::error::located(origin, text, offset, &msg))
        };
        let raw: RawPlaybook = toml::from_str(text).map_err(|e| {
            at(
                e.span().map_or(0, |s| s.start),
                e.message()
                    .replace("unknown field", "unknown key")
                    .replace('\n', " "),
            )
        })?;
        if raw.steps.is_empty() {
            return Err(at(0, "a playbook needs at least one `[[steps]]`".into()));
        }
        let mut steps = Vec::new();
        let mut backup_seen = false;
        let mut names = std::collections::BTreeSet::new();
        for s in raw.steps {
            let span = s.span().start;
            let r = s.into_inner();
            let shell_keys = r.run.is_some()
                || r.verify.is_some()
                || r.undo.is_some()
                || r.scope.is_some()
                || r.become_.is_some();
            let kind = match r.kind.as_str() {
                "maintenance" => StepKind::Maintenance,
                "backup" => {
                    backup_seen = true;
                    StepKind::Backup
                }
                "code-swap" => StepKind::CodeSwap,
                "verify" => StepKind::Verify,
                "shell" => {
                    let run = r
                        .run
                        .filter(|c| !c.trim().is_empty())
                        .ok_or_else(|| at(span, "a `shell` step needs `run`".into()))?;
                    let per_host = match r.scope.as_deref() {
                        None | Some("site") => false,
                        Some("host") => true,
                        Some(other) => {
                            return Err(at(
                                span,
                                format!("invalid `scope` `{other}`, expected `site` or `host`"),
                            ));
                        }
                    };
                    if r.touches_db && !backup_seen {
                        return Err(at(
                            span,
                            "a step with `touches_db = true` must come after a `backup` step"
                                .into(),
                        ));
                    }
                    if per_host && (r.touches_db || r.as_web_user) {
                        return Err(at(
                            span,
                            "`touches_db` and `as_web_user` need `scope = \"site\"`".into(),
                        ));
                    }
                    if let Some(u) = &r.become_ {
                        if r.as_web_user {
                            return Err(at(
                                span,
                                "`become` and `as_web_user` in one step: keep one".into(),
                            ));
                        }
                        if let Some(why) = bad_user(u) {
                            return Err(at(
                                span,
                                format!("invalid `become` `{}`: {why}", u.escape_debug()),
                            ));
                        }
                    }
                    for t in [Some(&run), r.verify.as_ref(), r.undo.as_ref()]
                        .into_iter()
                        .flatten()
                    {
                        check_placeholders(t).map_err(|m| at(span, m))?;
                    }
                    StepKind::Shell(ShellStep {
                        per_host,
                        run,
                        verify: r.verify.filter(|v| !v.trim().is_empty()),
                        undo: r.undo.filter(|v| !v.trim().is_empty()),
                        as_web_user: r.as_web_user,
                        become_user: r.become_,
                        touches_db: r.touches_db,
                    })
                }
                other => {
                    return Err(at(
                        span,
                        format!(
                            "unknown step kind `{other}`, expected `maintenance`, `backup`, `code-swap`, `verify` or `shell`"
                        ),
                    ));
                }
            };
            if !matches!(kind, StepKind::Shell(_)) && shell_keys {
                return Err(at(
                    span,
                    format!(
                        "`run`, `verify`, `undo`, `scope` and `become` belong to `shell` steps, not `{}`",
                        r.kind
                    ),
                ));
            }
            let name = r.name.unwrap_or_else(|| r.kind.clone());
            // A shell step's name (and its probe's and undo's) is what the journal records
            // for it; recovery reads fleet's own step names there, so none may be one.
            if own_names
                && matches!(kind, StepKind::Shell(_))
                && let Some(own) = [
                    name.clone(),
                    format!("{name}-verify"),
                    format!("{name}-undo"),
                ]
                .iter()
                .find_map(|n| crate::vocab::BuiltinStep::parse(n))
            {
                return Err(at(
                    span,
                    format!(
                        "a shell step cannot be named `{name}`: `{own}` is one of fleet's own steps; give it another `name`"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(at(
                    span,
                    format!("two steps are named `{name}`; give them distinct `name`s"),
                ));
            }
            steps.push(Step { name, kind });
        }
        Ok(Playbook {
            source: origin.to_owned(),
            text: text.to_owned(),
            name: raw.name.unwrap_or_else(|| {
                origin
                    .file_stem()
                    .map_or("playbook".into(), |s| s.to_string_lossy().into_owned())
            }),
            steps,
        })
    }

    /// Whether a step needs the release tarball.
    pub fn needs_tarball(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.kind, StepKind::CodeSwap | StepKind::Verify))
    }
}

const PLACEHOLDERS: &[&str] = &[
    "root",
    "uri",
    "site",
    "host",
    "web_user",
    "backup_dir",
    "run_dir",
    "drush",
    "cv",
    "civicrm_root",
    "civi_db",
    "target",
];

fn check_placeholders(t: &str) -> Result<(), String> {
    let mut rest = t.replace("{{", "").replace("}}", "");
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{t}`"))?;
        let name = &after[..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` in `{t}`; known: {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        rest = after[end + 1..].to_owned();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Playbook, PlaybookError> {
        Playbook::parse(t, Path::new("pb.toml"))
    }

    #[test]
    fn parses_every_kind() {
        let pb = parse(
            "name = \"x\"\n[[steps]]\nkind = \"maintenance\"\n[[steps]]\nkind = \"backup\"\n[[steps]]\nname = \"clear\"\nkind = \"shell\"\nrun = \"rm -rf {root}/cache\"\ntouches_db = true\n[[steps]]\nkind = \"code-swap\"\n[[steps]]\nkind = \"verify\"\n",
        )
        .unwrap();
        assert_eq!(pb.steps.len(), 5);
        assert!(pb.needs_tarball());
        assert!(matches!(&pb.steps[2].kind, StepKind::Shell(s) if s.touches_db && !s.per_host));
    }

    #[track_caller]
    fn fails(t: &str, needle: &str) {
        let e = parse(t).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
        assert!(e.starts_with("pb.toml:"), "{e}");
    }

    #[test]
    fn errors_name_the_place() {
        fails(
            "[[steps]]\nkind = \"teleport\"\n",
            "unknown step kind `teleport`",
        );
        fails("[[steps]]\nkind = \"shell\"\n", "needs `run`");
        fails(
            "[[steps]]\nkind = \"shell\"\nrun = \"x\"\ntouches_db = true\n",
            "after a `backup`",
        );
        fails(
            "[[steps]]\nkind = \"shell\"\nrun = \"echo {nope}\"\n",
            "unknown placeholder `{nope}`",
        );
        fails(
            "[[steps]]\nkind = \"backup\"\nrun = \"x\"\n",
            "belong to `shell` steps",
        );
        fails(
            "[[steps]]\nname = \"upgrade-db\"\nkind = \"shell\"\nrun = \"x\"\n",
            "`upgrade-db` is one of fleet's own steps",
        );
        fails(
            "[[steps]]\nkind = \"maintenance\"\n[[steps]]\nname = \"flush\"\nkind = \"shell\"\nrun = \"x\"\n",
            "`flush` is one of fleet's own steps",
        );
        fails(
            "[[steps]]\nkind = \"backup\"\nfoo = 1\n",
            "unknown key `foo`",
        );
        fails(
            "[[steps]]\nkind = \"shell\"\nrun = \"x\"\nbecome = \"-u\"\n",
            "invalid `become` `-u`: a user name does not start with `-`",
        );
        fails(
            "[[steps]]\nkind = \"shell\"\nrun = \"x\"\nbecome = \"a b\"\n",
            "invalid `become` `a b`: a user name has only ASCII letters",
        );
        fails(
            "[[steps]]\nkind = \"shell\"\nrun = \"x\"\nbecome = \"www-data\"\nas_web_user = true\n",
            "`become` and `as_web_user` in one step: keep one",
        );
        fails("name = \"x\"\n", "at least one");
        fails(
            "[[steps]]\nkind = \"backup\"\n[[steps]]\nkind = \"backup\"\n",
            "two steps are named `backup`",
        );
    }

    #[test]
    fn example_file_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/playbook.example.toml"
        ));
        let pb = Playbook::load(path).unwrap();
        assert_eq!(pb.name, "drupal core security update");
        assert_eq!(pb.steps.len(), 5);
        assert!(!pb.needs_tarball());
    }
}
