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
    /// It exited while its runtime was going away or restarting (the runtime stopped it, it
    /// did not die by itself). Only meaningful for an exited instance.
    pub interrupted: bool,
    /// The last lines it printed (a microVM's serial console), when the runtime keeps them:
    /// they go into the event of its death.
    pub last_output: Option<String>,
}

/// One runtime's listing, or why there is none. Unknown is not absent: a runtime that could
/// not be listed makes the planner hold every deployment on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeObservation {
    Listed(Vec<ObservedInstance>),
    /// It did not answer (a daemon restarting): it may hold instances; ask again soon.
    Unavailable {
        reason: String,
    },
    /// This host cannot run it (its binary is missing, no `/dev/kvm`): its deployments hold
    /// too, but nothing of it can exist here, and asking again changes nothing until the
    /// agent restarts with it enabled.
    Disabled {
        reason: String,
    },
}

/// Whether a runtime could be listed, as the controller last saw it (shown by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    pub available: bool,
    /// Why it could not be listed.
    pub reason: Option<String>,
    /// Since when it has been (un)available.
    pub since: Timestamp,
    /// When it was last listed (or tried).
    pub checked_at: Timestamp,
}

impl RuntimeState {
    /// The state after observing `observation` at `now`, from the previous one.
    pub fn after(
        previous: Option<&RuntimeState>,
        observation: &RuntimeObservation,
        now: Timestamp,
    ) -> Self {
        let (available, reason) = match observation {
            RuntimeObservation::Listed(_) => (true, None),
            RuntimeObservation::Unavailable { reason }
            | RuntimeObservation::Disabled { reason } => (false, Some(reason.clone())),
        };
        let since = previous
            .filter(|p| p.available == available)
            .map_or(now, |p| p.since);
        Self {
            available,
            reason,
            since,
            checked_at: now,
        }
    }
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
