//! The admin-consent flow: one-time connect URLs, consent sessions, the callback with strict
//! id_token verification, and the links it writes.
//!
//! Invariant: an org id is only ever taken from an id_token that passed
//! [`imsgate_ims::id_token`] verification against keys from the configured JWKS URL.
//! Invariant: a consent session is consumed by the first callback that presents it, whatever the
//! outcome, so state and nonce are single-use.
//! Invariant: state and nonce are stored only as SHA-256 digests; the callback compares the
//! digests of what it is presented, in constant time.

mod ids;
mod operator;

use std::sync::Arc;
use std::time::Duration;

use imsgate_ims::ScopeSet;
use imsgate_ims::consent::{self, CallbackError, ConsentOutcome};
use imsgate_ims::id_token::{self, Expectations, IdTokenError};
use url::Url;

use crate::clock::{SharedClock, unix_ms};
use crate::config::ConsentConfig;
use crate::jwks::{JwksCache, KeyError};
use crate::metrics::Metrics;
use crate::storage::{
    NewSession, NewTicket, Purpose, SessionTake, StorageError, Store, TicketCaps, TicketInsert,
};

pub use ids::{
    constant_time_eq, digest_eq, hash_id, is_account_id, is_org_id, is_random_id, random_id,
};

/// How often expired tickets and sessions are deleted (used ones are deleted when used).
pub const PURGE_PERIOD: Duration = Duration::from_secs(60);

/// The session cookie. `__Host-` makes browsers insist on Secure, Path=/ and no Domain, so no
/// subdomain can plant or read it.
pub const SESSION_COOKIE: &str = "__Host-imsgate-consent";

/// Everything the flow needs.
#[derive(Debug)]
pub struct ConsentService {
    pub config: ConsentConfig,
    pub client_id: String,
    pub scopes: ScopeSet,
    pub store: Store,
    pub jwks: Arc<JwksCache>,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// The `redirect_uri` parameter: the callback URL when a redirect pattern matches it; `None`
    /// when the callback is the default redirect URI and no pattern matches it.
    pub redirect_uri: Option<String>,
}

/// A connect URL handed to the partner's backend.
#[derive(Debug, Clone)]
pub struct StartedConnection {
    pub connect_url: Url,
    pub expires_at_ms: u64,
}

/// The browser side of an opened connect URL.
#[derive(Debug, Clone)]
pub struct OpenedSession {
    /// The raw session id for the cookie; only its hash is stored.
    pub session_id: String,
    pub max_age: Duration,
    pub consent_url: Url,
}

/// Why a request of the flow was refused before anything could be redirected.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("account_id must be 1 to 128 characters from A-Z a-z 0-9 and . _ - @ : +")]
    BadAccountId,
    #[error("return_to is not allowed: {0}")]
    BadReturnTo(String),
    #[error(
        "this connect link is unknown, expired or already used; ask the application for a new one"
    )]
    TicketUnusable,
    #[error(
        "no consent session: the session cookie is missing, unknown or already used; start again from the application"
    )]
    NoSession,
    #[error(
        "{limit} one-time links for this id are already open (unused and unexpired, or in a sign-in or consent that has not returned); use one of them, or retry after the time in Retry-After"
    )]
    TooManyOpenTickets { limit: u32, retry_after: Duration },
    #[error(
        "the limit of {limit} open one-time links for this flow is reached; retry after the time in Retry-After"
    )]
    TicketCapacity { limit: u32, retry_after: Duration },
    #[error("the sign-in session could not be sealed")]
    Sealing,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A one-time ticket to issue: who it is for, where the browser may return, and its URL.
pub(crate) struct Ticket<'a> {
    pub purpose: Purpose,
    /// The partner's id for the account or user.
    pub subject: &'a str,
    pub return_to: &'a str,
    pub policy: &'a imsgate_ims::return_to::ReturnToPolicy,
    pub ttl: Duration,
    pub caps: TicketCaps,
    pub public_url: &'a Url,
    /// The URL path segment before the ticket (`connect`, `login`).
    pub path: &'a str,
    pub now_ms: u64,
}

