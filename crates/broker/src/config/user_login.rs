//! `[user_login]`: user sign-in with OAuth authorization code and PKCE for an `oauth_web_app`
//! credential, and the keys that encrypt user tokens at rest.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use imsgate_ims::return_to::ReturnToPolicy;
use imsgate_ims::user_oauth::ClientAuth;
use serde::Deserialize;
use url::Url;

use super::consent::{check_callback, flow_ttls, flow_urls, issuers, return_to, ticket_caps};
use super::{CredentialConfig, CredentialKind, Problems};
use crate::keystore::MasterKeyRef;

/// Where imsgate serves the sign-in callback, under `public_url`.
pub const USER_CALLBACK_PATH: &str = "/user/callback";

#[derive(Debug, Clone)]
pub struct UserLoginConfig {
    /// The `oauth_web_app` credential users sign in to.
    pub credential: String,
    pub public_url: Url,
    /// The `redirect_uri` sent to IMS; it must satisfy the credential's redirect rules.
    pub callback_url: Url,
    pub issuers: Vec<String>,
    pub return_to: Arc<ReturnToPolicy>,
    pub token_auth: ClientAuth,
    /// `prompt` for `/ims/authorize/v2` (`login`, `none` or `consent`), if any.
    pub prompt: Option<String>,
    /// Keys that encrypt user tokens at rest, newest first: the first encrypts, any decrypts.
    pub token_encryption_keys: Vec<MasterKeyRef>,
    pub login_ttl: Duration,
    pub session_ttl: Duration,
    pub id_token_leeway: Duration,
    /// Open login URLs per user and in total.
    pub ticket_caps: crate::storage::TicketCaps,
    /// Oldest id_token `iat` accepted (plus the leeway): IMS mints the token with the code.
    pub id_token_max_age: Duration,
    /// How long IMS keeps a refresh token usable (14 days); a grant older than this needs a new
    /// sign-in without asking IMS.
    pub refresh_token_lifetime: Duration,
    pub development_mode: bool,
}

#[derive(Deserialize)]
pub(super) struct RawUserLogin {
    credential: Option<String>,
    public_url: Option<String>,
    callback_url: Option<String>,
    issuers: Option<Vec<String>>,
    #[serde(default)]
    return_to_origins: Vec<String>,
    token_auth: Option<String>,
    prompt: Option<String>,
    token_encryption_keys: Option<Vec<String>>,
    login_ttl_seconds: Option<u64>,
    session_ttl_seconds: Option<u64>,
    id_token_leeway_seconds: Option<u64>,
    id_token_max_age_seconds: Option<u64>,
    refresh_token_lifetime_days: Option<u64>,
    max_open_tickets_per_user: Option<u32>,
    max_open_tickets: Option<u32>,
    #[serde(default)]
    development_mode: bool,
}

impl RawUserLogin {
    pub(super) fn development_mode(&self) -> bool {
        self.development_mode
    }
}

pub(super) fn validate(
    p: &mut Problems,
    raw: RawUserLogin,
    credentials: &std::collections::BTreeMap<String, CredentialConfig>,
    declared: &[String],
    ims_base: Option<&Url>,
    base: &Path,
) -> Option<UserLoginConfig> {
    let at = "user_login";
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
            Some(cred) if cred.kind != CredentialKind::OAuthWebApp => {
                p.push(
                    &format!("{at}.credential"),
                    format!("credential {c:?} must have type = \"oauth_web_app\""),
                );
                None
            }
            Some(cred) => {
                if !cred.scopes.iter().any(|s| s == "openid") {
                    p.push(
                        &format!("credentials.{c}.scopes"),
                        "must include \"openid\": the id_token is how imsgate learns who signed in",
                    );
                }
                Some(c)
            }
            // A declared credential that failed validation was already reported.
            None => Some(c),
        },
        None => {
            p.push(
                at,
                "credential is required: the name of an oauth_web_app credential",
            );
            None
        }
    };
    let (public_url, callback_url) =
        flow_urls(p, at, raw.public_url, raw.callback_url, USER_CALLBACK_PATH);
    let issuers = issuers(p, at, raw.issuers, ims_base);
    let return_to = return_to(p, at, &raw.return_to_origins);
    let token_auth = match raw.token_auth.as_deref() {
        None => Some(ClientAuth::Post),
        Some(s) => ClientAuth::parse(s).or_else(|| {
            p.push(
                &format!("{at}.token_auth"),
                format!("{s:?} is not \"client_secret_post\" or \"client_secret_basic\""),
            );
            None
        }),
    };
    if let Some(prompt) = &raw.prompt
        && !["login", "none", "consent"].contains(&prompt.as_str())
    {
        p.push(
            &format!("{at}.prompt"),
            "must be \"login\", \"none\" or \"consent\"",
        );
    }
    let token_encryption_keys = super::keystore::master_key_refs(
        p,
        &format!("{at}.token_encryption_keys"),
        raw.token_encryption_keys.unwrap_or_default(),
        base,
    );
    let [login_ttl, session_ttl, id_token_leeway] = flow_ttls(
        p,
        at,
        ("login_ttl_seconds", raw.login_ttl_seconds),
        raw.session_ttl_seconds,
        raw.id_token_leeway_seconds,
    );
    let ticket_caps = ticket_caps(
        p,
        at,
        ("max_open_tickets_per_user", raw.max_open_tickets_per_user),
        raw.max_open_tickets,
    );
    let id_token_max_age = super::consent::id_token_max_age(p, at, raw.id_token_max_age_seconds);
    let days = raw.refresh_token_lifetime_days.unwrap_or(14);
    if !(1..=365).contains(&days) {
        p.push(
            &format!("{at}.refresh_token_lifetime_days"),
            "must be between 1 and 365",
        );
    }
    check_callback(
        p,
        at,
        credential.as_ref().and_then(|n| credentials.get(n)),
        callback_url.as_ref(),
        raw.development_mode,
    );
    if token_encryption_keys.is_empty() {
        return None;
    }
    Some(UserLoginConfig {
        credential: credential?,
        public_url: public_url?,
        callback_url: callback_url?,
        issuers,
        return_to: return_to?,
        token_auth: token_auth?,
        prompt: raw.prompt,
        token_encryption_keys,
        login_ttl,
        session_ttl,
        id_token_leeway,
        ticket_caps,
        id_token_max_age,
        refresh_token_lifetime: Duration::from_secs(days * 24 * 3600),
        development_mode: raw.development_mode,
    })
}
