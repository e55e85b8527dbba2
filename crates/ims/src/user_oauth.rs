//! User OAuth (authorization code with PKCE): the authorize URL, the redirect back, and the
//! `authorization_code`, `refresh_token` and revoke requests with their responses.
//!
//! IMS defaults `code_challenge_method` to `plain` when it is absent, which would send the
//! verifier itself through the browser; the method is therefore always sent as `S256`.

use std::time::SystemTime;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use url::Url;

use crate::error::ImsError;
use crate::http::{HttpRequest, HttpResponse};
use crate::scopes::ScopeSet;
use crate::secret::SecretString;
use crate::token::{AccessToken, ExpiresInUnit, parse_token_response};

/// The longest `state` IMS accepts.
pub const MAX_STATE_LEN: usize = 4096;
/// RFC 7636 §4.1: a verifier is 43 to 128 characters of the unreserved set.
pub const MIN_VERIFIER_LEN: usize = 43;
pub const MAX_VERIFIER_LEN: usize = 128;

/// The scope without which IMS issues no refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Whether `v` is a well-formed PKCE verifier.
pub fn is_verifier(v: &str) -> bool {
    (MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The S256 challenge of a verifier: `BASE64URL(SHA256(verifier))`.
pub fn s256_challenge(verifier: &str) -> String {
    B64.encode(digest(&SHA256, verifier.as_bytes()).as_ref())
}

/// How the client authenticates at the token and revoke endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body.
    Post,
    /// HTTP Basic with the form-encoded client id and secret (RFC 6749 §2.3.1).
    Basic,
}

impl ClientAuth {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_post" => Some(Self::Post),
            "client_secret_basic" => Some(Self::Basic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "client_secret_post",
            Self::Basic => "client_secret_basic",
        }
    }
}

/// The parameters of `/ims/authorize/v2`.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a ScopeSet,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    /// `login`, `none` or `consent`; omitted when `None`.
    pub prompt: Option<&'a str>,
}

impl AuthorizeRequest<'_> {
    pub fn to_url(&self, authorize: &Url) -> Url {
        let mut url = authorize.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.redirect_uri)
                .append_pair("scope", &self.scopes.joined())
                .append_pair("response_type", "code")
                .append_pair("state", self.state)
                .append_pair("nonce", self.nonce)
                .append_pair("code_challenge", self.code_challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(p) = self.prompt {
                q.append_pair("prompt", p);
            }
        }
        url
    }
}

/// What IMS sent back to the redirect URI.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    Code(String),
    /// `error=<code>`: the user denied, or IMS refused the request.
    Error(String),
}

impl std::fmt::Debug for AuthorizeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The code is a bearer credential until it is exchanged.
            Self::Code(_) => f.write_str("Code(<redacted>)"),
            Self::Error(e) => write!(f, "Error({e:?})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizeRedirect {
    pub state: Option<String>,
    pub outcome: AuthorizeOutcome,
}

/// Why a redirect back from `/ims/authorize/v2` is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeRedirectError {
    #[error("parameter {0} appears more than once")]
    Duplicate(&'static str),
    #[error("the redirect carries both a code and an error")]
    Conflicting,
    #[error("the redirect carries neither a code nor an error")]
    NoOutcome,
    #[error("the redirect carries no state")]
    MissingState,
    #[error("the state is longer than IMS allows")]
    StateTooLong,
    #[error("the code is empty or malformed")]
    BadCode,
}

impl AuthorizeRedirectError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Duplicate(_) => "duplicate_parameter",
            Self::Conflicting => "conflicting_outcome",
            Self::NoOutcome => "no_outcome",
            Self::MissingState => "missing_state",
            Self::StateTooLong => "state_too_long",
            Self::BadCode => "bad_code",
        }
    }
}

/// Parses the redirect query. `state`, `code` and `error` may each appear once at most: a repeat is
/// how parameter pollution gets one value checked and another used.
pub fn parse_redirect(query: &str) -> Result<AuthorizeRedirect, AuthorizeRedirectError> {
    let mut state = None;
    let mut code = None;
    let mut error = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (slot, name) = match &*key {
            "state" => (&mut state, "state"),
            "code" => (&mut code, "code"),
            "error" => (&mut error, "error"),
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(AuthorizeRedirectError::Duplicate(name));
        }
    }
    if state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN) {
        return Err(AuthorizeRedirectError::StateTooLong);
    }
    let outcome = match (code, error) {
        (Some(_), Some(_)) => return Err(AuthorizeRedirectError::Conflicting),
        (None, None) => return Err(AuthorizeRedirectError::NoOutcome),
        (Some(c), None) => {
            if c.is_empty() || c.len() > 4096 || !c.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AuthorizeRedirectError::BadCode);
            }
            AuthorizeOutcome::Code(c)
        }
        (None, Some(e)) => AuthorizeOutcome::Error(clip_code(&e)),
    };
    match state {
        Some(s) if !s.is_empty() => Ok(AuthorizeRedirect {
            state: Some(s),
            outcome,
        }),
        _ => Err(AuthorizeRedirectError::MissingState),
    }
}

