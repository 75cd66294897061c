//! What the reconciler remembers about a deployment between passes, persisted in the store so
//! that a restarted agent carries on where it stopped: its status and when it began, the
//! restart counter, retry backoff, the failure an action just reported, and per-instance
//! facts the runtime cannot tell (that keel stopped it on purpose, that its death was counted).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::status::{DeploymentStatus, InstanceState};
use super::time::Timestamp;

/// A deployment's memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub status: DeploymentStatus,
    pub status_since: Timestamp,
    pub restart_count: u32,
    /// When the current generation was stored (the rollout deadline counts from here).
    pub generation_since: Timestamp,
    /// Backoff state while a retried status (or crash replacement) waits.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// The failure an action reported since the last pass; the planner turns it into a status.
    #[serde(default)]
    pub last_failure: Option<Failure>,
    /// Instances keel knows something about, by runtime id.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceMemory>,
}

impl Memory {
    /// The memory of a deployment the store has just (re)set to `pending`.
    pub fn fresh(
        status: DeploymentStatus,
        status_since: Timestamp,
        restart_count: u32,
        generation_since: Timestamp,
    ) -> Self {
        Self {
            status,
            status_since,
            restart_count,
            generation_since,
            retry: None,
            last_failure: None,
            instances: BTreeMap::new(),
        }
    }
}

/// Exponential backoff between attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Failed attempts so far.
    pub attempts: u32,
    /// No new attempt before this instant.
    pub next_at: Timestamp,
}

/// A failed runtime action, as the executor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The classified status (a retried or terminal one).
    pub status: DeploymentStatus,
    pub message: String,
    pub at: Timestamp,
}

/// What keel knows about one instance beyond what the runtime reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceMemory {
    /// The state last derived for it.
    pub state: InstanceState,
    /// The reason behind `error` (exit code, OOM) or `stopped`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Keel asked it to stop: its exit is not a crash.
    #[serde(default)]
    pub stopping: bool,
    /// Its death was counted already (never count one exit twice).
    #[serde(default)]
    pub counted: bool,
    /// Liveness checks (by index) whose action fired during the current failure streak.
    #[serde(default)]
    pub fired: BTreeSet<u32>,
}

impl InstanceMemory {
    pub fn new(state: InstanceState) -> Self {
        Self {
            state,
            reason: None,
            stopping: false,
            counted: false,
            fired: BTreeSet::new(),
        }
    }
}
