//! The admin-consent sections: `[consent]`, `[internal_api]` and `[storage]`, and the redirect
//! rules of `enterprise_web_app` credentials.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use imsgate_ims::redirect_rules::RedirectRules;
use imsgate_ims::return_to::ReturnToPolicy;
use serde::Deserialize;
use url::Url;

use super::{CredentialConfig, CredentialKind, Problems, parse_secret, parse_url};
use crate::secrets::SecretRef;
use crate::storage::TicketCaps;

/// Adobe's consent page.
pub const ADOBE_CONSENT_URL: &str = "https://id.adobe.com/consent";
/// Where imsgate serves the consent callback, under `public_url`.
pub const CALLBACK_PATH: &str = "/consent/callback";

#[derive(Debug, Clone)]
pub struct ConsentConfig {
    /// The `enterprise_web_app` credential consents are for.
    pub credential: String,
    /// Where browsers reach imsgate (connect URLs are built from it).
    pub public_url: Url,
    /// The `redirect_uri` sent to IMS; it must satisfy the credential's redirect rules.
    pub callback_url: Url,
    pub consent_url: Url,
    /// Accepted id_token issuers, compared exactly.
    pub issuers: Vec<String>,
    pub return_to: Arc<ReturnToPolicy>,
    pub connect_ttl: Duration,
    pub session_ttl: Duration,
    pub id_token_leeway: Duration,
    /// Open connect URLs per account and in total.
    pub ticket_caps: TicketCaps,
    /// Oldest id_token `iat` accepted (plus the leeway): IMS mints the token on the redirect.
    pub id_token_max_age: Duration,
    /// Allows plain-http loopback redirect URIs. Never for production.
    pub development_mode: bool,
}

#[derive(Debug, Clone)]
pub struct InternalApiConfig {
    pub api_key: SecretRef,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub sqlite_path: PathBuf,
}

