//! The `events` table: what happened to each deployment, newest last, each with the revision
//! that caused it. Events carry the deployment's name, not only its row: they outlive a
//! purged row for a retention period (`expire`), and reading by name shows them.

use rusqlite::{params, Connection};

use crate::model::desired::DeploymentId;
use crate::model::event::Event;
use crate::model::time::Timestamp;

use super::{parse_column, StoreError};

/// Appends an event to the deployment with row id `uuid`.
pub fn insert(conn: &Connection, uuid: &str, event: &Event) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO events (deployment, namespace, name, time, kind, reason, message, revision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            uuid,
            event.deployment.namespace,
            event.deployment.name,
            event.time.0,
            event.kind.as_str(),
            event.reason,
            event.message,
            event.revision
        ],
    )?;
    Ok(())
}

/// The message of the last status change of the deployment with row id `uuid`.
pub fn last_status_message(conn: &Connection, uuid: &str) -> Result<Option<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT message FROM events WHERE deployment = ?1 AND kind = 'status_changed'
         ORDER BY seq DESC LIMIT 1",
    )?;
    let mut rows = stmt.query([uuid])?;
    Ok(match rows.next()? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

/// A deployment's events, newest first.
pub fn list(conn: &Connection, id: &DeploymentId, limit: u32) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT time, kind, reason, message, revision FROM events
         WHERE namespace = ?1 AND name = ?2 ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![id.namespace, id.name, limit], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        ))
    })?;
    rows.map(|row| {
        let (time, kind, reason, message, revision) = row?;
        Ok(Event {
            deployment: id.clone(),
            time: Timestamp(time),
            kind: parse_column("events.kind", kind)?,
            reason,
            message,
            revision,
        })
    })
    .collect()
}

/// A page of a deployment's events, newest first, each with its sequence number (the cursor:
/// pass the last one as `before` for the next page).
pub fn page(
    conn: &Connection,
    id: &DeploymentId,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<(i64, Event)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT seq, time, kind, reason, message, revision FROM events
         WHERE namespace = ?1 AND name = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![id.namespace, id.name, before.unwrap_or(i64::MAX), limit],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        },
    )?;
    rows.map(|row| {
        let (seq, time, kind, reason, message, revision) = row?;
        let event = Event {
            deployment: id.clone(),
            time: Timestamp(time),
            kind: parse_column("events.kind", kind)?,
            reason,
            message,
            revision,
        };
        Ok((seq, event))
    })
    .collect()
}

/// Forgets the events of deployments purged before `cutoff`, and those purges.
pub fn expire(conn: &Connection, cutoff: Timestamp) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM events WHERE deployment IN (SELECT uuid FROM purged WHERE purged_at < ?1)",
        [cutoff.0],
    )?;
    conn.execute("DELETE FROM purged WHERE purged_at < ?1", [cutoff.0])?;
    Ok(())
}
