//! Ingest: what a source reports → the store → a wake-up of the controller. A snapshot is
//! loaded (`manifest::load`), diffed against the store (`reconcile::diff`, on a reader), and
//! handed to the store whole — applied when every file is valid, recorded `invalid` with all
//! diagnostics (changing nothing) when not. The source status the API shows is kept here.
//!
//! Inputs: `SourceEvent`s from one source; the store; a clock (injected, for tests).
//! Outputs: revision rows, deployment changes, a controller wake-up per applied revision.
//! Invariant: one ingest runs per store, so the diff computed on a reader is the diff of the
//! state the writer applies it to (the controller writes statuses, never specs).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use crate::api::SourceStatus;
use crate::clock::Clock;
use crate::manifest::{self, Limits};
use crate::metrics::Metrics;
use crate::model::desired::DesiredState;
use crate::model::stored::NewRevision;
use crate::model::time::Timestamp;
use crate::reconcile::diff::diff_with;
use crate::source::{Snapshot, SourceError, SourceEvent};
use crate::store::{Applied, Store, StoreError};

/// Diffs `desired` against what `store` holds and applies the revision with that diff. The
/// diff reads the rows' hashes and only the specs of the deployments the revision updates.
pub fn apply_revision(
    store: &Store,
    revision: NewRevision,
    desired: DesiredState,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    let reader = store.reader()?;
    let stored = reader.summaries()?;
    let plan = diff_with(&desired, &stored, |id| reader.canonical(id))?;
    drop((stored, reader));
    store.apply_revision(revision, desired, plan, now)
}

/// What became of one snapshot.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    /// Valid and recorded (`no_op` when it was the latest revision already, unchanged).
    Applied(Box<Applied>),
    /// Rejected with diagnostics (`recorded` is false when it was the latest revision already).
    Invalid { errors: usize, recorded: bool },
    /// Not applied: its desired state is that of rolled-back revision `identical_to`.
    Quarantined { identical_to: String },
}

/// Loads a snapshot and writes it to the store: applied when valid, recorded `invalid` (with
/// every diagnostic, changing nothing) when not.
pub fn ingest(
    store: &Store,
    snapshot: Snapshot,
    limits: &Limits,
    now: Timestamp,
) -> Result<Ingested, StoreError> {
    match manifest::load(&snapshot.entries, limits) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!(revision = %snapshot.revision.id, "{warning}");
            }
            let hash = loaded.state.fingerprint();
            if let Some(identical_to) = store.reader()?.quarantined(&hash)? {
                tracing::warn!(revision = %snapshot.revision.id, identical_to, "not applied: its desired state was rolled back; change it, or lift the quarantine");
                store.record_quarantined(snapshot.revision, hash, identical_to.clone(), now)?;
                return Ok(Ingested::Quarantined { identical_to });
            }
            let applied = apply_revision(store, snapshot.revision, loaded.state, now)?;
            if !applied.no_op {
                let c = applied.plan.counts();
                tracing::info!(revision = %applied.revision.id, create = c.create, update = c.update, delete = c.delete, "revision applied");
            }
            Ok(Ingested::Applied(Box::new(applied)))
        }
        Err(diagnostics) => {
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            let latest = store.reader()?.revisions(1)?.pop();
            if latest.is_some_and(|r| r.id == snapshot.revision.id) {
                return Ok(Ingested::Invalid {
                    errors,
                    recorded: false,
                });
            }
            tracing::warn!(revision = %snapshot.revision.id, errors, first = %diagnostics.first().map(ToString::to_string).unwrap_or_default(), "revision invalid; the last good revision keeps running");
            store.record_invalid(snapshot.revision, diagnostics, now)?;
            Ok(Ingested::Invalid {
                errors,
                recorded: true,
            })
        }
    }
}

/// The receiving end of a source.
#[derive(Clone)]
pub struct Ingest {
    pub store: Arc<Store>,
    pub status: SourceStatus,
    pub metrics: Arc<Metrics>,
    /// Woken after every applied revision.
    pub wake: Arc<Notify>,
    pub limits: Limits,
    pub clock: Clock,
}

impl Ingest {
    /// Takes events until the source ends.
    pub async fn run(self, mut events: mpsc::Receiver<SourceEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                SourceEvent::Snapshot(snapshot) => {
                    self.counted();
                    self.take(snapshot).await;
                }
                SourceEvent::Unchanged => {
                    self.counted();
                    self.touch();
                }
                SourceEvent::Failed(error) => self.failed(&error),
            }
        }
    }

    fn counted(&self) {
        self.metrics.source_fetches.fetch_add(1, Ordering::Relaxed);
    }

    async fn take(&self, snapshot: Snapshot) {
        let (store, limits, now) = (self.store.clone(), self.limits.clone(), (self.clock)());
        let id = snapshot.revision.id.clone();
        let ingested =
            tokio::task::spawn_blocking(move || ingest(&store, snapshot, &limits, now)).await;
        match ingested {
            Ok(Ok(_)) => {
                let mut status = self.status.write().unwrap_or_else(|p| p.into_inner());
                status.last_revision = Some(id);
                status.last_fetch_at = Some(now.to_rfc3339());
                status.last_error = None;
                drop(status);
                self.wake.notify_one();
            }
            Ok(Err(error)) => {
                tracing::error!(revision = %id, error = %error, "cannot record the revision")
            }
            Err(error) => tracing::error!(revision = %id, error = %error, "the apply task failed"),
        }
    }

    fn touch(&self) {
        let mut status = self.status.write().unwrap_or_else(|p| p.into_inner());
        status.last_fetch_at = Some((self.clock)().to_rfc3339());
        status.last_error = None;
    }

    fn failed(&self, error: &SourceError) {
        let message = format!("{error:#}");
        let chained = std::iter::successors(std::error::Error::source(error), |e| e.source())
            .map(ToString::to_string)
            .fold(message, |all, cause| format!("{all}: {cause}"));
        tracing::warn!(error = %chained, "the source failed; the last good revision keeps running");
        self.metrics
            .source_fetch_errors
            .fetch_add(1, Ordering::Relaxed);
        let mut status = self.status.write().unwrap_or_else(|p| p.into_inner());
        status.last_error = Some(chained);
        status.fetch_errors += 1;
        status.last_fetch_at = Some((self.clock)().to_rfc3339());
    }
}
