//! `imsgate doctor`: everything that can be checked without side effects. Secrets, keys,
//! certificates and caller-auth settings are loaded as `serve` would load them, and the database
//! is read only if it already exists, read-only. No IMS request, no write, no file created.
//! `online.rs` holds the checks that do talk to IMS (`doctor --online`).
//!
//! Invariant: nothing here opens the database for writing or builds the token cache (whose
//! refresher would call IMS); `doctor_is_offline` in crates/cli/tests/doctor.rs checks it.

pub mod online;

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::credentials::{self, Credential};
use crate::metrics::Metrics;
use crate::sealed::Sealer;
use crate::storage::ReadOnlyStore;

/// The loaded pieces of a configuration, ready to report on.
#[derive(Debug)]
pub struct Inspection {
    pub credentials: HashMap<String, Arc<Credential>>,
    /// The user-token sealer, when `[user_login]` is configured.
    pub sealer: Option<Sealer>,
    /// The database, when configured and it exists.
    pub store: Option<ReadOnlyStore>,
}

impl Inspection {
    /// Loads every secret, key and certificate, and reports every problem at once: exactly what
    /// `serve` would refuse, plus a service account with no certificate valid now.
    pub fn load(config: &Config, clock: SharedClock) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let credentials = credentials::load_all(&config.credentials).unwrap_or_else(|p| {
            problems.extend(p);
            HashMap::new()
        });
        let now = crate::clock::unix_ms(clock.now()) / 1000;
        let mut names: Vec<&String> = credentials.keys().collect();
        names.sort();
        for name in names {
            if let Some(keys) = &credentials[name].signing
                && keys.signing_index(now).is_none()
            {
                problems.push(format!(
                    "credentials.{name}: no certificate is valid now (each is expired or not yet valid); generate a key and certificate (`imsgate keys generate`), upload the certificate to the Developer Console and add it under keys"
                ));
            }
        }
        if let Some(ct) = &config.client_token
            && let Err(e) = crate::caller_auth::CallerVerifier::new(
                &ct.caller_auth,
                ct.token_id_namespace,
                clock.clone(),
                config.ims.request_timeout,
                Arc::new(Metrics::new()),
            )
        {
            problems.push(e);
        }
        // The TLS pair, as `serve` loads it: the certificate chain, the key through its secret
        // reference, and that the two match.
        if let Some(files) = &config.server.tls
            && let Err(e) = crate::tls::check(files, &clock)
        {
            problems.push(e);
        }
        if let Some(api) = &config.internal_api
            && let Err(e) = crate::service::load_internal_key(api)
        {
            problems.push(e);
        }
        let sealer = match &config.user_login {
            Some(ul) => match Sealer::load(&ul.token_encryption_keys) {
                Ok(s) => Some(s),
                Err(errors) => {
                    for e in errors {
                        problems.push(format!("user_login.token_encryption_keys: {e}"));
                    }
                    None
                }
            },
            None => None,
        };
        let store = match &config.storage {
            Some(s) => ReadOnlyStore::open(&s.sqlite_path).unwrap_or_else(|e| {
                problems.push(format!("storage.sqlite_path: {e}"));
                None
            }),
            None => None,
        };
        if problems.is_empty() {
            Ok(Self {
                credentials,
                sealer,
                store,
            })
        } else {
            Err(problems)
        }
    }
}
