//! The `quarantine` table: desired states (by `DesiredState::fingerprint`) that were rolled
//! back, and the revision that carried each. A quarantined state is not applied again — under
//! any commit — until it changes (a `lifted_at` column is kept for an admin's retry).

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::time::Timestamp;

use super::StoreError;

/// Quarantines `desired_hash`, rolled back as revision `revision`.
pub fn add(
    tx: &Connection,
    desired_hash: &str,
    revision: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO quarantine (desired_hash, revision, since) VALUES (?1, ?2, ?3)
         ON CONFLICT (desired_hash) DO UPDATE SET revision = ?2, since = ?3, lifted_at = NULL",
        params![desired_hash, revision, now.0],
    )?;
    Ok(())
}

/// (revisions rolled back, revisions refused as quarantined, desired states quarantined now).
pub fn counts(conn: &Connection) -> Result<(u64, u64, u64), StoreError> {
    Ok(conn.query_row(
        "SELECT (SELECT COUNT(*) FROM revisions WHERE state = 'rolled_back'),
                (SELECT COUNT(*) FROM revisions WHERE state = 'quarantined'),
                (SELECT COUNT(*) FROM quarantine WHERE lifted_at IS NULL)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

/// The rolled-back revision whose desired state `desired_hash` is, while quarantined.
pub fn holding(conn: &Connection, desired_hash: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT revision FROM quarantine WHERE desired_hash = ?1 AND lifted_at IS NULL",
            [desired_hash],
            |r| r.get(0),
        )
        .optional()?)
}
