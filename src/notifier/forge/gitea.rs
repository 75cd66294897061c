//! Gitea and Forgejo: `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}` (`api_url` ends in
//! `/api/v1`) with `Authorization: token …`; states `pending`, `success`, `error`, `failure`
//! (and `warning`, which keel does not use).

use crate::model::delivery::{CommitState, CommitStatus};
use crate::notifier::ForgeSettings;

use super::{repos_statuses, Request};

/// Gitea's word for a state.
pub fn state(state: CommitState) -> &'static str {
    match state {
        CommitState::Pending | CommitState::Running => "pending",
        CommitState::Success => "success",
        CommitState::Failure => "failure",
        CommitState::Error | CommitState::Canceled => "error",
    }
}

pub fn request(forge: &ForgeSettings, status: &CommitStatus) -> Request {
    let headers = vec![("authorization".into(), format!("token {}", forge.token))];
    repos_statuses(forge, status, state(status.state), headers)
}
