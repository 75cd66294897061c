//! Rolling a revision that failed at run time back to the last good one, inside the pass's
//! transaction (the decision is `reconcile::rollback`'s): the failed revision is recorded
//! `rolled_back` (announced with its deployments as they failed) and its desired state
//! quarantined; the last good desired state is applied again as a new revision that names the
//! one it undoes, through the same diff and rollout as any revision — updated and deleted
//! deployments restored, created ones removed. Jobs are never run again by a rollback: a job
//! the restore would change or bring back keeps its row as it is.
//!
//! Invariants: one transaction, so an agent killed at any point either has not begun the
//! rollback or finds it recorded and converges to the restored state; a revision that is no
//! longer open (a newer one arrived) is left alone.

use rusqlite::Connection;

use crate::model::desired::DesiredState;
use crate::model::diff::{diff_with, Plan};
use crate::model::event::{NotificationKind, RolledBack};
use crate::model::status::RevisionState;
use crate::model::stored::{NewRevision, RevisionRecord};
use crate::model::time::Timestamp;

use super::revisions::Links;
use super::{apply, deployments, good_state, outbox, quarantine, revisions, StoreError};

/// Rolls revision `seq` back to `restore` (the last good revision's id); false when it did
/// not (no longer open, or the kept good state is not `restore`'s: it is then settled failed).
pub fn roll_back(
    tx: &Connection,
    seq: i64,
    restore: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let failed = revisions::get(tx, seq)?;
    if !failed.state.is_open() {
        return Ok(false);
    }
    if good_state::revision(tx)?.as_deref() != Some(restore) {
        super::pass::settle_revision(tx, seq, RevisionState::Failed, now)?;
        return Ok(false);
    }
    let good = good_state::load(tx)?;
    let (plan, not_undone) = restore_plan(tx, &good)?;
    record_rolled_back(tx, &failed, restore, not_undone, now)?;
    let revision = NewRevision {
        source: failed.source.clone(),
        id: restore.to_owned(),
        message: Some(format!("rollback of {}", failed.id)),
        author: None,
    };
    let links = Links {
        desired_hash: Some(good.fingerprint()),
        restores: Some(failed.id.clone()),
        ..Links::default()
    };
    apply::apply_linked(tx, &revision, &good, plan, &links, now)?;
    Ok(true)
}

/// Marks `failed` rolled back, announces it (its deployments as they failed) and quarantines
/// its desired state.
fn record_rolled_back(
    tx: &Connection,
    failed: &RevisionRecord,
    restore: &str,
    not_undone: Vec<String>,
    now: Timestamp,
) -> Result<(), StoreError> {
    revisions::set_rolled_back(tx, failed.seq, restore, now)?;
    let after = revisions::get(tx, failed.seq)?;
    apply::notify_revision(tx, &after, Some(failed.state), now)?;
    let data = RolledBack {
        source: failed.source.clone(),
        revision: failed.id.clone(),
        restored: restore.to_owned(),
        deployments: apply::outcomes(tx, &failed.id)?,
        not_undone,
    };
    outbox::enqueue(tx, NotificationKind::RevisionRolledBack, &data, now)?;
    if let Some(hash) = &failed.desired_hash {
        quarantine::add(tx, hash, &failed.id, now)?;
    }
    record_events(tx, failed, restore, now)
}

/// An event on each deployment the failed revision changed: why what it runs is about to
/// change again.
fn record_events(
    tx: &Connection,
    failed: &RevisionRecord,
    restore: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    for d in deployments::summaries(tx, Some(&failed.id))? {
        let Some(row) = deployments::get(tx, &d.id)? else {
            continue;
        };
        let event = crate::model::event::Event {
            deployment: d.id.clone(),
            time: now,
            kind: crate::model::event::EventKind::RolledBack,
            reason: "rolled_back".to_owned(),
            message: format!(
                "revision {} failed at run time ({}: {}); returning to revision {restore}",
                failed.id, d.id, d.status
            ),
            revision: Some(failed.id.clone()),
        };
        super::events::insert(tx, &row.uuid, &event)?;
    }
    Ok(())
}

/// What restoring `good` changes, with the jobs it must not run again left out (and named).
fn restore_plan(tx: &Connection, good: &DesiredState) -> Result<(Plan, Vec<String>), StoreError> {
    let stored = deployments::summaries(tx, None)?;
    let plan = diff_with(good, &stored, |id| deployments::canonical(tx, id))?;
    Ok(plan.without_reruns(good))
}

/// What an admin's retry of a quarantined desired state did.
#[derive(Debug, Clone, PartialEq)]
pub enum Retried {
    /// No revision has that id.
    Unknown,
    /// It is neither rolled back nor quarantined (its state), or its quarantine was lifted.
    NotQuarantined(RevisionState),
    /// A newer revision from the source was applied since: applying the old state over it
    /// would last only until the source is read again. Push a commit instead.
    Outdated(String),
    /// The quarantine is lifted and the state applied again, as this revision.
    Applied(Box<RevisionRecord>),
}

/// Lifts the quarantine of revision `sha`'s desired state (`sha` rolled back, or quarantined
/// as a twin of one that was) and applies that state again, as a revision with `sha`'s id
/// whose message names who asked (`by`).
pub fn retry(tx: &Connection, sha: &str, by: &str, now: Timestamp) -> Result<Retried, StoreError> {
    let Some(asked) = revisions::find(tx, sha)? else {
        return Ok(Retried::Unknown);
    };
    let rolled_back = match asked.state {
        RevisionState::RolledBack => Some(asked.clone()),
        RevisionState::Quarantined => match asked.identical_to.as_deref() {
            Some(id) => revisions::find(tx, id)?,
            None => None,
        },
        RevisionState::Queued
        | RevisionState::Applying
        | RevisionState::Succeeded
        | RevisionState::Failed
        | RevisionState::Invalid
        | RevisionState::Superseded => None,
    };
    if let Some(newer) = match &rolled_back {
        Some(r) => revisions::applied_after(tx, r.seq)?,
        None => None,
    } {
        return Ok(Retried::Outdated(newer));
    }
    let hash = rolled_back.and_then(|r| r.desired_hash);
    let Some(state) = hash
        .as_deref()
        .map(|h| quarantine::lift(tx, h, now))
        .transpose()?
        .flatten()
    else {
        return Ok(Retried::NotQuarantined(asked.state));
    };
    let stored = deployments::summaries(tx, None)?;
    let plan = diff_with(&state, &stored, |id| deployments::canonical(tx, id))?;
    let revision = NewRevision {
        source: asked.source.clone(),
        id: asked.id.clone(),
        message: Some(format!("retried by {by}")),
        author: asked.author.clone(),
    };
    let links = Links {
        desired_hash: hash,
        ..Links::default()
    };
    let applied = apply::apply_linked(tx, &revision, &state, plan, &links, now)?;
    Ok(Retried::Applied(Box::new(applied.revision)))
}
