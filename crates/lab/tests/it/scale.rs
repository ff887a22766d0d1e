use std::time::{Duration, Instant};

use fleet_lab::TestLab;

use crate::{accepts, ssh, stdout_ok};

#[test]
fn fifty_hosts_start_within_the_deadline() {
    let t = Instant::now();
    let lab = TestLab::start(50);
    let took = t.elapsed();
    // The lab's own deadline is 30 s + 20 ms per host.
    assert!(took < Duration::from_secs(31), "took {took:?}");
    assert_eq!(lab.hosts().len(), 50);
    assert_eq!(lab.hosts()[0].name, "h01");
    assert_eq!(lab.hosts()[49].name, "h50");
    for h in lab.hosts() {
        assert!(h.pid.is_some() && accepts(h), "{h:?}");
    }
    for h in [&lab.hosts()[0], &lab.hosts()[49]] {
        assert_eq!(
            stdout_ok(&ssh(&lab, h, "echo $FLEET_HOST")),
            format!("{}\n", h.name)
        );
    }
}
