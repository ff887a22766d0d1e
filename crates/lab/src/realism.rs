//! Hosts set up the way real servers are, not the lab's default of root with one key and no
//! bastion: a bastion the others are reached through only, PAM keyboard-interactive, a
//! trusted user CA. (The login users are in `users.rs`.)

use std::path::Path;

use crate::error::io;
use crate::sshd::SshdFiles;
use crate::{Lab, LabError, record, start_deadline};

impl Lab {
    /// Makes host `name` the bastion: every other host is then reached only through it, by
    /// a name (`h02.fleet-lab.internal`) that only the bastion can resolve. Its sshd is
    /// restarted in a private mount namespace whose `/etc/hosts` names the others; the
    /// inventory gives them those names and `jump = "<name>"`, and known_hosts knows their
    /// keys under them. So a client that does not go through the bastion cannot even find
    /// them, and one that reaches them proves the path.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`]; when the bastion's sshd does not come back; when the files
    /// cannot be written.
    pub fn make_bastion(&mut self, name: &str) -> Result<(), LabError> {
        let i = self.index(name)?;
        self.bastion = Some(name.to_owned());
        let system = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let mut hosts = format!(
            "{}\n# fleet-lab: the hosts behind the bastion {name}\n",
            system.trim_end()
        );
        for h in self.hosts.iter().filter(|h| h.name != name) {
            hosts.push_str(&format!("{} {}\n", h.address, h.internal_name()));
        }
        let files = SshdFiles::new(&self.dir, name);
        let p = files.hosts_file();
        std::fs::write(&p, hosts).map_err(io("write", &p))?;
        self.stop_hosts(&[i]);
        self.write_files()?;
        self.start_hosts(&[i], start_deadline(1))
    }

    /// Makes host `name` take passwords only through PAM's keyboard-interactive
    /// conversation, as many hardened servers do (`UsePAM yes`,
    /// `KbdInteractiveAuthentication yes`, `PasswordAuthentication no` for everyone), and
    /// restarts it.
    ///
    /// # Errors
    ///
    /// [`LabError::UnknownHost`]; when its config cannot be rewritten or its sshd does not
    /// come back.
    pub fn keyboard_interactive_only(&mut self, name: &str) -> Result<(), LabError> {
        self.reconfigure(
            name,
            &[
                ("UsePAM no\n", "UsePAM yes\n"),
                (
                    "KbdInteractiveAuthentication no\n",
                    "KbdInteractiveAuthentication yes\n",
                ),
                (
                    "    PasswordAuthentication yes\n",
                    "    PasswordAuthentication no\n",
                ),
            ],
        )
    }

    /// Makes host `name` trust user certificates signed by the CA whose public key is
    /// `ca_public` (`TrustedUserCAKeys`), and restarts it.
    ///
    /// # Errors
    ///
    /// As [`Lab::keyboard_interactive_only`].
    pub fn trust_user_ca(&mut self, name: &str, ca_public: &Path) -> Result<(), LabError> {
        // Before the `Match` block, which runs to the end of the file.
        let line = format!(
            "TrustedUserCAKeys {}\n# The lab's operator",
            ca_public.display()
        );
        self.reconfigure(name, &[("# The lab's operator", &line)])
    }

    /// Puts `dir` first on the `PATH` of host `name`'s sessions, and restarts it: a host
    /// whose tools are not what they seem (a `cat` that corrupts what it copies, a hash
    /// tool that lies), for tests of what fleet checks for itself.
    ///
    /// # Errors
    ///
    /// As [`Lab::keyboard_interactive_only`].
    pub fn put_first_on_path(&mut self, name: &str, dir: &Path) -> Result<(), LabError> {
        let old = format!("SetEnv HOME={}/home/{name} ", self.dir.display());
        let new = format!(
            "SetEnv PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME={}/home/{name} ",
            dir.display(),
            self.dir.display()
        );
        self.reconfigure(name, &[(&old, &new)])
    }

    /// Rewrites host `name`'s sshd_config, each `(old, new)` replacing text that must be
    /// there exactly once (a template that changed must not leave a host silently as it
    /// was), and restarts it.
    fn reconfigure(&mut self, name: &str, edits: &[(&str, &str)]) -> Result<(), LabError> {
        let i = self.index(name)?;
        let config = SshdFiles::new(&self.dir, name).config();
        let mut text = std::fs::read_to_string(&config).map_err(io("read", &config))?;
        for (old, new) in edits {
            if text.matches(old).count() != 1 {
                return Err(LabError::SshdFailed {
                    host: name.to_owned(),
                    message: format!(
                        "its sshd_config does not have exactly one `{}` to change",
                        old.trim()
                    ),
                });
            }
            text = text.replacen(old, new, 1);
        }
        std::fs::write(&config, text).map_err(io("write", &config))?;
        self.stop_hosts(&[i]);
        record::write(self)?;
        self.start_hosts(&[i], start_deadline(1))
    }

    /// Gives every host a private directory: each host's sshd restarts in a mount namespace
    /// of its own, where [`Lab::private_dir`] (`DIR/private`, empty outside) shows that
    /// host's `DIR/hosts/<name>/private`. So one path names a different directory on each
    /// host, as on separate machines, and what a command delivered to one host can be told
    /// from what it delivered to another.
    ///
    /// # Errors
    ///
    /// The directories cannot be made, or a host does not come back (mount namespaces need
    /// root).
    pub fn give_private_dirs(&mut self) -> Result<(), LabError> {
        let shared = self.private_dir();
        std::fs::create_dir_all(&shared).map_err(io("create", &shared))?;
        for h in &self.hosts {
            let own = h.root.join("private");
            std::fs::create_dir_all(&own).map_err(io("create", &own))?;
        }
        self.private_dirs = true;
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        self.stop_hosts(&all);
        self.write_files()?;
        self.start_hosts(&all, start_deadline(all.len()))
    }

    /// The path at which each host shows its own private directory, once
    /// [`Lab::give_private_dirs`] made them; on the machine itself it stays empty.
    pub fn private_dir(&self) -> std::path::PathBuf {
        self.dir.join("private")
    }

    /// Whether [`Lab::give_private_dirs`] was called.
    pub fn has_private_dirs(&self) -> bool {
        self.private_dirs
    }

    /// The lab's bastion, if [`Lab::make_bastion`] made one.
    pub fn bastion(&self) -> Option<&str> {
        self.bastion.as_deref()
    }
}
