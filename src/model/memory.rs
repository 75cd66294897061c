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
    /// A cron job's schedule and runs under way (empty for other kinds).
    #[serde(default)]
    pub cron: CronMemory,
}

/// Where a cron job's schedule stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronMemory {
    /// The latest due time decided (a run started or skipped for it); the schedule carries on
    /// after it. `None` before the first: the schedule starts from when the generation was
    /// stored, nothing before it is owed.
    #[serde(default)]
    pub last_due: Option<Timestamp>,
    /// The number of the latest run (started or skipped); the next one gets one more.
    #[serde(default)]
    pub last_run: u64,
    /// Runs under way, by number.
    #[serde(default)]
    pub active: BTreeMap<u64, super::run::Run>,
    /// The next due time, as of the last pass.
    #[serde(default)]
    pub next_due: Option<Timestamp>,
    /// How the latest finished run ended (`completed` or `failed`): the status between runs,
    /// also across a spec change.
    #[serde(default)]
    pub last_outcome: Option<super::run::RunOutcome>,
    /// Whether each finished run whose instances may still exist completed (true) or failed:
    /// what history keeps is judged by this, not by how its instances happened to end.
    #[serde(default)]
    pub finished: BTreeMap<u64, bool>,
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
            cron: CronMemory::default(),
        }
    }
}

impl Memory {
    /// The memory of a deployment whose spec changed (a new generation): `pending`, restart
    /// counter 0, retry and reported failure cleared, the rollout deadline counting from `now`.
    /// A deployment already `pending` keeps the time it became so. Instances are kept: those
    /// of the previous generation still run, and what keel knows of them still holds; so is a
    /// cron job's schedule (runs under way finish, numbering goes on).
    pub fn new_generation(&self, now: Timestamp) -> Self {
        Self {
            status: DeploymentStatus::Pending,
            status_since: if self.status == DeploymentStatus::Pending {
                self.status_since
            } else {
                now
            },
            restart_count: 0,
            generation_since: now,
            retry: None,
            last_failure: None,
            instances: self.instances.clone(),
            cron: self.cron.clone(),
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
    /// What the last failed attempt said (shown while waiting to retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// Since when each readiness check (by index) has been green, as last seen: what an agent
    /// that starts again resumes the readiness clock from (see `readiness::resume`).
    #[serde(default)]
    pub green: BTreeMap<u32, Timestamp>,
}

impl InstanceMemory {
    pub fn new(state: InstanceState) -> Self {
        Self {
            state,
            reason: None,
            stopping: false,
            counted: false,
            fired: BTreeSet::new(),
            green: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_resets_status_counters_and_failures_but_keeps_instances() {
        let mut before = Memory::fresh(
            DeploymentStatus::CrashLoopBackOff,
            Timestamp(5),
            5,
            Timestamp(1),
        );
        before.retry = Some(Retry {
            attempts: 5,
            next_at: Timestamp(60),
            reason: None,
        });
        before.last_failure = Some(Failure {
            status: DeploymentStatus::Error,
            message: "boom".into(),
            at: Timestamp(6),
        });
        before
            .instances
            .insert("old-0".into(), InstanceMemory::new(InstanceState::Ready));
        before.cron.last_due = Some(Timestamp(60));
        before.cron.last_run = 7;
        let after = before.new_generation(Timestamp(100));
        assert_eq!(
            after.cron, before.cron,
            "a cron job's schedule and runs carry on"
        );
        assert_eq!(
            (
                after.status,
                after.status_since,
                after.restart_count,
                after.generation_since
            ),
            (DeploymentStatus::Pending, Timestamp(100), 0, Timestamp(100))
        );
        assert_eq!((after.retry, after.last_failure), (None, None));
        assert_eq!(after.instances, before.instances);
    }

    #[test]
    fn a_pending_deployment_keeps_the_time_it_became_pending() {
        let before = Memory::fresh(DeploymentStatus::Pending, Timestamp(5), 0, Timestamp(5));
        assert_eq!(
            before.new_generation(Timestamp(100)).status_since,
            Timestamp(5)
        );
    }
}
