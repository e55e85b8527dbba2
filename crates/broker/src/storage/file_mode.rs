//! The database files are readable by their owner only: they hold sealed tokens, links and the
//! digests of flows in progress.
//!
//! SQLite creates `-wal` and `-shm` with the mode of the main file, so the main file is created
//! with mode 0600 before SQLite opens it. Files left by an older version (or copied in with a
//! looser mode) are tightened, all three, each time the store opens.

use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MODE: u32 = 0o600;

/// The main file and its `-wal` and `-shm` companions.
pub(super) fn database_files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [path.to_path_buf(), with("-wal"), with("-shm")]
}

/// Creates the main file 0600 if it is missing, and sets 0600 on each of the three that exists.
/// A failure is reported as SQLite's "unable to open database file", with the reason.
pub(super) fn restrict(path: &Path) -> rusqlite::Result<()> {
    restrict_io(path).map_err(|e| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "cannot make the database files private (mode 0600): {e}"
            )),
        )
    })
}

fn restrict_io(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(MODE)
        .open(path)?;
    for f in database_files(path) {
        match std::fs::metadata(&f) {
            Ok(m) if m.permissions().mode() & 0o777 != MODE => {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(MODE))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{NewTicket, Purpose, Store, TicketCaps};

    fn modes(path: &Path) -> Vec<(String, u32)> {
        database_files(path)
            .iter()
            .map(|f| {
                let mode = std::fs::metadata(f)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                (f.display().to_string(), mode)
            })
            .collect()
    }

    async fn write_something(store: &Store) {
        let caps = TicketCaps {
            per_subject: 10,
            total: 10,
        };
        store
            .insert_ticket(NewTicket {
                purpose: Purpose::Consent,
                ticket_hash: [7; 32],
                account_id: "acct".into(),
                return_to: "https://app/".into(),
                created_at_ms: 1,
                expires_at_ms: u64::MAX / 4,
                caps,
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_new_database_and_its_wal_and_shm_are_mode_0600_after_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let store = Store::open(&path).unwrap();
        write_something(&store).await;
        for (f, mode) in modes(&path) {
            assert_eq!(mode, 0o600, "{f} is {mode:o}");
        }
    }

    #[tokio::test]
    async fn looser_files_left_behind_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Store::open(&path).unwrap());
        for f in database_files(&path) {
            // SQLite may remove -wal and -shm on a clean close; recreate them world-readable.
            std::fs::write(&f, []).ok();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        write_something(&store).await;
        for (f, mode) in modes(&path) {
            assert_eq!(mode, 0o600, "{f} is {mode:o}");
        }
    }
}
