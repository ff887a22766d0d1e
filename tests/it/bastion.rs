//! Hosts behind a bastion: reached only through it (by names only the bastion resolves),
//! over one connection to it, and a dead bastion is one clear error for every host behind it.

use std::net::Ipv4Addr;

use fleet_lab::TestLab;
use serde_json::Value;

use crate::{both, fleet, run, stdout};

/// Established TCP connections to `address:port` (the server side, as /proc/net/tcp lists
/// them: local address and port in hex, state `01`).
fn connections_to(address: Ipv4Addr, port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    // Little-endian hex of the address, as the kernel prints it.
    let want = format!("{:08X}:{port:04X}", u32::from(address).swap_bytes());
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "01"
        })
        .count()
}

#[test]
fn hosts_behind_a_bastion_are_reached_through_it_over_one_connection() {
    let lab = TestLab::with_bastion(5);
    let bastion = lab.hosts()[0].clone();
    let inv = lab.inventory_path();
    // Nothing here can find the hosts behind the bastion by the names the inventory gives.
    let behind = &lab.hosts()[1];
    let lookup = std::process::Command::new("getent")
        .args(["hosts", &behind.internal_name()])
        .output()
        .expect("getent");
    assert!(!lookup.status.success(), "{lookup:?}");

    // Counts until the run is over, however slow a loaded machine makes it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (b, stop) = (bastion.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut most = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                most = most.max(connections_to(b.address, b.port));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            most
        })
    };
    let o = run(fleet(&inv).args([
        "-F",
        "none",
        "exec",
        "--json",
        "--",
        "echo \"$FLEET_HOST\"; sleep 1.5",
    ]));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let most = watcher.join().expect("watcher");
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(
        stdout(&o).lines().count(),
        lab.hosts().len(),
        "{}",
        both(&o)
    );
    for (line, h) in stdout(&o).lines().zip(lab.hosts()) {
        let v: Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["host"], h.name.as_str());
        assert_eq!(v["stdout"], format!("{}\n", h.name), "{}", both(&o));
    }
    // h01 as a target, and h01 as the bastion of the four others: two connections, not five.
    assert_eq!(most, 2, "connections to the bastion during the run");
}

#[test]
fn a_dead_bastion_is_one_error_for_every_host_behind_it() {
    let mut lab = TestLab::with_bastion(4);
    lab.lab_mut().stop_host("h01").expect("stop the bastion");
    let o =
        run(fleet(&lab.inventory_path())
            .args(["-F", "none", "exec", "-l", "lab,!h01", "--", "true"]));
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let out = stdout(&o);
    let groups: Vec<&str> = out.lines().filter(|l| l.starts_with("==> ")).collect();
    assert_eq!(groups.len(), 1, "one report for the three hosts: {out}");
    assert!(
        groups[0].starts_with("==> h[02-04] (3 hosts): unreachable: through jump host `h01`:")
            && groups[0].contains("cannot connect to"),
        "{out}"
    );
}
