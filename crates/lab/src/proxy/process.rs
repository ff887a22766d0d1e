//! The proxy as a background process, like the sshds: `fleet-lab proxy --dir DIR
//! --foreground`, started in its own process group with its output in
//! `DIR/proxy/proxy.log`, recorded by pid, and stopped only after checking that the pid
//! still runs this lab's proxy.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddrV4;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::error::io;
use crate::{Lab, LabError, Latency, record, sshd};

/// Overrides where the `fleet-lab` binary that runs the proxy is.
pub(crate) const PROGRAM_ENV: &str = "FLEET_LAB_BIN";

/// The line a proxy prints on stdout once every listener is bound.
const READY: &str = "ready";

/// The line a proxy prints (with `address:port`) when a host's address is taken.
const IN_USE: &str = "in-use";

/// How long [`stop`] waits after SIGTERM before sending SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// `DIR/proxy/`: the proxy's pid file and log.
fn dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("proxy")
}

/// `DIR/proxy/proxy.pid`, written once the listeners are bound.
pub(crate) fn pid_file(lab_dir: &Path) -> PathBuf {
    dir(lab_dir).join("proxy.pid")
}

fn log_file(lab_dir: &Path) -> PathBuf {
    dir(lab_dir).join("proxy.log")
}

/// Reports the outcome of binding to the process waiting in [`start`].
pub(crate) fn announce(out: &mut impl Write, bound: Result<(), &LabError>) {
    let line = match bound {
        Ok(()) => READY.to_owned(),
        Err(LabError::AddressInUse { address, port }) => format!("{IN_USE} {address}:{port}"),
        Err(e) => format!("error: {}", e.chain()),
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The `fleet-lab` binary: `$FLEET_LAB_BIN`, else this process when it is `fleet-lab`, else
/// `fleet-lab` next to this executable or one directory up (where cargo puts it for the
/// test binaries in `target/debug/deps/`).
fn program() -> Result<PathBuf, LabError> {
    if let Some(p) = std::env::var_os(PROGRAM_ENV) {
        return Ok(p.into());
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_name().is_some_and(|n| n == "fleet-lab") {
            return Ok(exe);
        }
        for dir in exe.parent().into_iter().flat_map(|d| [Some(d), d.parent()]) {
            let Some(dir) = dir else { continue };
            let candidate = dir.join("fleet-lab");
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(candidate);
        }
    }
    Err(LabError::ProxyProgramMissing { tried })
}

/// Starts the proxy of the lab recorded in `lab_dir` and waits, until `deadline`, for it to
/// say that every listener is bound. The child is returned so its owner can reap it.
fn start(lab_dir: &Path, deadline: Instant) -> Result<Child, LabError> {
    let program = program()?;
    let d = dir(lab_dir);
    std::fs::create_dir_all(&d).map_err(io("create", &d))?;
    let log_path = log_file(lab_dir);
    let log_start = std::fs::metadata(&log_path).map_or(0, |m| m.len());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io("open", &log_path))?;
    let mut child = Command::new(&program)
        .arg("proxy")
        .arg("--dir")
        .arg(lab_dir)
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        // Its own group: a Ctrl-C meant for `fleet-lab up` or a test must not reach it.
        .process_group(0)
        .spawn()
        .map_err(|source| LabError::Run {
            program: program.display().to_string(),
            source,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let line = std::thread::scope(|s| {
        // Reads one line; after a timeout the child is killed, which ends the read.
        s.spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        if line.is_err() {
            let _ = child.kill();
        }
        line.ok()
    });
    let failed = |child: &mut Child, what: String| {
        let status = child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        let log = sshd::tail(&sshd::log_since(&log_path, log_start));
        LabError::ProxyFailed {
            message: format!("{what} ({status}){}", sshd::prefixed(": ", &log)),
        }
    };
    let Some(line) = line else {
        return Err(failed(&mut child, "not ready in time".into()));
    };
    let line = line.trim();
    if line == READY {
        return Ok(child);
    }
    if let Some(addr) = line.strip_prefix(IN_USE).map(str::trim)
        && let Ok(addr) = addr.parse::<SocketAddrV4>()
    {
        let _ = child.wait();
        return Err(LabError::AddressInUse {
            address: *addr.ip(),
            port: addr.port(),
        });
    }
    let what = if line.is_empty() {
        "exited".to_owned()
    } else {
        line.to_owned()
    };
    Err(failed(&mut child, what))
}

/// Returns true when `pid` is alive and is the proxy of the lab in `lab_dir` (its command
/// line says `proxy --dir DIR --foreground`). A recorded pid alone is never trusted.
pub(crate) fn is_our_proxy(pid: u32, lab_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = lab_dir.as_os_str().as_encoded_bytes();
    args.contains(&&b"proxy"[..])
        && args.contains(&&b"--foreground"[..])
        && args.windows(2).any(|w| w[0] == b"--dir" && w[1] == dir)
        && !sshd::is_zombie(pid)
}

/// Stops the proxy `pid` if it is this lab's: SIGTERM, then SIGKILL after 3 s. Returns
/// whether it was ours to stop.
pub(crate) fn stop(pid: u32, lab_dir: &Path) -> bool {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    if !is_our_proxy(pid, lab_dir) || kill_process(p, Signal::TERM).is_err() {
        return false;
    }
    let deadline = Instant::now() + TERM_GRACE;
    while is_our_proxy(pid, lab_dir) {
        if Instant::now() > deadline {
            let _ = kill_process(p, Signal::KILL);
            let deadline = Instant::now() + Duration::from_secs(1);
            while is_our_proxy(pid, lab_dir) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

/// The CPU time (user + system) process `pid` has used, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

impl Lab {
    /// The latency the lab's proxy applies; `None` when clients reach the sshds directly.
    pub fn latency(&self) -> Option<Latency> {
        self.latency
    }

    /// The pid of the lab's proxy as recorded; `None` without latency or when stopped.
    pub fn proxy_pid(&self) -> Option<u32> {
        self.proxy_pid
    }

    /// Returns true when the recorded proxy is alive and is this lab's.
    pub fn proxy_running(&self) -> bool {
        self.proxy_pid.is_some_and(|p| is_our_proxy(p, &self.dir))
    }

    /// The CPU time (user + system) the running proxy has used so far, from
    /// `/proc/PID/stat`; `None` when it is not running.
    pub fn proxy_cpu(&self) -> Option<Duration> {
        self.proxy_pid
            .filter(|_| self.proxy_running())
            .and_then(cpu_time)
    }

    /// Starts the lab's proxy unless it runs; returns true when it was started. It runs in
    /// the background until [`Lab::down`] or [`Lab::stop_proxy`], outliving this process.
    ///
    /// The proxy is the `fleet-lab` binary (`fleet-lab proxy --dir DIR --foreground`):
    /// `$FLEET_LAB_BIN`, or the `fleet-lab` cargo built next to the running executable.
    ///
    /// # Errors
    ///
    /// [`LabError::NoLatency`] for a lab without latency, [`LabError::ProxyProgramMissing`],
    /// [`LabError::AddressInUse`] when a host's address and port are taken,
    /// [`LabError::ProxyFailed`] when it does not come up, or when the record cannot be
    /// written.
    pub fn start_proxy(&mut self) -> Result<bool, LabError> {
        if self.latency.is_none() {
            return Err(LabError::NoLatency);
        }
        if self.proxy_running() {
            return Ok(false);
        }
        self.reap_proxy();
        // Should the record have lost it, a proxy still running is found by its pid file.
        if let Some(pid) =
            sshd::read_pid(&pid_file(&self.dir)).filter(|p| is_our_proxy(*p, &self.dir))
        {
            self.proxy_pid = Some(pid);
            record::write(self)?;
            return Ok(false);
        }
        self.proxy_pid = None;
        let _ = std::fs::remove_file(pid_file(&self.dir));
        // The proxy reads its routes and latency from the record.
        record::write(self)?;
        let deadline = crate::start_deadline(self.hosts.len());
        let child = start(&self.dir, deadline)?;
        self.proxy_pid = Some(child.id());
        self.proxy_child = Some(child);
        record::write(self)
            .map(|()| true)
            .inspect_err(|_| self.stop_proxy_process())
    }

    /// With latency, starts the proxy in front of the running sshds and waits until the
    /// first host answers through it; on failure stops the sshds again.
    pub(crate) fn start_front(&mut self, deadline: Instant) -> Result<(), LabError> {
        if self.latency.is_none() {
            return Ok(());
        }
        let result = self
            .start_proxy()
            .and_then(|_| self.answers_through_proxy(deadline));
        if result.is_err() {
            let _ = self.down();
        }
        result
    }

    /// Waits until the first host sends its SSH banner through the proxy.
    fn answers_through_proxy(&self, deadline: Instant) -> Result<(), LabError> {
        let Some(h) = self.hosts.first() else {
            return Ok(());
        };
        loop {
            let last = match sshd::banner(h.address, h.port) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(LabError::ProxyFailed {
                    message: format!(
                        "host `{}` does not answer through it on `{}:{}`: {last}",
                        h.name, h.address, h.port
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the lab's proxy; returns true when it was running. The sshds keep running, so
    /// their addresses refuse connections until the proxy is started again.
    ///
    /// # Errors
    ///
    /// When the record cannot be rewritten.
    pub fn stop_proxy(&mut self) -> Result<bool, LabError> {
        let running = self.proxy_running();
        self.stop_proxy_process();
        record::write(self)?;
        Ok(running)
    }

    /// Stops the recorded proxy and the one in the pid file (each only if it is this lab's)
    /// and forgets it.
    pub(crate) fn stop_proxy_process(&mut self) {
        let recorded = self.proxy_pid.take();
        let from_file = sshd::read_pid(&pid_file(&self.dir)).filter(|p| Some(*p) != recorded);
        for pid in recorded.into_iter().chain(from_file) {
            stop(pid, &self.dir);
        }
        self.reap_proxy();
        let _ = std::fs::remove_file(pid_file(&self.dir));
    }

    /// Collects the exit status of a proxy this process started once it has exited (so it
    /// leaves no zombie), and lets go of one that is no longer the recorded proxy.
    fn reap_proxy(&mut self) {
        if let Some(child) = &mut self.proxy_child {
            if matches!(child.try_wait(), Ok(None)) && self.proxy_pid == Some(child.id()) {
                return;
            }
            self.proxy_child = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_lines_are_what_start_reads() {
        let mut out = Vec::new();
        announce(&mut out, Ok(()));
        announce(
            &mut out,
            Err(&LabError::AddressInUse {
                address: std::net::Ipv4Addr::new(127, 9, 8, 7),
                port: 2222,
            }),
        );
        announce(&mut out, Err(&LabError::NoLatency));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ready\nin-use 127.9.8.7:2222\nerror: this lab has no latency, so no proxy\n"
        );
    }

    #[test]
    fn only_a_proxy_of_this_very_dir_matches() {
        // This test process is no proxy at all.
        assert!(!is_our_proxy(std::process::id(), Path::new("/tmp")));
        assert!(!is_our_proxy(u32::MAX, Path::new("/tmp")));
    }

    #[test]
    fn cpu_time_of_this_process_grows() {
        let before = cpu_time(std::process::id()).expect("own stat");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = cpu_time(std::process::id()).expect("own stat");
        assert!(after > before, "{before:?} -> {after:?}");
        assert!(cpu_time(u32::MAX).is_none());
    }
}
