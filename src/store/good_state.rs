//! The desired state of the last good revision, kept so that a revision that fails at run
//! time can be undone whole — updated and deleted deployments restored, created ones removed.
//!
//! Inputs: the deployments' rows when a revision succeeds. Outputs: that state as a
//! `DesiredState`. Invariants: after `record`, the table holds exactly the spec of every
//! deployment the succeeded revision declares; it changes only when a revision succeeds, and
//! in proportion to what changed (rows whose hash is already there are not rewritten).

use rusqlite::Connection;

use crate::model::desired::DesiredState;

use super::{deployments, StoreError};

/// Makes the table the declared state now: revision `id` just succeeded.
pub fn record(tx: &Connection, id: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO good_mark (id, revision) VALUES (0, ?1)
         ON CONFLICT (id) DO UPDATE SET revision = ?1",
        [id],
    )?;
    tx.execute_batch(
        "DELETE FROM good_state WHERE NOT EXISTS (
             SELECT 1 FROM deployments d WHERE d.in_revision = 1
               AND d.namespace = good_state.namespace AND d.name = good_state.name
               AND d.spec_hash = good_state.spec_hash);
         INSERT INTO good_state (namespace, name, spec, spec_hash)
             SELECT namespace, name, spec, spec_hash FROM deployments d
             WHERE in_revision = 1 AND NOT EXISTS (
                 SELECT 1 FROM good_state g WHERE g.namespace = d.namespace AND g.name = d.name);",
    )?;
    Ok(())
}

/// The revision whose desired state the table holds (`None` before any succeeded — or before
/// this was kept, on a database from an older keel whose latest revision had not succeeded).
pub fn revision(conn: &Connection) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT revision FROM good_mark WHERE id = 0", [], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The last good revision's desired state (empty before any revision succeeded).
pub fn load(conn: &Connection) -> Result<DesiredState, StoreError> {
    let mut stmt = conn.prepare("SELECT spec, spec_hash FROM good_state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut state = DesiredState::default();
    for row in rows {
        let (spec, hash) = row?;
        let deployment = deployments::desired_from_canonical(spec, hash)?;
        state.deployments.insert(deployment.id.clone(), deployment);
    }
    Ok(state)
}
