//! Whole Ansible inventories converted: the TOML they give, the hosts fleet loads from it
//! (compared with a hand-written equivalent), vars directories, and every refusal at its
//! Ansible file and line.

use std::path::{Path, PathBuf};

use super::{Format, VarsDirs, ansible_to_toml, ansible_to_toml_with, detect_format};
use crate::{Host, Inventory, InventoryError};

mod errors;

const INI: &str = "\
# The example inventory, as Ansible INI.
bastion ansible_host=198.51.100.5 ansible_port=2200

[web]
web[01:03]
web04:2222 ansible_host=10.0.0.4 tier=edge

[web:vars]
http_port=8080
tier=frontend
ntp=web-ntp

[db]
db-[a:b] ansible_user=dba

[prod:children]
web
db

[prod:vars]
env=prod

[all:vars]
ansible_user=deploy
ntp=pool.ntp.org
";

const YAML: &str = "\
# The same inventory, as Ansible YAML.
all:
  hosts:
    bastion:
      ansible_host: 198.51.100.5
      ansible_port: 2200
  vars:
    ansible_user: deploy
    ntp: pool.ntp.org
  children:
    prod:
      vars:
        env: prod
      children:
        web:
          hosts:
            web[01:03]:
            web04:2222:
              ansible_host: 10.0.0.4
              tier: edge
          vars:
            http_port: '8080'
            tier: frontend
            ntp: web-ntp
        db:
          hosts:
            db-[a:b]:
              ansible_user: dba
";

/// `group_vars/all.yml`: beats every group's inventory variables (Ansible's precedence),
/// so web hosts get this `ntp`, not `web-ntp`.
const GV_ALL: &str = "ntp: ntp.example.org\n";
/// `group_vars/web/` (a directory): beats `[web:vars]`.
const GV_WEB_MAIN: &str = "tier: web-gv\nmax_conn: 100\n";
const GV_WEB_MORE: &str =
    "{\"limits\": {\"open_files\": 4096}, \"pkgs\": [\"nginx\", \"certbot\"]}\n";
/// `host_vars/web01.yml`.
const HV_WEB01: &str = "rack: r1\nansible_port: 2201\n";

/// What a person would write in fleet's TOML for the same hosts.
const HAND: &str = r#"
[defaults]
user = "deploy"
vars = { ntp = "pool.ntp.org" }

[groups.ungrouped]
hosts = ["bastion"]

[groups.web]
hosts = ["web[01:03]", "web04"]
vars = { http_port = "8080", tier = "web-gv", max_conn = 100, limits = { open_files = 4096 }, pkgs = ["nginx", "certbot"] }

[groups.db]
hosts = ["db-a", "db-b"]

[groups.prod]
children = ["web", "db"]
vars = { env = "prod" }

[hosts.bastion]
address = "198.51.100.5"
port = 2200
vars = { ntp = "ntp.example.org" }

[hosts.web01]
port = 2201
vars = { rack = "r1", ntp = "ntp.example.org" }

[hosts."web[02:03]"]
vars = { ntp = "ntp.example.org" }

[hosts.web04]
address = "10.0.0.4"
port = 2222
vars = { tier = "edge", ntp = "ntp.example.org" }

[hosts."db-a"]
user = "dba"
vars = { ntp = "ntp.example.org" }

[hosts."db-b"]
user = "dba"
vars = { ntp = "ntp.example.org" }
"#;