/// Checks the subject and `return_to`, stores the ticket's hash, and returns the one-time URL
/// `{public_url}/{path}/{ticket}` with its expiry.
pub(crate) async fn issue_ticket(store: &Store, t: Ticket<'_>) -> Result<(Url, u64), FlowError> {
    if !is_account_id(t.subject) {
        return Err(FlowError::BadAccountId);
    }
    let return_to = t
        .policy
        .check(t.return_to)
        .map_err(|e| FlowError::BadReturnTo(e.to_string()))?;
    let ticket = random_id();
    let expires_at_ms = t.now_ms + t.ttl.as_millis() as u64;
    let inserted = store
        .insert_ticket(NewTicket {
            purpose: t.purpose,
            ticket_hash: hash_id(&ticket),
            account_id: t.subject.to_owned(),
            return_to: return_to.to_string(),
            created_at_ms: t.now_ms,
            expires_at_ms,
            caps: t.caps,
        })
        .await?;
    // A place frees when the open ticket or session that expires first does; whole seconds,
    // rounded up, at least one.
    let wait = |ms: u64| Duration::from_secs(ms.div_ceil(1000).max(1));
    match inserted {
        TicketInsert::Inserted => {}
        TicketInsert::SubjectFull { retry_after_ms } => {
            return Err(FlowError::TooManyOpenTickets {
                limit: t.caps.per_subject,
                retry_after: wait(retry_after_ms),
            });
        }
        TicketInsert::TotalFull { retry_after_ms } => {
            tracing::warn!(
                limit = t.caps.total,
                "the cap on open one-time links of a browser flow is reached"
            );
            return Err(FlowError::TicketCapacity {
                limit: t.caps.total,
                retry_after: wait(retry_after_ms),
            });
        }
    }
    let mut url = t.public_url.clone();
    let path = format!("{}/{}/{ticket}", url.path().trim_end_matches('/'), t.path);
    url.set_path(&path);
    Ok((url, expires_at_ms))
}

/// Consumes the session a callback's cookie names. An absent or malformed id is `Missing`, as
/// is an unknown or used one, or one of the other flow.
pub(crate) async fn take_callback_session(
    store: &Store,
    purpose: Purpose,
    session_id: Option<&str>,
    now_ms: u64,
) -> Result<SessionTake, StorageError> {
    match session_id.filter(|s| ids::is_random_id(s)) {
        Some(id) => store.take_session(purpose, hash_id(id), now_ms).await,
        None => Ok(SessionTake::Missing),
    }
}

/// Deletes expired tickets and sessions every [`PURGE_PERIOD`] (first at once), for as long as
/// the runtime lives. Used ones are deleted as they are taken, so the tables hold only what is
/// open, plus at most one period's worth of expired rows.
pub fn spawn_purge(store: Store, clock: SharedClock) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = unix_ms(clock.now());
            match store.purge_consent_records(now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "purged expired tickets and sessions"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge expired tickets and sessions")
                }
            }
        }
    });
}

/// Where the callback sends the browser.
#[derive(Debug, Clone)]
pub struct CallbackRedirect {
    pub location: Url,
    pub result: &'static str,
    pub code: &'static str,
    /// The org just linked, so cached failures for it can be forgotten.
    pub linked_org: Option<String>,
}

impl ConsentService {
    fn now_ms(&self) -> u64 {
        unix_ms(self.clock.now())
    }

