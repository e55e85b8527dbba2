//! User sign-in with OAuth authorization code and PKCE: one-time login URLs for the partner's
//! users, the browser session (state, nonce, sealed PKCE verifier), the callback as strict as the
//! consent callback, and the grant it stores.
//!
//! Invariant: a sign-in session is consumed by the first callback that presents its cookie,
//! whatever the outcome, so state, nonce and verifier are single-use.
//! Invariant: the IMS user id comes only from an id_token verified against the configured JWKS.
//! Invariant: state and nonce are stored only as SHA-256 digests (the PKCE verifier only sealed).

mod vault;

use std::sync::Arc;
use std::time::Duration;

use imsgate_ims::ScopeSet;
use imsgate_ims::id_token::{self, Expectations, IdTokenError};
use imsgate_ims::user_oauth::{
    AuthorizeOutcome, AuthorizeRequest, CodeExchange, UserTokenResponse, parse_redirect,
    parse_user_token_response, s256_challenge,
};
use url::Url;

use crate::clock::{SharedClock, unix_ms};
use crate::config::UserLoginConfig;
use crate::consent::{
    FlowError, Ticket, digest_eq, hash_id, issue_ticket, random_id, take_callback_session,
};
use crate::credentials::{Credential, ImsFetcher};
use crate::jwks::{JwksCache, KeyError};
use crate::metrics::Metrics;
use crate::storage::{NewSession, Purpose, SessionTake, Store};

pub use vault::{GrantInfo, Revoked, UserToken, UserTokenVault, VaultError};

/// The sign-in session cookie (`__Host-`: Secure, Path=/, no Domain).
pub const LOGIN_COOKIE: &str = "__Host-imsgate-login";

/// Everything the sign-in flow needs.
#[derive(Debug)]
pub struct UserLoginService {
    pub config: UserLoginConfig,
    pub credential: Arc<Credential>,
    pub scopes: ScopeSet,
    pub store: Store,
    pub jwks: Arc<JwksCache>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    pub fetcher: Arc<ImsFetcher>,
    pub vault: Arc<UserTokenVault>,
}

/// A login URL handed to the partner's backend.
#[derive(Debug, Clone)]
pub struct StartedLogin {
    pub login_url: Url,
    pub expires_at_ms: u64,
}

/// The browser side of an opened login URL.
#[derive(Debug, Clone)]
pub struct OpenedLogin {
    pub session_id: String,
    pub max_age: Duration,
    pub authorize_url: Url,
}

/// Where the callback sends the browser.
#[derive(Debug, Clone)]
pub struct LoginRedirect {
    pub location: Url,
    pub result: &'static str,
    pub code: &'static str,
}

fn verifier_context(state: &str) -> String {
    format!("login_verifier\0{state}")
}

/// IMS's error codes worth telling apart in the redirect and metrics; anything else is `error`.
fn known_error(code: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "access_denied",
        "invalid_request",
        "invalid_scope",
        "unauthorized_client",
        "unsupported_response_type",
        "server_error",
        "temporarily_unavailable",
        "login_required",
        "interaction_required",
    ];
    KNOWN.into_iter().find(|k| *k == code).unwrap_or("error")
}

impl UserLoginService {
    fn now_ms(&self) -> u64 {
        unix_ms(self.clock.now())
    }

    /// `POST /api/user-logins`: a one-time login URL for the partner's user `user_ref`.
    pub async fn start(&self, user_ref: &str, return_to: &str) -> Result<StartedLogin, FlowError> {
        let (login_url, expires_at_ms) = issue_ticket(
            &self.store,
            Ticket {
                purpose: Purpose::UserLogin,
                subject: user_ref,
                return_to,
                policy: &self.config.return_to,
                ttl: self.config.login_ttl,
                caps: self.config.ticket_caps,
                public_url: &self.config.public_url,
                path: "login",
                now_ms: self.now_ms(),
            },
        )
        .await?;
        Ok(StartedLogin {
            login_url,
            expires_at_ms,
        })
    }

    /// `GET /login/{ticket}`: consumes the ticket, starts a session and builds the authorize URL.
    pub async fn open(&self, ticket: &str) -> Result<OpenedLogin, FlowError> {
        if !crate::consent::is_random_id(ticket) {
            return Err(FlowError::TicketUnusable);
        }
        let now = self.now_ms();
        let Some(t) = self
            .store
            .take_ticket(Purpose::UserLogin, hash_id(ticket), now)
            .await?
        else {
            return Err(FlowError::TicketUnusable);
        };
        let session_id = random_id();
        let state = random_id();
        let nonce = random_id();
        // 43 base64url characters of CSPRNG output: the shortest verifier RFC 7636 allows, with
        // 256 bits of entropy.
        let verifier = imsgate_ims::SecretString::new(random_id());
        let verifier_sealed = self
            .vault
            .sealer
            .seal(&verifier_context(&state), &verifier)
            .map_err(|_| FlowError::Sealing)?;
        let max_age = self.config.session_ttl;
        self.store
            .insert_session(NewSession {
                purpose: Purpose::UserLogin,
                session_hash: hash_id(&session_id),
                account_id: t.account_id,
                return_to: t.return_to,
                state_hash: hash_id(&state),
                nonce_hash: id_token::nonce_digest(&nonce),
                verifier_sealed: Some(verifier_sealed),
                created_at_ms: now,
                expires_at_ms: now + max_age.as_millis() as u64,
            })
            .await?;
        let authorize_url = AuthorizeRequest {
            client_id: &self.credential.config.client_id,
            redirect_uri: self.config.callback_url.as_str(),
            scopes: &self.scopes,
            state: &state,
            nonce: &nonce,
            code_challenge: &s256_challenge(verifier.expose()),
            prompt: self.config.prompt.as_deref(),
        }
        .to_url(&self.fetcher.endpoints.authorize);
        Ok(OpenedLogin {
            session_id,
            max_age,
            authorize_url,
        })
    }

