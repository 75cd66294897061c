//! The `deployments` table: one row per (namespace, name) keel has ever created, with the
//! canonical spec document, its hash, generation, status and restart counter.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::model::desired::{template_hash, DeploymentId, DesiredDeployment, SpecHash};
use crate::model::manifest::{ConfigData, DeploymentDecl};
use crate::model::memory::Memory;
use crate::model::status::DeploymentStatus;
use crate::model::stored::{StoredDeployment, StoredState, StoredSummary};
use crate::model::time::Timestamp;

use super::{parse_column, parse_json, StoreError};

const COLUMNS: &str = "uuid, namespace, name, spec, spec_hash, generation, status, status_since, \
                                              restart_count, revision, in_revision, created_at, updated_at, health, ready, desired, waiting_on, \
                                              template_hash, live, next_run_at";

/// The canonical document as stored (see `model::desired::canonical_json`).
#[derive(serde::Deserialize)]
struct Canonical {
    spec: DeploymentDecl,
    mounted_configs: BTreeMap<String, ConfigData>,
}

/// A row before its enum and JSON columns are checked.
struct RawDeployment {
    uuid: String,
    namespace: String,
    name: String,
    spec: String,
    spec_hash: String,
    generation: i64,
    status: String,
    status_since: i64,
    restart_count: i64,
    revision: String,
    in_revision: bool,
    created_at: i64,
    updated_at: i64,
    health: Option<String>,
    ready: u32,
    desired: u32,
    waiting_on: Option<String>,
    template_hash: String,
    live: u32,
    next_run_at: Option<i64>,
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<RawDeployment> {
    Ok(RawDeployment {
        uuid: row.get(0)?,
        namespace: row.get(1)?,
        name: row.get(2)?,
        spec: row.get(3)?,
        spec_hash: row.get(4)?,
        generation: row.get(5)?,
        status: row.get(6)?,
        status_since: row.get(7)?,
        restart_count: row.get(8)?,
        revision: row.get(9)?,
        in_revision: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        health: row.get(13)?,
        ready: row.get(14)?,
        desired: row.get(15)?,
        waiting_on: row.get(16)?,
        template_hash: row.get(17)?,
        live: row.get(18)?,
        next_run_at: row.get(19)?,
    })
}

impl RawDeployment {
    fn into_domain(self) -> Result<StoredDeployment, StoreError> {
        let canonical: Canonical = parse_json("deployments.spec", self.spec)?;
        Ok(StoredDeployment {
            uuid: self.uuid,
            id: DeploymentId::new(self.namespace, self.name),
            spec: canonical.spec,
            mounted_configs: canonical.mounted_configs,
            spec_hash: SpecHash::from_hex(self.spec_hash),
            template: self.template_hash,
            generation: u64::try_from(self.generation).unwrap_or(0),
            status: parse_column("deployments.status", self.status)?,
            status_since: Timestamp(self.status_since),
            restart_count: u32::try_from(self.restart_count).unwrap_or(u32::MAX),
            revision: self.revision,
            in_revision: self.in_revision,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            next_run_at: self.next_run_at.map(Timestamp),
            health: self
                .health
                .map(|h| parse_column("deployments.health", h))
                .transpose()?,
            ready: self.ready,
            desired: self.desired,
            live: self.live,
            waiting_on: self
                .waiting_on
                .map(|w| parse_json("deployments.waiting_on", w))
                .transpose()?,
        })
    }
}

/// A stored canonical document read back as a desired deployment (its origin is unknown: it
/// was declared by an earlier revision).
pub fn desired_from_canonical(
    spec: String,
    spec_hash: String,
) -> Result<crate::model::desired::DesiredDeployment, StoreError> {
    let canonical: Canonical = parse_json("good_state.spec", spec)?;
    Ok(crate::model::desired::DesiredDeployment {
        id: DeploymentId::new(&canonical.spec.namespace, &canonical.spec.name),
        spec: canonical.spec,
        mounted_configs: canonical.mounted_configs,
        spec_hash: crate::model::desired::SpecHash::from_hex(spec_hash),
        origin: crate::model::desired::Origin {
            file: String::new(),
            line: 0,
        },
    })
}

/// Every deployment's row id and spec, reading only `uuid` and `spec` (what every schema
/// version has).
#[allow(clippy::type_complexity)]
pub fn specs(
    conn: &Connection,
) -> Result<Vec<(String, DeploymentDecl, BTreeMap<String, ConfigData>)>, StoreError> {
    let mut stmt = conn.prepare("SELECT uuid, spec FROM deployments")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (uuid, spec) = row?;
        let canonical: Canonical = parse_json("deployments.spec", spec)?;
        Ok((uuid, canonical.spec, canonical.mounted_configs))
    })
    .collect()
}

