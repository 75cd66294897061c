//! What the store remembers, as domain types: deployments with their generation, status and
//! counters; revisions with their state and diagnostics; queued notifications. The store
//! returns these, never rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::desired::{DeploymentId, SpecHash};
use super::diagnostic::Diagnostic;
use super::event::NotificationKind;
use super::manifest::{ConfigData, DeploymentDecl, RuntimeKind, WorkloadKind};
use super::status::{DeploymentStatus, RevisionState};
use super::time::Timestamp;

/// A deployment as last applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeployment {
    pub uuid: String,
    pub id: DeploymentId,
    pub spec: DeploymentDecl,
    /// The content of the configs the spec mounts, as hashed into `spec_hash`.
    pub mounted_configs: BTreeMap<String, ConfigData>,
    pub spec_hash: SpecHash,
    /// `model::desired::template_hash` of the spec, computed once when it was stored.
    pub template: String,
    /// Bumped by every spec change; instances of older generations are replaced.
    pub generation: u64,
    pub status: DeploymentStatus,
    pub status_since: Timestamp,
    pub restart_count: u32,
    /// The revision that last changed this deployment.
    pub revision: String,
    /// Whether the latest applied revision declares it (false once pruned).
    pub in_revision: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A cron job's next due time, as of the last reconcile pass.
    pub next_run_at: Option<Timestamp>,
    /// As of the last reconcile pass: health, ready and desired instances, and what it waits
    /// on (the planner's `WaitingOn`, as JSON).
    pub health: Option<super::status::Health>,
    pub ready: u32,
    pub desired: u32,
    /// Instances still present and not exited (see `live_instances`).
    pub live: u32,
    pub waiting_on: Option<serde_json::Value>,
}

/// The addresses of a deployment's live instances (present, not exited), oldest generation
/// first: what a list shows of them.
pub fn addresses(instances: &[StoredInstance]) -> Vec<String> {
    instances
        .iter()
        .filter(|i| i.exit_code.is_none())
        .filter_map(|i| i.ip.clone())
        .collect()
}

/// A deployment's row without its spec: what lists, counts and the diff of a revision need,
/// read without parsing any spec document.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSummary {
    pub id: DeploymentId,
    pub kind: WorkloadKind,
    pub runtime: RuntimeKind,
    pub spec_hash: SpecHash,
    pub generation: u64,
    pub status: DeploymentStatus,
    pub restart_count: u32,
    pub revision: String,
    pub in_revision: bool,
    pub created_at: Timestamp,
    pub health: Option<super::status::Health>,
    pub ready: u32,
    pub desired: u32,
    pub live: u32,
    /// The image (a VM's disk), when the spec names one.
    pub image: Option<String>,
    /// A cron job's next due time, as of the last reconcile pass.
    pub next_run_at: Option<Timestamp>,
}

impl From<&StoredDeployment> for StoredSummary {
    fn from(d: &StoredDeployment) -> Self {
        Self {
            id: d.id.clone(),
            kind: d.spec.kind,
            runtime: d.spec.runtime,
            spec_hash: d.spec_hash.clone(),
            generation: d.generation,
            status: d.status,
            restart_count: d.restart_count,
            revision: d.revision.clone(),
            in_revision: d.in_revision,
            created_at: d.created_at,
            health: d.health,
            ready: d.ready,
            desired: d.desired,
            live: d.live,
            image: d.spec.image.clone(),
            next_run_at: d.next_run_at,
        }
    }
}

/// Every deployment keel has ever created (pruned ones included).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredState {
    pub deployments: BTreeMap<DeploymentId, StoredDeployment>,
}

/// A revision as received from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRevision {
    /// Where it came from: a directory path or a Git URL (+ branch/path).
    pub source: String,
    /// The commit SHA, or the content hash of a directory snapshot.
    pub id: String,
    pub message: Option<String>,
    pub author: Option<String>,
}

/// A recorded revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// Order of arrival (the same commit may arrive twice, e.g. after a revert).
    pub seq: i64,
    pub source: String,
    pub id: String,
    pub message: Option<String>,
    pub author: Option<String>,
    pub received_at: Timestamp,
    pub state: RevisionState,
    pub state_since: Timestamp,
    pub diagnostics: Vec<Diagnostic>,
    pub superseded_by: Option<String>,
    /// The fingerprint of its desired state (`DesiredState::fingerprint`; `None` for an
    /// invalid revision, which has none).
    pub desired_hash: Option<String>,
    /// For a revision that restores the last good one after a failure: the failed one.
    pub restores: Option<String>,
    /// For a rolled-back revision: the revision the host returned to.
    pub rolled_back_to: Option<String>,
    /// For a quarantined revision: the rolled-back revision with the same desired state.
    pub identical_to: Option<String>,
}

/// A notification waiting in (or delivered from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: String,
    pub kind: NotificationKind,
    pub payload: serde_json::Value,
    /// `None`: every configured endpoint (the notifier fans it out).
    pub target: Option<String>,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub dead_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// One container or VM as last observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInstance {
    /// The container id or VM name.
    pub runtime_id: String,
    pub ordinal: u32,
    pub generation: u64,
    pub state: super::status::InstanceState,
    /// The runtime's reason for `error` (exit code, OOM, …).
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub started_at: Option<Timestamp>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}

/// How many of a deployment's instances are live — present and not exited — the one
/// definition behind "being torn down" (namespace `stopping`) and "fully deleted" (a pruned
/// deployment reached its revision's goal).
pub fn live_instances(instances: &[StoredInstance]) -> u32 {
    let live = instances.iter().filter(|i| i.exit_code.is_none()).count();
    u32::try_from(live).unwrap_or(u32::MAX)
}

/// One run of one health check against one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub instance: String,
    pub check_index: u32,
    pub ok: bool,
    pub latency_ms: Option<u64>,
    pub message: String,
    pub time: Timestamp,
}