/// A directory holding `file` with `text` and the vars directories above.
fn lay_out(file: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let w = |rel: &str, text: &str| {
        let p = tmp.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(file, text);
    w("group_vars/all.yml", GV_ALL);
    w("group_vars/web/main.yml", GV_WEB_MAIN);
    w("group_vars/web/more.json", GV_WEB_MORE);
    w("host_vars/web01.yml", HV_WEB01);
    let path = tmp.path().join(file);
    (tmp, path)
}

/// Asserts `got` is `want`, one field at a time so a mismatch says which.
#[track_caller]
fn same_host(got: &Host, want: &Host) {
    let n = &want.name;
    assert_eq!(got.name, want.name);
    assert_eq!(got.address, want.address, "{n}: address");
    assert_eq!(got.port, want.port, "{n}: port");
    assert_eq!(got.user, want.user, "{n}: user");
    assert_eq!(
        got.identity_files, want.identity_files,
        "{n}: identity_files"
    );
    assert_eq!(
        got.known_hosts_files, want.known_hosts_files,
        "{n}: known_hosts"
    );
    assert_eq!(
        got.host_key_policy, want.host_key_policy,
        "{n}: host_key_policy"
    );
    assert_eq!(
        got.connect_timeout, want.connect_timeout,
        "{n}: connect_timeout"
    );
    assert_eq!(
        got.command_timeout, want.command_timeout,
        "{n}: command_timeout"
    );
    assert_eq!(got.jump, want.jump, "{n}: jump");
    assert_eq!(got.groups, want.groups, "{n}: groups");
    assert_eq!(got.vars, want.vars, "{n}: vars");
    assert_eq!(got.sites, want.sites, "{n}: sites");
    assert_eq!(got.sources, want.sources, "{n}: sources");
    assert_eq!(got, want);
}

#[track_caller]
fn same_hosts(got: &Inventory, want: &Inventory) {
    let names =
        |inv: &Inventory| -> Vec<String> { inv.hosts().iter().map(|h| h.name.clone()).collect() };
    assert_eq!(names(got), names(want));
    for (g, w) in got.hosts().iter().zip(want.hosts()) {
        same_host(g, w);
    }
}

#[test]
fn ini_inventory_with_vars_dirs_loads_like_the_hand_written_toml() {
    let (_tmp, path) = lay_out("hosts.ini", INI);
    let inv = Inventory::load(&path).unwrap();
    let hand = Inventory::from_toml_str(HAND, &path).unwrap();
    same_hosts(&inv, &hand);
    let web04 = inv.host("web04").unwrap();
    assert_eq!(web04.var("tier").as_deref(), Some("edge"));
    assert_eq!(web04.var("env").as_deref(), Some("prod"));
    assert_eq!(web04.groups, ["web", "prod"]);
    // group_vars/all.yml beats the inventory's own group variables, as in Ansible.
    assert_eq!(web04.var("ntp").as_deref(), Some("ntp.example.org"));
}

#[test]
fn yaml_inventory_loads_like_the_ini_one() {
    let (_tmp, ini_path) = lay_out("hosts.ini", INI);
    let (_tmp2, yaml_path) = lay_out("hosts.yml", YAML);
    let ini = Inventory::load(&ini_path).unwrap();
    let yaml = Inventory::load(&yaml_path).unwrap();
    let hand = Inventory::from_toml_str(HAND, &yaml_path).unwrap();
    // The YAML declares `prod` before its children, so hosts list it first.
    let mut want: Vec<Host> = hand.hosts().to_vec();
    for h in &mut want {
        h.groups.sort_by_key(|g| g != "prod");
    }
    assert_eq!(yaml.hosts().len(), want.len());
    for (g, w) in yaml.hosts().iter().zip(&want) {
        same_host(g, w);
    }
    for (y, i) in yaml.hosts().iter().zip(ini.hosts()) {
        assert_eq!(
            (&y.name, &y.address, y.port, &y.user, &y.vars),
            (&i.name, &i.address, i.port, &i.user, &i.vars)
        );
    }
}

#[test]
fn converted_text_is_stable_and_says_where_it_came_from() {
    let (tmp, path) = lay_out("hosts.ini", INI);
    let text = std::fs::read_to_string(&path).unwrap();
    let toml = ansible_to_toml(&path, &text, Format::AnsibleIni).unwrap();
    let head = format!(
        "# fleet inventory converted from the Ansible inventory {}\n\
         # with its vars files: group_vars/all.yml, group_vars/web/main.yml, group_vars/web/more.json, host_vars/web01.yml\n",
        path.display()
    );
    assert!(toml.starts_with(&head), "{toml}");
    let body = &toml[head.len()..];
    assert_eq!(
        body,
        r#"
[defaults]
user = "deploy"

[defaults.vars]
ntp = "ntp.example.org"

[groups.ungrouped]
hosts = [
    "bastion",
]

[groups.web]
hosts = [
    "web[01:03]",
    "web04",
]

[groups.web.vars]
http_port = "8080"
limits = { open_files = 4096 }
max_conn = 100
ntp = "web-ntp"
pkgs = ["nginx", "certbot"]
tier = "web-gv"

[groups.db]
hosts = [
    "db-a",
    "db-b",
]

[groups.prod]
children = [
    "web",
    "db",
]

[groups.prod.vars]
env = "prod"

[hosts.bastion]
address = "198.51.100.5"
port = 2200

[hosts.web01]
port = 2201

[hosts.web01.vars]
ntp = "ntp.example.org"
rack = "r1"

[hosts.web02]

[hosts.web02.vars]
ntp = "ntp.example.org"

[hosts.web03]

[hosts.web03.vars]
ntp = "ntp.example.org"

[hosts.web04]
address = "10.0.0.4"
port = 2222

[hosts.web04.vars]
ntp = "ntp.example.org"
tier = "edge"

[hosts.db-a]
user = "dba"

[hosts.db-b]
user = "dba"
"#
    );
    // The same again: the order never depends on hashing.
    let again = ansible_to_toml(&path, &text, Format::AnsibleIni).unwrap();
    assert_eq!(toml, again);
    drop(tmp);
}

/// Group connection settings go in the group's table (for the loader that accepts them),
/// and each host still gets Ansible's result.
#[test]
fn group_connection_settings_are_written_in_group_tables() {
    let ini = "\
[web]
web01
web02 ansible_user=root

[web:vars]
ansible_user=deploy
ansible_port=2222
ansible_become=yes
ansible_become_user=www-data
ansible_become_method=sudo
ansible_ssh_common_args='-o ProxyJump=ops@bastion:22'
ansible_ssh_private_key_file=~/.ssh/deploy
ansible_timeout=20

[all:vars]
ansible_host=lb.example.org
ansible_become=false
";
    let toml = ansible_to_toml_with(
        Path::new("/inv/hosts.ini"),
        ini,
        Format::AnsibleIni,
        &VarsDirs::default(),
    )
    .unwrap();
    let doc: toml::Table = toml.parse().unwrap();
    let table = |path: &[&str]| -> toml::Table {
        let mut t = &doc;
        for p in path {
            t = t[*p].as_table().unwrap();
        }
        t.clone()
    };
    assert_eq!(table(&["defaults"])["become"].as_bool(), Some(false));
    assert!(!table(&["defaults"]).contains_key("address"));
    let web = table(&["groups", "web"]);
    assert_eq!(web["user"].as_str(), Some("deploy"));
    assert_eq!(web["port"].as_integer(), Some(2222));
    assert_eq!(web["become"].as_bool(), Some(true));
    assert_eq!(web["become_user"].as_str(), Some("www-data"));
    assert_eq!(web["become_method"].as_str(), Some("sudo"));
    assert_eq!(web["jump"].as_str(), Some("ops@bastion:22"));
    assert_eq!(web["identity_file"].as_str(), Some("~/.ssh/deploy"));
    assert_eq!(web["connect_timeout"].as_str(), Some("20s"));
    assert!(!web.contains_key("vars"));
    // fleet has no group or default address: each host gets Ansible's.
    assert_eq!(
        table(&["hosts", "web01"])
            .get("address")
            .and_then(|v| v.as_str()),
        Some("lb.example.org")
    );
    let web02 = table(&["hosts", "web02"]);
    assert_eq!(web02["user"].as_str(), Some("root"));
    assert_eq!(web02["address"].as_str(), Some("lb.example.org"));
}

/// Ansible orders sibling groups by name when their variables merge; fleet by file order.
/// The host's table says what Ansible gives.
#[test]
fn ansible_merge_order_wins_where_fleet_would_differ() {
    let ini = "\
[zeta]
h1
[alpha]
h1
h2
[zeta:vars]
x=zeta
[alpha:vars]
x=alpha
[prio]
h2
[prio:vars]
ansible_group_priority=0
y=prio
[alpha:children]
prio
";
    let path = Path::new("/inv/hosts.ini");
    let toml = ansible_to_toml_with(path, ini, Format::AnsibleIni, &VarsDirs::default()).unwrap();
    let inv = Inventory::from_toml_str(&toml, path).unwrap();
    // Same depth: `zeta` after `alpha` by name, so zeta's `x` wins in Ansible.
    assert_eq!(inv.host("h1").unwrap().var("x").as_deref(), Some("zeta"));
    // h2: `prio` is deeper (a child of alpha), so it wins whatever its priority.
    assert_eq!(inv.host("h2").unwrap().var("x").as_deref(), Some("alpha"));
    assert_eq!(inv.host("h2").unwrap().var("y").as_deref(), Some("prio"));
    assert!(!toml.contains("ansible_group_priority"), "{toml}");
}

#[test]
fn detect_format_by_extension_then_content() {
    #[track_caller]
    fn case(path: &str, text: &str, want: Format) {
        assert_eq!(detect_format(Path::new(path), text), want, "{path}");
    }
    case("inv.toml", "[web]\nx\n", Format::Toml);
    case("inv.yml", "", Format::AnsibleYaml);
    case("inv.YAML", "", Format::AnsibleYaml);
    case("inv.json", "{}", Format::AnsibleYaml);
    case("inv.ini", "[defaults]\nuser = \"x\"\n", Format::AnsibleIni);
    case("ansible.cfg", "", Format::AnsibleIni);
    case("hosts", "[web]\nweb01\n", Format::AnsibleIni);
    case("hosts", "[defaults]\nuser = \"x\"\n", Format::Toml);
    case(
        "inventory.prod",
        "web01 ansible_port=22\n",
        Format::AnsibleIni,
    );
    case("inventory", "", Format::Toml);
}

/// Alphabetic ranges and steps are expanded; numeric ones stay fleet ranges.
#[test]
fn ranges_expand_or_stay_ranges() {
    let toml = ansible_to_toml_with(
        Path::new("/inv/h.yml"),
        "all:\n  children:\n    g:\n      hosts:\n        n[01:10]:\n        x-[a:c]:\n        s[0:4:2]:\n",
        Format::AnsibleYaml,
        &VarsDirs::default(),
    )
    .unwrap();
    let doc: toml::Table = toml.parse().unwrap();
    let hosts: Vec<&str> = doc["groups"]["g"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["n[01:10]", "x-a", "x-b", "x-c", "s0", "s2", "s4"]);
    let inv = Inventory::from_toml_str(&toml, Path::new("/inv/h.yml")).unwrap();
    assert_eq!(inv.hosts().len(), 16);
    assert_eq!(inv.hosts()[9].name, "n10");
}

/// What `ansible-inventory --list --yaml` writes (`ungrouped` under `all`, `{}` for a host
/// without variables) converts, and `[ungrouped:vars]` apply to the hosts in no group.
#[test]
fn ansible_inventory_list_output_and_ungrouped() {
    let yaml = "\
all:
  children:
    ungrouped:
      hosts:
        lone:
          ansible_host: 192.0.2.7
    web:
      hosts:
        web01: {}
";
    let path = Path::new("/inv/list.yml");
    let toml = ansible_to_toml_with(path, yaml, Format::AnsibleYaml, &VarsDirs::default()).unwrap();
    let inv = Inventory::from_toml_str(&toml, path).unwrap();
    let lone = inv.host("lone").unwrap();
    assert_eq!(
        (lone.address.as_str(), &lone.groups[..]),
        ("192.0.2.7", &["ungrouped".to_owned()][..])
    );
    assert_eq!(inv.host("web01").unwrap().groups, ["web"]);

    let ini = "\u{feff}a\n[web]\nb\n[ungrouped:vars]\nlonely=yes\n";
    let path = Path::new("/inv/hosts");
    let toml = ansible_to_toml_with(path, ini, Format::AnsibleIni, &VarsDirs::default()).unwrap();
    let inv = Inventory::from_toml_str(&toml, path).unwrap();
    assert_eq!(inv.host("a").unwrap().var("lonely").as_deref(), Some("yes"));
    assert_eq!(inv.host("b").unwrap().var("lonely"), None);

    // fleet TOML is handed back as it is.
    let same = ansible_to_toml(Path::new("inv.toml"), "[hosts.a]\n", Format::Toml).unwrap();
    assert_eq!(same, "[hosts.a]\n");
}

/// A second place a loader error names (`PATH:LINE:COL` of the converted text) is moved to
/// the Ansible line too.
#[test]
fn second_places_in_loader_errors_are_moved() {
    let path = Path::new("/inv/hosts.ini");
    let conv = super::convert(
        path,
        "[web]\nweb01\n\n\nweb02\n",
        Format::AnsibleIni,
        &VarsDirs::default(),
    )
    .unwrap();
    let line_of = |needle: &str| conv.text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let msg = format!(
        "see /inv/hosts.ini:{}:5 and /inv/hosts.ini:{}:5, not /inv/hosts.ini:x or /inv/hosts.ini:999:1",
        line_of("web01"),
        line_of("web02")
    );
    assert_eq!(
        super::relocate(&msg, path, &conv),
        "see /inv/hosts.ini:2:1 and /inv/hosts.ini:5:1, not /inv/hosts.ini:x or /inv/hosts.ini:999:1"
    );
}
