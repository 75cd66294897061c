//! The `quarantine` table: desired states (by `DesiredState::fingerprint`) that were rolled
//! back, and the revision that carried each, with the specs of that state
//! (`quarantined_specs`, copied when it was rolled back) so that an admin's retry can apply it
//! again. A quarantined state is not applied again — under any commit — until it changes or
//! an admin lifts it.

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::time::Timestamp;

use super::StoreError;

/// Quarantines `desired_hash`, rolled back as revision `revision`, keeping the specs the
/// deployments it declared have now (before the restore replaces them).
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
    tx.execute(
        "DELETE FROM quarantined_specs WHERE desired_hash = ?1",
        [desired_hash],
    )?;
    tx.execute(
        "INSERT INTO quarantined_specs (desired_hash, namespace, name, spec, spec_hash)
         SELECT ?1, namespace, name, spec, spec_hash FROM deployments WHERE in_revision = 1",
        [desired_hash],
    )?;
    Ok(())
}

/// Lifts the quarantine of `desired_hash` and returns the state it held (`None` when none
/// holds it); its specs are forgotten.
pub fn lift(
    tx: &Connection,
    desired_hash: &str,
    now: Timestamp,
) -> Result<Option<crate::model::desired::DesiredState>, StoreError> {
    let lifted = tx.execute(
        "UPDATE quarantine SET lifted_at = ?2 WHERE desired_hash = ?1 AND lifted_at IS NULL",
        params![desired_hash, now.0],
    )?;
    if lifted == 0 {
        return Ok(None);
    }
    let mut stmt =
        tx.prepare("SELECT spec, spec_hash FROM quarantined_specs WHERE desired_hash = ?1")?;
    let rows = stmt.query_map([desired_hash], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut state = crate::model::desired::DesiredState::default();
    for row in rows {
        let (spec, hash) = row?;
        let deployment = super::deployments::desired_from_canonical(spec, hash)?;
        state.deployments.insert(deployment.id.clone(), deployment);
    }
    tx.execute(
        "DELETE FROM quarantined_specs WHERE desired_hash = ?1",
        [desired_hash],
    )?;
    Ok(Some(state))
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
