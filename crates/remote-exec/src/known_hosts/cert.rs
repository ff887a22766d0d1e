//! Host certificates, decided as OpenSSH decides them: a certificate is trusted when an
//! `@cert-authority` line for the host's name holds the key that signed it, it is a host
//! certificate, it is valid now, it carries no critical option, and one of its principals
//! (when it names any) is the host's name. `@revoked` refuses the authority's key and the host's own key
//! alike. A certificate that is not trusted is no error by itself: the key inside it is then
//! checked as a plain host key, as OpenSSH does.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::{Certificate, HashAlg, PublicKey};

use super::{KnownHosts, Marker, fingerprint};

/// What known_hosts makes of a host's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertVerdict {
    /// Signed by a trusted authority, and valid for this host now.
    Trusted,
    /// No `@cert-authority` line for the host holds the key that signed it.
    NoAuthority,
    /// Signed by a trusted authority, but not valid for this host now: why.
    Invalid(String),
    /// The authority or the host's key is `@revoked` at this line.
    Revoked { file: PathBuf, line: usize },
}

impl KnownHosts {
    /// Whether any `@cert-authority` line of `paths` is for one of `names`: only then does a
    /// connection ask the server for its certificate (a client that trusts no authority has
    /// no use for one).
    pub(crate) fn has_authority(&self, names: &[&str], paths: &[PathBuf]) -> bool {
        paths.iter().any(|p| {
            let file = self.file(p);
            names
                .iter()
                .any(|n| file.matching(n).any(|e| e.marker == Marker::CertAuthority))
        })
    }

    /// Decides `cert`, offered by the host known as `names` (its lookup names) and connected
    /// to as `host` (what its principals must match), at unix time `now`.
    pub(crate) fn check_certificate(
        &self,
        names: &[&str],
        host: &str,
        cert: &Certificate,
        paths: &[PathBuf],
        now: u64,
    ) -> CertVerdict {
        let authority = PublicKey::new(cert.signature_key().clone(), "");
        let subject = cert.public_key();
        let mut trusted = None;
        for path in paths {
            let file = self.file(path);
            for name in names {
                for e in file.matching(name) {
                    match e.marker {
                        Marker::Revoked
                            if e.key.key_data() == authority.key_data()
                                || e.key.key_data() == subject =>
                        {
                            return CertVerdict::Revoked {
                                file: path.clone(),
                                line: e.line,
                            };
                        }
                        Marker::CertAuthority if e.key.key_data() == authority.key_data() => {
                            trusted.get_or_insert((path.clone(), e.line));
                        }
                        _ => {}
                    }
                }
            }
        }
        let Some((file, line)) = trusted else {
            return CertVerdict::NoAuthority;
        };
        match judge(cert, &authority, host, now) {
            Ok(()) => CertVerdict::Trusted,
            Err(why) => CertVerdict::Invalid(format!(
                "its certificate, signed by the authority {} of `{}`:{line}, {why}",
                fingerprint(&authority),
                display(&file)
            )),
        }
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// The checks a certificate from a trusted authority must still pass.
fn judge(cert: &Certificate, authority: &PublicKey, host: &str, now: u64) -> Result<(), String> {
    if cert.cert_type() != CertType::Host {
        return Err("is a user certificate, not a host certificate".into());
    }
    if now < cert.valid_after() {
        return Err(format!("is not valid before {}", cert.valid_after()));
    }
    if now >= cert.valid_before() {
        return Err(format!("expired at {}", cert.valid_before()));
    }
    let fp = authority.fingerprint(HashAlg::Sha256);
    if cert.validate_at(now, [&fp]).is_err() {
        return Err("does not verify (its signature is not the authority's)".into());
    }
    if !cert.critical_options().is_empty() {
        return Err("carries critical options, which a host certificate may not".into());
    }
    // A principal is compared as a name (OpenSSH matches no pattern in a host certificate).
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == host) {
        return Err(format!(
            "is for {}, not `{host}`",
            principals
                .iter()
                .map(|p| format!("`{}`", p.escape_debug()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}
