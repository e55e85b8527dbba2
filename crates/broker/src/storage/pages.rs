//! Bounded, searchable pages of links and user grants for the operator console: the database
//! does the filtering, ordering and `LIMIT`, so a large table is never loaded whole.

use rusqlite::params;

use super::links::{LINK_COLUMNS, link_from_row};
use super::user_grants::{GRANT_COLUMNS, UserGrantRow, grant_from_row};
use super::{StorageError, Store};

/// The most rows one page may hold.
pub const MAX_PAGE: u32 = 100;

/// One page of a listing and how many rows match in all.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub offset: u64,
    pub limit: u32,
}

/// A search term: a case-insensitive substring (`instr`, so `%` and `_` mean themselves).
fn term(search: &str) -> String {
    search.trim().to_lowercase()
}

impl Store {
    /// Links whose account id or org id contains `search`, most recently changed first.
    pub async fn links_page(
        &self,
        search: String,
        limit: u32,
        offset: u64,
    ) -> Result<Page<super::Link>, StorageError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.call(move |c| {
            let t = term(&search);
            const FILTER: &str =
                "(?1 = '' OR instr(lower(account_id), ?1) > 0 OR instr(lower(org_id), ?1) > 0)";
            let total: i64 = c.query_row(
                &format!("SELECT count(*) FROM links WHERE {FILTER}"),
                params![t],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE {FILTER}
                 ORDER BY updated_at_ms DESC, account_id LIMIT ?2 OFFSET ?3"
            ))?;
            let items = stmt
                .query_map(
                    params![t, limit as i64, offset.min(i64::MAX as u64) as i64],
                    link_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Page {
                items,
                total: total as u64,
                offset,
                limit,
            })
        })
        .await
    }

    /// A credential's user grants whose user reference or Adobe user id contains `search`, most
    /// recently refreshed first.
    pub async fn user_grants_page(
        &self,
        credential: String,
        search: String,
        limit: u32,
        offset: u64,
    ) -> Result<Page<UserGrantRow>, StorageError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.call(move |c| {
            let t = term(&search);
            const FILTER: &str = "credential = ?1 AND (?2 = '' OR instr(lower(user_ref), ?2) > 0 OR instr(lower(ims_user_id), ?2) > 0)";
            let total: i64 = c.query_row(
                &format!("SELECT count(*) FROM user_grants WHERE {FILTER}"),
                params![credential, t],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM user_grants WHERE {FILTER}
                 ORDER BY updated_at_ms DESC, user_ref LIMIT ?3 OFFSET ?4"
            ))?;
            let items = stmt
                .query_map(
                    params![
                        credential,
                        t,
                        limit as i64,
                        offset.min(i64::MAX as u64) as i64
                    ],
                    grant_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Page {
                items,
                total: total as u64,
                offset,
                limit,
            })
        })
        .await
    }
}
