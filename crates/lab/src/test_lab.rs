//! The test kit: a lab in a temporary directory, torn down on drop.

use crate::{Lab, LabError, LabOptions, Latency};

/// A lab in a fresh temporary directory; dropping it stops every daemon (by pid) and removes
/// the directory.
///
/// Tests that need SSH hosts start one with [`TestLab::start`]. It panics when the lab cannot
/// start (for example, sshd is not installed), so such tests fail rather than skip.
/// `TestLab` dereferences to [`Lab`].
#[derive(Debug)]
pub struct TestLab {
    // Declared first, so it is dropped (after `Drop::drop` stopped the daemons) before the
    // directory the daemons used goes away.
    lab: Lab,
    dir: tempfile::TempDir,
}

impl TestLab {
    /// Starts a lab of `hosts` hosts on a random loopback block, port 2222.
    ///
    /// # Panics
    ///
    /// When the lab cannot start, with the reason (e.g. how to install sshd): a test
    /// needing the lab must fail, not silently pass.
    pub fn start(hosts: usize) -> TestLab {
        TestLab::try_start(hosts).unwrap_or_else(|e| panic!("fleet-lab: {}", e.chain()))
    }

    /// Starts a lab of `hosts` hosts, returning the error instead of panicking.
    ///
    /// # Errors
    ///
    /// As [`Lab::up`], or when the temporary directory cannot be created.
    pub fn try_start(hosts: usize) -> Result<TestLab, LabError> {
        TestLab::try_start_with(hosts, None)
    }

    /// Starts a lab of `hosts` hosts behind the latency proxy (see [`Latency`]); clients
    /// reach them through the same inventory, known_hosts and ssh_config as without.
    ///
    /// # Panics
    ///
    /// As [`TestLab::start`], and when the `fleet-lab` binary that runs the proxy is not
    /// built (see [`Lab::start_proxy`]).
    pub fn with_latency(hosts: usize, latency: Latency) -> TestLab {
        TestLab::try_start_with(hosts, Some(latency))
            .unwrap_or_else(|e| panic!("fleet-lab: {}", e.chain()))
    }

    /// Starts `hosts` hosts, the first of them the bastion every other is reached through
    /// (see [`Lab::make_bastion`]).
    ///
    /// # Panics
    ///
    /// As [`TestLab::start`].
    pub fn with_bastion(hosts: usize) -> TestLab {
        let mut t = TestLab::start(hosts);
        let first = t.lab.hosts()[0].name.clone();
        t.lab
            .make_bastion(&first)
            .unwrap_or_else(|e| panic!("fleet-lab bastion: {}", e.chain()));
        t
    }

    /// Starts `hosts` hosts, each showing its own directory at [`Lab::private_dir`] (see
    /// [`Lab::give_private_dirs`]).
    ///
    /// # Panics
    ///
    /// As [`TestLab::start`].
    pub fn with_private_dirs(hosts: usize) -> TestLab {
        let mut t = TestLab::start(hosts);
        t.lab
            .give_private_dirs()
            .unwrap_or_else(|e| panic!("fleet-lab private dirs: {}", e.chain()));
        t
    }

    fn try_start_with(hosts: usize, latency: Option<Latency>) -> Result<TestLab, LabError> {
        let dir = tempfile::Builder::new()
            .prefix("fleet-lab-")
            .tempdir()
            .map_err(crate::error::io("create", std::env::temp_dir()))?;
        let mut opts = LabOptions::new(hosts, dir.path());
        opts.latency = latency;
        let lab = Lab::up(&opts)?;
        Ok(TestLab { lab, dir })
    }

    /// Starts `hosts` hosts with `per_host` CiviCRM sites each at `version` (see
    /// [`Lab::add_sites`]); the release tarball is one minor version newer.
    ///
    /// # Panics
    ///
    /// As [`TestLab::start`].
    pub fn with_sites(hosts: usize, per_host: usize, version: &str) -> TestLab {
        TestLab::with_sites_opts(hosts, &crate::SitesOptions::new(per_host, version))
    }

    /// [`TestLab::start`], then [`Lab::add_sites`] with `opts`.
    ///
    /// # Panics
    ///
    /// As [`TestLab::start`].
    pub fn with_sites_opts(hosts: usize, opts: &crate::SitesOptions) -> TestLab {
        let lab = TestLab::start(hosts);
        lab.add_sites(opts)
            .unwrap_or_else(|e| panic!("fleet-lab sites: {}", e.chain()));
        lab
    }

    /// The lab.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The lab, to stop or start hosts.
    pub fn lab_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }

    /// The temporary directory (the same as `lab().dir()`, before symlinks are resolved).
    pub fn temp_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl std::ops::Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

impl std::ops::DerefMut for TestLab {
    fn deref_mut(&mut self) -> &mut Lab {
        &mut self.lab
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        // Nothing useful can be done with an error here: the daemons (and the proxy) were
        // signalled anyway.
        let _ = self.lab.down();
    }
}
