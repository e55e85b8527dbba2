//! Users' grants from the sign-in flow: sealed access and refresh tokens per (credential, user).
//!
//! Every write gives the grant a new random `generation`; a refresh writes back, and a refused
//! refresh deletes, only if the generation it started from is still current, so a grant revoked
//! or replaced meanwhile (even deleted and created again) is never resurrected or lost.

use rusqlite::{OptionalExtension, params};

use super::{StorageError, Store};

/// A stored grant. The token columns are sealed (see `crate::sealed`); nothing here is usable
/// without the token encryption keys.
#[derive(Clone, PartialEq, Eq)]
pub struct UserGrantRow {
    pub credential: String,
    pub user_ref: String,
    pub ims_user_id: String,
    pub scopes: String,
    pub access_sealed: String,
    pub access_issued_ms: u64,
    pub access_expires_ms: u64,
    pub refresh_sealed: Option<String>,
    pub refresh_expires_ms: Option<u64>,
    pub generation: i64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

impl std::fmt::Debug for UserGrantRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserGrantRow")
            .field("credential", &self.credential)
            .field("user_ref", &self.user_ref)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A fresh generation: random, so a grant deleted and created again never repeats one.
fn next_generation() -> i64 {
    rand::random::<i64>()
}

pub(super) const GRANT_COLUMNS: &str = "credential, user_ref, ims_user_id, scopes, access_sealed, access_issued_ms,
     access_expires_ms, refresh_sealed, refresh_expires_ms, generation, created_at_ms, updated_at_ms";

pub(super) fn grant_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserGrantRow> {
    Ok(UserGrantRow {
        credential: r.get(0)?,
        user_ref: r.get(1)?,
        ims_user_id: r.get(2)?,
        scopes: r.get(3)?,
        access_sealed: r.get(4)?,
        access_issued_ms: r.get::<_, i64>(5)? as u64,
        access_expires_ms: r.get::<_, i64>(6)? as u64,
        refresh_sealed: r.get(7)?,
        refresh_expires_ms: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        generation: r.get(9)?,
        created_at_ms: r.get::<_, i64>(10)? as u64,
        updated_at_ms: r.get::<_, i64>(11)? as u64,
    })
}

/// A write of tokens IMS has just issued, for the grant writer.
pub(super) enum GrantWrite {
    /// A new sign-in's grant (upsert, fresh generation).
    Put(UserGrantRow),
    /// A refresh's tokens, only over the generation the refresh started from.
    Refresh(RefreshWrite),
}

pub(super) struct RefreshWrite {
    credential: String,
    user_ref: String,
    generation: i64,
    access_sealed: String,
    access_issued_ms: u64,
    access_expires_ms: u64,
    /// A rotated refresh token (sealed) and its expiry; `None` keeps the stored one.
    refresh: Option<(String, u64)>,
    now_ms: u64,
}

impl GrantWrite {
    /// Runs the write on `c` (inside the writer's transaction).
    pub(super) fn apply(&self, c: &rusqlite::Connection) -> rusqlite::Result<Option<UserGrantRow>> {
        match self {
            GrantWrite::Put(g) => c
                .prepare_cached(&format!(
                    "INSERT INTO user_grants ({GRANT_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11, ?10, ?10)
                     ON CONFLICT (credential, user_ref) DO UPDATE SET
                        ims_user_id = excluded.ims_user_id,
                        scopes = excluded.scopes,
                        access_sealed = excluded.access_sealed,
                        access_issued_ms = excluded.access_issued_ms,
                        access_expires_ms = excluded.access_expires_ms,
                        refresh_sealed = excluded.refresh_sealed,
                        refresh_expires_ms = excluded.refresh_expires_ms,
                        generation = excluded.generation,
                        updated_at_ms = excluded.updated_at_ms
                     RETURNING {GRANT_COLUMNS}"
                ))?
                .query_row(
                    params![
                        g.credential,
                        g.user_ref,
                        g.ims_user_id,
                        g.scopes,
                        g.access_sealed,
                        g.access_issued_ms as i64,
                        g.access_expires_ms as i64,
                        g.refresh_sealed,
                        g.refresh_expires_ms.map(|v| v as i64),
                        g.updated_at_ms as i64,
                        next_generation(),
                    ],
                    grant_from_row,
                )
                .map(Some),
            GrantWrite::Refresh(w) => {
                let (refresh_sealed, refresh_expires) = match &w.refresh {
                    Some((s, e)) => (Some(s.as_str()), Some(*e as i64)),
                    None => (None, None),
                };
                c.prepare_cached(&format!(
                    "UPDATE user_grants SET
                        access_sealed = ?4, access_issued_ms = ?5, access_expires_ms = ?6,
                        refresh_sealed = coalesce(?7, refresh_sealed),
                        refresh_expires_ms = coalesce(?8, refresh_expires_ms),
                        generation = ?10, updated_at_ms = ?9
                     WHERE credential = ?1 AND user_ref = ?2 AND generation = ?3
                     RETURNING {GRANT_COLUMNS}"
                ))?
                .query_row(
                    params![
                        w.credential,
                        w.user_ref,
                        w.generation,
                        w.access_sealed,
                        w.access_issued_ms as i64,
                        w.access_expires_ms as i64,
                        refresh_sealed,
                        refresh_expires,
                        w.now_ms as i64,
                        next_generation()
                    ],
                    grant_from_row,
                )
                .optional()
            }
        }
    }
}

impl Store {
    /// Writes a grant from a new sign-in, replacing any earlier one for the user. Returns the
    /// stored row (with its new generation) once it is durable. Goes through the grant writer:
    /// the code exchange has just issued the refresh token.
    pub async fn put_user_grant(&self, g: UserGrantRow) -> Result<UserGrantRow, StorageError> {
        let row = self.inner.grants.write(GrantWrite::Put(g)).await?;
        // An upsert always yields its row.
        row.ok_or(StorageError::Join)
    }

