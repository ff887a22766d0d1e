use fleet_lab::{Lab, LabError, LabOptions, TestLab};

use crate::{accepts, alive, ssh, stdout_ok};

#[test]
fn stopped_host_refuses_connections_then_comes_back() {
    let mut lab = TestLab::start(2);
    let h = lab.hosts()[1].clone();
    let pid = h.pid.expect("running");
    lab.lab_mut().stop_host(&h.name).expect("stop");
    assert!(!alive(pid), "sshd {pid} survived stop_host");
    assert!(!accepts(&h));
    assert_eq!(lab.host(&h.name).unwrap().pid, None);
    assert!(!lab.is_running(&h.name));
    // The other host is untouched.
    let other = &lab.hosts()[0];
    assert_eq!(stdout_ok(&ssh(&lab, other, "echo $FLEET_HOST")), "h01\n");
    // Stopping twice is harmless.
    lab.lab_mut().stop_host(&h.name).expect("stop again");

    lab.lab_mut().start_host(&h.name).expect("start");
    let again = lab.host(&h.name).unwrap().clone();
    assert!(again.pid.is_some_and(alive));
    assert_eq!((again.address, again.port), (h.address, h.port));
    // Same host key: known_hosts still holds.
    assert_eq!(stdout_ok(&ssh(&lab, &again, "echo $FLEET_HOST")), "h02\n");
    // Starting a running host is a no-op.
    lab.lab_mut().start_host(&h.name).expect("start again");
    assert_eq!(lab.host(&h.name).unwrap().pid, again.pid);
}

#[test]
fn unknown_hosts_are_errors() {
    let mut lab = TestLab::start(1);
    let err = lab.lab_mut().stop_host("h99").unwrap_err();
    assert!(matches!(err, LabError::UnknownHost(_)));
    assert_eq!(err.to_string(), "no host `h99` in this lab");
    assert!(lab.lab_mut().start_host("nope").is_err());
}

#[test]
fn dropping_a_test_lab_stops_every_daemon() {
    let (pids, dir) = {
        let lab = TestLab::start(3);
        let pids: Vec<u32> = lab.hosts().iter().map(|h| h.pid.expect("pid")).collect();
        assert!(pids.iter().all(|p| alive(*p)));
        (pids, lab.dir().to_owned())
    };
    for pid in pids {
        assert!(!alive(pid), "sshd {pid} survived the lab");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn open_and_down_stop_a_lab_started_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::up(&LabOptions::new(2, dir.path())).expect("up");
    let pids: Vec<u32> = lab.hosts().iter().map(|h| h.pid.unwrap()).collect();
    drop(lab); // A `Lab` leaves its daemons running.
    assert!(pids.iter().all(|p| alive(*p)));
    let mut reopened = Lab::open(dir.path()).expect("open");
    assert!(
        reopened
            .hosts()
            .iter()
            .all(|h| reopened.is_running(&h.name))
    );
    assert_eq!(reopened.down().expect("down"), 2);
    assert!(pids.iter().all(|p| !alive(*p)));
    // The record now says stopped; a second down stops nothing.
    let mut again = Lab::open(dir.path()).expect("open");
    assert!(again.hosts().iter().all(|h| h.pid.is_none()));
    assert_eq!(again.down().expect("down"), 0);
    // A stopped lab's directory can be reused.
    let mut lab = Lab::up(&LabOptions::new(1, dir.path())).expect("up again");
    assert_eq!(lab.hosts().len(), 1);
    assert_eq!(lab.down().expect("down"), 1);
}

/// `down` signals a pid only after checking that it still runs that host's own sshd config:
/// a pid reused by something else (here: this test process) survives.
#[test]
fn down_never_kills_a_foreign_pid() {
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::up(&LabOptions::new(2, dir.path())).expect("up");
    let real = lab.hosts()[0].pid.expect("pid");
    let me = std::process::id();
    // Make both the record and the pid file of h01 name this test process.
    let record = lab.dir().join("lab.toml");
    let text = std::fs::read_to_string(&record).unwrap();
    let faked = text.replacen(&format!("pid = {real}\n"), &format!("pid = {me}\n"), 1);
    assert_ne!(text, faked);
    std::fs::write(&record, faked).unwrap();
    let pid_file = lab.dir().join("sshd/h01/sshd.pid");
    std::fs::write(&pid_file, format!("{me}\n")).unwrap();

    let mut reopened = Lab::open(dir.path()).expect("open");
    assert_eq!(reopened.hosts()[0].pid, Some(me));
    assert!(!reopened.is_running("h01"));
    assert_eq!(
        reopened.down().expect("down"),
        1,
        "only h02 is ours to stop"
    );
    assert!(alive(me));
    assert!(alive(real), "the unrecorded daemon was not touched");

    // The original handle still knows the real pid and stops it.
    assert_eq!(lab.down().expect("down"), 1);
    assert!(!alive(real));
}

#[test]
fn up_refuses_a_foreign_directory_and_a_running_lab() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let err = Lab::up(&LabOptions::new(1, dir.path())).expect_err("refused");
    assert!(err.to_string().contains("not a lab directory"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let lab_dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::up(&LabOptions::new(1, lab_dir.path())).expect("up");
    let err = Lab::up(&LabOptions::new(1, lab_dir.path())).expect_err("refused");
    assert!(err.to_string().contains("still running"), "{err}");
    assert!(lab.is_running("h01"));
    lab.down().expect("down");
}

#[test]
fn explicit_first_address_and_port() {
    let dir = tempfile::tempdir().unwrap();
    // A block random allocation never uses (second octet < 100), itself picked at random so
    // that test runs in parallel processes do not collide; it ends in .249 to show the carry.
    let r = std::process::id() as usize ^ (dir.path().to_str().unwrap().len() * 7919);
    let first = std::net::Ipv4Addr::new(127, 1 + (r % 99) as u8, (r / 99 % 255) as u8, 249);
    let mut opts = LabOptions::new(3, dir.path());
    opts.first_address = Some(first);
    opts.port = 2299;
    let mut lab = Lab::up(&opts).expect("up");
    let got: Vec<String> = lab
        .hosts()
        .iter()
        .map(|h| format!("{}:{}", h.address, h.port))
        .collect();
    let [_, b, c, _] = first.octets();
    let want = [
        format!("127.{b}.{c}.249:2299"),
        format!("127.{b}.{c}.250:2299"),
        format!("127.{b}.{}.1:2299", c + 1),
    ];
    assert_eq!(got, want);
    assert_eq!(
        stdout_ok(&ssh(&lab, &lab.hosts()[2], "echo $FLEET_HOST")),
        "h03\n"
    );
    // The same block is busy now.
    let other = tempfile::tempdir().unwrap();
    let mut opts2 = LabOptions::new(1, other.path());
    opts2.first_address = Some(first);
    opts2.port = 2299;
    let err = Lab::up(&opts2).expect_err("busy");
    assert!(matches!(err, LabError::AddressInUse { .. }), "{err}");
    lab.down().expect("down");
}

#[test]
fn non_loopback_first_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = LabOptions::new(1, dir.path());
    opts.first_address = Some(std::net::Ipv4Addr::new(192, 168, 0, 10));
    let err = Lab::up(&opts).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "address `192.168.0.10` is outside 127.0.0.0/8"
    );
    assert!(!dir.path().join("sshd").exists(), "nothing started");
}

