//! The API's wire types: stable JSON shapes, separate from the domain types so that internal
//! changes never break clients. Times are RFC 3339 UTC strings; statuses are snake_case.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::delivery::{Delivery, DeliveryState};
use crate::model::diagnostic::Diagnostic;
use crate::model::event::Event;
use crate::model::run::{Run, RunOutcome};
use crate::model::status::{
    DeploymentStatus, Health, InstanceState, NamespaceStatus, RevisionState,
};
use crate::model::stored::{
    addresses, RevisionRecord, StoredDeployment, StoredInstance, StoredSummary,
};

/// One line of `GET /v1/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentSummary {
    pub namespace: String,
    pub name: String,
    /// `worker`, `job` or `cronjob`.
    pub kind: String,
    pub runtime: String,
    /// The image (on `cloud-hypervisor`, the disk), when the deployment names one.
    #[serde(default)]
    pub image: Option<String>,
    pub status: DeploymentStatus,
    pub health: Option<Health>,
    pub ready: u32,
    pub desired: u32,
    pub restart_count: u32,
    pub generation: u64,
    pub revision: String,
    /// The addresses of its live instances (a container's or VM's IP), oldest generation
    /// first.
    #[serde(default)]
    pub ips: Vec<String>,
    /// A cron job's next due time (RFC 3339); `null` for other kinds and a suspended one.
    #[serde(default)]
    pub next_run_at: Option<String>,
    pub created_at: String,
}

impl DeploymentSummary {
    /// A summary from the stored row and its live instances' addresses.
    pub fn new(d: &StoredSummary, ips: Vec<String>) -> Self {
        Self {
            namespace: d.id.namespace.clone(),
            name: d.id.name.clone(),
            kind: d.kind.as_str().to_owned(),
            runtime: d.runtime.as_str().to_owned(),
            image: d.image.clone(),
            status: d.status,
            health: d.health,
            ready: d.ready,
            desired: d.desired,
            restart_count: d.restart_count,
            generation: d.generation,
            revision: d.revision.clone(),
            ips,
            next_run_at: d.next_run_at.map(|t| t.to_rfc3339()),
            created_at: d.created_at.to_rfc3339(),
        }
    }

    /// A stored deployment's summary, with its instances' addresses.
    pub fn of(d: &StoredDeployment, instances: &[StoredInstance]) -> Self {
        Self::new(&StoredSummary::from(d), addresses(instances))
    }
}

/// `GET /v1/deployments/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub summary: DeploymentSummary,
    pub status_since: String,
    pub spec_hash: String,
    pub waiting_on: Option<serde_json::Value>,
    pub instances: Vec<InstanceDto>,
}

/// One container or VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceDto {
    pub id: String,
    pub ordinal: u32,
    pub generation: u64,
    pub state: InstanceState,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub started_at: Option<String>,
    pub exit_code: Option<i64>,
}

impl From<&crate::model::observed::PullProgress> for InstanceDto {
    /// An instance whose image is being pulled: no container yet, so no runtime id.
    fn from(p: &crate::model::observed::PullProgress) -> Self {
        Self {
            id: String::new(),
            ordinal: p.ordinal,
            generation: p.generation,
            state: InstanceState::Building,
            reason: Some(p.reason()),
            ip: None,
            started_at: None,
            exit_code: None,
        }
    }
}

