//! Gitea and Forgejo: `POST {api_url}/repos/{owner}/{repo}/statuses/{sha}` (`api_url` ends in
//! `/api/v1`) with `Authorization: token …`; states `pending`, `success`, `error`, `failure`
//! (and `warning`, which keel does not use).

use crate::model::delivery::{CommitState, CommitStatus};
use crate::notifier::ForgeSettings;

use super::{owner_and_name, Request};

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
        headers: vec![("authorization".into(), format!("token {}", forge.token))],
        body,
    }
}
