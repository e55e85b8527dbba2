//! When each client secret last worked, so an operator knows when the old one can be deleted.

use rusqlite::params;

use super::{StorageError, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUsage {
    pub credential: String,
    /// The secret's reference as written in the config (`file:…`), never its value.
    pub secret_ref: String,
    pub last_success_ms: Option<u64>,
    pub last_failure_ms: Option<u64>,
}

impl Store {
    pub async fn record_secret_result(
        &self,
        credential: String,
        secret_ref: String,
        success: bool,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        self.call(move |c| {
            let column = if success { "last_success_ms" } else { "last_failure_ms" };
            c.execute(
                &format!(
                    "INSERT INTO secret_usage (credential, secret_ref, {column}) VALUES (?1, ?2, ?3)
                     ON CONFLICT (credential, secret_ref) DO UPDATE SET {column} = excluded.{column}"
                ),
                params![credential, secret_ref, now_ms as i64],
            )
            .map(drop)
        })
        .await
    }

    pub fn secret_usage_blocking(&self) -> Result<Vec<SecretUsage>, StorageError> {
        self.call_blocking(|c| read_all(c))
    }
}

/// Every recorded secret result, ordered by credential then reference; shared with the read-only
/// store `doctor` opens.
pub(super) fn read_all(c: &rusqlite::Connection) -> rusqlite::Result<Vec<SecretUsage>> {
    let mut stmt = c.prepare(
        "SELECT credential, secret_ref, last_success_ms, last_failure_ms
         FROM secret_usage ORDER BY credential, secret_ref",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SecretUsage {
            credential: r.get(0)?,
            secret_ref: r.get(1)?,
            last_success_ms: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
            last_failure_ms: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
        })
    })?;
    rows.collect()
}
