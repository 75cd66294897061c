//! The `deliveries`, `endpoints` and `commit_statuses` tables: what the notifier owes each
//! endpoint and how each attempt went. Fan-out (outbox → deliveries) and every attempt are one
//! transaction each, so a crash between two attempts loses nothing and repeats at most the one
//! in flight (at-least-once, same delivery id).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::model::delivery::{Attempt, CommitStatus, Delivery, DeliveryState, NewDelivery};
use crate::model::stored::OutboxRow;
use crate::model::time::Timestamp;

use super::{outbox, parse_column, StoreError};

const COLUMNS: &str = "seq, id, notification, endpoint, body, state, attempts, created_at, \
                       next_attempt_at, last_attempt_at, finished_at, last_status, last_error";

fn from_row(row: &Row<'_>) -> rusqlite::Result<(Delivery, String)> {
    let state: String = row.get(5)?;
    Ok((
        Delivery {
            seq: row.get(0)?,
            id: row.get(1)?,
            notification: row.get(2)?,
            endpoint: row.get(3)?,
            body: row.get(4)?,
            state: DeliveryState::Pending,
            attempts: row.get(6)?,
            created_at: Timestamp(row.get(7)?),
            next_attempt_at: Timestamp(row.get(8)?),
            last_attempt_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
            finished_at: row.get::<_, Option<i64>>(10)?.map(Timestamp),
            last_status: row.get(11)?,
            last_error: row.get(12)?,
        },
        state,
    ))
}

fn typed((mut delivery, state): (Delivery, String)) -> Result<Delivery, StoreError> {
    delivery.state = parse_column("deliveries.state", state)?;
    Ok(delivery)
}

/// Notifications not fanned out yet, oldest first.
pub fn undistributed(conn: &Connection, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
    outbox::pending(conn, limit)
}

/// Fans notifications out: their deliveries and the commit statuses they post, written with
/// the notifications marked as distributed, in one transaction.
pub fn distribute(
    tx: &Connection,
    notifications: &[String],
    deliveries: &[NewDelivery],
    statuses: &[CommitStatus],
    now: Timestamp,
) -> Result<(), StoreError> {
    for d in deliveries {
        tx.execute(
            "INSERT INTO deliveries (id, notification, endpoint, body, state, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
            params![d.id, d.notification, d.endpoint, d.body, now.0],
        )?;
    }
    for s in statuses {
        tx.execute(
            "INSERT INTO commit_statuses (sha, context, state, description, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (sha, context) DO UPDATE SET state = ?3, description = ?4, updated_at = ?5",
            params![s.sha, s.context, s.state.as_str(), s.description, now.0],
        )?;
    }
    for id in notifications {
        tx.execute(
            "UPDATE outbox SET delivered_at = ?2 WHERE id = ?1",
            params![id, now.0],
        )?;
    }
    Ok(())
}

/// The last commit status keel posted (or queued) for `(sha, context)`: (state, description).
pub fn commit_status(
    conn: &Connection,
    sha: &str,
    context: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT state, description FROM commit_statuses WHERE sha = ?1 AND context = ?2",
            params![sha, context],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The oldest pending delivery of `endpoint`: deliveries to one endpoint go in order.
pub fn next_pending(conn: &Connection, endpoint: &str) -> Result<Option<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries WHERE endpoint = ?1 AND state = 'pending' ORDER BY seq LIMIT 1"
    );
    conn.query_row(&sql, [endpoint], from_row)
        .optional()?
        .map(typed)
        .transpose()
}

/// Records one attempt of delivery `id`.
pub fn record_attempt(
    tx: &Connection,
    id: &str,
    attempt: &Attempt,
    now: Timestamp,
) -> Result<(), StoreError> {
    match attempt {
        Attempt::Delivered { status } => tx.execute(
            "UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, last_attempt_at = ?2,
                    finished_at = ?2, last_status = ?3, last_error = NULL WHERE id = ?1",
            params![id, now.0, status],
        )?,
        Attempt::Retry {
            next_at,
            status,
            error,
            counted,
        } => tx.execute(
            "UPDATE deliveries SET attempts = attempts + ?5, last_attempt_at = ?2, next_attempt_at = ?3,
                    last_status = ?4, last_error = ?6 WHERE id = ?1",
            params![id, now.0, next_at.0, status, i64::from(*counted), error],
        )?,
        Attempt::Dead { status, error } => tx.execute(
            "UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_attempt_at = ?2,
                    finished_at = ?2, last_status = ?3, last_error = ?4 WHERE id = ?1",
            params![id, now.0, status, error],
        )?,
    };
    Ok(())
}

/// Disables `endpoint` (it answered 410 Gone) and dead-letters what it still had pending.
pub fn disable(
    tx: &Connection,
    endpoint: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO endpoints (endpoint, disabled_at, reason) VALUES (?1, ?2, ?3)",
        params![endpoint, now.0, reason],
    )?;
    tx.execute(
        "UPDATE deliveries SET state = 'dead', finished_at = ?2, last_error = ?3
         WHERE endpoint = ?1 AND state = 'pending'",
        params![endpoint, now.0, format!("endpoint disabled: {reason}")],
    )?;
    Ok(())
}

/// Disabled endpoints: when, and why.
pub fn disabled(conn: &Connection) -> Result<BTreeMap<String, (Timestamp, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT endpoint, disabled_at, reason FROM endpoints")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, (Timestamp(r.get(1)?), r.get(2)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets delivered and dead deliveries, and distributed notifications, older than `before`.
pub fn prune(tx: &Connection, before: Timestamp) -> Result<u64, StoreError> {
    let deliveries = tx.execute(
        "DELETE FROM deliveries WHERE state <> 'pending' AND finished_at < ?1",
        [before.0],
    )?;
    tx.execute(
        "DELETE FROM outbox WHERE delivered_at < ?1
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.notification = outbox.id)",
        [before.0],
    )?;
    Ok(u64::try_from(deliveries).unwrap_or(0))
}

/// What `GET /v1/deliveries` filters on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<DeliveryState>,
    pub endpoint: Option<String>,
    /// Only deliveries older than this cursor (`seq`).
    pub before: Option<i64>,
    pub limit: u32,
}

/// Deliveries, newest first.
pub fn list(conn: &Connection, filter: &Filter) -> Result<Vec<Delivery>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deliveries
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR endpoint = ?2) AND (?3 IS NULL OR seq < ?3)
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![
            filter.state.map(|s| s.as_str()),
            filter.endpoint,
            filter.before,
            filter.limit
        ],
        from_row,
    )?;
    rows.map(|row| typed(row?)).collect()
}

/// Pending deliveries and when the oldest was created.
pub fn backlog(conn: &Connection) -> Result<(u64, Option<Timestamp>), StoreError> {
    let (count, oldest): (i64, Option<i64>) = conn.query_row(
        "SELECT count(*), min(created_at) FROM deliveries WHERE state = 'pending'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((u64::try_from(count).unwrap_or(0), oldest.map(Timestamp)))
}
