//! Users' tokens: sealed in SQLite, served from memory, refreshed ahead of expiry with the
//! refresh token, and revoked at IMS.
//!
//! Invariant: a refresh token is never used twice concurrently. Each user has one async lock;
//! whoever holds it refreshes while the others wait for the result, and a sign-in or revoke for
//! the same user waits for it too. The write-back is conditional on the grant's generation, so a
//! grant revoked or replaced meanwhile is never brought back.
//!
//! A caller never waits for IMS longer than `[refresh] caller_wait`: then it gets the token being
//! replaced if that is still valid, or 503 with `Retry-After`, while the refresh runs on in its
//! own task and stores its result for the next caller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use imsgate_ims::user_oauth::{
    ClientAuth, RefreshRequest, RevokeRequest, UserTokenResponse, check_revoke_response,
    parse_user_token_response,
};
use imsgate_ims::{AccessToken, ImsError, SecretString};
use tokio::sync::OwnedMutexGuard;

use crate::cache::schedule;
use crate::clock::{SharedClock, unix_ms};
use crate::config::RefreshConfig;
use crate::credentials::{Credential, ImsFetcher};
use crate::metrics::Metrics;
use crate::sealed::{SealError, Sealer};
use crate::storage::{StorageError, Store, UserGrantRow};