/// Error codes end up in redirects and metrics labels; keep only a short token of safe characters.
fn clip_code(e: &str) -> String {
    let ok =
        !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { e.to_owned() } else { "error".into() }
}

fn form_request<'a>(
    url: &Url,
    auth: ClientAuth,
    client_id: &'a str,
    client_secret: &'a SecretString,
    mut fields: Vec<(&'a str, &'a str)>,
) -> HttpRequest {
    let mut headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("accept", "application/json".to_owned()),
    ];
    match auth {
        ClientAuth::Post => {
            fields.push(("client_id", client_id));
            fields.push(("client_secret", client_secret.expose()));
        }
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: each part is form-encoded before the Basic encoding.
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            let id: String = enc(client_id);
            let secret: String = enc(client_secret.expose());
            let creds = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
            headers.push(("authorization", format!("Basic {creds}")));
            // IMS wants the client id in the body as well to find the client.
            fields.push(("client_id", client_id));
        }
    }
    // Encoding plain string pairs cannot fail.
    let body = serde_urlencoded::to_string(&fields).unwrap_or_default();
    HttpRequest {
        method: "POST",
        url: url.clone(),
        headers,
        body: body.into_bytes(),
    }
}

/// `grant_type=authorization_code` with the PKCE verifier.
pub struct CodeExchange<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub auth: ClientAuth,
    pub code: &'a str,
    pub code_verifier: &'a SecretString,
    pub redirect_uri: &'a str,
}

impl std::fmt::Debug for CodeExchange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The code is a bearer credential until it is exchanged.
        f.debug_struct("CodeExchange")
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl CodeExchange<'_> {
    pub fn to_http(&self, token_url: &Url) -> HttpRequest {
        form_request(
            token_url,
            self.auth,
            self.client_id,
            self.client_secret,
            vec![
                ("grant_type", "authorization_code"),
                ("code", self.code),
                ("code_verifier", self.code_verifier.expose()),
                ("redirect_uri", self.redirect_uri),
            ],
        )
    }
}

/// `grant_type=refresh_token`.
#[derive(Debug)]
pub struct RefreshRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub auth: ClientAuth,
    pub refresh_token: &'a SecretString,
}

impl RefreshRequest<'_> {
    pub fn to_http(&self, token_url: &Url) -> HttpRequest {
        form_request(
            token_url,
            self.auth,
            self.client_id,
            self.client_secret,
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", self.refresh_token.expose()),
            ],
        )
    }
}

/// `POST /ims/revoke` (RFC 7009); IMS answers 200 with an empty body.
#[derive(Debug)]
pub struct RevokeRequest<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub auth: ClientAuth,
    pub token: &'a SecretString,
    /// `refresh_token` or `access_token`.
    pub token_type_hint: &'static str,
}

impl RevokeRequest<'_> {
    pub fn to_http(&self, revoke_url: &Url) -> HttpRequest {
        form_request(
            revoke_url,
            self.auth,
            self.client_id,
            self.client_secret,
            vec![
                ("token", self.token.expose()),
                ("token_type_hint", self.token_type_hint),
            ],
        )
    }
}

/// A revoke response: any 2xx is success, whatever the body.
pub fn check_revoke_response(resp: &HttpResponse, now: SystemTime) -> Result<(), ImsError> {
    if (200..300).contains(&resp.status) {
        Ok(())
    } else {
        Err(ImsError::from_response(resp, now))
    }
}

/// The tokens a code exchange or a refresh returns.
#[derive(Debug, Clone)]
pub struct UserTokenResponse {
    pub access: AccessToken,
    /// Present when `offline_access` was granted; a refresh may or may not rotate it.
    pub refresh_token: Option<SecretString>,
    /// Present on a code exchange when `openid` was granted.
    pub id_token: Option<String>,
}

/// Parses a `/ims/token/v3` response to a user grant (`expires_in` in seconds).
pub fn parse_user_token_response(
    resp: &HttpResponse,
    now: SystemTime,
) -> Result<UserTokenResponse, ImsError> {
    let access = parse_token_response(resp, now, ExpiresInUnit::Seconds)?;
    // The body parsed as a JSON object above.
    let value: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let text = |name: &str| match value.get(name) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => Err(ImsError::invalid_response(format!(
            "{name} is not a string"
        ))),
    };
    Ok(UserTokenResponse {
        access,
        refresh_token: text("refresh_token")?.map(SecretString::new),
        id_token: text("id_token")?,
    })
}

#[cfg(test)]
mod tests;
