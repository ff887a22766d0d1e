//! What an Ansible inventory gets refused for, and where: odd input, every unsupported
//! feature at its Ansible file and line, vars files, and the loader's own errors traced back.

use super::*;

/// Loads `text` written to `name` in a fresh directory.
fn load_file(name: &str, text: &str) -> Result<Inventory, InventoryError> {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(name);
    std::fs::write(&path, text).unwrap();
    Inventory::load(&path)
}

#[test]
fn odd_input_loads_empty_or_fails_cleanly() {
    for (name, text) in [
        ("a.ini", ""),
        ("a.ini", "# only\n; comments\n"),
        ("a.yml", ""),
        ("a.yml", "# only a comment\n"),
        ("a.yml", "---\n"),
        ("a.yml", "all:\n"),
        ("a.yml", "all:\n  hosts:\n  children:\n"),
        ("a.json", "{}"),
        ("hosts", "\n\n"),
    ] {
        let inv = load_file(name, text).unwrap_or_else(|e| panic!("{name} {text:?}: {e}"));
        assert!(inv.hosts().is_empty(), "{name} {text:?}");
    }
    // Nothing here may panic; each is an error or an inventory.
    for (name, text) in [
        ("a.yml", "- a\n- b\n"),
        ("a.yml", "all: [1, 2]\n"),
        ("a.yml", "all:\n  hosts: [a, b]\n"),
        ("a.yml", "all:\n  hosts:\n    a: 1\n"),
        ("a.yml", "all:\n  vars: 1\n"),
        ("a.yml", "all:\n  children: [a]\n"),
        ("a.yml", "{{{{"),
        ("a.yml", "\u{0}\u{1}"),
        (
            "a.yml",
            "all:\n  children:\n    a:\n      children:\n        a:\n",
        ),
        ("a.ini", "[a]\n[\n]\n[[\n"),
        ("a.ini", "[a:children]\na\n"),
        ("a.ini", "[a]\nh x='\n"),
        ("a.ini", "[a]\nh[\n"),
        ("a.ini", "= = =\n"),
        ("a.ini", "[:vars]\n"),
        ("a.ini", "\u{feff}[a]\nh\n"),
        ("a.ini", "[a]\nh x=[[[[[[[[[[[[\n"),
        ("a.ini", "[a]\nh x={'a': {'b': [1, {2: None}]}}\n"),
    ] {
        let _ = load_file(name, text);
    }
}

