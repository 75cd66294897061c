//! What happened to a deployment (events, kept in the store and shown by the API) and what
//! must be told to the outside (outbox notifications). Both are written in the same
//! transaction as the status change they describe.

use serde::{Deserialize, Serialize};

use super::desired::DeploymentId;
use super::status::{DeploymentStatus, Health, RevisionState};
use super::time::Timestamp;

string_enum! {
    /// The kind of an event.
    EventKind {
        /// The deployment appeared in a revision.
        Created = "created",
        /// A revision changed its spec (a new generation).
        Updated = "updated",
        /// It vanished from the revision (pruned) or was stopped.
        Deleted = "deleted",
        /// Its status moved.
        StatusChanged = "status_changed",
        /// An instance died without keel asking it to.
        InstanceDied = "instance_died",
        /// An instance stopped because its runtime went away or restarted; it is replaced
        /// without counting a crash.
        InstanceInterrupted = "instance_interrupted",
        /// A runtime action (create, start, pull) failed.
        ActionFailed = "action_failed",
        /// A liveness check reached its threshold and fired its `on_failure`.
        HealthCheckFailed = "health_check_failed",
        /// A rolling update replaced an instance of the previous generation.
        RollingUpdate = "rolling_update",
        /// The new generation did not become ready before the deadline; the old one keeps serving.
        RolloutFailed = "rollout_failed",
        /// Still not ready when the readiness deadline passed.
        ReadinessDeadlineExceeded = "readiness_deadline_exceeded",
        /// Instances were added or removed to match `replicas`.
        Scaled = "scaled",
        /// A cron job's run started.
        RunStarted = "run_started",
        /// A cron job's run ended: completed or failed.
        RunFinished = "run_finished",
        /// A cron job's run was skipped (the previous one still ran, its starting deadline
        /// passed, or the agent was down when it was due).
        RunSkipped = "run_skipped",
        /// An operator cleared a cron job's failed runs (`keel clear-runs`).
        RunsCleared = "runs_cleared",
        /// The revision that last changed it failed at run time and was rolled back: the last
        /// good revision's spec (or its absence) is restored.
        RolledBack = "rolled_back",
    }
}

/// One event of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub deployment: DeploymentId,
    pub time: Timestamp,
    pub kind: EventKind,
    /// A short machine-readable cause, e.g. `revision_applied`, `pruned`.
    pub reason: String,
    pub message: String,
    /// The revision that caused it, when one did.
    pub revision: Option<String>,
}

string_enum! {
    /// The type of an outbound notification (the webhook `type`).
    NotificationKind {
        DeploymentStatusChanged = "deployment.status_changed",
        DeploymentHealthCheckFailed = "deployment.health_check_failed",
        DeploymentRollingUpdate = "deployment.rolling_update",
        RevisionStatusChanged = "revision.status_changed",
        RevisionRolledBack = "revision.rolled_back",
        RevisionQuarantined = "revision.quarantined",
        JobRunFinished = "job.run_finished",
    }
}

/// The `data` of a `deployment.status_changed` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusChanged {
    pub namespace: String,
    pub name: String,
    /// `worker`, `job` or `cronjob`.
    pub kind: String,
    /// `docker` or `cloud-hypervisor`.
    pub runtime: String,
    /// `null` when the deployment was just created.
    pub old_status: Option<DeploymentStatus>,
    pub new_status: DeploymentStatus,
    /// A short machine-readable cause, e.g. `ready`, `max_restart_count`, `revision_applied`.
    pub reason: String,
    /// What happened, in words.
    #[serde(default)]
    pub message: String,
    pub restart_count: u32,
    pub generation: u64,
    /// The revision that last changed the deployment.
    pub revision: Option<String>,
    /// `healthy`, `degraded` or `unhealthy`; `null` for jobs, deleted deployments, and while
    /// unknown.
    pub health: Option<Health>,
    pub ready: u32,
    pub desired: u32,
}

/// The `data` of `deployment.health_check_failed` and `deployment.rolling_update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeploymentNotice {
    pub namespace: String,
    pub name: String,
    pub message: String,
    pub generation: u64,
    pub revision: String,
}

/// One deployment of a revision, as its revision's notification summarizes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeploymentOutcome {
    pub namespace: String,
    pub name: String,
    pub status: DeploymentStatus,
    pub restart_count: u32,
    /// Whether the revision declares it (`false`: the revision removes it).
    pub declared: bool,
    /// The message of its last status change.
    pub message: Option<String>,
}

/// The `data` of a `revision.status_changed` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevisionChanged {
    /// Where it came from: a Git URL (with what it follows) or a directory.
    pub source: String,
    /// The commit SHA, or a directory snapshot's content hash.
    pub revision: String,
    pub old_state: Option<RevisionState>,
    pub new_state: RevisionState,
    pub superseded_by: Option<String>,
    /// A revision that restores the last good one: the failed revision it undoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restores: Option<String>,
    /// A rolled-back revision: the revision the host returned to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
    /// A quarantined revision: the rolled-back revision whose desired state it repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identical_to: Option<String>,
    /// Its deployments and how each is doing (empty for an invalid revision).
    #[serde(default)]
    pub deployments: Vec<DeploymentOutcome>,
    /// An invalid revision's first problems (at most 5).
    #[serde(default)]
    pub diagnostics: Vec<super::diagnostic::Diagnostic>,
}

/// The `data` of a `revision.rolled_back` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RolledBack {
    pub source: String,
    /// The revision that failed and was undone.
    pub revision: String,
    /// The last good revision the host returned to.
    pub restored: String,
    /// The failed revision's deployments and how each was doing when it was undone.
    pub deployments: Vec<DeploymentOutcome>,
    /// Jobs the failed revision ran, which a rollback cannot undo (`namespace/name`).
    pub not_undone: Vec<String>,
}

/// The `data` of a `revision.quarantined` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quarantined {
    pub source: String,
    /// The revision that was not applied.
    pub revision: String,
    /// The rolled-back revision whose desired state it repeats.
    pub identical_to: String,
}

/// The body of every webhook: `{"type", "timestamp", "data"}` (Standard Webhooks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    /// When the change happened (RFC 3339, UTC).
    pub timestamp: String,
    pub data: serde_json::Value,
}
