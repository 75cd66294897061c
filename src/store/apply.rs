//! Applying a revision to the store, inside the caller's transaction: record the revision,
//! supersede the ones still open, and write each planned change (the caller's diff, see
//! `reconcile::diff`) with its event and outbox row. What a change does to a deployment's memory
//! is the model's rule (`Memory::new_generation`); this file only persists it. The writer
//! commits; a crash before the commit leaves the database exactly as it was.
//!
//! Invariants: `unchanged` deployments are not touched (no generation bump, no event, no
//! outbox row); applying the revision that is already the latest, with nothing to change, writes
//! nothing at all; an invalid revision is recorded but changes no deployment and supersedes
//! nothing (the previous revision is still the one converging).

use rusqlite::Connection;

use crate::model::desired::{DesiredDeployment, DesiredState};
use crate::model::diagnostic::Diagnostic;
use crate::model::diff::{Action, Plan, PlanItem};
use crate::model::event::{
    DeploymentOutcome, Event, EventKind, NotificationKind, RevisionChanged, StatusChanged,
};
use crate::model::status::{DeploymentStatus, RevisionState};
use crate::model::stored::{NewRevision, RevisionRecord, StoredDeployment};
use crate::model::time::Timestamp;

use super::revisions::Links;
use super::{deployments, events, memory, outbox, revisions, StoreError};

/// What applying a revision did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub revision: RevisionRecord,
    pub plan: Plan,
    /// True when the revision was already the latest and nothing changed: nothing was written.
    pub no_op: bool,
}

/// Applies a valid revision (see the module doc).
pub fn apply_revision(
    tx: &Connection,
    rev: &NewRevision,
    desired: &DesiredState,
    plan: Plan,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    let links = Links {
        desired_hash: Some(desired.fingerprint()),
        ..Links::default()
    };
    apply_linked(tx, rev, desired, plan, &links, now)
}

/// Applies a valid revision recorded with `links` (a restore names the revision it undoes).
pub fn apply_linked(
    tx: &Connection,
    rev: &NewRevision,
    desired: &DesiredState,
    plan: Plan,
    links: &Links,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    if let Some(latest) = revisions::latest(tx)? {
        let same = latest.source == rev.source && latest.id == rev.id;
        if same && latest.state != RevisionState::Invalid && !plan.has_changes() {
            return Ok(Applied {
                revision: latest,
                plan,
                no_op: true,
            });
        }
    }
    supersede_open(tx, &rev.id, now)?;
    let revision = revisions::insert_linked(tx, rev, RevisionState::Applying, &[], links, now)?;
    // First in the outbox (the revision comes before what it changes), but written after the
    // changes, so that its summary shows the deployments as this revision left them.
    let announced = outbox::reserve(tx, NotificationKind::RevisionStatusChanged, now)?;
    for item in &plan.items {
        if item.action == Action::Unchanged {
            continue;
        }
        let want = desired.deployments.get(&item.id);
        let have = deployments::get(tx, &item.id)?;
        apply_item(tx, item, want, have.as_ref(), &rev.id, now)?;
    }
    outbox::fill(tx, &announced, &revision_changed(tx, &revision, None)?)?;
    Ok(Applied {
        revision,
        plan,
        no_op: false,
    })
}

/// Records a revision rejected by validation, with its diagnostics.
pub fn record_invalid(
    tx: &Connection,
    rev: &NewRevision,
    diagnostics: &[Diagnostic],
    now: Timestamp,
) -> Result<RevisionRecord, StoreError> {
    let record = revisions::insert(tx, rev, RevisionState::Invalid, diagnostics, now)?;
    notify_revision(tx, &record, None, now)?;
    Ok(record)
}