/// Each refusal, at its file, line and column, with its message.
#[test]
fn refusals_name_the_ansible_line() {
    let ini = Path::new("/inv/hosts.ini");
    let yml = Path::new("/inv/hosts.yml");
    #[track_caller]
    fn case(path: &Path, format: Format, text: &str, want: &str) {
        let e =
            ansible_to_toml_with(path, text, format, &VarsDirs::default()).expect_err("must fail");
        assert_eq!(e.to_string(), format!("{}:{want}", path.display()));
    }
    let ini_case = |text: &str, want: &str| case(ini, Format::AnsibleIni, text, want);
    let yml_case = |text: &str, want: &str| case(yml, Format::AnsibleYaml, text, want);
    let pw = "fleet reads passwords only from a 0600 file or an environment variable";

    ini_case(
        "[web]\nweb01 ansible_password=hunter2\n",
        &format!(
            "2:7: `ansible_password` holds a plaintext password, which fleet refuses: {pw} (`password_file` or `password_env`)"
        ),
    );
    ini_case(
        "[web]\nweb01\n[web:vars]\nansible_ssh_pass=hunter2\n",
        &format!(
            "4:1: `ansible_ssh_pass` holds a plaintext password, which fleet refuses: {pw} (`password_file` or `password_env`)"
        ),
    );
    yml_case(
        "all:\n  vars:\n    ansible_become_pass: hunter2\n",
        &format!(
            "3:5: `ansible_become_pass` holds a plaintext password, which fleet refuses: {pw} (`become_password_file` or `become_password_env`)"
        ),
    );
    ini_case(
        "h ansible_become_password=x\n",
        &format!(
            "1:3: `ansible_become_password` holds a plaintext password, which fleet refuses: {pw} (`become_password_file` or `become_password_env`)"
        ),
    );
    ini_case(
        "[all:vars]\nansible_sudo_pass=x\n",
        &format!(
            "2:1: `ansible_sudo_pass` holds a plaintext password, which fleet refuses: {pw} (`become_password_file` or `become_password_env`)"
        ),
    );
    yml_case(
        "all:\n  hosts:\n    web01:\n      db_password: !vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        3961\n",
        "4:20: `db_password` is encrypted with Ansible Vault (`!vault`): vault is not supported; decrypt it (`ansible-vault decrypt`) or keep the secret in a 0600 file fleet reads",
    );
    ini_case(
        "$ANSIBLE_VAULT;1.1;AES256\n3961\n",
        "1:1: the file is encrypted with Ansible Vault (`$ANSIBLE_VAULT`): vault is not supported; decrypt it (`ansible-vault decrypt`) and keep secrets out of the inventory",
    );
    yml_case(
        "$ANSIBLE_VAULT;1.1;AES256\n3961\n",
        "1:1: the file is encrypted with Ansible Vault (`$ANSIBLE_VAULT`): vault is not supported; decrypt it (`ansible-vault decrypt`) and keep secrets out of the inventory",
    );
    yml_case(
        "# aws\nplugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n",
        "2:1: this is the configuration of dynamic inventory plugin `amazon.aws.aws_ec2`, which fleet cannot run: save its hosts as a static inventory (`ansible-inventory -i FILE --list --yaml --export > inventory.yml`) and convert that",
    );
    ini_case(
        "#!/usr/bin/env python3\nprint('{}')\n",
        "1:1: the inventory starts with `#!`: it is a dynamic inventory script, which fleet does not run; save its hosts as a static inventory (`ansible-inventory -i FILE --list --yaml --export > inventory.yml`) and convert that",
    );
    ini_case(
        "localhost ansible_connection=local\n",
        "1:11: `ansible_connection` `local` is not supported: fleet connects over SSH only (`ssh`, `smart` or `paramiko`)",
    );
    yml_case(
        "all:\n  children:\n    win:\n      vars:\n        ansible_connection: winrm\n",
        "5:9: `ansible_connection` `winrm` is not supported: fleet connects over SSH only (`ssh`, `smart` or `paramiko`)",
    );
    ini_case(
        "[web]\nh\n[web:vars]\nansible_ssh_executable=/opt/bin/ssh\n",
        "4:1: `ansible_ssh_executable` cannot be honoured: fleet has its own SSH client and runs no `ssh` program",
    );
    ini_case(
        "h ansible_shell_type=powershell\n",
        "1:3: `ansible_shell_type` `powershell` is not supported: fleet's commands are POSIX `sh`",
    );
    ini_case(
        "h ansible_become_method=runas\n",
        "1:3: `ansible_become_method` `runas` is not supported: fleet becomes another user with `sudo`, `doas` or `su`",
    );
    ini_case(
        "h ansible_ssh_common_args='-o StrictHostKeyChecking=no'\n",
        "1:3: `ansible_ssh_common_args` holds `-o StrictHostKeyChecking=no`, which fleet cannot honour: fleet has its own SSH client and takes only a jump host (`-J HOST` or `-o ProxyJump=HOST`) from the ssh arguments",
    );
    ini_case(
        "h ansible_ssh_extra_args='-J bastion -C'\n",
        "1:3: `ansible_ssh_extra_args` holds `-C`, which fleet cannot honour: fleet has its own SSH client and takes only a jump host (`-J HOST` or `-o ProxyJump=HOST`) from the ssh arguments",
    );
    ini_case(
        "h ansible_paramiko_look_for_keys=no\n",
        "1:3: `ansible_paramiko_look_for_keys` is an Ansible variable fleet does not know, so it cannot tell whether it changes how Ansible connects: remove it (or rename it if it is your own variable)",
    );
    ini_case(
        "[web]\nweb_01.example.com\nweb/01\n",
        "3:1: invalid host name `web/01`: `/` is not allowed; use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`",
    );
    yml_case(
        "all:\n  hosts:\n    'two words':\n",
        "3:5: invalid host name `two words`: a space is not allowed; use ASCII letters, digits, `.`, `-` and `_`, not starting with `.` or `-`",
    );
    ini_case("[a:children]\na\n[a]\n", "2:1: group `a` is its own child");
    yml_case(
        "all:\n  children:\n    a:\n      children:\n        a:\n",
        "5:9: group `a` is its own child",
    );
    ini_case(
        "[a]\n[b]\n[a:children]\nb\n[b:children]\na\n",
        "6:1: group cycle: `a` -> `b` -> `a`",
    );
    ini_case(
        "[web:children]\nall\n[web]\n",
        "2:1: `all` cannot be a child of group `web`: it is the group of every host",
    );
    ini_case(
        "[web]\ndb\n[db]\nx\n",
        "2:1: host `db` and group `db` (/inv/hosts.ini:3:1) have the same name, so `-l db` could not tell them apart: rename one",
    );
    ini_case(
        "[web]\nfe80::1\n",
        "2:1: `fe80::1` is an IPv6 address, which cannot name a fleet host (`:` is not allowed): give the host a name and set `ansible_host` to the address",
    );
    yml_case(
        "all:\n  hosts:\n    h:\n  web:\n    h2:\n",
        "4:3: unknown key `web` in group `all`: a group has `hosts`, `vars` and `children` (a host goes under `hosts:`)",
    );
    ini_case(
        "h ansible_host='{{ inventory_hostname }}.example.org'\n",
        "1:3: `ansible_host` `{{ inventory_hostname }}.example.org` is a Jinja template, which fleet does not evaluate: write the value itself",
    );
    ini_case(
        "[web]\nh ansible_user=a\n[web:vars]\nansible_ssh_user=b\n",
        "4:1: `ansible_ssh_user` and `ansible_user` (/inv/hosts.ini:2:3) both set `user`, to different values: keep one (for host `h`)",
    );
    // A group's jump host that a host clears cannot be written: fleet cannot unset it.
    ini_case(
        "[web]\nh ansible_ssh_common_args=''\n[web:vars]\nansible_ssh_common_args='-J b'\n",
        "2:3: for host `h` this clears `jump`, which fleet's inventory cannot do: `jump` also comes from /inv/hosts.ini:4:1 (`ansible_ssh_common_args`); remove it there or set it on each host",
    );
}

