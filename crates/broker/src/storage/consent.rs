//! One-time tickets and browser sessions of the consent and user sign-in flows.
//!
//! Only SHA-256 hashes of tickets, session ids, states and nonces are stored, so a copy of the
//! database cannot be used to hijack or forge a flow in progress. Taking a ticket or a session
//! deletes it in the same statement that reads it, so two concurrent requests can never both get
//! it and nothing used stays behind; expired rows are purged every minute.
//!
//! Invariant: a ticket is only issued while its account (or user) and the flow as a whole are
//! under their caps of open tickets; the count and the insert are one transaction.

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

/// A new one-time ticket (connect or login URL), issued under `caps`.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub purpose: Purpose,
    pub ticket_hash: [u8; 32],
    pub account_id: String,
    pub return_to: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub caps: TicketCaps,
}

/// A new consent session, written when the browser opens its connect URL.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub purpose: Purpose,
    pub session_hash: [u8; 32],
    pub account_id: String,
    pub return_to: String,
    /// SHA-256 of the OAuth `state` sent to IMS.
    pub state_hash: [u8; 32],
    /// SHA-256 of the `nonce` sent to IMS.
    pub nonce_hash: [u8; 32],
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
    pub state_hash: [u8; 32],
    pub nonce_hash: [u8; 32],
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

/// How many tickets may be open (issued, neither expired nor finished) at once. A ticket stays
/// open through the session it starts, until the callback takes that session or it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketCaps {
    /// Per account (consent) or user (sign-in).
    pub per_subject: u32,
    /// For the flow as a whole.
    pub total: u32,
}

/// The outcome of issuing a ticket under its caps. `retry_after_ms` is how long until the open
/// ticket or session that expires first frees a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketInsert {
    Inserted,
    SubjectFull { retry_after_ms: u64 },
    TotalFull { retry_after_ms: u64 },
}

/// The result of taking a session.
#[derive(Debug)]
pub enum SessionTake {
    Fresh(ConsentSession),
    Expired(ConsentSession),
    /// Unknown, or already used.
    Missing,
}

/// Open tickets and sessions of one subject of a flow at `?2`: their number and earliest expiry.
const OPEN_FOR_SUBJECT: &str = "
    SELECT count(*), min(expires_at_ms) FROM (
        SELECT expires_at_ms FROM connect_tickets
        WHERE purpose = ?1 AND account_id = ?3 AND expires_at_ms > ?2
        UNION ALL
        SELECT expires_at_ms FROM consent_sessions
        WHERE purpose = ?1 AND account_id = ?3 AND expires_at_ms > ?2
    )";

/// The same for the whole flow.
const OPEN_TOTAL: &str = "
    SELECT count(*), min(expires_at_ms) FROM (
        SELECT expires_at_ms FROM connect_tickets WHERE purpose = ?1 AND expires_at_ms > ?2
        UNION ALL
        SELECT expires_at_ms FROM consent_sessions WHERE purpose = ?1 AND expires_at_ms > ?2
    )";

/// Every purpose, so the purge can use the `(purpose, expires_at_ms)` indexes.
const PURPOSES: &str = "('consent', 'user_login')";