    /// `POST /api/connections`: a one-time connect URL for `account_id`.
    pub async fn start(
        &self,
        account_id: &str,
        return_to: &str,
    ) -> Result<StartedConnection, FlowError> {
        let (connect_url, expires_at_ms) = issue_ticket(
            &self.store,
            Ticket {
                purpose: Purpose::Consent,
                subject: account_id,
                return_to,
                policy: &self.config.return_to,
                ttl: self.config.connect_ttl,
                caps: self.config.ticket_caps,
                public_url: &self.config.public_url,
                path: "connect",
                now_ms: self.now_ms(),
            },
        )
        .await?;
        Ok(StartedConnection {
            connect_url,
            expires_at_ms,
        })
    }

    /// `GET /connect/{ticket}`: consumes the ticket and starts a consent session.
    pub async fn open(&self, ticket: &str) -> Result<OpenedSession, FlowError> {
        if !ids::is_random_id(ticket) {
            return Err(FlowError::TicketUnusable);
        }
        let now = self.now_ms();
        let Some(t) = self
            .store
            .take_ticket(Purpose::Consent, hash_id(ticket), now)
            .await?
        else {
            return Err(FlowError::TicketUnusable);
        };
        let session_id = random_id();
        let state = random_id();
        let nonce = random_id();
        let max_age = self.config.session_ttl;
        self.store
            .insert_session(NewSession {
                purpose: Purpose::Consent,
                session_hash: hash_id(&session_id),
                account_id: t.account_id,
                return_to: t.return_to,
                state_hash: hash_id(&state),
                nonce_hash: id_token::nonce_digest(&nonce),
                verifier_sealed: None,
                created_at_ms: now,
                expires_at_ms: now + max_age.as_millis() as u64,
            })
            .await?;
        let consent_url = consent::consent_url(
            &self.config.consent_url,
            &self.client_id,
            &self.scopes,
            &state,
            &nonce,
            self.redirect_uri.as_deref(),
        );
        Ok(OpenedSession {
            session_id,
            max_age,
            consent_url,
        })
    }

    /// `GET /consent/callback`: consumes the session, checks everything, links on success.
    pub async fn callback(
        &self,
        session_id: Option<&str>,
        query: &str,
    ) -> Result<CallbackRedirect, FlowError> {
        let now = self.now_ms();
        let session =
            match take_callback_session(&self.store, Purpose::Consent, session_id, now).await? {
                SessionTake::Fresh(s) => s,
                SessionTake::Expired(s) => {
                    return Ok(self.finish(&s.return_to, "error", "session_expired"));
                }
                SessionTake::Missing => {
                    self.metrics.consent_callback("rejected", "no_session");
                    return Err(FlowError::NoSession);
                }
            };
        let parsed = match consent::parse_callback(query) {
            Ok(p) => p,
            Err(e) => return Ok(self.finish(&session.return_to, "error", e.code())),
        };
        // The state binds this redirect to this browser's session (CSRF). IMS only omits it
        // when it never got one, which it reports as missing_state_param.
        let state_ok = parsed
            .state
            .as_deref()
            .is_some_and(|s| digest_eq(&hash_id(s), &session.state_hash));
        if !state_ok {
            let code = match (&parsed.state, &parsed.outcome) {
                (None, ConsentOutcome::Failed(c)) => c.as_str(),
                (None, _) => CallbackError::MissingState.code(),
                (Some(_), _) => "state_mismatch",
            };
            return Ok(self.finish(&session.return_to, "error", code));
        }
        let id_token = match parsed.outcome {
            ConsentOutcome::Cancelled => {
                return Ok(self.finish(&session.return_to, "cancelled", "admin_cancelled"));
            }
            ConsentOutcome::Failed(code) => {
                return Ok(self.finish(&session.return_to, "error", code.as_str()));
            }
            ConsentOutcome::Consented { id_token } => id_token,
        };
        let identity = match self.verify(&id_token, session.nonce_hash, now).await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(reason = e.code(), "consent id_token refused");
                return Ok(self.finish(&session.return_to, "error", e.code()));
            }
        };
        let link = self
            .store
            .link(
                session.account_id,
                identity.org_id,
                identity.technical_account,
                self.now_ms(),
            )
            .await?;
        // The org id came from the id_token, which is never logged; the account id is ours.
        tracing::info!(account_id = %link.account_id, "account linked");
        let mut done = self.finish(&session.return_to, "linked", "linked");
        done.linked_org = Some(link.org_id);
        Ok(done)
    }

    async fn verify(
        &self,
        token: &str,
        nonce_sha256: [u8; 32],
        now_ms: u64,
    ) -> Result<id_token::ConsentIdentity, IdTokenError> {
        let unverified = id_token::parse(token)?;
        // Keys only from the configured JWKS, and only one the selection rule permits for RS256; an
        // unknown kid triggers a refetch within the cache's budget, which is how IMS key rotation
        // is picked up.
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
            client_id: &self.client_id,
            nonce_sha256,
            leeway_secs: self.config.id_token_leeway.as_secs(),
            max_age_secs: self.config.id_token_max_age.as_secs(),
        };
        unverified.verify(&key, &expect, now_ms / 1000)
    }

    fn finish(
        &self,
        return_to: &str,
        result: &'static str,
        code: &'static str,
    ) -> CallbackRedirect {
        self.metrics.consent_callback(result, code);
        // return_to was validated against the allow-list when the flow started.
        let mut location = Url::parse(return_to).unwrap_or_else(|_| self.config.public_url.clone());
        location
            .query_pairs_mut()
            .append_pair("result", result)
            .append_pair("code", code);
        CallbackRedirect {
            location,
            result,
            code,
            linked_org: None,
        }
    }
}

