//! GitLab: `POST {api_url}/projects/{id}/statuses/{sha}` (`api_url` ends in `/api/v4`; `id`
//! numeric or the URL-encoded `owner/name`) with `PRIVATE-TOKEN`; states `pending`, `running`,
//! `success`, `failed`, `canceled`; the context goes in `name`. GitLab refuses a transition to
//! the state a status already has (400 "Cannot transition status …"): that is done, not an
//! error.

use crate::model::delivery::{CommitState, CommitStatus};
use crate::notifier::ForgeSettings;

use super::{Answer, Request};

/// GitLab's word for a state.
pub fn state(state: CommitState) -> &'static str {
    match state {
        CommitState::Pending => "pending",
        CommitState::Running => "running",
        CommitState::Success => "success",
        CommitState::Failure | CommitState::Error => "failed",
        CommitState::Canceled => "canceled",
    }
}

pub fn request(forge: &ForgeSettings, status: &CommitStatus) -> Request {
    let project = forge.repository.replace('/', "%2F");
    let mut body = serde_json::json!({
        "state": state(status.state),
        "description": status.description,
        "name": status.context,
    });
    if let Some(url) = &status.target_url {
        body["target_url"] = serde_json::Value::String(url.clone());
    }
    Request {
        url: format!(
            "{}/projects/{project}/statuses/{}",
            forge.api_url.trim_end_matches('/'),
            status.sha
        ),
        headers: vec![("private-token".into(), forge.token.clone())],
        body,
    }
}

/// GitLab's answer to a status set to the state it already has.
pub fn already_in_state(answer: &Answer) -> bool {
    answer.status == 400 && answer.body.contains("Cannot transition status")
}