impl Store {
    /// Stores a ticket unless its subject or the flow already has as many open as `caps` allow.
    pub async fn insert_ticket(&self, t: NewTicket) -> Result<TicketInsert, StorageError> {
        let NewTicket {
            purpose,
            ticket_hash,
            account_id,
            return_to,
            created_at_ms,
            expires_at_ms,
            caps,
        } = t;
        self.call(move |c| {
            // IMMEDIATE takes the write lock first, so no other writer can slip a ticket in
            // between the counts and the insert.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = created_at_ms as i64;
            let open = |sql: &str, subject: Option<&str>| -> rusqlite::Result<(u32, u64)> {
                let row = |r: &rusqlite::Row<'_>| {
                    let n: i64 = r.get(0)?;
                    let first: Option<i64> = r.get(1)?;
                    Ok((
                        u32::try_from(n).unwrap_or(u32::MAX),
                        first.map_or(0, |f| (f - now).max(0) as u64),
                    ))
                };
                match subject {
                    Some(s) => tx.query_row(sql, params![purpose.as_str(), now, s], row),
                    None => tx.query_row(sql, params![purpose.as_str(), now], row),
                }
            };
            let (n, retry_after_ms) = open(OPEN_FOR_SUBJECT, Some(&account_id))?;
            if n >= caps.per_subject {
                return Ok(TicketInsert::SubjectFull { retry_after_ms });
            }
            let (n, retry_after_ms) = open(OPEN_TOTAL, None)?;
            if n >= caps.total {
                return Ok(TicketInsert::TotalFull { retry_after_ms });
            }
            tx.execute(
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
            )?;
            tx.commit()?;
            Ok(TicketInsert::Inserted)
        })
        .await
    }

    /// Deletes the ticket and returns it, if it exists and is unexpired at `now_ms`.
    pub async fn take_ticket(
        &self,
        purpose: Purpose,
        ticket_hash: [u8; 32],
        now_ms: u64,
    ) -> Result<Option<TicketTake>, StorageError> {
        self.call(move |c| {
            c.query_row(
                "DELETE FROM connect_tickets
                 WHERE ticket_hash = ?1 AND expires_at_ms > ?2 AND purpose = ?3
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
                 (session_hash, account_id, return_to, state_hash, nonce_hash, created_at_ms,
                  expires_at_ms, purpose, verifier_sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    &s.session_hash[..],
                    s.account_id,
                    s.return_to,
                    &s.state_hash[..],
                    &s.nonce_hash[..],
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

    /// Consumes (deletes) the session whatever happens next: a callback gets one chance.
    pub async fn take_session(
        &self,
        purpose: Purpose,
        session_hash: [u8; 32],
        now_ms: u64,
    ) -> Result<SessionTake, StorageError> {
        self.call(move |c| {
            let s = c
                .query_row(
                    "DELETE FROM consent_sessions
                     WHERE session_hash = ?1 AND purpose = ?2
                     RETURNING account_id, return_to, state_hash, nonce_hash, expires_at_ms,
                               verifier_sealed",
                    params![&session_hash[..], purpose.as_str()],
                    |r| {
                        Ok(ConsentSession {
                            account_id: r.get(0)?,
                            return_to: r.get(1)?,
                            state_hash: r.get(2)?,
                            nonce_hash: r.get(3)?,
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
                "SELECT count(*) FROM consent_sessions WHERE session_hash = ?1",
                params![&session_hash[..]],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
        })
        .await
    }

    /// Rows in the ticket and session tables, expired or not (tests and diagnostics).
    pub async fn flow_record_counts(&self) -> Result<(u64, u64), StorageError> {
        self.call(|c| {
            let count = |table: &str| -> rusqlite::Result<u64> {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
            };
            Ok((count("connect_tickets")?, count("consent_sessions")?))
        })
        .await
    }

    /// Deletes tickets and sessions that expired at or before `now_ms`; used ones are already
    /// gone, and an expired one can never be used (the session cookie's Max-Age ends with it).
    pub async fn purge_consent_records(&self, now_ms: u64) -> Result<usize, StorageError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let a = tx.execute(
                &format!(
                    "DELETE FROM connect_tickets WHERE purpose IN {PURPOSES} AND expires_at_ms <= ?1"
                ),
                params![now_ms as i64],
            )?;
            let b = tx.execute(
                &format!(
                    "DELETE FROM consent_sessions WHERE purpose IN {PURPOSES} AND expires_at_ms <= ?1"
                ),
                params![now_ms as i64],
            )?;
            tx.commit()?;
            Ok(a + b)
        })
        .await
    }
}