#[cfg(test)]
mod purge_tests {
    use super::*;
    use crate::clock::TokioClock;

    const CAPS: TicketCaps = TicketCaps {
        per_subject: 10,
        total: 100,
    };

    /// With tokio's clock paused, a ticket and a session that expire are gone within one purge
    /// period of their expiry; a used ticket is gone as soon as it is taken; an open one stays.
    #[tokio::test(start_paused = true)]
    async fn expired_and_used_rows_are_gone_within_a_purge_period() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.sqlite")).unwrap();
        let clock: SharedClock = Arc::new(TokioClock::new());
        let now = unix_ms(clock.now());
        let ticket = |n: u8, ttl_ms: u64| {
            store.insert_ticket(NewTicket {
                purpose: Purpose::Consent,
                ticket_hash: [n; 32],
                account_id: format!("acct-{n}"),
                return_to: "https://app.example.com/".into(),
                created_at_ms: now,
                expires_at_ms: now + ttl_ms,
                caps: CAPS,
            })
        };
        ticket(1, 5_000).await.unwrap();
        ticket(2, 5_000).await.unwrap();
        ticket(3, 3_600_000).await.unwrap();
        store
            .insert_session(NewSession {
                purpose: Purpose::UserLogin,
                session_hash: [9; 32],
                account_id: "user-9".into(),
                return_to: "https://app.example.com/".into(),
                state_hash: [1; 32],
                nonce_hash: [2; 32],
                verifier_sealed: None,
                created_at_ms: now,
                expires_at_ms: now + 10_000,
            })
            .await
            .unwrap();
        spawn_purge(store.clone(), clock.clone());

        // Taking a ticket deletes it at once.
        assert!(
            store
                .take_ticket(Purpose::Consent, [2; 32], now)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.flow_record_counts().await.unwrap(), (2, 1));

        // One purge period after the last of them expired, only the open ticket is left.
        tokio::time::sleep(Duration::from_secs(10) + PURGE_PERIOD).await;
        // The purge runs on the blocking pool; let it finish.
        for _ in 0..100 {
            if store.flow_record_counts().await.unwrap() == (1, 0) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(store.flow_record_counts().await.unwrap(), (1, 0));
        assert!(
            store
                .take_ticket(Purpose::Consent, [3; 32], unix_ms(clock.now()))
                .await
                .unwrap()
                .is_some()
        );
    }
}