/// Records a revision that repeats the desired state of rolled-back revision `identical_to`:
/// `quarantined`, changing nothing, announced (its commit gets `failure` at once). The same
/// commit arriving again (an agent restart) is not recorded twice.
pub fn record_quarantined(
    tx: &Connection,
    rev: &NewRevision,
    desired_hash: &str,
    identical_to: &str,
    now: Timestamp,
) -> Result<Option<RevisionRecord>, StoreError> {
    // The rolled-back commit itself, or a twin already recorded, arriving again (a restart
    // reads the source again): its commit has its status already.
    let known = revisions::find(tx, &rev.id)?.is_some_and(|r| {
        matches!(
            r.state,
            RevisionState::Quarantined | RevisionState::RolledBack
        )
    });
    if known || identical_to == rev.id {
        return Ok(None);
    }
    let links = Links {
        desired_hash: Some(desired_hash.to_owned()),
        identical_to: Some(identical_to.to_owned()),
        ..Links::default()
    };
    let record = revisions::insert_linked(tx, rev, RevisionState::Quarantined, &[], &links, now)?;
    notify_revision(tx, &record, None, now)?;
    let data = crate::model::event::Quarantined {
        source: record.source.clone(),
        revision: record.id.clone(),
        identical_to: identical_to.to_owned(),
    };
    outbox::enqueue(tx, NotificationKind::RevisionQuarantined, &data, now)?;
    Ok(Some(record))
}

fn supersede_open(tx: &Connection, newer: &str, now: Timestamp) -> Result<(), StoreError> {
    for open in revisions::open(tx)? {
        revisions::set_state(tx, open.seq, RevisionState::Superseded, Some(newer), now)?;
        let updated = revisions::get(tx, open.seq)?;
        notify_revision(tx, &updated, Some(open.state), now)?;
    }
    Ok(())
}

/// Queues `revision.status_changed` for `record`, with its deployments' outcomes (none for an
/// invalid revision, which changed nothing) or its first diagnostics.
pub fn notify_revision(
    tx: &Connection,
    record: &RevisionRecord,
    old_state: Option<RevisionState>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let data = revision_changed(tx, record, old_state)?;
    outbox::enqueue(tx, NotificationKind::RevisionStatusChanged, &data, now)
}

/// The `revision.status_changed` data of `record`.
fn revision_changed(
    tx: &Connection,
    record: &RevisionRecord,
    old_state: Option<RevisionState>,
) -> Result<RevisionChanged, StoreError> {
    let deployments = match record.state {
        RevisionState::Invalid | RevisionState::Quarantined => Vec::new(),
        RevisionState::Queued
        | RevisionState::Applying
        | RevisionState::Succeeded
        | RevisionState::Failed
        | RevisionState::Superseded
        | RevisionState::RolledBack => outcomes(tx, &record.id)?,
    };
    let data = RevisionChanged {
        source: record.source.clone(),
        revision: record.id.clone(),
        old_state,
        new_state: record.state,
        superseded_by: record.superseded_by.clone(),
        rolled_back_to: record.rolled_back_to.clone(),
        restores: record.restores.clone(),
        identical_to: record.identical_to.clone(),
        deployments,
        diagnostics: record.diagnostics.iter().take(5).cloned().collect(),
    };
    Ok(data)
}

/// The deployments revision `id` is made of — those the latest revision declares, and those
/// `id` changed — with their status and the message of their last status change. Reads only
/// those columns: no spec is parsed (this runs on every change of a revision's state).
pub fn outcomes(tx: &Connection, id: &str) -> Result<Vec<DeploymentOutcome>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT uuid, namespace, name, status, restart_count, in_revision FROM deployments
         WHERE in_revision = 1 OR revision = ?1 ORDER BY namespace, name",
    )?;
    let rows = stmt.query_map([id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, u32>(4)?,
            row.get::<_, bool>(5)?,
        ))
    })?;
    rows.map(|row| {
        let (uuid, namespace, name, status, restart_count, declared) = row?;
        Ok(DeploymentOutcome {
            namespace,
            name,
            status: super::parse_column("deployments.status", status)?,
            restart_count,
            declared,
            message: events::last_status_message(tx, &uuid)?,
        })
    })
    .collect()
}

