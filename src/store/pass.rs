//! Persisting one reconciler pass in one transaction: for every deployment whose outcome
//! changed, its status (with event and notification), memory, instances, the pass's events
//! (with their notifications), restart history and a cron job's runs (a finished one with its
//! `job.run_finished` notification); the latest revision's state; and the purge of
//! deployments that are gone.

use rusqlite::Connection;

use crate::model::desired::DeploymentId;
use crate::model::event::{DeploymentNotice, Event, EventKind, NotificationKind};
use crate::model::plan::{DecidedOn, Outcome};
use crate::model::run::RunFinished;
use crate::model::status::RevisionState;
use crate::model::time::Timestamp;

use super::{apply, deployments, events, instances, memory, outbox, revisions, runs, StoreError};

/// Writes the outcomes of a pass, each only onto the row it was decided on (see
/// `DecidedOn`); returns the deployments whose outcome was stale and left unwritten.
pub fn record(
    tx: &Connection,
    outcomes: &[(&DeploymentId, &Outcome)],
    now: Timestamp,
) -> Result<Vec<DeploymentId>, StoreError> {
    let mut stale = Vec::new();
    for (id, outcome) in outcomes {
        let Some(row) = still(tx, id, &outcome.decided_on)? else {
            stale.push((*id).clone());
            continue;
        };
        // Health and counts first, so that the status change's notification carries them.
        memory::save(tx, &row.uuid, outcome, now)?;
        runs::record(tx, &row.uuid, &outcome.runs)?;
        for run in outcome.runs.iter().filter(|r| r.outcome.is_finished()) {
            let data = RunFinished {
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                run: run.run,
                outcome: run.outcome,
                exit_code: run.exit_code,
                duration_ms: run.duration_ms(),
                due_at: run.due_at.to_rfc3339(),
                started_at: run.started_at.map(|t| t.to_rfc3339()),
                finished_at: run.finished_at.map(|t| t.to_rfc3339()),
                reason: run.reason.clone(),
                generation: run.generation,
                revision: row.revision.clone(),
            };
            outbox::enqueue(tx, NotificationKind::JobRunFinished, &data, now)?;
        }
        if let Some(change) = &outcome.status_change {
            apply::change_status(
                tx,
                id,
                change.to,
                change.reason,
                change.message.clone(),
                now,
            )?;
        }
        for planned in &outcome.events {
            let event = Event {
                deployment: (*id).clone(),
                time: now,
                kind: planned.kind,
                reason: planned.kind.as_str().to_owned(),
                message: planned.message.clone(),
                revision: Some(row.revision.clone()),
            };
            events::insert(tx, &row.uuid, &event)?;
            if planned.kind == EventKind::InstanceDied {
                instances::record_restart_history(
                    tx,
                    &row.uuid,
                    row.generation,
                    &planned.message,
                    now,
                )?;
            }
            if let Some(kind) = planned.notify {
                let data = DeploymentNotice {
                    namespace: id.namespace.clone(),
                    name: id.name.clone(),
                    message: planned.message.clone(),
                    generation: row.generation,
                    revision: row.revision.clone(),
                };
                outbox::enqueue(tx, kind, &data, now)?;
            }
        }
    }
    Ok(stale)
}

/// How long the events of a purged deployment stay readable.
pub const EVENT_RETENTION: crate::model::units::Duration =
    crate::model::units::Duration::from_secs(7 * 24 * 3600);

/// Purges deployments the pass found gone (deleted, no instance left) — unless a revision
/// changed the row since (declared it again, say) — and forgets the events of those purged
/// longer than `EVENT_RETENTION` ago. Returns those purged.
pub fn purge(
    tx: &Connection,
    gone: &[(DeploymentId, DecidedOn)],
    now: Timestamp,
) -> Result<Vec<DeploymentId>, StoreError> {
    let mut purged = Vec::new();
    for (id, decided_on) in gone {
        if let Some(row) = still(tx, id, decided_on)? {
            deployments::purge(tx, &row.uuid, now)?;
            purged.push(id.clone());
        }
    }
    events::expire(tx, now.minus(EVENT_RETENTION))?;
    Ok(purged)
}

/// The deployments among `decided` whose row is no longer the one decided on.
pub fn stale(
    tx: &Connection,
    decided: &[(DeploymentId, DecidedOn)],
) -> Result<Vec<DeploymentId>, StoreError> {
    let mut stale = Vec::new();
    for (id, decided_on) in decided {
        if still(tx, id, decided_on)?.is_none() {
            stale.push(id.clone());
        }
    }
    Ok(stale)
}

/// The row of `id`, when it is still the one `decided_on` names.
fn still(
    tx: &Connection,
    id: &DeploymentId,
    decided_on: &DecidedOn,
) -> Result<Option<crate::model::stored::StoredDeployment>, StoreError> {
    Ok(deployments::get(tx, id)?.filter(|row| decided_on.holds_for(row)))
}

/// Moves the open revision `seq` to `state` (and notifies), if it is still open.
pub fn settle_revision(
    tx: &Connection,
    seq: i64,
    state: RevisionState,
    now: Timestamp,
) -> Result<(), StoreError> {
    let before = revisions::get(tx, seq)?;
    if !before.state.is_open() || before.state == state {
        return Ok(());
    }
    revisions::set_state(tx, seq, state, None, now)?;
    if state == RevisionState::Succeeded {
        super::good_state::record(tx, &before.id)?;
    }
    let after = revisions::get(tx, seq)?;
    apply::notify_revision(tx, &after, Some(before.state), now)
}
