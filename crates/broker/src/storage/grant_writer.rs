//! The grant writer: tokens IMS has just issued go to disk at once, many to one fsync, on a
//! connection of their own.
//!
//! From the moment IMS answers a refresh, the rotated refresh token exists only in this process;
//! a crash before it is durable loses the user's sign-in. So these writes never queue behind the
//! main connection's queue of work, nor behind each other's fsyncs (SQLite still serialises write
//! transactions, so a grant write waits for a write the main connection is committing at that
//! moment, a few milliseconds at most): one thread owns a second connection,
//! takes every write waiting, applies them in one transaction and commits once (group commit),
//! then answers each. A write whose generation moved on is `None` for that write only; a failed
//! commit fails every write of the batch, whose callers keep the tokens in memory and retry.
//!
//! The writer never checkpoints the WAL itself (a checkpoint copies pages into the database and
//! fsyncs it, tens of milliseconds during which new tokens would wait): a third connection does,
//! passively and concurrently, once a second after grants were written.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::StorageError;
use super::user_grants::{GrantWrite, UserGrantRow};

/// At most this many writes share a transaction, so one batch's reply is never held back long.
const MAX_BATCH: usize = 256;

/// How often the checkpointer looks for grant writes to move into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

type Outcome = Result<Option<UserGrantRow>, StorageError>;

struct Job {
    write: GrantWrite,
    reply: oneshot::Sender<Outcome>,
}

/// The sending half. Dropping it (with the store) stops both threads and waits for them, so
/// once a store is dropped none of its connections is open any more (another process may then
/// move or truncate the files safely).
pub(super) struct GrantWriter {
    jobs: Option<mpsc::Sender<Job>>,
    stop: Option<mpsc::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for GrantWriter {
    fn drop(&mut self) {
        // The writer finishes the writes already queued, then sees the queue closed.
        self.jobs.take();
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl GrantWriter {
    /// Starts the writer on `conn` and the checkpointer on `checkpointer`.
    pub(super) fn start(
        conn: Connection,
        checkpointer: Connection,
        path: PathBuf,
    ) -> std::io::Result<Self> {
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(std::io::Error::other)?;
        let (jobs, queue) = mpsc::channel();
        let (stop, stopped) = mpsc::channel();
        let dirty = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dirty);
        let writer = std::thread::Builder::new()
            .name("imsgate-grant-writer".into())
            .spawn(move || run(conn, &path, &queue, &flag))?;
        let checkpointer = std::thread::Builder::new()
            .name("imsgate-checkpoint".into())
            .spawn(move || checkpoint(&checkpointer, &dirty, &stopped))?;
        Ok(Self {
            jobs: Some(jobs),
            stop: Some(stop),
            threads: vec![writer, checkpointer],
        })
    }

    /// Queues `write` and waits until it is committed (or failed).
    pub(super) async fn write(&self, write: GrantWrite) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or(StorageError::Join)?
            .send(Job { write, reply })
            .map_err(|_| StorageError::Join)?;
        outcome.await.map_err(|_| StorageError::Join)?
    }
}

fn run(
    mut conn: Connection,
    path: &std::path::Path,
    queue: &mpsc::Receiver<Job>,
    dirty: &AtomicBool,
) {
    let err = |source| StorageError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match apply(&mut conn, &batch) {
            Ok(outcomes) => {
                dirty.store(true, Ordering::Relaxed);
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome.map_err(err));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(err(copy(&e))));
                }
            }
        }
    }
}

/// Moves committed grant writes from the WAL into the database while the writer keeps writing
/// (a passive checkpoint never blocks it). Stops when the store is dropped.
fn checkpoint(conn: &Connection, dirty: &AtomicBool, stop: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if dirty.swap(false, Ordering::Relaxed)
            && let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "could not checkpoint the database");
        }
    }
}

/// Applies every write of the batch in one transaction. The outer error means nothing of the
/// batch was written.
fn apply(
    conn: &mut Connection,
    batch: &[Job],
) -> rusqlite::Result<Vec<rusqlite::Result<Option<UserGrantRow>>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = job.write.apply(&tx);
        if let Err(e) = &outcome
            && tx.is_autocommit()
        {
            // SQLite rolled the whole transaction back (disk full, I/O error): the writes before
            // this one are undone too.
            return Err(copy(e));
        }
        outcomes.push(outcome);
    }
    tx.commit()?;
    Ok(outcomes)
}

