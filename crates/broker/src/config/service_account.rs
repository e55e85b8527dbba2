//! The `service_account` credential (Service Account / JWT): org, technical account, metascopes,
//! and the private keys with their certificates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Problems, parse_secret};
use crate::secrets::SecretRef;

#[derive(Debug, Clone)]
pub struct ServiceAccountConfig {
    pub org_id: String,
    pub technical_account_id: String,
    pub metascopes: Vec<String>,
    /// One or more keys, each with the certificate uploaded to the Developer Console.
    pub keys: Vec<KeyConfig>,
    /// The base of the `aud` and metascope claims; defaults to `ims.base_url`.
    pub audience_base: Option<String>,
    /// Warn this long before the last valid certificate expires.
    pub certificate_warning: Duration,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    pub private_key: SecretRef,
    /// Certificates are public; a plain path.
    pub certificate: PathBuf,
}

#[derive(Deserialize)]
pub(super) struct RawKey {
    private_key: Option<String>,
    certificate: Option<String>,
}

/// The service-account fields of a `[credentials.NAME]` table, as written.
#[derive(Default)]
pub(super) struct RawServiceAccount {
    pub org_id: Option<String>,
    pub technical_account_id: Option<String>,
    pub metascopes: Option<Vec<String>>,
    pub keys: Option<Vec<RawKey>>,
    pub audience_base: Option<String>,
    pub certificate_warning_days: Option<u64>,
}

impl RawServiceAccount {
    pub fn any_set(&self) -> bool {
        self.org_id.is_some()
            || self.technical_account_id.is_some()
            || self.metascopes.is_some()
            || self.keys.is_some()
            || self.audience_base.is_some()
            || self.certificate_warning_days.is_some()
    }
}

/// Longest `certificate_warning_days` accepted; far beyond any certificate's validity.
const MAX_CERTIFICATE_WARNING_DAYS: u64 = 3650;

pub(super) fn validate(
    p: &mut Problems,
    at: &str,
    raw: RawServiceAccount,
    base: &Path,
) -> Option<ServiceAccountConfig> {
    let org_id = raw.org_id.filter(|o| o.ends_with("@AdobeOrg"));
    if org_id.is_none() {
        p.push(
            at,
            "org_id is required: the organization id ending in @AdobeOrg",
        );
    }
    let technical_account_id = raw
        .technical_account_id
        .filter(|t| t.ends_with("@techacct.adobe.com"));
    if technical_account_id.is_none() {
        p.push(
            at,
            "technical_account_id is required: the id ending in @techacct.adobe.com",
        );
    }
    let metascopes = raw.metascopes.unwrap_or_default();
    if metascopes.is_empty() || metascopes.iter().any(|m| m.is_empty() || m.contains('/')) {
        p.push(
            at,
            "metascopes must list the credential's metascopes, e.g. [\"ent_dataservices_sdk\"]",
        );
    }
    let raw_keys = raw.keys.unwrap_or_default();
    if raw_keys.is_empty() {
        p.push(
            at,
            "keys must list at least one { private_key = \"file:...\", certificate = \"path.pem\" } (create one with `imsgate keys generate`)",
        );
    }
    let mut keys = Vec::new();
    for (i, k) in raw_keys.into_iter().enumerate() {
        let kat = format!("{at}.keys[{i}]");
        let private_key = match k.private_key {
            Some(r) => parse_secret(p, &format!("{kat}.private_key"), &r, base),
            None => {
                p.push(&kat, "private_key is required (a secret reference)");
                None
            }
        };
        let certificate = match k.certificate {
            Some(c) => Some(resolve(base, &c)),
            None => {
                p.push(
                    &kat,
                    "certificate is required (the PEM uploaded to the Developer Console)",
                );
                None
            }
        };
        if let (Some(private_key), Some(certificate)) = (private_key, certificate) {
            keys.push(KeyConfig {
                private_key,
                certificate,
            });
        }
    }
    let days = raw.certificate_warning_days.unwrap_or(30);
    if days > MAX_CERTIFICATE_WARNING_DAYS {
        p.push(
            &format!("{at}.certificate_warning_days"),
            format!("must be at most {MAX_CERTIFICATE_WARNING_DAYS} (ten years)"),
        );
    }
    Some(ServiceAccountConfig {
        org_id: org_id?,
        technical_account_id: technical_account_id?,
        metascopes,
        keys,
        audience_base: raw.audience_base,
        // Bounded above, so the product cannot overflow even while the problem is reported.
        certificate_warning: Duration::from_secs(days.min(MAX_CERTIFICATE_WARNING_DAYS) * 86_400),
    })
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if p.is_absolute() { p } else { base.join(p) }
}