impl From<&StoredInstance> for InstanceDto {
    fn from(i: &StoredInstance) -> Self {
        Self {
            id: i.runtime_id.clone(),
            ordinal: i.ordinal,
            generation: i.generation,
            state: i.state,
            reason: i.reason.clone(),
            ip: i.ip.clone(),
            started_at: i.started_at.map(|t| t.to_rfc3339()),
            exit_code: i.exit_code,
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventDto {
    /// The cursor: pass it as `before` to get older events.
    pub id: i64,
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub reason: String,
    pub message: String,
    pub revision: Option<String>,
}

impl EventDto {
    pub fn new(seq: i64, e: &Event) -> Self {
        Self {
            id: seq,
            time: e.time.to_rfc3339(),
            kind: e.kind.as_str().to_owned(),
            reason: e.reason.clone(),
            message: e.message.clone(),
            revision: e.revision.clone(),
        }
    }
}

/// One run of a cron job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunDto {
    /// Its number (per deployment, from 1); the cursor: pass it as `before` for older runs.
    pub run: u64,
    /// `running`, `completed`, `failed` or `skipped`.
    pub outcome: RunOutcome,
    /// When the schedule had it due.
    pub due_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The first failing instance's exit code, 0 when it completed; `null` when no instance
    /// exited (skipped, replaced, vanished, still running).
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    /// The deployment's generation it ran.
    pub generation: u64,
    /// When an operator cleared it (a failed run then no longer counts against its namespace).
    pub cleared_at: Option<String>,
}

impl RunDto {
    pub fn new(run: &Run, cleared_at: Option<crate::model::time::Timestamp>) -> Self {
        Self {
            run: run.run,
            outcome: run.outcome,
            due_at: run.due_at.to_rfc3339(),
            started_at: run.started_at.map(|t| t.to_rfc3339()),
            finished_at: run.finished_at.map(|t| t.to_rfc3339()),
            exit_code: run.exit_code,
            duration_ms: run.duration_ms(),
            reason: run.reason.clone(),
            generation: run.generation,
            cleared_at: cleared_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// `GET /v1/deployments/{namespace}/{name}/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunPage {
    pub runs: Vec<RunDto>,
    /// The `before` of the next (older) page; absent on the last page.
    pub next_before: Option<u64>,
}

/// `POST /v1/deployments/{namespace}/{name}/runs/clear`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClearedRuns {
    /// How many failed runs were cleared.
    pub cleared: usize,
}

/// `GET /v1/deployments/{namespace}/{name}/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventPage {
    pub events: Vec<EventDto>,
    /// The `before` of the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// One namespace and the roll-up of its deployments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NamespaceDto {
    pub name: String,
    pub status: NamespaceStatus,
    pub deployments: usize,
    pub by_status: BTreeMap<DeploymentStatus, usize>,
}

/// One revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RevisionDto {
    pub id: String,
    pub seq: i64,
    pub source: String,
    pub state: RevisionState,
    pub received_at: String,
    pub state_since: String,
    pub message: Option<String>,
    pub author: Option<String>,
    pub superseded_by: Option<String>,
    /// A rolled-back revision: the revision the host returned to.
    #[serde(default)]
    pub rolled_back_to: Option<String>,
    /// A quarantined revision: the rolled-back revision whose desired state it repeats.
    #[serde(default)]
    pub identical_to: Option<String>,
    /// A revision that restores the last good one after a failure: the failed revision.
    #[serde(default)]
    pub restores: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl RevisionDto {
    /// Its state, in words for people: with the revision a rollback or a quarantine ties it to.
    pub fn described_state(&self) -> String {
        match (self.state, &self.rolled_back_to, &self.identical_to) {
            (RevisionState::RolledBack, Some(to), _) => format!("rolled_back (to {to})"),
            (RevisionState::Quarantined, _, Some(of)) => {
                format!("quarantined (identical to {of}, which was rolled back)")
            }
            (state, _, _) => state.to_string(),
        }
    }
}

impl From<&RevisionRecord> for RevisionDto {
    fn from(r: &RevisionRecord) -> Self {
        Self {
            id: r.id.clone(),
            seq: r.seq,
            source: r.source.clone(),
            state: r.state,
            received_at: r.received_at.to_rfc3339(),
            state_since: r.state_since.to_rfc3339(),
            message: r.message.clone(),
            author: r.author.clone(),
            superseded_by: r.superseded_by.clone(),
            rolled_back_to: r.rolled_back_to.clone(),
            identical_to: r.identical_to.clone(),
            restores: r.restores.clone(),
            diagnostics: r.diagnostics.clone(),
        }
    }
}

/// `GET /v1/revisions/{id}`: the revision and how each deployment it changed is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RevisionDetail {
    #[serde(flatten)]
    pub revision: RevisionDto,
    pub deployments: Vec<DeploymentSummary>,
}

/// `GET /v1/source`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SourceDto {
    pub source: Option<String>,
    pub last_fetch_at: Option<String>,
    pub last_revision: Option<String>,
    pub last_error: Option<String>,
    pub fetch_errors: u64,
}

/// `GET /v1/version`: what is running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VersionDto {
    /// The agent's release, e.g. `0.1.0`.
    pub version: String,
    /// The commit it was built from (`unknown` when built outside a Git checkout).
    pub build: String,
}

impl VersionDto {
    /// This binary's version and build.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            build: env!("KEEL_BUILD").to_owned(),
        }
    }
}

/// `GET /v1/runtimes`: one runtime as the reconciler last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuntimeDto {
    /// `docker` or `cloud-hypervisor`.
    pub runtime: String,
    /// Whether it could be listed; while it cannot, its deployments hold (nothing is created
    /// or removed on it).
    pub available: bool,
    /// Why it could not be listed.
    pub reason: Option<String>,
    /// Since when it has been (un)available.
    pub since: String,
    /// When it was last listed (or tried).
    pub checked_at: String,
}

/// One delivery of a notification to an endpoint (a webhook, or a commit status on the forge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryDto {
    /// The cursor: pass it as `before` to get older deliveries.
    pub seq: i64,
    /// A webhook's `webhook-id` (the same on every retry).
    pub id: String,
    /// `webhook:<url without credentials or query>`, or `forge`.
    pub endpoint: String,
    /// The notification type, or `commit_status`.
    #[serde(rename = "type")]
    pub kind: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: String,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    /// When it was delivered or given up.
    pub finished_at: Option<String>,
    /// The HTTP status of the last answer.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

impl From<&Delivery> for DeliveryDto {
    fn from(d: &Delivery) -> Self {
        let kind = serde_json::from_str::<serde_json::Value>(&d.body)
            .ok()
            .and_then(|body| body.get("type").and_then(|t| t.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "commit_status".to_owned());
        Self {
            seq: d.seq,
            id: d.id.clone(),
            endpoint: d.endpoint.clone(),
            kind,
            state: d.state,
            attempts: d.attempts,
            created_at: d.created_at.to_rfc3339(),
            next_attempt_at: (d.state == DeliveryState::Pending)
                .then(|| d.next_attempt_at.to_rfc3339()),
            last_attempt_at: d.last_attempt_at.map(|t| t.to_rfc3339()),
            finished_at: d.finished_at.map(|t| t.to_rfc3339()),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
        }
    }
}

/// `GET /v1/deliveries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryDto>,
    /// The `before` of the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}
