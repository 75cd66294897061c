//! The reconciler's memory (`model::memory::Memory`) in SQLite: the deployment's status,
//! counters, backoff and reported failure live in `deployments`; per-instance facts (stopping,
//! counted, fired liveness checks) and the last observation live in `instances`. Saving a pass
//! replaces a deployment's instance rows with exactly the instances the pass saw.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection};

use crate::model::desired::DeploymentId;
use crate::model::memory::{CronMemory, Failure, InstanceMemory, Memory, Retry};
use crate::model::plan::{DecidedOn, Outcome};
use crate::model::stored::live_instances;
use crate::model::time::Timestamp;

use super::{parse_column, parse_json, to_json, StoreError};

/// Every deployment's memory.
pub fn load_all(conn: &Connection) -> Result<BTreeMap<DeploymentId, Memory>, StoreError> {
    load(conn, "1", &[])
}

/// One deployment's memory (`None` when it is not stored).
pub fn load_one(conn: &Connection, uuid: &str) -> Result<Option<Memory>, StoreError> {
    Ok(load(conn, "uuid = ?1", &[&uuid])?.into_values().next())
}

fn load(
    conn: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<BTreeMap<DeploymentId, Memory>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT namespace, name, status, status_since, restart_count, generation_since, retry, last_failure, uuid, cron
         FROM deployments WHERE {filter}"
    ))?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            DeploymentId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            (
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
            ),
            (
                r.get::<_, Option<String>>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
            ),
        ))
    })?;
    let mut out = BTreeMap::new();
    let mut uuids = Vec::new();
    for row in rows {
        let (
            id,
            (status, status_since, restart_count, generation_since),
            (retry, failure, uuid, cron),
        ) = row?;
        uuids.push(uuid);
        let mut memory = Memory::fresh(
            parse_column("deployments.status", status)?,
            Timestamp(status_since),
            restart_count,
            Timestamp(generation_since),
        );
        memory.retry = retry
            .map(|t| parse_json::<Retry>("deployments.retry", t))
            .transpose()?;
        memory.last_failure = failure
            .map(|t| parse_json::<Failure>("deployments.last_failure", t))
            .transpose()?;
        memory.cron = cron
            .map(|t| parse_json::<CronMemory>("deployments.cron", t))
            .transpose()?
            .unwrap_or_default();
        out.insert(id, memory);
    }
    let only = (uuids.len() == 1).then(|| uuids[0].as_str());
    load_instances(conn, only, &mut out)?;
    Ok(out)
}

/// Fills in the instance memories of the deployments in `out` (of `only`, when given).
fn load_instances(
    conn: &Connection,
    only: Option<&str>,
    out: &mut BTreeMap<DeploymentId, Memory>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT d.namespace, d.name, i.runtime_id, i.state, i.reason, i.stopping, i.counted, i.fired, i.green
         FROM instances i JOIN deployments d ON d.uuid = i.deployment
         WHERE ?1 IS NULL OR d.uuid = ?1",
    )?;
    let rows = stmt.query_map([only], |r| {
        Ok((
            DeploymentId::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            r.get::<_, String>(2)?,
            (r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?),
            (
                r.get::<_, bool>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
            ),
        ))
    })?;
    for row in rows {
        let (id, runtime_id, (state, reason), (stopping, counted, fired, green)) = row?;
        let Some(memory) = out.get_mut(&id) else {
            continue;
        };
        let instance = InstanceMemory {
            state: parse_column("instances.state", state)?,
            reason,
            stopping,
            counted,
            fired: parse_json::<BTreeSet<u32>>("instances.fired", fired)?,
            green: parse_json::<BTreeMap<u32, Timestamp>>("instances.green", green)?,
        };
        memory.instances.insert(runtime_id, instance);
    }
    Ok(())
}

/// Saves a deployment's counters, backoff, reported failure and instances (its status is
/// moved separately, with its event and notification).
pub fn save(
    conn: &Connection,
    uuid: &str,
    outcome: &Outcome,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (memory, views) = (&outcome.memory, &outcome.instances);
    conn.execute(
        "UPDATE deployments SET restart_count = ?2, retry = ?3, last_failure = ?4, updated_at = ?5,
                health = ?6, ready = ?7, desired = ?8, waiting_on = ?9, live = ?10, cron = ?11,
                next_run_at = ?12
         WHERE uuid = ?1",
        params![
            uuid,
            memory.restart_count,
            memory.retry.as_ref().map(to_json).transpose()?,
            memory.last_failure.as_ref().map(to_json).transpose()?,
            now.0,
            outcome.health.map(|h| h.as_str()),
            outcome.ready,
            outcome.desired,
            outcome.waiting_on.as_ref().map(to_json).transpose()?,
            live_instances(views),
            (memory.cron != CronMemory::default())
                .then(|| to_json(&memory.cron))
                .transpose()?,
            memory.cron.next_due.map(|t| t.0),
        ],
    )?;
    let seen: Vec<&str> = views.iter().map(|v| v.runtime_id.as_str()).collect();
    let existing: Vec<String> = {
        let mut stmt = conn.prepare("SELECT runtime_id FROM instances WHERE deployment = ?1")?;
        let rows = stmt.query_map([uuid], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for gone in existing.iter().filter(|id| !seen.contains(&id.as_str())) {
        super::instances::remove(conn, uuid, gone)?;
    }
    for view in views {
        let default = InstanceMemory::new(view.state);
        let m = memory.instances.get(&view.runtime_id).unwrap_or(&default);
        super::instances::upsert(conn, uuid, view, m, now)?;
    }
    Ok(())
}

/// Records the failure an action reported, for the next pass to turn into a status — onto the
/// row the action was decided on, while it still holds that generation (see `DecidedOn`).
pub fn record_failure(
    conn: &Connection,
    on: &DecidedOn,
    failure: &Failure,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET last_failure = ?4
         WHERE uuid = ?1 AND generation = ?2 AND in_revision = ?3",
        params![
            on.row,
            i64::try_from(on.generation).unwrap_or(i64::MAX),
            on.declared,
            to_json(failure)?
        ],
    )?;
    Ok(())
}