/// The extra settings of an `enterprise_web_app` credential.
#[derive(Debug, Clone)]
pub struct WebAppConfig {
    pub default_redirect_uri: String,
    pub redirect_uri_patterns: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct RawConsent {
    credential: Option<String>,
    public_url: Option<String>,
    callback_url: Option<String>,
    consent_url: Option<String>,
    issuers: Option<Vec<String>>,
    #[serde(default)]
    return_to_origins: Vec<String>,
    connect_ttl_seconds: Option<u64>,
    session_ttl_seconds: Option<u64>,
    id_token_leeway_seconds: Option<u64>,
    max_open_tickets_per_account: Option<u32>,
    max_open_tickets: Option<u32>,
    id_token_max_age_seconds: Option<u64>,
    #[serde(default)]
    development_mode: bool,
}

impl RawConsent {
    pub(super) fn development_mode(&self) -> bool {
        self.development_mode
    }
}

#[derive(Deserialize)]
pub(super) struct RawInternalApi {
    api_key: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawStorage {
    sqlite_path: Option<String>,
}

/// Builds the rules of a web-app credential, reporting each violation with its position.
pub fn redirect_rules(
    web: &WebAppConfig,
    development_mode: bool,
) -> Result<RedirectRules, Vec<String>> {
    RedirectRules::new(
        &web.default_redirect_uri,
        &web.redirect_uri_patterns,
        development_mode,
    )
    .map_err(|v| v.iter().map(ToString::to_string).collect())
}

pub(super) fn validate_web_app(
    p: &mut Problems,
    at: &str,
    default_redirect_uri: Option<String>,
    patterns: Option<Vec<String>>,
    development_mode: bool,
) -> Option<WebAppConfig> {
    let Some(default_redirect_uri) = default_redirect_uri else {
        p.push(
            at,
            "default_redirect_uri is required for an enterprise_web_app credential (the one registered in the Adobe Developer Console)",
        );
        return None;
    };
    let web = WebAppConfig {
        default_redirect_uri,
        redirect_uri_patterns: patterns.unwrap_or_default(),
    };
    if let Err(violations) = redirect_rules(&web, development_mode) {
        for v in violations {
            p.push(at, v);
        }
        return None;
    }
    Some(web)
}

pub(super) fn validate_consent(
    p: &mut Problems,
    raw: RawConsent,
    credentials: &std::collections::BTreeMap<String, CredentialConfig>,
    declared: &[String],
    ims_base: Option<&Url>,
) -> Option<ConsentConfig> {
    let at = "consent";
    let credential = match raw.credential {
        Some(c) if !declared.contains(&c) => {
            p.push(
                &format!("{at}.credential"),
                format!(
                    "no credential named {c:?} under [credentials] (known: {})",
                    super::known_names(declared.iter())
                ),
            );
            None
        }
        Some(c) => match credentials.get(&c) {
            Some(cred) if cred.kind != CredentialKind::EnterpriseWebApp => {
                p.push(
                    &format!("{at}.credential"),
                    format!("credential {c:?} must have type = \"enterprise_web_app\""),
                );
                None
            }
            // A declared credential that failed validation was already reported.
            _ => Some(c),
        },
        None => {
            p.push(
                at,
                "credential is required: the name of an enterprise_web_app credential",
            );
            None
        }
    };
    let (public_url, callback_url) =
        flow_urls(p, at, raw.public_url, raw.callback_url, CALLBACK_PATH);
    let consent_url = parse_url(
        p,
        &format!("{at}.consent_url"),
        raw.consent_url.as_deref().unwrap_or(ADOBE_CONSENT_URL),
    );
    let issuers = issuers(p, at, raw.issuers, ims_base);
    let return_to = return_to(p, at, &raw.return_to_origins);
    let [connect_ttl, session_ttl, id_token_leeway] = flow_ttls(
        p,
        at,
        ("connect_ttl_seconds", raw.connect_ttl_seconds),
        raw.session_ttl_seconds,
        raw.id_token_leeway_seconds,
    );
    let ticket_caps = ticket_caps(
        p,
        at,
        (
            "max_open_tickets_per_account",
            raw.max_open_tickets_per_account,
        ),
        raw.max_open_tickets,
    );
    let id_token_max_age = id_token_max_age(p, at, raw.id_token_max_age_seconds);
    check_callback(
        p,
        at,
        credential.as_ref().and_then(|n| credentials.get(n)),
        callback_url.as_ref(),
        raw.development_mode,
    );
    Some(ConsentConfig {
        credential: credential?,
        public_url: public_url?,
        callback_url: callback_url?,
        consent_url: consent_url?,
        issuers,
        return_to: return_to?,
        connect_ttl,
        session_ttl,
        id_token_leeway,
        ticket_caps,
        id_token_max_age,
        development_mode: raw.development_mode,
    })
}

/// Default cap on open one-time URLs of one account or user: a person retrying a few times is
/// never refused, a loop is stopped early.
pub const DEFAULT_MAX_OPEN_TICKETS_PER_SUBJECT: u32 = 10;
/// Default cap on open one-time URLs of a flow: tens of megabytes of SQLite at most.
pub const DEFAULT_MAX_OPEN_TICKETS: u32 = 10_000;

/// The caps on open one-time URLs: per account or user (1 to 1000) and in total (1 to 1000000).
pub(super) fn ticket_caps(
    p: &mut Problems,
    at: &str,
    (per_key, per): (&str, Option<u32>),
    total: Option<u32>,
) -> TicketCaps {
    let caps = TicketCaps {
        per_subject: per.unwrap_or(DEFAULT_MAX_OPEN_TICKETS_PER_SUBJECT),
        total: total.unwrap_or(DEFAULT_MAX_OPEN_TICKETS),
    };
    if !(1..=1000).contains(&caps.per_subject) {
        p.push(&format!("{at}.{per_key}"), "must be between 1 and 1000");
    }
    if !(1..=1_000_000).contains(&caps.total) {
        p.push(
            &format!("{at}.max_open_tickets"),
            "must be between 1 and 1000000",
        );
    } else if caps.total < caps.per_subject {
        p.push(
            &format!("{at}.max_open_tickets"),
            format!("must be at least {per_key} ({})", caps.per_subject),
        );
    }
    caps
}

/// `public_url` (required, no query or fragment) and the callback under it unless overridden.
pub(super) fn flow_urls(
    p: &mut Problems,
    at: &str,
    public_url: Option<String>,
    callback_url: Option<String>,
    default_path: &str,
) -> (Option<Url>, Option<Url>) {
    let public_url = match public_url {
        // The callback URL is derived from it, so it must be canonical too; a missing final "/"
        // of an empty path is the one spelling tolerated (it cannot mean anything else).
        Some(u) => parse_url(p, &format!("{at}.public_url"), &u).filter(|parsed| {
            parsed.as_str() == format!("{u}/")
                || canonical(p, &format!("{at}.public_url"), &u, parsed)
        }),
        None => {
            p.push(
                at,
                "public_url is required: the https URL where browsers reach imsgate",
            );
            None
        }
    };
    if let Some(u) = &public_url
        && (u.query().is_some() || u.fragment().is_some())
    {
        p.push(
            &format!("{at}.public_url"),
            "must not have a query or fragment",
        );
    }
    let callback_url = match (&callback_url, &public_url) {
        (Some(u), _) => parse_url(p, &format!("{at}.callback_url"), u)
            .filter(|parsed| canonical(p, &format!("{at}.callback_url"), u, parsed)),
        (None, Some(base)) => Some(join_path(base, default_path)),
        (None, None) => None,
    };
    (public_url, callback_url)
}

/// Whether `raw` is already the canonical spelling of `parsed`, reporting it at `key` if not.
///
/// The callback URL is compared string for string: with the credential's redirect rules here,
/// and by IMS with what is registered in the Developer Console. Matching a silently normalised
/// copy would pass a URL here that IMS then refuses (or the other way round), so a
/// non-canonical spelling is refused with the canonical one in the message, exactly as the
/// redirect rules refuse it as a `default_redirect_uri`.
fn canonical(p: &mut Problems, key: &str, raw: &str, parsed: &Url) -> bool {
    if parsed.as_str() == raw {
        return true;
    }
    p.push(
        key,
        format!(
            "{raw:?} is not in canonical form, so it would not be the string IMS compares; write {:?}",
            parsed.as_str()
        ),
    );
    false
}

/// A flow's one-time URL lifetime (default 300 s), session lifetime (default 900 s), each 1 to 3600,
/// and id_token leeway (default 60 s, at most 300).
pub(super) fn flow_ttls(
    p: &mut Problems,
    at: &str,
    (ticket_key, ticket): (&str, Option<u64>),
    session: Option<u64>,
    leeway: Option<u64>,
) -> [Duration; 3] {
    let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default));
    let ticket_ttl = secs(ticket, 300);
    let session_ttl = secs(session, 900);
    let id_token_leeway = secs(leeway, 60);
    for (name, d) in [
        (ticket_key, ticket_ttl),
        ("session_ttl_seconds", session_ttl),
    ] {
        if d.is_zero() || d > Duration::from_secs(3600) {
            p.push(&format!("{at}.{name}"), "must be between 1 and 3600");
        }
    }
    if id_token_leeway > Duration::from_secs(300) {
        p.push(&format!("{at}.id_token_leeway_seconds"), "at most 300");
    }
    [ticket_ttl, session_ttl, id_token_leeway]
}

