//! Logging in as a person and becoming root, as on real servers: `sudo` with a password from
//! a file or without one, `su`, a refused password, password logins; and no password where
//! it must never be (`ps` on the host, `--json`, `-vvv` logs, the journal).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fleet_lab::TestLab;
use fleet_lab::users::{NOPASSWD, OPERATOR};
use serde_json::Value;

use crate::upgrade::{FROM, TO, Upgrade};
use crate::{both, fleet, run, stderr, stdout};

/// The lab operator's password (the lab's users are made by root, as in CI).
pub(crate) fn operator_password() -> String {
    fleet_lab::users::ensure()
        .expect("the lab's login users (tests run as root)")
        .operator_password
}

pub(crate) fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).expect("password file");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p
}

/// The lab's inventory with `defaults` in place of its root login, and `hosts` lines added
/// to each named host's table; written beside it as `name`.
pub(crate) fn inventory(
    inventory: &Path,
    name: &str,
    defaults: &str,
    hosts: &[(&str, &str)],
) -> PathBuf {
    let mut text = std::fs::read_to_string(inventory).expect("lab inventory");
    assert!(text.contains("user = \"root\"\n"), "{text}");
    text = text.replacen("user = \"root\"\n", &format!("{defaults}\n"), 1);
    for (host, lines) in hosts {
        let table = format!("[hosts.{host}]\n");
        assert!(text.contains(&table), "{table} in {text}");
        text = text.replacen(&table, &format!("{table}{lines}\n"), 1);
    }
    let p = inventory.with_file_name(name);
    std::fs::write(&p, text).expect("inventory");
    p
}

/// The inventory with no key that exists, so only a password can log in.
pub(crate) fn without_keys(inv: &Path) {
    let text = std::fs::read_to_string(inv).expect("inventory");
    let text: Vec<&str> = text
        .lines()
        .map(|l| {
            if l.starts_with("identity_file") {
                "identity_file = \"absent_key\""
            } else {
                l
            }
        })
        .collect();
    std::fs::write(inv, text.join("\n") + "\n").expect("inventory");
}

/// Every process's command line on this machine (the lab's hosts are its processes),
/// sampled until `stop`.
pub(crate) fn watch_ps(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            if let Ok(o) = std::process::Command::new("ps")
                .args(["-eo", "args"])
                .output()
            {
                seen.extend(
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_owned),
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        seen
    })
}

