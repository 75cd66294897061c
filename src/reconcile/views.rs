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
        WorkloadKind::Job | WorkloadKind::CronJob => None,
        WorkloadKind::Worker if status == DeploymentStatus::Deleted => None,
        WorkloadKind::Worker if ready >= desired => Some(Health::Healthy),
        WorkloadKind::Worker if ready > 0 => Some(Health::Degraded),
        WorkloadKind::Worker => Some(Health::Unhealthy),
    }
}

/// One deployment as the namespace roll-up sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub kind: WorkloadKind,
    pub status: DeploymentStatus,
    /// Instances it should have (0 for a deployment scaled to zero).
    pub desired_instances: u32,
    /// Instances still present while it is `deleted` (being torn down).
    pub live_instances: u32,
    /// A cron job has a failed run that no newer run has made good and nobody cleared.
    pub failed_run: bool,
}

impl Member {
    /// Whether it counts as a failure: its status (for its kind: a cron job's `failed` is its
    /// last run's, and counts through `failed_run`, which clearing ends), or a failed run not
    /// yet made good.
    fn failing(&self) -> bool {
        let class = self.status.class_for(self.kind);
        matches!(class, StatusClass::Retried | StatusClass::Terminal) || self.failed_run
    }

    /// Whether it is on its way up (a cron job waiting for its first due time is not).
    fn starting(&self) -> bool {
        self.status.class_for(self.kind) == StatusClass::Progressing
    }
}

