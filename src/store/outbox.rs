//! The `outbox` table: notifications written in the same transaction as the change they
//! announce, delivered at least once by the notifier (which owns attempts and dead-lettering).

use rusqlite::{params, Connection};

use crate::model::event::NotificationKind;
use crate::model::stored::OutboxRow;
use crate::model::time::Timestamp;

use super::{parse_column, parse_json, StoreError};

/// Queues a notification for every configured endpoint.
pub fn enqueue(
    conn: &Connection,
    kind: NotificationKind,
    payload: &impl serde::Serialize,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(payload).map_err(|e| StoreError::BadValue {
        column: "outbox.payload",
        value: kind.as_str().to_owned(),
        source: Box::new(e),
    })?;
    conn.execute(
        "INSERT INTO outbox (id, kind, payload, target, created_at, next_attempt_at) VALUES (?1, ?2, ?3, NULL, ?4, ?4)",
        params![uuid::Uuid::new_v4().to_string(), kind.as_str(), payload, now.0],
    )?;
    Ok(())
}

/// Takes a notification's place in the outbox now, to be `fill`ed later in the same
/// transaction (when its content depends on what is written after it).
pub fn reserve(
    conn: &Connection,
    kind: NotificationKind,
    now: Timestamp,
) -> Result<String, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO outbox (id, kind, payload, target, created_at, next_attempt_at) VALUES (?1, ?2, 'null', NULL, ?3, ?3)",
        params![id, kind.as_str(), now.0],
    )?;
    Ok(id)
}

/// Writes the payload of a `reserve`d notification.
pub fn fill(
    conn: &Connection,
    id: &str,
    payload: &impl serde::Serialize,
) -> Result<(), StoreError> {
    let payload = serde_json::to_string(payload).map_err(|e| StoreError::BadValue {
        column: "outbox.payload",
        value: id.to_owned(),
        source: Box::new(e),
    })?;
    conn.execute(
        "UPDATE outbox SET payload = ?2 WHERE id = ?1",
        params![id, payload],
    )?;
    Ok(())
}

/// Every row, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<OutboxRow>, StoreError> {
    select(conn, "1", u32::MAX)
}

/// Rows not fanned out into deliveries yet, oldest first.
pub fn pending(conn: &Connection, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
    select(conn, "delivered_at IS NULL", limit)
}

fn select(conn: &Connection, filter: &str, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT id, kind, payload, target, attempts, created_at, next_attempt_at, delivered_at, dead_at, last_error
         FROM outbox WHERE {filter} ORDER BY created_at, rowid LIMIT ?1"
    ))?;
    let rows = stmt.query_map([limit], |row| {
        Ok((
            (
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
            ),
            (
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, i64>(6)?,
            ),
            (
                row.get::<_, Option<i64>>(7)?,
                row.get::<_, Option<i64>>(8)?,
                row.get::<_, Option<String>>(9)?,
            ),
        ))
    })?;
    rows.map(|row| {
        let (
            (id, kind, payload, target),
            (attempts, created_at, next_attempt_at),
            (delivered_at, dead_at, last_error),
        ) = row?;
        Ok(OutboxRow {
            id,
            kind: parse_column("outbox.kind", kind)?,
            payload: parse_json("outbox.payload", payload)?,
            target,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            created_at: Timestamp(created_at),
            next_attempt_at: Timestamp(next_attempt_at),
            delivered_at: delivered_at.map(Timestamp),
            dead_at: dead_at.map(Timestamp),
            last_error,
        })
    })
    .collect()
}
