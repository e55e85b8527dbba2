//! User OAuth grants: authorization codes with their PKCE challenge, refresh tokens, and
//! revocation, as `/ims/token/v3` (`authorization_code`, `refresh_token`) and `/ims/revoke` serve
//! them.
//!
//! Refresh tokens rotate: a refresh returns a new one and the old one stops working, so a client
//! that uses one refresh token twice sees `invalid_grant` the second time.

use std::collections::{HashMap, HashSet};

use axum::http::StatusCode;
use axum::response::Response;
use parking_lot::Mutex;
use subtle::ConstantTimeEq;

use crate::config::EmulatorClient;
use crate::routes::{ims_error, now_ms};
use crate::server::State;

/// Authorization codes live ten minutes, as RFC 6749 §4.1.2 recommends at most.
const CODE_TTL_MS: u64 = 10 * 60 * 1000;

/// A PKCE challenge as sent to `/ims/authorize/v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    S256(String),
    /// What IMS assumes when `code_challenge_method` is absent.
    Plain(String),
}

/// What an authorization code stands for.
#[derive(Debug, Clone)]
pub(crate) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub challenge: Option<Challenge>,
    pub user_id: String,
}

#[derive(Debug, Clone)]
struct StoredCode {
    grant: CodeGrant,
    expires_ms: u64,
}

#[derive(Debug, Clone)]
struct RefreshGrant {
    client_id: String,
    user_id: String,
    scopes: Vec<String>,
    /// Every token descended from one sign-in shares a family; revoking the refresh token revokes
    /// the family's access tokens too.
    family: String,
    expires_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    codes: HashMap<String, StoredCode>,
    refresh: HashMap<String, RefreshGrant>,
    revoked_families: HashSet<String>,
    revoked_tokens: HashSet<String>,
}

/// The emulator's user grants.
#[derive(Debug, Default)]
pub(crate) struct UserGrants {
    inner: Mutex<Inner>,
}

fn random_token(prefix: &str) -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // aws-lc aborts if the system RNG fails; an emulator has nothing better to do.
    aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator");
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

impl UserGrants {
    pub(crate) fn issue_code(&self, grant: CodeGrant) -> String {
        let code = random_token("code-");
        let mut inner = self.inner.lock();
        let now = now_ms();
        inner.codes.retain(|_, c| c.expires_ms > now);
        inner.codes.insert(
            code.clone(),
            StoredCode {
                grant,
                expires_ms: now + CODE_TTL_MS,
            },
        );
        code
    }

    /// Whether an access token (by its `id` and `family` claims) was revoked.
    pub(crate) fn is_revoked(&self, id: Option<&str>, family: Option<&str>) -> bool {
        let inner = self.inner.lock();
        id.is_some_and(|i| inner.revoked_tokens.contains(i))
            || family.is_some_and(|f| inner.revoked_families.contains(f))
    }

    fn new_refresh(
        &self,
        client: &EmulatorClient,
        user_id: &str,
        scopes: &[String],
        family: &str,
    ) -> String {
        let token = random_token("rt-");
        self.inner.lock().refresh.insert(
            token.clone(),
            RefreshGrant {
                client_id: client.client_id.clone(),
                user_id: user_id.to_owned(),
                scopes: scopes.to_vec(),
                family: family.to_owned(),
                expires_ms: now_ms() + client.refresh_token_lifetime_secs * 1000,
            },
        );
        token
    }

