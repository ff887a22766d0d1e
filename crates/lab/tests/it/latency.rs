use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet_lab::{Lab, LabOptions, Latency, TestLab};

use crate::{accepts, alive, ssh, stdout_ok};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn twenty_hosts_answer_ssh_through_a_20ms_proxy() {
    let lab = TestLab::with_latency(20, Latency::rtt(ms(20)));
    assert!(lab.proxy_running());
    assert_eq!(lab.latency(), Some(Latency::rtt(ms(20))));
    // The client files are those of a lab without latency: the proxy holds the hosts'
    // addresses and ports, and each sshd listens on the next port.
    let known = std::fs::read_to_string(lab.known_hosts()).unwrap();
    for h in lab.hosts() {
        assert_eq!(h.sshd_port, h.port + 1, "{h:?}");
        assert!(known.contains(&format!("[{}]:{} ", h.address, h.port)));
    }
    let cpu_before = lab.proxy_cpu().expect("proxy cpu");
    let t = Instant::now();
    let results: Vec<(String, Duration, String)> = std::thread::scope(|s| {
        let runs: Vec<_> = lab
            .hosts()
            .iter()
            .map(|h| {
                let lab = &lab;
                s.spawn(move || {
                    let t = Instant::now();
                    let out = stdout_ok(&ssh(lab, h, "echo $FLEET_HOST"));
                    (h.name.clone(), t.elapsed(), out)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let wall = t.elapsed();
    let cpu = lab.proxy_cpu().expect("proxy cpu") - cpu_before;
    let _ = writeln!(
        std::io::stderr(),
        "20 ssh sessions through rtt=20ms: wall {wall:?}, proxy cpu {cpu:?}, per host {:?}",
        results.iter().map(|r| r.1).collect::<Vec<_>>()
    );
    for (name, took, out) in &results {
        assert_eq!(out, &format!("{name}\n"));
        // An SSH exec takes several round trips (banner, key exchange, auth, channel, exec):
        // at least 4 of them show that the proxy was in the way.
        assert!(*took >= ms(4 * 20), "{name} took {took:?}");
    }
    // Timers, not busy loops: 20 sessions cost the proxy little CPU.
    assert!(cpu < Duration::from_secs(2), "proxy used {cpu:?}");
}

#[test]
fn down_stops_the_proxy_and_a_stopped_labs_up_starts_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = LabOptions::new(2, dir.path());
    opts.latency = Some(Latency {
        rtt: ms(10),
        jitter: ms(2),
        loss: 0.001,
    });
    let lab = Lab::up(&opts).expect("up");
    let pid = lab.proxy_pid().expect("proxy pid");
    let h = lab.hosts()[0].clone();
    drop(lab); // A `Lab` leaves its daemons, the proxy too, running.
    assert!(alive(pid));
    assert!(accepts(&h));

    let mut reopened = Lab::open(dir.path()).expect("open");
    assert!(reopened.proxy_running());
    assert_eq!(reopened.proxy_pid(), Some(pid));
    assert_eq!(reopened.latency(), opts.latency);
    assert_eq!(reopened.down().expect("down"), 2);
    assert!(!alive(pid), "proxy {pid} survived down");
    assert!(!accepts(&h), "the proxy's listener survived down");
    assert!(!reopened.dir().join("proxy/proxy.pid").exists());
    let stopped = Lab::open(dir.path()).expect("open");
    assert_eq!(stopped.proxy_pid(), None);
    assert!(!stopped.proxy_running());
    assert_eq!(stopped.proxy_cpu(), None);

    let mut lab = Lab::up(&opts).expect("up again");
    let again = lab.proxy_pid().expect("a new proxy");
    assert!(alive(again) && again != pid);
    assert_eq!(
        stdout_ok(&ssh(&lab, &lab.hosts()[1], "echo $FLEET_HOST")),
        "h02\n"
    );
    lab.down().expect("down");
    assert!(!alive(again));
}

#[test]
fn stopped_and_killed_hosts_behind_the_proxy() {
    let mut lab = TestLab::with_latency(2, Latency::rtt(ms(10)));
    let h2 = lab.hosts()[1].clone();
    lab.lab_mut().stop_host("h02").expect("stop");
    // The proxy still listens, and closes what it cannot forward.
    assert!(accepts(&h2));
    let o = ssh(&lab, &h2, "echo $FLEET_HOST");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("closed") || err.contains("reset"),
        "unexpected ssh error: {err}"
    );
    assert_eq!(
        stdout_ok(&ssh(&lab, &lab.hosts()[0], "echo $FLEET_HOST")),
        "h01\n"
    );
    lab.lab_mut().start_host("h02").expect("start");
    assert_eq!(stdout_ok(&ssh(&lab, &h2, "echo $FLEET_HOST")), "h02\n");

    // A session open through the proxy drops when its host is killed.
    let h1 = lab.hosts()[0].clone();
    let mut session = Command::new("ssh")
        .arg("-F")
        .arg(lab.ssh_config())
        .arg(h1.address.to_string())
        .arg("echo started; exec sleep 60")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ssh");
    let mut line = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    lab.lab_mut().kill_host("h01").expect("kill");
    let t = Instant::now();
    let status = loop {
        if let Some(status) = session.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = session.kill();
            panic!("the session outlived its host by 10 s");
        }
        std::thread::sleep(ms(20));
    };
    assert!(!status.success());
}

#[test]
fn a_lab_without_latency_has_no_proxy() {
    let mut lab = TestLab::start(1);
    assert_eq!(lab.latency(), None);
    assert_eq!(lab.proxy_pid(), None);
    assert!(!lab.proxy_running());
    let h = &lab.hosts()[0];
    assert_eq!(h.sshd_port, h.port);
    let err = lab.lab_mut().start_proxy().expect_err("no latency");
    assert_eq!(err.to_string(), "this lab has no latency, so no proxy");
}

#[test]
fn loss_outside_0_to_1_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = LabOptions::new(1, dir.path());
    opts.latency = Some(Latency {
        loss: 1.5,
        ..Latency::rtt(ms(10))
    });
    let err = Lab::up(&opts).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "loss must be between 0 and 1 (0% and 100%), not 1.5"
    );
    assert!(!dir.path().join("sshd").exists(), "nothing started");
}
