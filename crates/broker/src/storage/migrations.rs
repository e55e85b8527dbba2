//! Schema migrations, applied in order and recorded in SQLite's `user_version`.

use rusqlite::Connection;

/// Each entry moves the schema from version `i` to `i + 1`. Never edit a released entry; append.
const MIGRATIONS: &[&str] = &[
    // 1: consent flow, links, secret usage.
    "
    CREATE TABLE connect_tickets (
        ticket_hash   BLOB PRIMARY KEY,
        account_id    TEXT NOT NULL,
        return_to     TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        used          INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE consent_sessions (
        session_hash  BLOB PRIMARY KEY,
        account_id    TEXT NOT NULL,
        return_to     TEXT NOT NULL,
        state         TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        consumed      INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE links (
        account_id        TEXT PRIMARY KEY,
        org_id            TEXT NOT NULL,
        technical_account TEXT NOT NULL,
        status            TEXT NOT NULL
            CHECK (status IN ('linked', 'needs_reauthorization', 'unlinked')),
        linked_at_ms      INTEGER NOT NULL,
        updated_at_ms     INTEGER NOT NULL,
        unlinked_at_ms    INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX links_by_org ON links (org_id, status);
    CREATE TABLE secret_usage (
        credential      TEXT NOT NULL,
        secret_ref      TEXT NOT NULL,
        last_success_ms INTEGER,
        last_failure_ms INTEGER,
        PRIMARY KEY (credential, secret_ref)
    ) WITHOUT ROWID;
    ",
    // 2: user sign-in. Tickets and sessions gain a purpose (consent or user login) and the
    // sealed PKCE verifier; user grants hold sealed access and refresh tokens.
    "
    ALTER TABLE connect_tickets ADD COLUMN purpose TEXT NOT NULL DEFAULT 'consent'
        CHECK (purpose IN ('consent', 'user_login'));
    ALTER TABLE consent_sessions ADD COLUMN purpose TEXT NOT NULL DEFAULT 'consent'
        CHECK (purpose IN ('consent', 'user_login'));
    ALTER TABLE consent_sessions ADD COLUMN verifier_sealed TEXT;
    CREATE TABLE user_grants (
        credential         TEXT NOT NULL,
        user_ref           TEXT NOT NULL,
        ims_user_id        TEXT NOT NULL,
        scopes             TEXT NOT NULL,
        access_sealed      TEXT NOT NULL,
        access_issued_ms   INTEGER NOT NULL,
        access_expires_ms  INTEGER NOT NULL,
        refresh_sealed     TEXT,
        refresh_expires_ms INTEGER,
        generation         INTEGER NOT NULL,
        created_at_ms      INTEGER NOT NULL,
        updated_at_ms      INTEGER NOT NULL,
        PRIMARY KEY (credential, user_ref)
    ) WITHOUT ROWID;
    ",
    // 3: sessions keep only SHA-256 digests of state and nonce, and tickets and sessions are
    // deleted when used rather than flagged. Sessions in flight hold their state and nonce in
    // the clear and cannot be converted (a digest of a value that must stay secret is the point),
    // so they are dropped: they live minutes, and their users start again from the application.
    // Used tickets are dropped too; unused ones carry on. The indexes serve the caps on open
    // tickets (per account or user, and in total) and the purge of expired rows.
    "
    DROP TABLE consent_sessions;
    CREATE TABLE consent_sessions (
        session_hash    BLOB PRIMARY KEY,
        purpose         TEXT NOT NULL CHECK (purpose IN ('consent', 'user_login')),
        account_id      TEXT NOT NULL,
        return_to       TEXT NOT NULL,
        state_hash      BLOB NOT NULL,
        nonce_hash      BLOB NOT NULL,
        verifier_sealed TEXT,
        created_at_ms   INTEGER NOT NULL,
        expires_at_ms   INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_account ON consent_sessions (purpose, account_id, expires_at_ms);
    CREATE INDEX sessions_by_expiry ON consent_sessions (purpose, expires_at_ms);
    DELETE FROM connect_tickets WHERE used <> 0;
    ALTER TABLE connect_tickets DROP COLUMN used;
    CREATE INDEX tickets_by_account ON connect_tickets (purpose, account_id, expires_at_ms);
    CREATE INDEX tickets_by_expiry ON connect_tickets (purpose, expires_at_ms);
    ",
];

pub(super) fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
    // Deleted content is zeroed on disk, not left in free pages: sessions and tickets are deleted
    // as soon as they are used or expire, and version 3 drops sessions that held state and nonce
    // in the clear. Set per connection: `storage::connect` sets it on every connection too.
    conn.pragma_update(None, "secure_delete", "ON")?;
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        // A bad status is refused by the schema itself.
        let bad = conn.execute(
            "INSERT INTO links VALUES ('a', 'o', 't', 'bogus', 1, 1, NULL)",
            [],
        );
        assert!(bad.is_err());
    }

    /// A database at version 2 with a session in flight (state and nonce in the clear), a used
    /// and an unused ticket: the session is dropped, the used ticket too, the unused one stays.
    #[test]
    fn version_3_drops_clear_text_sessions_and_used_tickets() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("m.sqlite")).unwrap();
        for (i, sql) in MIGRATIONS.iter().take(2).enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO consent_sessions
               (session_hash, account_id, return_to, state, nonce, created_at_ms, expires_at_ms)
               VALUES (x'01', 'a', 'https://app/', 'clear-state', 'clear-nonce', 1, 2);
             INSERT INTO connect_tickets
               (ticket_hash, account_id, return_to, created_at_ms, expires_at_ms, used)
               VALUES (x'02', 'a', 'https://app/', 1, 2, 1), (x'03', 'b', 'https://app/', 1, 2, 0);",
        )
        .unwrap();
        apply(&mut conn).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM consent_sessions"), 0);
        assert_eq!(
            count("SELECT count(*) FROM connect_tickets WHERE account_id = 'b'"),
            1
        );
        assert_eq!(count("SELECT count(*) FROM connect_tickets"), 1);
        let columns = count(
            "SELECT count(*) FROM pragma_table_info('consent_sessions')
             WHERE name IN ('state', 'nonce')",
        );
        assert_eq!(columns, 0, "no column holds state or nonce in the clear");
    }
}