fn json_lines(o: &std::process::Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn sudo_with_a_password_from_a_file_without_one_and_refused() {
    let password = operator_password();
    let lab = TestLab::start(3);
    let dir = lab.temp_dir();
    secret_file(dir, "op.pass", &password);
    secret_file(dir, "bad.pass", "not-the-password");
    let inv = inventory(
        &lab.inventory_path(),
        "become.toml",
        &format!("user = \"{OPERATOR}\"\nbecome = true\nbecome_password_file = \"op.pass\""),
        &[
            // NOPASSWD: the password is never asked for, so never sent.
            ("h02", &format!("user = \"{NOPASSWD}\"")),
            ("h03", "become_password_file = \"bad.pass\""),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let ps = watch_ps(stop.clone());
    let o = run(fleet(&inv).args([
        "-vvv",
        "exec",
        "--json",
        "--",
        "id -un; echo \"$FLEET_HOST\"; sleep 0.5",
    ]));
    stop.store(true, Ordering::SeqCst);
    let ps = ps.join().expect("ps watcher");
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let lines = json_lines(&o);
    for (i, host) in ["h01", "h02"].iter().enumerate() {
        assert_eq!(lines[i]["host"], *host);
        assert_eq!(lines[i]["exit_code"], 0, "{}", both(&o));
        assert_eq!(
            lines[i]["stdout"],
            format!("root\n{host}\n"),
            "{}",
            both(&o)
        );
        assert_eq!(lines[i]["stderr"], "", "{}", both(&o));
    }
    assert_eq!(lines[2]["host"], "h03");
    assert_eq!(lines[2]["error_kind"], "become", "{}", both(&o));
    let err = lines[2]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("cannot become `root` with sudo")
            && err.contains("the password was refused")
            && err.contains("incorrect password attempt"),
        "{err}"
    );
    assert!(
        ps.iter().any(|l| l.contains("sudo -S -p")),
        "ps saw the run"
    );
    for (place, text) in [
        ("ps", ps.join("\n")),
        ("stdout", stdout(&o)),
        ("-vvv stderr", stderr(&o)),
    ] {
        assert!(!text.contains(&password), "the password in {place}");
        assert!(!text.contains("not-the-password"), "a password in {place}");
    }
}

#[test]
fn a_missing_password_is_said_at_once() {
    let lab = TestLab::start(1);
    let inv = inventory(
        &lab.inventory_path(),
        "nopass.toml",
        &format!("user = \"{OPERATOR}\"\nbecome = true"),
        &[],
    );
    let o = run(fleet(&inv).args(["exec", "--", "id -un"]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(
        stdout(&o).contains("cannot become `root` with sudo")
            && stdout(&o).contains("sudo: a password is required"),
        "{}",
        both(&o)
    );
    // Asking needs a terminal; the tests have none.
    let o = run(fleet(&inv).args(["--ask-become-pass", "exec", "--", "id -un"]));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains("`--ask-become-pass` needs a terminal to ask on"),
        "{}",
        both(&o)
    );
    // A file others can read is refused before anything connects.
    let f = secret_file(lab.temp_dir(), "open.pass", "x");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let inv = inventory(
        &lab.inventory_path(),
        "open.toml",
        &format!("user = \"{OPERATOR}\"\nbecome = true\nbecome_password_file = \"open.pass\""),
        &[],
    );
    let o = run(fleet(&inv).args(["exec", "--", "id -un"]));
    assert_eq!(o.status.code(), Some(2), "{}", both(&o));
    assert!(
        stderr(&o).contains(&format!(
            "host `h01`: cannot use `{}` (its `become_password_file`): its mode is 0644: a password file must be readable by its owner only (chmod 600)",
            f.display()
        )),
        "{}",
        both(&o)
    );
}

#[test]
fn su_as_root_asks_nothing_and_with_the_target_users_password() {
    let password = operator_password();
    let lab = TestLab::start(2);
    secret_file(lab.temp_dir(), "op.pass", &password);
    let inv = inventory(
        &lab.inventory_path(),
        "su.toml",
        &format!("user = \"root\"\nbecome = \"{OPERATOR}\"\nbecome_method = \"su\""),
        &[(
            "h02",
            &format!("user = \"{NOPASSWD}\"\nbecome_password_file = \"op.pass\""),
        )],
    );
    let o = run(fleet(&inv).args(["exec", "--json", "--", "id -un; echo \"$FLEET_HOST\""]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for (line, host) in json_lines(&o).iter().zip(["h01", "h02"]) {
        assert_eq!(
            line["stdout"],
            format!("{OPERATOR}\n{host}\n"),
            "{}",
            both(&o)
        );
    }
}

#[test]
fn password_login_right_and_wrong() {
    let password = operator_password();
    let lab = TestLab::start(2);
    let inv = inventory(
        &lab.inventory_path(),
        "password.toml",
        &format!("user = \"{OPERATOR}\"\npassword_env = \"FLEET_TEST_PW\""),
        &[],
    );
    // No key that exists: only the password can log in.
    without_keys(&inv);

    let o = run(fleet(&inv)
        .env("FLEET_TEST_PW", &password)
        .args(["-vvv", "exec", "--json", "--", "id -un"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for line in json_lines(&o) {
        assert_eq!(line["stdout"], format!("{OPERATOR}\n"), "{}", both(&o));
    }
    assert!(!both(&o).contains(&password), "the password in the output");

    let o = run(fleet(&inv)
        .env("FLEET_TEST_PW", "wrong-password")
        .args(["exec", "--json", "--", "id -un"]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for line in json_lines(&o) {
        assert_eq!(line["error_kind"], "auth", "{}", both(&o));
        assert!(
            line["error"]
                .as_str()
                .is_some_and(|e| e.contains("password (rejected)")),
            "{}",
            both(&o)
        );
    }
    let o = run(fleet(&inv)
        .env_remove("FLEET_TEST_PW")
        .args(["exec", "--", "id -un"]));
    assert!(
        stderr(&o).contains(
            "host `h01`: environment variable `FLEET_TEST_PW` (its `password_env`) is not set"
        ),
        "{}",
        both(&o)
    );
}

/// The whole upgrade logged in as a person who becomes root: with sudo and a password from a
/// file (h01), with NOPASSWD sudo (h02); the host whose password is refused (h03) fails
/// before anything is touched, and the others go on. No password in the journal.
#[test]
fn upgrade_as_an_operator_who_sudoes_with_a_password() {
    let password = operator_password();
    let u = Upgrade::new(3, 2);
    let dir = u.lab.temp_dir();
    secret_file(dir, "op.pass", &password);
    secret_file(dir, "bad.pass", "not-the-password");
    let inv = inventory(
        &u.lab.inventory_path(),
        "operator.toml",
        &format!("user = \"{OPERATOR}\"\nbecome = true\nbecome_password_file = \"op.pass\""),
        &[
            // NOPASSWD sudo: the password file it inherits is never used.
            ("h02", &format!("user = \"{NOPASSWD}\"")),
            ("h03", "become_password_file = \"bad.pass\""),
        ],
    );
    let mut c = fleet(&inv);
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["upgrade", "--tarball"])
        .arg(u.lab.release_tarball(TO))
        .args(["--batches", "1,100%", "--max-fail", "1"]);
    let o = run(&mut c);
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    for s in &u.sites {
        let want = if s.host == "h03" { FROM } else { TO };
        assert_eq!(
            s.code_version(),
            want,
            "{}/{}: {}",
            s.host,
            s.name,
            both(&o)
        );
        assert_eq!(s.db_version(), want, "{}/{}", s.host, s.name);
        assert_eq!(
            s.maintenance(),
            crate::upgrade::prior_maintenance(s),
            "{}/{} maintenance",
            s.host,
            s.name
        );
    }
    assert!(u.calls("h03").is_empty(), "nothing ran on h03");
    assert!(
        stderr(&o).contains("the password was refused"),
        "{}",
        both(&o)
    );
    let mut journal_bytes = Vec::new();
    for e in std::fs::read_dir(u.state.path())
        .expect("state dir")
        .flatten()
    {
        journal_bytes.extend(std::fs::read(e.path()).unwrap_or_default());
    }
    assert!(!journal_bytes.is_empty(), "a journal");
    let needle = password.as_bytes();
    assert!(
        !journal_bytes.windows(needle.len()).any(|w| w == needle),
        "the password in the journal"
    );
}

/// Not a test of fleet: the lab's operator really cannot become root without the password
/// (so the tests above prove fleet gave it).
#[test]
fn the_lab_operator_needs_the_password() {
    operator_password();
    let out = std::process::Command::new("runuser")
        .args(["-u", OPERATOR, "--", "sudo", "-n", "true"])
        .output()
        .expect("runuser");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a password is required"),
        "{out:?}"
    );
}

/// A command that runs out of time is killed on the host, whether sudo runs it as root or
/// su (which gives it a session of its own) as another user.
#[test]
fn a_timed_out_command_is_killed_under_sudo_and_su() {
    operator_password();
    let lab = TestLab::start(2);
    let inv = inventory(
        &lab.inventory_path(),
        "timeout.toml",
        &format!("user = \"{NOPASSWD}\"\nbecome = true"),
        &[(
            "h02",
            &format!("user = \"root\"\nbecome = \"{OPERATOR}\"\nbecome_method = \"su\""),
        )],
    );
    let o = run(fleet(&inv).args([
        "exec",
        "--json",
        "--timeout",
        "1s",
        "--",
        "sleep 37.25; echo never",
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    for line in json_lines(&o) {
        assert_eq!(line["status"], "timeout", "{}", both(&o));
        assert_eq!(line["killed"], true, "{}", both(&o));
    }
    let ps = std::process::Command::new("ps")
        .args(["-eo", "user:20,args"])
        .output()
        .expect("ps");
    let left: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains("sleep 37.25"))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

/// As on a real server: the sites belong to the web server's user, the operator logs in as
/// a person and becomes root; drush and cv then run as the web user, the dumps as root.
#[test]
fn upgrade_of_sites_owned_by_the_web_user_as_an_operator() {
    let password = operator_password();
    let u = Upgrade::with(
        2,
        fleet_lab::SitesOptions::new(2, FROM).owned_by(fleet_lab::users::WEB),
    );
    secret_file(u.lab.temp_dir(), "op.pass", &password);
    let inv = inventory(
        &u.lab.inventory_path(),
        "web-user.toml",
        &format!("user = \"{OPERATOR}\"\nbecome = true\nbecome_password_file = \"op.pass\""),
        &[],
    );
    let mut c = fleet(&inv);
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["upgrade", "--tarball"])
        .arg(u.lab.release_tarball(TO));
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let web_uid = std::process::Command::new("id")
        .args(["-u", fleet_lab::users::WEB])
        .output()
        .expect("id");
    let web_uid: u32 = String::from_utf8_lossy(&web_uid.stdout)
        .trim()
        .parse()
        .expect("uid");
    for s in &u.sites {
        assert_eq!(s.code_version(), TO, "{}/{}", s.host, s.name);
        assert_eq!(s.db_version(), TO, "{}/{}", s.host, s.name);
        // What the web server writes stays the web user's.
        let tc = s.site_dir.join("files/civicrm/templates_c");
        let meta = std::fs::metadata(&tc).expect("templates_c");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            web_uid,
            "{}",
            tc.display()
        );
    }
    for h in u.lab.hosts() {
        let calls = u.calls(&h.name);
        let upgrades: Vec<&Value> = calls
            .iter()
            .filter(|c| crate::upgrade::is_upgrade_call(c))
            .collect();
        assert!(!upgrades.is_empty(), "{}: {calls:?}", h.name);
        for c in &upgrades {
            assert_eq!(c["user"], fleet_lab::users::WEB, "{c}");
        }
    }
}

/// A playbook step runs as the user it names (`become`), whatever the host's own become
/// made the session; the others run as that (root here, through the operator's sudo).
#[test]
fn a_playbook_step_becomes_the_user_it_names() {
    let password = operator_password();
    let u = Upgrade::new(1, 1);
    secret_file(u.lab.temp_dir(), "op.pass", &password);
    let inv = inventory(
        &u.lab.inventory_path(),
        "steps.toml",
        &format!("user = \"{OPERATOR}\"\nbecome = true\nbecome_password_file = \"op.pass\""),
        &[],
    );
    let out = tempfile::tempdir().expect("out dir");
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let o_dir = out.path().display().to_string();
    let pb = u.state.path().join("who.toml");
    std::fs::write(
        &pb,
        format!(
            "name = \"who\"\n\
             [[steps]]\nname = \"as-np\"\nkind = \"shell\"\nscope = \"host\"\nbecome = \"{NOPASSWD}\"\nrun = \"id -un > {o_dir}/np\"\n\
             [[steps]]\nname = \"as-session\"\nkind = \"shell\"\nrun = \"id -un > {o_dir}/session\"\n"
        ),
    )
    .expect("playbook");
    let mut c = fleet(&inv);
    c.arg("--state-dir")
        .arg(u.state.path())
        .args(["upgrade", "--playbook"])
        .arg(&pb);
    let o = run(&mut c);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    let read = |f: &str| {
        std::fs::read_to_string(out.path().join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}: {}", both(&o)))
            .trim()
            .to_owned()
    };
    assert_eq!(read("np"), NOPASSWD);
    assert_eq!(read("session"), "root");
}

/// A server that takes passwords only through PAM's keyboard-interactive conversation:
/// the password goes there, right and wrong.
#[test]
fn keyboard_interactive_through_pam() {
    let password = operator_password();
    let mut lab = TestLab::start(1);
    lab.lab_mut()
        .keyboard_interactive_only("h01")
        .expect("PAM host");
    let inv = inventory(
        &lab.inventory_path(),
        "kbd.toml",
        &format!("user = \"{OPERATOR}\"\npassword_env = \"FLEET_TEST_PW\""),
        &[],
    );
    without_keys(&inv);
    let o = run(fleet(&inv)
        .env("FLEET_TEST_PW", &password)
        .args(["exec", "--json", "--", "id -un"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(json_lines(&o)[0]["stdout"], format!("{OPERATOR}\n"));
    let o = run(fleet(&inv)
        .env("FLEET_TEST_PW", "wrong-password")
        .args(["exec", "--json", "--", "id -un"]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert_eq!(json_lines(&o)[0]["error_kind"], "auth", "{}", both(&o));
}

/// doas with a `permit nopass keepenv` rule, as a real server would have it; a password
/// with doas is refused before anything connects (doas reads one only from a terminal).
#[test]
fn doas_with_a_nopass_rule() {
    let users = fleet_lab::users::ensure().expect("the lab's login users (tests run as root)");
    assert!(
        users.doas,
        "the lab's doas rules are not in place: install opendoas (`make deps`), and this machine must have no {} of its own",
        fleet_lab::users::DOAS_CONF
    );
    let lab = TestLab::start(1);
    let inv = inventory(
        &lab.inventory_path(),
        "doas.toml",
        &format!("user = \"{NOPASSWD}\"\nbecome = true\nbecome_method = \"doas\""),
        &[],
    );
    let o = run(fleet(&inv).args(["exec", "--json", "--", "id -un; echo \"$FLEET_HOST\""]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(json_lines(&o)[0]["stdout"], "root\nh01\n", "{}", both(&o));

    secret_file(lab.temp_dir(), "doas.pass", "whatever");
    let inv = inventory(
        &lab.inventory_path(),
        "doas-pass.toml",
        &format!(
            "user = \"{NOPASSWD}\"\nbecome = true\nbecome_method = \"doas\"\nbecome_password_file = \"doas.pass\""
        ),
        &[],
    );
    let o = run(fleet(&inv).args(["exec", "--json", "--", "true"]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let line = &json_lines(&o)[0];
    assert_eq!(line["error_kind"], "become", "{}", both(&o));
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("doas reads a password only from a terminal")),
        "{}",
        both(&o)
    );
}

/// Scripts, copies and fetches go through the become too: as an operator who sudoes with a
/// password, a script runs as root with its arguments (the password never reaches it), a
/// copy gives its file to root-only ownership, and a root-only file is fetched.
#[test]
fn scripts_copies_and_fetches_through_sudo_with_a_password() {
    use std::os::unix::fs::MetadataExt as _;
    let password = operator_password();
    let lab = TestLab::with_private_dirs(2);
    let dir = lab.temp_dir();
    secret_file(dir, "op.pass", &password);
    let inv = inventory(
        &lab.inventory_path(),
        "become.toml",
        &format!("user = \"{OPERATOR}\"\nbecome = true\nbecome_password_file = \"op.pass\""),
        &[],
    );
    let script = dir.join("who.sh");
    std::fs::write(&script, "#!/bin/sh\nid -un; echo \"$@\"; cat\n").expect("write");
    let o = run(fleet(&inv)
        .args(["exec", "--json", "--script"])
        .arg(&script)
        .args(["--", "a b", "c"]));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for v in json_lines(&o) {
        assert_eq!(v["stdout"], "root\na b c\n", "{v}");
    }
    assert!(!stdout(&o).contains(&password));

    let file = dir.join("secret.conf");
    std::fs::write(&file, "key=1\n").expect("write");
    let private = lab.lab().private_dir();
    let o = run(fleet(&inv)
        .args(["copy", "--json", "--mode", "0600", "--owner", "root:root"])
        .arg(&file)
        .arg(&private));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    for h in lab.hosts() {
        let landed = lab
            .dir()
            .join("hosts")
            .join(&h.name)
            .join("private/secret.conf");
        let meta = std::fs::metadata(&landed).expect("copied");
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o600), "{}", h.name);
    }
    let out = dir.join("fetched");
    let o = run(fleet(&inv)
        .args(["fetch", "--json"])
        .arg(private.join("secret.conf"))
        .arg(&out));
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("h02/secret.conf")).expect("fetched"),
        "key=1\n"
    );
}
