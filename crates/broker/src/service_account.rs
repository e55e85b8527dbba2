//! Service Account (JWT) signing material: each private key with its certificate, the choice of
//! which one signs now, and the certificate-expiry warning.

use std::path::PathBuf;
use std::time::Duration;

use imsgate_ims::certificate::{self, CertificateInfo};
use imsgate_ims::service_account::AssertionKey;

use crate::config::ServiceAccountConfig;

/// Shown at startup and by `doctor` for every service account.
pub const DEPRECATION: &str = "Adobe retired Service Account (JWT) credentials (end of life 30 June 2025; they stopped working by 1 March 2026): migrate to OAuth Server-to-Server (type = \"oauth_server_to_server\") in the Developer Console";

#[derive(Debug)]
pub struct SigningKey {
    pub key: AssertionKey,
    pub certificate: CertificateInfo,
    pub certificate_path: PathBuf,
}

#[derive(Debug)]
pub struct SigningKeys {
    pub keys: Vec<SigningKey>,
    pub warning: Duration,
}

impl SigningKeys {
    /// Loads every key and certificate, reporting every problem (unreadable, malformed, or a key
    /// that does not belong to its certificate) with where it is.
    pub fn load(at: &str, config: &ServiceAccountConfig) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut keys = Vec::new();
        for (i, k) in config.keys.iter().enumerate() {
            let kat = format!("{at}.keys[{i}]");
            let key = match k.private_key.load() {
                Ok(pem) => AssertionKey::from_pem(&pem)
                    .map_err(|e| problems.push(format!("{kat}.private_key: {e}")))
                    .ok(),
                Err(e) => {
                    problems.push(format!("{kat}.private_key: {e}"));
                    None
                }
            };
            let cert = match std::fs::read(&k.certificate) {
                Ok(bytes) => certificate::parse_pem(&bytes)
                    .map_err(|e| {
                        problems.push(format!(
                            "{kat}.certificate: {}: {e}",
                            k.certificate.display()
                        ))
                    })
                    .ok(),
                Err(e) => {
                    problems.push(format!(
                        "{kat}.certificate: cannot read {} ({})",
                        k.certificate.display(),
                        e.kind()
                    ));
                    None
                }
            };
            if let (Some(key), Some(cert)) = (key, cert) {
                if key.public_key_der() != cert.public_key {
                    problems.push(format!(
                        "{kat}: the private key does not belong to the certificate {}",
                        k.certificate.display()
                    ));
                    continue;
                }
                keys.push(SigningKey {
                    key,
                    certificate: cert,
                    certificate_path: k.certificate.clone(),
                });
            }
        }
        if problems.is_empty() {
            Ok(Self {
                keys,
                warning: config.certificate_warning,
            })
        } else {
            Err(problems)
        }
    }

    fn certificates(&self) -> Vec<CertificateInfo> {
        self.keys.iter().map(|k| k.certificate.clone()).collect()
    }

    /// The key that signs at `now` (Unix seconds): valid now and expiring last.
    pub fn signing_index(&self, now: u64) -> Option<usize> {
        certificate::select_signing(&self.certificates(), now)
    }

    pub fn signing(&self, now: u64) -> Option<&SigningKey> {
        self.signing_index(now).map(|i| &self.keys[i])
    }

    /// When the last certificate valid at `now` expires (Unix seconds).
    pub fn last_valid_expiry(&self, now: u64) -> Option<u64> {
        self.signing(now).map(|k| k.certificate.not_after)
    }

    /// A warning to show when every certificate is expired or the last valid one expires within
    /// the configured warning period.
    pub fn expiry_warning(&self, now: u64) -> Option<String> {
        match self.last_valid_expiry(now) {
            None => Some(
                "no certificate is valid now: generate a key and certificate (`imsgate keys generate`), upload the certificate to the Developer Console, and add it under keys".to_owned(),
            ),
            Some(t) if t.saturating_sub(now) <= self.warning.as_secs() => Some(format!(
                "the last valid certificate expires in {} days: upload a new one (`imsgate keys generate`) before it does",
                t.saturating_sub(now) / 86_400
            )),
            Some(_) => None,
        }
    }
}