/// Every stored deployment.
pub fn load_all(conn: &Connection) -> Result<StoredState, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM deployments ORDER BY namespace, name"
    ))?;
    let mut state = StoredState::default();
    for row in stmt.query_map([], from_row)? {
        let deployment = row?.into_domain()?;
        state.deployments.insert(deployment.id.clone(), deployment);
    }
    Ok(state)
}

/// Every deployment's row without its spec (no spec document is parsed), by (namespace, name);
/// only those the revision `of` last changed, when given.
pub fn summaries(conn: &Connection, of: Option<&str>) -> Result<Vec<StoredSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT namespace, name, kind, runtime, spec_hash, generation, status, restart_count,
                revision, in_revision, created_at, health, ready, desired, live, image, next_run_at
         FROM deployments WHERE ?1 IS NULL OR revision = ?1 ORDER BY namespace, name",
    )?;
    let rows = stmt.query_map([of], |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            (r.get::<_, String>(2)?, r.get::<_, String>(3)?),
            (r.get::<_, String>(4)?, r.get::<_, i64>(5)?),
            (r.get::<_, String>(6)?, r.get::<_, i64>(7)?),
            (r.get::<_, String>(8)?, r.get::<_, bool>(9)?),
            (r.get::<_, i64>(10)?, r.get::<_, Option<String>>(11)?),
            (
                r.get::<_, u32>(12)?,
                r.get::<_, u32>(13)?,
                r.get::<_, u32>(14)?,
            ),
            (
                r.get::<_, Option<String>>(15)?,
                r.get::<_, Option<i64>>(16)?,
            ),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            (namespace, name),
            (kind, runtime),
            (spec_hash, generation),
            (status, restart_count),
            (revision, in_revision),
            (created_at, health),
            (ready, desired, live),
            (image, next_run_at),
        ) = row?;
        out.push(StoredSummary {
            id: DeploymentId::new(namespace, name),
            kind: parse_column("deployments.kind", kind)?,
            runtime: parse_column("deployments.runtime", runtime)?,
            spec_hash: SpecHash::from_hex(spec_hash),
            generation: u64::try_from(generation).unwrap_or(0),
            status: parse_column("deployments.status", status)?,
            restart_count: u32::try_from(restart_count).unwrap_or(u32::MAX),
            revision,
            in_revision,
            created_at: Timestamp(created_at),
            health: health
                .map(|h| parse_column("deployments.health", h))
                .transpose()?,
            ready,
            desired,
            live,
            image,
            next_run_at: next_run_at.map(Timestamp),
        });
    }
    Ok(out)
}

/// The canonical document (`model::desired::canonical_json`) a deployment was stored with, as
/// JSON, without building its spec.
pub fn canonical(
    conn: &Connection,
    id: &DeploymentId,
) -> Result<Option<serde_json::Value>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT spec FROM deployments WHERE namespace = ?1 AND name = ?2")?;
    stmt.query_row([&id.namespace, &id.name], |r| r.get::<_, String>(0))
        .optional()?
        .map(|text| parse_json("deployments.spec", text))
        .transpose()
}

/// The stored row of one deployment.
pub fn get(conn: &Connection, id: &DeploymentId) -> Result<Option<StoredDeployment>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM deployments WHERE namespace = ?1 AND name = ?2");
    conn.query_row(&sql, [&id.namespace, &id.name], from_row)
        .optional()?
        .map(RawDeployment::into_domain)
        .transpose()
}

