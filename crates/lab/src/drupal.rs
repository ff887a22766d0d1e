//! What `fleet migrate` needs from the lab: a Drupal core release tarball of the new major
//! (laid out as drupal.org's: one top directory, `core/lib/Drupal.php` naming the version, and
//! the project's Drush in `vendor/bin/drush`), the contrib tarballs the migration uses, and a
//! manifest naming them with their SHA-256.
//!
//! The release's `vendor/bin/drush` runs the lab's fake Drush 12 (`DIR/bin/fake-drush12`), the
//! way Composer's launcher runs the project's own Drush: its Drupal root is the release it
//! is in, so two releases of one site are two sites to it.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::io;
use crate::inventory::toml_str;
use crate::sites::{tar, write};
use crate::{Lab, LabError};

/// The Drupal version of the lab's new-major release.
pub const DRUPAL_RELEASE: &str = "10.3.1";

/// The CiviCRM the Drupal release carries (`vendor/civicrm/civicrm-core`, as Composer puts
/// it): newer than every lab site's, so a migrated site's CiviCRM database is upgraded.
pub const DRUPAL_RELEASE_CIVICRM: &str = "5.75.0";

/// The contrib modules the lab's migration uses, with their versions.
pub const CONTRIB: &[(&str, &str)] = &[("migrate_plus", "6.0.4"), ("migrate_upgrade", "4.0.2")];

/// The files [`Lab::write_drupal_release`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrupalRelease {
    /// `DIR/drupal-<version>.tar.gz`.
    pub core: PathBuf,
    /// `DIR/<module>-<version>.tar.gz`, in [`CONTRIB`] order.
    pub contrib: Vec<PathBuf>,
    /// `DIR/migrate.toml`.
    pub manifest: PathBuf,
}

impl Lab {
    /// Writes the Drupal `version` core tarball, the [`CONTRIB`] tarballs and a manifest for
    /// them (`DIR/migrate.toml`); the sites' HTTP checks go to the lab's web server on `port`
    /// (see [`Lab::start_web`]).
    ///
    /// # Errors
    ///
    /// When files cannot be written or `tar` fails.
    pub fn write_drupal_release(
        &self,
        version: &str,
        port: u16,
    ) -> Result<DrupalRelease, LabError> {
        let top = format!("drupal-{version}");
        let stage = self.dir().join("drupal-stage");
        let _ = std::fs::remove_dir_all(&stage);
        let root = stage.join(&top);
        write(
            &root.join("index.php"),
            "<?php\n// Drupal 10 front controller (fake)\n",
        )?;
        write(
            &root.join("core/lib/Drupal.php"),
            &format!("<?php\nclass Drupal {{\n  const VERSION = '{version}';\n}}\n"),
        )?;
        write(
            &root.join("sites/default/default.settings.php"),
            "<?php\n$databases = [];\n",
        )?;
        write(
            &root.join("modules/README.txt"),
            "Contributed modules go in modules/contrib.\n",
        )?;
        write(
            &root.join("composer.json"),
            "{\"name\": \"drupal/recommended-project\", \"require\": {\"drush/drush\": \"^12\"}}\n",
        )?;
        crate::sites::write_code(
            &root.join("vendor/civicrm/civicrm-core"),
            DRUPAL_RELEASE_CIVICRM,
        )?;
        // The CiviCRM module for Drupal 8+ (civicrm/civicrm-drupal-8), where Composer puts it.
        write(
            &root.join("modules/contrib/civicrm/civicrm.info.yml"),
            &format!(
                "name: CiviCRM\ntype: module\ncore_version_requirement: ^10\nversion: '{DRUPAL_RELEASE_CIVICRM}'\n"
            ),
        )?;
        let drush = root.join("vendor/bin/drush");
        let fake = self.dir().join("bin/fake-drush12");
        write(
            &drush,
            &format!(
                "#!/bin/sh\n# Composer's launcher for this project's Drush (fleet-lab: the fake Drush 12)\nexec {} --fake-self=\"$0\" \"$@\"\n",
                sh_quote(&fake.display().to_string())
            ),
        )?;
        std::fs::set_permissions(&drush, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod", &drush))?;
        let core = self.dir().join(format!("{top}.tar.gz"));
        tar(&core, &stage, &[&top])?;
        std::fs::remove_dir_all(&stage).map_err(io("remove", &stage))?;

        let mut contrib = Vec::new();
        for (module, v) in CONTRIB {
            let stage = self.dir().join(format!("{module}-stage"));
            let _ = std::fs::remove_dir_all(&stage);
            write(
                &stage.join(module).join(format!("{module}.info.yml")),
                &format!(
                    "name: {module}\ntype: module\ncore_version_requirement: ^10\nversion: '{v}'\n"
                ),
            )?;
            let tarball = self.dir().join(format!("{module}-{v}.tar.gz"));
            tar(&tarball, &stage, &[module])?;
            std::fs::remove_dir_all(&stage).map_err(io("remove", &stage))?;
            contrib.push(tarball);
        }

        let manifest = self.dir().join("migrate.toml");
        write(&manifest, &manifest_text(version, &core, &contrib, port)?)?;
        Ok(DrupalRelease {
            core,
            contrib,
            manifest,
        })
    }
}

fn manifest_text(
    version: &str,
    core: &Path,
    contrib: &[PathBuf],
    port: u16,
) -> Result<String, LabError> {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# fleet migrate manifest (fleet-lab): what each site's new release is built from\n"
    );
    let _ = writeln!(t, "[core]\nversion = {}", toml_str(version));
    let _ = writeln!(t, "tarball = {}", toml_str(&core.display().to_string()));
    let _ = writeln!(t, "sha256 = {}", toml_str(&sha256_file(core)?));
    for (path, (module, v)) in contrib.iter().zip(CONTRIB) {
        let _ = writeln!(t, "\n[[module]]\nname = {}", toml_str(module));
        let _ = writeln!(t, "version = {}", toml_str(v));
        let _ = writeln!(t, "tarball = {}", toml_str(&path.display().to_string()));
        let _ = writeln!(t, "sha256 = {}", toml_str(&sha256_file(path)?));
    }
    let _ = writeln!(
        t,
        "\n[site]\nprofile = \"minimal\"\ndatabase = \"{{old_db}}_d10\"\nenable = [\"migrate\", \"migrate_drupal\", \"migrate_plus\", \"migrate_upgrade\", \"civicrm\"]"
    );
    let _ = writeln!(t, "\n[civicrm]\ndatabase = \"{{old_db}}_d10\"");
    let _ = writeln!(
        t,
        "\n[qa]\ncount_tolerance = 0\nprobe = \"http://{{address}}:{port}/\"\nmarker = {}",
        toml_str(&format!("Drupal {version}"))
    );
    Ok(t)
}

/// The SHA-256 of a file, in hex.
fn sha256_file(path: &Path) -> Result<String, LabError> {
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }))
}

/// `s` as one POSIX shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
