//! What the host looks like, as reported by the runtimes and the probes: the instances keel
//! owns (found by their ownership labels) and how their health checks have been doing.
//! Observations are facts; `reconcile::plan` decides what they mean.

use std::net::IpAddr;

use super::desired::DeploymentId;
use super::manifest::RuntimeKind;
use super::time::Timestamp;

/// Where an instance is in its runtime's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created, never started (or start failed).
    Created,
    /// Running.
    Running,
    /// Ended: by itself, killed, or stopped.
    Exited { exit_code: i64, oom_killed: bool },
}

/// One container or VM carrying keel's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedInstance {
    /// The runtime that listed it (and so the one that stops and removes it).
    pub runtime: RuntimeKind,
    /// The runtime's id (container id, VM name).
    pub runtime_id: String,
    pub deployment: DeploymentId,
    pub generation: u64,
    pub ordinal: u32,
    /// The template hash it was created from (see `model::desired::template_hash`).
    pub template: String,
    pub phase: Phase,
    /// Where probes reach it.
    pub ip: Option<IpAddr>,
    pub started_at: Option<Timestamp>,
}

/// One runtime's listing, or why there is none. Unknown is not absent: a runtime that could
/// not be listed makes the planner hold every deployment on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeObservation {
    Listed(Vec<ObservedInstance>),
    Unavailable { reason: String },
}

/// The recent history of one health check on one instance, folded by `reconcile::readiness`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckState {
    /// Failures in a row (0 after a success).
    pub consecutive_failures: u32,
    /// Since when every run has been a success (`None` after a failure or before any run).
    pub green_since: Option<Timestamp>,
    /// The last run's message (the error of a failure).
    pub last_message: Option<String>,
}