/// A user's current access token, as the internal API hands it out.
#[derive(Debug, Clone)]
pub struct UserToken {
    pub access_token: SecretString,
    pub expires_at_ms: u64,
    /// The IMS user (`sub` of the verified id_token).
    pub ims_user_id: String,
    pub scopes: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("this user has not signed in with Adobe; start a sign-in with POST /api/user-logins")]
    NotSignedIn,
    #[error("the user's Adobe sign-in has ended ({0}); the user must sign in again")]
    LoginRequired(&'static str),
    #[error("IMS could not refresh the user's token: {cause}")]
    Unavailable {
        cause: ImsError,
        retry_after: Duration,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// A stored grant as operators see it.
#[derive(Debug, Clone)]
pub struct GrantInfo {
    pub user_ref: String,
    pub ims_user_id: String,
    pub access_expires_ms: u64,
    pub refresh_expires_ms: Option<u64>,
    /// The key id the access token is sealed with.
    pub kid: String,
    /// Whether every column is sealed with the newest key.
    pub current_key: bool,
    /// When the user signed in (the grant was created).
    pub signed_in_at_ms: u64,
    /// When the grant's tokens were last written (the sign-in or the last refresh).
    pub last_refresh_ms: u64,
}

/// What revoking found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Whether IMS confirmed every revocation (the grant is deleted locally either way).
    pub at_ims: bool,
}

/// A grant as held in memory, tokens opened.
#[derive(Debug)]
struct Loaded {
    ims_user_id: String,
    scopes: String,
    access: AccessToken,
    refresh: Option<SecretString>,
    refresh_expires_ms: Option<u64>,
    generation: i64,
    /// Refreshed tokens not yet written back (the write failed); retried on the next call.
    unsaved: bool,
}

/// How soon a caller whose wait ran out should ask again.
const STILL_REFRESHING_RETRY: Duration = Duration::from_secs(1);

/// A user's place in the vault: the state behind the user's lock, and beside it what a caller may
/// be served while a refresh holds that lock.
#[derive(Debug, Default, Clone)]
struct SlotRef {
    state: Arc<tokio::sync::Mutex<Slot>>,
    /// While a refresh is at IMS: the token it replaces, and until when that may be served.
    interim: Arc<parking_lot::Mutex<Option<(UserToken, SystemTime)>>>,
}

#[derive(Debug, Default)]
struct Slot {
    grant: Option<Loaded>,
    /// When a caller last asked for this user's token (tokio's clock).
    last_used: Option<tokio::time::Instant>,
    /// The last refresh failure and when the next attempt may go to IMS.
    failure: Option<(ImsError, SystemTime)>,
    attempts: u32,
}

/// Everything the vault needs to reach IMS and storage.
#[derive(Debug)]
pub struct UserTokenVault {
    pub credential: Arc<Credential>,
    pub fetcher: Arc<ImsFetcher>,
    pub store: Store,
    pub sealer: Sealer,
    pub clock: SharedClock,
    pub auth: ClientAuth,
    pub refresh_token_lifetime: Duration,
    pub backoff: RefreshConfig,
    pub metrics: Arc<Metrics>,
    slots: parking_lot::Mutex<HashMap<String, SlotRef>>,
}

fn context(credential: &str, user_ref: &str, column: &str) -> String {
    format!("user_grant\0{credential}\0{user_ref}\0{column}")
}

fn at_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// Refresh tokens IMS refuses this way are gone: the user revoked access, the token expired, or
/// it was already used.
fn grant_is_dead(e: &ImsError) -> bool {
    matches!(e.error.as_deref(), Some("invalid_grant" | "invalid_token"))
}

impl UserTokenVault {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        credential: Arc<Credential>,
        fetcher: Arc<ImsFetcher>,
        store: Store,
        sealer: Sealer,
        clock: SharedClock,
        auth: ClientAuth,
        refresh_token_lifetime: Duration,
        backoff: RefreshConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            credential,
            fetcher,
            store,
            sealer,
            clock,
            auth,
            refresh_token_lifetime,
            backoff,
            metrics,
            slots: parking_lot::Mutex::default(),
        }
    }

    fn name(&self) -> &str {
        &self.credential.config.name
    }

    /// The user's slot. Clones are only handed out under the map's lock, so a slot whose only
    /// reference is the map's is held by nobody and can be dropped without two slots ever
    /// existing for one user (which would allow two concurrent refreshes).
    fn slot(&self, user_ref: &str) -> SlotRef {
        self.slots
            .lock()
            .entry(user_ref.to_owned())
            .or_default()
            .clone()
    }

    fn release(&self, user_ref: &str) {
        let mut slots = self.slots.lock();
        if slots
            .get(user_ref)
            .is_some_and(|slot| Arc::strong_count(&slot.state) == 1)
        {
            slots.remove(user_ref);
        }
    }

    /// How many users' tokens are held in memory.
    pub fn cached_users(&self) -> usize {
        self.slots.lock().len()
    }

    /// Forgets the in-memory tokens of users not asked for within `idle` (they are read from
    /// SQLite again when needed), so memory follows active users, not every user who ever signed
    /// in. Returns how many were dropped.
    /// Writes the grants whose write-back failed (each the only copy of a rotated refresh
    /// token), so they reach disk even if their users do not come back. Returns how many were
    /// still unsaved when tried.
    pub async fn save_unsaved(&self) -> usize {
        let pending = self.unsaved_slots();
        for (user, state) in &pending {
            let mut s = state.lock().await;
            self.save(user, &mut s).await;
        }
        pending.len()
    }

    /// How many grants hold tokens whose write-back failed and has not been retried yet (slots
    /// being served right now are not counted: their request writes them).
    pub fn unsaved(&self) -> usize {
        self.unsaved_slots().len()
    }

    fn unsaved_slots(&self) -> Vec<(String, Arc<tokio::sync::Mutex<Slot>>)> {
        self.slots
            .lock()
            .iter()
            .filter(|(_, slot)| {
                slot.state
                    .try_lock()
                    .is_ok_and(|s| s.grant.as_ref().is_some_and(|g| g.unsaved))
            })
            .map(|(user, slot)| (user.clone(), slot.state.clone()))
            .collect()
    }

    pub fn evict_idle(&self, idle: Duration) -> usize {
        let mut slots = self.slots.lock();
        let before = slots.len();
        slots.retain(|_, slot| {
            if Arc::strong_count(&slot.state) > 1 {
                return true;
            }
            match slot.state.try_lock() {
                // A grant whose write failed is the only copy of a rotated refresh token: it
                // stays until a later request writes it.
                Ok(s) if s.grant.as_ref().is_some_and(|g| g.unsaved) => true,
                Ok(s) => s.last_used.is_some_and(|t| t.elapsed() < idle),
                Err(_) => true,
            }
        });
        before - slots.len()
    }

    fn open_row(&self, row: &UserGrantRow) -> Result<Loaded, SealError> {
        let ctx = |c| context(&row.credential, &row.user_ref, c);
        let secret = self.sealer.open(&ctx("access"), &row.access_sealed)?;
        let refresh = match &row.refresh_sealed {
            Some(s) => Some(self.sealer.open(&ctx("refresh"), s)?),
            None => None,
        };
        Ok(Loaded {
            ims_user_id: row.ims_user_id.clone(),
            scopes: row.scopes.clone(),
            access: AccessToken {
                secret,
                token_type: "bearer".into(),
                issued_at: at_ms(row.access_issued_ms),
                expires_at: at_ms(row.access_expires_ms),
            },
            refresh,
            refresh_expires_ms: row.refresh_expires_ms,
            generation: row.generation,
            unsaved: false,
        })
    }

    /// Stores the tokens of a new sign-in, replacing the user's earlier grant.
    pub async fn store_sign_in(
        &self,
        user_ref: &str,
        ims_user_id: &str,
        scopes: &str,
        tokens: &UserTokenResponse,
    ) -> Result<(), VaultError> {
        let slot = self.slot(user_ref);
        let mut s = slot.state.lock().await;
        let superseded = self
            .store
            .user_grant(self.name().to_owned(), user_ref.to_owned())
            .await?;
        let now = unix_ms(self.clock.now());
        let ctx = |c| context(self.name(), user_ref, c);
        let refresh_sealed = match &tokens.refresh_token {
            Some(r) => Some(self.sealer.seal(&ctx("refresh"), r)?),
            None => None,
        };
        let row = self
            .store
            .put_user_grant(UserGrantRow {
                credential: self.name().to_owned(),
                user_ref: user_ref.to_owned(),
                ims_user_id: ims_user_id.to_owned(),
                scopes: scopes.to_owned(),
                access_sealed: self.sealer.seal(&ctx("access"), &tokens.access.secret)?,
                access_issued_ms: unix_ms(tokens.access.issued_at),
                access_expires_ms: tokens.access.expires_at_unix_ms(),
                refresh_expires_ms: refresh_sealed
                    .as_ref()
                    .map(|_| now + self.refresh_token_lifetime.as_millis() as u64),
                refresh_sealed,
                generation: 0,
                created_at_ms: now,
                updated_at_ms: now,
            })
            .await?;
        *s = Slot {
            grant: Some(self.open_row(&row)?),
            last_used: Some(tokio::time::Instant::now()),
            ..Slot::default()
        };
        drop(s);
        // The earlier grant would otherwise stay usable at IMS for up to 14 days with nobody
        // holding it: end it (its refresh token ends its access tokens too).
        if let Some(old) = superseded.and_then(|row| self.open_row(&row).ok()) {
            let (token, hint) = match &old.refresh {
                Some(r) => (r, "refresh_token"),
                None => (&old.access.secret, "access_token"),
            };
            if let Err(e) = self.revoke_one(token, hint).await {
                tracing::warn!(credential = %self.name(), user = %user_ref, error = %e, "could not revoke the grant a new sign-in replaced");
            }
        }
        Ok(())
    }

    /// The user's access token: from memory while it is fresh; refreshed (once, however many
    /// callers wait) when it is within its refresh margin.
    pub async fn token(self: &Arc<Self>, user_ref: &str) -> Result<UserToken, VaultError> {
        let slot = self.slot(user_ref);
        let deadline = tokio::time::Instant::now() + self.backoff.caller_wait;
        // Waiting for the lock is waiting for whoever refreshes under it: bounded too.
        let result = match tokio::time::timeout_at(deadline, slot.state.clone().lock_owned()).await
        {
            Ok(guard) => {
                // Everything under the lock runs in its own task: a caller that gives up (or
                // whose wait runs out) must not cancel a refresh between IMS rotating the refresh
                // token and the write-back, or the new refresh token would be lost and the next
                // attempt would present a dead one.
                let this = Arc::clone(self);
                let user = user_ref.to_owned();
                let interim = slot.interim.clone();
                let task =
                    tokio::spawn(async move { this.token_locked(&user, guard, &interim).await });
                match tokio::time::timeout_at(deadline, task).await {
                    Ok(joined) => joined.unwrap_or_else(|_| {
                        Err(VaultError::Unavailable {
                            cause: ImsError::transport("the user token task failed"),
                            retry_after: Duration::from_secs(1),
                        })
                    }),
                    Err(_) => self.interim(&slot),
                }
            }
            Err(_) => self.interim(&slot),
        };
        drop(slot);
        if matches!(result, Err(VaultError::NotSignedIn)) {
            self.release(user_ref);
        }
        result
    }

    /// For a caller whose wait ran out while a refresh is at IMS: the token being replaced while
    /// it is still valid, else 503 and a time to ask again (by then the result is stored).
    fn interim(&self, slot: &SlotRef) -> Result<UserToken, VaultError> {
        if let Some((token, until)) = slot.interim.lock().as_ref()
            && self.clock.now() < *until
        {
            return Ok(token.clone());
        }
        Err(VaultError::Unavailable {
            cause: ImsError::transport(
                "IMS has not answered the refresh yet; it continues in the background",
            ),
            retry_after: STILL_REFRESHING_RETRY,
        })
    }

    async fn token_locked(
        &self,
        user_ref: &str,
        mut s: OwnedMutexGuard<Slot>,
        interim: &parking_lot::Mutex<Option<(UserToken, SystemTime)>>,
    ) -> Result<UserToken, VaultError> {
        s.last_used = Some(tokio::time::Instant::now());
        if s.grant.is_none() {
            let row = self
                .store
                .user_grant(self.name().to_owned(), user_ref.to_owned())
                .await?;
            let Some(row) = row else {
                return Err(VaultError::NotSignedIn);
            };
            s.grant = Some(self.open_row(&row)?);
        }
        if s.grant.as_ref().is_some_and(|g| g.unsaved) {
            self.save(user_ref, &mut s).await;
        }
        let now = self.clock.now();
        let (refresh_due, servable, can_refresh, serve_until) = {
            let g = s.grant.as_ref().ok_or(VaultError::NotSignedIn)?;
            let lifetime = g.access.lifetime();
            let remaining = g.access.expires_at.duration_since(now).unwrap_or_default();
            let can_refresh =
                g.refresh.is_some() && g.refresh_expires_ms.is_none_or(|e| unix_ms(now) < e);
            (
                remaining <= schedule::refresh_margin(lifetime, 0.0),
                remaining > schedule::safety_margin(lifetime),
                can_refresh,
                g.access.expires_at - schedule::safety_margin(lifetime),
            )
        };
        if !refresh_due {
            return current(&s);
        }
        if !can_refresh {
            if servable {
                return current(&s);
            }
            self.forget(user_ref, &mut s).await?;
            return Err(VaultError::LoginRequired(
                "the access token expired and there is no usable refresh token",
            ));
        }
        if let Some((cause, retry_at)) = &s.failure
            && now < *retry_at
        {
            if servable {
                return current(&s);
            }
            return Err(VaultError::Unavailable {
                cause: cause.clone(),
                retry_after: retry_at.duration_since(now).unwrap_or_default(),
            });
        }
        if servable {
            *interim.lock() = Some((current(&s)?, serve_until));
        }
        let refreshed = self.refresh(&s).await;
        if refreshed.is_err() {
            *interim.lock() = None;
        }
        match refreshed {
            Ok(tokens) => {
                self.metrics.user_token_refresh("ok");
                if let Some(g) = s.grant.as_mut() {
                    g.access = tokens.access;
                    // IMS may rotate the refresh token; a new one restarts its lifetime.
                    if let Some(r) = tokens.refresh_token {
                        g.refresh = Some(r);
                        g.refresh_expires_ms =
                            Some(unix_ms(now) + self.refresh_token_lifetime.as_millis() as u64);
                    }
                    g.unsaved = true;
                }
                s.failure = None;
                s.attempts = 0;
                // The new tokens are served even if the write fails: IMS has already rotated
                // the refresh token, so the one on disk is spent either way.
                self.save(user_ref, &mut s).await;
                // Until the new tokens are durable, a caller whose wait runs out still gets the
                // old, valid token rather than a 503.
                *interim.lock() = None;
                match s.grant {
                    Some(_) => current(&s),
                    None => Err(VaultError::Unavailable {
                        cause: ImsError::invalid_response(
                            "the user's grant changed during a refresh",
                        ),
                        retry_after: Duration::from_secs(1),
                    }),
                }
            }
            Err(e) if grant_is_dead(&e) => {
                self.metrics.user_token_refresh("invalid_grant");
                if self.forget(user_ref, &mut s).await? {
                    tracing::warn!(credential = %self.name(), user = %user_ref, error = %e, "refresh token refused; the user must sign in again");
                    Err(VaultError::LoginRequired("IMS refused the refresh token"))
                } else {
                    // Another process replaced the grant meanwhile; read it again next time.
                    Err(VaultError::Unavailable {
                        cause: e,
                        retry_after: Duration::from_secs(1),
                    })
                }
            }
            Err(e) => {
                self.metrics.user_token_refresh("failed");
                s.attempts = s.attempts.saturating_add(1);
                let wait = schedule::backoff(
                    s.attempts,
                    self.backoff.backoff_initial,
                    self.backoff.backoff_max,
                    e.retry_after,
                    rand::random::<f64>(),
                );
                tracing::warn!(credential = %self.name(), user = %user_ref, error = %e, retry_in_ms = wait.as_millis() as u64, "user token refresh failed");
                s.failure = Some((e.clone(), now + wait));
                if servable {
                    return current(&s);
                }
                Err(VaultError::Unavailable {
                    cause: e,
                    retry_after: wait,
                })
            }
        }
    }

    /// Uses the refresh token at IMS.
    async fn refresh(&self, s: &Slot) -> Result<UserTokenResponse, ImsError> {
        let Some(refresh_token) = s.grant.as_ref().and_then(|g| g.refresh.as_ref()) else {
            return Err(ImsError::invalid_response("no refresh token"));
        };
        let now = self.clock.now();
        let endpoints = &self.fetcher.endpoints;
        let client_id = &self.credential.config.client_id;
        self.fetcher
            .send_with_secrets(
                &self.credential,
                "token",
                |secret| {
                    RefreshRequest {
                        client_id,
                        client_secret: secret,
                        auth: self.auth,
                        refresh_token,
                    }
                    .to_http(&endpoints.token)
                },
                |resp| parse_user_token_response(resp, now),
            )
            .await
    }

    /// Writes refreshed tokens back, only over the generation they were read at. A failed write
    /// leaves them marked unsaved for the next call; a grant replaced or deleted meanwhile (by
    /// another process) is dropped from memory so the stored one is read next time.
    async fn save(&self, user_ref: &str, s: &mut Slot) {
        let Some(g) = s.grant.as_mut().filter(|g| g.unsaved) else {
            return;
        };
        let ctx = |c| context(self.name(), user_ref, c);
        let sealed = self
            .sealer
            .seal(&ctx("access"), &g.access.secret)
            .and_then(|a| {
                let r = match &g.refresh {
                    Some(r) => Some(self.sealer.seal(&ctx("refresh"), r)?),
                    None => None,
                };
                Ok((a, r))
            });
        let (access_sealed, refresh_sealed) = match sealed {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "could not seal a refreshed user token; kept in memory");
                return;
            }
        };
        let refresh = refresh_sealed.zip(g.refresh_expires_ms);
        let written = self
            .store
            .refresh_user_grant(
                self.name().to_owned(),
                user_ref.to_owned(),
                g.generation,
                access_sealed,
                unix_ms(g.access.issued_at),
                g.access.expires_at_unix_ms(),
                refresh,
                unix_ms(self.clock.now()),
            )
            .await;
        match written {
            Ok(Some(row)) => {
                g.generation = row.generation;
                g.unsaved = false;
            }
            Ok(None) => {
                self.metrics.user_token_refresh("superseded");
                tracing::warn!(credential = %self.name(), user = %user_ref, "the user's grant changed elsewhere during a refresh; using the stored one");
                s.grant = None;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not store a refreshed user token; kept in memory and retried on the next request");
            }
        }
    }

    /// Deletes the grant locally after IMS said it is over, unless it changed meanwhile. Returns
    /// whether it was deleted.
    async fn forget(&self, user_ref: &str, s: &mut Slot) -> Result<bool, VaultError> {
        let generation = s.grant.as_ref().map(|g| g.generation);
        *s = Slot::default();
        let Some(generation) = generation else {
            return Ok(false);
        };
        Ok(self
            .store
            .delete_user_grant_at(self.name().to_owned(), user_ref.to_owned(), generation)
            .await?)
    }

    /// What is stored, for operators: one line per user, never a token.
    pub async fn grants(&self) -> Result<Vec<GrantInfo>, VaultError> {
        let rows = self.store.user_grants(self.name().to_owned()).await?;
        Ok(rows.into_iter().map(|r| self.grant_info(r)).collect())
    }

    /// One page of the grants whose user or Adobe user id contains `search`, most recently
    /// refreshed first, for the operator console. Never a token.
    pub async fn grants_page(
        &self,
        search: &str,
        limit: u32,
        offset: u64,
    ) -> Result<crate::storage::Page<GrantInfo>, VaultError> {
        let page = self
            .store
            .user_grants_page(self.name().to_owned(), search.to_owned(), limit, offset)
            .await?;
        Ok(crate::storage::Page {
            items: page.items.into_iter().map(|r| self.grant_info(r)).collect(),
            total: page.total,
            offset: page.offset,
            limit: page.limit,
        })
    }

    fn grant_info(&self, r: crate::storage::UserGrantRow) -> GrantInfo {
        GrantInfo {
            kid: Sealer::kid_of(&r.access_sealed).unwrap_or("?").to_owned(),
            current_key: Sealer::kid_of(&r.access_sealed) == Some(self.sealer.current_kid())
                && r.refresh_sealed
                    .as_deref()
                    .is_none_or(|s| Sealer::kid_of(s) == Some(self.sealer.current_kid())),
            user_ref: r.user_ref,
            ims_user_id: r.ims_user_id,
            access_expires_ms: r.access_expires_ms,
            refresh_expires_ms: r.refresh_expires_ms,
            signed_in_at_ms: r.created_at_ms,
            last_refresh_ms: r.updated_at_ms,
        }
    }

    /// Re-seals every grant not sealed with the newest key, so older keys can be retired. Each
    /// user's lock is held while their row is rewritten, and the write is conditional on the
    /// generation, so a refresh running meanwhile is never undone. Returns how many were
    /// re-sealed; a grant that cannot be opened is reported and left as it is.
    pub async fn reseal_all(&self) -> Result<(usize, Vec<String>), VaultError> {
        let mut done = 0;
        let mut problems = Vec::new();
        for info in self.grants().await? {
            if info.current_key {
                continue;
            }
            let slot = self.slot(&info.user_ref);
            let mut s = slot.state.lock().await;
            let row = self
                .store
                .user_grant(self.name().to_owned(), info.user_ref.clone())
                .await?;
            let Some(row) = row else { continue };
            let loaded = match self.open_row(&row) {
                Ok(l) => l,
                Err(e) => {
                    problems.push(format!("user {}: {e}", info.user_ref));
                    continue;
                }
            };
            let ctx = |c| context(self.name(), &info.user_ref, c);
            let access = self.sealer.seal(&ctx("access"), &loaded.access.secret)?;
            let refresh = match &loaded.refresh {
                Some(r) => Some(self.sealer.seal(&ctx("refresh"), r)?),
                None => None,
            };
            if self
                .store
                .reseal_user_grant(
                    self.name().to_owned(),
                    info.user_ref.clone(),
                    row.generation,
                    access,
                    refresh,
                )
                .await?
            {
                done += 1;
            }
            // The in-memory copy's generation is stale now; read the row again next time.
            s.grant = None;
            drop(s);
            drop(slot);
            self.release(&info.user_ref);
        }
        Ok((done, problems))
    }

    /// Deletes the user's grant and revokes its tokens at IMS: the refresh token first (which
    /// ends the whole grant), then the access token. `None` if the user had no grant.
    pub async fn revoke(&self, user_ref: &str) -> Result<Option<Revoked>, VaultError> {
        let slot = self.slot(user_ref);
        let mut s = slot.state.lock().await;
        let row = self
            .store
            .delete_user_grant(self.name().to_owned(), user_ref.to_owned())
            .await?;
        *s = Slot::default();
        drop(s);
        drop(slot);
        self.release(user_ref);
        let Some(row) = row else {
            return Ok(None);
        };
        let loaded = self.open_row(&row)?;
        let mut at_ims = true;
        let tokens = loaded
            .refresh
            .iter()
            .map(|t| (t, "refresh_token"))
            .chain(std::iter::once((&loaded.access.secret, "access_token")));
        for (token, hint) in tokens {
            if let Err(e) = self.revoke_one(token, hint).await {
                tracing::warn!(credential = %self.name(), user = %user_ref, error = %e, token_type = hint, "IMS did not confirm a revocation");
                at_ims = false;
            }
        }
        Ok(Some(Revoked { at_ims }))
    }

    async fn revoke_one(&self, token: &SecretString, hint: &'static str) -> Result<(), ImsError> {
        let now = self.clock.now();
        let endpoints = &self.fetcher.endpoints;
        let client_id = &self.credential.config.client_id;
        self.fetcher
            .send_with_secrets(
                &self.credential,
                "revoke",
                |secret| {
                    RevokeRequest {
                        client_id,
                        client_secret: secret,
                        auth: self.auth,
                        token,
                        token_type_hint: hint,
                    }
                    .to_http(&endpoints.revoke)
                },
                |resp| check_revoke_response(resp, now),
            )
            .await
    }
}

fn current(s: &Slot) -> Result<UserToken, VaultError> {
    let g = s.grant.as_ref().ok_or(VaultError::NotSignedIn)?;
    Ok(UserToken {
        access_token: g.access.secret.clone(),
        expires_at_ms: g.access.expires_at_unix_ms(),
        ims_user_id: g.ims_user_id.clone(),
        scopes: g.scopes.clone(),
    })
}