/// `id_token_max_age_seconds`: default 300, between 1 and 3600.
pub(super) fn id_token_max_age(p: &mut Problems, at: &str, v: Option<u64>) -> Duration {
    let secs = v.unwrap_or(300);
    if !(1..=3600).contains(&secs) {
        p.push(
            &format!("{at}.id_token_max_age_seconds"),
            "must be between 1 and 3600",
        );
    }
    Duration::from_secs(secs)
}

/// The accepted id_token issuers; by default both spellings IMS uses for the configured base.
pub(super) fn issuers(
    p: &mut Problems,
    at: &str,
    raw: Option<Vec<String>>,
    ims_base: Option<&Url>,
) -> Vec<String> {
    let issuers = raw.unwrap_or_else(|| match ims_base {
        // IMS's docs say `<base>/ims`, its discovery document says `<base>`: accept both.
        Some(b) => {
            let b = b.as_str().trim_end_matches('/').to_owned();
            vec![b.clone(), format!("{b}/ims")]
        }
        None => Vec::new(),
    });
    if issuers.is_empty() || issuers.iter().any(|i| i.is_empty()) {
        p.push(
            &format!("{at}.issuers"),
            "must list the accepted id_token issuers",
        );
    }
    issuers
}

pub(super) fn return_to(
    p: &mut Problems,
    at: &str,
    origins: &[String],
) -> Option<Arc<ReturnToPolicy>> {
    match ReturnToPolicy::new(origins) {
        Ok(_) if origins.is_empty() => {
            p.push(
                at,
                "return_to_origins must list your application's origins, e.g. [\"https://app.example.com\"]",
            );
            None
        }
        Ok(policy) => Some(Arc::new(policy)),
        Err(e) => {
            p.push(&format!("{at}.return_to_origins"), e);
            None
        }
    }
}

