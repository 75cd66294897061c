//! PURE: which commit status a change means (DESIGN §3.5). A revision's state gives the
//! status of context `keel/<node>`: queued → pending; applying → running (the forge's pending,
//! or GitLab's running); succeeded → success, which the revision only reaches when every
//! deployment is past its readiness gate (workers `running`, jobs `completed`); failed →
//! failure naming the deployment; invalid → error naming the first problem; superseded →
//! canceled ("superseded by <sha>"). Optionally, each deployment's status gives context
//! `keel/<node>/<namespace>/<name>`. Descriptions say what happened in at most 140 characters.

use crate::model::delivery::{CommitState, CommitStatus};
use crate::model::event::{DeploymentOutcome, RevisionChanged, StatusChanged};
use crate::model::status::{DeploymentStatus, RevisionState, StatusClass};

/// The longest description forges accept.
pub const MAX_DESCRIPTION: usize = 140;

/// The context of this host.
pub fn context(node: &str) -> String {
    format!("keel/{node}")
}

/// The status of revision `change` for this host.
pub fn for_revision(
    change: &RevisionChanged,
    node: &str,
    public_url: Option<&str>,
) -> CommitStatus {
    let (state, description) = match change.new_state {
        RevisionState::Queued => (CommitState::Pending, "queued".to_owned()),
        RevisionState::Applying => (CommitState::Running, applying(&change.deployments)),
        RevisionState::Succeeded => (CommitState::Success, at_goal(&change.deployments)),
        RevisionState::Failed => (CommitState::Failure, failed(&change.deployments)),
        RevisionState::RolledBack => (
            CommitState::Failure,
            format!(
                "rolled back to {}: {}",
                short(
                    change
                        .rolled_back_to
                        .as_deref()
                        .unwrap_or("the last good revision")
                ),
                failed(&change.deployments)
            ),
        ),
        RevisionState::Quarantined => (
            CommitState::Failure,
            format!(
                "not applied: identical to {}, rolled back",
                short(change.identical_to.as_deref().unwrap_or("a revision"))
            ),
        ),
        RevisionState::Invalid => (CommitState::Error, invalid(change)),
        RevisionState::Superseded => (
            CommitState::Canceled,
            format!(
                "superseded by {}",
                short(
                    change
                        .superseded_by
                        .as_deref()
                        .unwrap_or("a newer revision")
                )
            ),
        ),
    };
    CommitStatus {
        sha: change.revision.clone(),
        context: context(node),
        state,
        description: truncate(&description),
        target_url: target_url(public_url, &change.revision),
    }
}

/// Whether a revision's change is posted on its commit. A revision that restores the last good
/// one after a failure runs that good commit again: the commit keeps its `success` while the
/// restore converges and succeeds, and hears of it only if the restore itself fails.
pub fn is_posted(change: &RevisionChanged) -> bool {
    change.restores.is_none() || change.new_state == RevisionState::Failed
}

/// The per-deployment status of `change` (for its revision), when it has one.
pub fn for_deployment(
    change: &StatusChanged,
    node: &str,
    public_url: Option<&str>,
) -> Option<CommitStatus> {
    let revision = change.revision.as_deref()?;
    let id = format!("{}/{}", change.namespace, change.name);
    let status = change.new_status;
    let (state, description) = match status {
        DeploymentStatus::Running | DeploymentStatus::Completed => {
            (CommitState::Success, format!("{id}: {status}"))
        }
        DeploymentStatus::Deleted => (CommitState::Success, format!("{id}: removed")),
        DeploymentStatus::Pending | DeploymentStatus::Creating => {
            (CommitState::Running, format!("{id}: {status}"))
        }
        DeploymentStatus::ImagePullBackOff
        | DeploymentStatus::CreateContainerError
        | DeploymentStatus::NetworkError
        | DeploymentStatus::ConfigError
        | DeploymentStatus::FileSystemError
        | DeploymentStatus::Error => (
            CommitState::Running,
            format!("{id}: retrying after {status}: {}", change.message),
        ),
        DeploymentStatus::Failed
        | DeploymentStatus::CrashLoopBackOff
        | DeploymentStatus::InsufficientResources => (
            CommitState::Failure,
            failure_of(&id, status, change.restart_count, Some(&change.message)),
        ),
    };
    Some(CommitStatus {
        sha: revision.to_owned(),
        context: format!("{}/{id}", context(node)),
        state,
        description: truncate(&description),
        target_url: target_url(public_url, revision),
    })
}

fn target_url(public_url: Option<&str>, revision: &str) -> Option<String> {
    public_url.map(|base| format!("{}/v1/revisions/{revision}", base.trim_end_matches('/')))
}

fn declared(deployments: &[DeploymentOutcome]) -> impl Iterator<Item = &DeploymentOutcome> {
    deployments.iter().filter(|d| d.declared)
}

fn reached(d: &DeploymentOutcome) -> bool {
    matches!(
        d.status,
        DeploymentStatus::Running | DeploymentStatus::Completed
    )
}

fn applying(deployments: &[DeploymentOutcome]) -> String {
    let total = declared(deployments).count();
    let done = declared(deployments).filter(|d| reached(d)).count();
    format!("applying: {done}/{total} deployments at their goal")
}

