//! The status vocabulary of DESIGN.md §3: deployment status (14 values), instance state,
//! deployment health, namespace status and revision state. Every value serializes as
//! snake_case, identically in JSON, CLI output and SQLite (`as_str` / `FromStr` are the one
//! mapping). Matches over these enums are exhaustive everywhere: adding a value must make the
//! compiler point at every decision that depends on it.

/// A string that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}; valid values: {}", valid.join(", "))]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
    pub valid: &'static [&'static str],
}

string_enum! {
    /// A deployment's lifecycle status (DESIGN.md §3.1).
    DeploymentStatus {
        /// Accepted, nothing created yet.
        Pending = "pending",
        /// Instances are being created, or wait for the readiness gate.
        Creating = "creating",
        /// Every instance is up (and past the readiness gate, for workers with readiness checks).
        Running = "running",
        /// A job that exited 0.
        Completed = "completed",
        /// Removed from the repository, or stopped by a liveness check.
        Deleted = "deleted",
        /// Terminal: a job that failed, a readiness deadline, a failed rollout.
        Failed = "failed",
        /// Terminal: a worker that died `max_restart_count` times.
        CrashLoopBackOff = "crash_loop_back_off",
        /// Terminal: the host cannot admit the requested memory.
        InsufficientResources = "insufficient_resources",
        /// Retried: the image cannot be pulled.
        ImagePullBackOff = "image_pull_back_off",
        /// Retried: the runtime refused to create the instance.
        CreateContainerError = "create_container_error",
        /// Retried: the namespace network could not be set up.
        NetworkError = "network_error",
        /// Retried: a configuration problem (a missing secret, a disallowed bind mount).
        ConfigError = "config_error",
        /// Retried: the agent's own files could not be written.
        FileSystemError = "file_system_error",
        /// Retried: anything else.
        Error = "error",
    }
}

/// How a status behaves: progressing, settled, retried or terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// On the way: pending, creating.
    Progressing,
    /// The goal or a deliberate end: running, completed, deleted.
    Settled,
    /// A failure that is retried with backoff.
    Retried,
    /// A failure that stays until the spec changes.
    Terminal,
}

impl DeploymentStatus {
    pub fn class(self) -> StatusClass {
        match self {
            DeploymentStatus::Pending | DeploymentStatus::Creating => StatusClass::Progressing,
            DeploymentStatus::Running | DeploymentStatus::Completed | DeploymentStatus::Deleted => {
                StatusClass::Settled
            }
            DeploymentStatus::Failed
            | DeploymentStatus::CrashLoopBackOff
            | DeploymentStatus::InsufficientResources => StatusClass::Terminal,
            DeploymentStatus::ImagePullBackOff
            | DeploymentStatus::CreateContainerError
            | DeploymentStatus::NetworkError
            | DeploymentStatus::ConfigError
            | DeploymentStatus::FileSystemError
            | DeploymentStatus::Error => StatusClass::Retried,
        }
    }

    /// Whether this is a failure status (terminal or retried).
    pub fn is_failure(self) -> bool {
        match self.class() {
            StatusClass::Retried | StatusClass::Terminal => true,
            StatusClass::Progressing | StatusClass::Settled => false,
        }
    }

    /// The class of this status for a deployment of `kind`. A cron job's `pending` (waiting
    /// for its first due time) and `failed` (its last run's outcome; the schedule goes on) are
    /// where it should be: settled, not progress or a terminal failure.
    pub fn class_for(self, kind: super::manifest::WorkloadKind) -> StatusClass {
        use super::manifest::WorkloadKind;
        match (kind, self) {
            (WorkloadKind::CronJob, DeploymentStatus::Pending | DeploymentStatus::Failed) => {
                StatusClass::Settled
            }
            (WorkloadKind::CronJob | WorkloadKind::Worker | WorkloadKind::Job, _) => self.class(),
        }
    }
}

string_enum! {
    /// The state of one container or VM (DESIGN.md §3.2).
    InstanceState {
        /// Image pull or build in progress.
        Building = "building",
        /// Created, not started.
        Created = "created",
        /// Start requested.
        Starting = "starting",
        /// Running, readiness not (yet) confirmed.
        Started = "started",
        /// Started and every readiness check green (or none declared).
        Ready = "ready",
        /// Exited or failed, with the runtime's reason.
        Error = "error",
        /// Still running, but keel is stopping it (draining, then a graceful stop): no
        /// longer counted as serving.
        Stopping = "stopping",
        /// Stopped on purpose (or by its runtime going away), no longer running.
        Stopped = "stopped",
    }
}

string_enum! {
    /// A deployment's health (DESIGN.md §3.3); absent for jobs and deleted deployments.
    Health {
        /// Ready instances = desired.
        Healthy = "healthy",
        /// Some but not all instances ready.
        Degraded = "degraded",
        /// No instance ready while some are desired.
        Unhealthy = "unhealthy",
    }
}

string_enum! {
    /// A namespace's status, computed from its deployments (DESIGN.md §3.4).
    NamespaceStatus {
        Error = "error",
        Warning = "warning",
        Stopping = "stopping",
        Starting = "starting",
        Stopped = "stopped",
        Running = "running",
    }
}

string_enum! {
    /// The sync state of one revision (DESIGN.md §3.5).
    RevisionState {
        /// Received, not applied yet.
        Queued = "queued",
        /// Applied to the store; deployments converging.
        Applying = "applying",
        /// Every deployment of the revision reached its goal.
        Succeeded = "succeeded",
        /// A deployment of the revision failed.
        Failed = "failed",
        /// Rejected before apply: a file did not parse or validate.
        Invalid = "invalid",
        /// A newer revision arrived before this one settled.
        Superseded = "superseded",
        /// It failed at run time and the host returned to the last good revision; its desired
        /// state is quarantined until it changes.
        RolledBack = "rolled_back",
        /// Not applied: its desired state is identical to one that was rolled back.
        Quarantined = "quarantined",
    }
}

impl RevisionState {
    /// Whether the revision is still on its way (a newer one supersedes it).
    pub fn is_open(self) -> bool {
        match self {
            RevisionState::Queued | RevisionState::Applying => true,
            RevisionState::Succeeded
            | RevisionState::Failed
            | RevisionState::Invalid
            | RevisionState::Superseded
            | RevisionState::RolledBack
            | RevisionState::Quarantined => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_fourteen_deployment_statuses_and_they_round_trip() {
        assert_eq!(DeploymentStatus::ALL.len(), 14);
        for s in DeploymentStatus::ALL {
            assert_eq!(s.as_str().parse::<DeploymentStatus>(), Ok(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        let err = "crashloop".parse::<DeploymentStatus>().unwrap_err();
        assert!(err.to_string().contains("crash_loop_back_off"), "{err}");
    }

    #[test]
    fn status_classes_follow_the_design() {
        use DeploymentStatus as S;
        let terminal: Vec<_> = S::ALL
            .iter()
            .filter(|s| s.class() == StatusClass::Terminal)
            .collect();
        assert_eq!(
            terminal,
            [&S::Failed, &S::CrashLoopBackOff, &S::InsufficientResources]
        );
        let retried = S::ALL
            .iter()
            .filter(|s| s.class() == StatusClass::Retried)
            .count();
        assert_eq!(retried, 6);
    }
}
