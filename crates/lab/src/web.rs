//! The lab's web server: one nginx for the whole lab, a server block per site on its host's
//! loopback address, serving whatever the site's `current` symlink points at (and, for the
//! host name `preview.<site>`, its `preview` symlink beside it), so that a release switch and
//! a rollback are visible over HTTP, the way a user checks a site.
//!
//! nginx resolves the symlinks on every request (no open-file cache is configured), so a
//! switch is seen by the next request; a request can only fail when a link is missing.
//! The front page is the site's own `sites/<host>/index.html` (a Drupal 7 multisite), else
//! `sites/default/index.html` (a one-site Drupal 10 release): what PHP would render.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::error::io;
use crate::sshd::{self, read_pid};
use crate::{Lab, LabError, LabSite};

/// Where Debian's nginx is.
pub const NGINX: &str = "/usr/sbin/nginx";
/// The port every host's sites are served on (on the host's own address).
pub const WEB_PORT: u16 = 8080;

/// One HTTP answer: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code (`200`, `404`, `502`, ...).
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

impl Lab {
    fn web_dir(&self) -> PathBuf {
        self.dir().join("web")
    }

    fn web_conf(&self) -> PathBuf {
        self.web_dir().join("nginx.conf")
    }

    /// Starts the lab's nginx for `sites` (replacing one already running). Returns once
    /// every host's address answers.
    ///
    /// # Errors
    ///
    /// [`LabError::NginxMissing`] when nginx is not installed; [`LabError::Web`] when it
    /// rejects its configuration or does not come up.
    pub fn start_web(&mut self, sites: &[LabSite]) -> Result<(), LabError> {
        if !Path::new(NGINX).exists() {
            return Err(LabError::NginxMissing(NGINX.into()));
        }
        self.stop_web();
        let dir = self.web_dir();
        for sub in ["", "tmp"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        let conf = self.web_conf();
        let text = self.web_config(sites);
        std::fs::write(&conf, text).map_err(io("write", &conf))?;
        let out = Command::new(NGINX)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .output()
            .map_err(|source| LabError::Run {
                program: NGINX.into(),
                source,
            })?;
        if !out.status.success() {
            return Err(LabError::Web(format!(
                "nginx did not start with `{}`: {}",
                conf.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        self.web_pid = read_pid(&dir.join("nginx.pid"));
        self.web_port = Some(WEB_PORT);
        crate::record::write(self)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut addresses: Vec<Ipv4Addr> = self
            .hosts()
            .iter()
            .filter(|h| sites.iter().any(|s| s.host == h.name))
            .map(|h| h.address)
            .collect();
        addresses.dedup();
        for a in addresses {
            while TcpStream::connect_timeout(
                &SocketAddr::from((a, WEB_PORT)),
                Duration::from_millis(200),
            )
            .is_err()
            {
                if Instant::now() > deadline {
                    return Err(LabError::Web(format!(
                        "nginx does not answer on {a}:{WEB_PORT} (see `{}`)",
                        dir.join("error.log").display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The nginx configuration for `sites`.
    fn web_config(&self, sites: &[LabSite]) -> String {
        let dir = self.web_dir();
        let d = dir.display();
        let mut t = String::new();
        let _ = writeln!(t, "# fleet-lab web server: `fleet-lab down` stops it");
        // Workers run as the lab's user: its files are private to it.
        if rustix::process::geteuid().is_root() {
            let _ = writeln!(t, "user root;");
        }
        let _ = writeln!(
            t,
            "worker_processes 1;\npid \"{d}/nginx.pid\";\nerror_log \"{d}/error.log\" warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n    access_log off;\n    default_type text/html;\n    client_body_temp_path \"{d}/tmp/body\";\n    proxy_temp_path \"{d}/tmp/proxy\";\n    fastcgi_temp_path \"{d}/tmp/fastcgi\";\n    uwsgi_temp_path \"{d}/tmp/uwsgi\";\n    scgi_temp_path \"{d}/tmp/scgi\";"
        );
        for site in sites {
            let Some(host) = self.host(&site.host) else {
                continue;
            };
            let base = site.current.parent().unwrap_or(&site.current);
            for (name, link) in [
                (site.uri_host().to_owned(), "current"),
                (format!("preview.{}", site.uri_host()), "preview"),
            ] {
                let _ = writeln!(
                    t,
                    "    server {{\n        listen {}:{WEB_PORT};\n        server_name {name};\n        root \"{}/{link}\";\n        location = / {{ try_files /sites/{}/index.html /sites/default/index.html =404; }}\n        location / {{ try_files $uri =404; }}\n    }}",
                    host.address,
                    base.display(),
                    site.uri_host(),
                );
            }
        }
        t.push_str("}\n");
        t
    }

    /// Stops the lab's nginx, if it runs (only a process whose command line names this
    /// lab's nginx.conf is signalled).
    pub fn stop_web(&mut self) {
        let conf = self.web_conf();
        let recorded = self.web_pid.take();
        let from_file =
            read_pid(&self.web_dir().join("nginx.pid")).filter(|p| Some(*p) != recorded);
        for pid in recorded.into_iter().chain(from_file) {
            stop_nginx(pid, &conf);
        }
        self.web_port = None;
    }

    /// The port the lab's sites are served on, while its web server runs.
    pub fn web_port(&self) -> Option<u16> {
        self.web_port
    }

    /// `GET /` of `site` from the lab's web server (of its preview with `preview`), over
    /// HTTP/1.0 with a 5 s bound.
    ///
    /// # Errors
    ///
    /// When the site's host is unknown or the server cannot be reached or answers garbage.
    pub fn http_get(&self, site: &LabSite, preview: bool) -> Result<Answer, LabError> {
        let host = self
            .host(&site.host)
            .ok_or_else(|| LabError::UnknownHost(site.host.clone()))?;
        let name = if preview {
            format!("preview.{}", site.uri_host())
        } else {
            site.uri_host().to_owned()
        };
        get(SocketAddr::from((host.address, WEB_PORT)), &name)
            .map_err(|e| LabError::Web(format!("GET http://{name}/ at {}: {e}", host.address)))
    }
}

fn get(at: SocketAddr, host: &str) -> std::io::Result<Answer> {
    let limit = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&at, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(
        s,
        "GET / HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {head:?}")))?;
    Ok(Answer {
        status,
        body: body.to_owned(),
    })
}

fn is_our_nginx(pid: u32, conf: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let c = String::from_utf8_lossy(&c);
        c.contains("nginx") && c.contains(&*conf.to_string_lossy())
    }) && !sshd::is_zombie(pid)
}

/// SIGTERM (nginx's fast shutdown), then SIGKILL after 3 s.
fn stop_nginx(pid: u32, conf: &Path) {
    let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if !is_our_nginx(pid, conf) || kill_process(p, Signal::TERM).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while is_our_nginx(pid, conf) {
        if Instant::now() > deadline {
            let _ = kill_process(p, Signal::KILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