/// An executable inventory is a script Ansible would run.
#[cfg(unix)]
#[test]
fn executable_inventory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("inventory.ini");
    std::fs::write(&path, "[web]\nweb01\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:1:1: the inventory is executable, so Ansible would run it as a dynamic inventory script, which fleet does not do; save its hosts as a static inventory (`ansible-inventory -i FILE --list --yaml --export > inventory.yml`) and convert that (or `chmod -x` it if it is a static file)",
            path.display()
        )
    );
    let e2 = ansible_to_toml(&path, "[web]\nweb01\n", Format::AnsibleIni).unwrap_err();
    assert_eq!(e2.to_string(), e);
}

/// An error in a vars file names that file and line; so do the loader's errors in what it
/// gave.
#[test]
fn vars_file_errors_name_their_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("hosts");
    std::fs::write(&path, "[web]\nweb01\n").unwrap();
    let gv = tmp.path().join("group_vars/web.yml");
    std::fs::create_dir_all(gv.parent().unwrap()).unwrap();

    std::fs::write(&gv, "x: 1\nansible_password: hunter2\n").unwrap();
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}:2:1: `ansible_password` holds a plaintext password",
            gv.display()
        )),
        "{e}"
    );

    std::fs::write(&gv, "$ANSIBLE_VAULT;1.1;AES256\n6162\n").unwrap();
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:1:1: the file is encrypted with Ansible Vault (`$ANSIBLE_VAULT`): vault is not supported; decrypt it (`ansible-vault decrypt`) and keep secrets out of the inventory",
            gv.display()
        )
    );

    std::fs::write(&gv, "x: [1\n").unwrap();
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2:1: invalid YAML", gv.display())),
        "{e}"
    );

    // The loader refuses the user name; the error points at the vars file's line.
    std::fs::write(&gv, "x: 1\n").unwrap();
    let hv = tmp.path().join("host_vars/web01");
    std::fs::create_dir_all(hv.parent().unwrap()).unwrap();
    std::fs::write(&hv, "# web01\n\nansible_user: 'bad user'\n").unwrap();
    let e = Inventory::load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}:3:1: invalid `user` `bad user`: a space is not allowed",
            hv.display()
        )),
        "{e}"
    );
    assert!(
        e.ends_with(
            "(in the TOML converted from Ansible: `user = \"bad user\"` in `[hosts.web01]`)"
        ),
        "{e}"
    );
    // A group's connection setting lands in its group table, and the host gets it from there.
    std::fs::write(&gv, "ansible_user: deploy\n").unwrap();
    std::fs::remove_file(&hv).unwrap();
    let inv = Inventory::load(&path).unwrap();
    let h = inv.host("web01").unwrap();
    assert_eq!(h.user, "deploy");
    assert_eq!(h.source("user"), crate::Source::Group("web".into()));
}

/// What the loader refuses in the converted text is reported at the Ansible line.
#[test]
fn loader_errors_point_at_the_ansible_line() {
    let e = load_file(
        "hosts.ini",
        "[web]\nweb01\nweb02 ansible_ssh_common_args='-J ops;id@bastion'\n",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.location(), Some((3, 7)), "{msg}");
    assert!(
        msg.contains(
            ":3:7: invalid `jump` `ops;id@bastion`: bad user `ops;id`: `;` is not allowed"
        ),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "(in the TOML converted from Ansible: `jump = \"ops;id@bastion\"` in `[hosts.web02]`)"
        ),
        "{msg}"
    );
    let e = load_file(
        "hosts.yml",
        "all:\n  hosts:\n    a:\n      ansible_user: \"-rf\"\n",
    )
    .unwrap_err();
    assert_eq!(e.location(), Some((4, 7)), "{e}");
    assert!(
        e.to_string()
            .contains("invalid `user` `-rf`: it starts with `-`"),
        "{e}"
    );
}