    pub async fn user_grant(
        &self,
        credential: String,
        user_ref: String,
    ) -> Result<Option<UserGrantRow>, StorageError> {
        self.call(move |c| {
            c.query_row(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM user_grants WHERE credential = ?1 AND user_ref = ?2"
                ),
                params![credential, user_ref],
                grant_from_row,
            )
            .optional()
        })
        .await
    }

    /// Every grant of a credential, by user.
    pub async fn user_grants(&self, credential: String) -> Result<Vec<UserGrantRow>, StorageError> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {GRANT_COLUMNS} FROM user_grants WHERE credential = ?1 ORDER BY user_ref"
            ))?;
            let rows = stmt.query_map(params![credential], grant_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Replaces the sealed columns of a grant still at `generation` (re-sealing under a newer
    /// key); the tokens themselves are unchanged. Returns whether it did.
    pub async fn reseal_user_grant(
        &self,
        credential: String,
        user_ref: String,
        generation: i64,
        access_sealed: String,
        refresh_sealed: Option<String>,
    ) -> Result<bool, StorageError> {
        self.call(move |c| {
            c.execute(
                "UPDATE user_grants SET access_sealed = ?4, refresh_sealed = ?5, generation = ?6
                 WHERE credential = ?1 AND user_ref = ?2 AND generation = ?3",
                params![
                    credential,
                    user_ref,
                    generation,
                    access_sealed,
                    refresh_sealed,
                    next_generation()
                ],
            )
            .map(|n| n > 0)
        })
        .await
    }

    /// Replaces the tokens after a refresh, only if the grant is still at `generation`. Returns
    /// the new row once it is durable, or `None` if the grant was revoked or replaced meanwhile.
    /// Goes through the grant writer, so it never waits behind other writes, and refreshes that
    /// arrive together share one commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn refresh_user_grant(
        &self,
        credential: String,
        user_ref: String,
        generation: i64,
        access_sealed: String,
        access_issued_ms: u64,
        access_expires_ms: u64,
        refresh: Option<(String, u64)>,
        now_ms: u64,
    ) -> Result<Option<UserGrantRow>, StorageError> {
        self.inner
            .grants
            .write(GrantWrite::Refresh(RefreshWrite {
                credential,
                user_ref,
                generation,
                access_sealed,
                access_issued_ms,
                access_expires_ms,
                refresh,
                now_ms,
            }))
            .await
    }

    /// Deletes grants that can no longer produce a token at `now_ms`: the access token expired and
    /// there is no refresh token, or it expired too. Their sealed tokens have no use left.
    pub async fn purge_dead_user_grants(&self, now_ms: u64) -> Result<usize, StorageError> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM user_grants WHERE access_expires_ms < ?1
                   AND (refresh_sealed IS NULL OR coalesce(refresh_expires_ms, 0) < ?1)",
                params![now_ms as i64],
            )
        })
        .await
    }

    /// Deletes the grant only if it is still at `generation`; returns whether it did.
    pub async fn delete_user_grant_at(
        &self,
        credential: String,
        user_ref: String,
        generation: i64,
    ) -> Result<bool, StorageError> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM user_grants WHERE credential = ?1 AND user_ref = ?2 AND generation = ?3",
                params![credential, user_ref, generation],
            )
            .map(|n| n > 0)
        })
        .await
    }

    /// Deletes a grant and returns it (so its tokens can be revoked at IMS).
    pub async fn delete_user_grant(
        &self,
        credential: String,
        user_ref: String,
    ) -> Result<Option<UserGrantRow>, StorageError> {
        self.call(move |c| {
            c.query_row(
                &format!(
                    "DELETE FROM user_grants WHERE credential = ?1 AND user_ref = ?2
                     RETURNING {GRANT_COLUMNS}"
                ),
                params![credential, user_ref],
                grant_from_row,
            )
            .optional()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(user: &str, access_expires_ms: u64, refresh: Option<u64>) -> UserGrantRow {
        UserGrantRow {
            credential: "web".into(),
            user_ref: user.into(),
            ims_user_id: "U@AdobeID".into(),
            scopes: "openid".into(),
            access_sealed: "sealed-a".into(),
            access_issued_ms: 0,
            access_expires_ms,
            refresh_sealed: refresh.map(|_| "sealed-r".into()),
            refresh_expires_ms: refresh,
            generation: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn generations_guard_refresh_write_back_and_dead_grants_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite")).unwrap();
        let refresh = |generation: i64, expires: u64| {
            store.refresh_user_grant(
                "web".into(),
                "a".into(),
                generation,
                "x".into(),
                1,
                expires,
                None,
                3,
            )
        };
        let first = store
            .put_user_grant(grant("a", 100, Some(1000)))
            .await
            .unwrap();
        // A new sign-in replaces the grant and moves the generation on.
        let second = store
            .put_user_grant(grant("a", 200, Some(2000)))
            .await
            .unwrap();
        assert_ne!(second.generation, first.generation);
        // A refresh that started from the first generation must not write.
        assert!(refresh(first.generation, 2).await.unwrap().is_none());
        let fresh = refresh(second.generation, 300).await.unwrap().unwrap();
        assert_ne!(fresh.generation, second.generation);
        // No new refresh token: the old one stays.
        assert_eq!(fresh.refresh_sealed.as_deref(), Some("sealed-r"));
        assert_eq!(fresh.refresh_expires_ms, Some(2000));
        // Nor may a refused refresh of an old generation delete the current grant.
        let stale_delete = store
            .delete_user_grant_at("web".into(), "a".into(), second.generation)
            .await
            .unwrap();
        assert!(!stale_delete);
        // Deleted and signed in again: a fresh generation, so an old refresh still cannot write.
        let gone = store
            .delete_user_grant("web".into(), "a".into())
            .await
            .unwrap();
        assert!(gone.is_some());
        let again = store
            .put_user_grant(grant("a", 300, Some(3000)))
            .await
            .unwrap();
        for old in [first.generation, second.generation, fresh.generation] {
            assert_ne!(again.generation, old);
            assert!(refresh(old, 9).await.unwrap().is_none());
        }
        let deleted = store
            .delete_user_grant_at("web".into(), "a".into(), again.generation)
            .await
            .unwrap();
        assert!(deleted);
        store
            .put_user_grant(grant("a", 300, Some(3000)))
            .await
            .unwrap();

        store
            .put_user_grant(grant("no-refresh", 100, None))
            .await
            .unwrap();
        store
            .put_user_grant(grant("refresh-expired", 100, Some(150)))
            .await
            .unwrap();
        store
            .put_user_grant(grant("refreshable", 100, Some(5000)))
            .await
            .unwrap();
        assert_eq!(store.purge_dead_user_grants(400).await.unwrap(), 2);
        for (user, kept) in [
            ("a", true),
            ("refreshable", true),
            ("no-refresh", false),
            ("refresh-expired", false),
        ] {
            let row = store.user_grant("web".into(), user.into()).await.unwrap();
            assert_eq!(row.is_some(), kept, "{user}");
        }
    }
}
