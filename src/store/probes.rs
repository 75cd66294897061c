//! The `probe_results` table: recent health-check runs per (deployment, instance, check), with
//! bounded retention — only the newest `RETAINED` runs of each check are kept, so a long-lived
//! agent's database does not grow with uptime.

use rusqlite::{params, Connection};

use crate::model::stored::ProbeResult;
use crate::model::time::Timestamp;

use super::StoreError;

/// Runs kept per (deployment, instance, check).
pub const RETAINED: u32 = 50;

/// Records one run and trims that check's history to `RETAINED`.
pub fn record(conn: &Connection, uuid: &str, r: &ProbeResult) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO probe_results (deployment, instance, check_index, ok, latency_ms, message, time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            uuid,
            r.instance,
            r.check_index,
            r.ok,
            r.latency_ms.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
            r.message,
            r.time.0
        ],
    )?;
    conn.execute(
        "DELETE FROM probe_results WHERE deployment = ?1 AND instance = ?2 AND check_index = ?3 AND seq <= (
             SELECT seq FROM probe_results WHERE deployment = ?1 AND instance = ?2 AND check_index = ?3
             ORDER BY seq DESC LIMIT 1 OFFSET ?4)",
        params![uuid, r.instance, r.check_index, RETAINED],
    )?;
    Ok(())
}

/// The newest runs of deployment `uuid`'s checks, newest first.
pub fn recent(conn: &Connection, uuid: &str, limit: u32) -> Result<Vec<ProbeResult>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT instance, check_index, ok, latency_ms, message, time FROM probe_results
         WHERE deployment = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![uuid, limit], |row| {
        Ok(ProbeResult {
            instance: row.get(0)?,
            check_index: row.get(1)?,
            ok: row.get(2)?,
            latency_ms: row
                .get::<_, Option<i64>>(3)?
                .map(|l| u64::try_from(l).unwrap_or(0)),
            message: row.get(4)?,
            time: Timestamp(row.get(5)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
