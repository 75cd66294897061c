//! The reconciler's output as data: the runtime actions of a pass and, per deployment, what was
//! decided about it (`Outcome`). `reconcile::plan` produces these; the store persists outcomes
//! and the executor carries out actions — neither makes a choice of its own.
//!
//! Invariants: an `Action` is complete — it names the runtime that carries it out, what to
//! create (the whole `InstanceSpec`), and how long to drain and wait for a graceful stop — so
//! executing it needs nothing but the runtime. A pass lists each deployment's actions in the
//! order to run them: removes, then starts, then creates.

use std::collections::BTreeMap;

use serde::Serialize;

use super::desired::{DeploymentId, InstanceSpec};
use super::event::{EventKind, NotificationKind};
use super::manifest::RuntimeKind;
use super::memory::Memory;
use super::status::{DeploymentStatus, Health};
use super::time::Timestamp;
use super::units::Duration;

/// How an instance that still runs is stopped before it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stop {
    /// How long it keeps serving first, so that clients following keel's instance list (which
    /// already shows it stopping) move away.
    pub drain: Duration,
    /// How long the runtime waits for a graceful stop before killing it.
    pub grace: Duration,
}

/// A runtime action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create and start an instance.
    Create {
        runtime: RuntimeKind,
        instance: Box<InstanceSpec>,
    },
    /// Start an instance that exists but does not run.
    Start {
        runtime: RuntimeKind,
        deployment: DeploymentId,
        runtime_id: String,
    },
    /// Remove an instance, stopping it first when it still runs.
    Remove {
        runtime: RuntimeKind,
        deployment: DeploymentId,
        runtime_id: String,
        stop: Option<Stop>,
    },
}

impl Action {
    pub fn deployment(&self) -> &DeploymentId {
        match self {
            Action::Create { instance, .. } => &instance.deployment,
            Action::Start { deployment, .. } | Action::Remove { deployment, .. } => deployment,
        }
    }

    /// The runtime that carries it out.
    pub fn runtime(&self) -> RuntimeKind {
        match self {
            Action::Create { runtime, .. }
            | Action::Start { runtime, .. }
            | Action::Remove { runtime, .. } => *runtime,
        }
    }

    /// Where it runs among one deployment's actions: removes free names, ports and memory for
    /// what starts and is created after them.
    pub fn order(&self) -> u8 {
        match self {
            Action::Remove { .. } => 0,
            Action::Start { .. } => 1,
            Action::Create { .. } => 2,
        }
    }
}

/// What a deployment is waiting for, as data (shown by the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitingOn {
    /// An instance's readiness check has not been green long enough.
    Readiness {
        instance: String,
        check: u32,
        green_for: Duration,
        needed: Duration,
    },
    /// Instances are being created or started.
    Instances { running: u32, desired: u32 },
    /// Retry backoff after a failure: the next attempt is due then; what the last one said.
    Backoff {
        until: Timestamp,
        reason: Option<String>,
    },
    /// The runtime could not be listed (or is not enabled here).
    RuntimeUnavailable { reason: String },
    /// A rolling update is replacing the previous generation.
    Rollout { ready: u32, total: u32 },
    /// Running instances whose readiness checks have not reported yet (as right after an
    /// agent restart): health is unknown until they do.
    FirstProbe { instances: u32 },
    /// A cron job between runs: the next is due then.
    NextRun { at: Timestamp },
    /// A cron job with `replicas: 0`: its schedule is suspended.
    Suspended,
    /// A running worker whose newest instance has not run for its stabilization window
    /// (`stable_after`, `needed`) yet: its revision can succeed from `until` on.
    Stabilizing { until: Timestamp, needed: Duration },
}

/// An event the store records (and maybe notifies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEvent {
    pub kind: EventKind,
    pub message: String,
    pub notify: Option<NotificationKind>,
}

/// The status the deployment moves to, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub from: DeploymentStatus,
    pub to: DeploymentStatus,
    pub reason: &'static str,
    pub message: String,
}

/// One instance as the API shows it (and the store records it).
pub type InstanceView = super::stored::StoredInstance;

/// The stored row a decision was made on. Its outcome is written onto that row only while the
/// row still holds this generation and declaration: a revision applied while the pass waited
/// for the runtimes makes the decision stale, and the next pass decides again on the new row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecidedOn {
    /// The deployment row's id (a deployment purged and declared again is another row).
    pub row: String,
    pub generation: u64,
    /// Whether the latest revision declared it.
    pub declared: bool,
}

impl DecidedOn {
    /// A decision made on `row` as it is now.
    pub fn of(row: &super::stored::StoredDeployment) -> Self {
        Self {
            row: row.uuid.clone(),
            generation: row.generation,
            declared: row.in_revision,
        }
    }

    /// Whether `row` is still the row this was decided on, as it was then.
    pub fn holds_for(&self, row: &super::stored::StoredDeployment) -> bool {
        row.uuid == self.row
            && row.generation == self.generation
            && row.in_revision == self.declared
    }
}

/// Everything decided about one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The row this was decided on (see `DecidedOn`).
    pub decided_on: DecidedOn,
    pub memory: Memory,
    /// Whether it counts toward its revision's success (a worker: running, and stable for
    /// its window; see `reconcile::plan`).
    pub stable: bool,
    pub status_change: Option<StatusChange>,
    pub events: Vec<PlannedEvent>,
    /// A cron job's runs that started, finished or were skipped in this pass.
    pub runs: Vec<super::run::Run>,
    pub health: Option<Health>,
    pub ready: u32,
    pub desired: u32,
    pub waiting_on: Option<WaitingOn>,
    pub instances: Vec<InstanceView>,
}

/// What a pass does to the open revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionMove {
    /// Moves revision `seq` to `state` (and notifies), if it is still open.
    Settle {
        seq: i64,
        state: crate::model::status::RevisionState,
    },
    /// Revision `seq` failed: record it rolled back, quarantine its desired state, and apply
    /// the last good revision (`restore`) again.
    RollBack { seq: i64, restore: String },
}

/// The result of a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub outcomes: BTreeMap<DeploymentId, Outcome>,
    /// The earliest time after `now` at which a decision of this plan changes by the clock
    /// alone (a backoff ends, a readiness check has been green long enough, a deadline
    /// passes): the loop sleeps until then at the latest (kube-runtime's `requeue_after`).
    pub wake_at: Option<Timestamp>,
}
