//! Durable state in one SQLite file: consent and sign-in tickets and sessions, account↔org links,
//! users' sealed grants, and which client secret last worked.
//!
//! Invariant: every write that must not be half-done is one transaction; the database runs in WAL
//! mode with `synchronous=FULL`, so a committed link survives `kill -9` and power loss alike.
//!
//! Invariant: tokens IMS has just issued (a sign-in's grant, a refresh's rotated refresh token)
//! are written by the grant writer on a connection of its own, never queued behind the main
//! connection's work (only behind a write it is committing at that moment); many arriving
//! together share one commit (`grant_writer.rs`).

mod consent;
mod file_mode;
mod grant_writer;
mod links;
mod migrations;
mod pages;
mod read_only;
mod secret_usage;
mod user_grants;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

pub use consent::{
    ConsentSession, NewSession, NewTicket, Purpose, SessionTake, TicketCaps, TicketInsert,
    TicketTake,
};
pub use links::{Link, LinkStatus};
pub use pages::{MAX_PAGE, Page};
pub use read_only::{GrantKeys, ReadOnlyStore};
pub use secret_usage::SecretUsage;
pub use user_grants::UserGrantRow;

/// Why a storage call failed. The message names the file, never row contents.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database task failed")]
    Join,
    #[error("database {path}: could not start the grant writer: {source}")]
    Thread {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A handle to the database. Cheap to clone; calls run on the blocking pool so the async runtime
/// never waits on disk.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    grants: grant_writer::GrantWriter,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`, and starts the grant
    /// writer on a second connection.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let err = |source| StorageError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        file_mode::restrict(path).map_err(err)?;
        let mut conn = connect(path).map_err(err)?;
        migrations::apply(&mut conn).map_err(err)?;
        let writer = connect(path).map_err(err)?;
        // SQLite's own busy handler sleeps 1, 2, 5, 10… ms between tries; a grant waiting for the
        // other connection's commit should get the lock as soon as it is free.
        writer
            .busy_handler(Some(|tries| {
                std::thread::sleep(std::time::Duration::from_micros(200));
                tries < 25_000
            }))
            .map_err(err)?;
        let checkpointer = connect(path).map_err(err)?;
        let grants = grant_writer::GrantWriter::start(writer, checkpointer, path.into()).map_err(
            |source| StorageError::Thread {
                path: path.display().to_string(),
                source,
            },
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                conn: Mutex::new(conn),
                grants,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock();
            f(&mut conn).map_err(|source| StorageError::Sqlite {
                path: inner.path.display().to_string(),
                source,
            })
        })
        .await
        .map_err(|_| StorageError::Join)?
    }

    /// Runs `f` synchronously; for the CLI, which has no runtime to spare.
    pub fn call_blocking<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let mut conn = self.inner.conn.lock();
        f(&mut conn).map_err(|source| StorageError::Sqlite {
            path: self.inner.path.display().to_string(),
            source,
        })
    }
}

/// A connection with the settings every connection needs: WAL, `synchronous=FULL` (a commit is
/// on disk when it returns), foreign keys, and a wait for the other connection's write lock.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Per connection: the grant writer overwrites sealed tokens, and the old ones must not stay
    // in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}