/// The stored row of one deployment, by its row id.
pub fn get_by_uuid(conn: &Connection, uuid: &str) -> Result<Option<StoredDeployment>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deployments WHERE uuid = ?1"
    ))?;
    stmt.query_row([uuid], from_row)
        .optional()?
        .map(RawDeployment::into_domain)
        .transpose()
}

/// Inserts a new deployment at generation 1, `pending`, with its template hash.
pub fn insert(
    conn: &Connection,
    want: &DesiredDeployment,
    revision: &str,
    now: Timestamp,
) -> Result<StoredDeployment, StoreError> {
    let uuid = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO deployments (uuid, namespace, name, kind, runtime, spec, spec_hash, generation,
                                  status, status_since, restart_count, revision, in_revision, created_at, updated_at, generation_since,
                                  template_hash, image)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, 'pending', ?8, 0, ?9, 1, ?8, ?8, ?8, ?10, ?11)",
        params![
            uuid,
            want.id.namespace,
            want.id.name,
            want.spec.kind.as_str(),
            want.spec.runtime.as_str(),
            want.canonical().to_string(),
            want.spec_hash.as_str(),
            now.0,
            revision,
            template_hash(&want.spec, &want.mounted_configs),
            want.spec.image,
        ],
    )?;
    get(conn, &want.id)?.ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))
}

/// Stores a new spec at `generation`, with the memory the model decided for it
/// (`Memory::new_generation`): the store only persists the rule, it does not write it.
#[allow(clippy::too_many_arguments)]
pub fn replace_spec(
    conn: &Connection,
    uuid: &str,
    want: &DesiredDeployment,
    generation: u64,
    memory: &Memory,
    revision: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET kind = ?2, runtime = ?3, spec = ?4, spec_hash = ?5, template_hash = ?6,
                generation = ?7, revision = ?8, in_revision = 1, updated_at = ?9,
                status = ?10, status_since = ?11, restart_count = ?12, generation_since = ?13,
                retry = ?14, last_failure = ?15, image = ?16
         WHERE uuid = ?1",
        params![
            uuid,
            want.spec.kind.as_str(),
            want.spec.runtime.as_str(),
            want.canonical().to_string(),
            want.spec_hash.as_str(),
            template_hash(&want.spec, &want.mounted_configs),
            i64::try_from(generation).unwrap_or(i64::MAX),
            revision,
            now.0,
            memory.status.as_str(),
            memory.status_since.0,
            memory.restart_count,
            memory.generation_since.0,
            memory.retry.as_ref().map(super::to_json).transpose()?,
            memory.last_failure.as_ref().map(super::to_json).transpose()?,
            want.spec.image,
        ],
    )?;
    Ok(())
}

/// Prunes a deployment that left the revision: `deleted`, no longer in the revision.
pub fn prune(
    conn: &Connection,
    uuid: &str,
    revision: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET status = ?2, status_since = ?3, in_revision = 0, revision = ?4, updated_at = ?3
         WHERE uuid = ?1",
        params![uuid, DeploymentStatus::Deleted.as_str(), now.0, revision],
    )?;
    Ok(())
}

/// Purges a deployment's row (with its instances, probe results and restart history); its
/// events stay, remembered as purged at `now` until they expire.
pub fn purge(conn: &Connection, uuid: &str, now: Timestamp) -> Result<(), StoreError> {
    conn.execute("DELETE FROM deployments WHERE uuid = ?1", [uuid])?;
    conn.execute(
        "INSERT OR REPLACE INTO purged (uuid, purged_at) VALUES (?1, ?2)",
        params![uuid, now.0],
    )?;
    Ok(())
}

/// Sets the status (and when it changed).
pub fn set_status(
    conn: &Connection,
    uuid: &str,
    status: DeploymentStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET status = ?2, status_since = ?3, updated_at = ?3 WHERE uuid = ?1 AND status <> ?2",
        params![uuid, status.as_str(), now.0],
    )?;
    Ok(())
}
