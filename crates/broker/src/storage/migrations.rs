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
];

pub(super) fn apply(conn: &mut Connection) -> rusqlite::Result<()> {
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
}
