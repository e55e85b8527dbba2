//! The database opened for looking only, by `imsgate doctor`: never created, never migrated,
//! never written, and no file appears next to it.
//!
//! SQLite in WAL mode creates `-wal` and `-shm` files for any connection, even a read-only one.
//! When they do not exist, no broker has the database open and everything is in the main file, so
//! it is opened `immutable` (no locks, no side files). When they exist, a broker is running and
//! they already exist, so a plain read-only connection creates nothing.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{SecretUsage, StorageError};

/// A read-only view of an existing database.
#[derive(Debug)]
pub struct ReadOnlyStore {
    path: PathBuf,
    conn: Connection,
}

/// Users' grants for one credential, counted by the key that sealed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantKeys {
    pub total: usize,
    /// Grants with a token sealed with a key other than `current_kid`.
    pub older: usize,
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl ReadOnlyStore {
    /// `Ok(None)` when the file does not exist (nothing is created).
    pub fn open(path: &Path) -> Result<Option<Self>, StorageError> {
        if !path.exists() {
            return Ok(None);
        }
        let err = |source| StorageError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let running = side_file(path, "-wal").exists() || side_file(path, "-shm").exists();
        let mut uri = url::Url::from_file_path(
            std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        )
        .map_err(|()| err(rusqlite::Error::InvalidPath(path.to_path_buf())))?;
        uri.set_query(Some(if running {
            "mode=ro"
        } else {
            "mode=ro&immutable=1"
        }));
        let conn = Connection::open_with_flags(
            uri.as_str(),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(2))
            .map_err(err)?;
        Ok(Some(Self {
            path: path.to_path_buf(),
            conn,
        }))
    }

    fn err(&self, source: rusqlite::Error) -> StorageError {
        StorageError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Whether the schema has a table; an older database may lack one.
    fn has_table(&self, name: &str) -> Result<bool, StorageError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    pub fn secret_usage(&self) -> Result<Vec<SecretUsage>, StorageError> {
        if !self.has_table("secret_usage")? {
            return Ok(Vec::new());
        }
        super::secret_usage::read_all(&self.conn).map_err(|e| self.err(e))
    }

    /// How many grants `credential` has, and how many are sealed with an older key.
    pub fn grant_keys(
        &self,
        credential: &str,
        current_kid: &str,
    ) -> Result<GrantKeys, StorageError> {
        if !self.has_table("user_grants")? {
            return Ok(GrantKeys { total: 0, older: 0 });
        }
        let run = || -> rusqlite::Result<GrantKeys> {
            let mut stmt = self.conn.prepare(
                "SELECT access_sealed, refresh_sealed FROM user_grants WHERE credential = ?1",
            )?;
            let mut rows = stmt.query([credential])?;
            let (mut total, mut older) = (0, 0);
            while let Some(r) = rows.next()? {
                let access: String = r.get(0)?;
                let refresh: Option<String> = r.get(1)?;
                total += 1;
                let current = |s: &str| crate::sealed::Sealer::kid_of(s) == Some(current_kid);
                if !current(&access) || refresh.as_deref().is_some_and(|s| !current(s)) {
                    older += 1;
                }
            }
            Ok(GrantKeys { total, older })
        };
        run().map_err(|e| self.err(e))
    }
}