fn apply_item(
    tx: &Connection,
    item: &PlanItem,
    want: Option<&DesiredDeployment>,
    have: Option<&StoredDeployment>,
    revision: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let change = match (&item.action, want, have) {
        (Action::Unchanged, _, _) => return Ok(()),
        (Action::Create, Some(want), None) => {
            let row = deployments::insert(tx, want, revision, now)?;
            Change::new(row.uuid, None, EventKind::Created, "revision_applied")
                .message(format!("created from revision {revision}"))
        }
        (Action::Create, Some(want), Some(have)) => {
            new_generation(tx, have, want, revision, now)?;
            Change::new(
                have.uuid.clone(),
                Some(have.status),
                EventKind::Created,
                "revision_applied",
            )
            .message(format!("declared again in revision {revision}"))
        }
        (Action::Update { changed }, Some(want), Some(have)) => {
            new_generation(tx, have, want, revision, now)?;
            Change::new(
                have.uuid.clone(),
                Some(have.status),
                EventKind::Updated,
                "revision_applied",
            )
            .message(format!(
                "spec changed in revision {revision}: {}",
                changed.join(", ")
            ))
        }
        (Action::Delete, _, Some(have)) => {
            deployments::prune(tx, &have.uuid, revision, now)?;
            Change::new(
                have.uuid.clone(),
                Some(have.status),
                EventKind::Deleted,
                "pruned",
            )
            .message(format!("removed from revision {revision}"))
        }
        // `diff` only plans creates and updates for desired deployments, and updates and
        // deletes for stored ones; any other pairing means the inputs disagree.
        (Action::Create | Action::Update { .. }, None, _)
        | (Action::Update { .. } | Action::Delete, _, None) => {
            return Err(StoreError::BadValue {
                column: "plan",
                value: item.id.to_string(),
                source: "plan does not match the stored state".into(),
            })
        }
    };
    record_change(tx, item, change, revision, now)
}

/// Stores `want` as the next generation of `have`, with the memory the model gives a new spec.
fn new_generation(
    tx: &Connection,
    have: &StoredDeployment,
    want: &DesiredDeployment,
    revision: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let memory = memory::load_one(tx, &have.uuid)?.ok_or(StoreError::UnknownDeployment {
        id: have.id.to_string(),
    })?;
    let next = memory.new_generation(now);
    let generation = have.generation.saturating_add(1);
    deployments::replace_spec(tx, &have.uuid, want, generation, &next, revision, now)
}

/// Moves a deployment's status, with its event and notification, unless it already has it.
pub fn change_status(
    tx: &Connection,
    id: &crate::model::desired::DeploymentId,
    status: DeploymentStatus,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<(), StoreError> {
    let have =
        deployments::get(tx, id)?.ok_or(StoreError::UnknownDeployment { id: id.to_string() })?;
    if have.status == status {
        return Ok(());
    }
    deployments::set_status(tx, &have.uuid, status, now)?;
    let item = PlanItem {
        id: id.clone(),
        action: Action::Unchanged,
    };
    let change = Change::new(
        have.uuid,
        Some(have.status),
        EventKind::StatusChanged,
        reason,
    )
    .message(message);
    record_change(tx, &item, change, &have.revision, now)
}

/// One written change of a deployment, before its event and notification.
struct Change {
    uuid: String,
    old_status: Option<DeploymentStatus>,
    kind: EventKind,
    reason: &'static str,
    message: String,
}

impl Change {
    fn new(
        uuid: String,
        old_status: Option<DeploymentStatus>,
        kind: EventKind,
        reason: &'static str,
    ) -> Self {
        Self {
            uuid,
            old_status,
            kind,
            reason,
            message: String::new(),
        }
    }

    fn message(self, message: String) -> Self {
        Self { message, ..self }
    }
}

/// Writes the event of a change and, when the status moved, its notification.
fn record_change(
    tx: &Connection,
    item: &PlanItem,
    change: Change,
    revision: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let event = Event {
        deployment: item.id.clone(),
        time: now,
        kind: change.kind,
        reason: change.reason.to_owned(),
        message: change.message.clone(),
        revision: Some(revision.to_owned()),
    };
    events::insert(tx, &change.uuid, &event)?;
    let row = deployments::get(tx, &item.id)?
        .ok_or(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
    if change.old_status != Some(row.status) {
        let data = StatusChanged {
            namespace: item.id.namespace.clone(),
            name: item.id.name.clone(),
            kind: row.spec.kind.as_str().to_owned(),
            runtime: row.spec.runtime.as_str().to_owned(),
            old_status: change.old_status,
            new_status: row.status,
            reason: change.reason.to_owned(),
            message: change.message,
            restart_count: row.restart_count,
            generation: row.generation,
            revision: Some(revision.to_owned()),
            health: row.health,
            ready: row.ready,
            desired: row.desired,
        };
        outbox::enqueue(tx, NotificationKind::DeploymentStatusChanged, &data, now)?;
    }
    Ok(())
}