    /// Revokes a refresh token of `client_id` (and its family), or records an access token's id as
    /// revoked. Unknown tokens are not an error (RFC 7009 §2.2).
    pub(crate) fn revoke_refresh(&self, client_id: &str, token: &str) -> bool {
        let mut inner = self.inner.lock();
        match inner.refresh.get(token) {
            Some(g) if g.client_id == client_id => {
                let family = g.family.clone();
                inner.refresh.remove(token);
                inner.revoked_families.insert(family);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn revoke_access(&self, id: &str) {
        self.inner.lock().revoked_tokens.insert(id.to_owned());
    }
}

fn invalid_grant(description: &str) -> Response {
    ims_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn pkce_ok(challenge: &Challenge, verifier: &str) -> bool {
    // RFC 7636 §4.1: a verifier outside 43..=128 unreserved characters is malformed.
    if !imsgate_ims::user_oauth::is_verifier(verifier) {
        return false;
    }
    let (expected, computed) = match challenge {
        Challenge::S256(c) => (
            c.as_str(),
            imsgate_ims::user_oauth::s256_challenge(verifier),
        ),
        Challenge::Plain(c) => (c.as_str(), verifier.to_owned()),
    };
    bool::from(expected.as_bytes().ct_eq(computed.as_bytes()))
}

/// `grant_type=authorization_code`: one use per code; the redirect URI and PKCE verifier must
/// match what the authorize request carried.
pub(crate) fn authorization_code(
    state: &State,
    client: &EmulatorClient,
    form: &HashMap<String, String>,
) -> Response {
    let Some(code) = form.get("code") else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing code parameter",
        );
    };
    // Taken out whatever happens next: a code is single-use even when the exchange fails.
    let stored = state.user_grants.inner.lock().codes.remove(code.as_str());
    let Some(stored) = stored.filter(|c| c.expires_ms > now_ms()) else {
        return invalid_grant("the authorization code is invalid, expired or already used");
    };
    let g = stored.grant;
    if g.client_id != client.client_id {
        return invalid_grant("the authorization code was issued to another client");
    }
    if form.get("redirect_uri").map(String::as_str) != Some(g.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    match (&g.challenge, form.get("code_verifier")) {
        (Some(_), None) => return invalid_grant("code_verifier is required"),
        (Some(challenge), Some(v)) if !pkce_ok(challenge, v) => {
            return invalid_grant("code_verifier does not match the code_challenge");
        }
        // A verifier for a request that carried no challenge means the challenge was stripped
        // on the way (RFC 9700 §2.1.1).
        (None, Some(_)) => {
            return invalid_grant(
                "code_verifier sent, but the authorization request had no code_challenge",
            );
        }
        _ => {}
    }
    let family = random_token("fam-");
    let refresh = g
        .scopes
        .iter()
        .any(|s| s == imsgate_ims::user_oauth::OFFLINE_ACCESS)
        .then(|| {
            state
                .user_grants
                .new_refresh(client, &g.user_id, &g.scopes, &family)
        });
    let id_token = g
        .scopes
        .iter()
        .any(|s| s == "openid")
        .then(|| state.issue_user_id_token(&client.client_id, &g.user_id, g.nonce.as_deref()));
    crate::routes::user_token_response(
        state, client, &g.user_id, &g.scopes, &family, refresh, id_token,
    )
}

/// `grant_type=refresh_token`: rotates the refresh token.
pub(crate) fn refresh_token(
    state: &State,
    client: &EmulatorClient,
    form: &HashMap<String, String>,
) -> Response {
    let Some(token) = form.get("refresh_token") else {
        return ims_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing refresh_token parameter",
        );
    };
    let taken = {
        let mut inner = state.user_grants.inner.lock();
        match inner.refresh.get(token.as_str()) {
            Some(g) if g.client_id == client.client_id && g.expires_ms > now_ms() => {
                inner.refresh.remove(token.as_str())
            }
            _ => None,
        }
    };
    let Some(g) = taken else {
        return invalid_grant("the refresh token is invalid, expired, revoked or already used");
    };
    let next = state
        .user_grants
        .new_refresh(client, &g.user_id, &g.scopes, &g.family);
    crate::routes::user_token_response(
        state,
        client,
        &g.user_id,
        &g.scopes,
        &g.family,
        Some(next),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_table() {
        // RFC 7636 Appendix B.
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let s256 = Challenge::S256(c.into());
        assert!(pkce_ok(&s256, v));
        assert!(!pkce_ok(&s256, &v.replace('d', "e")));
        // Sending the challenge itself as the verifier is the classic downgrade; refused.
        assert!(!pkce_ok(&s256, c));
        let plain = Challenge::Plain(v.into());
        assert!(pkce_ok(&plain, v));
        assert!(!pkce_ok(&plain, c));
        assert!(!pkce_ok(&Challenge::Plain("short".into()), "short"));
    }
}
