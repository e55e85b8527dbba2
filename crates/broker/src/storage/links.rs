//! Account↔org links created by verified consents.

use rusqlite::{OptionalExtension, Row, params};

use super::{StorageError, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Linked,
    /// IMS refused org-scoped tokens: the admin revoked consent (or removed the technical account).
    NeedsReauthorization,
    Unlinked,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::NeedsReauthorization => "needs_reauthorization",
            Self::Unlinked => "unlinked",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<Self> {
        match s {
            "linked" => Ok(Self::Linked),
            "needs_reauthorization" => Ok(Self::NeedsReauthorization),
            "unlinked" => Ok(Self::Unlinked),
            _ => Err(rusqlite::Error::InvalidColumnType(
                3,
                "status".into(),
                rusqlite::types::Type::Text,
            )),
        }
    }

    pub const ALL: [LinkStatus; 3] = [Self::Linked, Self::NeedsReauthorization, Self::Unlinked];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub account_id: String,
    pub org_id: String,
    pub technical_account: String,
    pub status: LinkStatus,
    pub linked_at_ms: u64,
    pub updated_at_ms: u64,
    pub unlinked_at_ms: Option<u64>,
}

pub(super) const LINK_COLUMNS: &str =
    "account_id, org_id, technical_account, status, linked_at_ms, updated_at_ms, unlinked_at_ms";

pub(super) fn link_from_row(r: &Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        account_id: r.get(0)?,
        org_id: r.get(1)?,
        technical_account: r.get(2)?,
        status: LinkStatus::parse(&r.get::<_, String>(3)?)?,
        linked_at_ms: r.get::<_, i64>(4)? as u64,
        updated_at_ms: r.get::<_, i64>(5)? as u64,
        unlinked_at_ms: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
    })
}

impl Store {
    /// Links `account_id` to the org from a verified id_token, replacing any earlier link of the
    /// account, in one transaction.
    pub async fn link(
        &self,
        account_id: String,
        org_id: String,
        technical_account: String,
        now_ms: u64,
    ) -> Result<Link, StorageError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO links (account_id, org_id, technical_account, status, linked_at_ms,
                                    updated_at_ms, unlinked_at_ms)
                 VALUES (?1, ?2, ?3, 'linked', ?4, ?4, NULL)
                 ON CONFLICT (account_id) DO UPDATE SET
                    org_id = excluded.org_id,
                    technical_account = excluded.technical_account,
                    status = 'linked',
                    linked_at_ms = excluded.linked_at_ms,
                    updated_at_ms = excluded.updated_at_ms,
                    unlinked_at_ms = NULL",
                params![account_id, org_id, technical_account, now_ms as i64],
            )?;
            // A fresh consent proves the org consents again, so every account linked to it that
            // was waiting for reauthorization is restored too.
            tx.execute(
                "UPDATE links SET status = 'linked', updated_at_ms = ?2
                 WHERE org_id = ?1 AND status = 'needs_reauthorization'",
                params![org_id, now_ms as i64],
            )?;
            let link = tx.query_row(
                &format!("SELECT {LINK_COLUMNS} FROM links WHERE account_id = ?1"),
                params![account_id],
                link_from_row,
            )?;
            tx.commit()?;
            Ok(link)
        })
        .await
    }

    pub async fn get_link(&self, account_id: String) -> Result<Option<Link>, StorageError> {
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {LINK_COLUMNS} FROM links WHERE account_id = ?1"),
                params![account_id],
                link_from_row,
            )
            .optional()
        })
        .await
    }

    pub async fn list_links(&self) -> Result<Vec<Link>, StorageError> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {LINK_COLUMNS} FROM links ORDER BY updated_at_ms DESC, account_id"
            ))?;
            let rows = stmt.query_map([], link_from_row)?;
            rows.collect()
        })
        .await
    }

    /// Marks the account unlinked. Returns the updated link, or `None` if it never existed.
    pub async fn unlink(
        &self,
        account_id: String,
        now_ms: u64,
    ) -> Result<Option<Link>, StorageError> {
        self.call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE links SET status = 'unlinked', updated_at_ms = ?2, unlinked_at_ms = ?2
                 WHERE account_id = ?1 AND status != 'unlinked'",
                params![account_id, now_ms as i64],
            )?;
            let link = tx
                .query_row(
                    &format!("SELECT {LINK_COLUMNS} FROM links WHERE account_id = ?1"),
                    params![account_id],
                    link_from_row,
                )
                .optional()?;
            tx.commit()?;
            Ok(link)
        })
        .await
    }

    /// The best status any account has for `org_id`: linked beats needs_reauthorization beats
    /// unlinked. `None` when no account was ever linked to it.
    pub async fn org_status(&self, org_id: String) -> Result<Option<LinkStatus>, StorageError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached("SELECT status FROM links WHERE org_id = ?1")?;
            let rows = stmt.query_map(params![org_id], |r| {
                LinkStatus::parse(&r.get::<_, String>(0)?)
            })?;
            let mut best = None;
            for s in rows {
                let s = s?;
                best = Some(match (best, s) {
                    (_, LinkStatus::Linked) | (Some(LinkStatus::Linked), _) => LinkStatus::Linked,
                    (_, LinkStatus::NeedsReauthorization)
                    | (Some(LinkStatus::NeedsReauthorization), _) => {
                        LinkStatus::NeedsReauthorization
                    }
                    _ => LinkStatus::Unlinked,
                });
            }
            Ok(best)
        })
        .await
    }

    /// Marks every linked account of `org_id` as needing reauthorization; returns how many.
    pub async fn mark_needs_reauthorization(
        &self,
        org_id: String,
        now_ms: u64,
    ) -> Result<usize, StorageError> {
        self.call(move |c| {
            c.execute(
                "UPDATE links SET status = 'needs_reauthorization', updated_at_ms = ?2
                 WHERE org_id = ?1 AND status = 'linked'",
                params![org_id, now_ms as i64],
            )
        })
        .await
    }

    /// Link counts by status, for metrics.
    pub fn count_links_blocking(&self) -> Result<Vec<(LinkStatus, u64)>, StorageError> {
        self.call_blocking(|c| {
            let mut out = Vec::new();
            for s in LinkStatus::ALL {
                let n: i64 = c.query_row(
                    "SELECT count(*) FROM links WHERE status = ?1",
                    params![s.as_str()],
                    |r| r.get(0),
                )?;
                out.push((s, n as u64));
            }
            Ok(out)
        })
    }
}