fn at_goal(deployments: &[DeploymentOutcome]) -> String {
    let total = declared(deployments).count();
    let jobs = declared(deployments).any(|d| d.status == DeploymentStatus::Completed);
    let what = if jobs {
        "running or completed"
    } else {
        "running"
    };
    format!("{total}/{total} deployments {what}")
}

fn failed(deployments: &[DeploymentOutcome]) -> String {
    let first = deployments
        .iter()
        .find(|d| d.status.class() == StatusClass::Terminal);
    match first {
        Some(d) => failure_of(
            &format!("{}/{}", d.namespace, d.name),
            d.status,
            d.restart_count,
            d.message.as_deref(),
        ),
        None => "a deployment failed".to_owned(),
    }
}

/// `demo/web: crash_loop_back_off after 5 restarts`, `demo/web: failed: <why>`.
fn failure_of(id: &str, status: DeploymentStatus, restarts: u32, message: Option<&str>) -> String {
    match (status, message) {
        (DeploymentStatus::CrashLoopBackOff, _) => {
            format!("{id}: crash_loop_back_off after {restarts} restarts")
        }
        (status, Some(message)) if !message.is_empty() => format!("{id}: {status}: {message}"),
        (status, Some(_) | None) => format!("{id}: {status}"),
    }
}

fn invalid(change: &RevisionChanged) -> String {
    match change.diagnostics.first() {
        Some(d) => {
            let at = match d.line {
                Some(line) => format!("{}:{line}", d.file),
                None => d.file.clone(),
            };
            let field = if d.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.path)
            };
            format!("invalid: {at}: {field}{}", d.message)
        }
        None => "invalid".to_owned(),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// At most `MAX_DESCRIPTION` characters, ending in `…` when cut.
pub fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_DESCRIPTION {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::diagnostic::{Diagnostic, Severity};

    fn outcome(name: &str, status: DeploymentStatus, restarts: u32) -> DeploymentOutcome {
        DeploymentOutcome {
            namespace: "demo".into(),
            name: name.into(),
            status,
            restart_count: restarts,
            declared: true,
            message: Some("restarted 5 times; last: instance c1 exited with code 1".into()),
        }
    }

    fn change(state: RevisionState, deployments: Vec<DeploymentOutcome>) -> RevisionChanged {
        RevisionChanged {
            source: "https://git.example/ops.git#main".into(),
            revision: "0123456789abcdef0123".into(),
            old_state: None,
            new_state: state,
            superseded_by: Some("fedcba9876543210fedc".into()),
            restores: None,
            rolled_back_to: Some("89abcdef0123456789ab".into()),
            identical_to: Some("76543210fedcba987654".into()),
            deployments,
            diagnostics: vec![Diagnostic {
                file: "apps/web.yaml".into(),
                line: Some(12),
                column: Some(5),
                path: "deployments.web.replica".into(),
                severity: Severity::Error,
                message: "unknown field \"replica\", did you mean \"replicas\"?".into(),
            }],
        }
    }

    #[test]
    fn each_revision_state_has_its_status_and_words() {
        use DeploymentStatus as S;
        let running = vec![
            outcome("web", S::Running, 0),
            outcome("api", S::Running, 0),
            outcome("db", S::Running, 0),
        ];
        let cases = [
            (RevisionState::Queued, vec![], CommitState::Pending, "queued".to_owned()),
            (
                RevisionState::Applying,
                vec![outcome("web", S::Running, 0), outcome("api", S::Creating, 0)],
                CommitState::Running,
                "applying: 1/2 deployments at their goal".to_owned(),
            ),
            (
                RevisionState::Succeeded,
                running,
                CommitState::Success,
                "3/3 deployments running".to_owned(),
            ),
            (
                RevisionState::Failed,
                vec![outcome("api", S::Running, 0), outcome("web", S::CrashLoopBackOff, 5)],
                CommitState::Failure,
                "demo/web: crash_loop_back_off after 5 restarts".to_owned(),
            ),
            (
                RevisionState::Invalid,
                vec![],
                CommitState::Error,
                "invalid: apps/web.yaml:12: deployments.web.replica: unknown field \"replica\", did you mean \"replicas\"?".to_owned(),
            ),
            (
                RevisionState::Superseded,
                vec![],
                CommitState::Canceled,
                "superseded by fedcba987654".to_owned(),
            ),
        ];
        for (state, deployments, expected_state, description) in cases {
            let status = for_revision(&change(state, deployments), "host-1", None);
            assert_eq!(
                (
                    status.state,
                    status.description.as_str(),
                    status.context.as_str()
                ),
                (expected_state, description.as_str(), "keel/host-1"),
                "{state}"
            );
        }
    }

    #[test]
    fn descriptions_stay_within_140_characters() {
        let mut failing = outcome("web", DeploymentStatus::Failed, 0);
        failing.message = Some("x".repeat(500));
        let status = for_revision(&change(RevisionState::Failed, vec![failing]), "h", None);
        assert_eq!(status.description.chars().count(), MAX_DESCRIPTION);
        assert!(status.description.ends_with('…'));
    }

    #[test]
    fn target_urls_point_at_the_revision_in_the_api() {
        let status = for_revision(
            &change(RevisionState::Queued, vec![]),
            "h",
            Some("https://keel.example/"),
        );
        assert_eq!(
            status.target_url.as_deref(),
            Some("https://keel.example/v1/revisions/0123456789abcdef0123")
        );
    }
}
