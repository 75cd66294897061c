//! PURE: the derived views of DESIGN.md §3.3–3.5 — deployment health, namespace status and
//! revision state — computed from statuses and counts, never stored as independent truth.

use crate::model::manifest::WorkloadKind;
use crate::model::status::{DeploymentStatus, Health, NamespaceStatus, RevisionState, StatusClass};

/// Health from ready vs desired instances; `None` for jobs and deleted deployments.
pub fn health(
    kind: WorkloadKind,
    status: DeploymentStatus,
    ready: u32,
    desired: u32,
) -> Option<Health> {
    match kind {
        WorkloadKind::Job => None,
        WorkloadKind::Worker if status == DeploymentStatus::Deleted => None,
        WorkloadKind::Worker if ready >= desired => Some(Health::Healthy),
        WorkloadKind::Worker if ready > 0 => Some(Health::Degraded),
        WorkloadKind::Worker => Some(Health::Unhealthy),
    }
}

/// One deployment as the namespace roll-up sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub status: DeploymentStatus,
    /// Instances it should have (0 for a deployment scaled to zero).
    pub desired_instances: u32,
    /// Instances still present while it is `deleted` (being torn down).
    pub live_instances: u32,
}

/// The namespace status of DESIGN.md §3.4, rules applied in order.
pub fn namespace_status(members: &[Member]) -> NamespaceStatus {
    let failing = members.iter().filter(|m| m.status.is_failure()).count();
    if !members.is_empty() && failing == members.len() {
        return NamespaceStatus::Error;
    }
    if failing > 0 {
        return NamespaceStatus::Warning;
    }
    if members
        .iter()
        .any(|m| m.status == DeploymentStatus::Deleted && m.live_instances > 0)
    {
        return NamespaceStatus::Stopping;
    }
    let progressing = |m: &&Member| m.status.class() == StatusClass::Progressing;
    if members.iter().any(|m| progressing(&m)) {
        return NamespaceStatus::Starting;
    }
    if members.iter().all(|m| m.desired_instances == 0) {
        return NamespaceStatus::Stopped;
    }
    NamespaceStatus::Running
}

/// One deployment as its revision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Goal {
    pub kind: WorkloadKind,
    pub status: DeploymentStatus,
    /// Whether the revision declares it (false: pruned by the revision, its goal is `deleted`
    /// with nothing left running).
    pub declared: bool,
    pub live_instances: u32,
}

/// The state of an open revision from its deployments (DESIGN.md §3.5): `succeeded` only when
/// every one reached its goal, `failed` as soon as one is in a terminal failure.
pub fn revision_state(goals: &[Goal]) -> RevisionState {
    if goals
        .iter()
        .any(|g| g.status.class() == StatusClass::Terminal)
    {
        return RevisionState::Failed;
    }
    let reached = |g: &Goal| {
        if !g.declared {
            return g.status == DeploymentStatus::Deleted && g.live_instances == 0;
        }
        match g.kind {
            WorkloadKind::Worker => g.status == DeploymentStatus::Running,
            WorkloadKind::Job => g.status == DeploymentStatus::Completed,
        }
    };
    if goals.iter().all(reached) {
        RevisionState::Succeeded
    } else {
        RevisionState::Applying
    }
}
