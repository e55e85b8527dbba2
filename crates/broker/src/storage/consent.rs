//! One-time tickets and browser sessions of the consent and user sign-in flows.
//!
//! Only SHA-256 hashes of tickets and session ids are stored, so a copy of the database cannot be
//! used to hijack a consent in progress. Taking a ticket or a session marks it used in the same
//! statement that reads it, so two concurrent requests can never both get it.

use rusqlite::{OptionalExtension, params};

use super::{StorageError, Store};

/// Which flow a ticket or session belongs to; one flow's ids never work in the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Consent,
    UserLogin,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::UserLogin => "user_login",
        }
    }
}

/// What a valid ticket carries into the session it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTake {
    pub account_id: String,
    pub return_to: String,
}

/// A new consent session, written when the browser opens its connect URL.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub purpose: Purpose,
    pub session_hash: [u8; 32],
    pub account_id: String,
    pub return_to: String,
    pub state: String,
    pub nonce: String,
    /// The sealed PKCE verifier of a user sign-in.
    pub verifier_sealed: Option<String>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// A consent session as taken by the callback.
#[derive(Clone)]
pub struct ConsentSession {
    pub account_id: String,
    pub return_to: String,
    pub state: String,
    pub nonce: String,
    pub verifier_sealed: Option<String>,
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for ConsentSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentSession")
            .field("account_id", &self.account_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// The result of taking a session.
#[derive(Debug)]
pub enum SessionTake {
    Fresh(ConsentSession),
    Expired(ConsentSession),
    /// Unknown, or already used.
    Missing,
}

impl Store {
    pub async fn insert_ticket(
        &self,
        purpose: Purpose,
        ticket_hash: [u8; 32],
        account_id: String,
        return_to: String,
        created_at_ms: u64,
        expires_at_ms: u64,
    ) -> Result<(), StorageError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO connect_tickets
                 (ticket_hash, account_id, return_to, created_at_ms, expires_at_ms, purpose)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    &ticket_hash[..],
                    account_id,
                    return_to,
                    created_at_ms as i64,
                    expires_at_ms as i64,
                    purpose.as_str()
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Marks the ticket used and returns it, if it exists, was unused and is unexpired at `now_ms`.
    pub async fn take_ticket(
        &self,
        purpose: Purpose,
        ticket_hash: [u8; 32],
        now_ms: u64,
    ) -> Result<Option<TicketTake>, StorageError> {
        self.call(move |c| {
            c.query_row(
                "UPDATE connect_tickets SET used = 1
                 WHERE ticket_hash = ?1 AND used = 0 AND expires_at_ms > ?2 AND purpose = ?3
                 RETURNING account_id, return_to",
                params![&ticket_hash[..], now_ms as i64, purpose.as_str()],
                |r| {
                    Ok(TicketTake {
                        account_id: r.get(0)?,
                        return_to: r.get(1)?,
                    })
                },
            )
            .optional()
        })
        .await
    }

    pub async fn insert_session(&self, s: NewSession) -> Result<(), StorageError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO consent_sessions
                 (session_hash, account_id, return_to, state, nonce, created_at_ms, expires_at_ms,
                  purpose, verifier_sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    &s.session_hash[..],
                    s.account_id,
                    s.return_to,
                    s.state,
                    s.nonce,
                    s.created_at_ms as i64,
                    s.expires_at_ms as i64,
                    s.purpose.as_str(),
                    s.verifier_sealed
                ],
            )
            .map(drop)
        })
        .await
    }

    /// Consumes the session whatever happens next: a callback gets one chance.
    pub async fn take_session(
        &self,
        purpose: Purpose,
        session_hash: [u8; 32],
        now_ms: u64,
    ) -> Result<SessionTake, StorageError> {
        self.call(move |c| {
            let s = c
                .query_row(
                    "UPDATE consent_sessions SET consumed = 1
                     WHERE session_hash = ?1 AND consumed = 0 AND purpose = ?2
                     RETURNING account_id, return_to, state, nonce, expires_at_ms, verifier_sealed",
                    params![&session_hash[..], purpose.as_str()],
                    |r| {
                        Ok(ConsentSession {
                            account_id: r.get(0)?,
                            return_to: r.get(1)?,
                            state: r.get(2)?,
                            nonce: r.get(3)?,
                            expires_at_ms: r.get::<_, i64>(4)? as u64,
                            verifier_sealed: r.get(5)?,
                        })
                    },
                )
                .optional()?;
            Ok(match s {
                Some(s) if s.expires_at_ms > now_ms => SessionTake::Fresh(s),
                Some(s) => SessionTake::Expired(s),
                None => SessionTake::Missing,
            })
        })
        .await
    }

    /// Whether a session exists and is unconsumed (tests and diagnostics).
    pub async fn session_is_open(&self, session_hash: [u8; 32]) -> Result<bool, StorageError> {
        self.call(move |c| {
            c.query_row(
                "SELECT count(*) FROM consent_sessions WHERE session_hash = ?1 AND consumed = 0",
                params![&session_hash[..]],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
        })
        .await
    }

    /// Deletes tickets and sessions that expired before `cutoff_ms`; their only use is forensics.
    pub async fn purge_consent_records(&self, cutoff_ms: u64) -> Result<usize, StorageError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let a = tx.execute(
                "DELETE FROM connect_tickets WHERE expires_at_ms < ?1",
                params![cutoff_ms as i64],
            )?;
            let b = tx.execute(
                "DELETE FROM consent_sessions WHERE expires_at_ms < ?1",
                params![cutoff_ms as i64],
            )?;
            tx.commit()?;
            Ok(a + b)
        })
        .await
    }
}
