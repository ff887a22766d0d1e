//! `DIR/lab.toml`: the machine-readable record of a lab's hosts and daemons, which `open`,
//! `down` and `status` read back.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::io;
use crate::inventory::toml_str;
use crate::sshd::SshdFiles;
use crate::{Lab, LabError, Latency};

/// The record's file name inside the lab directory.
pub(crate) const RECORD: &str = "lab.toml";

/// The record as read back.
#[derive(Debug, Deserialize)]
pub(crate) struct Record {
    pub(crate) user: String,
    /// Present when the lab has latency.
    pub(crate) proxy: Option<RecordProxy>,
    /// Present while the lab's web server runs.
    pub(crate) web: Option<RecordWeb>,
    /// The bastion host's name, in a bastion lab.
    #[serde(default)]
    pub(crate) bastion: Option<String>,
    /// Whether each host shows its own directory at the lab's `private` path.
    #[serde(default)]
    pub(crate) private_dirs: bool,
    #[serde(default, rename = "host")]
    pub(crate) hosts: Vec<RecordHost>,
}

/// The `[proxy]` table: the latency and the proxy's pid.
#[derive(Debug, Deserialize)]
pub(crate) struct RecordProxy {
    #[serde(with = "humantime_serde_str")]
    pub(crate) rtt: Duration,
    #[serde(with = "humantime_serde_str")]
    pub(crate) jitter: Duration,
    pub(crate) loss: f64,
    /// Absent while the proxy is stopped.
    pub(crate) pid: Option<u32>,
}

impl RecordProxy {
    pub(crate) fn latency(&self) -> Latency {
        Latency {
            rtt: self.rtt,
            jitter: self.jitter,
            loss: self.loss,
        }
    }
}

/// The `[web]` table: the web server's port and master pid.
#[derive(Debug, Deserialize)]
pub(crate) struct RecordWeb {
    /// The sites' port (named so that no key of the record but the hosts' ends in `port`).
    pub(crate) http: u16,
    pub(crate) pid: Option<u32>,
}

/// Durations as humantime strings (`"100ms"`), the way the flags take them.
mod humantime_serde_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// One `[[host]]` entry.
#[derive(Debug, Deserialize)]
pub(crate) struct RecordHost {
    pub(crate) name: String,
    pub(crate) address: Ipv4Addr,
    pub(crate) port: u16,
    /// Where its sshd listens; the same as `port` when the lab has no proxy.
    pub(crate) sshd_port: Option<u16>,
    /// Absent while the host is stopped.
    pub(crate) pid: Option<u32>,
    pub(crate) host_public_key: String,
}

/// The record's text: written by hand, like the inventory, so paths are quoted the same way.
pub(crate) fn text(lab: &Lab) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# fleet-lab record of {}: `fleet-lab down --dir DIR` stops these pids\n\
         # (each only after checking that it still runs that host's sshd_config)",
        lab.dir().display()
    );
    let _ = writeln!(t, "user = {}", toml_str(lab.user()));
    if let Some(b) = lab.bastion() {
        let _ = writeln!(t, "bastion = {}", toml_str(b));
    }
    if lab.has_private_dirs() {
        let _ = writeln!(t, "private_dirs = true");
    }
    if let Some(l) = lab.latency() {
        // No key here may end in `port`: scripts (bench.py) take the first `port = ` of the
        // file for the hosts' port.
        let _ = writeln!(
            t,
            "\n# the latency proxy in front of every host (`fleet-lab proxy`)\n[proxy]"
        );
        let _ = writeln!(t, "rtt = \"{}\"", humantime::format_duration(l.rtt));
        let _ = writeln!(t, "jitter = \"{}\"", humantime::format_duration(l.jitter));
        // `{:?}` always writes a TOML float (`0.0`, not `0`).
        let _ = writeln!(t, "loss = {:?}", l.loss);
        if let Some(pid) = lab.proxy_pid() {
            let _ = writeln!(t, "pid = {pid}");
        }
    }
    if let Some(port) = lab.web_port() {
        let _ = writeln!(
            t,
            "\n# the web server of the lab's sites (nginx)\n[web]\nhttp = {port}"
        );
        if let Some(pid) = lab.web_pid {
            let _ = writeln!(t, "pid = {pid}");
        }
    }
    for h in lab.hosts() {
        let files = SshdFiles::new(lab.dir(), &h.name);
        let _ = writeln!(t, "\n[[host]]");
        let _ = writeln!(t, "name = {}", toml_str(&h.name));
        let _ = writeln!(t, "address = \"{}\"", h.address);
        let _ = writeln!(t, "port = {}", h.port);
        let _ = writeln!(t, "sshd_port = {}", h.sshd_port);
        if let Some(pid) = h.pid {
            let _ = writeln!(t, "pid = {pid}");
        }
        let _ = writeln!(t, "sshd_config = {}", toml_str(&path_str(&files.config())));
        let _ = writeln!(t, "root = {}", toml_str(&path_str(&h.root)));
        let _ = writeln!(t, "host_public_key = {}", toml_str(&h.host_public_key));
    }
    t
}

/// Writes the record of `lab`.
pub(crate) fn write(lab: &Lab) -> Result<(), LabError> {
    let p = lab.dir().join(RECORD);
    std::fs::write(&p, text(lab)).map_err(io("write", &p))
}

/// Reads the record in `dir`; `Ok(None)` when there is none.
pub(crate) fn read(dir: &Path) -> Result<Option<Record>, LabError> {
    let p = dir.join(RECORD);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &p)(e)),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|source| LabError::Record { path: p, source })
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The host's root directory as recorded (always `DIR/hosts/<name>`).
pub(crate) fn host_root(dir: &Path, name: &str) -> PathBuf {
    dir.join("hosts").join(name)
}
