//! What happened to a deployment (events, kept in the store and shown by the API) and what
//! must be told to the outside (outbox notifications). Both are written in the same
//! transaction as the status change they describe.

use serde::{Deserialize, Serialize};

use super::desired::DeploymentId;
use super::status::DeploymentStatus;
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
    }
}

/// The `data` of a `deployment.status_changed` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    pub namespace: String,
    pub name: String,
    pub old_status: Option<DeploymentStatus>,
    pub new_status: DeploymentStatus,
    pub restart_count: u32,
    pub generation: u64,
    pub revision: Option<String>,
}

/// The `data` of a `revision.status_changed` notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionChanged {
    pub source: String,
    pub revision: String,
    pub old_state: Option<super::status::RevisionState>,
    pub new_state: super::status::RevisionState,
    pub superseded_by: Option<String>,
}