#[test]
fn start_host_fails_fast_when_its_address_is_taken() {
    let mut lab = TestLab::start(1);
    let h = lab.hosts()[0].clone();
    lab.lab_mut().stop_host(&h.name).expect("stop");
    let squatter = std::net::TcpListener::bind((h.address, h.port)).expect("bind");
    let t = std::time::Instant::now();
    let err = lab
        .lab_mut()
        .start_host(&h.name)
        .expect_err("address taken");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert!(matches!(err, LabError::AddressInUse { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("`{}:{}` is already in use", h.address, h.port)
    );
    assert_eq!(lab.host(&h.name).unwrap().pid, None);
    drop(squatter);
    lab.lab_mut().start_host(&h.name).expect("start once free");
    assert_eq!(
        stdout_ok(&ssh(&lab, &lab.hosts()[0], "echo $FLEET_HOST")),
        "h01\n"
    );
}

/// `drop_connections` cuts an open session (the client sees its connection end) and leaves
/// the host up and its command running; `freeze_host` leaves a new connection unanswered
/// (the kernel accepts it, no banner comes) until `thaw_host`.
#[test]
fn dropped_connections_end_and_a_frozen_host_answers_again_once_thawed() {
    use std::io::BufRead as _;
    use std::time::{Duration, Instant};

    let lab = TestLab::start(1);
    let h = lab.hosts()[0].clone();
    let marker = h.root.join("survived");
    let mut session = std::process::Command::new("ssh")
        .arg("-F")
        .arg(lab.ssh_config())
        .args(["-o", "BatchMode=yes"])
        .arg(h.address.to_string())
        .arg(format!(
            "echo started; sleep 1; touch '{}'",
            marker.display()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut line = String::new();
    std::io::BufReader::new(session.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "started\n");
    assert!(lab.drop_connections("h01").expect("drop") > 0);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = session.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the session outlived its cut"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    assert_eq!(
        stdout_ok(&ssh(&lab, &h, "echo up")),
        "up\n",
        "the host went down"
    );
    // The command of the cut session went on without it.
    let t = Instant::now();
    while !marker.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the cut session's command died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    lab.freeze_host("h01").expect("freeze");
    let mut tcp = std::net::TcpStream::connect((h.address, h.port)).expect("TCP accepted");
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut banner = [0u8; 4];
    assert!(
        std::io::Read::read(&mut tcp, &mut banner).is_err(),
        "a frozen host spoke"
    );
    lab.thaw_host("h01").expect("thaw");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::io::Read::read_exact(&mut tcp, &mut banner).expect("the banner once thawed");
    assert_eq!(&banner, b"SSH-");
}