/// The namespace status of DESIGN.md §3.4, rules applied in order.
pub fn namespace_status(members: &[Member]) -> NamespaceStatus {
    let failing = members.iter().filter(|m| m.failing()).count();
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
    if members.iter().any(Member::starting) {
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
    /// A cron job's schedule runs (its runtime was listed and the planner set it going).
    pub scheduled: bool,
    /// A worker's instances have run for their stabilization window (see `Outcome::stable`).
    pub stable: bool,
    /// The revision changed it (created, updated or deleted it).
    pub changed: bool,
}

/// The state of an open revision from its deployments (DESIGN.md §3.5): `succeeded` only when
/// every one reached its goal, `failed` as soon as one is in a terminal failure. A job's run
/// is the outcome of the revision that changed it: a job that failed under an earlier revision
/// neither fails this one nor holds it back.
pub fn revision_state(goals: &[Goal]) -> RevisionState {
    // By kind: a cron job's `failed` is a run's outcome, not the revision's.
    let ran_before = |g: &Goal| g.kind == WorkloadKind::Job && !g.changed;
    if goals
        .iter()
        .any(|g| g.status.class_for(g.kind) == StatusClass::Terminal && !ran_before(g))
    {
        return RevisionState::Failed;
    }
    let reached = |g: &Goal| {
        if !g.declared {
            return g.status == DeploymentStatus::Deleted && g.live_instances == 0;
        }
        match g.kind {
            WorkloadKind::Worker => g.status == DeploymentStatus::Running && g.stable,
            WorkloadKind::Job => {
                g.status == DeploymentStatus::Completed
                    || (ran_before(g) && g.status.class_for(g.kind) == StatusClass::Terminal)
            }
            WorkloadKind::CronJob => {
                g.scheduled && g.status.class_for(g.kind) == StatusClass::Settled
            }
        }
    };
    if goals.iter().all(reached) {
        RevisionState::Succeeded
    } else {
        RevisionState::Applying
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentStatus as S;

    fn m(status: DeploymentStatus, desired: u32, live: u32) -> Member {
        Member {
            kind: WorkloadKind::Worker,
            status,
            desired_instances: desired,
            live_instances: live,
            failed_run: false,
        }
    }

    fn cron(status: DeploymentStatus, failed_run: bool) -> Member {
        Member {
            kind: WorkloadKind::CronJob,
            failed_run,
            ..m(status, 1, 0)
        }
    }

    #[test]
    fn namespace_status_follows_the_rules_in_order() {
        let cases = [
            (
                "all_failing_is_error",
                vec![m(S::Failed, 1, 0), m(S::CrashLoopBackOff, 1, 1)],
                NamespaceStatus::Error,
            ),
            (
                "some_failing_is_warning",
                vec![m(S::Running, 1, 1), m(S::ImagePullBackOff, 1, 0)],
                NamespaceStatus::Warning,
            ),
            (
                "failure_beats_teardown",
                vec![m(S::Deleted, 0, 2), m(S::Error, 1, 0)],
                NamespaceStatus::Warning,
            ),
            (
                "teardown_is_stopping",
                vec![m(S::Deleted, 0, 1), m(S::Creating, 1, 0)],
                NamespaceStatus::Stopping,
            ),
            (
                "fully_deleted_is_not_stopping",
                vec![m(S::Deleted, 0, 0), m(S::Running, 1, 1)],
                NamespaceStatus::Running,
            ),
            (
                "pending_or_creating_is_starting",
                vec![m(S::Running, 1, 1), m(S::Pending, 1, 0)],
                NamespaceStatus::Starting,
            ),
            (
                "all_scaled_to_zero_is_stopped",
                vec![m(S::Running, 0, 0), m(S::Deleted, 0, 0)],
                NamespaceStatus::Stopped,
            ),
            (
                "otherwise_running",
                vec![m(S::Running, 2, 2), m(S::Completed, 1, 0)],
                NamespaceStatus::Running,
            ),
            (
                "a_cronjob_waiting_for_its_first_run_is_not_starting",
                vec![m(S::Running, 1, 1), cron(S::Pending, false)],
                NamespaceStatus::Running,
            ),
            (
                "a_cronjobs_failed_counts_only_while_its_failure_does",
                vec![m(S::Running, 1, 1), cron(S::Failed, false)],
                NamespaceStatus::Running,
            ),
            (
                "a_cronjob_with_a_failure_that_counts_is_a_warning",
                vec![m(S::Running, 1, 1), cron(S::Running, true)],
                NamespaceStatus::Warning,
            ),
        ];
        for (name, members, expected) in cases {
            assert_eq!(namespace_status(&members), expected, "{name}");
        }
    }

    fn g(kind: WorkloadKind, status: DeploymentStatus, declared: bool, live: u32) -> Goal {
        Goal {
            kind,
            status,
            declared,
            live_instances: live,
            scheduled: false,
            stable: true,
            changed: true,
        }
    }

    #[test]
    fn revision_state_follows_its_deployments() {
        use WorkloadKind::{Job, Worker};
        let cases = [
            (
                "all_at_goal_succeeds",
                vec![
                    g(Worker, S::Running, true, 2),
                    g(Job, S::Completed, true, 0),
                    g(Worker, S::Deleted, false, 0),
                ],
                RevisionState::Succeeded,
            ),
            (
                "a_creating_worker_keeps_applying",
                vec![g(Worker, S::Creating, true, 1)],
                RevisionState::Applying,
            ),
            (
                "a_running_job_keeps_applying",
                vec![g(Job, S::Running, true, 1)],
                RevisionState::Applying,
            ),
            (
                "a_pruned_one_still_tearing_down_keeps_applying",
                vec![g(Worker, S::Deleted, false, 1)],
                RevisionState::Applying,
            ),
            (
                "a_retried_error_keeps_applying",
                vec![g(Worker, S::ImagePullBackOff, true, 0)],
                RevisionState::Applying,
            ),
            (
                "a_terminal_failure_fails",
                vec![
                    g(Worker, S::Running, true, 1),
                    g(Worker, S::Failed, true, 1),
                ],
                RevisionState::Failed,
            ),
            (
                "crash_loop_fails",
                vec![g(Worker, S::CrashLoopBackOff, true, 0)],
                RevisionState::Failed,
            ),
            (
                "a_running_worker_not_stable_yet_keeps_applying",
                vec![Goal {
                    stable: false,
                    ..g(Worker, S::Running, true, 1)
                }],
                RevisionState::Applying,
            ),
            (
                "a_job_that_failed_under_an_earlier_revision_neither_fails_nor_holds_it",
                vec![
                    g(Worker, S::Running, true, 1),
                    Goal {
                        changed: false,
                        ..g(Job, S::Failed, true, 0)
                    },
                ],
                RevisionState::Succeeded,
            ),
            (
                "a_job_this_revision_changed_fails_it",
                vec![g(Worker, S::Running, true, 1), g(Job, S::Failed, true, 0)],
                RevisionState::Failed,
            ),
            ("no_deployments_succeeds", vec![], RevisionState::Succeeded),
        ];
        for (name, goals, expected) in cases {
            assert_eq!(revision_state(&goals), expected, "{name}");
        }
    }

    #[test]
    fn health_compares_ready_with_desired() {
        assert_eq!(
            health(WorkloadKind::Worker, S::Running, 3, 3),
            Some(Health::Healthy)
        );
        assert_eq!(
            health(WorkloadKind::Worker, S::Running, 1, 3),
            Some(Health::Degraded)
        );
        assert_eq!(
            health(WorkloadKind::Worker, S::Creating, 0, 3),
            Some(Health::Unhealthy)
        );
        assert_eq!(health(WorkloadKind::Worker, S::Deleted, 0, 0), None);
        assert_eq!(health(WorkloadKind::Job, S::Running, 1, 1), None);
    }
}