/// `rusqlite::Error` is not `Clone`; every write of a failed batch gets its own copy.
fn copy(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::{Store, UserGrantRow};

    fn grant(user: &str) -> UserGrantRow {
        UserGrantRow {
            credential: "web".into(),
            user_ref: user.into(),
            ims_user_id: "U@AdobeID".into(),
            scopes: "openid".into(),
            access_sealed: "sealed-a".into(),
            access_issued_ms: 0,
            access_expires_ms: 100,
            refresh_sealed: Some("sealed-r".into()),
            refresh_expires_ms: Some(1000),
            generation: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn refresh(
        store: &Store,
        user: &str,
        generation: i64,
    ) -> impl Future<Output = Result<Option<UserGrantRow>, crate::storage::StorageError>> {
        store.refresh_user_grant(
            "web".into(),
            user.into(),
            generation,
            format!("new-a-{user}"),
            1,
            200,
            Some((format!("new-r-{user}"), 2000)),
            5,
        )
    }

    /// Writes that arrive together share commits, yet each keeps its own outcome; a failed batch
    /// fails its writes (their callers keep the tokens and retry) and the writer carries on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_writes_keep_their_own_outcomes_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sqlite");
        let store = Store::open(&path).unwrap();
        let mut generations = Vec::new();
        for i in 0..100 {
            generations.push(
                store
                    .put_user_grant(grant(&format!("u{i}")))
                    .await
                    .unwrap()
                    .generation,
            );
        }
        // Every third write starts from a stale generation.
        let writes = (0..100).map(|i| {
            let stale = i % 3 == 0;
            let generation = generations[i] ^ i64::from(stale);
            let store = store.clone();
            async move {
                (
                    i,
                    stale,
                    refresh(&store, &format!("u{i}"), generation).await,
                )
            }
        });
        for (i, stale, outcome) in futures_util::future::join_all(writes).await {
            let row = outcome.unwrap();
            assert_eq!(row.is_none(), stale, "u{i}");
            let stored = store
                .user_grant("web".into(), format!("u{i}"))
                .await
                .unwrap()
                .unwrap();
            let want = if stale {
                "sealed-r".to_owned()
            } else {
                format!("new-r-u{i}")
            };
            assert_eq!(
                stored.refresh_sealed.as_deref(),
                Some(want.as_str()),
                "u{i}"
            );
            if let Some(row) = row {
                assert_eq!(row.generation, stored.generation);
            }
        }

        // The table is gone for a moment: the write fails (nothing hangs), changes nothing, and
        // the retry over the same generation succeeds.
        let before = store
            .user_grant("web".into(), "u1".into())
            .await
            .unwrap()
            .unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("ALTER TABLE user_grants RENAME TO user_grants_away")
            .unwrap();
        assert!(refresh(&store, "u1", before.generation).await.is_err());
        other
            .execute_batch("ALTER TABLE user_grants_away RENAME TO user_grants")
            .unwrap();
        let retried = refresh(&store, "u1", before.generation).await.unwrap();
        assert!(retried.is_some_and(|r| r.generation != before.generation));
    }

    /// A grant write never queues behind the main connection's queue of work: while that
    /// connection is held for half a second (as by a long run of other requests), a refresh
    /// write-back still commits at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grant_writes_do_not_wait_for_the_main_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.sqlite")).unwrap();
        let generation = store.put_user_grant(grant("a")).await.unwrap().generation;
        let busy = store.clone();
        let (started, running) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            busy.call_blocking(|_| {
                let _ = started.send(());
                std::thread::sleep(std::time::Duration::from_millis(500));
                Ok(())
            })
            .unwrap();
        });
        running.recv().unwrap();
        let asked = std::time::Instant::now();
        assert!(refresh(&store, "a", generation).await.unwrap().is_some());
        let waited = asked.elapsed();
        holder.join().unwrap();
        assert!(
            waited < std::time::Duration::from_millis(250),
            "the write-back waited {waited:?}"
        );
    }
}
