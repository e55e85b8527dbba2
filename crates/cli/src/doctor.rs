//! `imsgate doctor` (offline, no side effects) and `imsgate doctor --online` (real checks, one
//! PASS/FAIL line each). The checks themselves live in `imsgate_broker::doctor`.

use std::path::Path;
use std::sync::Arc;

use imsgate_broker::clock::{Clock, SystemClock, unix_ms};
use imsgate_broker::config::{Config, CredentialKind};
use imsgate_broker::doctor::Inspection;
use imsgate_broker::doctor::online::{self, Status};

use crate::run::{CliResult, load, rfc3339};

pub async fn run(path: &Path, online: bool) -> CliResult {
    let config = load(path)?;
    let inspection = Inspection::load(&config, Arc::new(SystemClock))?;
    report(path, &config, &inspection)?;
    if online {
        println!("online checks:");
        let results = online::run(&config, &inspection, Arc::new(SystemClock))
            .await
            .map_err(|e| vec![e])?;
        for r in &results {
            println!("{r}");
        }
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| r.name.as_str())
            .collect();
        if !failed.is_empty() {
            return Err(vec![format!(
                "{} of {} online checks failed: {}",
                failed.len(),
                results.len(),
                failed.join("; ")
            )]);
        }
    }
    Ok(())
}

/// What an operator needs to know, all read locally: each credential, which client secret last
/// worked and when, certificates, redirect rules, the browser flows and the store.
fn report(path: &Path, config: &Config, inspection: &Inspection) -> CliResult {
    let usage = match &inspection.store {
        Some(store) => store
            .secret_usage()
            .map_err(|e| vec![format!("cannot read secret usage: {e}")])?,
        None => Vec::new(),
    };
    let now = unix_ms(SystemClock.now()) / 1000;
    println!("configuration OK: {}", path.display());
    for (name, c) in &config.credentials {
        let kind = c.kind.as_str();
        println!("credential {name:?}: {kind}, client id {}", c.client_id);
        if c.kind == CredentialKind::ApiKey {
            println!(
                "  no secret and no token: requests carry the client id as the x-api-key header"
            );
        }
        for (i, r) in c.client_secrets.iter().enumerate() {
            let r = r.to_string();
            let u = usage
                .iter()
                .find(|u| &u.credential == name && u.secret_ref == r);
            let success = u.and_then(|u| u.last_success_ms);
            let failure = u.and_then(|u| u.last_failure_ms);
            let mut line = match success {
                Some(ms) => format!("last succeeded {}", rfc3339(ms)),
                None => "never succeeded".to_owned(),
            };
            if let Some(ms) = failure.filter(|f| success.is_none_or(|s| *f > s)) {
                line.push_str(&format!(", refused by IMS {}", rfc3339(ms)));
            }
            println!("  secret [{i}] {r}: {line}");
        }
        if c.client_secrets.len() == 2 && config.storage.is_none() {
            println!(
                "  (configure [storage] to record which secret works, so the old one can be deleted safely)"
            );
        }
        if let Some(keys) = inspection
            .credentials
            .get(name)
            .and_then(|c| c.signing.as_ref())
        {
            println!(
                "  warning: {}",
                imsgate_broker::service_account::DEPRECATION
            );
            let signing = keys.signing_index(now);
            for (i, k) in keys.keys.iter().enumerate() {
                let state = if signing == Some(i) {
                    " (signs now)"
                } else if k.certificate.not_after <= now {
                    " (expired)"
                } else if k.certificate.not_before > now {
                    " (not yet valid)"
                } else {
                    ""
                };
                println!(
                    "  key [{i}] certificate {} valid {} .. {}{state}",
                    k.certificate_path.display(),
                    rfc3339(k.certificate.not_before * 1000),
                    rfc3339(k.certificate.not_after * 1000),
                );
            }
            if let Some(w) = keys.expiry_warning(now) {
                println!("  warning: {w}");
            }
        }
        if let Some(web) = &c.web_app {
            println!("  default redirect URI {}", web.default_redirect_uri);
            for (i, p) in web.redirect_uri_patterns.iter().enumerate() {
                println!("  redirect pattern [{i}] {p}");
            }
        }
    }
    if let Some(cc) = &config.consent {
        println!(
            "consent: credential {:?}, callback {} (allowed by its redirect rules)",
            cc.credential, cc.callback_url
        );
        if cc.development_mode {
            println!(
                "  warning: development_mode is on: plain-http loopback redirect URIs are accepted; turn it off in production"
            );
        }
    }
    if let (Some(ul), Some(sealer)) = (&config.user_login, &inspection.sealer) {
        println!(
            "user sign-in: credential {:?}, callback {} (allowed by its redirect rules), {}",
            ul.credential,
            ul.callback_url,
            ul.token_auth.as_str()
        );
        println!(
            "  user tokens sealed with key {} ({} key(s) configured)",
            sealer.current_kid(),
            ul.token_encryption_keys.len()
        );
        match &inspection.store {
            Some(store) => match store.grant_keys(&ul.credential, sealer.current_kid()) {
                Ok(g) => {
                    print!("  {} user grant(s) stored", g.total);
                    if g.older > 0 {
                        print!(
                            ", {} sealed with an older key (run `imsgate user-tokens reseal` before removing it)",
                            g.older
                        );
                    }
                    println!();
                }
                Err(e) => println!("  warning: cannot read the stored grants: {e}"),
            },
            None => println!("  0 user grant(s) stored (the database does not exist yet)"),
        }
        let scopes = &config.credentials[&ul.credential].scopes;
        if !scopes.iter().any(|s| s == "offline_access") {
            println!(
                "  note: without the offline_access scope IMS issues no refresh token; users sign in again when their token expires"
            );
        }
        if ul.development_mode {
            println!(
                "  warning: development_mode is on: plain-http loopback redirect URIs are accepted; turn it off in production"
            );
        }
    }
    if let Some(s) = &config.storage {
        let state = if inspection.store.is_some() {
            "read-only for this check"
        } else {
            "does not exist yet; `imsgate serve` creates it"
        };
        println!("storage: {} ({state})", s.sqlite_path.display());
    }
    Ok(())
}