/// The callback URL is what IMS redirects to, so it must pass the credential's own rules.
pub(super) fn check_callback(
    p: &mut Problems,
    at: &str,
    credential: Option<&CredentialConfig>,
    callback_url: Option<&Url>,
    development_mode: bool,
) {
    let Some(rules) = credential
        .and_then(|c| c.web_app.as_ref())
        .and_then(|web| redirect_rules(web, development_mode).ok())
    else {
        return;
    };
    let Some(cb) = callback_url else { return };
    if let Some(v) = rules.candidate_violation(cb.as_str()) {
        p.push(
            &format!("{at}.callback_url"),
            format!("{:?}, position {}: {}", cb.as_str(), v.0, v.1),
        );
    } else if !rules.allows(cb.as_str()) {
        p.push(
            &format!("{at}.callback_url"),
            format!(
                "{:?} is neither the credential's default_redirect_uri nor matched by its redirect_uri_patterns; IMS would refuse it",
                cb.as_str()
            ),
        );
    }
}

fn join_path(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{}", u.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    u
}

pub(super) fn validate_internal_api(
    p: &mut Problems,
    raw: Option<RawInternalApi>,
    required: bool,
    base: &Path,
) -> Option<InternalApiConfig> {
    match raw.and_then(|r| r.api_key) {
        Some(k) => parse_secret(p, "internal_api.api_key", &k, base)
            .map(|api_key| InternalApiConfig { api_key }),
        None if required => {
            p.push(
                "internal_api",
                "api_key is required with [consent] or [user_login]: a secret reference such as \"file:/etc/imsgate/internal-api-key\"",
            );
            None
        }
        None => None,
    }
}

pub(super) fn validate_storage(
    raw: Option<RawStorage>,
    wanted: bool,
    base: &Path,
) -> Option<StorageConfig> {
    let path = match raw {
        Some(RawStorage {
            sqlite_path: Some(p),
        }) => PathBuf::from(p),
        Some(RawStorage { sqlite_path: None }) => PathBuf::from("imsgate.sqlite"),
        None if wanted => PathBuf::from("imsgate.sqlite"),
        None => return None,
    };
    let sqlite_path = if path.is_absolute() {
        path
    } else {
        base.join(path)
    };
    Some(StorageConfig { sqlite_path })
}
