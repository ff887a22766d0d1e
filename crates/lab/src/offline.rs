//! A lab laid out without daemons: the procedure's unit tests run its hosts' commands in
//! this machine's own shell.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::io;
use crate::sshd::SshdFiles;
use crate::{
    Lab, LabError, LabHost, current_user, host_names, inventory, key_without_comment, keys, record,
};

impl Lab {
    /// Lays out a lab of `hosts` hosts in `dir` (an empty or new directory) without starting
    /// any daemon: the host directories, keys and client files as [`Lab::up`] writes them,
    /// every host on `127.0.0.1` port 1 (nothing listens there). For tests that run the
    /// hosts' commands on this machine directly (fleet's procedure unit tests); add sites
    /// with [`Lab::add_sites`].
    ///
    /// # Errors
    ///
    /// When `dir` is not empty or files cannot be written.
    pub fn offline(dir: &Path, hosts: usize) -> Result<Lab, LabError> {
        if hosts == 0 {
            return Err(LabError::NoHosts);
        }
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        if std::fs::read_dir(dir)
            .map_err(io("read", dir))?
            .next()
            .is_some()
        {
            return Err(LabError::Dir {
                dir: dir.to_owned(),
                reason: "not empty; an offline lab needs a directory of its own",
            });
        }
        let dir = dir.canonicalize().map_err(io("open", dir))?;
        keys::write_key_pair(&dir.join("client_key"), "fleet-lab-client")?;
        let mut list = Vec::with_capacity(hosts);
        for name in host_names(hosts) {
            let root = record::host_root(&dir, &name);
            let files = SshdFiles::new(&dir, &name);
            for d in [&files.dir, &root, &dir.join("home").join(&name)] {
                std::fs::create_dir_all(d).map_err(io("create", d))?;
            }
            let public = keys::write_key_pair(&files.host_key(), &name)?;
            list.push(LabHost {
                name,
                address: Ipv4Addr::LOCALHOST,
                port: 1,
                sshd_port: 1,
                pid: None,
                root,
                host_public_key: key_without_comment(&public),
            });
        }
        let lab = Lab {
            dir,
            user: current_user(),
            hosts: list,
            latency: None,
            proxy_pid: None,
            proxy_child: None,
            web_pid: None,
            web_port: None,
            bastion: None,
            private_dirs: false,
        };
        for (name, text) in [
            ("known_hosts", inventory::known_hosts(&lab)),
            ("inventory.toml", inventory::text(&lab)),
            ("ssh_config", inventory::ssh_config(&lab)),
        ] {
            let p = lab.dir.join(name);
            std::fs::write(&p, text).map_err(io("write", &p))?;
        }
        Ok(lab)
    }
}
