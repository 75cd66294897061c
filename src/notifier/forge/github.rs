//! GitHub (and GitHub Enterprise): `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}` with
//! `Authorization: Bearer` and `Accept: application/vnd.github+json`; states `pending`,
//! `success`, `failure`, `error`.

use crate::model::delivery::{CommitState, CommitStatus};
use crate::notifier::ForgeSettings;

use super::{owner_and_name, Request};

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
    let (owner, name) = owner_and_name(&forge.repository);
    let mut body = serde_json::json!({
        "state": state(status.state),
        "description": status.description,
        "context": status.context,
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = serde_json::Value::String(url.clone());
    }
    Request {
        url: format!(
            "{}/repos/{owner}/{name}/statuses/{}",
            forge.api_url.trim_end_matches('/'),
            status.sha
        ),
        headers: vec![
            ("authorization".into(), format!("Bearer {}", forge.token)),
            ("accept".into(), "application/vnd.github+json".into()),
            ("x-github-api-version".into(), "2022-11-28".into()),
        ],
        body,
    }
}
