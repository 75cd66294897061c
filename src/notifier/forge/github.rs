//! GitHub (and GitHub Enterprise): `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}` with
//! `Authorization: Bearer` and `Accept: application/vnd.github+json`; states `pending`,
//! `success`, `failure`, `error`.

use crate::model::delivery::{CommitState, CommitStatus};
use crate::notifier::ForgeSettings;

use super::{repos_statuses, Request};

/// GitHub's word for a state.
pub fn state(state: CommitState) -> &'static str {
    match state {
        CommitState::Pending | CommitState::Running => "pending",
        CommitState::Success => "success",
        CommitState::Failure => "failure",
        CommitState::Error | CommitState::Canceled => "error",
    }
}

pub fn request(forge: &ForgeSettings, status: &CommitStatus) -> Request {
    let headers = vec![
        ("authorization".into(), format!("Bearer {}", forge.token)),
        ("accept".into(), "application/vnd.github+json".into()),
        ("x-github-api-version".into(), "2022-11-28".into()),
    ];
    repos_statuses(forge, status, state(status.state), headers)
}
