//! The `instances` table (one row per container or VM of a deployment) and the `restarts`
//! table (the restart history behind `restart_count`, persisted so counters survive a
//! restart of the agent).

use rusqlite::{params, Connection};

use crate::model::desired::DeploymentId;
use crate::model::memory::InstanceMemory;
use crate::model::status::InstanceState;
use crate::model::stored::StoredInstance;
use crate::model::time::Timestamp;

use super::{parse_column, StoreError};

/// Inserts or replaces one instance of deployment `uuid`: its last observation and what the
/// reconciler remembers about it.
pub fn upsert(
    conn: &Connection,
    uuid: &str,
    i: &StoredInstance,
    m: &InstanceMemory,
    now: Timestamp,
) -> Result<(), StoreError> {
    let json = |column, value: Result<String, serde_json::Error>| {
        value.map_err(|e| StoreError::BadValue {
            column,
            value: String::new(),
            source: Box::new(e),
        })
    };
    let fired = json("instances.fired", serde_json::to_string(&m.fired))?;
    let green = json("instances.green", serde_json::to_string(&m.green))?;
    conn.execute(
        "INSERT INTO instances (deployment, runtime_id, ordinal, generation, state, reason, ip, started_at,
                               exit_code, oom_killed, stopping, counted, fired, updated_at, green)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (deployment, runtime_id) DO UPDATE SET
             ordinal = excluded.ordinal, generation = excluded.generation, state = excluded.state,
             reason = excluded.reason, ip = excluded.ip, started_at = excluded.started_at,
             exit_code = excluded.exit_code, oom_killed = excluded.oom_killed, stopping = excluded.stopping,
             counted = excluded.counted, fired = excluded.fired, updated_at = excluded.updated_at,
             green = excluded.green",
        params![
            uuid,
            i.runtime_id,
            i.ordinal,
            i64::try_from(i.generation).unwrap_or(i64::MAX),
            i.state.as_str(),
            i.reason,
            i.ip,
            i.started_at.map(|t| t.0),
            i.exit_code,
            i.oom_killed,
            m.stopping,
            m.counted,
            fired,
            now.0,
            green
        ],
    )?;
    Ok(())
}

/// How many instances (of every deployment) are in each state.
pub fn count_by_state(
    conn: &Connection,
) -> Result<std::collections::BTreeMap<InstanceState, u64>, StoreError> {
    let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM instances GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
    let mut out = std::collections::BTreeMap::new();
    for row in rows {
        let (state, n) = row?;
        out.insert(parse_column("instances.state", state)?, n);
    }
    Ok(out)
}

/// The addresses of every deployment's live instances (present, not exited), oldest
/// generation first.
pub fn addresses(
    conn: &Connection,
    of: Option<&str>,
) -> Result<std::collections::HashMap<DeploymentId, Vec<String>>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.namespace, d.name, i.ip FROM instances i JOIN deployments d ON d.uuid = i.deployment
         WHERE i.ip IS NOT NULL AND i.exit_code IS NULL AND (?1 IS NULL OR d.revision = ?1)
         ORDER BY i.generation, i.ordinal",
    )?;
    let rows = stmt.query_map([of], |r| {
        Ok((
            DeploymentId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = std::collections::HashMap::<DeploymentId, Vec<String>>::new();
    for row in rows {
        let (id, ip) = row?;
        out.entry(id).or_default().push(ip);
    }
    Ok(out)
}

/// Forgets an instance that no longer exists.
pub fn remove(conn: &Connection, uuid: &str, runtime_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM instances WHERE deployment = ?1 AND runtime_id = ?2",
        params![uuid, runtime_id],
    )?;
    Ok(())
}

/// The instances of deployment `uuid`, by generation then ordinal.
pub fn list(conn: &Connection, uuid: &str) -> Result<Vec<StoredInstance>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT runtime_id, ordinal, generation, state, reason, ip, started_at, exit_code, oom_killed
         FROM instances WHERE deployment = ?1 ORDER BY generation, ordinal",
    )?;
    let rows = stmt.query_map([uuid], |row| {
        Ok((
            (
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ),
            (
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<i64>>(6)?,
            ),
            (row.get::<_, Option<i64>>(7)?, row.get::<_, bool>(8)?),
        ))
    })?;
    rows.map(|row| {
        let (
            (runtime_id, ordinal, generation, state),
            (reason, ip, started_at),
            (exit_code, oom_killed),
        ) = row?;
        Ok(StoredInstance {
            runtime_id,
            ordinal,
            generation: u64::try_from(generation).unwrap_or(0),
            state: parse_column("instances.state", state)?,
            reason,
            ip,
            started_at: started_at.map(Timestamp),
            exit_code,
            oom_killed,
        })
    })
    .collect()
}

/// Appends one entry to the restart history of deployment `uuid` (the counter itself is the
/// reconciler's memory).
pub fn record_restart_history(
    conn: &Connection,
    uuid: &str,
    generation: u64,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO restarts (deployment, generation, time, reason) VALUES (?1, ?2, ?3, ?4)",
        params![
            uuid,
            i64::try_from(generation).unwrap_or(i64::MAX),
            now.0,
            reason
        ],
    )?;
    Ok(())
}

/// The restart history of deployment `uuid`, newest first: (time, generation, reason).
pub fn restarts(
    conn: &Connection,
    uuid: &str,
    limit: u32,
) -> Result<Vec<(Timestamp, u64, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT time, generation, reason FROM restarts WHERE deployment = ?1 ORDER BY seq DESC LIMIT ?2")?;
    let rows = stmt.query_map(params![uuid, limit], |row| {
        Ok((
            Timestamp(row.get(0)?),
            u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
            row.get(2)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