    /// `GET /user/callback`: consumes the session, checks everything, exchanges the code,
    /// verifies the id_token and stores the grant.
    pub async fn callback(
        &self,
        session_id: Option<&str>,
        query: &str,
    ) -> Result<LoginRedirect, FlowError> {
        let now = self.now_ms();
        let session =
            match take_callback_session(&self.store, Purpose::UserLogin, session_id, now).await? {
                SessionTake::Fresh(s) => s,
                SessionTake::Expired(s) => {
                    return Ok(self.finish(&s.return_to, "error", "session_expired"));
                }
                SessionTake::Missing => {
                    self.metrics.user_login_callback("rejected", "no_session");
                    return Err(FlowError::NoSession);
                }
            };
        let redirect = match parse_redirect(query) {
            Ok(r) => r,
            Err(e) => return Ok(self.finish(&session.return_to, "error", e.code())),
        };
        // Only the state's digest is stored; once it matches, the presented state is the one
        // the session was created with, and names the sealed verifier below.
        let state = match redirect.state.as_deref() {
            Some(s) if digest_eq(&hash_id(s), &session.state_hash) => s,
            _ => return Ok(self.finish(&session.return_to, "error", "state_mismatch")),
        };
        let code = match redirect.outcome {
            AuthorizeOutcome::Error(e) if e == "access_denied" => {
                return Ok(self.finish(&session.return_to, "cancelled", "access_denied"));
            }
            AuthorizeOutcome::Error(e) => {
                return Ok(self.finish(&session.return_to, "error", known_error(&e)));
            }
            AuthorizeOutcome::Code(c) => c,
        };
        let verifier = match session
            .verifier_sealed
            .as_deref()
            .map(|v| self.vault.sealer.open(&verifier_context(state), v))
        {
            Some(Ok(v)) => v,
            _ => {
                tracing::error!("the sign-in session's PKCE verifier could not be opened");
                return Ok(self.finish(&session.return_to, "error", "session_unusable"));
            }
        };
        let tokens = match self.exchange(&code, &verifier).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "authorization code exchange failed");
                return Ok(self.finish(&session.return_to, "error", "code_exchange_failed"));
            }
        };
        let Some(id_token) = tokens.id_token.as_deref() else {
            return Ok(self.finish(&session.return_to, "error", "missing_id_token"));
        };
        let identity = match self
            .verify(id_token, session.nonce_hash, self.now_ms())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(reason = e.code(), "sign-in id_token refused");
                return Ok(self.finish(&session.return_to, "error", e.code()));
            }
        };
        match self
            .vault
            .store_sign_in(
                &session.account_id,
                &identity.user_id,
                &self.scopes.joined(),
                &tokens,
            )
            .await
        {
            Ok(()) => {}
            Err(VaultError::Storage(e)) => return Err(FlowError::Storage(e)),
            Err(e) => {
                tracing::error!(error = %e, "could not store the user's grant");
                return Ok(self.finish(&session.return_to, "error", "storage_failed"));
            }
        }
        tracing::info!(user = %session.account_id, "user signed in with Adobe");
        Ok(self.finish(&session.return_to, "signed_in", "signed_in"))
    }

    async fn exchange(
        &self,
        code: &str,
        verifier: &imsgate_ims::SecretString,
    ) -> Result<UserTokenResponse, imsgate_ims::ImsError> {
        let now = self.clock.now();
        let token_url = &self.fetcher.endpoints.token;
        self.fetcher
            .send_with_secrets(
                &self.credential,
                "token",
                |secret| {
                    CodeExchange {
                        client_id: &self.credential.config.client_id,
                        client_secret: secret,
                        auth: self.config.token_auth,
                        code,
                        code_verifier: verifier,
                        redirect_uri: self.config.callback_url.as_str(),
                    }
                    .to_http(token_url)
                },
                |resp| parse_user_token_response(resp, now),
            )
            .await
    }

    async fn verify(
        &self,
        token: &str,
        nonce_sha256: [u8; 32],
        now_ms: u64,
    ) -> Result<id_token::UserIdentity, IdTokenError> {
        let unverified = id_token::parse(token)?;
        let key = self
            .jwks
            .key_for(unverified.kid(), id_token::ALG)
            .await
            .map_err(|e| match e {
                KeyError::Unknown => IdTokenError::UnknownKid,
                KeyError::NotUsable(_) => IdTokenError::KeyNotUsable,
            })?
            .rsa
            .ok_or(IdTokenError::KeyNotUsable)?;
        let expect = Expectations {
            issuers: &self.config.issuers,
            client_id: &self.credential.config.client_id,
            nonce_sha256,
            leeway_secs: self.config.id_token_leeway.as_secs(),
            max_age_secs: self.config.id_token_max_age.as_secs(),
        };
        unverified.verify_user(&key, &expect, now_ms / 1000)
    }

    fn finish(&self, return_to: &str, result: &'static str, code: &'static str) -> LoginRedirect {
        self.metrics.user_login_callback(result, code);
        // return_to was validated against the allow-list when the flow started.
        let mut location = Url::parse(return_to).unwrap_or_else(|_| self.config.public_url.clone());
        location
            .query_pairs_mut()
            .append_pair("result", result)
            .append_pair("code", code);
        LoginRedirect {
            location,
            result,
            code,
        }
    }
}
